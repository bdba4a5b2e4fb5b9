//! A host-side connection to a VM's supervisor: send a request, get its reply.
//!
//! One request at a time per connection (callers that want parallel calls open more
//! connections; the supervisor multiplexes them onto the guest channel). Every call has a
//! deadline: the guest must send its reply, or the next piece of a streamed reply, within it
//! (a command's own timeout plus a grace for `exec`; [`control_timeout`] for everything else).
//! Streamed replies are capped before they are buffered. Whatever comes from the guest is
//! hostile input: lengths are checked against what was asked for, messages are clipped.
//!
//! A call abandoned half-way (deadline, cap, malformed reply) leaves frames of it in flight, so
//! the connection refuses further calls; the caller connects again.
//!
//! Calls send a [`Request`] and return its [`Reply`]; a guest `Error` reply becomes an
//! [`Error`] whose code is the wire's typed code (mapped in `error.rs`), never parsed from text.

use crate::error::{Code, Error, Result};
use pyro_proto::{
    encode, read_frame, ExecProgress, ExecRequest, ExecResult, FrameError, FsEntry, FsOp, GuestStream, HostStream,
    LineSplitter, Reply, Request, ToGuest, ToHost, WireError,
};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// Extra time an exec gets beyond its own timeout: the guest kills the command at its
/// timeout, then drains and replies.
const EXEC_GRACE: Duration = Duration::from_secs(15);
/// Default deadline for calls that are not commands.
const DEFAULT_CONTROL_TIMEOUT_S: u64 = 60;
/// Longest error message accepted from the guest (it is shown to users and models).
const MAX_GUEST_MESSAGE: usize = 2000;

/// Deadline for file operations, freeze/thaw, pings and shutdowns: the guest must answer (or
/// send the next piece of a streamed answer) within it. `PYRO_GUEST_TIMEOUT_S` (1-3600)
/// overrides the default of 60 s.
pub fn control_timeout() -> Duration {
    let s = std::env::var("PYRO_GUEST_TIMEOUT_S")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| (1..=3600).contains(s))
        .unwrap_or(DEFAULT_CONTROL_TIMEOUT_S);
    Duration::from_secs(s)
}

pub struct Client {
    stream: UnixStream,
    next_id: u32,
    /// Why this connection can no longer be used, after a call was abandoned half-way.
    broken: Option<String>,
    timeout: Duration,
    /// When set, a call in flight is cancelled in the guest once this is (see `recv`).
    cancel: Option<crate::Cancel>,
}

/// How often a waiting call looks at its [`crate::Cancel`].
const CANCEL_POLL: Duration = Duration::from_millis(100);
/// How long a cancelled call waits for the guest's final reply.
const CANCEL_GRACE: Duration = Duration::from_secs(20);

/// A running command's progress, as the guest reported it (`last_line` clipped).
#[derive(Debug, Clone)]
pub struct ExecTick {
    pub elapsed_ms: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub last_line: String,
}

/// What a file read returned: the reply header and the bytes.
pub struct FileData {
    pub size: u64,
    pub truncated: bool,
    pub binary: bool,
    pub mode: u32,
    pub content: Vec<u8>,
}

impl Client {
    pub fn connect(sock: &Path) -> Result<Client> {
        let stream = UnixStream::connect(sock)
            .map_err(|e| Error::guest(format!("cannot reach the VM supervisor at {}: {e}", sock.display())))?;
        Ok(Client { stream, next_id: 1, broken: None, timeout: control_timeout(), cancel: None })
    }

    /// Watch `cancel` during calls: once it is set, the running command is killed in the
    /// guest (a `Cancel` frame) and the call returns the guest's reply (`cancelled` set).
    pub fn set_cancel(&mut self, cancel: Option<crate::Cancel>) {
        self.cancel = cancel;
    }

    /// Wait until the connection is readable, or `left` passed; meanwhile, send `Cancel` for
    /// request `id` once the caller's flag is set. Returns the (possibly shortened) deadline.
    fn wait_readable(&mut self, id: u32, mut deadline: Instant, sent: &mut bool) -> Result<Instant> {
        use std::os::fd::AsRawFd;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(deadline);
            }
            let mut pfd = libc::pollfd { fd: self.stream.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            let ms = left.min(CANCEL_POLL).as_millis() as i32 + 1;
            // SAFETY: one live pollfd, length 1.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n != 0 {
                // Readable, closed or failed: read_frame finds out which.
                return Ok(deadline);
            }
            if !*sent && self.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
                *sent = true;
                self.send(id, &HostStream::Cancel.into(), &[])?;
                deadline = deadline.min(Instant::now() + CANCEL_GRACE);
            }
        }
    }

    fn id(&mut self) -> Result<u32> {
        if let Some(why) = &self.broken {
            return Err(Error::guest(format!("this VM connection was abandoned ({why})")).hint("connect again"));
        }
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        Ok(id)
    }

    fn timed_out(&mut self, what: &str, after: Duration) -> Error {
        self.broken = Some(format!("{what} timed out"));
        Error::new(Code::Timeout, format!("the guest did not answer {what} within {} s", after.as_secs()))
            .hint("the guest may be hung or overloaded; `pyro workspace reset ID` restarts its VM")
    }

    fn send(&mut self, id: u32, msg: &ToGuest, payload: &[u8]) -> Result<()> {
        let frame = encode(id, msg, payload).map_err(|e| {
            Error::limit(format!("the request is too large to send: {e}"))
                .hint("send less at once (fewer or smaller files, a shorter environment or command)")
        })?;
        self.stream.set_write_timeout(Some(self.timeout)).ok();
        self.stream.write_all(&frame).map_err(|e| {
            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                self.timed_out("while receiving data", self.timeout)
            } else {
                self.broken = Some("the supervisor went away".into());
                Error::guest(format!("the VM supervisor went away: {e}"))
            }
        })
    }

    /// The next frame of request `id`, within `idle` (frames of abandoned requests are skipped
    /// but do not extend the deadline).
    fn recv(&mut self, id: u32, idle: Duration, cancel_sent: &mut bool) -> Result<pyro_proto::Frame<ToHost>> {
        let mut deadline = Instant::now() + idle;
        loop {
            if self.cancel.is_some() {
                // Poll first: a read timeout in the middle of a frame would lose its bytes.
                deadline = self.wait_readable(id, deadline, cancel_sent)?;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timed_out("in time", idle));
            }
            self.stream.set_read_timeout(Some(left)).ok();
            match read_frame::<ToHost>(&mut self.stream) {
                Ok(Some(f)) if f.id == id => return Ok(f),
                Ok(Some(_)) => continue,
                Ok(None) => {
                    self.broken = Some("the VM stopped".into());
                    return Err(Error::guest("the VM stopped while the call was running"));
                }
                Err(FrameError::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    return Err(self.timed_out("in time", idle));
                }
                Err(e) => {
                    self.broken = Some("the connection failed".into());
                    return Err(Error::guest(format!("lost the VM connection: {e}")));
                }
            }
        }
    }

    /// One request: send `msg` (then `upload`, if any, as a stream), hand every streamed piece
    /// of the reply to `sink`, and return the final reply. A guest `Error` becomes an `Err`.
    fn request(
        &mut self,
        msg: &Request,
        upload: Option<&mut dyn Read>,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
        tick: &mut dyn FnMut(&ExecProgress),
        idle: Duration,
    ) -> Result<Reply> {
        let id = self.id()?;
        self.send(id, &ToGuest::Request(msg.clone()), &[])?;
        if let Some(r) = upload {
            let mut buf = vec![0u8; pyro_proto::CHUNK];
            loop {
                let n = read_full(r, &mut buf).map_err(|e| {
                    self.broken = Some("the upload failed".into());
                    Error::internal(format!("reading what to send: {e}"))
                })?;
                if n == 0 {
                    break;
                }
                self.send(id, &HostStream::Chunk.into(), &buf[..n])?;
            }
            self.send(id, &HostStream::End.into(), &[])?;
        }
        let mut cancel_sent = false;
        loop {
            let f = self.recv(id, idle, &mut cancel_sent)?;
            match f.msg {
                ToHost::Stream(GuestStream::Progress(p)) => tick(&p),
                ToHost::Stream(GuestStream::Chunk) => {
                    if let Err(e) = sink(&f.payload) {
                        self.broken = Some("a streamed reply was refused".into());
                        return Err(e);
                    }
                }
                ToHost::Reply(Reply::Error(e)) => return Err(guest_error(e)),
                ToHost::Reply(other) => return Ok(other),
            }
        }
    }

    /// `request` collecting the streamed reply in memory, at most `cap` bytes.
    fn request_capped(
        &mut self,
        msg: &Request,
        cap: u64,
        tick: &mut dyn FnMut(&ExecProgress),
        idle: Duration,
    ) -> Result<(Reply, Vec<u8>)> {
        let mut data = Vec::new();
        let reply = self.request(
            msg,
            None,
            &mut |piece| {
                if data.len() as u64 + piece.len() as u64 > cap {
                    return Err(Error::limit(format!("the guest sent more than the {cap} bytes asked for")));
                }
                data.extend_from_slice(piece);
                Ok(())
            },
            tick,
            idle,
        )?;
        Ok((reply, data))
    }

    /// A control call with a small reply (ping, freeze, thaw): no stream either way.
    pub fn call(&mut self, msg: &Request) -> Result<Reply> {
        self.call_with(msg, &[])
    }

    /// A control call whose request carries a payload in its one frame (at most 4 MiB).
    pub fn call_with(&mut self, msg: &Request, payload: &[u8]) -> Result<Reply> {
        self.call_payload(msg, payload, Duration::ZERO).map(|(reply, _)| reply)
    }

    /// A control call whose reply carries bytes in its own frame (at most 4 MiB): the reply
    /// and its payload.
    pub fn call_data(&mut self, msg: &Request) -> Result<(Reply, Vec<u8>)> {
        self.call_payload(msg, &[], Duration::ZERO)
    }

    /// A call whose reply carries its bytes in the same frame (shell reads, service logs),
    /// answered within `extra` beyond the control timeout (the guest may wait that long on
    /// purpose).
    pub fn call_payload(&mut self, msg: &Request, payload: &[u8], extra: Duration) -> Result<(Reply, Vec<u8>)> {
        let idle = self.timeout.saturating_add(extra);
        let id = self.id()?;
        self.send(id, &ToGuest::Request(msg.clone()), payload)?;
        let f = self.recv(id, idle, &mut false)?;
        match f.msg {
            ToHost::Reply(Reply::Error(e)) => Err(guest_error(e)),
            ToHost::Reply(reply) => Ok((reply, f.payload)),
            ToHost::Stream(_) => Err(self.malformed("a control call")),
        }
    }

    /// Run a command in the guest: the result header plus its stdout and stderr bytes.
    pub fn exec(&mut self, req: ExecRequest) -> Result<(ExecResult, Vec<u8>, Vec<u8>)> {
        self.exec_with(req, &mut |_| {})
    }

    /// `exec`, handing each progress report (sent every `req.progress_ms`) to `progress`.
    pub fn exec_with(
        &mut self,
        req: ExecRequest,
        progress: &mut dyn FnMut(&ExecTick),
    ) -> Result<(ExecResult, Vec<u8>, Vec<u8>)> {
        let idle = Duration::from_millis(req.timeout_ms).saturating_add(EXEC_GRACE);
        // Both streams, head and tail kept, plus their truncation markers.
        let cap = req.max_output_bytes.min(crate::limits::MAX_OUTPUT).saturating_mul(2).saturating_add(4096);
        let mut tick = |p: &ExecProgress| {
            progress(&ExecTick {
                elapsed_ms: p.elapsed_ms,
                stdout_bytes: p.stdout_bytes,
                stderr_bytes: p.stderr_bytes,
                last_line: crate::text::clip(&p.last_line, 200),
            });
        };
        let (reply, mut stdout) = self.request_capped(&Request::Exec(req), cap, &mut tick, idle)?;
        let Reply::ExecResult(res) = reply else {
            return Err(self.malformed("exec"));
        };
        let declared = res.stdout.len.checked_add(res.stderr.len);
        if declared != Some(stdout.len() as u64) {
            return Err(self.malformed("exec (output length)"));
        }
        let stderr = stdout.split_off(res.stdout.len as usize);
        Ok((res, stdout, stderr))
    }

    fn malformed(&mut self, what: &str) -> Error {
        self.broken = Some("malformed reply".into());
        Error::guest(format!("the guest sent a malformed reply to {what}"))
            .hint("`pyro workspace reset ID` restarts the workspace's VM")
    }

    /// Entries of a listing (`FsList`) or manifest (`FsManifest`): at most `max` of them, and
    /// whether the guest stopped at its limit.
    pub fn entries(&mut self, msg: &Request, max: u64) -> Result<(Vec<FsEntry>, bool)> {
        let mut out: Vec<FsEntry> = Vec::new();
        let truncated = self.entries_each(msg, max, &mut |e| out.push(e))?;
        Ok((out, truncated))
    }

    /// `entries`, handing each entry to `each` as it arrives instead of collecting them (an
    /// export sums a tree's sizes this way without holding its listing).
    pub fn entries_each(&mut self, msg: &Request, max: u64, each: &mut dyn FnMut(FsEntry)) -> Result<bool> {
        let idle = self.timeout;
        let mut got = 0u64;
        let mut lines = LineSplitter::new(pyro_proto::MAX_ENTRY_LINE);
        let reply = self.request(
            msg,
            None,
            &mut |piece| {
                lines
                    .push(piece, &mut |line| {
                        if got >= max {
                            return Err(format!("the guest listed more than the {max} entries asked for"));
                        }
                        let e: FsEntry = serde_json::from_slice(line).map_err(|e| format!("bad entry: {e}"))?;
                        got += 1;
                        each(e);
                        Ok(())
                    })
                    .map_err(|m| Error::guest(format!("the guest sent a malformed listing: {m}")))
            },
            &mut |_| {},
            idle,
        )?;
        match reply {
            Reply::FsEntries { count, truncated } if count == got => Ok(truncated),
            _ => Err(self.malformed("a listing")),
        }
    }

    /// Read a file (at most `max` bytes; with `nofollow`, a symlink's target).
    pub fn read_file(&mut self, path: &str, max: u64, nofollow: bool) -> Result<FileData> {
        self.read_file_at(path, 0, max, nofollow)
    }

    /// `read_file` from `offset` bytes into the file.
    pub fn read_file_at(&mut self, path: &str, offset: u64, max: u64, nofollow: bool) -> Result<FileData> {
        let idle = self.timeout;
        let msg = Request::FsRead { path: path.into(), max_bytes: max, nofollow, offset };
        let (reply, content) = self.request_capped(&msg, max, &mut |_| {}, idle)?;
        match reply {
            Reply::FsData { size, truncated, binary, mode } => Ok(FileData { size, truncated, binary, mode, content }),
            _ => Err(self.malformed("a file read")),
        }
    }

    /// Read many files in one round trip (`Request::FsReadMany`), in `paths`' order: each
    /// one's first `max_each` bytes, or None when it could not be read. Past `max_total`
    /// bytes the guest skips files; those are read one by one here.
    pub fn read_files(&mut self, paths: &[String], max_each: u64, max_total: u64) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = Vec::with_capacity(paths.len());
        for group in paths.chunks(pyro_proto::MAX_READ_MANY) {
            let idle = self.timeout;
            let msg = Request::FsReadMany { paths: group.to_vec(), max_each, max_total };
            // What the guest may send: max_total, plus one file that starts below it, plus
            // a length per path.
            let cap = max_total.saturating_add(max_each).saturating_add(8 * group.len() as u64);
            let (reply, data) = self.request_capped(&msg, cap, &mut |_| {}, idle)?;
            if !matches!(reply, Reply::FsReadManyDone { count } if count == group.len() as u64) {
                return Err(self.malformed("a read of many files"));
            }
            let mut rest = data.as_slice();
            for path in group {
                let Some((len, tail)) = rest.split_first_chunk::<8>() else {
                    return Err(self.malformed("a read of many files"));
                };
                let len = u64::from_le_bytes(*len);
                rest = tail;
                out.push(match len {
                    pyro_proto::READ_MANY_UNREADABLE => None,
                    pyro_proto::READ_MANY_SKIPPED => self.read_file(path, max_each, false).ok().map(|d| d.content),
                    n if n <= max_each && n as usize <= rest.len() => {
                        let (d, tail) = rest.split_at(n as usize);
                        rest = tail;
                        Some(d.to_vec())
                    }
                    _ => return Err(self.malformed("a read of many files")),
                });
            }
            if !rest.is_empty() {
                return Err(self.malformed("a read of many files"));
            }
        }
        Ok(out)
    }

    /// Apply file operations all or nothing; `payload` holds the `Write` ops' contents in op
    /// order. Returns (written, deleted).
    pub fn batch(&mut self, ops: Vec<FsOp>, payload: &[u8]) -> Result<(u64, u64)> {
        let idle = self.timeout;
        let mut data = payload;
        match self.request(&Request::FsBatch { ops }, Some(&mut data), &mut |_| Ok(()), &mut |_| {}, idle)? {
            Reply::FsBatchDone { written, deleted } => Ok((written, deleted)),
            _ => Err(self.malformed("a file batch")),
        }
    }

    /// Stream a tar archive into the guest at `dest`. `reader` is read in protocol chunks.
    pub fn unpack(
        &mut self,
        dest: &str,
        preserve_owners: bool,
        reader: &mut dyn std::io::Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(u64, u64)> {
        self.unpack_with(dest, preserve_owners, false, reader, progress)
    }

    /// `unpack`, optionally applying the stream as an OCI image layer onto the root file system
    /// at `dest` (whiteouts honoured, chrooted in the guest; see `Request::Unpack`).
    pub fn unpack_with(
        &mut self,
        dest: &str,
        preserve_owners: bool,
        oci_layer: bool,
        reader: &mut dyn std::io::Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(u64, u64)> {
        let idle = self.timeout;
        let mut counted = Counted { inner: reader, sent: 0, progress };
        let msg = Request::Unpack { dest: dest.into(), preserve_owners, oci_layer };
        match self.request(&msg, Some(&mut counted), &mut |_| Ok(()), &mut |_| {}, idle)? {
            Reply::Unpacked { entries, bytes } => Ok((entries, bytes)),
            _ => Err(self.malformed("an unpack")),
        }
    }

    /// Stream `path` out of the guest as a tar archive into `out`; returns (entries, bytes).
    pub fn tar_out(&mut self, path: &str, out: &mut dyn Write) -> Result<(u64, u64)> {
        let idle = self.timeout;
        let reply = self.request(
            &Request::TarOut { path: path.into() },
            None,
            &mut |piece| out.write_all(piece).map_err(|e| Error::internal(format!("writing archive: {e}"))),
            &mut |_| {},
            idle,
        )?;
        match reply {
            Reply::TarDone { entries, bytes } => Ok((entries, bytes)),
            _ => Err(self.malformed("an export")),
        }
    }

    /// Ask the supervisor to stop the VM, and wait (bounded) until it has: the socket closes.
    pub fn shutdown(&mut self) -> Result<()> {
        self.send(0, &Request::Shutdown.into(), &[])?;
        // The supervisor gives the guest 10 s to flush, then kills QEMU.
        self.stream.set_read_timeout(Some(Duration::from_secs(30))).ok();
        while let Ok(Some(_)) = read_frame::<ToHost>(&mut self.stream) {}
        Ok(())
    }
}

/// A reader that reports how much of it has been read.
struct Counted<'a> {
    inner: &'a mut dyn Read,
    sent: u64,
    progress: &'a mut dyn FnMut(u64),
}

impl Read for Counted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sent += n as u64;
        (self.progress)(self.sent);
        Ok(n)
    }
}

fn read_full(r: &mut dyn std::io::Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// A guest's (or the supervisor's) error reply as ours: its typed code, its message clipped
/// (it is peer text shown to users and models; `Error::new` folds it onto one line).
fn guest_error(e: WireError) -> Error {
    Error::new(e.code, crate::text::clip(&e.message, MAX_GUEST_MESSAGE))
}
