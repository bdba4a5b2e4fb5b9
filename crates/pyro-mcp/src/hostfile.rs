//! Host files named by a user or a model (a `--text-file`, a patch file, a secret file, a seed
//! archive): opened once, checked on the opened descriptor, read within a cap.
//!
//! Checking a path and opening it again later lets it change in between (a symlink swapped in,
//! a file replaced by `/dev/zero` or a FIFO). So the file is opened first (non-blocking, so a
//! FIFO cannot hang the open; optionally `O_NOFOLLOW`), `fstat` on that descriptor decides
//! whether it is a regular file, and every later read uses the same descriptor.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Open `path` for reading and require a regular file, decided on the open descriptor.
/// `nofollow`: refuse a symlink as the last component (callers that resolved the path
/// already). Errors name `what` and the path; a missing file is `not_found`.
pub fn open_regular(path: &Path, what: &str, nofollow: bool) -> Result<File> {
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if nofollow {
        flags |= libc::O_NOFOLLOW;
    }
    let f =
        std::fs::OpenOptions::new().read(true).custom_flags(flags).open(path).map_err(|e| open_error(path, what, e))?;
    let meta = f.metadata().map_err(|e| open_error(path, what, e))?;
    if !meta.is_file() {
        return Err(Error::invalid(format!("{what} {} is not a regular file", path.display()))
            .hint("give a regular file (not a device, FIFO, socket or directory)"));
    }
    Ok(f)
}

fn open_error(path: &Path, what: &str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::not_found(format!("{what} {} does not exist", path.display())),
        Some(libc::ELOOP) => {
            Error::invalid(format!("{what} {} is a symlink (refused: it could point anywhere)", path.display()))
        }
        _ => Error::invalid(format!("{what} {}: {e}", path.display())),
    }
}

/// The whole content of a regular host file of at most `cap` bytes (`limit_exceeded` past it,
/// without reading more than `cap + 1` bytes, whatever the file claims or turns into).
pub fn read_bounded(path: &Path, what: &str, cap: u64) -> Result<Vec<u8>> {
    let f = open_regular(path, what, false)?;
    let too_big = |n: u64| Error::limit(format!("{what} {} is {n} bytes or more; the limit is {cap}", path.display()));
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > cap {
        return Err(too_big(len));
    }
    let mut v = Vec::new();
    f.take(cap + 1).read_to_end(&mut v).map_err(|e| Error::invalid(format!("{what} {}: {e}", path.display())))?;
    if v.len() as u64 > cap {
        return Err(too_big(v.len() as u64));
    }
    Ok(v)
}

/// The path an open descriptor really names (`/proc/self/fd/N`), for checks that must hold
/// for what was opened rather than for a name that may have changed since.
pub fn real_path(f: &File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).ok()
}

/// A reader over a shared descriptor at its own offset (`pread`): several passes over one
/// opened file without reopening it by name.
pub struct AtReader {
    file: Arc<File>,
    pos: u64,
}

impl AtReader {
    /// A reader of `file` from its first byte.
    pub fn new(file: Arc<File>) -> AtReader {
        AtReader { file, pos: 0 }
    }
}

impl Read for AtReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_oversized_files_are_refused() {
        let e = read_bounded(Path::new("/dev/zero"), "text file", 1024).unwrap_err();
        assert_eq!(e.code, crate::Code::InvalidArgument, "{e:?}");
        let dir = std::env::temp_dir().join(format!("pyro-hostfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert_eq!(read_bounded(&fifo, "text file", 1024).unwrap_err().code, crate::Code::InvalidArgument);
        std::fs::write(dir.join("big"), vec![b'x'; 2000]).unwrap();
        assert_eq!(read_bounded(&dir.join("big"), "text file", 1024).unwrap_err().code, crate::Code::LimitExceeded);
        assert_eq!(read_bounded(&dir.join("big"), "text file", 2000).unwrap().len(), 2000);
        std::os::unix::fs::symlink(dir.join("big"), dir.join("link")).unwrap();
        assert!(open_regular(&dir.join("link"), "seed", true).is_err());
        assert!(open_regular(&dir.join("link"), "seed", false).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
