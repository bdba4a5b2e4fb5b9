//! The guest side of the control channel: find the `pyro.ctl` virtio-serial port, announce
//! ourselves with `Hello`, then answer framed requests. Each request runs on its own thread,
//! so a long exec never blocks a ping or a second exec; replies carry the request's id.
//!
//! Robustness rules: a reply that cannot be encoded becomes an error reply (the host is never
//! left waiting on a frame we refused to send); a handler that panics is answered with an
//! `internal` error and the agent goes on; a request that finds the guest out of threads,
//! file descriptors or memory is answered with `limit_exceeded` (never a panic in this loop:
//! we are PID 1, and our exit is the guest's); the writer lock is only held while one frame is
//! written, never while a reply is being built, and every lock here is poison-tolerant;
//! inbound streams whose consumer stalls are cut after a bound instead of blocking the read
//! loop forever.

use crate::{exec, fs, init, net, reaper, service, shell, sys, unpack};
use pyro_proto::{
    encode, read_frame, AgentMode, ChunkWriter, ExecProgress, FsEntry, GuestStream, Hello, HostStream, Reply, Request,
    ToGuest, ToHost, WireError, PROTOCOL_VERSION,
};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

type Writer = Arc<Mutex<File>>;

/// Inbound streams (unpack, file batches) open at once; more are refused.
const MAX_STREAMS: usize = 64;
/// How long the read loop waits for a slow stream consumer before cutting that stream.
const STREAM_STALL: Duration = Duration::from_secs(60);

fn find_port() -> Option<String> {
    let dir = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    for entry in dir.flatten() {
        let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
        if name.trim() == pyro_proto::CONTROL_PORT_NAME {
            return Some(format!("/dev/{}", entry.file_name().to_string_lossy()));
        }
    }
    None
}

fn open_port() -> File {
    for _ in 0..2000 {
        if let Some(p) = find_port() {
            if let Ok(f) = std::fs::OpenOptions::new().read(true).write(true).open(&p) {
                return f;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    init::fatal("control port pyro.ctl not found")
}

/// The writer (or any lock here), even if a thread panicked while holding it (a frame is
/// written with one `write_all`, so the port is never left mid-frame by a panic elsewhere).
fn lock<W>(w: &Mutex<W>) -> MutexGuard<'_, W> {
    w.lock().unwrap_or_else(|e| e.into_inner())
}

/// Send one frame. A message over the protocol caps is replaced by an error reply.
/// (Generic over the writer so unit tests can capture frames in memory.)
fn reply<W: Write>(w: &Mutex<W>, id: u32, msg: impl Into<ToHost>, payload: &[u8]) {
    let Some(frame) = encode_reply(id, &msg.into(), payload) else { return };
    // A failed write means the host went away; the next read will tell the loop.
    let _ = lock(w).write_all(&frame);
}

/// The frame for a reply, or for a `limit_exceeded` error in its place when the reply is over
/// the protocol caps (never a panic, and the host still gets an answer to its request id).
fn encode_reply(id: u32, msg: &ToHost, payload: &[u8]) -> Option<Vec<u8>> {
    match encode(id, msg, payload) {
        Ok(f) => Some(f),
        Err(e) => encode(id, &ToHost::from(WireError::limit(format!("the reply is too large: {e}"))), &[]).ok(),
    }
}

/// A `Write` that streams bytes to the host as `Chunk` frames of request `id`.
fn chunk_writer<W: Write>(w: &Arc<Mutex<W>>, id: u32) -> ChunkWriter<impl FnMut(&[u8]) -> std::io::Result<()>> {
    let w = w.clone();
    ChunkWriter::new(move |data: &[u8]| {
        let frame = encode(id, &ToHost::from(GuestStream::Chunk), data).map_err(std::io::Error::other)?;
        lock(&w).write_all(&frame)
    })
}

/// Run `handler` on its own thread; whatever it returns (or a panic) is answered. A guest
/// that cannot make the thread answers `limit_exceeded` at once; the request never ran.
fn spawn_request(w: &Writer, id: u32, handler: impl FnOnce(&Writer) -> (Reply, Vec<u8>) + Send + 'static) -> bool {
    let w2 = w.clone();
    let spawned = sys::spawn_thread("request", move || {
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handler(&w2)));
        match out {
            Ok((msg, payload)) => reply(&w2, id, msg, &payload),
            Err(_) => reply(&w2, id, WireError::internal("the guest agent failed while handling this request"), &[]),
        }
    });
    match spawned {
        Ok(_) => true,
        Err(e) => {
            reply(w, id, sys::os_error("handling the request", &e), &[]);
            false
        }
    }
}

/// A handler's result as its reply.
fn answer(r: Result<(Reply, Vec<u8>), WireError>) -> (Reply, Vec<u8>) {
    r.unwrap_or_else(|e| (Reply::Error(e), Vec::new()))
}

/// Hand one chunk to a stream's consumer, waiting a bounded time if it is slow. False when
/// the consumer is gone or stalled (the caller then drops the stream).
fn feed(tx: &SyncSender<Vec<u8>>, mut data: Vec<u8>) -> bool {
    let deadline = Instant::now() + STREAM_STALL;
    loop {
        match tx.try_send(data) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(d)) => {
                if Instant::now() > deadline {
                    return false;
                }
                data = d;
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

/// The agent's state between frames: the port, open upload streams and running commands.
struct Agent {
    writer: Writer,
    mode: AgentMode,
    /// Open inbound streams (unpack, batch contents), by request id.
    streams: HashMap<u32, SyncSender<Vec<u8>>>,
    /// Running commands, by request id, for `Cancel`.
    running: Arc<Mutex<HashMap<u32, Arc<exec::Control>>>>,
}

pub fn serve(mode: AgentMode) -> ! {
    let port = open_port();
    let writer: Writer = Arc::new(Mutex::new(port.try_clone().unwrap_or_else(|e| init::fatal(&format!("port: {e}")))));
    // Now, while the guest has room: every command and service needs it.
    if let Err(e) = reaper::start() {
        init::fatal(&format!("starting the reaper: {e}"));
    }
    let mut agent = Agent { writer, mode, streams: HashMap::new(), running: Arc::new(Mutex::new(HashMap::new())) };
    reply(&agent.writer, 0, Reply::Hello(agent.hello()), &[]);
    let mut reader = port;
    loop {
        let frame = match read_frame::<ToGuest>(&mut reader) {
            Ok(Some(f)) => f,
            Ok(None) => {
                // Host side not connected (yet, or any more): wait for it.
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            Err(pyro_proto::FrameError::Protocol(m)) => {
                sys::console(&format!("protocol error: {m}"));
                continue;
            }
            Err(_) => {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        match frame.msg {
            ToGuest::Stream(s) => agent.stream(frame.id, s, frame.payload),
            ToGuest::Request(r) => agent.request(frame.id, r, frame.payload),
        }
    }
}

impl Agent {
    fn hello(&self) -> Hello {
        Hello {
            protocol: PROTOCOL_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_ms: sys::uptime_ms(),
            mode: self.mode,
        }
    }

    /// A frame for a request in flight.
    fn stream(&mut self, id: u32, s: HostStream, payload: Vec<u8>) {
        match s {
            HostStream::Chunk => {
                if let Some(tx) = self.streams.get(&id) {
                    if !feed(tx, payload) {
                        // The consumer failed (and replied) or stalled: drop the rest.
                        self.streams.remove(&id);
                    }
                }
            }
            HostStream::End => {
                self.streams.remove(&id);
            }
            HostStream::Cancel => {
                if let Some(ctl) = lock(&self.running).get(&id) {
                    ctl.cancel();
                }
            }
        }
    }

    /// A new request: answered here (quick ones) or on a thread of its own.
    fn request(&mut self, id: u32, req: Request, payload: Vec<u8>) {
        let w = &self.writer;
        if req.opens_stream() && self.streams.len() >= MAX_STREAMS {
            reply(w, id, WireError::limit("too many transfers in progress"), &[]);
            return;
        }
        match req {
            Request::Hello { .. } => reply(w, id, Reply::Hello(self.hello()), &[]),
            Request::Ping => reply(w, id, Reply::Pong, &[]),
            Request::Exec(req) => self.exec(id, req),
            Request::Unpack { dest, preserve_owners, oci_layer } => {
                let (tx, rx) = std::sync::mpsc::sync_channel(4);
                let spawned = spawn_request(w, id, move |_| {
                    let reader = unpack::ChanReader::new(rx);
                    let result = if oci_layer {
                        unpack::unpack_layer(reader, &dest, preserve_owners)
                    } else {
                        // A /workspace destination must be a real directory beneath it.
                        fs::unpack_dest(&dest)
                            .map_err(|e| e.message)
                            .and_then(|d| unpack::unpack(reader, &d, preserve_owners))
                    };
                    match result {
                        Ok((entries, bytes)) => (Reply::Unpacked { entries, bytes }, vec![]),
                        Err(m) => (Reply::Error(WireError::invalid(m)), vec![]),
                    }
                });
                if spawned {
                    self.streams.insert(id, tx);
                }
            }
            Request::FsBatch { ops } => {
                let (tx, rx) = std::sync::mpsc::sync_channel(4);
                let spawned = spawn_request(w, id, move |_| {
                    let mut reader = unpack::ChanReader::new(rx);
                    answer(
                        fs::batch(&ops, &mut reader)
                            .map(|(written, deleted)| (Reply::FsBatchDone { written, deleted }, vec![])),
                    )
                });
                if spawned {
                    self.streams.insert(id, tx);
                }
            }
            Request::NetConfig { mac, address, gateway, nameservers, env } => {
                let certs = payload;
                spawn_request(w, id, move |_| {
                    let req = net::Request {
                        mac: &mac,
                        address: &address,
                        gateway: &gateway,
                        nameservers: &nameservers,
                        env: &env,
                        certs: &certs,
                    };
                    answer(
                        net::configure(&req)
                            .map(|r| (Reply::NetReady { interface: r.interface, ca_bundle: r.ca_bundle }, vec![])),
                    )
                });
            }
            req @ (Request::FsList { .. }
            | Request::FsRead { .. }
            | Request::FsReadMany { .. }
            | Request::FsManifest { .. }
            | Request::TarOut { .. }
            | Request::Freeze
            | Request::Thaw) => {
                spawn_request(w, id, move |w| answer(fs_request(w, id, req)));
            }
            req @ (Request::ShellOpen { .. }
            | Request::ShellRead { .. }
            | Request::ShellWrite { .. }
            | Request::ShellSignal { .. }
            | Request::ShellResize { .. }
            | Request::ShellList
            | Request::ShellClose { .. }) => {
                spawn_request(w, id, move |_| answer(shell::handle(req, &payload)));
            }
            req @ (Request::ServiceStart(_)
            | Request::ServiceStatus { .. }
            | Request::ServiceLogs { .. }
            | Request::ServiceStop { .. }) => {
                spawn_request(w, id, move |_| service::handle(req));
            }
            Request::Shutdown => {
                reply(w, id, Reply::Ok, &[]);
                sys::power_off();
            }
            Request::Identity { unix_ns, hostname, machine_id } => {
                // Clock first: the reseed and the machine-id file are then stamped right.
                let r = sys::set_clock(unix_ns)
                    .map_err(|e| format!("setting the clock: {e}"))
                    .and_then(|_| sys::reseed_rng(&payload).map_err(|e| format!("reseeding the RNG: {e}")))
                    .and_then(|_| {
                        sys::set_identity(&hostname, &machine_id).map_err(|e| format!("setting the identity: {e}"))
                    });
                match r {
                    Ok(()) => reply(w, id, Reply::Ok, &[]),
                    Err(m) => reply(w, id, WireError::invalid(m), &[]),
                }
            }
            Request::SetClock { unix_ns } => match sys::set_clock(unix_ns) {
                Ok(()) => reply(w, id, Reply::Ok, &[]),
                Err(e) => reply(w, id, sys::os_error("setting the clock", &e), &[]),
            },
            // Answered by the supervisor; one that reaches the agent was sent to the wrong peer.
            other @ (Request::PublishPort { .. } | Request::Suspend { .. } | Request::Fork { .. }) => {
                reply(w, id, WireError::invalid(format!("{} is not a guest agent request", other.name())), &[])
            }
        }
    }

    /// `Exec`: on its own thread, registered for `Cancel` while it runs.
    fn exec(&mut self, id: u32, req: pyro_proto::ExecRequest) {
        let w = &self.writer;
        let ctl = match exec::Control::new() {
            Ok(c) => Arc::new(c),
            Err(e) => {
                reply(w, id, sys::os_error("starting the command", &e), &[]);
                return;
            }
        };
        lock(&self.running).insert(id, ctl.clone());
        let running = self.running.clone();
        let spawned = spawn_request(w, id, move |w| {
            let tick_w = w.clone();
            let mut tick = |t: exec::Tick| {
                let m = GuestStream::Progress(ExecProgress {
                    elapsed_ms: t.elapsed_ms,
                    stdout_bytes: t.stdout_bytes,
                    stderr_bytes: t.stderr_bytes,
                    last_line: t.last_line,
                });
                reply(&tick_w, id, m, &[]);
            };
            let out = exec::run(&req, &ctl, &mut tick);
            lock(&running).remove(&id);
            match out {
                Ok((res, bytes)) => {
                    let mut out = chunk_writer(w, id);
                    match out.write_all(&bytes).and_then(|_| out.flush()) {
                        Ok(()) => (Reply::ExecResult(res), vec![]),
                        Err(e) => (Reply::Error(WireError::internal(format!("sending output: {e}"))), vec![]),
                    }
                }
                Err(e) => (Reply::Error(e), vec![]),
            }
        });
        if !spawned {
            lock(&self.running).remove(&id);
        }
    }
}

/// File-system requests; each returns its final reply (streamed data has been sent by then).
fn fs_request(w: &Writer, id: u32, req: Request) -> fs::FsResult<(Reply, Vec<u8>)> {
    Ok(match req {
        Request::FsList { path, recursive, max_entries } => {
            let mut out = chunk_writer(w, id);
            let (count, truncated) =
                fs::list(&path, recursive, max_entries, fs::Hashing::None, &mut |e| send_line(&mut out, &e))?;
            out.flush().map_err(|e| fs::internal(format!("sending entries: {e}")))?;
            (Reply::FsEntries { count, truncated }, vec![])
        }
        Request::FsManifest { path, max_entries, full_scan } => {
            let mut out = chunk_writer(w, id);
            let hashing = if full_scan { fs::Hashing::Full } else { fs::Hashing::Cached };
            let (count, truncated) = fs::list(&path, true, max_entries, hashing, &mut |e| send_line(&mut out, &e))?;
            out.flush().map_err(|e| fs::internal(format!("sending entries: {e}")))?;
            (Reply::FsEntries { count, truncated }, vec![])
        }
        Request::FsRead { path, max_bytes, nofollow, offset } => {
            let r = fs::read(&path, offset, max_bytes, nofollow)?;
            let mut out = chunk_writer(w, id);
            out.write_all(&r.data)
                .and_then(|_| out.flush())
                .map_err(|e| fs::internal(format!("sending {path}: {e}")))?;
            (Reply::FsData { size: r.size, truncated: r.truncated, binary: r.binary, mode: r.mode }, vec![])
        }
        Request::FsReadMany { paths, max_each, max_total } => {
            if paths.len() > pyro_proto::MAX_READ_MANY {
                return Err(fs::invalid(format!("at most {} paths per read", pyro_proto::MAX_READ_MANY)));
            }
            let mut out = chunk_writer(w, id);
            let mut sent = 0u64;
            for path in &paths {
                let piece = if sent >= max_total {
                    Err(pyro_proto::READ_MANY_SKIPPED)
                } else {
                    fs::read(path, 0, max_each, false).map(|r| r.data).map_err(|_| pyro_proto::READ_MANY_UNREADABLE)
                };
                let (len, data) = match &piece {
                    Ok(d) => (d.len() as u64, d.as_slice()),
                    Err(marker) => (*marker, &[][..]),
                };
                sent += data.len() as u64;
                out.write_all(&len.to_le_bytes())
                    .and_then(|_| out.write_all(data))
                    .map_err(|e| fs::internal(format!("sending {path}: {e}")))?;
            }
            out.flush().map_err(|e| fs::internal(format!("sending files: {e}")))?;
            (Reply::FsReadManyDone { count: paths.len() as u64 }, vec![])
        }
        Request::TarOut { path } => {
            let mut out = chunk_writer(w, id);
            let (entries, bytes) = fs::tar_out(&path, &mut out)?;
            out.flush().map_err(|e| fs::internal(format!("sending archive: {e}")))?;
            (Reply::TarDone { entries, bytes }, vec![])
        }
        Request::Freeze => {
            fs::freeze(true)?;
            (Reply::Ok, vec![])
        }
        Request::Thaw => {
            fs::freeze(false)?;
            (Reply::Ok, vec![])
        }
        _ => return Err(fs::invalid("unexpected file-system request")),
    })
}

/// One entry as a JSON line into a chunked stream.
fn send_line(out: &mut impl Write, e: &FsEntry) -> fs::FsResult<()> {
    let mut line = serde_json::to_vec(e).map_err(|e| fs::internal(format!("encoding entry: {e}")))?;
    line.push(b'\n');
    out.write_all(&line).map_err(|e| fs::internal(format!("sending entries: {e}")))
}

#[cfg(test)]
mod tests {
    //! The agent's outbound framing, written into memory and decoded with the protocol's own
    //! `read_frame`, as the host would.

    use super::*;
    use pyro_proto::{EntryKind, ErrorCode, Frame, CHUNK, MAX_HEADER, MAX_PAYLOAD};

    fn frames(buf: &[u8]) -> Vec<Frame<ToHost>> {
        let mut r = buf;
        let mut out = Vec::new();
        while let Some(f) = read_frame::<ToHost>(&mut r).unwrap() {
            out.push(f);
        }
        out
    }

    fn sink() -> Arc<Mutex<Vec<u8>>> {
        Arc::new(Mutex::new(Vec::new()))
    }

    #[test]
    fn reply_round_trips() {
        let w = sink();
        reply(&w, 7, Reply::Pong, &[]);
        reply(&w, 8, Reply::FsData { size: 3, truncated: false, binary: false, mode: 0o644 }, b"abc");
        let got = frames(&lock(&w));
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].id, &got[0].msg), (7, &ToHost::Reply(Reply::Pong)));
        assert_eq!(got[1].id, 8);
        assert!(matches!(got[1].msg, ToHost::Reply(Reply::FsData { size: 3, .. })));
        assert_eq!(got[1].payload, b"abc");
    }

    fn assert_limit_error(f: &Frame<ToHost>, id: u32) {
        assert_eq!(f.id, id);
        assert!(f.payload.is_empty());
        match &f.msg {
            ToHost::Reply(Reply::Error(WireError { code, message })) => {
                assert_eq!(*code, ErrorCode::LimitExceeded);
                assert!(message.contains("too large"), "{message}");
            }
            other => panic!("expected an error frame, got {other:?}"),
        }
    }

    #[test]
    fn oversized_replies_become_limit_errors() {
        let w = sink();
        // Payload over the per-frame cap.
        reply(&w, 1, Reply::Ok, &vec![0u8; MAX_PAYLOAD + 1]);
        // Header over the cap (a huge message), which must not be echoed back in the error.
        let huge = ToHost::from(WireError::internal("m".repeat(MAX_HEADER + 1)));
        reply(&w, 2, huge.clone(), &[]);
        // Exactly at the payload cap is fine.
        reply(&w, 3, Reply::Ok, &vec![1u8; MAX_PAYLOAD]);
        let got = frames(&lock(&w));
        assert_eq!(got.len(), 3);
        assert_limit_error(&got[0], 1);
        assert_limit_error(&got[1], 2);
        assert_eq!((got[2].id, &got[2].msg, got[2].payload.len()), (3, &ToHost::Reply(Reply::Ok), MAX_PAYLOAD));
        assert!(encode_reply(4, &huge, &[]).is_some_and(|f| f.len() < 1024));
    }

    #[test]
    fn chunk_writer_cuts_streams_into_chunk_frames() {
        let w = sink();
        let data: Vec<u8> = (0..CHUNK * 2 + CHUNK / 2).map(|i| (i % 251) as u8).collect();
        let mut out = chunk_writer(&w, 9);
        // Odd-sized writes, so pieces straddle chunk boundaries.
        for piece in data.chunks(333_333) {
            out.write_all(piece).unwrap();
        }
        out.flush().unwrap();
        // A flush with nothing buffered sends nothing (no empty Chunk frames).
        out.flush().unwrap();
        drop(out);
        reply(&w, 9, Reply::TarDone { entries: 1, bytes: data.len() as u64 }, &[]);
        let got = frames(&lock(&w));
        let sizes: Vec<usize> = got.iter().map(|f| f.payload.len()).collect();
        assert_eq!(sizes, [CHUNK, CHUNK, CHUNK / 2, 0]);
        assert!(got.iter().all(|f| f.id == 9));
        assert!(got[..3].iter().all(|f| f.msg == ToHost::Stream(GuestStream::Chunk)));
        assert!(matches!(got[3].msg, ToHost::Reply(Reply::TarDone { .. })));
        let joined: Vec<u8> = got[..3].iter().flat_map(|f| f.payload.iter().copied()).collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn listing_lines_decode() {
        let w = sink();
        let e =
            FsEntry { path: "a\nb".into(), kind: EntryKind::File, mode: 0o644, size: 1, target: None, sha256: None };
        let mut out = chunk_writer(&w, 5);
        send_line(&mut out, &e).unwrap();
        send_line(&mut out, &e).unwrap();
        out.flush().unwrap();
        drop(out);
        let got = frames(&lock(&w));
        assert_eq!(got.len(), 1);
        // A newline inside a name is escaped by JSON, so records stay one per line.
        let lines: Vec<&[u8]> = got[0].payload.split(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(serde_json::from_slice::<FsEntry>(lines[0]).unwrap(), e);
        assert!(lines[2].is_empty());
    }
}
