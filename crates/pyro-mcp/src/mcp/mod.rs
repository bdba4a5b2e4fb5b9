//! The MCP server (`pyro mcp serve`), built on the official Rust MCP SDK (rmcp): profiles,
//! serve options and the entry points. Each tool is one entry of `registry::TOOLS` (what is
//! listed, in which profiles, and the handler); the argument types and MCP caps are in
//! `tools`, their listed schemas made by `schema`, the handlers in `handlers`, the project
//! source and host-path confinement in `source`, the rmcp plumbing in `server`.
//!
//! ```no_run
//! use pyro_mcp::mcp::{serve_stdio, Profile, ServeOptions};
//! serve_stdio(ServeOptions { profile: Profile::WorkspaceCore, ..Default::default() })?;
//! # Ok::<(), pyro_mcp::Error>(())
//! ```

pub mod app;
pub mod calls;
mod handlers;
pub mod http;
mod profile;
pub mod registry;
mod schema;
mod server;
pub mod source;
mod state;
pub mod tools;

use crate::error::Result;

pub use profile::{Profile, ServeOptions, MAX_CALL_S, MAX_EXEC_TIMEOUT_S, STARTUP_TIMEOUT_S};
pub use server::{failure, PyroServer, MAX_INSTRUCTIONS};
pub use source::{CloneJob, HostRoots, ProjectSource, SeedSource};
pub use state::{scope_of, SCOPE_LABEL};

pub use http::{serve_http, HttpOptions};

/// Serve over stdin/stdout until the client disconnects.
pub fn serve_stdio(options: ServeOptions) -> Result<()> {
    PyroServer::new(options)?.serve_stdio()
}
