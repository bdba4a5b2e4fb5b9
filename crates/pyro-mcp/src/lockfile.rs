//! Advisory file locks (`flock`): the per-workspace mutation lock, environment and template
//! build locks, spare claims, the launch lock. Held until the returned file is dropped, and
//! released by the kernel when a holder dies, so a `kill -9` never leaves a lock behind.

use crate::error::{Context, Error, Result};
use std::path::Path;

/// An exclusive advisory lock held until the returned file is dropped.
pub fn lock(path: &Path) -> Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f = open_lock(path)?;
    // SAFETY: flock takes no pointers; `f` keeps the fd open for the call.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(Error::io(format!("locking {}", path.display()), std::io::Error::last_os_error()));
    }
    Ok(f)
}

/// The lock if nobody holds it, else `None`.
pub fn try_lock(path: &Path) -> Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd;
    let f = open_lock(path)?;
    // SAFETY: flock takes no pointers; `f` keeps the fd open for the call.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(Some(f));
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(None)
    } else {
        Err(Error::io(format!("locking {}", path.display()), e))
    }
}

fn open_lock(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ctx(format!("opening lock {}", path.display()))
}
