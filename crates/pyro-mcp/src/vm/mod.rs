//! The VM backend: start a QEMU microVM under its own supervisor and talk to its guest.
//!
//! `launch` writes the VM's spec into a fresh 0700 runtime directory, starts
//! `pyro __supervise DIR` detached, and waits for the supervisor's one-line boot report
//! (the guest agent's `Hello` arrived, or why not, with the serial log's last lines).

pub mod accel;
pub mod client;
pub mod initramfs;
pub mod qemu;
pub mod qmp;
pub mod quota;
pub mod serial;
pub mod spec;
pub mod supervisor;

use crate::error::{Context, Error, Result};
use crate::runtime::Runtime;
pub use client::Client;
use spec::{BootReport, VmSpec};
use std::io::BufRead;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Supervisors of throwaway VMs started by this process, so an interrupted CLI can stop them.
static EPHEMERAL: Mutex<Vec<u32>> = Mutex::new(Vec::new());

pub struct LaunchOptions {
    pub vcpus: u32,
    pub mem_mib: u32,
    pub mode: qemu::VmMode,
    pub disk: Option<qemu::Disk>,
    pub ephemeral: bool,
    pub cleanup: Vec<PathBuf>,
    /// Use this directory (already created, 0700) instead of a fresh one.
    pub dir: Option<PathBuf>,
    /// A NIC and its network (None: no NIC at all).
    pub net: Option<crate::net::NetSpec>,
    /// Saved state to resume from instead of booting (a stopped workspace's, a warm
    /// template's, a fork's).
    pub restore: Option<Restore>,
    /// Guest RAM in this file (warm templates, see `qemu::use_ram_file`): (path, shared).
    pub ram_file: Option<(PathBuf, bool)>,
    /// Who the guest is: sent (with fresh entropy and the clock) before anything else runs in
    /// it. None only for a stopped workspace's own memory, which is already itself.
    pub identity: Option<Identity>,
}

/// What a VM is restored from: the saved memory and device state, and for a warm template
/// the RAM file it is mapped from (privately; see `qemu::use_ram_file`).
#[derive(Debug, Clone)]
pub struct Restore {
    pub memory: PathBuf,
    pub ram: Option<PathBuf>,
}

impl Restore {
    pub fn memory(memory: &Path) -> Restore {
        Restore { memory: memory.to_path_buf(), ram: None }
    }
}

/// A guest's own hostname and machine id (see `Request::Identity`).
#[derive(Debug, Clone)]
pub struct Identity {
    pub hostname: String,
    pub machine_id: String,
}

impl Identity {
    /// `pyro-<id>` and a fresh random machine id.
    pub fn fresh(id: &str) -> Identity {
        Identity { hostname: Self::hostname(id), machine_id: random_hex(16) }
    }

    /// The hostname of VM or workspace `id`: `pyro-` and at most 12 of its characters.
    pub fn hostname(id: &str) -> String {
        let id: String = id.chars().filter(|c| c.is_ascii_alphanumeric()).take(12).collect();
        format!("pyro-{}", id.to_ascii_lowercase())
    }

    /// Send it with fresh host entropy and the host's clock.
    pub fn apply(&self, client: &mut Client) -> Result<()> {
        let mut entropy = [0u8; pyro_proto::IDENTITY_ENTROPY];
        fill_random(&mut entropy)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let msg = pyro_proto::Request::Identity {
            unix_ns: now.as_nanos() as u64,
            hostname: self.hostname.clone(),
            machine_id: self.machine_id.clone(),
        };
        client.call_with(&msg, &entropy).map(|_| ()).map_err(|e| {
            Error::guest(format!("the guest could not take its identity: {}", e.message))
                .hint("the guest agent in the initramfs may be older than this pyro: rebuild with `make build`")
        })
    }
}

/// Fill `buf` from the kernel's generator (`getrandom`, blocking only before it is seeded).
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled rest of `buf`.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr() as *mut libc::c_void, buf.len() - done, 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::internal(format!("getrandom: {e}")));
        }
        done += n as usize;
    }
    Ok(())
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    if fill_random(&mut b).is_err() {
        b.iter_mut().enumerate().for_each(|(i, x)| *x = (crate::clock::now_ns() >> (i % 8)) as u8);
    }
    hex::encode(b)
}

pub struct Vm {
    pub dir: PathBuf,
    pub client: Client,
    pub boot: BootReport,
}

/// A short random id (12 hex digits) for VMs and workspaces.
pub fn new_id() -> String {
    let mut b = [0u8; 6];
    // SAFETY: getrandom writes at most b.len() bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr() as *mut libc::c_void, b.len(), 0) };
    if n != b.len() as isize {
        b.copy_from_slice(&(crate::clock::now_ns() as u64 ^ std::process::id() as u64).to_le_bytes()[..6]);
    }
    hex::encode(b)
}

/// A runtime directory for a new VM: `<runtime>/vms/<id>`, private to the user.
pub fn new_vm_dir(rt: &Runtime) -> Result<(String, PathBuf)> {
    let id = new_id();
    let dir = rt.paths.vms().join(&id);
    crate::paths::private_dir(&dir)?;
    Ok((id, dir))
}

pub fn boot_timeout_ms() -> u64 {
    std::env::var("PYRO_BOOT_TIMEOUT_S").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(90) * 1000
}

pub fn launch(rt: &Runtime, opts: LaunchOptions) -> Result<Vm> {
    let (id, dir) = match &opts.dir {
        Some(d) => (d.file_name().and_then(|n| n.to_str()).unwrap_or("vm").to_string(), d.clone()),
        None => new_vm_dir(rt)?,
    };
    let cfg = qemu::MachineConfig {
        accel: rt.accel.accel,
        vcpus: opts.vcpus,
        mem_mib: opts.mem_mib,
        kernel: rt.kernel.vmlinuz.clone(),
        initrd: rt.initramfs.clone(),
        mode: opts.mode,
        tsc_khz: rt.accel.tsc_khz,
        disk: opts.disk.clone(),
        nic: opts.net.is_some(),
        dir: dir.clone(),
    };
    let mut args = qemu::args(&cfg);
    let ram_file = match opts.restore.as_ref().and_then(|r| r.ram.clone()) {
        Some(ram) => Some((ram, false)),
        None => opts.ram_file.clone(),
    };
    if let Some((path, shared)) = &ram_file {
        qemu::use_ram_file(&mut args, opts.mem_mib, path, *shared);
    }
    if opts.restore.is_some() {
        args.extend(["-incoming".into(), "defer".into()]);
    }
    let spec = VmSpec {
        id: id.clone(),
        qemu: rt.qemu.clone(),
        args,
        accel: rt.accel.accel.as_str().into(),
        ephemeral: opts.ephemeral,
        boot_timeout_ms: boot_timeout_ms(),
        cleanup: opts.cleanup.clone(),
        net: opts.net.clone(),
        restore: opts.restore.as_ref().map(|r| r.memory.clone()),
        save_ignore_shared: ram_file.as_ref().is_some_and(|(_, shared)| *shared),
        restore_ignore_shared: opts.restore.as_ref().is_some_and(|r| r.ram.is_some()),
    };
    // Counted and started under the launch lock, so two launches cannot share the last slot.
    let quota_lock = quota::lock(&rt.paths.runtime)?;
    // Warm spares give way to any VM someone asked for (see `workspace::spare`).
    if let Err(e) = crate::workspace::spare::room_for(&rt.paths, opts.mem_mib) {
        if opts.dir.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        return Err(e);
    }
    for old in ["serial.log", "serial.log.1"] {
        let _ = std::fs::remove_file(dir.join(old));
    }
    crate::paths::write_atomic(&dir.join("spec.json"), &serde_json::to_vec_pretty(&spec).unwrap())?;
    let log = std::fs::File::create(dir.join("supervisor.log")).ctx("creating supervisor log")?;
    let mut cmd = std::process::Command::new(&rt.supervisor_bin);
    cmd.arg("__supervise")
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(log);
    // SAFETY: setsid is async-signal-safe. The supervisor leaves our session so terminal
    // signals (Ctrl-C) reach only us; we decide what happens to the VM.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    crate::clock::trace("launch: spawning supervisor");
    let mut child = cmd.spawn().map_err(|e| {
        let _ = std::fs::remove_dir_all(&dir);
        Error::internal(format!("cannot start the supervisor {}: {e}", rt.supervisor_bin.display()))
    })?;
    let pid = child.id();
    // Recorded before the lock goes: the next count sees this VM, and a later call can find
    // and stop a supervisor whose launcher was killed before it heard back.
    let recorded = crate::paths::write_atomic(&dir.join("supervisor.pid"), pid.to_string().as_bytes());
    drop(quota_lock);
    if let Err(e) = recorded {
        // SAFETY: kill takes no pointers; `pid` is our unreaped child.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        return Err(e);
    }
    if opts.ephemeral {
        EPHEMERAL.lock().unwrap().push(pid);
    }
    let stdout = child.stdout.take().expect("piped");
    // Reap the supervisor whenever it exits, so long-lived hosts (the MCP server) keep no zombies.
    std::thread::spawn(move || {
        let _ = child.wait();
        EPHEMERAL.lock().unwrap().retain(|p| *p != pid);
    });
    let mut line = String::new();
    let _ = std::io::BufReader::new(stdout).read_line(&mut line);
    let report: BootReport = serde_json::from_str(line.trim()).map_err(|_| {
        let log = qemu::serial_tail(&dir.join("supervisor.log"), 5);
        Error::guest(format!(
            "the VM supervisor failed before reporting: {}",
            if log.is_empty() { "no output" } else { &log }
        ))
    })?;
    if !report.ok {
        let mut msg = format!("the VM did not boot: {}", report.error.clone().unwrap_or_default());
        if let Some(t) = report.serial_tail.as_ref().filter(|t| !t.is_empty()) {
            msg.push_str(&format!("; serial log ends with: {t}"));
        }
        return Err(Error::guest(msg).hint("run `pyro doctor` to check QEMU, the kernel and the accelerator"));
    }
    crate::clock::trace("launch: supervisor reported");
    let mut client = Client::connect(&dir.join("supervisor.sock"))?;
    if let Some(identity) = &opts.identity {
        identity.apply(&mut client)?;
        crate::clock::trace("launch: identity applied");
    }
    if opts.net.is_some() {
        configure_guest_network(&mut client)?;
    }
    Ok(Vm { dir, client, boot: report })
}

/// Give the guest its address, route, resolver, the host's CA bundle and proxy variables.
fn configure_guest_network(client: &mut Client) -> Result<()> {
    use crate::net;
    let msg = pyro_proto::Request::NetConfig {
        mac: net::mac_string(net::GUEST_MAC),
        address: format!("{}/{}", net::GUEST_IP, net::PREFIX_LEN),
        gateway: net::GATEWAY_IP.to_string(),
        nameservers: vec![net::GATEWAY_IP.to_string()],
        env: net::host_proxy_env(),
    };
    let ca = if std::env::var("PYRO_GUEST_HOST_CA").is_ok_and(|v| v == "0") {
        Vec::new()
    } else {
        net::host_ca_bundle().unwrap_or_default()
    };
    client.call_with(&msg, &ca).map_err(|e| {
        Error::guest(format!("the guest could not configure its network: {}", e.message))
            .hint("the guest agent in the initramfs may be older than this pyro: rebuild with `make build`")
    })?;
    Ok(())
}

/// Stop every throwaway VM this process started and wait until their supervisors are gone
/// (used when the CLI is interrupted: nothing may be left behind).
pub fn abort_ephemeral() {
    let pids: Vec<u32> = EPHEMERAL.lock().unwrap().clone();
    for pid in &pids {
        // SAFETY: kill takes no pointers; the pid is a supervisor we started and still have
        // registered (not reaped), so it cannot have been reused by another process.
        unsafe { libc::kill(*pid as i32, libc::SIGTERM) };
    }
    let start = std::time::Instant::now();
    while !EPHEMERAL.lock().unwrap().is_empty() && start.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// `qemu-img create -f qcow2 -b BASE`: a copy-on-write overlay, O(1) in the base's size.
/// The base's format is taken from its name (`.qcow2` or raw).
pub fn create_overlay(qemu_img: &Path, base: &Path, overlay: &Path) -> Result<()> {
    let fmt = if base.extension().is_some_and(|e| e == "qcow2") { "qcow2" } else { "raw" };
    let mut cmd = std::process::Command::new(qemu_img);
    cmd.args(["create", "-q", "-f", "qcow2", "-F", fmt, "-b"]).arg(base).arg(overlay);
    run_qemu_img(cmd)
}

/// Run a `qemu-img create` command; its stderr becomes the error.
fn run_qemu_img(mut cmd: std::process::Command) -> Result<()> {
    let out = cmd.output().map_err(|e| Error::guest(format!("cannot run qemu-img: {e}")))?;
    if !out.status.success() {
        return Err(Error::internal(format!(
            "qemu-img create failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// `qemu-img create -u`: a qcow2 overlay of `size` bytes whose header names `backing` (a
/// qcow2 image, by a name relative to the overlay's directory) without opening it. Used for
/// snapshot layers: the backing file may be the running VM's live layer, which QEMU holds
/// locked, and a relative name keeps the chain valid wherever the directory is.
pub fn create_overlay_on(qemu_img: &Path, backing: &str, overlay: &Path, size: u64) -> Result<()> {
    let mut cmd = std::process::Command::new(qemu_img);
    cmd.args(["create", "-q", "-u", "-f", "qcow2", "-F", "qcow2", "-b", backing]).arg(overlay).arg(size.to_string());
    run_qemu_img(cmd)
}

/// The virtual size a qcow2 image's header records (bytes 24..32), read without qemu-img.
pub fn qcow2_size(path: &Path) -> Result<u64> {
    use std::io::Read;
    let mut h = [0u8; 32];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut h))
        .map_err(|e| Error::internal(format!("reading {}: {e}", path.display())))?;
    if &h[..4] != b"QFI\xfb" {
        return Err(Error::internal(format!("{} is not a qcow2 image", path.display())));
    }
    Ok(u64::from_be_bytes(h[24..32].try_into().unwrap()))
}

/// The backing file name a qcow2 image's header records, as written (None: no backing file).
/// Read without qemu-img, so it works on images a running QEMU holds locked.
pub fn qcow2_backing_name(path: &Path) -> Result<Option<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let err = |e: std::io::Error| Error::internal(format!("reading {}: {e}", path.display()));
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut h = [0u8; 24];
    f.read_exact(&mut h).map_err(err)?;
    if &h[..4] != b"QFI\xfb" {
        return Err(Error::internal(format!("{} is not a qcow2 image", path.display())));
    }
    let offset = u64::from_be_bytes(h[8..16].try_into().unwrap());
    let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
    if offset == 0 || len == 0 {
        return Ok(None);
    }
    // QEMU caps the name at 1023 bytes.
    if len > 1023 {
        return Err(Error::internal(format!("{} names a backing file longer than 1023 bytes", path.display())));
    }
    let mut name = vec![0u8; len as usize];
    f.seek(SeekFrom::Start(offset)).and_then(|_| f.read_exact(&mut name)).map_err(err)?;
    Ok(Some(String::from_utf8_lossy(&name).into_owned()))
}

/// Boot our kernel and initramfs with the chosen accelerator to the guest init (no disk) and
/// return how long it took: the floor every VM start pays.
pub fn probe_boot(rt: &Runtime) -> Result<u64> {
    let (_id, dir) = new_vm_dir(rt)?;
    let cfg = qemu::MachineConfig {
        accel: rt.accel.accel,
        vcpus: 1,
        mem_mib: 256,
        kernel: rt.kernel.vmlinuz.clone(),
        initrd: rt.initramfs.clone(),
        mode: qemu::VmMode::Probe,
        tsc_khz: rt.accel.tsc_khz,
        disk: None,
        nic: false,
        dir: dir.clone(),
    };
    let result = boot_to_init(&rt.qemu, &cfg, std::time::Duration::from_secs(60)).map_err(Error::guest);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Start QEMU in `probe` mode and wait for the init's marker on the serial console.
/// Returns milliseconds from QEMU start to the marker, or why it did not appear.
pub fn boot_to_init(
    qemu_bin: &Path,
    cfg: &qemu::MachineConfig,
    timeout: std::time::Duration,
) -> std::result::Result<u64, String> {
    let start = std::time::Instant::now();
    let mut child = std::process::Command::new(qemu_bin)
        .args(qemu::args(cfg))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start QEMU: {e}"))?;
    let serial = cfg.dir.join("serial.log");
    let result = loop {
        if std::fs::read_to_string(&serial).unwrap_or_default().contains("PYRO-PROBE-OK") {
            break Ok(start.elapsed().as_millis() as u64);
        }
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            let detail = format!("{} {}", err.lines().last().unwrap_or("").trim(), qemu::serial_tail(&serial, 8));
            break Err(format!("QEMU exited ({st}) before the guest init ran: {}", detail.trim()));
        }
        if start.elapsed() > timeout {
            break Err(format!("the kernel did not reach the guest init within {} s", timeout.as_secs()));
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}
