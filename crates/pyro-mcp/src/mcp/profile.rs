//! MCP server profiles (which tools a server offers), its options, and the time limits that
//! hosts are told to allow for a call.

use crate::error::{Error, Result};
use crate::paths::Paths;
use std::path::PathBuf;

/// The longest `timeout_seconds` a model may give `workspace_exec` or `vm_run` (the CLI and
/// SDK allow a day; a chat host's call should not).
pub const MAX_EXEC_TIMEOUT_S: u64 = 3600;
/// The longest one tool call may take: the longest exec plus a margin for a boot, a reset or a
/// first-run environment build. Host helpers write it as each host's per-call timeout.
pub const MAX_CALL_S: u64 = MAX_EXEC_TIMEOUT_S + 600;
/// How long a host should wait for `pyro mcp serve` to answer `initialize`. It answers at once
/// (a `--repo-url` clone runs in the background); the margin is for a loaded machine.
pub const STARTUP_TIMEOUT_S: u64 = 30;

/// Which tools the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// `vm_run` only.
    VmRun,
    /// The workspace loop plus `vm_run` (the default).
    #[default]
    WorkspaceCore,
    /// Everything: `workspace-core` plus the tools that have no core slot.
    WorkspaceFull,
}

impl Profile {
    /// Every profile, from the smallest tool set to the largest.
    pub const ALL: [Profile; 3] = [Profile::VmRun, Profile::WorkspaceCore, Profile::WorkspaceFull];

    /// The profile's name, as `--profile` takes it and the server reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::VmRun => "vm-run",
            Profile::WorkspaceCore => "workspace-core",
            Profile::WorkspaceFull => "workspace-full",
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Profile {
    type Err = Error;
    fn from_str(s: &str) -> Result<Profile> {
        Profile::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| {
            Error::invalid(format!("unknown profile '{}'", crate::text::clip(s, 80)))
                .hint("profiles: vm-run, workspace-core, workspace-full")
        })
    }
}

/// How to serve: the options of `pyro mcp serve`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Which tools to offer; `workspace-core` by default.
    pub profile: Profile,
    /// The project to seed from (its git work tree if it is in one); default: the git work
    /// tree around the current directory, if any.
    pub project_path: Option<PathBuf>,
    /// Clone this repository (in the background, from startup) and seed from the clean clone.
    pub repo_url: Option<String>,
    /// Check this ref out in the clone.
    pub repo_ref: Option<String>,
    /// More host directories a model's host paths may be in (besides the project root).
    pub allow_roots: Vec<PathBuf>,
    /// pyro's directories; default: from the environment (`Paths::from_env`).
    pub paths: Option<Paths>,
    /// List and act on every workspace of the user, not only this project's.
    pub all_workspaces: bool,
    /// Let tool calls name registry images that are not installed (they are pulled).
    pub allow_pull: bool,
}
