//! What MCP tool calls take and the caps MCP puts on them: one argument type per tool (the
//! server deserializes it and schemars describes it in `tools/list`), the `workspace-full`
//! extensions of three of them, `workspace_create`'s result, and the MCP-specific limits.
//! Which tool takes which type, and what a call does, is in `registry` and `handlers`.
//!
//! Every argument type refuses unknown fields: that is how `workspace-core` refuses the
//! fields only `workspace-full` offers (`secrets`, `secret_env`, `snapshot`, ...), and how a
//! misspelled argument becomes an error instead of a silent default.

use super::source::SeedSource;
use crate::error::{Error, Result};
use crate::render::Render;
use crate::WorkspaceInfo;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Output kept per stream for `vm_run` and `workspace_exec` (head and tail, with a marker):
/// smaller than the SDK's default on purpose, so one call cannot flood a model's context
/// (both streams together stay under Claude Code's default 25,000-token tool-output limit).
pub const EXEC_OUTPUT_BYTES: u64 = 24 * 1024;
/// `workspace_file_read`'s default and largest `max_bytes` (larger files are paged with
/// `offset`).
pub const READ_BYTES_DEFAULT: u64 = 32 * 1024;
pub const READ_BYTES_MAX: u64 = 64 * 1024;
/// `workspace_diff`'s patch text cap (the SDK's is 200 KiB); the rest is read by `path`.
pub const DIFF_PATCH_BYTES: usize = 64 * 1024;
/// What tools that return large text declare as `_meta["anthropic/maxResultSizeChars"]`, so
/// Claude Code shows their result inline instead of saving it to a file past its default
/// 50,000 characters. It bounds our own caps above: two 24 KiB streams or a 64 KiB read or
/// patch, JSON-escaped, plus the other fields.
pub const MAX_RESULT_CHARS: u64 = 200_000;
pub const DEFAULT_ENVIRONMENT: &str = "debian:12";
/// Compact JSON bytes the `workspace-core` `tools/list` may take.
pub const TOOLS_LIST_BUDGET: usize = 6144;
/// Compact JSON bytes the `workspace-full` `tools/list` may take.
pub const FULL_TOOLS_LIST_BUDGET: usize = 12 * 1024;
/// `shell_read`'s default and largest `max_chars` in MCP.
pub const SHELL_READ_DEFAULT: u64 = 16 * 1024;
pub const SHELL_READ_MAX: u64 = 64 * 1024;
/// `service_logs`' default and largest `tail_lines`, and the bytes kept of each stream (the
/// newest).
pub const SERVICE_TAIL_DEFAULT: u64 = 200;
pub const SERVICE_TAIL_MAX: u64 = 2000;
pub const SERVICE_LOG_BYTES: usize = 24 * 1024;

/// `shell_read`'s `max_chars` (default and cap smaller than the SDK's).
pub fn shell_read_chars(m: Option<u64>) -> Result<u64> {
    crate::error::in_range("max_chars", m.unwrap_or(SHELL_READ_DEFAULT), 1, SHELL_READ_MAX)
}

/// `timeout_seconds` of `vm_run` and `workspace_exec`: default 30, at most
/// [`super::profile::MAX_EXEC_TIMEOUT_S`] (host configs written by `pyro host` allow that much).
pub fn exec_timeout(t: Option<u64>) -> Result<u64> {
    crate::error::in_range(
        "timeout_seconds",
        t.unwrap_or(crate::run::DEFAULT_TIMEOUT_S),
        1,
        super::profile::MAX_EXEC_TIMEOUT_S,
    )
}

/// `workspace_file_read`'s `max_bytes` (default and cap smaller than the SDK's).
pub fn file_read_bytes(m: Option<u64>) -> Result<u64> {
    crate::error::in_range("max_bytes", m.unwrap_or(READ_BYTES_DEFAULT), 1, READ_BYTES_MAX)
}

/// Parse a tool's arguments; schema violations become `invalid_argument` errors. Ranges are
/// not checked here: the SDK checks them, once, for every front end.
pub fn args<T: DeserializeOwned>(tool: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        Error::invalid(format!("invalid arguments for {tool}: {e}")).hint("see the tool's input schema in tools/list")
    })
}

/// `workspace_create`'s result: the workspace plus where its seed came from.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CreateResult {
    #[serde(flatten)]
    pub workspace: WorkspaceInfo,
    pub seed_source: SeedSource,
}

impl Render for CreateResult {
    fn text(&self) -> String {
        let at = match &self.seed_source {
            SeedSource::Project { path } => format!("project {}", path.display()),
            SeedSource::Explicit { path } => format!("explicit {}", path.display()),
            SeedSource::RepoUrl { url, reference } => {
                format!("repo_url {url}{}", reference.as_ref().map(|r| format!(" at {r}")).unwrap_or_default())
            }
            SeedSource::None => "none".into(),
        };
        format!("{}seed_source:  {at}\n", self.workspace.text())
    }
}

/// A tool's `workspace-full` arguments: the `workspace-core` arguments `base` plus the fields
/// `extra` that only `workspace-full` offers. A core call parses `base` alone (so serde
/// refuses `extra`'s fields there, as unknown) and runs with `extra`'s defaults: one handler
/// serves both profiles.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Wider<B, X> {
    #[serde(flatten)]
    pub base: B,
    #[serde(flatten)]
    pub extra: X,
}

impl<B, X: Default> From<B> for Wider<B, X> {
    fn from(base: B) -> Self {
        Wider { base, extra: X::default() }
    }
}

// What models read of a field is its `#[schemars(description)]` (at most
// `schema::MAX_DESCRIPTION` characters: every byte is in every tools/list); the `//` comments
// are for code readers (schemars would list a `///` too).

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmRun {
    // Run with /bin/sh -c: the tool's description says "shell command" (bytes for the budget).
    pub command: String,
    pub environment: Option<String>,
    #[schemars(range(min = 1, max = super::profile::MAX_EXEC_TIMEOUT_S), extend("default" = crate::run::DEFAULT_TIMEOUT_S))]
    pub timeout_seconds: Option<u64>,
    #[schemars(range(min = 1, max = crate::run::MAX_VCPUS))]
    pub vcpu_count: Option<u32>,
    #[schemars(range(min = crate::run::MIN_MEM_MIB, max = crate::run::MAX_MEM_MIB))]
    pub mem_mib: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Create {
    #[schemars(description = "host dir or .tar(.gz)")]
    pub seed_path: Option<String>,
    pub environment: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[schemars(range(min = 1, max = crate::run::MAX_VCPUS))]
    pub vcpu_count: Option<u32>,
    #[schemars(range(min = crate::run::MIN_MEM_MIB, max = crate::run::MAX_MEM_MIB))]
    pub mem_mib: Option<u32>,
}

/// `workspace_create`'s `workspace-full` fields: the guest's network and its secrets
/// (`workspace-core` keeps guests offline and without secrets).
#[derive(Default, Deserialize, JsonSchema)]
pub struct CreateExtra {
    #[schemars(description = "off|egress|egress+published-ports")]
    pub network_policy: Option<String>,
    // Only HTTP(S) to these names (`*.x.org` for subdomains).
    #[serde(default)]
    pub allow_domains: Vec<String>,
    #[schemars(description = "[{name, value|file_path}]")]
    #[serde(default)]
    pub secrets: Vec<SecretArg>,
}

/// One secret of `workspace_create` (`workspace-full`): a literal value or a host file,
/// confined to the server's roots like `seed_path`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretArg {
    pub name: String,
    pub value: Option<String>,
    pub file_path: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Id {
    pub workspace_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Update {
    pub workspace_id: String,
    pub name: Option<String>,
    #[serde(default)]
    pub clear_name: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub clear_labels: Vec<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncPush {
    pub workspace_id: String,
    pub source_path: String,
    pub dest: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    pub workspace_id: String,
    // Run with /bin/sh -c, as vm_run's.
    pub command: String,
    pub cwd: Option<String>,
    #[schemars(range(min = 1, max = super::profile::MAX_EXEC_TIMEOUT_S), extend("default" = crate::run::DEFAULT_TIMEOUT_S))]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Secrets in a process's environment (`workspace-full`'s exec, and shells and services):
/// a map, the leaner schema (`{"TOKEN": "GH_TOKEN"}`; `""` keeps the secret's name).
#[derive(Default, Deserialize, JsonSchema)]
pub struct SecretEnvArg {
    #[schemars(description = "{SECRET: ENV_NAME}")]
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
}

/// `workspace_reset`'s `workspace-full` field: back to a named snapshot instead of the
/// baseline (snapshots are a `workspace-full` feature).
#[derive(Default, Deserialize, JsonSchema)]
pub struct SnapshotArg {
    pub snapshot: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    pub workspace_id: String,
    #[schemars(description = "cold stop: start boots")]
    #[serde(default)]
    pub discard_memory: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fork {
    pub workspace_id: String,
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `workspace_file_list`'s and `workspace_disk_list`'s arguments (on the disk, `path` is
/// absolute or under /workspace).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileList {
    pub workspace_id: String,
    pub path: Option<String>,
    #[serde(default)]
    pub recursive: bool,
}

/// `workspace_file_read`'s and `workspace_disk_read`'s arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRead {
    pub workspace_id: String,
    pub path: String,
    #[schemars(range(min = 1, max = READ_BYTES_MAX), extend("default" = READ_BYTES_DEFAULT))]
    pub max_bytes: Option<u64>,
    // Bytes to skip: the previous read's next_offset.
    pub offset: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskExport {
    pub workspace_id: String,
    pub output_path: String,
}

/// A named thing in a workspace: a snapshot or a service.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Named {
    pub workspace_id: String,
    pub name: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileWrite {
    pub workspace_id: String,
    pub path: String,
    pub content: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchApply {
    pub workspace_id: String,
    pub patch: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellOpen {
    pub workspace_id: String,
    pub cwd: Option<String>,
    #[schemars(range(min = 10, max = 1000), extend("default" = 120))]
    pub cols: Option<u16>,
    #[schemars(range(min = 2, max = 500), extend("default" = 30))]
    pub rows: Option<u16>,
    #[schemars(description = "{SECRET: ENV_NAME}")]
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellId {
    pub workspace_id: String,
    pub shell_id: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellRead {
    pub workspace_id: String,
    pub shell_id: String,
    #[schemars(description = "last next_cursor")]
    pub cursor: Option<u64>,
    #[schemars(range(min = 1, max = SHELL_READ_MAX), extend("default" = SHELL_READ_DEFAULT))]
    pub max_chars: Option<u64>,
    #[schemars(description = "strip control codes")]
    #[serde(default)]
    pub plain: bool,
    // Wait until the shell has been quiet this long.
    #[schemars(range(max = crate::workspace::shells::MAX_IDLE_MS))]
    pub wait_for_idle_ms: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellWrite {
    pub workspace_id: String,
    pub shell_id: String,
    pub input: String,
    // Do not press Enter after the input.
    #[serde(default)]
    pub no_newline: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellSignal {
    pub workspace_id: String,
    pub shell_id: String,
    #[schemars(description = "INT (default)|TERM|HUP|KILL|QUIT")]
    pub signal: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellResize {
    pub workspace_id: String,
    pub shell_id: String,
    #[schemars(range(min = 10, max = 1000))]
    pub cols: u16,
    #[schemars(range(min = 2, max = 500))]
    pub rows: u16,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Diff {
    pub workspace_id: String,
    // Only changes at or under this path.
    pub path: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Export {
    pub workspace_id: String,
    pub path: String,
    pub output_path: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceStart {
    pub workspace_id: String,
    pub name: String,
    // Run with /bin/sh -c.
    pub command: String,
    pub cwd: Option<String>,
    // Readiness, at most one: this file exists, HOST:PORT accepts TCP, an http:// URL answers
    // 2xx/3xx, a shell command exits 0.
    pub ready_file: Option<String>,
    #[schemars(description = "HOST:PORT")]
    pub ready_tcp: Option<String>,
    #[schemars(description = "URL")]
    pub ready_http: Option<String>,
    #[schemars(description = "exits 0")]
    pub ready_command: Option<String>,
    #[schemars(range(min = 1, max = super::profile::MAX_EXEC_TIMEOUT_S), extend("default" = 30))]
    pub ready_timeout_seconds: Option<u64>,
    #[schemars(description = "no|on-failure")]
    pub restart: Option<String>,
    #[schemars(description = "{SECRET: ENV_NAME}")]
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
}

/// A `secret_env` map (`{"SECRET": "ENV_NAME"}`, `""` for the secret's own name) as specs.
pub fn secret_env(m: &BTreeMap<String, String>) -> Result<Vec<crate::SecretEnv>> {
    m.iter().map(|(s, e)| crate::SecretEnv::parse(&if e.is_empty() { s.clone() } else { format!("{s}={e}") })).collect()
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceLogs {
    pub workspace_id: String,
    pub name: String,
    #[schemars(range(max = SERVICE_TAIL_MAX), extend("default" = SERVICE_TAIL_DEFAULT))]
    pub tail_lines: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceStop {
    pub workspace_id: String,
    pub name: String,
    #[schemars(range(max = crate::workspace::services::MAX_STOP_GRACE_S), extend("default" = 5))]
    pub grace_seconds: Option<u64>,
}

/// The newest `max` bytes of a log stream (at a character boundary), with a marker.
pub fn log_tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("[pyro: {} older bytes not shown]\n{}", start, &s[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn log_tails_keep_the_newest_bytes() {
        assert_eq!(log_tail("abc", 10), "abc");
        let t = log_tail("0123456789", 4);
        assert_eq!(t, "[pyro: 6 older bytes not shown]\n6789");
        assert!(log_tail("ééé", 3).ends_with('é'));
    }

    #[test]
    fn full_arguments_extend_core_ones_and_core_refuses_the_extras() {
        let a: Wider<Exec, SecretEnvArg> = args(
            "workspace_exec",
            json!({"workspace_id": "w", "command": "true", "secret_env": {"TOKEN": "GH_TOKEN"}}),
        )
        .unwrap();
        assert_eq!((a.base.command.as_str(), a.extra.secret_env["TOKEN"].as_str()), ("true", "GH_TOKEN"));
        let bogus = json!({"workspace_id": "w", "command": "x", "bogus": 1});
        assert!(args::<Wider<Exec, SecretEnvArg>>("workspace_exec", bogus).is_err());
        let core = json!({"workspace_id": "w", "command": "true", "secret_env": {"TOKEN": "T"}});
        assert!(args::<Exec>("workspace_exec", core).is_err());
        let f: Wider<Create, CreateExtra> = args(
            "workspace_create",
            json!({"secrets": [{"name": "A", "file_path": "a"}, {"name": "B", "value": "v"}]}),
        )
        .unwrap();
        assert_eq!(f.extra.secrets.len(), 2);
        let e = args::<Create>("workspace_create", json!({"secrets": []})).err().unwrap();
        assert!(e.message.contains("unknown field `secrets`"), "{}", e.message);
        let r: Wider<Id, SnapshotArg> = args("workspace_reset", json!({"workspace_id": "w", "snapshot": "b"})).unwrap();
        assert_eq!(r.extra.snapshot.as_deref(), Some("b"));
        assert!(args::<Id>("workspace_reset", json!({"workspace_id": "w", "snapshot": "b"})).is_err());
        // A core call runs with the extras' defaults.
        let w: Wider<Id, SnapshotArg> = args::<Id>("workspace_reset", json!({"workspace_id": "w"})).unwrap().into();
        assert_eq!((w.base.workspace_id.as_str(), w.extra.snapshot), ("w", None));
    }

    #[test]
    fn bad_arguments_are_invalid_argument() {
        let e = args::<Id>("workspace_status", json!({"id": "x"})).err().unwrap();
        assert_eq!(e.code, crate::Code::InvalidArgument);
        assert!(e.message.contains("unknown field `id`"), "{}", e.message);
    }
}
