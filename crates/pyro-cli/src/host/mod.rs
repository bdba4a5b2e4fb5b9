//! Chat-host setup: `pyro host connect|print-config|doctor|repair`.
//!
//! Each supported host keeps its MCP servers in its own config files; pyro's entry is named
//! `pyro` and runs `<absolute path of this pyro> mcp serve` with the timeouts pyro's longest
//! call needs (`pyro_mcp::mcp::MAX_CALL_S`, `STARTUP_TIMEOUT_S`). Each host module reads every
//! place its host reads, says which entry the host will actually use, and writes an entry the
//! way the host itself would. Every edit is preceded by a backup, keeps every other entry and
//! key, and a second connect that would change nothing changes nothing.

pub mod claude;
pub mod codex;
pub mod doctor;
pub mod files;
pub mod opencode;
pub mod probe;

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

/// The hosts pyro knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Host {
    ClaudeCode,
    Codex,
    Opencode,
}

impl Host {
    pub fn name(self) -> &'static str {
        match self {
            Host::ClaudeCode => "claude-code",
            Host::Codex => "codex",
            Host::Opencode => "opencode",
        }
    }
    pub fn inspect(self) -> Result<Inspection, Error> {
        match self {
            Host::ClaudeCode => claude::inspect(),
            Host::Codex => codex::inspect(),
            Host::Opencode => opencode::inspect(),
        }
    }
    /// Why this entry's limits are too low for pyro's calls (empty: they are fine).
    pub fn limit_problems(self, f: &Found) -> Vec<String> {
        match self {
            Host::ClaudeCode => claude::limit_problems(f),
            Host::Codex => codex::limit_problems(f),
            Host::Opencode => opencode::limit_problems(f),
        }
    }
    /// Is `f` exactly what connect would leave: this pyro, enabled, limits high enough?
    pub fn satisfies(self, f: &Found, want: &Entry) -> bool {
        f.entry == *want && !f.disabled && self.limit_problems(f).is_empty()
    }
    /// The config snippet for `print-config`.
    pub fn snippet(self, want: &Entry) -> String {
        match self {
            Host::ClaudeCode => {
                files::json_text(&serde_json::json!({ "mcpServers": { ENTRY: claude::server_json(want, None) } }))
            }
            Host::Codex => codex::snippet(want),
            Host::Opencode => files::json_text(&opencode::snippet(want)),
        }
    }
}

/// What connect/repair did, for rendering.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub host: &'static str,
    pub changed: bool,
    pub method: String,
    pub config_path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup: Option<PathBuf>,
    pub entry: Entry,
    pub tool_timeout_ms: u64,
    pub startup_timeout_ms: u64,
    pub message: String,
    /// Set when pyro will not edit the file (OpenCode JSONC): merge this by hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
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

/// Configure `host` to run pyro's server. `repair`: fix the entry the host actually uses, in
/// its scope, and rewrite even a matching one when `force` (its server does not start);
/// else write the default scope, and do nothing when it already matches.
pub fn connect(host: Host, profile: Option<&str>, repair: bool, force: bool) -> Result<Outcome, Error> {
    let want = Entry::desired(profile)?;
    let insp = host.inspect()?;
    let broken = insp.broken.clone();
    if let Some(b) = &broken {
        // Connect never rewrites a file it cannot read; repair does when that is safe.
        if !repair || !b.repairable {
            let hint = if b.repairable {
                format!("`pyro host repair {}` rewrites it (a backup is kept)", host.name())
            } else {
                format!("fix {} by hand, then run `pyro host doctor`", b.path.display())
            };
            return Err(Error::invalid(b.message.clone()).hint(hint));
        }
    }
    let target = if repair && broken.is_none() { insp.used.clone() } else { insp.default.clone() };
    let mut outcome = Outcome {
        host: host.name(),
        changed: false,
        method: "none".into(),
        config_path: target.as_ref().map(|f| f.path.clone()).unwrap_or_else(|| insp.default_path.clone()),
        scope: target.as_ref().map(|f| f.scope),
        backup: None,
        entry: want.clone(),
        tool_timeout_ms: TOOL_TIMEOUT_MS,
        startup_timeout_ms: STARTUP_TIMEOUT_MS,
        message: "already configured; nothing changed".into(),
        snippet: None,
        warnings: Vec::new(),
    };
    let up_to_date = broken.is_none() && !force && target.as_ref().is_some_and(|f| host.satisfies(f, &want));
    if !up_to_date {
        let w = match host {
            Host::ClaudeCode => claude::write(&want, target.as_ref(), broken.is_some())?,
            Host::Codex => codex::write(&want, broken.is_some())?,
            Host::Opencode => opencode::write(&want, target.as_ref())?,
        };
        outcome.method = w.method;
        outcome.config_path = w.path;
        outcome.scope = Some(w.scope);
        outcome.backup = w.backup;
        if let Some(s) = w.manual {
            outcome.message = "not edited: merge the snippet into this file by hand".into();
            outcome.snippet = Some(s);
            return Ok(outcome);
        }
        outcome.changed = true;
        outcome.message = "configured".into();
        verify(host, &want, w.scope, &outcome.config_path)?;
    }
    // A connect writes the default scope; say so when another scope overrides it.
    if let Ok(after) = host.inspect() {
        if let Some(u) = &after.used {
            let ours = u.scope == outcome.scope.unwrap_or("") && u.path == outcome.config_path;
            if !ours && !host.satisfies(u, &want) {
                outcome.warnings.push(format!(
                    "{} uses the {} entry in {} instead, which is not this pyro's; run `pyro host repair {}`",
                    host.name(),
                    u.scope,
                    u.path.display(),
                    host.name()
                ));
            }
        }
    }
    Ok(outcome)
}

/// Re-read what the host will read in the scope we wrote, and check it is what we meant.
fn verify(host: Host, want: &Entry, scope: &'static str, path: &std::path::Path) -> Result<(), Error> {
    let insp = host.inspect()?;
    let all = insp.used.iter().chain(insp.shadowed.iter()).chain(insp.default.iter());
    match all.into_iter().find(|f| f.scope == scope && f.path == path) {
        Some(f) if host.satisfies(f, want) => Ok(()),
        other => Err(Error::internal(format!(
            "after editing, {} holds {:?} instead of pyro's entry",
            path.display(),
            other.map(|f| &f.entry)
        ))),
    }
}
