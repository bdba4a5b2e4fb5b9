//! Starting a VM: `launch` writes the VM's spec into a fresh 0700 runtime directory, starts
//! `pyro __supervise DIR` detached, and waits for the supervisor's one-line boot report (the
//! guest agent's `Hello` arrived, or why not, with the serial log's last lines). Also the
//! guest's identity and network setup that follow, and stopping throwaway VMs on interrupt.

use super::boot::boot_to_init;
use super::client::Client;
use super::ids::{fill_random, new_id, random_hex};
use super::spec::{BootReport, VmSpec};
use super::{qemu, quota};
use crate::error::{Context, Error, Result};
use crate::runtime::Runtime;
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

pub struct Vm {
    pub dir: PathBuf,
    pub client: Client,
    pub boot: BootReport,
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
    if let Err(e) = crate::vm::spare::room_for(&rt.paths, opts.mem_mib) {
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
