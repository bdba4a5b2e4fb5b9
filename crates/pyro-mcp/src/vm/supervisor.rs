//! The per-VM supervisor: the parent of one QEMU, and the only process that talks to its guest.
//!
//! It runs as `pyro __supervise DIR`, detached (`setsid`) from whoever launched it, so a
//! workspace outlives the CLI call or MCP server that created it. QEMU gets
//! `PR_SET_PDEATHSIG`, so it never outlives the supervisor; when QEMU dies the supervisor
//! knows at once (it is the parent), records why in `state.json` and fails pending calls.
//!
//! Host clients connect to `supervisor.sock` (0600 in a 0700 dir; the peer's uid is checked)
//! and speak the same framed protocol as the guest. The supervisor rewrites request ids so
//! many clients share the one guest channel.
//!
//! Frames from the guest are hostile input: a malformed one means the channel can no longer be
//! trusted, so the VM is stopped and recorded `dead` with the reason (the next operation boots
//! it again from disk). No write blocks forever: a client that stops reading is dropped, and a
//! guest that stops reading its control port for [`GUEST_WRITE_TIMEOUT`] is declared hung.
//! An agent of another protocol version is refused at its `Hello` with the fix (every
//! version's `Hello` is recognisable, see `pyro_proto::announcement`).

use super::spec::{BootReport, VmSpec, VmState};
use pyro_proto::{
    encode, read_frame, read_raw_frame, ErrorCode, Frame, HostStream, Reply, Request, ToGuest, ToHost, WireError,
};
use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

type Conn = Arc<Mutex<UnixStream>>;

/// A guest that takes no bytes of a frame for this long is hung (its agent reads its port
/// continuously and cuts stalled transfers after 60 s).
const GUEST_WRITE_TIMEOUT: Duration = Duration::from_secs(120);
/// A client that takes no bytes of a reply for this long is dropped.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A pending guest request: which client connection asked, on it, under which id.
#[derive(Clone)]
struct Pending {
    client: u64,
    conn: Conn,
    id: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Write a frame to a client; an unencodable message becomes an error reply.
fn to_client(conn: &Conn, id: u32, msg: &ToHost, payload: &[u8]) -> bool {
    let frame = encode(id, msg, payload).or_else(|e| encode(id, &ToHost::from(WireError::limit(e.to_string())), &[]));
    match frame {
        Ok(f) => lock(conn).write_all(&f).is_ok(),
        Err(_) => false,
    }
}

struct Shared {
    dir: PathBuf,
    spec: VmSpec,
    qemu_pid: u32,
    started: Instant,
    boot_ms: AtomicU32,
    guest: Mutex<Option<UnixStream>>,
    pending: Mutex<HashMap<u32, Pending>>,
    next_client: std::sync::atomic::AtomicU64,
    next_id: AtomicU32,
    shutting_down: AtomicBool,
    /// A `Suspend` is saving the guest: new requests are refused (set under `pending`'s lock).
    suspending: AtomicBool,
    exited: (Mutex<Option<String>>, Condvar),
    clients: AtomicUsize,
    /// Where the first `Hello` goes: the guest's uptime, or why the agent is refused.
    ready_tx: Mutex<Option<std::sync::mpsc::Sender<std::result::Result<u64, String>>>>,
    /// Why the guest's network stack stopped, if it did.
    net_error: Mutex<Option<String>>,
    /// Ports published now, and where to hand the stack a new one (`PublishPort`).
    published: Mutex<Vec<crate::net::PublishedPort>>,
    publisher: Mutex<Option<std::sync::mpsc::Sender<crate::net::stack::Published>>>,
    /// Hears from the serial thread when the console is closed and its last bytes written.
    serial_done: Mutex<std::sync::mpsc::Receiver<()>>,
}

/// Entry point of `pyro __supervise DIR`. Never returns.
pub fn main(dir: &Path) -> ! {
    // SAFETY: umask only affects this process; sockets and files become owner-only. SIGPIPE is
    // ignored so that a launcher killed while we boot makes `report` fail (and we clean up)
    // instead of killing us with the VM dir left behind (`pyro` restores SIGPIPE's default).
    unsafe {
        libc::umask(0o077);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    // On record before any socket exists. The launcher records us too (under the launch
    // lock), but a launcher killed between spawning us and that write would leave a VM that
    // boots and serves with nothing naming its supervisor: its sockets would then look like a
    // dead VM's, and the VM count would miss it.
    let _ = crate::paths::write_atomic(&dir.join("supervisor.pid"), std::process::id().to_string().as_bytes());
    let spec: VmSpec = match std::fs::read(dir.join("spec.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()) {
        Some(s) => s,
        None => {
            report(&BootReport { ok: false, error: Some("unreadable VM spec".into()), ..empty_report() });
            std::process::exit(1);
        }
    };
    let started = Instant::now();
    crate::clock::trace("supervisor: spec read");
    // The network first: QEMU connects to net.sock as it starts, and a published port that
    // cannot be bound fails the boot before the guest runs.
    let net = match &spec.net {
        Some(n) => match crate::net::stack::prepare(dir, n) {
            Ok(p) => Some(p),
            Err(e) => {
                report(&BootReport { ok: false, error: Some(e), ..empty_report() });
                cleanup(dir, &spec);
                std::process::exit(1);
            }
        },
        None => None,
    };
    let published = net.as_ref().map(|p| p.published()).unwrap_or_default();
    let publisher = net.as_ref().map(|p| p.publisher());
    // The serial console: QEMU connects here as it starts; a thread keeps the output bounded.
    let serial_done = match super::serial::listen(dir) {
        Ok(done) => done,
        Err(e) => {
            report(&BootReport { ok: false, error: Some(e), ..empty_report() });
            cleanup(dir, &spec);
            std::process::exit(1);
        }
    };
    let log = std::fs::File::create(dir.join("qemu.log")).ok();
    let mut cmd = std::process::Command::new(&spec.qemu);
    cmd.args(&spec.args).stdin(std::process::Stdio::null());
    if let Some(l) = &log {
        cmd.stdout(l.try_clone().unwrap()).stderr(l.try_clone().unwrap());
    }
    // SAFETY: prctl is async-signal-safe; QEMU is killed if we die, whatever the cause.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            report(&BootReport { ok: false, error: Some(format!("cannot start QEMU: {e}")), ..empty_report() });
            cleanup(dir, &spec);
            std::process::exit(1);
        }
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let sh = Arc::new(Shared {
        dir: dir.to_path_buf(),
        qemu_pid: child.id(),
        spec,
        started,
        boot_ms: AtomicU32::new(0),
        guest: Mutex::new(None),
        pending: Mutex::new(HashMap::new()),
        next_client: std::sync::atomic::AtomicU64::new(1),
        next_id: AtomicU32::new(1),
        shutting_down: AtomicBool::new(false),
        suspending: AtomicBool::new(false),
        exited: (Mutex::new(None), Condvar::new()),
        clients: AtomicUsize::new(0),
        ready_tx: Mutex::new(Some(ready_tx)),
        net_error: Mutex::new(None),
        published: Mutex::new(published.clone()),
        publisher: Mutex::new(publisher),
        serial_done: Mutex::new(serial_done),
    });
    if let (Some(prepared), Some(spec)) = (net, sh.spec.net.clone()) {
        let sh = sh.clone();
        let deadline = Duration::from_millis(sh.spec.boot_timeout_ms);
        std::thread::spawn(move || {
            // Fail closed: if the stack stops, the guest's NIC leads nowhere; say so in status.
            if let Err(e) = prepared.run(spec, deadline) {
                *lock(&sh.net_error) = Some(format!("the guest network stopped: {e}"));
                let state = if sh.boot_ms.load(Ordering::SeqCst) == 0 { "booting" } else { "running" };
                write_state(&sh, state, None);
            }
        });
    }
    {
        let sh = sh.clone();
        std::thread::spawn(move || {
            let status = child.wait();
            let why = match status {
                Ok(s) => describe_exit(s),
                Err(e) => format!("lost QEMU: {e}"),
            };
            qemu_exited(&sh, why);
        });
    }
    install_signal_handlers(sh.clone());
    if let Some(memory) = sh.spec.restore.clone() {
        eprintln!("restore: QEMU started after {} ms", sh.started.elapsed().as_millis());
        crate::clock::trace("supervisor: qemu spawned");
        if let Err(e) = load_memory(&sh, &memory) {
            boot_failed(&sh, &format!("restoring the saved memory failed: {e}"));
        }
    }

    // Connect to the guest channel (QEMU creates the socket at startup) and wait for Hello.
    let deadline = started + Duration::from_millis(sh.spec.boot_timeout_ms);
    let ctl = sh.dir.join("ctl.sock");
    let stream = loop {
        // Bound first: in an `if let` the guard would live through the block, and
        // `boot_failed` takes the same lock (a QEMU that failed at once hung us here).
        let exited = lock(&sh.exited.0).clone();
        if let Some(why) = exited {
            boot_failed(&sh, &format!("QEMU exited during boot: {why}"));
        }
        if let Ok(s) = UnixStream::connect(&ctl) {
            break s;
        }
        if Instant::now() > deadline {
            boot_failed(&sh, "QEMU did not open its control socket");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let writer = match stream.try_clone() {
        Ok(w) => w,
        Err(e) => boot_failed(&sh, &format!("cannot use the control socket: {e}")),
    };
    writer.set_write_timeout(Some(GUEST_WRITE_TIMEOUT)).ok();
    *lock(&sh.guest) = Some(writer);
    {
        let sh = sh.clone();
        std::thread::spawn(move || guest_reader(sh, stream));
    }
    let hello = ToGuest::from(Request::Hello { protocol: pyro_proto::PROTOCOL_VERSION });
    // A restored guest's agent is up already: ask at once, and again soon if the bytes went
    // in before QEMU finished loading the saved state.
    let poll = if sh.spec.restore.is_some() {
        send_guest(&sh, 0, &hello, &[]);
        Duration::from_millis(100)
    } else {
        Duration::from_millis(500)
    };
    let uptime = loop {
        match ready_rx.recv_timeout(poll) {
            Ok(Ok(up)) => {
                eprintln!("boot: guest agent ready after {} ms", sh.started.elapsed().as_millis());
                crate::clock::trace("supervisor: agent ready");
                break up;
            }
            Ok(Err(why)) => boot_failed(&sh, &why),
            Err(_) => {
                let exited = lock(&sh.exited.0).clone();
                if let Some(why) = exited {
                    boot_failed(&sh, &format!("the VM stopped during boot: {why}"));
                }
                if Instant::now() > deadline {
                    boot_failed(&sh, &format!("the guest did not come up within {} s", sh.spec.boot_timeout_ms / 1000));
                }
                // If our first bytes were discarded when the agent opened its port, a fresh
                // Hello request gets the agent to announce itself again.
                send_guest(&sh, 0, &hello, &[]);
            }
        }
    };
    let boot_ms = started.elapsed().as_millis() as u32;
    sh.boot_ms.store(boot_ms, Ordering::SeqCst);

    let sock = sh.dir.join("supervisor.sock");
    let _ = std::fs::remove_file(&sock);
    let listener = match UnixListener::bind(&sock) {
        Ok(l) => l,
        Err(e) => boot_failed(&sh, &format!("cannot listen on {}: {e}", sock.display())),
    };
    write_state(&sh, "running", None);
    let ok = report(&BootReport {
        ok: true,
        error: None,
        serial_tail: None,
        boot_ms: boot_ms as u64,
        guest_uptime_ms: uptime,
        supervisor_pid: std::process::id(),
        qemu_pid: sh.qemu_pid,
        published,
    });
    if !ok && sh.spec.ephemeral {
        // The launcher is gone (interrupted while we booted): nobody will ever use this VM.
        teardown(&sh, "launcher went away");
    }
    if sh.spec.ephemeral {
        // A launcher that never connects must not leave a VM behind.
        let sh = sh.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(30));
            if sh.clients.load(Ordering::SeqCst) == 0 {
                teardown(&sh, "no client connected");
            }
        });
    }
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        if !same_user(&conn) {
            let mut c = conn;
            if let Ok(f) = encode(0, &ToHost::from(WireError::not_found("not your VM")), &[]) {
                let _ = c.write_all(&f);
            }
            continue;
        }
        sh.clients.fetch_add(1, Ordering::SeqCst);
        let sh = sh.clone();
        std::thread::spawn(move || client_loop(sh, conn));
    }
    teardown(&sh, "listener failed")
}

fn empty_report() -> BootReport {
    BootReport {
        ok: false,
        error: None,
        serial_tail: None,
        boot_ms: 0,
        guest_uptime_ms: 0,
        supervisor_pid: std::process::id(),
        qemu_pid: 0,
        published: Vec::new(),
    }
}

/// One JSON line on stdout for the launcher; returns false if nobody is listening.
fn report(r: &BootReport) -> bool {
    let mut line = serde_json::to_vec(r).unwrap();
    line.push(b'\n');
    let mut out = std::io::stdout().lock();
    let ok = out.write_all(&line).and_then(|_| out.flush()).is_ok();
    // Close stdout so the launcher's read ends even if it reads to EOF.
    // SAFETY: fd 1 is ours; later writes to it are errors we ignore.
    unsafe {
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null >= 0 {
            libc::dup2(null, 1);
            libc::close(null);
        }
    }
    ok
}

fn boot_failed(sh: &Arc<Shared>, why: &str) -> ! {
    sh.shutting_down.store(true, Ordering::SeqCst);
    kill_qemu(sh);
    wait_exited(sh, Duration::from_secs(5));
    // The console's last lines may still be on their way to the file.
    let _ = lock(&sh.serial_done).recv_timeout(Duration::from_secs(1));
    let tail = super::qemu::serial_tail(&sh.dir.join("serial.log"), 15);
    let qemu_log = super::qemu::serial_tail(&sh.dir.join("qemu.log"), 5);
    let tail = if qemu_log.is_empty() { tail } else { format!("{tail}\n{qemu_log}") };
    report(&BootReport {
        ok: false,
        error: Some(why.to_string()),
        serial_tail: Some(tail),
        boot_ms: sh.started.elapsed().as_millis() as u64,
        guest_uptime_ms: 0,
        supervisor_pid: std::process::id(),
        qemu_pid: sh.qemu_pid,
        published: Vec::new(),
    });
    if sh.spec.ephemeral {
        cleanup(&sh.dir, &sh.spec);
    } else {
        write_state(sh, "failed", Some(why.to_string()));
        remove_sockets(&sh.dir);
    }
    std::process::exit(1)
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(0), _) => "the guest powered off".to_string(),
        (Some(c), _) => format!("QEMU exited with status {c}"),
        (_, Some(sig)) => format!("QEMU was killed by signal {sig}"),
        _ => "QEMU exited".to_string(),
    }
}

fn qemu_exited(sh: &Arc<Shared>, why: String) {
    *lock(&sh.exited.0) = Some(why.clone());
    sh.exited.1.notify_all();
    if sh.shutting_down.load(Ordering::SeqCst) || sh.boot_ms.load(Ordering::SeqCst) == 0 {
        return; // teardown or the boot loop handles it
    }
    // An unexpected death: fail every pending call, record why, and go.
    fail_pending(sh, &format!("the VM stopped: {why}"));
    if sh.spec.ephemeral {
        cleanup(&sh.dir, &sh.spec);
    } else {
        write_state(sh, "dead", Some(why));
        remove_sockets(&sh.dir);
    }
    std::process::exit(0);
}

fn unavailable(message: impl Into<String>) -> ToHost {
    WireError::new(ErrorCode::GuestUnavailable, message).into()
}

fn fail_pending(sh: &Arc<Shared>, msg: &str) {
    let pending: Vec<_> = lock(&sh.pending).drain().collect();
    for (_, p) in pending {
        to_client(&p.conn, p.id, &unavailable(msg), &[]);
    }
}

/// The guest channel can no longer be trusted (malformed frame, agent stopped reading): stop
/// the VM at once (no polite shutdown through the channel) and record it dead with the
/// reason; a persistent workspace boots again on next use.
fn guest_failed(sh: &Arc<Shared>, why: &str) -> ! {
    stop(sh, why, false, "dead", 1)
}

fn wait_exited(sh: &Arc<Shared>, limit: Duration) {
    let g = lock(&sh.exited.0);
    let _unused = sh.exited.1.wait_timeout_while(g, limit, |e| e.is_none());
}

fn kill_qemu(sh: &Arc<Shared>) {
    if lock(&sh.exited.0).is_none() {
        // SAFETY: our own child; it has not been reaped (exited is None), so the pid is valid.
        unsafe { libc::kill(sh.qemu_pid as i32, libc::SIGKILL) };
    }
}

/// Stop the VM for good and exit. Ephemeral VMs lose everything; persistent ones keep their
/// disk and state (the caller decides what "stopped" means for it).
fn teardown(sh: &Arc<Shared>, why: &str) -> ! {
    stop(sh, why, true, "stopped", 0)
}

/// The one way out: (optionally) let the guest flush its disk, kill QEMU, fail what is
/// pending, then remove an ephemeral VM or record `state` for a persistent one, and exit.
fn stop(sh: &Arc<Shared>, why: &str, polite: bool, state: &str, code: i32) -> ! {
    if sh.shutting_down.swap(true, Ordering::SeqCst) {
        // Someone else is already stopping the VM; let them finish and exit the process.
        loop {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
    // No new clients from here: a call arriving now finds no socket and waits for this
    // supervisor to be gone (then boots the VM again) instead of being refused mid-teardown.
    let _ = std::fs::remove_file(sh.dir.join("supervisor.sock"));
    if polite && !sh.spec.ephemeral && lock(&sh.exited.0).is_none() {
        send_guest(sh, u32::MAX, &Request::Shutdown.into(), &[]);
        wait_exited(sh, Duration::from_secs(10));
    }
    kill_qemu(sh);
    wait_exited(sh, Duration::from_secs(5));
    fail_pending(sh, &format!("the VM was stopped: {why}"));
    if sh.spec.ephemeral {
        cleanup(&sh.dir, &sh.spec);
    } else {
        write_state(sh, state, Some(why.to_string()));
        remove_sockets(&sh.dir);
    }
    std::process::exit(code)
}

fn install_signal_handlers(sh: Arc<Shared>) {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) else { return };
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            teardown(&sh, &format!("signal {sig}"));
        }
    });
}

fn remove_sockets(dir: &Path) {
    for s in ["supervisor.sock", "ctl.sock", "qmp.sock", "serial.sock"] {
        let _ = std::fs::remove_file(dir.join(s));
    }
}

fn cleanup(dir: &Path, spec: &VmSpec) {
    for p in &spec.cleanup {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn write_state(sh: &Arc<Shared>, state: &str, reason: Option<String>) {
    let st = VmState {
        state: state.into(),
        reason,
        supervisor_pid: std::process::id(),
        qemu_pid: sh.qemu_pid,
        accel: sh.spec.accel.clone(),
        boot_ms: sh.boot_ms.load(Ordering::SeqCst) as u64,
        net_error: lock(&sh.net_error).clone(),
    };
    let _ = crate::paths::write_atomic(&sh.dir.join("state.json"), &serde_json::to_vec_pretty(&st).unwrap());
}

/// Forward a frame to the guest. False if there is no guest channel or the frame is over the
/// caps; a guest that stopped reading is declared hung (the VM is stopped).
fn send_guest(sh: &Arc<Shared>, id: u32, msg: &ToGuest, payload: &[u8]) -> bool {
    let Ok(frame) = encode(id, msg, payload) else { return false };
    let mut g = lock(&sh.guest);
    let Some(s) = g.as_mut() else { return false };
    match s.write_all(&frame) {
        Ok(()) => true,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            drop(g);
            let sh = sh.clone();
            // From another thread: the caller may hold locks the teardown needs.
            std::thread::spawn(move || {
                guest_failed(&sh, "the guest agent stopped reading its control port (hung guest)")
            });
            false
        }
        Err(_) => false,
    }
}

/// Why an agent of another protocol version is refused, and what fixes it. A restored guest
/// runs the agent that was saved with its memory; a booted one runs the `pyro-guest` binary
/// the initramfs was built from (rebuilt automatically whenever that binary changes).
fn version_refusal(a: &pyro_proto::Announcement, restored: bool) -> String {
    let agent =
        if a.agent_version.is_empty() { "unknown".to_string() } else { crate::text::clip(&a.agent_version, 40) };
    let fix = if restored {
        "the saved memory was made by another pyro version and cannot be resumed; boot from the disk \
         instead (`pyro workspace start` falls back to that by itself)"
    } else {
        "pyro-guest (beside the pyro binary, or $PYRO_GUEST_BIN) is from another build: run `make build` \
         (it builds both; the initramfs is rebuilt from the new agent on the next boot), or reinstall \
         pyro-mcp so that pyro and pyro-guest come from one release"
    };
    format!(
        "the guest agent (pyro-guest {agent}) speaks protocol {}, this pyro ({}) speaks protocol {}: {fix}",
        a.protocol,
        env!("CARGO_PKG_VERSION"),
        pyro_proto::PROTOCOL_VERSION
    )
}

fn guest_reader(sh: Arc<Shared>, mut stream: UnixStream) {
    loop {
        let raw = match read_raw_frame(&mut stream) {
            Ok(Some(f)) => f,
            // QEMU closed the channel: it is exiting; the waiter thread reports why.
            Ok(None) | Err(pyro_proto::FrameError::Io(_)) => return,
            Err(e) => {
                guest_malformed(&sh, &e);
                return;
            }
        };
        let booting = sh.boot_ms.load(Ordering::SeqCst) == 0;
        let msg = match raw.message::<ToHost>() {
            Ok(m) => m,
            // Another version's `Hello` (the one shape every version keeps): refused with the
            // fix while booting; afterwards, like any late `Hello`, it changes nothing.
            Err(e) => match pyro_proto::announcement(&raw.header) {
                Some(a) if booting && a.protocol != pyro_proto::PROTOCOL_VERSION => {
                    refuse_agent(&sh, &a);
                    return;
                }
                Some(_) if !booting => continue,
                _ => {
                    guest_malformed(&sh, &e);
                    return;
                }
            },
        };
        let frame = Frame { id: raw.id, msg, payload: raw.payload };
        if let ToHost::Reply(Reply::Hello(hello)) = &frame.msg {
            if booting && hello.protocol != pyro_proto::PROTOCOL_VERSION {
                let a =
                    pyro_proto::Announcement { protocol: hello.protocol, agent_version: hello.agent_version.clone() };
                refuse_agent(&sh, &a);
                return;
            }
            // The first one ends the boot; later ones change nothing.
            if let Some(tx) = lock(&sh.ready_tx).take() {
                let _ = tx.send(Ok(hello.uptime_ms));
            }
            continue;
        }
        // Stream frames (`Chunk`, `Progress`) precede the final reply of the same request.
        let target = if matches!(frame.msg, ToHost::Stream(_)) {
            lock(&sh.pending).get(&frame.id).cloned()
        } else {
            lock(&sh.pending).remove(&frame.id)
        };
        if let Some(p) = target {
            if !to_client(&p.conn, p.id, &frame.msg, &frame.payload) {
                // The client is gone or stuck: its commands stop, their results are dropped.
                forget_client(&sh, p.client);
            }
        }
    }
}

/// The boot fails: the agent speaks another protocol version.
fn refuse_agent(sh: &Arc<Shared>, a: &pyro_proto::Announcement) {
    if let Some(tx) = lock(&sh.ready_tx).take() {
        let _ = tx.send(Err(version_refusal(a, sh.spec.restore.is_some())));
    }
}

/// A frame the guest sent that this version cannot read: during boot the boot fails with it,
/// afterwards the channel is no longer trusted and the VM is stopped.
fn guest_malformed(sh: &Arc<Shared>, e: &pyro_proto::FrameError) {
    if sh.boot_ms.load(Ordering::SeqCst) == 0 {
        if let Some(tx) = lock(&sh.ready_tx).take() {
            let _ = tx.send(Err(format!("the guest agent sent a malformed frame during boot: {e}")));
        }
        return;
    }
    guest_failed(sh, &format!("the guest agent sent a malformed frame ({e})"));
}

fn same_user(conn: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: u32::MAX, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt with a correctly sized ucred buffer.
    let rc = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    // SAFETY: getuid has no preconditions.
    rc == 0 && cred.uid == unsafe { libc::getuid() }
}

fn client_loop(sh: Arc<Shared>, conn: UnixStream) {
    let client = sh.next_client.fetch_add(1, Ordering::SeqCst);
    let reader = conn.try_clone();
    conn.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT)).ok();
    let writer: Conn = Arc::new(Mutex::new(conn));
    if let Ok(mut reader) = reader {
        serve_client(&sh, client, &mut reader, &writer);
    }
    // Whatever this client still waited for is dropped when it arrives, and commands it
    // started stop (as a command over ssh ends with its connection).
    forget_client(&sh, client);
    let left = sh.clients.fetch_sub(1, Ordering::SeqCst) - 1;
    if left == 0 && sh.spec.ephemeral {
        teardown(&sh, "owner disconnected");
    }
}

/// Drop a client's pending requests and cancel them in the guest (the agent ignores a
/// `Cancel` for anything but a running command).
fn forget_client(sh: &Arc<Shared>, client: u64) {
    let gone: Vec<u32> = {
        let mut pending = lock(&sh.pending);
        let ids = pending.iter().filter(|(_, p)| p.client == client).map(|(g, _)| *g).collect();
        pending.retain(|_, p| p.client != client);
        ids
    };
    if gone.is_empty() {
        return;
    }
    // On its own thread: the caller may be the guest reader, which must never wait on a
    // write to the guest (the guest may itself be waiting for us to read).
    let sh = sh.clone();
    std::thread::spawn(move || {
        for gid in gone {
            send_guest(&sh, gid, &HostStream::Cancel.into(), &[]);
        }
    });
}

fn serve_client(sh: &Arc<Shared>, client: u64, reader: &mut UnixStream, writer: &Conn) {
    let not_running = || unavailable("the VM is not running");
    // Client stream ids -> guest ids, for the Chunk/End frames that follow an upload.
    let mut streams: HashMap<u32, u32> = HashMap::new();
    while let Ok(Some(Frame { id, msg, payload })) = read_frame::<ToGuest>(reader) {
        let req = match msg {
            ToGuest::Stream(HostStream::Cancel) => {
                // The client's request `id` -> the guest's id; the reply still comes as usual.
                let gid = lock(&sh.pending).iter().find(|(_, p)| p.client == client && p.id == id).map(|(g, _)| *g);
                if let Some(gid) = gid {
                    send_guest(sh, gid, &HostStream::Cancel.into(), &[]);
                }
                continue;
            }
            ToGuest::Stream(s @ (HostStream::Chunk | HostStream::End)) => {
                let Some(&gid) = streams.get(&id) else { continue };
                if s == HostStream::End {
                    streams.remove(&id);
                }
                if !send_guest(sh, gid, &s.into(), &payload) {
                    streams.remove(&id);
                    lock(&sh.pending).remove(&gid);
                    to_client(writer, id, &not_running(), &[]);
                }
                continue;
            }
            ToGuest::Request(req) => req,
        };
        match req {
            Request::PublishPort { guest_port, host_port } => {
                let reply = match publish_port(sh, guest_port, host_port) {
                    Ok(p) => {
                        Reply::PortPublished { host: p.host, host_port: p.host_port, guest_port: p.guest_port }.into()
                    }
                    Err(e) => e.into(),
                };
                to_client(writer, id, &reply, &[]);
            }
            Request::Suspend { path } => {
                let (sh2, w) = (sh.clone(), writer.clone());
                // On its own thread: saving takes a while and ends this process on success.
                std::thread::spawn(move || suspend(&sh2, &w, id, &path));
            }
            Request::Fork { path, layer } => {
                let (sh2, w) = (sh.clone(), writer.clone());
                std::thread::spawn(move || fork(&sh2, &w, id, &path, &layer));
            }
            Request::Shutdown => {
                let sh2 = sh.clone();
                let w = writer.clone();
                // Reply only once QEMU is gone and files are removed, so callers can rely on it.
                std::thread::spawn(move || {
                    to_client(&w, id, &Reply::Ok.into(), &[]);
                    teardown(&sh2, "shutdown requested");
                });
                // Give the reply a moment to be written before the process exits.
                std::thread::sleep(Duration::from_millis(50));
            }
            other => {
                if lock(&sh.exited.0).is_some() || sh.shutting_down.load(Ordering::SeqCst) {
                    to_client(writer, id, &not_running(), &[]);
                    continue;
                }
                let gid = sh.next_id.fetch_add(1, Ordering::SeqCst);
                {
                    // Checked under the lock `suspend` sets the flag under: a request is
                    // either refused here or waited for by the suspend.
                    let mut pending = lock(&sh.pending);
                    if sh.suspending.load(Ordering::SeqCst) {
                        drop(pending);
                        let m =
                            WireError::new(ErrorCode::State, "the workspace is stopping (its memory is being saved)");
                        to_client(writer, id, &m.into(), &[]);
                        continue;
                    }
                    pending.insert(gid, Pending { client, conn: writer.clone(), id });
                }
                if other.opens_stream() {
                    streams.insert(id, gid);
                }
                if !send_guest(sh, gid, &other.into(), &payload) {
                    lock(&sh.pending).remove(&gid);
                    streams.remove(&id);
                    to_client(writer, id, &not_running(), &[]);
                }
            }
        }
    }
}

/// How long a `Suspend` waits for requests in flight before it gives up.
const SUSPEND_DRAIN: Duration = Duration::from_secs(5);
/// How long saving the memory may take (a 1 GiB guest takes well under a second here).
const SUSPEND_TIMEOUT: Duration = Duration::from_secs(600);

/// `Suspend`: save the running guest's memory and devices to `path` and end the VM as
/// stopped. Requests in flight are waited for (briefly), new ones refused; a failed save
/// leaves the VM running as it was. On success the reply goes out once QEMU is gone and the
/// file is complete on disk, then the supervisor exits.
fn suspend(sh: &Arc<Shared>, w: &Conn, id: u32, path: &str) {
    let fail = |e: WireError| {
        to_client(w, id, &e.into(), &[]);
    };
    if let Err(e) = quiesce(sh, "stopped and started", "stop") {
        return fail(e);
    }
    let started = Instant::now();
    match save_memory(sh, Path::new(path)) {
        Ok(bytes) => {
            let ms = started.elapsed().as_millis() as u64;
            sh.shutting_down.store(true, Ordering::SeqCst);
            kill_qemu(sh);
            wait_exited(sh, Duration::from_secs(5));
            write_state(sh, "stopped", Some("stopped by request; memory saved".into()));
            remove_sockets(&sh.dir);
            to_client(w, id, &Reply::Suspended { bytes, ms }.into(), &[]);
            std::process::exit(0);
        }
        Err(e) => {
            sh.suspending.store(false, Ordering::SeqCst);
            fail(WireError::internal(format!("saving the guest's memory failed: {e}; the workspace keeps running")));
        }
    }
}

/// Refuse new requests and wait (briefly) for those in flight: the guest is then idle as far
/// as clients go. On error nothing changed. `what` and `verb` word the errors.
fn quiesce(sh: &Arc<Shared>, what: &str, verb: &str) -> std::result::Result<(), WireError> {
    if sh.spec.ephemeral {
        return Err(WireError::invalid(format!("a throwaway VM cannot be {what}")));
    }
    {
        let _pending = lock(&sh.pending);
        if sh.suspending.swap(true, Ordering::SeqCst) {
            return Err(WireError::new(ErrorCode::Conflict, "the workspace is already being stopped or forked"));
        }
    }
    let deadline = Instant::now() + SUSPEND_DRAIN;
    loop {
        let n = lock(&sh.pending).len();
        if n == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            sh.suspending.store(false, Ordering::SeqCst);
            return Err(WireError::new(
                ErrorCode::Conflict,
                format!("{n} request(s) still running in the workspace; wait for them or cancel them, then {verb}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `Fork`: with the guest paused, switch its disk to the empty overlay `layer` and save its
/// memory to `path`; then let it run on, whatever happened. The pause makes the frozen layer
/// and the saved memory one moment (QEMU drains the disk when it stops the guest), so the
/// copy needs no file-system freeze. After the migration QEMU has let go of its images;
/// `cont` takes them back.
fn fork(sh: &Arc<Shared>, w: &Conn, id: u32, path: &str, layer: &str) {
    if let Err(e) = quiesce(sh, "forked", "fork") {
        to_client(w, id, &e.into(), &[]);
        return;
    }
    let started = Instant::now();
    let mut paused_ms = 0;
    // One QMP connection for the steps of the pause (QEMU's monitor serves one client).
    let result = super::qmp::Qmp::connect(&sh.dir.join("qmp.sock")).map_err(|e| e.message).and_then(|mut q| {
        q.execute("stop", serde_json::json!({})).map_err(|e| e.message)?;
        let migrated = q
            .execute(
                "blockdev-snapshot-sync",
                serde_json::json!({"device": "root", "snapshot-file": layer, "format": "qcow2", "mode": "existing"}),
            )
            .map_err(|e| format!("switching the disk: {e}"))
            .and_then(|_| MemoryFile::create(Path::new(path)))
            .and_then(|f| migrate_into(sh, &mut q, &f.file).map(|()| f));
        let resumed = q.execute("cont", serde_json::json!({})).map_err(|e| format!("resuming the guest: {e}"));
        paused_ms = started.elapsed().as_millis() as u64;
        crate::clock::trace("supervisor: fork source resumed");
        // The source runs on while the saved memory is made durable. (Left to the page cache
        // instead, its writeback competed with the next steps: forks measured slower.)
        let saved = migrated.and_then(MemoryFile::finish);
        resumed?;
        saved
    });
    sh.suspending.store(false, Ordering::SeqCst);
    let reply: ToHost = match result {
        Ok(bytes) => Reply::Suspended { bytes, ms: paused_ms }.into(),
        Err(e) => WireError::internal(format!("forking the guest failed: {e}")).into(),
    };
    let _ = to_client(w, id, &reply, &[]);
}

/// Leave RAM in a shared file out of the migration stream (warm templates: the file is the
/// RAM), or not; both ends must agree, and the stream records it.
fn set_ignore_shared(q: &mut super::qmp::Qmp, on: bool) -> std::result::Result<(), String> {
    q.execute(
        "migrate-set-capabilities",
        serde_json::json!({"capabilities": [{"capability": "x-ignore-shared", "state": on}]}),
    )
    .map(|_| ())
    .map_err(|e| e.message)
}

/// Feed a QEMU started with `-incoming defer` the saved state in `memory` (through a
/// descriptor, as the save). The guest runs once it is loaded; the Hello loop waits for that.
fn load_memory(sh: &Arc<Shared>, memory: &Path) -> std::result::Result<(), String> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(memory).map_err(|e| format!("opening {}: {e}", memory.display()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut q = loop {
        match super::qmp::Qmp::connect(&sh.dir.join("qmp.sock")) {
            Ok(q) => break q,
            Err(e) if Instant::now() > deadline => return Err(e.message),
            Err(_) => {
                if let Some(why) = lock(&sh.exited.0).clone() {
                    return Err(format!("QEMU exited: {why}"));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    };
    if sh.spec.restore_ignore_shared {
        set_ignore_shared(&mut q, true)?;
    }
    q.pass_fd("pyro-memory", file.as_raw_fd()).map_err(|e| e.message)?;
    eprintln!("restore: QMP ready after {} ms", sh.started.elapsed().as_millis());
    crate::clock::trace("supervisor: qmp ready, fd passed");
    q.execute("migrate-incoming", serde_json::json!({"uri": "fd:pyro-memory"})).map_err(|e| e.message)?;
    eprintln!("restore: migrate-incoming issued after {} ms", sh.started.elapsed().as_millis());
    crate::clock::trace("supervisor: migrate-incoming issued");
    // QEMU carries the source's run state over: state saved from a paused guest (a fork's)
    // loads paused. Let it run once loaded; the Hello loop waits for its agent meanwhile.
    let sh2 = sh.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline && lock(&sh2.exited.0).is_none() {
            match q.execute("query-status", serde_json::json!({})) {
                Ok(st) if st["status"] == "inmigrate" => std::thread::sleep(Duration::from_millis(3)),
                Ok(st) if st["status"] == "paused" => {
                    let _ = q.execute("cont", serde_json::json!({}));
                    eprintln!("restore: resumed a guest saved paused after {} ms", sh2.started.elapsed().as_millis());
                    return;
                }
                _ => return,
            }
        }
    });
    Ok(())
}

/// Migrate the running VM into `path.part`, make it durable, and rename it to `path`. QEMU
/// flushes the disk when the migration completes and leaves the guest paused. Returns the
/// file's size.
fn save_memory(sh: &Arc<Shared>, path: &Path) -> std::result::Result<u64, String> {
    let f = MemoryFile::create(path)?;
    let migrated = super::qmp::Qmp::connect(&sh.dir.join("qmp.sock"))
        .map_err(|e| e.message)
        .and_then(|mut q| migrate_into(sh, &mut q, &f.file));
    migrated.and_then(|()| f.finish())
}

/// A memory file being written: `path.part` until `finish` renames it (dropped unfinished,
/// the part is removed).
struct MemoryFile {
    file: std::fs::File,
    part: PathBuf,
    path: PathBuf,
    done: bool,
}

impl MemoryFile {
    fn create(path: &Path) -> std::result::Result<MemoryFile, String> {
        let part = PathBuf::from(format!("{}.part", path.display()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&part)
            .map_err(|e| format!("creating {}: {e}", part.display()))?;
        Ok(MemoryFile { file, part, path: path.to_path_buf(), done: false })
    }

    /// fsync, rename into place, fsync the directory; the file's size.
    fn finish(mut self) -> std::result::Result<u64, String> {
        self.file.sync_all().map_err(|e| format!("writing {}: {e}", self.part.display()))?;
        std::fs::rename(&self.part, &self.path).map_err(|e| format!("renaming {}: {e}", self.part.display()))?;
        self.done = true;
        if let Some(d) = self.path.parent() {
            crate::paths::sync_dir(d).map_err(|e| e.message)?;
        }
        std::fs::metadata(&self.path).map(|m| m.len()).map_err(|e| e.to_string())
    }
}

impl Drop for MemoryFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

/// Migrate the VM's state into `file` through a descriptor handed to QEMU, and wait until
/// QEMU says it is complete (bounded).
fn migrate_into(sh: &Arc<Shared>, q: &mut super::qmp::Qmp, file: &std::fs::File) -> std::result::Result<(), String> {
    use std::os::fd::AsRawFd;
    // The default bandwidth cap (128 MiB/s) is for networks; a file takes what it can.
    q.execute("migrate-set-parameters", serde_json::json!({"max-bandwidth": 1u64 << 40})).map_err(|e| e.message)?;
    // Always said: a VM restored from a template has the capability on from its restore, and
    // a stream saved with it on cannot be loaded without it (stop/start and fork save the
    // whole RAM, which is private there).
    set_ignore_shared(q, sh.spec.save_ignore_shared)?;
    q.pass_fd("pyro-memory", file.as_raw_fd()).map_err(|e| e.message)?;
    q.execute("migrate", serde_json::json!({"uri": "fd:pyro-memory"})).map_err(|e| e.message)?;
    let start = Instant::now();
    loop {
        let st = q.execute("query-migrate", serde_json::json!({})).map_err(|e| e.message)?;
        match st["status"].as_str().unwrap_or("") {
            "completed" => return Ok(()),
            "failed" | "cancelled" => {
                return Err(st["error-desc"].as_str().unwrap_or("the migration failed").to_string())
            }
            _ if start.elapsed() > SUSPEND_TIMEOUT => {
                let _ = q.execute("migrate_cancel", serde_json::json!({}));
                return Err(format!("not done within {} s", SUSPEND_TIMEOUT.as_secs()));
            }
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Publish one more guest port on 127.0.0.1 while the VM runs (a service's `--publish`). A
/// guest port published already is answered with its mapping when the host port agrees.
fn publish_port(
    sh: &Arc<Shared>,
    guest_port: u16,
    host_port: u16,
) -> std::result::Result<crate::net::PublishedPort, WireError> {
    let policy = sh.spec.net.as_ref().map(|n| n.options.policy).unwrap_or_default();
    if policy != crate::net::NetworkPolicy::EgressPublishedPorts {
        return Err(WireError::invalid(
            "publishing a port needs a workspace with the network policy egress+published-ports",
        ));
    }
    if guest_port == 0 {
        return Err(WireError::invalid("the guest port must be 1-65535"));
    }
    let mut published = lock(&sh.published);
    if let Some(p) = published.iter().find(|p| p.guest_port == guest_port) {
        if host_port == 0 || host_port == p.host_port {
            return Ok(p.clone());
        }
        return Err(WireError::new(
            ErrorCode::Conflict,
            format!("guest port {guest_port} is already published on 127.0.0.1:{}", p.host_port),
        ));
    }
    if published.len() >= crate::net::MAX_PUBLISHED {
        return Err(WireError::limit(format!("at most {} published ports", crate::net::MAX_PUBLISHED)));
    }
    let not_running = || WireError::new(ErrorCode::State, "the guest network is not running");
    let Some(tx) = lock(&sh.publisher).clone() else {
        return Err(not_running());
    };
    let l = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, host_port)).map_err(|e| {
        WireError::new(ErrorCode::Conflict, format!("host port 127.0.0.1:{host_port} is not available: {e}"))
    })?;
    let port = l.local_addr().map(|a| a.port()).map_err(|e| WireError::internal(format!("published port: {e}")))?;
    tx.send((l, guest_port)).map_err(|_| not_running())?;
    let p = crate::net::PublishedPort { host: "127.0.0.1".into(), host_port: port, guest_port, protocol: "tcp".into() };
    published.push(p.clone());
    Ok(p)
}
