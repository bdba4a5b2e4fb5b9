//! A minimal QMP client: connect to a VM's QMP socket, negotiate, run one command.
//! Used for live disk snapshots (freezing a workspace's seeded layer as its baseline).

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
