//! A host-side connection to a VM's supervisor: send a request, get its reply.
//!
//! One request at a time per connection (callers that want parallel calls open more
//! connections; the supervisor multiplexes them onto the guest channel).

use crate::error::{Code, Error, Result};
use pyro_proto::{encode, read_frame, Frame, Message};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;

pub struct Client {
    stream: UnixStream,
    next_id: u32,
}

impl Client {
    pub fn connect(sock: &Path) -> Result<Client> {
        let stream = UnixStream::connect(sock)
            .map_err(|e| Error::guest(format!("cannot reach the VM supervisor at {}: {e}", sock.display())))?;
        Ok(Client { stream, next_id: 1 })
    }

    fn send(&mut self, id: u32, msg: &Message, payload: &[u8]) -> Result<()> {
        self.stream
            .write_all(&encode(id, msg, payload))
            .map_err(|e| Error::guest(format!("the VM supervisor went away: {e}")))
    }

    fn recv(&mut self, id: u32) -> Result<Frame> {
        loop {
            match read_frame(&mut self.stream) {
                Ok(Some(f)) if f.id == id => return Ok(f),
                Ok(Some(_)) => continue, // a stale reply from an abandoned request
                Ok(None) => return Err(Error::guest("the VM stopped while the call was running")),
                Err(e) => return Err(Error::guest(format!("lost the VM connection: {e}"))),
            }
        }
    }

    /// Send one request and wait for its reply; a guest `Error` becomes an `Err`.
    pub fn call(&mut self, msg: &Message, payload: &[u8]) -> Result<Frame> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.send(id, msg, payload)?;
        let f = self.recv(id)?;
        if let Message::Error { code, message } = &f.msg {
            return Err(Error::new(code_from_str(code), message.clone()));
        }
        Ok(f)
    }

    /// Run a command in the guest: the result header plus its stdout and stderr bytes.
    pub fn exec(&mut self, req: pyro_proto::ExecRequest) -> Result<(pyro_proto::ExecResult, Vec<u8>, Vec<u8>)> {
        let frame = self.call(&Message::Exec(req), &[])?;
        let Message::ExecResult(res) = frame.msg else {
            return Err(Error::internal("unexpected reply to exec"));
        };
        let out_len = res.stdout.len as usize;
        if frame.payload.len() != out_len + res.stderr.len as usize {
            return Err(Error::internal("guest reply payload does not match its header"));
        }
        let mut stdout = frame.payload;
        let stderr = stdout.split_off(out_len);
        Ok((res, stdout, stderr))
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
    /// at `dest` (whiteouts honoured, chrooted in the guest; see `Message::Unpack`).
    pub fn unpack_with(
        &mut self,
        dest: &str,
        preserve_owners: bool,
        oci_layer: bool,
        reader: &mut dyn std::io::Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<(u64, u64)> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.send(id, &Message::Unpack { dest: dest.into(), preserve_owners, oci_layer }, &[])?;
        let mut buf = vec![0u8; pyro_proto::CHUNK];
        let mut sent = 0u64;
        loop {
            let n = read_full(reader, &mut buf).map_err(|e| Error::internal(format!("reading archive: {e}")))?;
            if n == 0 {
                break;
            }
            self.send(id, &Message::Chunk, &buf[..n])?;
            sent += n as u64;
            progress(sent);
        }
        self.send(id, &Message::End, &[])?;
        let f = self.recv(id)?;
        match f.msg {
            Message::Unpacked { entries, bytes } => Ok((entries, bytes)),
            Message::Error { code, message } => Err(Error::new(code_from_str(&code), message)),
            other => Err(Error::internal(format!("unexpected reply {other:?}"))),
        }
    }

    /// Stream `path` out of the guest as a tar archive into `out`; returns (entries, bytes).
    pub fn tar_out(&mut self, path: &str, out: &mut dyn Write) -> Result<(u64, u64)> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.send(id, &Message::TarOut { path: path.into() }, &[])?;
        loop {
            let f = self.recv(id)?;
            match f.msg {
                Message::Chunk => {
                    out.write_all(&f.payload).map_err(|e| Error::internal(format!("writing archive: {e}")))?
                }
                Message::TarDone { entries, bytes } => return Ok((entries, bytes)),
                Message::Error { code, message } => return Err(Error::new(code_from_str(&code), message)),
                other => return Err(Error::internal(format!("unexpected reply {other:?}"))),
            }
        }
    }

    /// Ask the supervisor to stop the VM, and wait until it has (the socket closes).
    pub fn shutdown(&mut self) -> Result<()> {
        self.send(0, &Message::Shutdown, &[])?;
        while let Ok(Some(_)) = read_frame(&mut self.stream) {}
        Ok(())
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

pub fn code_from_str(s: &str) -> Code {
    match s {
        "not_found" => Code::NotFound,
        "invalid_argument" => Code::InvalidArgument,
        "conflict" => Code::Conflict,
        "state" => Code::State,
        "guest_unavailable" => Code::GuestUnavailable,
        "timeout" => Code::Timeout,
        "limit_exceeded" => Code::LimitExceeded,
        _ => Code::Internal,
    }
}
