//! Run one command for the host: argv or `/bin/sh -c`, in its own session and process group,
//! with a timeout that kills the whole group (exit 124), output capped head+tail per stream.
//!
//! The call ends when the command's own process exits: whatever it left running in the
//! background may keep the output pipes open, so after the exit we only drain what is already
//! buffered and return. Background children therefore never hang a call.
//!
//! While it runs, a [`Control`] lets another thread cancel it (the whole process group is
//! killed at once: the poll loop wakes on the control's pipe), and the caller's `tick` gets a
//! [`Tick`] every `progress_ms` with the output so far and its last line.
//!
//! A guest out of file descriptors, memory or processes makes the call fail with
//! `limit_exceeded` (before any child exists, or with the spawn's own error), never a panic: a
//! command that cannot even start is not reported as one that ran and failed.

use crate::{reaper, sys};
use pyro_proto::{Command, ExecRequest, ExecResult, HeadTail, WireError};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Hard cap per stream, whatever the host asks for (output is streamed back in chunks, but
/// it is held in guest memory until the command ends).
pub const MAX_OUTPUT_PER_STREAM: u64 = 16 << 20;
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Cancels one running command from another thread.
pub struct Control {
    cancelled: AtomicBool,
    /// Written to on cancel, so the command's poll loop wakes at once.
    wake_tx: UnixStream,
    wake_rx: UnixStream,
}

impl Control {
    pub fn new() -> std::io::Result<Control> {
        let (wake_tx, wake_rx) = UnixStream::pair()?;
        wake_tx.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        Ok(Control { cancelled: AtomicBool::new(false), wake_tx, wake_rx })
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let _ = (&self.wake_tx).write(&[1]);
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }
}

/// Progress of a running command, for `ExecProgress`.
pub struct Tick {
    pub elapsed_ms: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub last_line: String,
}

/// Longest `last_line` reported.
const LAST_LINE_CHARS: usize = 160;

/// The last non-blank line of `recent` (the newest output bytes), printable and clipped.
fn last_line(recent: &[u8]) -> String {
    let text = String::from_utf8_lossy(recent);
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
    // Terminal escapes and other controls would garble a host's one-line progress row.
    let clean: String = line.chars().filter(|c| !c.is_control()).collect();
    let n = clean.chars().count();
    if n > LAST_LINE_CHARS {
        clean.chars().skip(n - LAST_LINE_CHARS).collect()
    } else {
        clean
    }
}

/// Keeps the newest few hundred bytes of both streams, interleaved as read.
struct Recent(Vec<u8>);

impl Recent {
    const KEEP: usize = 1024;
    fn push(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&b[b.len().saturating_sub(Self::KEEP)..]);
        if self.0.len() > 2 * Self::KEEP {
            self.0.drain(..self.0.len() - Self::KEEP);
        }
    }
}

/// Run the command to its end (or its timeout, or a cancel). Errors: the request is refused
/// (`invalid_argument`) or the guest has no room to start it (`limit_exceeded`).
pub fn run(req: &ExecRequest, ctl: &Control, tick: &mut dyn FnMut(Tick)) -> Result<(ExecResult, Vec<u8>), WireError> {
    let started = Instant::now();
    let cwd = req.cwd.clone().unwrap_or_else(|| "/workspace".to_string());
    if !std::path::Path::new(&cwd).is_dir() {
        return Err(WireError::invalid(format!("working directory {cwd} does not exist in the guest")));
    }
    let mut cmd = match &req.command {
        Command::Argv(v) if !v.is_empty() => {
            let mut c = std::process::Command::new(&v[0]);
            c.args(&v[1..]);
            c
        }
        Command::Shell(s) => {
            let mut c = std::process::Command::new("/bin/sh");
            c.arg("-c").arg(s);
            c
        }
        Command::Argv(_) => return Err(WireError::invalid("empty command")),
    };
    cmd.current_dir(&cwd)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb")
        // Network settings from the host's `NetConfig` (proxies, CA bundle paths), then the
        // request's own variables, which win.
        .envs(crate::net::command_env())
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A new process group, so the timeout can kill everything the command started. Using
    // process_group (not a pre_exec setsid) lets std spawn with posix_spawn/vfork, which
    // avoids copying the agent's page tables: a large share of a spawn's cost under TCG.
    cmd.process_group(0);
    let cap = req.max_output_bytes.clamp(1024, MAX_OUTPUT_PER_STREAM) as usize;
    let guard = reaper::prepare().map_err(|e| sys::os_error("starting the command", &e))?;
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if sys::exhausted(&e) => {
            drop(guard);
            return Err(sys::os_error("starting the command", &e));
        }
        Err(e) => {
            drop(guard);
            // Same convention as a shell: 127 for "not found", 126 for "cannot execute".
            let code = if e.kind() == std::io::ErrorKind::NotFound { 127 } else { 126 };
            let prog = match &req.command {
                Command::Argv(v) => v[0].clone(),
                Command::Shell(_) => "/bin/sh".into(),
            };
            let msg = format!("pyro: cannot run {prog}: {e}\n").into_bytes();
            let mut err = HeadTail::new(cap);
            err.push(&msg);
            let (bytes, stderr) = err.finish();
            let res = ExecResult {
                exit_code: code,
                signal: None,
                timed_out: false,
                cancelled: false,
                duration_ms: started.elapsed().as_millis() as u64,
                stdout: Default::default(),
                stderr,
            };
            return Ok((res, bytes));
        }
    };
    let pid = child.id() as i32;
    let waiter = guard.register(pid);
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        // Both were asked for as pipes, so std always hands them over; should that ever
        // change, the command must not run on unwatched.
        // SAFETY: kill takes no pointers; the target is our own child's process group.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        return Err(WireError::internal("the command's output pipes were not set up"));
    };
    set_nonblocking(out.as_raw_fd());
    set_nonblocking(err.as_raw_fd());

    let deadline = started + Duration::from_millis(req.timeout_ms.max(1));
    let every = (req.progress_ms > 0).then(|| Duration::from_millis(req.progress_ms.max(100)));
    let mut next_tick = every.map(|e| started + e);
    let (mut out_buf, mut err_buf) = (HeadTail::new(cap), HeadTail::new(cap));
    let (mut out_open, mut err_open) = (true, true);
    let (mut timed_out, mut cancelled) = (false, false);
    let mut recent = Recent(Vec::new());
    let mut chunk = vec![0u8; 64 * 1024];
    let status = loop {
        if let Some(st) = waiter.status() {
            break st;
        }
        let now = Instant::now();
        if now >= deadline && !timed_out && !cancelled {
            timed_out = true;
            // SAFETY: kill takes no pointers; the target is our own child's process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        if ctl.is_cancelled() && !timed_out && !cancelled {
            cancelled = true;
            // SAFETY: as above.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        if let (Some(at), Some(every)) = (next_tick, every) {
            if now >= at {
                tick(Tick {
                    elapsed_ms: started.elapsed().as_millis() as u64,
                    stdout_bytes: out_buf.total(),
                    stderr_bytes: err_buf.total(),
                    last_line: last_line(&recent.0),
                });
                next_tick = Some(now + every);
            }
        }
        let mut wait = if timed_out || cancelled { Duration::from_secs(1) } else { deadline - now };
        if let Some(at) = next_tick {
            wait = wait.min(at.saturating_duration_since(now));
        }
        let wait_ms = wait.as_millis().min(60_000) as i32 + 1;
        let mut fds = vec![
            libc::pollfd { fd: waiter.ready.as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: ctl.wake_rx.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        if out_open {
            fds.push(libc::pollfd { fd: out.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        if err_open {
            fds.push(libc::pollfd { fd: err.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        // SAFETY: fds is a live Vec of pollfd and we pass its exact length, so poll writes `revents`
        // only inside it.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if out_open {
            out_open = drain(&mut out, &mut out_buf, &mut recent, &mut chunk);
        }
        if err_open {
            err_open = drain(&mut err, &mut err_buf, &mut recent, &mut chunk);
        }
    };
    // The command has exited: take what is already in the pipes, but never wait for
    // background processes that inherited them.
    if out_open {
        drain(&mut out, &mut out_buf, &mut recent, &mut chunk);
    }
    if err_open {
        drain(&mut err, &mut err_buf, &mut recent, &mut chunk);
    }
    if timed_out || cancelled {
        // Anything still alive in the group goes too (it may have ignored nothing: SIGKILL).
        // SAFETY: kill takes no pointers; signalling an empty process group just fails with ESRCH.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let (exit_code, signal) = if timed_out {
        (124, None)
    } else if libc::WIFEXITED(status) {
        (libc::WEXITSTATUS(status), None)
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        (128 + sig, Some(sig))
    } else {
        (1, None)
    };
    let (mut bytes, stdout) = out_buf.finish();
    let (err_bytes, stderr) = err_buf.finish();
    bytes.extend_from_slice(&err_bytes);
    let res = ExecResult {
        exit_code,
        signal,
        timed_out,
        cancelled,
        duration_ms: started.elapsed().as_millis() as u64,
        stdout,
        stderr,
    };
    Ok((res, bytes))
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl takes no pointers here; fd is a pipe end the caller owns and keeps open for the
    // call, so at worst the flags of the wrong fd change, which cannot break memory safety.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Read what is available now (bounded, so a flooding command cannot starve the timeout
/// check). Returns false once the pipe reached EOF.
fn drain(r: &mut impl Read, buf: &mut HeadTail, recent: &mut Recent, chunk: &mut [u8]) -> bool {
    for _ in 0..16 {
        match r.read(chunk) {
            Ok(0) => return false,
            Ok(n) => {
                buf.push(&chunk[..n]);
                recent.push(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    //! Every test here that spawns a process lives in ONE `#[test]` function, and no other
    //! test in this crate spawns children: `reaper`'s thread owns `waitpid(-1)` for the whole
    //! process, so in a test binary it would also reap (and steal the status of) children
    //! that other tests started with `std::process`, running in parallel on other threads.

    use super::*;
    use pyro_proto::{truncation_marker, ErrorCode};
    use std::path::Path;

    /// Set in the environment of the test binary's second run (see `exhaustion_in_this_process`).
    const EXHAUST_ENV: &str = "PYRO_GUEST_TEST_EXHAUST";

    fn req(command: Command, cwd: &Path) -> ExecRequest {
        ExecRequest {
            command,
            cwd: Some(cwd.display().to_string()),
            env: Vec::new(),
            timeout_ms: 30_000,
            max_output_bytes: 1 << 20,
            progress_ms: 0,
        }
    }

    fn sh(s: &str, cwd: &Path) -> ExecRequest {
        req(Command::Shell(s.into()), cwd)
    }

    fn run0(r: &ExecRequest) -> Result<(ExecResult, Vec<u8>), WireError> {
        run(r, &Control::new().unwrap(), &mut |_| {})
    }

    fn ok(r: &ExecRequest) -> (ExecResult, Vec<u8>) {
        match run0(r) {
            Ok(v) => v,
            Err(e) => panic!("exec refused: {e}"),
        }
    }

    /// The stdout and stderr parts of the combined payload.
    fn split(res: &ExecResult, bytes: &[u8]) -> (String, String) {
        assert_eq!(bytes.len() as u64, res.stdout.len + res.stderr.len);
        let (o, e) = bytes.split_at(res.stdout.len as usize);
        (String::from_utf8_lossy(o).into_owned(), String::from_utf8_lossy(e).into_owned())
    }

    /// Whether `pid` is gone (or a zombie waiting for whoever inherited it).
    fn dead(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
        }
    }

    fn wait_dead(pid: i32) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if dead(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    fn read_pid(path: &Path) -> i32 {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(s) = std::fs::read_to_string(path) {
                if let Ok(p) = s.trim().parse() {
                    return p;
                }
            }
            assert!(Instant::now() < until, "no pid in {}", path.display());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn exec_capture_truncation_timeouts_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = std::fs::canonicalize(dir.path()).unwrap();

        // stdout and stderr are captured separately, stdout first in the payload.
        let (res, bytes) = ok(&sh("echo out; echo err >&2; echo more", &cwd));
        assert_eq!(split(&res, &bytes), ("out\nmore\n".into(), "err\n".into()));
        assert_eq!((res.exit_code, res.signal, res.timed_out), (0, None, false));
        assert_eq!((res.stdout.total_bytes, res.stdout.truncated), (9, false));

        // Exit codes and signals.
        assert_eq!(ok(&sh("exit 3", &cwd)).0.exit_code, 3);
        let (res, _) = ok(&sh("kill -TERM $$", &cwd));
        assert_eq!((res.exit_code, res.signal), (128 + libc::SIGTERM, Some(libc::SIGTERM)));

        // Head+tail truncation: the cap is split in halves around the marker, totals exact.
        let expected: String = (1..=3000).map(|i| format!("{i}\n")).collect();
        let mut r = req(Command::Argv(vec!["seq".into(), "1".into(), "3000".into()]), &cwd);
        r.max_output_bytes = 1024;
        let (res, bytes) = ok(&r);
        let (out, _) = split(&res, &bytes);
        let omitted = expected.len() - 1024;
        let want =
            format!("{}{}{}", &expected[..512], truncation_marker(omitted as u64), &expected[expected.len() - 512..]);
        assert_eq!(out, want);
        assert!(out.contains(&format!("[pyro: output truncated, {omitted} bytes omitted]")));
        assert_eq!(res.stdout.total_bytes, expected.len() as u64);
        assert_eq!(res.stdout.len, want.len() as u64);
        assert!(res.stdout.truncated && !res.stderr.truncated);
        // The cap has a floor (1 KiB), so a tiny request still keeps a useful head and tail.
        r.max_output_bytes = 1;
        assert_eq!(ok(&r).0.stdout.len, want.len() as u64);
        // Both streams are capped independently.
        let mut r = sh("seq 1 3000; seq 1 3000 >&2", &cwd);
        r.max_output_bytes = 1024;
        let (res, bytes) = ok(&r);
        let (out, err) = split(&res, &bytes);
        assert_eq!((out.as_str(), err.as_str()), (want.as_str(), want.as_str()));

        // A timeout kills the whole process group, background children included.
        let pidfile = cwd.join("bg.pid");
        let mut r = sh(&format!("sleep 60 & echo $! > {}; echo started; sleep 60", pidfile.display()), &cwd);
        r.timeout_ms = 500;
        let t = Instant::now();
        let (res, bytes) = ok(&r);
        assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
        assert_eq!((res.exit_code, res.timed_out, res.signal), (124, true, None));
        assert_eq!(split(&res, &bytes).0, "started\n");
        let bg = read_pid(&pidfile);
        assert!(wait_dead(bg), "background child {bg} survived the timeout");

        // A background child that keeps the pipes open does not hold the call: it returns
        // when the command itself exits, with what was written so far.
        let pidfile = cwd.join("bg2.pid");
        let r = sh(&format!("sleep 30 & echo $! > {}; echo hi", pidfile.display()), &cwd);
        let t = Instant::now();
        let (res, bytes) = ok(&r);
        assert!(t.elapsed() < Duration::from_secs(10), "took {:?}", t.elapsed());
        assert_eq!((res.exit_code, res.timed_out), (0, false));
        assert_eq!(split(&res, &bytes).0, "hi\n");
        let bg = read_pid(&pidfile);
        // Ours to clean up (not a child of this process: it was the shell's).
        // SAFETY: kill takes no pointers; the pid comes from our own command's pid file.
        unsafe { libc::kill(bg, libc::SIGKILL) };

        // A missing program is 127, an unexecutable one 126, with the reason on stderr.
        let (res, bytes) = ok(&req(Command::Argv(vec!["/nonexistent/prog".into(), "x".into()]), &cwd));
        assert_eq!(res.exit_code, 127);
        assert!(split(&res, &bytes).1.contains("pyro: cannot run /nonexistent/prog"));
        std::fs::write(cwd.join("noexec"), "#!/bin/sh\n").unwrap();
        let noexec = cwd.join("noexec").display().to_string();
        assert_eq!(ok(&req(Command::Argv(vec![noexec]), &cwd)).0.exit_code, 126);
        // Through the shell, the shell's own 127.
        assert_eq!(ok(&sh("no-such-command-pyro", &cwd)).0.exit_code, 127);

        // Env (a clean one: ours, plus the request's) and cwd are honoured.
        std::fs::create_dir(cwd.join("sub")).unwrap();
        let mut r = req(
            Command::Argv(vec!["/bin/sh".into(), "-c".into(), "echo \"$FOO|$PATH|$HOME|${CARGO:-unset}\"; pwd".into()]),
            &cwd.join("sub"),
        );
        r.env = vec![("FOO".into(), "bar baz".into())];
        let (res, bytes) = ok(&r);
        let out = split(&res, &bytes).0;
        assert_eq!(out, format!("bar baz|{DEFAULT_PATH}|/root|unset\n{}\n", cwd.join("sub").display()));
        // The request's env wins over the defaults.
        let mut r = sh("echo $HOME", &cwd);
        r.env = vec![("HOME".into(), "/home/x".into())];
        let (res, bytes) = ok(&r);
        assert_eq!(split(&res, &bytes).0, "/home/x\n");

        // Refusals: a missing cwd, an empty argv.
        assert!(matches!(run0(&sh("true", &cwd.join("missing"))), Err(e) if e.code == ErrorCode::InvalidArgument));
        assert!(matches!(run0(&req(Command::Argv(vec![]), &cwd)), Err(e) if e.code == ErrorCode::InvalidArgument));

        // Progress ticks come every progress_ms with the output so far and its last line;
        // a cancel from another thread kills the group at once, background children too.
        let pidfile = cwd.join("bg3.pid");
        let mut r = sh(
            &format!(
                "sleep 600 & echo $! > {}; printf 'one\\ntwo \\033[1mbold\\033[0m\\n'; sleep 600",
                pidfile.display()
            ),
            &cwd,
        );
        r.progress_ms = 200;
        let ctl = std::sync::Arc::new(Control::new().unwrap());
        let c2 = ctl.clone();
        let canceller = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            c2.cancel();
        });
        let mut ticks = Vec::new();
        let t = Instant::now();
        let (res, bytes) = run(&r, &ctl, &mut |t| ticks.push(t)).ok().unwrap();
        canceller.join().unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "cancel took {:?}", t.elapsed());
        assert!(res.cancelled && !res.timed_out, "{res:?}");
        assert_eq!((res.exit_code, res.signal), (128 + libc::SIGKILL, Some(libc::SIGKILL)));
        assert!(split(&res, &bytes).0.starts_with("one\n"));
        assert!(ticks.len() >= 3, "{} ticks", ticks.len());
        let last = ticks.last().unwrap();
        assert_eq!(last.last_line, "two [1mbold[0m");
        assert_eq!(last.stdout_bytes, bytes.len() as u64);
        assert!(wait_dead(read_pid(&pidfile)), "a background child survived the cancel");

        // Running out of file descriptors, in a process of its own (the limit is per process,
        // and other tests here open files): this test binary again, running only
        // `exhaustion_in_this_process`, started through `run` (the reaper owns waitpid here).
        let exe = std::env::current_exe().unwrap().display().to_string();
        let name = "exec::tests::exhaustion_in_this_process";
        let mut r = req(
            Command::Argv(vec![exe, "--exact".into(), name.into(), "--nocapture".into(), "--test-threads=1".into()]),
            &cwd,
        );
        r.env = vec![(EXHAUST_ENV.into(), "1".into())];
        r.timeout_ms = 120_000;
        let (res, bytes) = ok(&r);
        let (out, err) = split(&res, &bytes);
        assert!(res.exit_code == 0 && out.contains("1 passed"), "{out}{err}");
    }

    /// The lowest free descriptor number: with RLIMIT_NOFILE there, nothing new can be opened.
    fn lowest_free_fd() -> libc::rlim_t {
        // SAFETY: F_DUPFD_CLOEXEC on stdin takes no pointers and returns a new fd we close.
        let fd = unsafe { libc::fcntl(0, libc::F_DUPFD_CLOEXEC, 0) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: fd was just returned to us and nothing else holds it.
        unsafe { libc::close(fd) };
        fd as libc::rlim_t
    }

    fn set_nofile(soft: libc::rlim_t, hard: libc::rlim_t) {
        let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
        // SAFETY: setrlimit reads one rlimit that lives across the call.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0, "{}", std::io::Error::last_os_error());
    }

    /// Out of file descriptors, starting a command or a shell is a `limit_exceeded` error (one
    /// line, naming the cause) instead of a panic or a made-up exit status, whether the
    /// reaper's pipe or the spawn's own pipes are what cannot be made; once descriptors are
    /// free again the very next call works: no lock was poisoned, the reaper still reaps.
    /// Does nothing unless started by `exec_capture_truncation_timeouts_and_errors` (it lowers
    /// this whole process's limit).
    #[test]
    fn exhaustion_in_this_process() {
        if std::env::var_os(EXHAUST_ENV).is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cwd = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(split_ok(&sh("echo warm", &cwd)), "warm\n");
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes one rlimit into a live local.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        let ctl = Control::new().unwrap();
        let open = |cwd: &Path| pyro_proto::Request::ShellOpen {
            cwd: Some(cwd.display().to_string()),
            cols: 80,
            rows: 24,
            env: vec![],
        };
        // No room at all (the reaper's pipe fails), then room for that pipe only (the spawn's
        // stdout pipe fails).
        for room in [0, 2] {
            set_nofile(lowest_free_fd() + room, lim.rlim_max);
            let e = run(&sh("echo never", &cwd), &ctl, &mut |_| {}).expect_err("a command started without fds");
            let shell = crate::shell::handle(open(&cwd), &[]).expect_err("a shell opened without fds");
            set_nofile(lim.rlim_cur, lim.rlim_max);
            for e in [e, shell] {
                assert_eq!(e.code, ErrorCode::LimitExceeded, "room {room}: {e}");
                assert!(e.message.contains("out of file descriptors") && !e.message.contains('\n'), "{e}");
            }
            assert_eq!(split_ok(&sh("echo again", &cwd)), "again\n", "room {room}");
        }
        // Shells recover too (and are closed again, which kills their session).
        let (reply, _) = crate::shell::handle(open(&cwd), &[]).unwrap();
        let pyro_proto::Reply::ShellInfo(info) = reply else { panic!("{reply:?}") };
        crate::shell::handle(pyro_proto::Request::ShellClose { shell: info.shell_id }, &[]).unwrap();
    }

    /// Stdout of a command that must run and exit 0.
    fn split_ok(r: &ExecRequest) -> String {
        let (res, bytes) = ok(r);
        let (out, err) = split(&res, &bytes);
        assert_eq!(res.exit_code, 0, "{out}{err}");
        out
    }

    #[test]
    fn last_line_is_printable_and_clipped() {
        assert_eq!(last_line(b"a\nb\n\n  \n"), "b");
        assert_eq!(last_line(b""), "");
        assert_eq!(last_line(b"x\r\x07y"), "xy");
        let long = "z".repeat(500);
        assert_eq!(last_line(long.as_bytes()).len(), LAST_LINE_CHARS);
        let mut r = Recent(Vec::new());
        for _ in 0..100 {
            r.push(&[b'q'; 700]);
        }
        assert!(r.0.len() <= 2 * Recent::KEEP);
    }
}
