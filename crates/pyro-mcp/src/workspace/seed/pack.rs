//! Tar output: headers, directory/symlink/file entries, and the reader that verifies each
//! file still matches its planned size and sha256 while it is streamed.

use super::model::{DIR, SYMLINK};
use super::plan::{changed, Item, Plan};
use crate::error::Error;
use crate::error::Result;
use sha2::Digest;
use sha2::Sha256;
use std::io;
use std::io::Read;
use std::io::Write;
use tar::EntryType;

pub(super) fn header(ty: EntryType, mode: u32, mtime: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(ty);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

pub(super) fn write_error(e: io::Error) -> Error {
    Error::io("writing the seed tar", e)
}

pub(super) fn emit_dirs<W: Write>(b: &mut tar::Builder<W>, plan: &Plan) -> Result<()> {
    for (path, it) in plan.items.iter().filter(|(_, it)| it.entry.kind == DIR) {
        let mut h = header(EntryType::Directory, it.entry.mode, it.mtime, 0);
        b.append_data(&mut h, path, io::empty()).map_err(write_error)?;
    }
    Ok(())
}

pub(super) fn emit_symlinks<W: Write>(b: &mut tar::Builder<W>, plan: &Plan) -> Result<()> {
    for (path, it) in plan.items.iter().filter(|(_, it)| it.entry.kind == SYMLINK) {
        let mut h = header(EntryType::Symlink, 0o777, it.mtime, 0);
        let target = it.entry.target.as_deref().unwrap_or("");
        pyro_proto::tarlink::append_symlink(b, &mut h, path, target.as_bytes()).map_err(write_error)?;
    }
    Ok(())
}

/// Stream exactly `it.entry.size` bytes of `data` as the file `path`, checking the content
/// still hashes to what the validation pass recorded.
pub(super) fn emit_file<W: Write, R: Read + ?Sized>(
    b: &mut tar::Builder<W>,
    label: &str,
    path: &str,
    it: &Item,
    data: &mut R,
) -> Result<()> {
    let mut reader = VerifyReader::new(data, it.entry.size);
    let mut h = header(EntryType::Regular, it.entry.mode, it.mtime, it.entry.size);
    if let Err(e) = b.append_data(&mut h, path, &mut reader) {
        return Err(reader.error(label, path, e));
    }
    let sha = reader.finish(label, path)?;
    if it.entry.sha256.as_deref() != Some(sha.as_str()) {
        return Err(changed(label, path, "its content differs from the validation pass"));
    }
    Ok(())
}

pub(super) fn finish<W: Write>(b: tar::Builder<W>) -> Result<()> {
    let mut w = b.into_inner().map_err(write_error)?;
    w.flush().map_err(write_error)
}

/// Reads exactly `remaining` bytes from `inner`, hashing them; an early end is an error.
pub(super) struct VerifyReader<R> {
    pub(super) inner: R,
    pub(super) hasher: Sha256,
    pub(super) remaining: u64,
    pub(super) short: bool,
    pub(super) read_error: Option<String>,
}

impl<R: Read> VerifyReader<R> {
    pub(super) fn new(inner: R, size: u64) -> Self {
        VerifyReader { inner, hasher: Sha256::new(), remaining: size, short: false, read_error: None }
    }

    /// Turn an error out of a copy through this reader into ours: source changed, source
    /// unreadable, or (otherwise) the output failed.
    pub(super) fn error(&self, label: &str, path: &str, e: io::Error) -> Error {
        if self.short {
            changed(label, path, "it became shorter")
        } else if let Some(msg) = &self.read_error {
            Error::internal(format!("seed source {label}: reading {path}: {msg}"))
        } else {
            write_error(e)
        }
    }

    /// After the copy: the source must end here too; returns the hex sha256.
    pub(super) fn finish(mut self, label: &str, path: &str) -> Result<String> {
        if self.remaining != 0 {
            return Err(changed(label, path, "it became shorter"));
        }
        let mut one = [0u8; 1];
        loop {
            match self.inner.read(&mut one) {
                Ok(0) => break,
                Ok(_) => return Err(changed(label, path, "it grew")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::internal(format!("seed source {label}: reading {path}: {e}"))),
            }
        }
        Ok(hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for VerifyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let got = loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.read_error = Some(e.to_string());
                    return Err(e);
                }
            }
        };
        if got == 0 {
            self.short = true;
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the source ended early"));
        }
        self.hasher.update(&buf[..got]);
        self.remaining -= got as u64;
        Ok(got)
    }
}
