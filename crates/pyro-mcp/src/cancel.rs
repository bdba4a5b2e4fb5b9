//! Cancelling an operation from another thread: an MCP client's `notifications/cancelled`,
//! or an SDK caller giving up. A [`Cancel`] is a shared flag; operations look at it where
//! stopping is safe (a running guest command is killed at once; a create or reset finishes or
//! undoes its current step, so nothing half-made is left).

use crate::error::{Code, Error, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A cancellation flag shared between the caller and the operation (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag not yet set.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Ask the operation to stop. Idempotent.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether `cancel` has been called on this flag or a clone of it.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(cancelled)` once cancelled, naming what was stopped.
    pub fn check(&self, what: &str) -> Result<()> {
        if self.is_cancelled() {
            return Err(Error::new(Code::Cancelled, format!("{what} was cancelled")));
        }
        Ok(())
    }
}
