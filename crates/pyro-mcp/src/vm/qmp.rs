//! A minimal QMP client: connect to a VM's QMP socket, negotiate, run commands.
//! Used for live disk snapshots (freezing a workspace's seeded layer as its baseline) and for
//! saving a stopped workspace's memory (`migrate` to a file descriptor passed with `getfd`).

use crate::error::{Error, Result};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    pub fn connect(sock: &Path) -> Result<Qmp> {
        let s = UnixStream::connect(sock)
            .map_err(|e| Error::guest(format!("cannot reach QMP at {}: {e}", sock.display())))?;
        s.set_read_timeout(Some(Duration::from_secs(30))).ok();
        let writer = s.try_clone().map_err(|e| Error::internal(format!("QMP socket: {e}")))?;
        let mut q = Qmp { reader: BufReader::new(s), writer };
        q.read_msg()?; // greeting
        q.execute("qmp_capabilities", json!({}))?;
        Ok(q)
    }

    fn read_msg(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).map_err(|e| Error::guest(format!("QMP read: {e}")))? == 0 {
            return Err(Error::guest("QMP connection closed"));
        }
        serde_json::from_str(&line).map_err(|e| Error::internal(format!("bad QMP message: {e}")))
    }

    /// Run a command; events that arrive meanwhile are skipped.
    pub fn execute(&mut self, cmd: &str, args: Value) -> Result<Value> {
        let msg = json!({"execute": cmd, "arguments": args});
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(b'\n');
        self.writer.write_all(&bytes).map_err(|e| Error::guest(format!("QMP write: {e}")))?;
        self.reply(cmd)
    }

    /// `getfd`: hand QEMU an open file under `name` (then usable as `fd:NAME`). The descriptor
    /// travels with the command's bytes in one `sendmsg` (SCM_RIGHTS), as QMP requires.
    pub fn pass_fd(&mut self, name: &str, fd: std::os::fd::RawFd) -> Result<()> {
        let msg = json!({"execute": "getfd", "arguments": {"fdname": name}});
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(b'\n');
        send_with_fd(&self.writer, &bytes, fd).map_err(|e| Error::guest(format!("QMP getfd: {e}")))?;
        self.reply("getfd").map(|_| ())
    }

    fn reply(&mut self, cmd: &str) -> Result<Value> {
        loop {
            let v = self.read_msg()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(Error::internal(format!(
                    "QMP {cmd} failed: {}",
                    e["desc"].as_str().unwrap_or("unknown error")
                )));
            }
        }
    }
}

/// One `sendmsg` carrying `data` and the descriptor `fd` (SCM_RIGHTS).
fn send_with_fd(sock: &UnixStream, data: &[u8], fd: std::os::fd::RawFd) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header that we fill below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space;
    // SAFETY: msg_control points at `space` bytes, enough for one header and one int, so
    // CMSG_FIRSTHDR is non-null and CMSG_DATA points inside `control`; the unaligned write
    // does not assume the buffer's alignment. `iov` and `control` outlive the sendmsg call.
    let sent = unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut libc::c_int, fd);
        libc::sendmsg(sock.as_raw_fd(), &msg, 0)
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if (sent as usize) < data.len() {
        return Err(std::io::Error::other("short write"));
    }
    Ok(())
}
