//! Persistent workspaces: one VM per workspace that outlives the process that created it.
//!
//! On disk (`<data>/workspaces/<id>/`): `baseline.qcow2`, the seeded layer frozen right after
//! seeding (backed by the environment's read-only base), `disk.qcow2`, the live layer on top
//! of it, and `baseline.tar` + `baseline.json`, the seed archive and its manifest (the diff
//! baseline). Reset throws the live layer away and makes a fresh one: O(1) in workspace size.
//! Named snapshots are frozen layers `layer-*.qcow2` in the same chain (see `snapshots`).
//! State and history live in SQLite (`store`); the VM runs under its own supervisor whose
//! runtime dir is `<runtime>/vms/<id>`. Secrets are kept apart, in `<data>/secrets/<id>/`
//! (see `secrets`).

pub mod base;
pub mod diff;
pub mod disk;
pub mod event;
pub mod export;
pub mod files;
pub mod fork;
pub mod lifecycle;
pub mod patch;
pub mod recover;
pub mod secrets;
pub mod seed;
pub mod services;
pub mod shells;
pub mod snapshots;
pub mod spare;
pub mod stop;
pub mod store;
pub mod summary;
pub mod timeline;

use crate::error::{Error, Result};
use crate::text::clip;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use fork::ForkOptions;
pub use lifecycle::{CreateOptions, ExecOptions, UpdateOptions};
pub use secrets::{SecretEnv, SecretInfo, SecretSource, SecretSpec};

/// What callers see of a workspace (the result of create, status, update and reset).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WorkspaceInfo {
    /// The workspace's id.
    pub id: String,
    /// Its unique name, if it has one.
    pub name: Option<String>,
    /// Its labels (the MCP server's scope label among them when made through MCP).
    pub labels: BTreeMap<String, String>,
    /// The environment it runs.
    pub environment: String,
    /// `running`, `starting`, `stopped` (on request) or `dead` (its VM ended otherwise; the next
    /// operation boots it).
    pub state: String,
    /// Why it is in that state, when that is worth saying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// vCPUs of its VM.
    pub vcpu_count: u32,
    /// Memory of its VM in MiB.
    pub mem_mib: u32,
    /// When it was created, in seconds since the Unix epoch.
    pub created_at: u64,
    /// When it was last used, in seconds since the Unix epoch.
    pub last_activity_at: u64,
    /// How many times it was reset.
    pub reset_count: u32,
    /// When it was last reset, in seconds since the Unix epoch; None if never.
    pub last_reset_at: Option<u64>,
    /// How many commands it has run since its last reset.
    pub command_count: u64,
    /// What it was seeded from; absent when it started empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<WorkspaceSeed>,
    /// What its guest may reach on the network.
    pub network_policy: crate::net::NetworkPolicy,
    /// Guest ports published on the host while its VM runs; absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub published_ports: Vec<crate::net::PublishedPort>,
    /// The only host names its guest may reach over HTTP(S); absent when there is no allow list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_domains: Vec<String>,
    /// Set when the guest's network stack failed (the guest then has no network at all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_error: Option<String>,
    /// The workspace's secrets: names and sources only, never values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretInfo>,
    /// The workspace this one was forked from, and when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<ForkOrigin>,
    /// How its VM came up (create and fork results only): `cold`, `template` or `fork`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_from: Option<crate::vm::template::StartedFrom>,
}

/// Where a fork came from (`fork.json` in the fork's dir).
#[derive(Debug, Clone, Serialize, serde::Deserialize, JsonSchema)]
pub struct ForkOrigin {
    pub workspace_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub at: u64,
    /// Whether its processes went on in the fork (the source was running) or it booted from
    /// the source's disk (the source was stopped).
    pub memory: bool,
    /// How long the running source was paused while its disk switched layers and its memory
    /// was copied; absent when it was not running (and in forks made before 4.4.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_paused_ms: Option<u64>,
}

/// What a workspace was seeded from, as recorded at creation (stored in the state database,
/// hence `Deserialize`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorkspaceSeed {
    /// `directory`, `git_checkout`, `tar` or `tar_gz`.
    pub kind: String,
    /// Canonical host path (plus a note when a checkout was seeded as a plain directory).
    pub source: String,
    /// Files, directories and symlinks the seed held.
    pub entries: u64,
    /// Total bytes of file contents.
    pub bytes: u64,
}

/// `workspace list`: most recently active first.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct WorkspaceList {
    /// How many workspaces are listed.
    pub count: usize,
    /// The workspaces, most recently active first.
    pub workspaces: Vec<WorkspaceInfo>,
}

fn name_ok(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphanumeric())
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Names: 1-64 chars of `[A-Za-z0-9._-]`, starting alphanumeric, not all hex of 12 (ids).
/// Whether a directory name is a workspace id as `vm::new_id` makes them (12 hex digits).
pub(crate) fn is_workspace_id(s: &str) -> bool {
    crate::vm::is_id(s)
}

pub fn validate_name(n: &str) -> Result<()> {
    if !name_ok(n) {
        return Err(Error::invalid(format!("invalid workspace name '{}'", clip(n, 80)))
            .hint("1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"));
    }
    Ok(())
}

pub fn validate_label(k: &str, v: &str) -> Result<()> {
    if !name_ok(k) {
        return Err(Error::invalid(format!("invalid label key '{}'", clip(k, 80)))
            .hint("1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit"));
    }
    if v.is_empty() || v.chars().count() > 120 || v.chars().any(|c| c.is_control()) {
        return Err(Error::invalid(format!("invalid value for label '{k}': 1-120 characters, no control characters")));
    }
    Ok(())
}

/// Parse `K=V` from the command line.
pub fn parse_label(kv: &str) -> Result<(String, String)> {
    let (k, v) =
        kv.split_once('=').ok_or_else(|| Error::invalid(format!("label must be KEY=VALUE, got '{}'", clip(kv, 80))))?;
    validate_label(k, v)?;
    Ok((k.to_string(), v.to_string()))
}

/// Normalize a user/model path to an absolute path inside /workspace, lexically: relative
/// paths are under /workspace; `.` components go; `..`, NUL and paths outside are refused.
pub fn guest_path(p: &str) -> Result<String> {
    if p.contains('\0') || p.len() > 4096 {
        return Err(Error::invalid("path contains NUL or is longer than 4096 bytes"));
    }
    let rel = if let Some(r) = p.strip_prefix("/workspace") {
        if !(r.is_empty() || r.starts_with('/')) {
            return Err(Error::invalid(format!("{} is outside /workspace", clip(p, 200))));
        }
        r
    } else if p.starts_with('/') {
        return Err(
            Error::invalid(format!("{} is outside /workspace", clip(p, 200))).hint("use a path relative to /workspace")
        );
    } else {
        p
    };
    let parts = components(rel, p)?;
    Ok(if parts.is_empty() { "/workspace".to_string() } else { format!("/workspace/{}", parts.join("/")) })
}

/// The components of `path` without `.` and empty ones; `..` is refused (quoting `shown`).
pub(crate) fn components<'p>(path: &'p str, shown: &str) -> Result<Vec<&'p str>> {
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => return Err(Error::invalid(format!("{} contains '..'", clip(shown, 200)))),
            c => parts.push(c),
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths() {
        assert_eq!(guest_path("src/main.rs").unwrap(), "/workspace/src/main.rs");
        assert_eq!(guest_path("/workspace/./a//b").unwrap(), "/workspace/a/b");
        assert_eq!(guest_path("").unwrap(), "/workspace");
        assert_eq!(guest_path("/workspace").unwrap(), "/workspace");
        assert!(guest_path("../etc/passwd").is_err());
        assert!(guest_path("/etc/passwd").is_err());
        assert!(guest_path("/workspacefoo").is_err());
        assert!(guest_path("a/../../b").is_err());
    }

    #[test]
    fn names_and_labels() {
        assert!(validate_name("repro-fix_1.2").is_ok());
        assert!(validate_name("-x").is_err());
        assert!(validate_name("a b").is_err());
        assert!(validate_name(&"a".repeat(65)).is_err());
        assert_eq!(parse_label("team=infra").unwrap(), ("team".into(), "infra".into()));
        assert!(parse_label("novalue").is_err());
        assert!(parse_label("k=").is_err());
        assert!(parse_label("k=a\nb").is_err());
    }
}
