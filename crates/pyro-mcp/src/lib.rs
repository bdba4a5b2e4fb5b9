//! pyro-mcp: disposable microVM workspaces for coding agents. This crate is the runtime and
//! the Rust SDK; the entry point is [`Pyro`].

pub mod doctor;
pub mod env;
pub mod error;
pub mod hostcompat;
pub mod kernel;
pub mod limits;
pub mod mcp;
pub mod paths;
pub mod render;
pub mod run;
pub mod runtime;
pub mod sdk;
pub mod session;
pub mod vm;
pub mod workspace;

mod clock;
mod git;
mod proc;
mod text;

pub use error::{Code, Error, Result};
pub use pyro_proto::Command;
pub use render::Render;
pub use run::{RunOptions, RunResult};
pub use sdk::{EnvironmentInfo, EnvironmentList, Pyro};
pub use session::{ExecOutput, VmSession};
pub use workspace::lifecycle::{ExecRecord, Workspaces};
pub use workspace::{CreateOptions, UpdateOptions, WorkspaceInfo, WorkspaceList};
