//! Thin wrappers over the Linux calls the init and the agent need (mount, module loading,
//! power off, clock and identity), and the agent's rules for running out of resources: which
//! OS errors mean the guest is exhausted (answered `limit_exceeded`, never a panic), and
//! threads started with an error instead of a panic when none can be made.

use pyro_proto::WireError;
use std::ffi::CString;
use std::io;
use std::path::Path;

/// A C string, or `InvalidInput` for one with a NUL inside (paths here may be derived from
/// what the host sent, so this must not panic).
fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte inside a path or option"))
}

/// The guest ran out of something a new process, pipe, file or thread needs: file
/// descriptors (per process or system-wide), memory, or processes/threads.
pub fn exhausted(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::EAGAIN))
}

/// The error reply for an OS failure while `doing` something: `limit_exceeded` with a line
/// that names the resource when the guest is exhausted (the next request may well work once
/// something is freed), `internal` otherwise.
pub fn os_error(doing: &str, e: &io::Error) -> WireError {
    if !exhausted(e) {
        return WireError::internal(format!("{doing}: {e}"));
    }
    let what = match e.raw_os_error() {
        Some(libc::EMFILE) => "the guest agent is out of file descriptors",
        Some(libc::ENFILE) => "the guest is out of file descriptors (system-wide)",
        Some(libc::ENOMEM) => "the guest is out of memory",
        _ => "the guest is out of processes or threads",
    };
    WireError::limit(format!(
        "{doing}: {what} ({e}); end what holds them (a runaway command or service) and try again, \
         or restart the workspace"
    ))
}

/// Start a named thread; an error (the guest is out of threads or memory) instead of the
/// panic `std::thread::spawn` gives, which in PID 1 would bring the whole guest down.
pub fn spawn_thread<F: FnOnce() + Send + 'static>(name: &str, f: F) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name.to_string()).spawn(f)
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub fn mount(src: &str, target: &str, fstype: &str, flags: libc::c_ulong, data: &str) -> io::Result<()> {
    let _ = std::fs::create_dir_all(target);
    let (s, t, f, d) = (cstr(src)?, cstr(target)?, cstr(fstype)?, cstr(data)?);
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    check(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr() as *const libc::c_void) })
}

pub fn move_mount(src: &str, target: &str) -> io::Result<()> {
    let _ = std::fs::create_dir_all(target);
    let (s, t) = (cstr(src)?, cstr(target)?);
    // SAFETY: valid strings; MS_MOVE ignores fstype and data.
    check(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), std::ptr::null(), libc::MS_MOVE, std::ptr::null()) })
}

/// Load a kernel module from a file (finit_module); "already loaded" counts as success.
pub fn load_module(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    let params = cstr("")?;
    // SAFETY: fd is open for the call; params is a valid empty string.
    let rc = unsafe { libc::syscall(libc::SYS_finit_module, f.as_raw_fd(), params.as_ptr(), 0) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EEXIST) {
        Ok(())
    } else {
        Err(e)
    }
}

pub fn chroot_here() -> io::Result<()> {
    let dot = cstr(".")?;
    // SAFETY: `dot` is a NUL-terminated CString that lives across the call.
    check(unsafe { libc::chroot(dot.as_ptr()) })?;
    std::env::set_current_dir("/")
}

/// Flush filesystems and power the VM off (QEMU exits). Never returns.
pub fn power_off() -> ! {
    // SAFETY: sync and reboot take no pointers; reboot does not return on success and we loop
    // if it fails, so nothing runs on in a half-powered-off state.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Set the wall clock (CLOCK_REALTIME) to `unix_ns`.
pub fn set_clock(unix_ns: u64) -> std::io::Result<()> {
    let ts = libc::timespec {
        tv_sec: (unix_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (unix_ns % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: ts is a valid timespec that lives across the call.
    if unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `RNDADDENTROPY` (`_IOW('R', 0x03, int[2])`) and `RNDRESEEDCRNG` (`_IO('R', 0x07)`), from
/// linux/random.h (the libc crate does not carry them).
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Mix `entropy` into the kernel's input pool, credited, and reseed the generator at once, so
/// that from here every reader (`/dev/urandom`, `getrandom`, the kernel's own uuids) draws
/// from a state no other guest restored from the same memory has.
pub fn reseed_rng(entropy: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if entropy.len() < 32 || entropy.len() > 4096 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "entropy must be 32..4096 bytes"));
    }
    let f = std::fs::OpenOptions::new().write(true).open("/dev/urandom")?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + entropy.len());
    info.extend_from_slice(&((entropy.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(entropy.len() as i32).to_ne_bytes());
    info.extend_from_slice(entropy);
    // SAFETY: `info` is a rand_pool_info header followed by buf_size bytes, alive for the call.
    if unsafe { libc::ioctl(f.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: RNDRESEEDCRNG takes no argument.
    if unsafe { libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Set the hostname (1-63 of `[a-z0-9-]`, checked) and `/etc/machine-id` (32 lowercase hex
/// digits, checked; written to a temporary file and renamed over the old one).
pub fn set_identity(hostname: &str, machine_id: &str) -> std::io::Result<()> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_string());
    if hostname.is_empty()
        || hostname.len() > 63
        || !hostname.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(bad("the hostname must be 1-63 of a-z, 0-9 and -"));
    }
    if machine_id.len() != 32 || !machine_id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(bad("the machine id must be 32 lowercase hex digits"));
    }
    // SAFETY: the pointer and length describe `hostname`'s bytes, alive for the call.
    if unsafe { libc::sethostname(hostname.as_ptr() as *const libc::c_char, hostname.len()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // A scratch image may have no /etc at all (a single static binary): make it, as systemd
    // would, so the machine id has somewhere to live.
    if std::fs::symlink_metadata("/etc").is_err() {
        std::fs::create_dir("/etc")?;
        std::fs::set_permissions("/etc", std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    }
    let _ = std::fs::write("/etc/hostname", format!("{hostname}\n"));
    let tmp = "/etc/.machine-id.pyro-tmp";
    let _ = std::fs::remove_file(tmp);
    std::fs::write(tmp, format!("{machine_id}\n"))?;
    std::fs::rename(tmp, "/etc/machine-id")
}

pub fn uptime_ms() -> u64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
        .map(|s| (s * 1000.0) as u64)
        .unwrap_or(0)
}

/// Write a line to the console (the serial log the host keeps for diagnostics).
pub fn console(line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
        let _ = writeln!(f, "pyro-guest: {line}");
    }
}
