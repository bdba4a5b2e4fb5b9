//! What every host helper (Claude Code, Codex, OpenCode) shares: the entry pyro writes into a
//! host's configuration, what inspecting a host found, and what a write changed.

use pyro_mcp::mcp::{MAX_CALL_S, STARTUP_TIMEOUT_S};
use pyro_mcp::Error;
use serde::Serialize;
use std::path::PathBuf;

pub const ENTRY: &str = "pyro";
/// The per-call limit a host must allow pyro's tools, in milliseconds.
pub const TOOL_TIMEOUT_MS: u64 = MAX_CALL_S * 1000;
/// How long a host must wait for pyro's server to start, in milliseconds.
pub const STARTUP_TIMEOUT_MS: u64 = STARTUP_TIMEOUT_S * 1000;

/// The command line a host should run for pyro's server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    pub command: String,
    pub args: Vec<String>,
}

impl Entry {
    pub fn desired(profile: Option<&str>) -> Result<Entry, Error> {
        let exe = std::env::current_exe().map_err(|e| Error::internal(format!("cannot find this pyro binary: {e}")))?;
        let exe = exe.canonicalize().unwrap_or(exe);
        let command = exe
            .to_str()
            .ok_or_else(|| Error::invalid(format!("this pyro's path is not UTF-8: {}", exe.display())))?
            .to_string();
        let mut args = vec!["mcp".to_string(), "serve".to_string()];
        if let Some(p) = profile {
            args.extend(["--profile".to_string(), p.to_string()]);
        }
        Ok(Entry { command, args })
    }
    /// `command` followed by `args`, OpenCode's form.
    pub fn argv(&self) -> Vec<String> {
        std::iter::once(self.command.clone()).chain(self.args.iter().cloned()).collect()
    }
}

/// pyro's entry as one config file holds it.
#[derive(Debug, Clone, Serialize)]
pub struct Found {
    pub entry: Entry,
    /// Where the host keeps it: Claude Code's `user`/`local`/`project`, OpenCode's
    /// `global`/`project`, Codex's `user`.
    pub scope: &'static str,
    pub path: PathBuf,
    /// The per-call limit the host applies to this entry's tools, in ms; None: the host's
    /// built-in default.
    pub tool_timeout_ms: Option<u64>,
    /// The startup limit, in ms; None: the host's built-in default.
    pub startup_timeout_ms: Option<u64>,
    /// The host will not start it (OpenCode `enabled: false`, Claude Code's rejected
    /// `.mcp.json` server, ...).
    pub disabled: bool,
}

/// A config file the host cannot read.
#[derive(Debug, Clone)]
pub struct Broken {
    pub path: PathBuf,
    pub message: String,
    /// `repair` may rewrite it (after a backup); else the user must fix it by hand.
    pub repairable: bool,
}

/// Everything a host module found.
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    /// The entry the host will use.
    pub used: Option<Found>,
    /// Other entries the used one shadows (lower-precedence scopes or files).
    pub shadowed: Vec<Found>,
    /// The entry in the place `connect` writes (Claude Code's user scope, OpenCode's global
    /// config), and that place.
    pub default: Option<Found>,
    pub default_path: PathBuf,
    /// Host settings outside the entry that matter (environment variables, approvals).
    pub notes: Vec<String>,
    pub broken: Option<Broken>,
}

/// What a host module's write did.
pub struct Written {
    pub method: String,
    pub path: PathBuf,
    pub scope: &'static str,
    pub backup: Option<PathBuf>,
    /// The file was left alone; this snippet must be merged by hand.
    pub manual: Option<String>,
}
