//! Thin wrappers over the Linux calls the init needs (mount, module loading, power off).

use std::ffi::CString;
use std::io;
use std::path::Path;

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in static strings")
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
    let (s, t, f, d) = (cstr(src), cstr(target), cstr(fstype), cstr(data));
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    check(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), f.as_ptr(), flags, d.as_ptr() as *const libc::c_void) })
}

pub fn move_mount(src: &str, target: &str) -> io::Result<()> {
    let _ = std::fs::create_dir_all(target);
    let (s, t) = (cstr(src), cstr(target));
    // SAFETY: valid strings; MS_MOVE ignores fstype and data.
    check(unsafe { libc::mount(s.as_ptr(), t.as_ptr(), std::ptr::null(), libc::MS_MOVE, std::ptr::null()) })
}

/// Load a kernel module from a file (finit_module); "already loaded" counts as success.
pub fn load_module(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    let params = cstr("");
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
    let dot = cstr(".");
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
