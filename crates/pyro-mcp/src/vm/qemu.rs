//! QEMU `-M microvm` command lines, and finding/identifying the QEMU binary.
//!
//! Only the distribution's `qemu-system-x86_64` is used. Every device is virtio-mmio (the
//! Debian kernel finds them through microvm's ACPI tables); there is no NIC unless asked for.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Accelerator chosen for a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulation: slower, and works anywhere.
    Tcg,
}

impl Accel {
    /// The accelerator's name, as QEMU's `-accel` and pyro's reports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// Locate `qemu-system-x86_64` ($PYRO_QEMU, then PATH).
pub fn find_qemu() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PYRO_QEMU").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    which("qemu-system-x86_64").ok_or_else(|| {
        Error::guest("qemu-system-x86_64 is not installed")
            .hint("install QEMU: apt-get install qemu-system-x86 qemu-utils (or run `make setup`)")
    })
}

/// Locate `qemu-img` next to QEMU or on PATH.
pub fn find_qemu_img() -> Result<PathBuf> {
    which("qemu-img").ok_or_else(|| {
        Error::guest("qemu-img is not installed").hint("install it: apt-get install qemu-utils (or run `make setup`)")
    })
}

/// The first file called `name` in a PATH directory, then in /usr/sbin and /sbin (which a
/// non-root PATH may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `qemu-system-x86_64 --version`'s first line, e.g. "QEMU emulator version 7.2.22 (...)".
pub fn version(qemu: &Path) -> Result<String> {
    let out = std::process::Command::new(qemu)
        .arg("--version")
        .output()
        .map_err(|e| Error::guest(format!("cannot run {}: {e}", qemu.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

/// What the guest init does after boot, passed on the kernel command line as `pyro.mode=`
/// (pyro-guest's init reads the same words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmMode {
    /// The command agent, serving a workspace or a one-shot run.
    Run,
    /// Unpack an environment image onto a blank disk (errors must fail the build, not pause it).
    Builder,
    /// Mount a disk read-only without running anything from it (stopped-disk tools).
    Inspect,
    /// Load the virtio modules, print the marker and power off: the accelerator probe.
    Probe,
    /// Print the marker at once: the benchmark's floor (kernel only).
    Floor,
}

impl VmMode {
    /// The word on the kernel command line.
    pub fn as_str(self) -> &'static str {
        match self {
            VmMode::Run => "run",
            VmMode::Builder => "builder",
            VmMode::Inspect => "inspect",
            VmMode::Probe => "probe",
            VmMode::Floor => "floor",
        }
    }
}

/// Everything that varies between VMs; the rest of the command line is fixed.
#[derive(Debug, Clone)]
pub struct MachineConfig {
    /// KVM or TCG.
    pub accel: Accel,
    /// vCPUs of the guest.
    pub vcpus: u32,
    /// Memory of the guest in MiB.
    pub mem_mib: u32,
    /// The kernel image to boot.
    pub kernel: PathBuf,
    /// The initramfs to boot (the guest agent as `/init`).
    pub initrd: PathBuf,
    /// What the guest init does.
    pub mode: VmMode,
    /// Host TSC in kHz: without it microvm guests under TCG hang calibrating (no HPET/PIT).
    pub tsc_khz: Option<u64>,
    /// The guest's root disk (`/dev/vda`); none for the boot probe and the builder's blank start.
    pub disk: Option<Disk>,
    /// A virtio-net NIC wired to the supervisor's network stack (`net.sock`).
    pub nic: bool,
    /// Directory holding the VM's sockets and serial log.
    pub dir: PathBuf,
}

/// A disk image attached as the guest's virtio block device.
#[derive(Debug, Clone)]
pub struct Disk {
    /// The image file on the host.
    pub path: PathBuf,
    /// The image's format for QEMU (`qcow2` or `raw`).
    pub format: &'static str,
    /// `unsafe` for throwaway overlays (fastest), `writeback` where data must survive.
    pub cache: &'static str,
}

pub fn kernel_cmdline(cfg: &MachineConfig) -> String {
    let mut c = String::from(
        "console=ttyS0 quiet panic=-1 pci=off init_on_alloc=0 page_alloc.shuffle=0 8250.nr_uarts=1 \
         cryptomgr.notests random.trust_cpu=on",
    );
    if let (Accel::Tcg, Some(khz)) = (cfg.accel, cfg.tsc_khz) {
        c.push_str(&format!(" tsc_early_khz={khz} tsc=reliable"));
    }
    c.push_str(&format!(" pyro.mode={}", cfg.mode.as_str()));
    c
}

/// CPU model under TCG (`PYRO_TCG_CPU` overrides; see docs/benchmarks.md for why the default).
fn tcg_cpu() -> String {
    std::env::var("PYRO_TCG_CPU").ok().filter(|v| !v.is_empty() && v.len() < 200).unwrap_or_else(|| "max".into())
}

/// The CPU model QEMU emulates (part of what saved memory must match to be restored).
pub fn cpu_model(accel: Accel) -> String {
    match accel {
        Accel::Kvm => "host".into(),
        Accel::Tcg => tcg_cpu(),
    }
}

/// A path as a value inside a QEMU option list (`-drive file=...,format=...`): QEMU splits
/// those at commas, and `,,` is its escape for a literal one, so a host path with a comma
/// (a user's data dir, say) must be doubled or it would inject options of its own.
pub fn opt_path(p: &Path) -> String {
    p.display().to_string().replace(',', ",,")
}

/// The serial console's size on disk: the supervisor keeps the newest output in `serial.log`
/// and the half before it in `serial.log.1`, each at most this, whatever the guest writes.
pub const SERIAL_PART: u64 = 512 * 1024;

/// Whether the serial console goes to the supervisor (through `serial.sock`, into a bounded
/// ring) rather than straight into `serial.log`. Only the boot probe and the benchmark's floor,
/// which run QEMU without a supervisor and kill it as soon as our init prints its marker,
/// write the file directly.
fn supervised(mode: VmMode) -> bool {
    matches!(mode, VmMode::Run | VmMode::Builder | VmMode::Inspect)
}

/// The full argument list (without the binary).
pub fn args(cfg: &MachineConfig) -> Vec<String> {
    let d = |name: &str| opt_path(&cfg.dir.join(name));
    let mut a: Vec<String> = vec![
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-M".into(),
        "microvm".into(),
    ];
    match cfg.accel {
        Accel::Kvm => a.extend(["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()]),
        // A bounded code cache: the default grew one VM to 1.2 GiB RSS.
        Accel::Tcg => a.extend(["-accel".into(), "tcg,tb-size=64".into(), "-cpu".into(), tcg_cpu()]),
    }
    a.extend([
        "-m".into(),
        cfg.mem_mib.to_string(),
        "-smp".into(),
        cfg.vcpus.to_string(),
        "-kernel".into(),
        cfg.kernel.display().to_string(),
        "-initrd".into(),
        cfg.initrd.display().to_string(),
        "-append".into(),
        kernel_cmdline(cfg),
    ]);
    if supervised(cfg.mode) {
        // QEMU connects to the supervisor's listener as it starts (server=off), so nothing the
        // guest prints is lost, and a guest that floods its console is only slowed down.
        a.extend([
            "-chardev".into(),
            format!("socket,id=serial0,path={},server=off", d("serial.sock")),
            "-serial".into(),
            "chardev:serial0".into(),
        ]);
    } else {
        // `-serial file:` takes the rest of the word as the path, unsplit: no escaping.
        a.extend(["-serial".into(), format!("file:{}", cfg.dir.join("serial.log").display())]);
    }
    if let Some(disk) = &cfg.disk {
        a.extend([
            "-drive".into(),
            format!(
                "id=root,file={},format={},if=none,cache={},discard=unmap{}",
                opt_path(&disk.path),
                disk.format,
                disk.cache,
                // A builder must fail, not pause (QEMU's default on ENOSPC), when the host disk fills.
                if cfg.mode == VmMode::Builder { ",werror=report,rerror=report" } else { "" }
            ),
            "-device".into(),
            "virtio-blk-device,drive=root".into(),
        ]);
    }
    if cfg.nic {
        // The other end is the supervisor's user-mode stack (it listens before QEMU starts),
        // never the host's network: see net/stack.rs.
        a.extend([
            "-netdev".into(),
            format!("stream,id=net0,server=off,addr.type=unix,addr.path={}", d("net.sock")),
            "-device".into(),
            format!("virtio-net-device,netdev=net0,mac={}", crate::net::mac_string(crate::net::GUEST_MAC)),
        ]);
    }
    if cfg.mode != VmMode::Probe {
        a.extend([
            "-device".into(),
            "virtio-serial-device".into(),
            "-chardev".into(),
            format!("socket,id=ctl,path={},server=on,wait=off", d("ctl.sock")),
            "-device".into(),
            format!("virtserialport,chardev=ctl,name={}", pyro_proto::CONTROL_PORT_NAME),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", d("qmp.sock")),
        ]);
    }
    a
}

/// Back the guest's RAM with a file instead of anonymous memory (warm templates): `shared`,
/// the guest writes the file itself (a template being built; with migration's
/// `x-ignore-shared` its RAM then stays out of the saved stream); not shared, the file is
/// mapped privately (copy-on-write), so every VM restored from one template starts from its
/// pages without reading them, and shares with the others the pages none of them wrote.
/// The backend keeps microvm's own RAM id, so the rest of the machine is the same.
pub fn use_ram_file(args: &mut Vec<String>, mem_mib: u32, path: &Path, shared: bool) {
    if let Some(i) = args.iter().position(|a| a == "microvm") {
        args[i] = "microvm,memory-backend=microvm.ram".into();
    }
    args.extend([
        "-object".into(),
        format!(
            "memory-backend-file,id=microvm.ram,size={mem_mib}M,mem-path={},share={}",
            opt_path(path),
            if shared { "on" } else { "off" }
        ),
    ]);
}

/// Host TSC frequency in kHz, measured: under TCG the guest's TSC runs at the host's rate.
pub fn host_tsc_khz() -> Option<u64> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::time::{Duration, Instant};
        // SAFETY: rdtsc has no preconditions on x86_64.
        let (t0, c0) = (Instant::now(), unsafe { core::arch::x86_64::_rdtsc() });
        std::thread::sleep(Duration::from_millis(25));
        // SAFETY: as above.
        let (c1, t1) = (unsafe { core::arch::x86_64::_rdtsc() }, Instant::now());
        let ns = t1.duration_since(t0).as_nanos() as u64;
        if ns == 0 || c1 <= c0 {
            return None;
        }
        Some(((c1 - c0) as u128 * 1_000_000 / ns as u128) as u64)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The last lines of a log, for error messages: `serial.log` is read together with the part
/// before it (`serial.log.1`, see [`SERIAL_PART`]). At most the last 2 MiB are read.
pub fn serial_tail(path: &Path, lines: usize) -> String {
    let mut text = Vec::new();
    let older = path.with_extension("log.1");
    for p in [older.as_path(), path] {
        text.extend(read_tail(p, 2 * SERIAL_PART));
    }
    let text = &text[text.len().saturating_sub(2 * SERIAL_PART as usize)..];
    let text = String::from_utf8_lossy(text);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The last `max` bytes of a file (empty if it cannot be read).
fn read_tail(path: &Path, max: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else { return Vec::new() };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut out = Vec::new();
    let _ = f.take(max).read_to_end(&mut out);
    out
}
