//! Running one SDK operation for Python: on a worker thread, with the GIL released so other
//! Python threads (and an asyncio loop that handed the call to a thread) go on; the calling
//! thread waits in short slices and checks for signals between them, so Ctrl-C cancels the
//! operation (a running guest command is killed and recorded as cancelled, a create undoes
//! its step) and then raises `KeyboardInterrupt`. Errors become `PyroError` subclasses.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyro_mcp::Cancel;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

/// A cancellation flag Python can hold and set: `AsyncPyro` sets it when the task awaiting
/// the call is cancelled; any thread may set it to stop a call running in another.
#[pyclass(frozen, module = "pyro_mcp._native")]
pub struct CancelToken(pub Cancel);

#[pymethods]
impl CancelToken {
    #[new]
    fn new() -> Self {
        CancelToken(Cancel::new())
    }

    /// Ask the call watching this token to stop. Idempotent.
    fn cancel(&self) {
        self.0.cancel();
    }

    /// Whether `cancel()` was called.
    #[getter]
    fn cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// How long the waiting thread sleeps between two looks for a pending signal (Ctrl-C is
/// seen within this; a result arriving wakes it at once).
const SIGNAL_POLL: Duration = Duration::from_millis(50);

/// Run `f` with a cancellation flag (the caller's token, or a fresh one) on a worker thread
/// and wait for it, GIL released.
pub fn run<T, F>(py: Python<'_>, token: Option<&CancelToken>, f: F) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce(Cancel) -> pyro_mcp::Result<T> + Send + 'static,
{
    let cancel = token.map(|t| t.0.clone()).unwrap_or_default();
    let (tx, rx) = mpsc::sync_channel(1);
    // Waiting happens with the GIL released, which wants what it touches `Sync`.
    let rx = std::sync::Mutex::new(rx);
    let recv = |timeout: Option<Duration>| {
        let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
        match timeout {
            Some(t) => rx.recv_timeout(t),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        }
    };
    let worker = cancel.clone();
    std::thread::Builder::new()
        .name("pyro-call".into())
        .spawn(move || {
            // A panic is a bug; it reaches Python as an `internal` error, not an abort.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(worker)))
                .unwrap_or_else(|_| Err(pyro_mcp::Error::internal("the operation panicked (a bug in pyro)")));
            let _ = tx.send(r);
        })
        .map_err(|e| PyRuntimeError::new_err(format!("pyro: cannot start a thread for the call: {e}")))?;
    loop {
        match py.detach(|| recv(Some(SIGNAL_POLL))) {
            Ok(r) => return r.map_err(|e| to_py(py, &e)),
            Err(RecvTimeoutError::Timeout) => {
                // Only the main thread sees signals; elsewhere this is always Ok.
                if let Err(interrupt) = py.check_signals() {
                    cancel.cancel();
                    // The operation stops at its next safe point (a guest command at once);
                    // wait for it so nothing runs on after Python moved on.
                    let _ = py.detach(|| recv(None));
                    return Err(interrupt);
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(PyRuntimeError::new_err("pyro: the operation's thread ended without a result"))
            }
        }
    }
}

/// An SDK error as the `PyroError` subclass of its code (`pyro_mcp._errors.error_for`),
/// carrying `.code`, `.message` and `.hint`.
pub fn to_py(py: Python<'_>, e: &pyro_mcp::Error) -> PyErr {
    let made = py
        .import("pyro_mcp._errors")
        .and_then(|m| m.getattr("error_for"))
        .and_then(|f| f.call1((e.code.as_str(), e.message.as_str(), e.hint.as_deref())));
    match made {
        Ok(exc) => PyErr::from_value(exc),
        Err(import) => import,
    }
}
