//! Interactive shells on pseudo-terminals, owned by the agent (not by any host process, so
//! they outlive the CLI call or MCP server that opened them).
//!
//! Each shell is bash (or sh) as a session leader with a PTY slave as its controlling
//! terminal. A reader thread per shell moves what the PTY prints into a bounded ring; reads
//! page through it by cursor (bytes since the shell opened) and say how much was dropped.
//! Input is written to the PTY master with a bounded wait, so a shell that stops reading its
//! input cannot hold a request thread forever. Signals go to the PTY's foreground process
//! group, which is what Ctrl-C at a terminal does.
//!
//! Opening a shell in a guest out of file descriptors or threads is a `limit_exceeded` error,
//! with everything made so far closed again.

use crate::{reaper, sys};
use pyro_proto::{ErrorCode, Reply, Request, ShellInfo, WireError};
use std::collections::{HashMap, VecDeque};
use std::ffi::CStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Output kept per shell; older output is dropped (and counted).
const RING_BYTES: usize = 1 << 20;
/// Shells open at once in one guest.
const MAX_SHELLS: usize = 16;
/// Largest input written at once, and how long a write may wait for the shell to read it.
pub const MAX_INPUT: usize = 64 * 1024;
const WRITE_WAIT: Duration = Duration::from_secs(10);
/// Bounds on a read's wait for quiet, whatever the host asks.
const MAX_WAIT: Duration = Duration::from_secs(60);

type Res<T> = Result<T, WireError>;

fn invalid(m: impl Into<String>) -> WireError {
    WireError::invalid(m)
}
fn not_found(m: impl Into<String>) -> WireError {
    WireError::not_found(m)
}

/// Output kept so far, addressed by absolute cursor.
struct Ring {
    buf: VecDeque<u8>,
    /// Cursor of `buf[0]`.
    start: u64,
    last_output: Instant,
    /// The reader saw the PTY close (every process holding the slave is gone).
    closed: bool,
}

impl Ring {
    fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }
    fn push(&mut self, b: &[u8]) {
        self.buf.extend(b);
        if self.buf.len() > RING_BYTES {
            let over = self.buf.len() - RING_BYTES;
            self.buf.drain(..over);
            self.start += over as u64;
        }
        self.last_output = Instant::now();
    }
}

struct Shell {
    id: String,
    pid: i32,
    cwd: String,
    size: Mutex<(u16, u16)>,
    master: File,
    ring: Mutex<Ring>,
    changed: Condvar,
    waiter: reaper::Waiter,
    opened: Instant,
}

impl Shell {
    fn exit_code(&self) -> Option<i32> {
        self.waiter.status().map(
            |st| {
                if libc::WIFEXITED(st) {
                    libc::WEXITSTATUS(st)
                } else {
                    128 + libc::WTERMSIG(st)
                }
            },
        )
    }

    fn info(&self) -> ShellInfo {
        let (cols, rows) = *self.size.lock().unwrap_or_else(|e| e.into_inner());
        let exit_code = self.exit_code();
        ShellInfo {
            shell_id: self.id.clone(),
            pid: self.pid,
            cwd: self.cwd.clone(),
            cols,
            rows,
            alive: exit_code.is_none(),
            exit_code,
            output_bytes: self.ring.lock().unwrap_or_else(|e| e.into_inner()).end(),
            age_ms: self.opened.elapsed().as_millis() as u64,
        }
    }
}

fn shells() -> &'static Mutex<HashMap<String, Arc<Shell>>> {
    static S: OnceLock<Mutex<HashMap<String, Arc<Shell>>>> = OnceLock::new();
    S.get_or_init(|| Mutex::new(HashMap::new()))
}

fn get(id: &str) -> Res<Arc<Shell>> {
    shells()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
        .cloned()
        .ok_or_else(|| not_found(format!("no shell {}", id.chars().take(40).collect::<String>())))
}

fn check_size(cols: u16, rows: u16) -> Res<()> {
    if !(10..=1000).contains(&cols) || !(2..=500).contains(&rows) {
        return Err(invalid(format!("terminal size {cols}x{rows}: cols must be 10..=1000, rows 2..=500")));
    }
    Ok(())
}

fn set_size(fd: RawFd, cols: u16, rows: u16) -> Res<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(sys::os_error("setting the terminal size", &std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A new PTY: (master, slave path).
fn open_pty() -> Res<(File, String)> {
    let err = |what: &str| sys::os_error(what, &std::io::Error::last_os_error());
    // SAFETY: posix_openpt has no pointer arguments; the fd it returns is owned below.
    let fd = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(err("opening a pseudo-terminal"));
    }
    // SAFETY: fd is a fresh descriptor that nothing else owns.
    let master = unsafe { File::from_raw_fd(fd) };
    // SAFETY: grantpt/unlockpt take the master fd only.
    if unsafe { libc::grantpt(fd) } != 0 || unsafe { libc::unlockpt(fd) } != 0 {
        return Err(err("unlocking the pseudo-terminal"));
    }
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: ptsname_r writes a NUL-terminated name of at most name.len() bytes.
    if unsafe { libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) } != 0 {
        return Err(err("naming the pseudo-terminal"));
    }
    // SAFETY: ptsname_r succeeded, so name holds a NUL-terminated string.
    let path = unsafe { CStr::from_ptr(name.as_ptr()) }.to_string_lossy().to_string();
    Ok((master, path))
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on a descriptor we own; no pointers.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn next_id() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!("shell-{}", N.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

fn open(cwd: Option<String>, cols: u16, rows: u16, env: Vec<(String, String)>) -> Res<ShellInfo> {
    check_size(cols, rows)?;
    let cwd = cwd.unwrap_or_else(|| "/workspace".into());
    if !std::path::Path::new(&cwd).is_dir() {
        return Err(invalid(format!("working directory {cwd} does not exist in the guest")));
    }
    if shells().lock().unwrap_or_else(|e| e.into_inner()).len() >= MAX_SHELLS {
        return Err(WireError::limit(format!("{MAX_SHELLS} shells are open; close one first")));
    }
    let (master, slave_path) = open_pty()?;
    set_size(master.as_raw_fd(), cols, rows)?;
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&slave_path)
        .map_err(|e| sys::os_error(&format!("opening {slave_path}"), &e))?;
    let program = if std::path::Path::new("/bin/bash").exists() { "/bin/bash" } else { "/bin/sh" };
    let mut cmd = std::process::Command::new(program);
    cmd.arg("-i")
        .current_dir(&cwd)
        .env_clear()
        .env("PATH", crate::exec::DEFAULT_PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("TERM", "xterm-256color")
        .envs(crate::net::command_env())
        .envs(env)
        .stdin(Stdio::from(slave.try_clone().map_err(|e| sys::os_error("opening the shell's terminal", &e))?))
        .stdout(Stdio::from(slave.try_clone().map_err(|e| sys::os_error("opening the shell's terminal", &e))?))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            // A new session whose controlling terminal is the PTY (stdin is the slave), so job
            // control, Ctrl-C and SIGWINCH work as at a terminal.
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let guard = reaper::prepare().map_err(|e| sys::os_error("starting the shell", &e))?;
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            drop(guard);
            return Err(sys::os_error(&format!("starting {program}"), &e));
        }
    };
    let pid = child.id() as i32;
    let waiter = guard.register(pid);
    // `cmd` holds the parent's copies of the slave: drop them so the PTY closes when the
    // shell's processes are gone.
    drop(cmd);
    drop(child);
    set_nonblocking(master.as_raw_fd());
    let shell = Arc::new(Shell {
        id: next_id(),
        pid,
        cwd,
        size: Mutex::new((cols, rows)),
        master,
        ring: Mutex::new(Ring { buf: VecDeque::new(), start: 0, last_output: Instant::now(), closed: false }),
        changed: Condvar::new(),
        waiter,
        opened: Instant::now(),
    });
    let reader = shell.clone();
    if let Err(e) = sys::spawn_thread("shell-reader", move || read_loop(&reader)) {
        // No reader, no shell: end it (its session) rather than leave it unread.
        // SAFETY: kill takes no pointers; the target is the shell's own session/process group.
        unsafe { libc::kill(-shell.pid, libc::SIGKILL) };
        kill_session(shell.pid);
        return Err(sys::os_error("starting the shell's reader", &e));
    }
    let info = shell.info();
    shells().lock().unwrap_or_else(|e| e.into_inner()).insert(shell.id.clone(), shell);
    Ok(info)
}

/// Move PTY output into the ring until the PTY closes.
fn read_loop(sh: &Shell) {
    let fd = sh.master.as_raw_fd();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one live pollfd.
        unsafe { libc::poll(&mut pfd, 1, 1000) };
        match (&sh.master).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                sh.ring.lock().unwrap_or_else(|e| e.into_inner()).push(&buf[..n]);
                sh.changed.notify_all();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {
                // Closed and forgotten by `close`: stop reading.
                if !shells().lock().unwrap_or_else(|e| e.into_inner()).contains_key(&sh.id) && sh.exit_code().is_some()
                {
                    break;
                }
            }
            // EIO: every process holding the slave side is gone.
            Err(_) => break,
        }
    }
    sh.ring.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
    sh.changed.notify_all();
}

fn read(id: &str, cursor: u64, max_bytes: u64, idle_ms: u64, wait_ms: u64) -> Res<(Reply, Vec<u8>)> {
    let sh = get(id)?;
    let max = max_bytes.clamp(1, 1 << 20) as usize;
    let idle = Duration::from_millis(idle_ms);
    let deadline = Instant::now() + Duration::from_millis(wait_ms).min(MAX_WAIT);
    let mut ring = sh.ring.lock().unwrap_or_else(|e| e.into_inner());
    let mut quiet = idle.is_zero();
    if !quiet {
        // Quiet means: nothing new for `idle`, counted from the last output (or from now, if
        // the shell printed nothing since it opened a while ago).
        loop {
            let since = ring.last_output.elapsed();
            if since >= idle || ring.closed {
                quiet = true;
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wait = (idle - since).min(deadline - now);
            ring = sh.changed.wait_timeout(ring, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
    let from = cursor.max(ring.start).min(ring.end());
    let dropped = from - cursor.min(from);
    let skip = (from - ring.start) as usize;
    let take = (ring.end() - from).min(max as u64) as usize;
    let data: Vec<u8> = ring.buf.iter().skip(skip).take(take).copied().collect();
    let end = ring.end();
    drop(ring);
    let exit_code = sh.exit_code();
    let reply = Reply::ShellData {
        cursor: from,
        next_cursor: from + data.len() as u64,
        end,
        dropped,
        idle: quiet,
        alive: exit_code.is_none(),
        exit_code,
    };
    Ok((reply, data))
}

fn write(id: &str, input: &[u8]) -> Res<ShellInfo> {
    if input.len() > MAX_INPUT {
        return Err(WireError::limit(format!("input is {} bytes; at most {MAX_INPUT}", input.len())));
    }
    let sh = get(id)?;
    if sh.exit_code().is_some() {
        return Err(WireError::new(ErrorCode::State, format!("shell {id} has exited")));
    }
    let deadline = Instant::now() + WRITE_WAIT;
    let mut rest = input;
    while !rest.is_empty() {
        match (&sh.master).write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(WireError::new(
                        ErrorCode::Timeout,
                        format!("shell {id} did not read its input for {} s", WRITE_WAIT.as_secs()),
                    ));
                }
                let mut pfd = libc::pollfd { fd: sh.master.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
                // SAFETY: one live pollfd.
                unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(sys::os_error(&format!("writing to shell {id}"), &e)),
        }
    }
    Ok(sh.info())
}

fn signal(id: &str, sig: i32) -> Res<ShellInfo> {
    if ![libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGKILL, libc::SIGQUIT].contains(&sig) {
        return Err(invalid(format!("signal {sig} is not one of INT, TERM, HUP, KILL, QUIT")));
    }
    let sh = get(id)?;
    // SAFETY: tcgetpgrp on our own PTY master; kill takes no pointers.
    let pgrp = unsafe { libc::tcgetpgrp(sh.master.as_raw_fd()) };
    let target = if pgrp > 0 { pgrp } else { sh.pid };
    // SAFETY: as above.
    unsafe { libc::kill(-target, sig) };
    Ok(sh.info())
}

fn resize(id: &str, cols: u16, rows: u16) -> Res<ShellInfo> {
    check_size(cols, rows)?;
    let sh = get(id)?;
    // The kernel sends SIGWINCH to the foreground process group when the size changes.
    set_size(sh.master.as_raw_fd(), cols, rows)?;
    *sh.size.lock().unwrap_or_else(|e| e.into_inner()) = (cols, rows);
    Ok(sh.info())
}

fn close(id: &str) -> Res<ShellInfo> {
    let sh = shells()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id)
        .ok_or_else(|| not_found(format!("no shell {}", id.chars().take(40).collect::<String>())))?;
    // Hang up the whole session, as closing a terminal does; what ignores it is killed.
    // SAFETY: kill takes no pointers; the target is the shell's own session/process group.
    unsafe { libc::kill(-sh.pid, libc::SIGHUP) };
    let until = Instant::now() + Duration::from_secs(1);
    while sh.exit_code().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Jobs the shell put in other process groups of its session go too: a closed shell
    // leaves nothing behind.
    kill_session(sh.pid);
    Ok(sh.info())
}

/// SIGKILL every process whose session id is `sid`.
fn kill_session(sid: i32) {
    let Ok(dir) = std::fs::read_dir("/proc") else { return };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // Fields after the command name (which may contain spaces and parentheses):
        // state ppid pgrp session ...
        let session = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split(' ').nth(3)?.parse::<i32>().ok());
        if session == Some(sid) {
            // SAFETY: kill takes no pointers.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Handle one shell request (`payload`: `ShellWrite`'s input).
pub fn handle(req: Request, payload: &[u8]) -> Res<(Reply, Vec<u8>)> {
    let info = |r: Res<ShellInfo>| r.map(|i| (Reply::ShellInfo(i), Vec::new()));
    match req {
        Request::ShellOpen { cwd, cols, rows, env } => info(open(cwd, cols, rows, env)),
        Request::ShellRead { shell, cursor, max_bytes, idle_ms, wait_ms } => {
            read(&shell, cursor, max_bytes, idle_ms, wait_ms)
        }
        Request::ShellWrite { shell } => info(write(&shell, payload)),
        Request::ShellSignal { shell, signal: sig } => info(signal(&shell, sig)),
        Request::ShellResize { shell, cols, rows } => info(resize(&shell, cols, rows)),
        Request::ShellClose { shell } => info(close(&shell)),
        Request::ShellList => {
            let mut shells: Vec<ShellInfo> =
                shells().lock().unwrap_or_else(|e| e.into_inner()).values().map(|s| s.info()).collect();
            shells.sort_by_key(|s| std::cmp::Reverse(s.age_ms));
            Ok((Reply::ShellListReply { shells }, Vec::new()))
        }
        _ => Err(invalid("not a shell request")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_drops_the_oldest_and_keeps_cursors() {
        let mut r = Ring { buf: VecDeque::new(), start: 0, last_output: Instant::now(), closed: false };
        r.push(&vec![b'a'; RING_BYTES - 10]);
        r.push(&[b'b'; 30]);
        assert_eq!(r.start, 20);
        assert_eq!(r.end(), RING_BYTES as u64 + 20);
        assert_eq!(r.buf.len(), RING_BYTES);
        assert_eq!(*r.buf.back().unwrap(), b'b');
    }

    #[test]
    fn sizes_are_bounded() {
        assert!(check_size(80, 24).is_ok());
        assert!(check_size(9, 24).is_err());
        assert!(check_size(80, 501).is_err());
    }
}
