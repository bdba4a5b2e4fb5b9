//! pyro-mcp: disposable microVM workspaces for coding agents. This crate is the runtime and
//! the Rust SDK; the entry point is [`Pyro`].
//!
//! The public surface is the SDK: [`Pyro`], the option and result types of its operations
//! (at the crate root and all together in [`types`]), [`Error`]/[`Code`]/[`Result`],
//! [`Command`], the bounds in [`limits`], [`paths::Paths`], and [`mcp`], the MCP server. The
//! rest of the runtime is private; what the `pyro` binaries need beyond the SDK is in
//! [`internal`], which is not a stable interface.

#![warn(missing_docs)]

pub mod hostfile;
pub mod limits;
pub mod mcp;
// Public because `Paths` is an SDK type (`Pyro::with_paths`) and callers name it by this path.
pub mod paths;
pub mod types;
pub mod ui;

#[doc(hidden)]
pub mod internal;

mod cancel;
mod clock;
mod doctor;
mod env;
mod error;
mod git;
mod hidden;
mod hostcompat;
mod kernel;
mod lockfile;
mod net;
mod proc;
mod render;
mod run;
mod runtime;
mod sdk;
mod session;
pub mod text;
mod vm;
mod workspace;

pub use cancel::Cancel;
pub use env::{parse_progress, PullOptions, PullReport};
pub use error::{Code, Error, Result};
pub use net::{NetworkOptions, NetworkPolicy, PortSpec};
pub use paths::Paths;
pub use pyro_proto::Command;
pub use render::throttle::{Throttle, EVERY as THROTTLE_EVERY};
pub use render::Render;
pub use run::{RunOptions, RunResult};
pub use sdk::{EnvironmentInfo, EnvironmentList, Pyro};
pub use session::{ExecOutput, VmSession};
pub use workspace::base::Workspaces;
pub use workspace::export::ExportOptions;
pub use workspace::lifecycle::ExecRecord;
pub use workspace::{
    CreateOptions, ExecOptions, ForkOptions, SecretEnv, SecretInfo, SecretSource, SecretSpec, UpdateOptions,
    WorkspaceInfo, WorkspaceList,
};

/// This release's version (the cargo workspace's): what `pyro --version` prints and what the MCP
/// server reports in `serverInfo`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
