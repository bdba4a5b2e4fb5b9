//! Child reaping for PID 1.
//!
//! As init we inherit every orphan in the guest, so one thread owns `waitpid(-1)`. Commands we
//! start register their pid while holding the registry lock during spawn, so the reaper can
//! always tell "ours" (deliver the status) from orphans (discard). Delivery is a byte on a
//! pipe, so the exec loop can `poll` it together with the output pipes: no sleeps, no polling
//! intervals on the exec round trip.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

pub struct Waiter {
    /// Read end: becomes readable when the status is stored.
    pub ready: OwnedFd,
    slot: std::sync::Arc<Mutex<Option<i32>>>,
}

impl Waiter {
    /// The raw wait status, once the reaper has collected it.
    pub fn status(&self) -> Option<i32> {
        *self.slot.lock().unwrap()
    }
}

struct Entry {
    notify: OwnedFd,
    slot: std::sync::Arc<Mutex<Option<i32>>>,
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

fn reaper() -> &'static Reaper {
    static R: OnceLock<Reaper> = OnceLock::new();
    R.get_or_init(|| {
        std::thread::spawn(run);
        Reaper { reg: Mutex::new(Registry::default()), spawned: Condvar::new() }
    })
}

/// Hold this while spawning, then call `register` with the new pid before dropping it.
pub struct SpawnGuard(MutexGuard<'static, Registry>);

pub fn lock() -> SpawnGuard {
    SpawnGuard(reaper().reg.lock().unwrap())
}

impl SpawnGuard {
    pub fn register(mut self, pid: i32) -> Waiter {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid 2-int array.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
        assert_eq!(rc, 0, "pipe2 failed");
        // SAFETY: pipe2 just returned these fds to us.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let slot = std::sync::Arc::new(Mutex::new(None));
        self.0.waiting.insert(pid, Entry { notify: w, slot: slot.clone() });
        self.0.live += 1;
        drop(self.0);
        reaper().spawned.notify_one();
        Waiter { ready: r, slot }
    }
}

fn run() {
    // Blocks until the OnceLock initialiser that spawned this thread has finished.
    let r = reaper();
    loop {
        let mut status = 0;
        // SAFETY: `status` is a live local the kernel writes one int into.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            let mut reg = r.reg.lock().unwrap();
            if let Some(e) = reg.waiting.remove(&pid) {
                reg.live -= 1;
                *e.slot.lock().unwrap() = Some(status);
                // SAFETY: the buffer is a 1-byte static literal and we pass length 1; `notify` keeps
                // the pipe's write end open.
                unsafe { libc::write(e.notify.as_raw_fd(), b"x".as_ptr() as *const libc::c_void, 1) };
            }
            continue;
        }
        if std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD) {
            // No children at all: sleep until a spawn registers one.
            // Checking `live` under the lock means a spawn between our waitpid and here is seen.
            let reg = r.reg.lock().unwrap();
            if reg.live == 0 {
                let _unused = r.spawned.wait_timeout(reg, std::time::Duration::from_secs(5)).unwrap();
            }
        }
    }
}
