//! Boot as PID 1: mount the early filesystems, load the virtio modules shipped in the
//! initramfs (in the order the host resolved), mount the disk and switch root into it.
//!
//! There is no busybox or shell here: everything is done with direct syscalls, so any
//! rootfs works, even one without a shell. The initramfs stays in memory (a few MiB); the
//! process keeps running after the switch, so the rootfs image never needs our binary.

use crate::sys;
use pyro_proto::AgentMode;
use std::path::Path;
use std::time::{Duration, Instant};

const MODULE_DIR: &str = "/lib/modules/pyro";
const ROOT_DEV: &str = "/dev/vda";

/// Fail the boot loudly: the host quotes the serial log's last lines in its error.
pub fn fatal(msg: &str) -> ! {
    sys::console(&format!("fatal: {msg}"));
    sys::power_off()
}

/// Returns the mode from the kernel command line after the root is ready (anything but
/// `builder` and `inspect` serves as `run`; `probe` and `floor` never return).
pub fn boot() -> AgentMode {
    let _ = sys::mount("devtmpfs", "/dev", "devtmpfs", libc::MS_NOSUID, "mode=0755");
    let _ = sys::mount("proc", "/proc", "proc", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, "");
    let _ = sys::mount("sysfs", "/sys", "sysfs", libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC, "");
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let mode = cmdline.split_whitespace().find_map(|w| w.strip_prefix("pyro.mode=")).unwrap_or("run").to_string();
    if mode == "floor" {
        // Benchmark floor: the kernel reached our init, nothing else.
        sys::console("PYRO-PROBE-OK");
        sys::power_off();
    }
    load_modules();
    match mode.as_str() {
        "probe" => {
            sys::console("PYRO-PROBE-OK");
            sys::power_off();
        }
        "inspect" => {
            // A stopped workspace's disk, seen through a throwaway overlay: mounted read-only
            // where the file requests look (`/workspace`), with no switch into it, so nothing
            // on that disk runs. The ext4 driver parses it here, inside a VM, not on the host.
            wait_for(ROOT_DEV);
            let _ = std::fs::create_dir_all("/workspace");
            let flags = libc::MS_RDONLY | libc::MS_NOATIME | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            if let Err(e) = sys::mount(ROOT_DEV, "/workspace", "ext4", flags, "") {
                fatal(&format!("mounting the disk to inspect: {e}"));
            }
            AgentMode::Inspect
        }
        "builder" => {
            wait_for(ROOT_DEV);
            if let Err(e) = sys::mount(ROOT_DEV, "/target", "ext4", 0, "") {
                fatal(&format!("mounting the build target: {e}"));
            }
            AgentMode::Builder
        }
        _ => {
            switch_root();
            // Loopback is up in every guest, NIC or not (a test suite that starts a local
            // server on 127.0.0.1 must work with the network off); it reaches nothing outside.
            if let Err(e) = crate::net::loopback_up() {
                sys::console(&format!("bringing up lo: {e}"));
            }
            AgentMode::Run
        }
    }
}

fn load_modules() {
    let order = std::fs::read_to_string(format!("{MODULE_DIR}/order")).unwrap_or_default();
    for name in order.lines().filter(|l| !l.is_empty()) {
        let path = Path::new(MODULE_DIR).join(name);
        if let Err(e) = sys::load_module(&path) {
            fatal(&format!("loading module {name}: {e}"));
        }
    }
}

fn wait_for(dev: &str) {
    let start = Instant::now();
    while !Path::new(dev).exists() {
        if start.elapsed() > Duration::from_secs(20) {
            fatal(&format!("{dev} did not appear"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn switch_root() {
    wait_for(ROOT_DEV);
    if let Err(e) = sys::mount(ROOT_DEV, "/newroot", "ext4", libc::MS_NOATIME, "") {
        fatal(&format!("mounting the root disk: {e}"));
    }
    for dir in ["/dev", "/proc", "/sys"] {
        if let Err(e) = sys::move_mount(dir, &format!("/newroot{dir}")) {
            fatal(&format!("moving {dir}: {e}"));
        }
    }
    if let Err(e) =
        std::env::set_current_dir("/newroot").and_then(|_| sys::move_mount(".", "/")).and_then(|_| sys::chroot_here())
    {
        fatal(&format!("switching root: {e}"));
    }
    let _ =
        sys::mount("devpts", "/dev/pts", "devpts", libc::MS_NOSUID | libc::MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
    let _ = sys::mount("tmpfs", "/dev/shm", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=1777");
    let _ = sys::mount("tmpfs", "/run", "tmpfs", libc::MS_NOSUID | libc::MS_NODEV, "mode=0755");
    let _ = std::fs::create_dir_all("/workspace");
    let _ = std::fs::create_dir_all("/tmp");
    // SAFETY: the buffer is a 4-byte static literal and we pass exactly 4 as its length.
    unsafe {
        libc::sethostname(b"pyro".as_ptr() as *const libc::c_char, 4);
    }
}
