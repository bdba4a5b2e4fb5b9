//! Long-running services: processes the agent starts, keeps, watches and stops for the host.
//!
//! A service is the agent's child in its own process group (so a stop reaches everything it
//! started). Its pid is registered with the reaper, which owns `waitpid(-1)` as it does for
//! commands. One monitor thread per service reads its stdout and stderr into bounded rings
//! (1 MiB each, counting what fell out), notices its exit, and restarts it after a failure
//! when asked (with a doubling backoff and a cap). A prober thread per attempt checks
//! readiness (a file, a TCP connect, an HTTP GET, a command exiting 0) every interval until it
//! passes or the deadline passes; a service not ready in time is stopped and marked `failed`.
//!
//! Stopping sends TERM to the process group, waits a grace, then KILL. When the leader is gone
//! the whole group is killed too: a service never leaves processes behind, whether it was
//! stopped, failed or exited on its own.
//!
//! The registry is bounded ([`MAX_SERVICES`]); finished services make room for new ones, oldest
//! first. Services live as long as the VM: a reboot forgets them, and the host tells by the
//! boot id every reply carries.
//!
//! A guest out of file descriptors, processes or threads refuses a start with
//! `limit_exceeded` (nothing is left running), and a restart that cannot be spawned ends the
//! service as `failed` with the reason.

use crate::{exec, reaper, sys};
use pyro_proto::{
    Command, ErrorCode, ExecRequest, Readiness, Reply, Request, ServicePhase, ServiceSpec, ServiceState, WireError,
};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, ChildStdout, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Services the agent keeps at once (live and finished); more are refused while all are live.
pub const MAX_SERVICES: usize = 32;
/// Bytes each log ring keeps per stream.
pub const RING_BYTES: usize = 1 << 20;
const MAX_TAIL_LINES: u64 = 100_000;
const MAX_RESTARTS: u32 = 100;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest one probe may take (connect or read); shorter when the interval is.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_GRACE: Duration = Duration::from_secs(60);

/// A reply and its payload.
type Answer = (Reply, Vec<u8>);

fn err(e: WireError) -> Answer {
    (Reply::Error(e), Vec::new())
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The newest bytes of one stream, at most [`RING_BYTES`].
#[derive(Default)]
struct Ring {
    buf: VecDeque<u8>,
    total: u64,
}

impl Ring {
    fn push(&mut self, d: &[u8]) {
        self.total += d.len() as u64;
        if d.len() >= RING_BYTES {
            self.buf.clear();
            self.buf.extend(&d[d.len() - RING_BYTES..]);
            return;
        }
        let overflow = (self.buf.len() + d.len()).saturating_sub(RING_BYTES);
        self.buf.drain(..overflow);
        self.buf.extend(d);
    }

    fn dropped(&self) -> u64 {
        self.total - self.buf.len() as u64
    }

    /// The last `lines` lines (a last line without its newline counts), or everything.
    fn tail(&self, lines: Option<u64>) -> Vec<u8> {
        let (a, b) = self.buf.as_slices();
        let all: Vec<u8> = [a, b].concat();
        let Some(n) = lines else { return all };
        if n == 0 {
            return Vec::new();
        }
        let body = all.strip_suffix(b"\n").unwrap_or(&all);
        let mut seen = 0;
        for (i, &c) in body.iter().enumerate().rev() {
            if c == b'\n' {
                seen += 1;
                if seen == n {
                    return all[i + 1..].to_vec();
                }
            }
        }
        all
    }
}

struct Inner {
    spec: ServiceSpec,
    cwd: String,
    state: ServicePhase,
    /// The running leader's pid (its process group id too).
    pid: Option<i32>,
    running: bool,
    /// Bumped on every (re)start, so a prober of an older attempt stops.
    attempt: u64,
    last_probe: Option<String>,
    exit_code: Option<i32>,
    signal: Option<i32>,
    stop_reason: Option<String>,
    restarts: u32,
    started: Instant,
    ready_at: Option<Instant>,
    ended_at: Option<Instant>,
    out: Ring,
    err: Ring,
    /// Set once a stop began: (why, the state it ends in).
    stopping: Option<(String, ServicePhase)>,
}

struct Svc {
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl Svc {
    fn snapshot(&self) -> ServiceState {
        let i = lock(&self.inner);
        let ago = |t: Instant| t.elapsed().as_millis() as u64;
        ServiceState {
            name: i.spec.name.clone(),
            command: i.spec.command.display(),
            cwd: i.cwd.clone(),
            state: i.state,
            pid: i.pid,
            readiness: i.spec.readiness.clone(),
            last_probe: i.last_probe.clone(),
            exit_code: i.exit_code,
            signal: i.signal,
            stop_reason: i.stop_reason.clone(),
            restarts: i.restarts,
            started_ago_ms: ago(i.started),
            ready_ago_ms: i.ready_at.map(ago),
            ended_ago_ms: i.ended_at.map(ago),
            stdout_bytes: i.out.total,
            stderr_bytes: i.err.total,
            stdout_dropped: i.out.dropped(),
            stderr_dropped: i.err.dropped(),
        }
    }

    fn live(&self) -> bool {
        lock(&self.inner).state.is_live()
    }
}

fn registry() -> &'static Mutex<Vec<Arc<Svc>>> {
    static R: OnceLock<Mutex<Vec<Arc<Svc>>>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Vec::new()))
}

fn find(name: &str) -> Option<Arc<Svc>> {
    lock(registry()).iter().rev().find(|s| lock(&s.inner).spec.name == name).cloned()
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_string()).unwrap_or_default()
}

/// Answer one service request (on the request's own thread; stop blocks until it is done).
pub fn handle(req: Request) -> Answer {
    let missing = |name: &str| err(WireError::not_found(format!("no service '{name}'")));
    match req {
        Request::ServiceStart(spec) => match start(spec) {
            Ok(svc) => (Reply::ServiceReply { boot_id: boot_id(), service: svc.snapshot() }, Vec::new()),
            Err(e) => err(e),
        },
        Request::ServiceStatus { name } => {
            let all: Vec<Arc<Svc>> = lock(registry()).clone();
            let services: Vec<ServiceState> = match &name {
                Some(n) => all.iter().filter(|s| lock(&s.inner).spec.name == *n).map(|s| s.snapshot()).collect(),
                None => all.iter().map(|s| s.snapshot()).collect(),
            };
            (Reply::ServiceList { boot_id: boot_id(), services }, Vec::new())
        }
        Request::ServiceLogs { name, tail_lines, all } => {
            let Some(svc) = find(&name) else { return missing(&name) };
            let lines = (!all).then_some(tail_lines.min(MAX_TAIL_LINES));
            let (mut out, errb) = {
                let i = lock(&svc.inner);
                (i.out.tail(lines), i.err.tail(lines))
            };
            let (stdout_len, stderr_len) = (out.len() as u64, errb.len() as u64);
            out.extend_from_slice(&errb);
            (Reply::ServiceLogData { service: svc.snapshot(), stdout_len, stderr_len }, out)
        }
        Request::ServiceStop { name, grace_ms } => {
            let Some(svc) = find(&name) else { return missing(&name) };
            let grace = Duration::from_millis(grace_ms).min(MAX_GRACE);
            terminate(&svc, "stopped on request".into(), ServicePhase::Stopped, grace);
            (Reply::ServiceReply { boot_id: boot_id(), service: svc.snapshot() }, Vec::new())
        }
        _ => err(WireError::invalid("not a service request")),
    }
}

fn check(spec: &ServiceSpec) -> Result<(), WireError> {
    let invalid = WireError::invalid;
    if !pyro_proto::valid_service_name(&spec.name) {
        return Err(invalid(format!("invalid service name '{}'", spec.name.chars().take(80).collect::<String>())));
    }
    if matches!(&spec.command, Command::Argv(v) if v.is_empty()) {
        return Err(invalid("empty command".to_string()));
    }
    match &spec.readiness {
        Some(Readiness::Http { url }) => {
            pyro_proto::parse_probe_url(url).map_err(invalid)?;
        }
        Some(Readiness::Tcp { host, port }) => {
            pyro_proto::split_host_port(&format!("{host}:{port}"), 0).map_err(invalid)?;
        }
        _ => {}
    }
    Ok(())
}

fn start(spec: ServiceSpec) -> Result<Arc<Svc>, WireError> {
    check(&spec)?;
    let cwd = spec.cwd.clone().unwrap_or_else(|| "/workspace".to_string());
    if !std::path::Path::new(&cwd).is_dir() {
        return Err(WireError::invalid(format!("working directory {cwd} does not exist in the guest")));
    }
    // Services are reached (and probed) over loopback; it is down in a guest without a NIC.
    if let Err(e) = crate::net::loopback_up() {
        crate::sys::console(&format!("cannot bring up lo for services: {e}"));
    }
    let mut reg = lock(registry());
    if reg.iter().any(|s| s.live() && lock(&s.inner).spec.name == spec.name) {
        return Err(WireError::new(ErrorCode::Conflict, format!("a service named '{}' is already running", spec.name)));
    }
    // A finished service of that name is replaced; past the cap, the oldest finished goes.
    reg.retain(|s| lock(&s.inner).spec.name != spec.name);
    if reg.len() >= MAX_SERVICES {
        match reg.iter().position(|s| !s.live()) {
            Some(i) => {
                reg.remove(i);
            }
            None => {
                return Err(WireError::limit(format!("at most {MAX_SERVICES} services run at once")));
            }
        }
    }
    let child = spawn(&spec, &cwd)?;
    let svc = Arc::new(Svc {
        inner: Mutex::new(Inner {
            spec,
            cwd,
            state: ServicePhase::Starting,
            pid: None,
            running: false,
            attempt: 0,
            last_probe: None,
            exit_code: None,
            signal: None,
            stop_reason: None,
            restarts: 0,
            started: Instant::now(),
            ready_at: None,
            ended_at: None,
            out: Ring::default(),
            err: Ring::default(),
            stopping: None,
        }),
        changed: Condvar::new(),
    });
    let pid = child.pid;
    began(&svc, &child);
    let s2 = svc.clone();
    if let Err(e) = sys::spawn_thread("service", move || monitor(s2, child)) {
        // Unwatched, it would run on unseen: end it now (the reaper collects it) and refuse.
        lock(&svc.inner).state = ServicePhase::Failed;
        kill_group(pid, libc::SIGKILL);
        return Err(sys::os_error("starting the service's monitor", &e));
    }
    reg.push(svc.clone());
    drop(reg);
    Ok(svc)
}

/// A spawned attempt: the leader's pid, its output pipes and its reaper registration.
struct Running {
    pid: i32,
    out: ChildStdout,
    err: ChildStderr,
    waiter: reaper::Waiter,
}

/// Spawn one attempt: refused (`invalid_argument`) when the program cannot be run, or
/// `limit_exceeded` when the guest is out of what a process needs.
fn spawn(spec: &ServiceSpec, cwd: &str) -> Result<Running, WireError> {
    let mut cmd = match &spec.command {
        Command::Argv(v) => {
            let mut c = std::process::Command::new(&v[0]);
            c.args(&v[1..]);
            c
        }
        Command::Shell(s) => {
            let mut c = std::process::Command::new("/bin/sh");
            c.arg("-c").arg(s);
            c
        }
    };
    cmd.current_dir(cwd)
        .env_clear()
        .env("PATH", exec::DEFAULT_PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .env("TERM", "dumb")
        .envs(crate::net::command_env())
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let guard = reaper::prepare().map_err(|e| sys::os_error("starting the service", &e))?;
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            drop(guard);
            if sys::exhausted(&e) {
                return Err(sys::os_error("starting the service", &e));
            }
            let prog = match &spec.command {
                Command::Argv(v) => v[0].clone(),
                Command::Shell(_) => "/bin/sh".into(),
            };
            return Err(WireError::invalid(format!("cannot run {}: {e}", prog.chars().take(200).collect::<String>())));
        }
    };
    let pid = child.id() as i32;
    let waiter = guard.register(pid);
    let (Some(out), Some(err)) = (child.stdout.take(), child.stderr.take()) else {
        // Both were asked for as pipes, so std always hands them over; should that ever
        // change, the service must not run on unwatched.
        kill_group(pid, libc::SIGKILL);
        return Err(WireError::internal("the service's output pipes were not set up"));
    };
    set_nonblocking(out.as_raw_fd());
    set_nonblocking(err.as_raw_fd());
    Ok(Running { pid, out, err, waiter })
}

/// Record a fresh attempt and start probing it (or call it ready when there is no probe).
fn began(svc: &Arc<Svc>, r: &Running) {
    let mut i = lock(&svc.inner);
    i.pid = Some(r.pid);
    i.running = true;
    i.attempt += 1;
    i.started = Instant::now();
    i.ended_at = None;
    i.ready_at = None;
    i.exit_code = None;
    i.signal = None;
    if i.spec.readiness.is_some() {
        i.state = ServicePhase::Starting;
        let (s2, attempt) = (svc.clone(), i.attempt);
        if let Err(e) = sys::spawn_thread("service-probe", move || probe_loop(s2, attempt)) {
            // Never probed, it could never become ready: end it as failed, with the reason
            // (the monitor sees the exit and records the stop).
            let why = sys::os_error("starting the readiness probe", &e).message;
            i.stopping = Some((why, ServicePhase::Failed));
            kill_group(r.pid, libc::SIGKILL);
        }
    } else {
        i.state = ServicePhase::Ready;
        i.ready_at = Some(Instant::now());
    }
    svc.changed.notify_all();
}

fn set_nonblocking(fd: RawFd) {
    // SAFETY: fcntl takes no pointers here; fd is a pipe end we own and keep open for the call.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

fn kill_group(pid: i32, sig: libc::c_int) {
    // SAFETY: kill takes no pointers; the target is a service's own process group (a group
    // that is already empty just fails with ESRCH).
    unsafe { libc::kill(-pid, sig) };
}

/// Read what a pipe holds now into the service's ring (bounded rounds, so a flood cannot
/// starve the exit check). False at EOF.
fn drain(svc: &Svc, r: &mut impl Read, stderr: bool, chunk: &mut [u8]) -> bool {
    for _ in 0..16 {
        match r.read(chunk) {
            Ok(0) => return false,
            Ok(n) => {
                let mut i = lock(&svc.inner);
                if stderr {
                    i.err.push(&chunk[..n]);
                } else {
                    i.out.push(&chunk[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    true
}

/// Watch one attempt until its leader exits: returns the raw wait status.
fn watch(svc: &Svc, r: &mut Running) -> i32 {
    let (mut out_open, mut err_open) = (true, true);
    let mut chunk = vec![0u8; 64 * 1024];
    let status = loop {
        if let Some(st) = r.waiter.status() {
            break st;
        }
        let mut fds = vec![libc::pollfd { fd: r.waiter.ready.as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        if out_open {
            fds.push(libc::pollfd { fd: r.out.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        if err_open {
            fds.push(libc::pollfd { fd: r.err.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        // SAFETY: fds is a live Vec of pollfd and we pass its exact length.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 1000) };
        if out_open {
            out_open = drain(svc, &mut r.out, false, &mut chunk);
        }
        if err_open {
            err_open = drain(svc, &mut r.err, true, &mut chunk);
        }
    };
    // The leader is gone, so the service is: nothing of its group may linger (and hold its
    // ports or pipes). Then take what the pipes still hold, for a bounded moment.
    kill_group(r.pid, libc::SIGKILL);
    let until = Instant::now() + Duration::from_millis(300);
    while (out_open || err_open) && Instant::now() < until {
        if out_open {
            out_open = drain(svc, &mut r.out, false, &mut chunk);
        }
        if err_open {
            err_open = drain(svc, &mut r.err, true, &mut chunk);
        }
        if out_open || err_open {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    status
}

fn describe(status: i32) -> (Option<i32>, Option<i32>, String) {
    if libc::WIFEXITED(status) {
        let c = libc::WEXITSTATUS(status);
        (Some(c), None, format!("exited with status {c}"))
    } else if libc::WIFSIGNALED(status) {
        let s = libc::WTERMSIG(status);
        (Some(128 + s), Some(s), format!("killed by signal {s}"))
    } else {
        (Some(1), None, "ended".into())
    }
}

fn monitor(svc: Arc<Svc>, mut r: Running) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let status = watch(&svc, &mut r);
        let (code, signal, what) = describe(status);
        let mut i = lock(&svc.inner);
        i.running = false;
        i.pid = None;
        i.exit_code = code;
        i.signal = signal;
        i.ended_at = Some(Instant::now());
        if let Some((why, state)) = i.stopping.clone() {
            i.state = state;
            i.stop_reason = Some(why);
            svc.changed.notify_all();
            return;
        }
        let failed = code != Some(0) || signal.is_some();
        if !(failed && i.spec.restart_on_failure && i.restarts < i.spec.max_restarts.min(MAX_RESTARTS)) {
            i.state = if failed { ServicePhase::Failed } else { ServicePhase::Exited };
            i.stop_reason = Some(what);
            svc.changed.notify_all();
            return;
        }
        // Restart after a backoff; a stop during it ends the service instead. `restarts`
        // counts the runs that actually started again.
        i.state = ServicePhase::Starting;
        i.last_probe = Some(format!("{what}; restarting in {} ms", backoff.as_millis()));
        svc.changed.notify_all();
        let until = Instant::now() + backoff;
        while i.stopping.is_none() && Instant::now() < until {
            i = svc
                .changed
                .wait_timeout(i, until.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        if let Some((why, state)) = i.stopping.clone() {
            i.state = state;
            i.stop_reason = Some(why);
            svc.changed.notify_all();
            return;
        }
        i.restarts += 1;
        let (spec, cwd) = (i.spec.clone(), i.cwd.clone());
        drop(i);
        backoff = (backoff * 2).min(MAX_BACKOFF);
        match spawn(&spec, &cwd) {
            Ok(next) => {
                began(&svc, &next);
                r = next;
            }
            Err(e) => {
                let mut i = lock(&svc.inner);
                i.state = ServicePhase::Failed;
                i.stop_reason = Some(e.message);
                svc.changed.notify_all();
                return;
            }
        }
    }
}

/// Stop a live service: TERM to its group, KILL after `grace`; returns once it has ended (or
/// at once when it already had). `state` is what it ends as (`stopped`, or `failed` when the
/// agent stops it for not being ready).
fn terminate(svc: &Arc<Svc>, why: String, state: ServicePhase, grace: Duration) {
    let pid = {
        let mut i = lock(&svc.inner);
        if !i.state.is_live() {
            return;
        }
        if i.stopping.is_none() {
            i.stopping = Some((why.clone(), state));
        }
        if !i.running {
            // Between restarts: nothing runs; the monitor wakes and finishes the stop.
            svc.changed.notify_all();
            None
        } else {
            i.pid
        }
    };
    if let Some(pid) = pid {
        kill_group(pid, libc::SIGTERM);
        if !wait_ended(svc, grace) {
            kill_group(pid, libc::SIGKILL);
        }
    }
    wait_ended(svc, Duration::from_secs(10));
}

/// Wait until the service is no longer live; false when `limit` passed first.
fn wait_ended(svc: &Svc, limit: Duration) -> bool {
    let i = lock(&svc.inner);
    let (i, _) = svc.changed.wait_timeout_while(i, limit, |i| i.state.is_live()).unwrap_or_else(|e| e.into_inner());
    !i.state.is_live()
}

fn probe_loop(svc: Arc<Svc>, attempt: u64) {
    let (readiness, cwd, env, timeout, interval, grace) = {
        let i = lock(&svc.inner);
        let Some(r) = i.spec.readiness.clone() else { return };
        (
            r,
            i.cwd.clone(),
            i.spec.env.clone(),
            Duration::from_millis(i.spec.ready_timeout_ms.max(1)),
            Duration::from_millis(i.spec.ready_interval_ms.clamp(10, 60_000)),
            Duration::from_millis(i.spec.stop_grace_ms).min(MAX_GRACE),
        )
    };
    let deadline = Instant::now() + timeout;
    let current = |i: &Inner| i.attempt == attempt && i.state == ServicePhase::Starting && i.stopping.is_none();
    loop {
        if !current(&lock(&svc.inner)) {
            return;
        }
        let result = probe(&readiness, &cwd, &env, interval);
        let mut i = lock(&svc.inner);
        if !current(&i) {
            return;
        }
        match result {
            Ok(()) => {
                i.state = ServicePhase::Ready;
                i.ready_at = Some(Instant::now());
                i.last_probe = Some("ok".into());
                svc.changed.notify_all();
                return;
            }
            Err(e) => i.last_probe = Some(e),
        }
        let now = Instant::now();
        if now >= deadline {
            let last = i.last_probe.clone().unwrap_or_default();
            drop(i);
            let within = if timeout.as_millis() % 1000 == 0 {
                format!("{} s", timeout.as_secs())
            } else {
                format!("{} ms", timeout.as_millis())
            };
            let why = format!("not ready within {within} (last probe: {last})");
            terminate(&svc, why, ServicePhase::Failed, grace);
            return;
        }
        drop(i);
        std::thread::sleep(interval.min(deadline - now));
    }
}

/// One readiness check: Ok, or why not (one short line).
fn probe(r: &Readiness, cwd: &str, env: &[(String, String)], interval: Duration) -> Result<(), String> {
    let limit = PROBE_TIMEOUT.min(interval.max(Duration::from_millis(200)));
    match r {
        Readiness::File { path } => {
            let p = std::path::Path::new(cwd).join(path);
            if p.exists() {
                Ok(())
            } else {
                Err(format!("{} does not exist", p.display()))
            }
        }
        Readiness::Tcp { host, port } => {
            let (ip, port) = pyro_proto::split_host_port(&format!("{host}:{port}"), 0)?;
            std::net::TcpStream::connect_timeout(&(ip, port).into(), limit)
                .map(|_| ())
                .map_err(|e| format!("tcp {host}:{port}: {e}"))
        }
        Readiness::Http { url } => http_probe(url, limit),
        Readiness::Command { command } => {
            let req = ExecRequest {
                command: Command::Shell(command.clone()),
                cwd: Some(cwd.to_string()),
                env: env.to_vec(),
                timeout_ms: 10_000,
                max_output_bytes: 1024,
                progress_ms: 0,
            };
            let ctl = exec::Control::new().map_err(|e| sys::os_error("probe", &e).message)?;
            match exec::run(&req, &ctl, &mut |_| {}) {
                Ok((res, _)) if res.exit_code == 0 => Ok(()),
                Ok((res, out)) if res.timed_out => {
                    drop(out);
                    Err("the probe command timed out after 10 s".into())
                }
                Ok((res, out)) => {
                    let text = String::from_utf8_lossy(&out);
                    let last = text.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
                    let last: String = last.chars().filter(|c| !c.is_control()).take(160).collect();
                    Err(format!(
                        "the probe command exited with status {}{}",
                        res.exit_code,
                        if last.is_empty() { String::new() } else { format!(": {last}") }
                    ))
                }
                Err(e) => Err(e.message),
            }
        }
    }
}

/// A tiny HTTP/1.0 client: GET the URL, ready on a 2xx or 3xx status line.
fn http_probe(url: &str, limit: Duration) -> Result<(), String> {
    let (ip, port, path) = pyro_proto::parse_probe_url(url)?;
    let mut s = std::net::TcpStream::connect_timeout(&(ip, port).into(), limit).map_err(|e| format!("{url}: {e}"))?;
    s.set_read_timeout(Some(limit)).ok();
    s.set_write_timeout(Some(limit)).ok();
    let host = if ip.is_ipv6() { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") };
    let req = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: pyro-probe\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| format!("{url}: {e}"))?;
    let mut buf = [0u8; 512];
    let mut got = 0;
    while got < buf.len() && !buf[..got].contains(&b'\n') {
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("{url}: {e}")),
        }
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    let line = line.lines().next().unwrap_or("").trim();
    let code = line
        .strip_prefix("HTTP/")
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("{url}: not an HTTP response"))?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(format!("{url}: HTTP {code}"))
    }
}

#[cfg(test)]
mod tests {
    //! Pure parts only: spawning here would race `exec`'s test for the process-wide reaper
    //! (see the note there). Services are exercised against real VMs in pyro-cli's tests.

    use super::*;

    #[test]
    fn rings_keep_the_newest_bytes_and_count_the_rest() {
        let mut r = Ring::default();
        for _ in 0..3 {
            r.push(&vec![b'a'; RING_BYTES / 2 + 1]);
        }
        assert_eq!(r.buf.len(), RING_BYTES);
        assert_eq!(r.dropped(), (3 * (RING_BYTES / 2 + 1) - RING_BYTES) as u64);
        let mut big = vec![b'x'; RING_BYTES + 10];
        big.extend_from_slice(b"end");
        r.push(&big);
        assert_eq!(r.buf.len(), RING_BYTES);
        assert!(r.tail(None).ends_with(b"xend"));
    }

    #[test]
    fn tails_count_lines() {
        let mut r = Ring::default();
        r.push(b"one\ntwo\nthree\n");
        assert_eq!(r.tail(Some(2)), b"two\nthree\n");
        assert_eq!(r.tail(Some(10)), b"one\ntwo\nthree\n");
        assert_eq!(r.tail(Some(0)), b"");
        r.push(b"partial");
        assert_eq!(r.tail(Some(1)), b"partial");
        assert_eq!(r.tail(Some(2)), b"three\npartial");
    }

    #[test]
    fn bad_specs_are_refused() {
        let spec = |name: &str, readiness: Option<Readiness>| ServiceSpec {
            name: name.into(),
            command: Command::Shell("true".into()),
            cwd: None,
            env: vec![],
            readiness,
            ready_timeout_ms: 1000,
            ready_interval_ms: 100,
            restart_on_failure: false,
            max_restarts: 0,
            stop_grace_ms: 0,
        };
        assert!(check(&spec("ok", None)).is_ok());
        assert!(check(&spec("bad name", None)).is_err());
        assert!(check(&spec("x", Some(Readiness::Http { url: "https://x/".into() }))).is_err());
        assert!(check(&spec("x", Some(Readiness::Tcp { host: "db".into(), port: 5 }))).is_err());
        let mut s = spec("x", None);
        s.command = Command::Argv(vec![]);
        assert!(check(&s).is_err());
    }

    #[test]
    fn http_probe_reads_the_status_line() {
        use std::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for status in ["200 OK", "503 Busy", "302 Found"] {
                let (mut c, _) = l.accept().unwrap();
                let mut b = [0u8; 256];
                let _ = c.read(&mut b);
                let _ = c.write_all(format!("HTTP/1.0 {status}\r\n\r\n").as_bytes());
            }
        });
        let url = format!("http://127.0.0.1:{port}/h");
        assert_eq!(http_probe(&url, Duration::from_secs(2)), Ok(()));
        assert!(http_probe(&url, Duration::from_secs(2)).unwrap_err().contains("HTTP 503"));
        assert_eq!(http_probe(&url, Duration::from_secs(2)), Ok(()));
        server.join().unwrap();
        assert!(http_probe(&url, Duration::from_secs(2)).is_err(), "nothing listens any more");
    }
}
