//! Run one command for the host: argv or `/bin/sh -c`, in its own session and process group,
//! with a timeout that kills the whole group (exit 124), output capped head+tail per stream.
//!
//! The call ends when the command's own process exits: whatever it left running in the
//! background may keep the output pipes open, so after the exit we only drain what is already
//! buffered and return. Background children therefore never hang a call.

use crate::reaper;
use pyro_proto::{Command, ExecRequest, ExecResult, HeadTail};
use std::io::Read;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Hard cap per stream, whatever the host asks for (output is streamed back in chunks, but
/// it is held in guest memory until the command ends).
pub const MAX_OUTPUT_PER_STREAM: u64 = 16 << 20;
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub enum ExecError {
    Invalid(String),
}

pub fn run(req: &ExecRequest) -> Result<(ExecResult, Vec<u8>), ExecError> {
    let started = Instant::now();
    let cwd = req.cwd.clone().unwrap_or_else(|| "/workspace".to_string());
    if !std::path::Path::new(&cwd).is_dir() {
        return Err(ExecError::Invalid(format!("working directory {cwd} does not exist in the guest")));
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
        Command::Argv(_) => return Err(ExecError::Invalid("empty command".into())),
    };
    cmd.current_dir(&cwd)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb")
        .envs(req.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A new process group, so the timeout can kill everything the command started. Using
    // process_group (not a pre_exec setsid) lets std spawn with posix_spawn/vfork, which
    // avoids copying the agent's page tables: a large share of a spawn's cost under TCG.
    cmd.process_group(0);
    let cap = req.max_output_bytes.clamp(1024, MAX_OUTPUT_PER_STREAM) as usize;
    let guard = reaper::lock();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
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
                duration_ms: started.elapsed().as_millis() as u64,
                stdout: Default::default(),
                stderr,
            };
            return Ok((res, bytes));
        }
    };
    let pid = child.id() as i32;
    let waiter = guard.register(pid);
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    set_nonblocking(out.as_raw_fd());
    set_nonblocking(err.as_raw_fd());

    let deadline = started + Duration::from_millis(req.timeout_ms.max(1));
    let (mut out_buf, mut err_buf) = (HeadTail::new(cap), HeadTail::new(cap));
    let (mut out_open, mut err_open) = (true, true);
    let mut timed_out = false;
    let mut chunk = vec![0u8; 64 * 1024];
    let status = loop {
        if let Some(st) = waiter.status() {
            break st;
        }
        let now = Instant::now();
        if now >= deadline && !timed_out {
            timed_out = true;
            // SAFETY: signalling our own child's process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        let wait_ms = if timed_out { 1000 } else { (deadline - now).as_millis().min(60_000) as i32 + 1 };
        let mut fds = vec![libc::pollfd { fd: waiter.ready.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        if out_open {
            fds.push(libc::pollfd { fd: out.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        if err_open {
            fds.push(libc::pollfd { fd: err.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        // SAFETY: fds is a valid array of pollfd for the given length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if out_open {
            out_open = drain(&mut out, &mut out_buf, &mut chunk);
        }
        if err_open {
            err_open = drain(&mut err, &mut err_buf, &mut chunk);
        }
    };
    // The command has exited: take what is already in the pipes, but never wait for
    // background processes that inherited them.
    if out_open {
        drain(&mut out, &mut out_buf, &mut chunk);
    }
    if err_open {
        drain(&mut err, &mut err_buf, &mut chunk);
    }
    if timed_out {
        // Anything still alive in the group goes too (it may have ignored nothing: SIGKILL).
        // SAFETY: signalling the (possibly already empty) process group.
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
    let res =
        ExecResult { exit_code, signal, timed_out, duration_ms: started.elapsed().as_millis() as u64, stdout, stderr };
    Ok((res, bytes))
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Read what is available now (bounded, so a flooding command cannot starve the timeout
/// check). Returns false once the pipe reached EOF.
fn drain(r: &mut impl Read, buf: &mut HeadTail, chunk: &mut [u8]) -> bool {
    for _ in 0..16 {
        match r.read(chunk) {
            Ok(0) => return false,
            Ok(n) => buf.push(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}
