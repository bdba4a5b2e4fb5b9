//! Whether a process recorded by pid (a supervisor, another pyro process's scratch dir) still
//! exists, asked with signal 0, which checks without sending anything.

/// Signal 0 to `pid`: Ok when the process exists and we may signal it, else the errno (ESRCH: no
/// such process, EPERM: it exists but belongs to someone else). Pids <= 0 are refused because
/// `kill` would read them as process groups.
fn signal0(pid: i32) -> Result<(), i32> {
    if pid <= 0 {
        return Err(libc::ESRCH);
    }
    // SAFETY: kill takes no pointers, and signal 0 sends nothing: it only checks the pid.
    match unsafe { libc::kill(pid, 0) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::ESRCH)),
    }
}

/// True when a process with this pid exists, even one we may not signal (EPERM): a pid that
/// belongs to someone else is still taken, so what it marks (a scratch dir in a cache that
/// other users may share) must be left alone.
pub(crate) fn alive(pid: i32) -> bool {
    matches!(signal0(pid), Ok(()) | Err(libc::EPERM))
}

/// True when the pid is a live process of ours. For pids our own processes recorded (a
/// supervisor): one that answers EPERM was reused by another user, so ours is gone.
pub(crate) fn alive_and_ours(pid: i32) -> bool {
    signal0(pid).is_ok()
}

/// Start `cmd` as a detached background helper of pyro's own (a template builder, a spare's
/// preparer): in its own session, so it outlives the CLI call that started it and terminal
/// signals miss it; stdin and stdout null, stderr to `log`. Reaped by a thread when it ends,
/// so a long-lived host (the MCP server) keeps no zombie. A failed spawn is ignored: these
/// helpers only make later calls faster.
pub(crate) fn spawn_detached(mut cmd: std::process::Command, log: std::fs::File) {
    use std::os::unix::process::CommandExt;
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(log);
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    if let Ok(mut child) = cmd.spawn() {
        std::thread::spawn(move || {
            let _ = child.wait();
        });
    }
}
