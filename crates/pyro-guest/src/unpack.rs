//! Unpack a tar stream sent by the host in `Chunk` frames into a directory in the guest.
//!
//! The agent's frame loop feeds chunks through a bounded channel, so at most a few MiB are in
//! guest memory whatever the archive's size. The tar crate refuses members that would land
//! outside the destination (absolute paths, `..`, symlinked parents).

use std::io::Read;
use std::sync::mpsc::Receiver;

pub struct ChanReader {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChanReader {
    pub fn new(rx: Receiver<Vec<u8>>) -> Self {
        ChanReader { rx, cur: Vec::new(), pos: 0 }
    }
}

impl Read for ChanReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(v) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Returns (entries, bytes of file data) on success.
pub fn unpack(reader: ChanReader, dest: &str, preserve_owners: bool) -> Result<(u64, u64), String> {
    std::fs::create_dir_all(dest).map_err(|e| format!("creating {dest}: {e}"))?;
    let mut ar = tar::Archive::new(reader);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(preserve_owners);
    ar.set_unpack_xattrs(preserve_owners);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    let (mut entries, mut bytes) = (0u64, 0u64);
    for entry in ar.entries().map_err(|e| format!("reading archive: {e}"))? {
        let mut entry = entry.map_err(|e| format!("reading archive: {e}"))?;
        let size = entry.header().size().unwrap_or(0);
        let path = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        let ok = entry.unpack_in(dest).map_err(|e| format!("unpacking {path}: {e}"))?;
        if !ok {
            return Err(format!("archive member {path} would land outside {dest}"));
        }
        entries += 1;
        bytes += size;
    }
    // SAFETY: plain sync.
    unsafe { libc::sync() };
    Ok((entries, bytes))
}
