//! Chat-host setup: `pyro host connect|print-config|doctor|repair`.
//!
//! Each supported host keeps its MCP servers in its own config files; pyro's entry is named
//! `pyro` and runs `<absolute path of this pyro> mcp serve` with the timeouts pyro's longest
//! call needs (`pyro_mcp::mcp::MAX_CALL_S`, `STARTUP_TIMEOUT_S`), or, with `--url`, reaches
//! `pyro mcp serve --http` on another machine with its bearer token (`remote`). Each host module reads every
//! place its host reads, says which entry the host will actually use, and writes an entry the
//! way the host itself would. Every edit is preceded by a backup, keeps every other entry and
//! key, and a second connect that would change nothing changes nothing.

pub mod claude;
pub mod codex;
pub mod doctor;
pub mod entry;
pub mod files;
pub mod opencode;
pub mod probe;
pub mod probe_http;
pub mod remote;

pub use entry::{Auth, Entry, Found, Inspection, Secret, ENTRY, STARTUP_TIMEOUT_MS, TOKEN_ENV, TOOL_TIMEOUT_MS};
use pyro_mcp::Error;
use serde::Serialize;
use std::path::PathBuf;

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
    /// Is `f` exactly what connect would leave: this pyro (or this URL and token), enabled,
    /// limits high enough, nothing the host refuses?
    pub fn satisfies(self, f: &Found, want: &Entry) -> bool {
        f.entry == *want && !f.disabled && f.issues.is_empty() && self.limit_problems(f).is_empty()
    }
    /// The remote entry this host gets for `url`: Codex reads the token from `$PYRO_MCP_TOKEN`
    /// (it takes none in its file), the others carry it in an `Authorization` header.
    pub fn remote_entry(self, url: &str, token: &Secret) -> Entry {
        let auth = match self {
            Host::Codex => Auth::Env(TOKEN_ENV.to_string()),
            Host::ClaudeCode | Host::Opencode => Auth::Bearer(token.clone()),
        };
        Entry::Remote { url: url.to_string(), auth }
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
    /// A remote entry: where its bearer token is kept (never the token itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A remote entry: the server that answered at its URL (name and version).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Set when pyro will not edit the file (OpenCode JSONC): merge this by hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Configure `host` with `want` (pyro's server, local or remote). `repair`: fix the entry the
/// host actually uses, in its scope, and rewrite even a matching one when `force` (its server
/// does not start); else write the default scope, and do nothing when it already matches.
pub fn connect(host: Host, want: &Entry, repair: bool, force: bool) -> Result<Outcome, Error> {
    let want = want.clone();
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
    if let (Some(t), Entry::Remote { auth: Auth::Bearer(_), .. }) = (&target, &want) {
        // A project's file is shared (and often committed): no token goes there.
        if t.scope == "project" {
            return Err(Error::invalid(format!(
                "the {} entry pyro would repair is in {}, a project file others may read; no token is written there",
                host.name(),
                t.path.display()
            ))
            .hint(format!(
                "remove pyro's entry from that file, then run `pyro host connect {} --url URL`",
                host.name()
            )));
        }
    }
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
        token: None,
        server: None,
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
