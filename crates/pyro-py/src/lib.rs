//! `pyro_mcp._native`: the Rust SDK as a CPython extension module (abi3, CPython 3.9 and
//! later), built by maturin into the `pyro-mcp` wheel beside the `pyro` and `pyro-guest`
//! binaries.
//!
//! One class, `Native`, has a method per SDK operation. Each takes the CLI flags' names as
//! keyword arguments (PyO3 checks their types and names: a wrong one is a `TypeError` naming
//! it), runs the operation on a worker thread with the GIL released, watches for Ctrl-C while
//! it waits (cancelling the operation as an MCP cancellation does), and returns the result
//! serialized exactly as the CLI's `--json` prints it. The Python package (`python/pyro_mcp`)
//! wraps these in `Pyro`, `Workspace`, typed result classes generated from the same types'
//! JSON schemas ([`ops::schemas`]) and `PyroError` subclasses per error code.

mod call;
mod ops;

use pyo3::prelude::*;

/// The module CPython imports as `pyro_mcp._native`.
#[pymodule]
#[pyo3(name = "_native")]
fn native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ops::Native>()?;
    m.add_class::<call::CancelToken>()?;
    m.add_function(wrap_pyfunction!(ops::schemas, m)?)?;
    m.add_function(wrap_pyfunction!(ops::set_pyro_binary, m)?)?;
    m.add("VERSION", pyro_mcp::VERSION)?;
    Ok(())
}
