//! Tool calls in flight over HTTP, keyed by the HTTP request that carries them, so that a
//! client that goes away cancels its call. The HTTP layer (`mcp::http`) gives each request a
//! fresh key in the [`CALL_HEADER`] header (any value the client sent is replaced) and marks
//! the key gone when the response is dropped before it ended; the tool handler (`server`)
//! attaches the call's [`Cancel`] to the key it finds in its request. Either order works: a
//! key marked gone before the handler attaches cancels at attach.
//!
//! On stdio there are no keys and nothing here is used.

use crate::Cancel;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The request header that carries a call's key from the HTTP layer to the handler.
pub const CALL_HEADER: &str = "x-pyro-call";

#[derive(Default)]
struct Slot {
    cancel: Option<Cancel>,
    gone: bool,
}

/// The registry: one slot per HTTP request that is still being answered.
#[derive(Default)]
pub struct Calls {
    next: AtomicU64,
    slots: Mutex<HashMap<u64, Slot>>,
}

impl Calls {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        // A panic elsewhere while holding the lock leaves the map usable.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh key for a request (its slot lives until [`Calls::finish`]).
    pub fn open(&self) -> u64 {
        let key = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.slots().insert(key, Slot::default());
        key
    }

    /// The handler of the request `key` runs under `cancel`: cancelled now if the client is
    /// already gone, or later when it goes.
    pub fn attach(&self, key: u64, cancel: &Cancel) {
        let mut slots = self.slots();
        if let Some(slot) = slots.get_mut(&key) {
            if slot.gone {
                cancel.cancel();
            }
            slot.cancel = Some(cancel.clone());
        }
    }

    /// The response of `key` ended (`completed`) or was dropped unfinished (the client went
    /// away): the slot goes, and an unfinished call is cancelled.
    pub fn finish(&self, key: u64, completed: bool) {
        let mut slots = self.slots();
        if completed {
            slots.remove(&key);
            return;
        }
        match slots.get_mut(&key) {
            // The handler may not have attached yet: keep the mark for it (removed at
            // `forget`, when the handler returns).
            Some(slot) if slot.cancel.is_none() => slot.gone = true,
            Some(slot) => {
                if let Some(c) = &slot.cancel {
                    c.cancel();
                }
                slots.remove(&key);
            }
            None => {}
        }
    }

    /// The handler of `key` returned: nothing more to cancel.
    pub fn forget(&self, key: u64) {
        self.slots().remove(&key);
    }

    /// Cancel every call in flight (the server is shutting down); returns how many.
    pub fn cancel_all(&self) -> usize {
        let slots = self.slots();
        let mut n = 0;
        for c in slots.values().filter_map(|s| s.cancel.as_ref()) {
            c.cancel();
            n += 1;
        }
        n
    }

    /// How many handlers are attached (running calls).
    pub fn running(&self) -> usize {
        self.slots().values().filter(|s| s.cancel.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gone_before_or_after_attach_cancels() {
        let calls = Calls::default();
        let (a, b) = (calls.open(), calls.open());
        let (ca, cb) = (Cancel::new(), Cancel::new());
        calls.attach(a, &ca);
        calls.finish(a, false);
        assert!(ca.is_cancelled());
        calls.finish(b, false);
        calls.attach(b, &cb);
        assert!(cb.is_cancelled());
        calls.forget(b);
        assert_eq!(calls.running(), 0);
    }

    #[test]
    fn a_completed_response_cancels_nothing() {
        let calls = Calls::default();
        let k = calls.open();
        let c = Cancel::new();
        calls.attach(k, &c);
        assert_eq!(calls.running(), 1);
        calls.finish(k, true);
        assert!(!c.is_cancelled());
        assert_eq!(calls.cancel_all(), 0);
    }
}
