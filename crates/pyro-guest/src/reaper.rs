//! Child reaping for PID 1.
//!
//! As init we inherit every orphan in the guest, so one thread owns `waitpid(-1)`. Commands we
//! start register their pid while holding the registry lock during spawn, so the reaper can
//! always tell "ours" (deliver the status) from orphans (discard). Delivery is a byte on a
//! pipe, so the exec loop can `poll` it together with the output pipes: no sleeps, no polling
//! intervals on the exec round trip.
//!
//! Nothing here may panic or fail once a child exists: the notification pipe is made by
//! [`prepare`] *before* the spawn (out of file descriptors is then an error to the caller, with
//! no child and no lock held), registration cannot fail, every lock is taken poison-tolerant,
//! and the reaper thread restarts its loop should anything in it ever panic. A guest that ran
//! out of descriptors once therefore serves the next request normally.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

pub struct Waiter {
    /// Read end: becomes readable when the status is stored.
    pub ready: OwnedFd,
    slot: Arc<Mutex<Option<i32>>>,
}

impl Waiter {
    /// The raw wait status, once the reaper has collected it.
    pub fn status(&self) -> Option<i32> {
        *lock(&self.slot)
    }
}

struct Entry {
    notify: OwnedFd,
    slot: Arc<Mutex<Option<i32>>>,
}

#[derive(Default)]
struct Registry {
    waiting: HashMap<i32, Entry>,
    live: usize,
}

struct Reaper {
    reg: Mutex<Registry>,
    spawned: Condvar,
}

/// A lock whose holder may have panicked: the registry's invariants hold between statements
/// (an insert or a remove is one call), so its data is still good to use.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn reaper() -> &'static Reaper {
    static R: OnceLock<Reaper> = OnceLock::new();
    R.get_or_init(|| Reaper { reg: Mutex::new(Registry::default()), spawned: Condvar::new() })
}

/// Start the reaper thread, once. Called at agent start (so a guest short of threads later
/// still has one) and again by every `prepare` until it has succeeded.
pub fn start() -> std::io::Result<()> {
    static STARTED: Mutex<bool> = Mutex::new(false);
    let mut started = lock(&STARTED);
    if !*started {
        crate::sys::spawn_thread("reaper", run)?;
        *started = true;
    }
    Ok(())
}

/// Hold this while spawning, then call `register` with the new pid before dropping it.
pub struct SpawnGuard {
    reg: MutexGuard<'static, Registry>,
    read: OwnedFd,
    write: OwnedFd,
}

/// Make what a registration needs (the notification pipe), then take the registry lock for
/// the spawn. Fails, with nothing held and no child started, when the guest is out of file
/// descriptors or threads.
pub fn prepare() -> std::io::Result<SpawnGuard> {
    start()?;
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned these fds to us.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok(SpawnGuard { reg: lock(&reaper().reg), read, write })
}

impl SpawnGuard {
    /// Record `pid` as ours. Cannot fail: everything it needs was made by `prepare`.
    pub fn register(self, pid: i32) -> Waiter {
        let SpawnGuard { mut reg, read, write } = self;
        let slot = Arc::new(Mutex::new(None));
        reg.waiting.insert(pid, Entry { notify: write, slot: slot.clone() });
        reg.live += 1;
        drop(reg);
        reaper().spawned.notify_one();
        Waiter { ready: read, slot }
    }
}

fn run() {
    loop {
        // Nothing in `reap` is expected to panic; if something ever does, the loop goes on,
        // since without this thread no command would ever finish.
        if std::panic::catch_unwind(reap).is_err() {
            crate::sys::console("the reaper recovered from a panic");
        }
    }
}

fn reap() {
    let r = reaper();
    loop {
        let mut status = 0;
        // SAFETY: `status` is a live local the kernel writes one int into.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            let mut reg = lock(&r.reg);
            if let Some(e) = reg.waiting.remove(&pid) {
                reg.live = reg.live.saturating_sub(1);
                *lock(&e.slot) = Some(status);
                // SAFETY: the buffer is a 1-byte static literal and we pass length 1; `notify` keeps
                // the pipe's write end open.
                unsafe { libc::write(e.notify.as_raw_fd(), b"x".as_ptr() as *const libc::c_void, 1) };
            }
            continue;
        }
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
            // No children at all: sleep until a spawn registers one.
            // Checking `live` under the lock means a spawn between our waitpid and here is seen.
            let reg = lock(&r.reg);
            if reg.live == 0 {
                let _unused = r.spawned.wait_timeout(reg, std::time::Duration::from_secs(5));
            }
        }
    }
}
