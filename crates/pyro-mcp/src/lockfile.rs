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

/// A new lock file at `path`, already held when it appears there: made under a private name,
/// locked, then renamed into place. For the lock of a directory that a sweep in another
/// thread or process may look at (a workspace being created): with `lock`, a sweep could
/// open and take the new file between its creation and our `flock`, and remove the
/// directory under us. A creator killed before the rename leaves no `lock` (sweeps take a
/// lockless directory past its grace period).
pub fn lock_new(path: &Path) -> Result<std::fs::File> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut staged = path.as_os_str().to_owned();
    staged.push(format!(".new-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
    let staged = std::path::PathBuf::from(staged);
    let f = lock(&staged)?;
    if let Err(e) = std::fs::rename(&staged, path) {
        let _ = std::fs::remove_file(&staged);
        return Err(Error::io(format!("placing lock {}", path.display()), e));
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
