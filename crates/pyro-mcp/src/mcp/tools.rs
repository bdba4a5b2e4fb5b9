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
/// The largest `max_bytes` `workspace_file_read` accepts; a larger file is read in pages.
pub const READ_BYTES_MAX: u64 = 64 * 1024;
/// `workspace_diff`'s patch text cap (the SDK's is 200 KiB); the rest is read by `path`.
pub const DIFF_PATCH_BYTES: usize = 64 * 1024;
/// What tools that return large text declare as `_meta["anthropic/maxResultSizeChars"]`, so
/// Claude Code shows their result inline instead of saving it to a file past its default
/// 50,000 characters. It bounds our own caps above: two 24 KiB streams or a 64 KiB read or
/// patch, JSON-escaped, plus the other fields.
pub const MAX_RESULT_CHARS: u64 = 200_000;
/// The environment `vm_run` and `workspace_create` use when the call names none.
pub const DEFAULT_ENVIRONMENT: &str = "debian:12";
/// Compact JSON bytes the `workspace-core` `tools/list` may take.
pub const TOOLS_LIST_BUDGET: usize = 6144;
/// Compact JSON bytes the `workspace-full` `tools/list` may take.
pub const FULL_TOOLS_LIST_BUDGET: usize = 12 * 1024;
/// `shell_read`'s default and largest `max_chars` in MCP.
pub const SHELL_READ_DEFAULT: u64 = 16 * 1024;
/// The largest `max_chars` `shell_read` accepts in MCP.
pub const SHELL_READ_MAX: u64 = 64 * 1024;
/// `service_logs`' default and largest `tail_lines`, and the bytes kept of each stream (the
/// newest).
pub const SERVICE_TAIL_DEFAULT: u64 = 200;
/// The largest `tail_lines` `service_logs` accepts in MCP.
pub const SERVICE_TAIL_MAX: u64 = 2000;
/// Bytes kept of each log stream `service_logs` returns in MCP (the newest, after a marker).
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
    /// The new workspace, its fields at the top level of the result.
    #[serde(flatten)]
    pub workspace: WorkspaceInfo,
    /// Where the workspace's files came from: the project, an explicit path, a repository, or
    /// nothing.
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
    /// The `workspace-core` arguments, at the top level of the call's arguments.
    #[serde(flatten)]
    pub base: B,
    /// The fields only `workspace-full` offers, also at the top level.
    #[serde(flatten)]
    pub extra: X,
}

impl<B, X: Default> From<B> for Wider<B, X> {
    fn from(base: B) -> Self {
        Wider { base, extra: X::default() }
    }
}

// What models read of a field is its `#[schemars(description)]` (at most
// `schema::MAX_DESCRIPTION` characters: every byte is in every tools/list). The `///` docs are
// for code readers: schemars takes a doc as the description when there is no attribute, so
// each is longer than `MAX_DESCRIPTION` and `schema::reduce` leaves it out (a shorter one
// would be listed).

/// `vm_run`'s arguments: one command in a throwaway VM.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmRun {
    /// The command, run with /bin/sh -c (the tool's description says "shell command", which costs
    /// fewer bytes of the budget than a schema description).
    pub command: String,
    /// The environment to boot; the catalog default (`debian:12`) when absent.
    pub environment: Option<String>,
    /// Seconds before the command's process group is killed; 30 when absent.
    #[schemars(range(min = 1, max = super::profile::MAX_EXEC_TIMEOUT_S), extend("default" = crate::run::DEFAULT_TIMEOUT_S))]
    pub timeout_seconds: Option<u64>,
    /// vCPUs of the VM; the SDK's default when absent (the range is listed in the schema).
    #[schemars(range(min = 1, max = crate::run::MAX_VCPUS))]
    pub vcpu_count: Option<u32>,
    /// Memory of the VM in MiB; the SDK's default when absent (the range is listed in the schema).
    #[schemars(range(min = crate::run::MIN_MEM_MIB, max = crate::run::MAX_MEM_MIB))]
    pub mem_mib: Option<u32>,
}

/// `workspace_create`'s arguments in every profile that offers it.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Create {
    /// A host directory or .tar(.gz) archive to seed /workspace from, confined to the server's
    /// roots; the project when absent.
    #[schemars(description = "host dir or .tar(.gz)")]
    pub seed_path: Option<String>,
    /// The environment the workspace runs; the catalog default (`debian:12`) when absent.
    pub environment: Option<String>,
    /// A unique name to refer to the workspace by, besides its id.
    pub name: Option<String>,
    /// Labels to tag the workspace with (the server adds its scope label itself).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// vCPUs of the workspace's VM; the SDK's default when absent.
    #[schemars(range(min = 1, max = crate::run::MAX_VCPUS))]
    pub vcpu_count: Option<u32>,
    /// Memory of the workspace's VM in MiB; the SDK's default when absent.
    #[schemars(range(min = crate::run::MIN_MEM_MIB, max = crate::run::MAX_MEM_MIB))]
    pub mem_mib: Option<u32>,
}

/// `workspace_create`'s `workspace-full` fields: the guest's network and its secrets
/// (`workspace-core` keeps guests offline and without secrets).
#[derive(Default, Deserialize, JsonSchema)]
pub struct CreateExtra {
    /// The guest's network policy (`off`, `egress` or `egress+published-ports`); `off` when absent.
    #[schemars(description = "off|egress|egress+published-ports")]
    pub network_policy: Option<String>,
    /// With egress, only HTTP(S) to these host names is allowed (`*.x.org` for subdomains); empty
    /// allows any.
    #[serde(default)]
    pub allow_domains: Vec<String>,
    /// Secrets the workspace keeps, for `secret_env` of exec, shells and services.
    #[schemars(description = "[{name, value|file_path}]")]
    #[serde(default)]
    pub secrets: Vec<SecretArg>,
}

/// One secret of `workspace_create` (`workspace-full`): a literal value or a host file,
/// confined to the server's roots like `seed_path`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretArg {
    /// The secret's name, which `secret_env` maps to an environment variable.
    pub name: String,
    /// The secret's value, given inline; exactly one of `value` and `file_path` is set.
    pub value: Option<String>,
    /// A host file holding the secret's value, confined to the server's roots like `seed_path`.
    pub file_path: Option<String>,
}

/// The arguments of a tool that takes none (`workspace_list`).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// The arguments of a tool that takes only the workspace (status, logs, summary, reset, ...).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Id {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
}

/// `workspace_update`'s arguments: rename it or change its labels.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The workspace's new name; the name stays as it is when absent.
    pub name: Option<String>,
    /// Remove the workspace's name (it is then known by its id only).
    #[serde(default)]
    pub clear_name: bool,
    /// Labels to add or overwrite (the scope label cannot be changed).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Keys of the labels to remove from the workspace.
    #[serde(default)]
    pub clear_labels: Vec<String>,
}

/// `workspace_sync_push`'s arguments: copy a host path into the workspace.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncPush {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The host directory or archive to copy in, confined to the server's roots.
    pub source_path: String,
    /// Where in the workspace to put it: a path under /workspace, which is the default.
    pub dest: Option<String>,
}

/// `workspace_exec`'s arguments in every profile (`workspace-full` adds `secret_env`).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The command, run with /bin/sh -c like `vm_run`'s.
    pub command: String,
    /// The working directory in the guest; /workspace when absent.
    pub cwd: Option<String>,
    /// Seconds before the command's process group is killed; 30 when absent.
    #[schemars(range(min = 1, max = super::profile::MAX_EXEC_TIMEOUT_S), extend("default" = crate::run::DEFAULT_TIMEOUT_S))]
    pub timeout_seconds: Option<u64>,
    /// Environment variables added to the command's environment, name to value.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Secrets in a process's environment (`workspace-full`'s exec, and shells and services):
/// a map, the leaner schema (`{"TOKEN": "GH_TOKEN"}`; `""` keeps the secret's name).
#[derive(Default, Deserialize, JsonSchema)]
pub struct SecretEnvArg {
    /// Secrets to put in the environment: secret name to variable name (`""` keeps the secret's
    /// name).
    #[schemars(description = "{SECRET: ENV_NAME}")]
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
}

/// `workspace_reset`'s `workspace-full` field: back to a named snapshot instead of the
/// baseline (snapshots are a `workspace-full` feature).
#[derive(Default, Deserialize, JsonSchema)]
pub struct SnapshotArg {
    /// The snapshot to reset to; the baseline (the workspace as created) when absent.
    pub snapshot: Option<String>,
}

/// `workspace_stop`'s arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// Do not save the guest's memory: `workspace_start` then boots it again from the disk.
    #[schemars(description = "cold stop: start boots")]
    #[serde(default)]
    pub discard_memory: bool,
}

/// `workspace_fork`'s arguments: a copy of the workspace, with its memory if it runs.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Fork {
    /// The workspace to copy: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// A unique name for the copy; none when absent.
    pub name: Option<String>,
    /// Labels for the copy (the server adds its scope label itself).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `workspace_file_list`'s and `workspace_disk_list`'s arguments (on the disk, `path` is
/// absolute or under /workspace).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileList {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The directory to list; /workspace when absent.
    pub path: Option<String>,
    /// List everything below the directory, not only its direct entries.
    #[serde(default)]
    pub recursive: bool,
}

/// `workspace_file_read`'s and `workspace_disk_read`'s arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRead {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The file to read, absolute or relative to /workspace.
    pub path: String,
    /// Bytes to read at most; 32 KiB when absent (the range is listed in the schema).
    #[schemars(range(min = 1, max = READ_BYTES_MAX), extend("default" = READ_BYTES_DEFAULT))]
    pub max_bytes: Option<u64>,
    /// Bytes to skip from the start of the file: the previous read's `next_offset`, to page through
    /// a large file.
    pub offset: Option<u64>,
}

/// `workspace_disk_export`'s arguments: a stopped workspace's disk as an image file.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskExport {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The new host file to write the image to, confined to the server's roots.
    pub output_path: String,
}

/// A named thing in a workspace: a snapshot or a service.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Named {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The snapshot's or the service's name within the workspace.
    pub name: String,
}

/// `workspace_file_write`'s arguments: one text file, created or replaced.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileWrite {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The file to write, absolute or relative to /workspace (its directories are created).
    pub path: String,
    /// The file's whole new content, as text (it replaces what was there).
    pub content: String,
}

/// `workspace_patch_apply`'s arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchApply {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// A unified diff, applied to the workspace's files all or nothing.
    pub patch: String,
}

/// `shell_open`'s arguments: an interactive shell on a PTY in the workspace.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellOpen {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The shell's working directory; /workspace when absent.
    pub cwd: Option<String>,
    /// The PTY's width in columns; 120 when absent (the range is listed in the schema).
    #[schemars(range(min = 10, max = 1000), extend("default" = 120))]
    pub cols: Option<u16>,
    /// The PTY's height in rows; 30 when absent (the range is listed in the schema).
    #[schemars(range(min = 2, max = 500), extend("default" = 30))]
    pub rows: Option<u16>,
    /// Secrets to put in the shell's environment: secret name to variable name.
    #[schemars(description = "{SECRET: ENV_NAME}")]
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
}

/// The arguments of a tool that acts on one shell (`shell_close`).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellId {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The shell, as `shell_open` returned its id.
    pub shell_id: String,
}

/// `shell_read`'s arguments: the shell's output from a cursor.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellRead {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The shell, as `shell_open` returned its id.
    pub shell_id: String,
    /// Where to read from: the previous read's `next_cursor`; 0 (the start) when absent.
    #[schemars(description = "last next_cursor")]
    pub cursor: Option<u64>,
    /// Characters to return at most; 16 KiB when absent (the range is listed in the schema).
    #[schemars(range(min = 1, max = SHELL_READ_MAX), extend("default" = SHELL_READ_DEFAULT))]
    pub max_chars: Option<u64>,
    /// Strip terminal control sequences from the output (colours, cursor moves).
    #[schemars(description = "strip control codes")]
    #[serde(default)]
    pub plain: bool,
    /// Wait until the shell has been quiet this many milliseconds before reading (0 or absent: no
    /// wait).
    #[schemars(range(max = crate::workspace::shells::MAX_IDLE_MS))]
    pub wait_for_idle_ms: Option<u64>,
}

/// `shell_write`'s arguments: type into a shell.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellWrite {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The shell, as `shell_open` returned its id.
    pub shell_id: String,
    /// The text to type; Enter is pressed after it unless `no_newline` is set.
    pub input: String,
    /// Do not press Enter after the input (for a prompt that reads single keys).
    #[serde(default)]
    pub no_newline: bool,
}

/// `shell_signal`'s arguments: signal the shell's foreground job.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellSignal {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The shell, as `shell_open` returned its id.
    pub shell_id: String,
    /// The signal's name without SIG (`INT`, `TERM`, `HUP`, `KILL`, `QUIT`); `INT` when absent.
    #[schemars(description = "INT (default)|TERM|HUP|KILL|QUIT")]
    pub signal: Option<String>,
}

/// `shell_resize`'s arguments: a new PTY size.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellResize {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The shell, as `shell_open` returned its id.
    pub shell_id: String,
    /// The PTY's new width in columns (the range is listed in the schema).
    #[schemars(range(min = 10, max = 1000))]
    pub cols: u16,
    /// The PTY's new height in rows (the range is listed in the schema).
    #[schemars(range(min = 2, max = 500))]
    pub rows: u16,
}

/// `workspace_diff`'s arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Diff {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// Only changes at or under this path (absolute or relative to /workspace); all changes when
    /// absent.
    pub path: Option<String>,
    /// Start at this entry: a previous result's `next_cursor`.
    pub cursor: Option<usize>,
}

/// `workspace_export`'s arguments: copy files out of the workspace to the host.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The file or directory in the workspace to copy out.
    pub path: String,
    /// The new host path to copy it to, confined to the server's roots; it must not exist yet.
    pub output_path: String,
}

/// `service_start`'s arguments: a long-running command, waited for until it is ready.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceStart {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The service's name, unique among the workspace's running services.
    pub name: String,
    /// The service's command, run with /bin/sh -c in the guest.
    pub command: String,
    /// The service's working directory; /workspace when absent.
    pub cwd: Option<String>,
    // Readiness, at most one: this file exists, HOST:PORT accepts TCP, an http:// URL answers
    // 2xx/3xx, a shell command exits 0.
    /// The service is ready once this file exists (relative to its working directory).
    pub ready_file: Option<String>,
    /// The service is ready once HOST:PORT (an IP address) accepts a TCP connection.
    #[schemars(description = "HOST:PORT")]
    pub ready_tcp: Option<String>,
    /// The service is ready once a GET of this http:// URL answers 2xx or 3xx.
    #[schemars(description = "URL")]
    pub ready_http: Option<String>,
    /// The service is ready once this shell command exits 0 (run in the guest).
    #[schemars(description = "exits 0")]
    pub ready_command: Option<String>,
    /// Seconds to wait for readiness before the call fails; 30 when absent.
    #[schemars(range(min = 1, max = super::profile::MAX_EXEC_TIMEOUT_S), extend("default" = 30))]
    pub ready_timeout_seconds: Option<u64>,
    /// Whether the agent restarts the service when it exits: `no` (the default) or `on-failure`.
    #[schemars(description = "no|on-failure")]
    pub restart: Option<String>,
    /// Secrets to put in the service's environment: secret name to variable name.
    #[schemars(description = "{SECRET: ENV_NAME}")]
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
}

/// A `secret_env` map (`{"SECRET": "ENV_NAME"}`, `""` for the secret's own name) as specs.
pub fn secret_env(m: &BTreeMap<String, String>) -> Result<Vec<crate::SecretEnv>> {
    m.iter().map(|(s, e)| crate::SecretEnv::parse(&if e.is_empty() { s.clone() } else { format!("{s}={e}") })).collect()
}

/// `service_logs`'s arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceLogs {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The service's name, as given to `service_start`.
    pub name: String,
    /// Lines to return from the end of each stream; 200 when absent (the range is listed in the
    /// schema).
    #[schemars(range(max = SERVICE_TAIL_MAX), extend("default" = SERVICE_TAIL_DEFAULT))]
    pub tail_lines: Option<u64>,
}

/// `service_stop`'s arguments.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceStop {
    /// The workspace: its id, a unique id prefix or its name, in the server's scope.
    pub workspace_id: String,
    /// The service's name, as given to `service_start`.
    pub name: String,
    /// Seconds between TERM and KILL; 5 when absent (the range is listed in the schema).
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
