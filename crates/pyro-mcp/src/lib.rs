//! pyro-mcp: disposable microVM workspaces for coding agents. This crate is the runtime and
//! the Rust SDK; the entry point is [`Pyro`].

pub mod error;
pub mod paths;

pub use error::{Code, Error, Result};
