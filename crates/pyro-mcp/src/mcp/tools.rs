//! The MCP tool catalogue: names, short descriptions, annotations, which profile offers
//! which tool, the typed arguments each tool accepts and the result type it returns.
//!
//! Input schemas are generated (schemars) from the argument structs the server deserializes,
//! output schemas from the SDK result types, so neither can drift from the code. `reduce`
//! then shrinks each generated schema to fit the budget: the whole `workspace-core`
//! `tools/list` must stay within `TOOLS_LIST_BUDGET` bytes of compact JSON. It keeps the
//! top-level properties with their type only (plus range, numeric default and descriptions
//! of at most `MAX_DESCRIPTION` characters on inputs: longer doc comments are for code
//! readers), and `required` on inputs only (error results must validate against output
//! schemas too). Output schemas name the fields a model acts on, as far as the budget allows.

use super::source::SeedSource;
use crate::error::{Error, Result};
use crate::render::Render;
use crate::WorkspaceInfo;
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

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
const MAX_DESCRIPTION: usize = 40;

pub const VM_RUN: &[&str] = &["vm_run"];
/// The `workspace-core` tool names followed by `$extra`: the two profiles' lists share one
/// source, so `workspace-full` cannot drift from the core it extends.
macro_rules! core_tools {
    ($($extra:literal),* $(,)?) => {
        &[
            "vm_run",
            "workspace_create",
            "workspace_list",
            "workspace_update",
            "workspace_status",
            "workspace_sync_push",
            "workspace_exec",
            "workspace_logs",
            "workspace_summary",
            "workspace_file_list",
            "workspace_file_read",
            "workspace_file_write",
            "workspace_patch_apply",
            "workspace_diff",
            "workspace_export",
            "workspace_reset",
            "workspace_delete",
            $($extra),*
        ]
    };
}

pub const WORKSPACE_CORE: &[&str] = core_tools!();
/// `workspace-full` is `workspace-core` plus the tools that have no core slot (shells, services,
/// snapshots).
pub const WORKSPACE_FULL: &[&str] = core_tools!(
    "shell_open",
    "shell_read",
    "shell_write",
    "shell_signal",
    "shell_resize",
    "shell_close",
    "service_start",
    "service_list",
    "service_status",
    "service_logs",
    "service_stop",
    "snapshot_create",
    "snapshot_list",
    "snapshot_delete",
    "workspace_stop",
    "workspace_start",
    "workspace_fork",
    "workspace_disk_list",
    "workspace_disk_read",
    "workspace_disk_export",
);
/// Compact JSON bytes the `workspace-full` `tools/list` may take.
pub const FULL_TOOLS_LIST_BUDGET: usize = 14 * 1024;
/// `shell_read`'s default and largest `max_chars` in MCP.
pub const SHELL_READ_DEFAULT: u64 = 16 * 1024;
pub const SHELL_READ_MAX: u64 = 64 * 1024;
/// `service_logs`' default and largest `tail_lines`, and the bytes kept of each stream (the
/// newest).
pub const SERVICE_TAIL_DEFAULT: u64 = 200;
pub const SERVICE_TAIL_MAX: u64 = 2000;
pub const SERVICE_LOG_BYTES: usize = 24 * 1024;

/// The JSON type of a generated property: `Option<T>` reads as T, references and
/// enums of strings as what they resolve to.
fn type_of(p: &Value, defs: &Map<String, Value>) -> Option<Value> {
    match p.get("type") {
        Some(Value::String(t)) => return Some(json!(t)),
        Some(Value::Array(ts)) => {
            let ts: Vec<&Value> = ts.iter().filter(|t| *t != "null").collect();
            return Some(if ts.len() == 1 { ts[0].clone() } else { json!(ts) });
        }
        _ => {}
    }
    if let Some(r) = p.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return defs.get(name).and_then(|d| type_of(d, defs));
    }
    if p.get("enum").is_some() || p.get("const").is_some() {
        return Some(json!("string"));
    }
    let variants = p.get("anyOf").or_else(|| p.get("oneOf"))?.as_array()?;
    variants.iter().find(|v| v.get("type").is_none_or(|t| t != "null")).and_then(|v| type_of(v, defs))
}

/// Shrink a generated schema to the top-level properties' types (see the module docs).
fn reduce(schema: schemars::Schema, input: bool) -> JsonObject {
    let v = schema.to_value();
    let empty = Map::new();
    let defs = v.get("$defs").and_then(Value::as_object).unwrap_or(&empty);
    let mut props = Map::new();
    for (name, p) in v.get("properties").and_then(Value::as_object).unwrap_or(&empty) {
        let mut out = Map::new();
        if let Some(t) = type_of(p, defs) {
            out.insert("type".into(), t);
        }
        if input {
            for k in ["minimum", "maximum"] {
                if let Some(x) = p.get(k) {
                    out.insert(k.into(), x.clone());
                }
            }
            // Numeric defaults say something; `false`, `{}` and `[]` (serde's defaults for
            // flags, maps and lists) only cost bytes.
            if let Some(d) = p.get("default").filter(|d| d.is_number()) {
                out.insert("default".into(), d.clone());
            }
            if let Some(d) = p.get("description").and_then(Value::as_str).filter(|d| d.len() <= MAX_DESCRIPTION) {
                out.insert("description".into(), json!(d));
            }
        }
        props.insert(name.clone(), Value::Object(out));
    }
    let mut o = JsonObject::new();
    o.insert("type".into(), "object".into());
    o.insert("properties".into(), Value::Object(props));
    if let Some(r) = v.get("required").filter(|r| input && r.as_array().is_some_and(|a| !a.is_empty())) {
        o.insert("required".into(), r.clone());
    }
    o
}

fn input_schema<A: JsonSchema>() -> JsonObject {
    reduce(schemars::schema_for!(A), true)
}

/// The output schema of result type `R`, with only the `keep` properties: those a model
/// acts on, as far as the size budget allows.
fn output_schema<R: JsonSchema>(keep: &[&str]) -> JsonObject {
    let mut o = reduce(schemars::schema_for!(R), false);
    if let Some(Value::Object(props)) = o.get_mut("properties") {
        props.retain(|k, _| keep.contains(&k.as_str()));
    }
    o
}

#[derive(Clone, Copy)]
enum Kind {
    /// Reads only.
    Read,
    /// Changes state; (destructive, idempotent).
    Write(bool, bool),
}

/// One catalogue entry: the tool as listed, built from its argument type `A` and result
/// type `R`. Tests check the listed schemas against those types again.
struct Def {
    tool: Tool,
    #[cfg(test)]
    check: fn(&Tool),
}

fn def<A: JsonSchema + DeserializeOwned, R: JsonSchema>(
    name: &'static str,
    desc: &'static str,
    kind: Kind,
    out: Option<&[&str]>,
) -> Def {
    // Hints left at their spec defaults (readOnlyHint false, idempotentHint false) are left
    // out to keep tools/list small, and so is openWorldHint: the three hints hosts act on
    // (read-only, destructive, idempotent) fit the budget, a fourth on every tool did not.
    let a = match kind {
        Kind::Read => ToolAnnotations::new().read_only(true),
        Kind::Write(d, false) => ToolAnnotations::new().destructive(d),
        Kind::Write(d, true) => ToolAnnotations::new().destructive(d).idempotent(true),
    };
    let mut tool = Tool::new(name, desc, input_schema::<A>()).with_annotations(a);
    tool.title = Some(title_of(name));
    if let Some(keep) = out {
        tool = tool.with_raw_output_schema(Arc::new(output_schema::<R>(keep)));
    }
    if LARGE_RESULTS.contains(&name) {
        let mut meta = rmcp::model::MetaObject::new();
        meta.insert("anthropic/maxResultSizeChars".into(), json!(MAX_RESULT_CHARS));
        tool.meta = Some(meta);
    }
    Def {
        tool,
        #[cfg(test)]
        check: tests::check::<A, R>,
    }
}

/// Tools whose results can pass Claude Code's 50,000-character default (output streams, file
/// content, patches, history). The summary is not one: it stays under 8 KiB.
const LARGE_RESULTS: &[&str] = &[
    "vm_run",
    "workspace_exec",
    "workspace_logs",
    "workspace_file_read",
    "workspace_diff",
    "shell_read",
    "service_logs",
    "workspace_disk_read",
];

/// A tool's display title, as hosts show it in their tool rows next to the server's name:
/// the name in words, without the `workspace_` prefix that every core tool shares
/// (`workspace_file_read` -> `File read`, `shell_open` -> `Shell open`).
fn title_of(name: &str) -> String {
    if name == "vm_run" {
        return "Run in a throwaway VM".into();
    }
    let words = name.strip_prefix("workspace_").unwrap_or(name).replace('_', " ");
    let mut c = words.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// `shell_read`'s `max_chars` (default and cap smaller than the SDK's).
pub fn shell_read_chars(m: Option<u64>) -> Result<u64> {
    crate::error::in_range("max_chars", m.unwrap_or(SHELL_READ_DEFAULT), 1, SHELL_READ_MAX)
}

/// `timeout_seconds` of `vm_run` and `workspace_exec`: default 30, at most
/// [`super::MAX_EXEC_TIMEOUT_S`] (host configs written by `pyro host` allow that much).
pub fn exec_timeout(t: Option<u64>) -> Result<u64> {
    crate::error::in_range("timeout_seconds", t.unwrap_or(crate::run::DEFAULT_TIMEOUT_S), 1, super::MAX_EXEC_TIMEOUT_S)
}

/// `workspace_file_read`'s `max_bytes` (default and cap smaller than the SDK's).
pub fn file_read_bytes(m: Option<u64>) -> Result<u64> {
    crate::error::in_range("max_bytes", m.unwrap_or(READ_BYTES_DEFAULT), 1, READ_BYTES_MAX)
}

fn catalogue() -> Vec<Def> {
    use crate::workspace::diff::DiffResult;
    use crate::workspace::disk as dk;
    use crate::workspace::files as f;
    use crate::workspace::lifecycle as l;
    use crate::workspace::services as s;
    use crate::workspace::shells as sh;
    use crate::workspace::snapshots as sn;
    use crate::workspace::stop as st;
    use Kind::*;
    vec![
        def::<VmRun, crate::RunResult>(
            "vm_run",
            "Run a shell command in a throwaway VM.",
            Write(false, false),
            Some(&["exit_code", "stdout", "stderr"]),
        ),
        def::<Create, CreateResult>(
            "workspace_create",
            "Create a workspace from seed_path or the project.",
            Write(false, false),
            None,
        ),
        def::<Empty, crate::WorkspaceList>("workspace_list", "List workspaces.", Read, None),
        def::<Update, WorkspaceInfo>("workspace_update", "Rename or relabel a workspace.", Write(false, true), None),
        def::<Id, WorkspaceInfo>("workspace_status", "A workspace's state.", Read, None),
        def::<SyncPush, f::SyncPush>(
            "workspace_sync_push",
            "Copy host files into the workspace.",
            Write(true, true),
            None,
        ),
        def::<Exec, l::ExecRecord>(
            "workspace_exec",
            "Run a shell command in it.",
            Write(true, false),
            Some(&["exit_code", "stdout", "stderr"]),
        ),
        def::<Id, l::Logs>("workspace_logs", "Command history.", Read, None),
        def::<Id, crate::workspace::summary::Summary>("workspace_summary", "Review since the last reset.", Read, None),
        def::<FileList, f::FileList>("workspace_file_list", "List workspace files.", Read, None),
        def::<FileRead, f::FileRead>(
            "workspace_file_read",
            "Read a workspace file.",
            Read,
            Some(&["content", "truncated", "next_offset"]),
        ),
        def::<FileWrite, f::FileWrite>("workspace_file_write", "Write a workspace file.", Write(true, true), None),
        def::<PatchApply, f::PatchReport>(
            "workspace_patch_apply",
            "Apply a unified diff, all or nothing.",
            Write(true, false),
            None,
        ),
        def::<Diff, DiffResult>(
            "workspace_diff",
            "Changes since the baseline, as a patch.",
            Read,
            Some(&["patch", "patch_truncated"]),
        ),
        def::<Export, crate::workspace::export::ExportReport>(
            "workspace_export",
            "Copy workspace files to a new host path.",
            Write(false, false),
            None,
        ),
        def::<Id, WorkspaceInfo>("workspace_reset", "Discard changes since the baseline.", Write(true, true), None),
        def::<Id, l::DeleteReport>("workspace_delete", "Stop and delete the workspace.", Write(true, true), None),
        def::<ShellOpen, sh::ShellInfo>("shell_open", "Open a PTY shell in the workspace.", Write(false, false), None),
        def::<ShellRead, sh::ShellRead>(
            "shell_read",
            "Read shell output from a cursor.",
            Read,
            Some(&["output", "next_cursor", "more", "idle", "alive"]),
        ),
        def::<ShellWrite, sh::ShellInfo>("shell_write", "Type input into a shell.", Write(true, false), None),
        def::<ShellSignal, sh::ShellInfo>("shell_signal", "Signal a shell's foreground job.", Write(true, false), None),
        def::<ShellResize, sh::ShellInfo>("shell_resize", "Resize a shell's terminal.", Write(false, true), None),
        def::<ShellId, sh::ShellInfo>("shell_close", "Close a shell and its jobs.", Write(true, true), None),
        def::<ServiceStart, s::ServiceInfo>(
            "service_start",
            "Start a long-running service; wait until ready.",
            Write(false, false),
            Some(&["state", "last_probe", "stop_reason"]),
        ),
        def::<Id, s::ServiceList>("service_list", "A workspace's services.", Read, None),
        def::<ServiceName, s::ServiceInfo>("service_status", "A service's state.", Read, None),
        def::<ServiceLogs, s::ServiceLogs>(
            "service_logs",
            "The end of a service's output.",
            Read,
            Some(&["stdout", "stderr"]),
        ),
        def::<ServiceStop, s::ServiceInfo>(
            "service_stop",
            "Stop a service (TERM, then KILL).",
            Write(true, true),
            None,
        ),
        def::<SnapshotName, sn::SnapshotInfo>(
            "snapshot_create",
            "Snapshot the whole guest disk, by name.",
            Write(false, false),
            None,
        ),
        def::<Id, sn::SnapshotList>("snapshot_list", "Snapshots, baseline first.", Read, None),
        def::<SnapshotName, sn::SnapshotDeleted>("snapshot_delete", "Delete a snapshot.", Write(true, true), None),
        def::<Stop, st::StopReport>(
            "workspace_stop",
            "Stop the VM, saving its memory for start.",
            Write(false, false),
            None,
        ),
        def::<Id, st::StartReport>("workspace_start", "Start a stopped workspace.", Write(false, false), None),
        def::<Fork, WorkspaceInfo>(
            "workspace_fork",
            "A new workspace from this one's disk and (if running) memory.",
            Write(false, false),
            None,
        ),
        def::<DiskList, f::FileList>("workspace_disk_list", "List a stopped workspace's disk.", Read, None),
        def::<DiskRead, f::FileRead>(
            "workspace_disk_read",
            "Read a file on a stopped workspace's disk.",
            Read,
            Some(&["content", "truncated", "next_offset"]),
        ),
        def::<DiskExport, dk::DiskExport>(
            "workspace_disk_export",
            "Write a stopped workspace's disk as a raw ext4 image.",
            Write(false, false),
            None,
        ),
    ]
}

/// Every tool the server knows, in catalogue order. Every result is structured content (a
/// JSON object); output schemas are declared where a model acts on specific fields.
pub fn all() -> Vec<Tool> {
    catalogue().into_iter().map(|d| d.tool).collect()
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

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmRun {
    // Run with /bin/sh -c: the tool's description says "shell command" (bytes for the budget).
    pub command: String,
    pub environment: Option<String>,
    #[schemars(range(min = 1, max = super::MAX_EXEC_TIMEOUT_S), extend("default" = crate::run::DEFAULT_TIMEOUT_S))]
    pub timeout_seconds: Option<u64>,
    #[schemars(range(min = 1, max = crate::run::MAX_VCPUS))]
    pub vcpu_count: Option<u32>,
    #[schemars(range(min = crate::run::MIN_MEM_MIB, max = crate::run::MAX_MEM_MIB))]
    pub mem_mib: Option<u32>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Create {
    /// host dir or .tar(.gz)
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

/// `workspace_create` in the `workspace-full` profile: `Create` plus the guest's network
/// (`workspace-core` keeps guests offline and refuses these fields).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFull {
    #[serde(flatten)]
    pub base: Create,
    /// off, egress or egress+published-ports
    pub network_policy: Option<String>,
    /// only HTTP(S) to these names (*.x.org for subdomains)
    #[serde(default)]
    pub allow_domains: Vec<String>,
    /// [{name, value | file_path}]
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

/// The `workspace-full` variant of `workspace_create`.
pub fn create_full() -> Tool {
    def::<CreateFull, CreateResult>(
        "workspace_create",
        "Create a workspace from seed_path or the project.",
        Kind::Write(false, false),
        None,
    )
    .tool
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
    #[schemars(range(min = 1, max = super::MAX_EXEC_TIMEOUT_S), extend("default" = crate::run::DEFAULT_TIMEOUT_S))]
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// `workspace_exec` in the `workspace-full` profile: `Exec` plus secrets in the command's
/// environment (a map, the leaner schema: `{"TOKEN": "GH_TOKEN"}`; `""` keeps the name).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecFull {
    #[serde(flatten)]
    pub base: Exec,
    /// {SECRET: ENV_NAME}
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
}

/// The `workspace-full` variant of `workspace_exec`.
pub fn exec_full() -> Tool {
    def::<ExecFull, crate::workspace::lifecycle::ExecRecord>(
        "workspace_exec",
        "Run a shell command in it.",
        Kind::Write(true, false),
        Some(&["exit_code", "stdout", "stderr"]),
    )
    .tool
}

/// `workspace_reset` in the `workspace-full` profile: back to a named snapshot.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetFull {
    pub workspace_id: String,
    /// default: baseline
    pub snapshot: Option<String>,
}

/// The `workspace-full` variant of `workspace_reset`.
pub fn reset_full() -> Tool {
    def::<ResetFull, WorkspaceInfo>(
        "workspace_reset",
        "Discard changes since the baseline or a snapshot.",
        Kind::Write(true, true),
        None,
    )
    .tool
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    pub workspace_id: String,
    /// shut down instead; start boots
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

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskList {
    pub workspace_id: String,
    /// absolute, or under /workspace
    pub path: Option<String>,
    #[serde(default)]
    pub recursive: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskRead {
    pub workspace_id: String,
    pub path: String,
    #[schemars(range(min = 1, max = READ_BYTES_MAX))]
    pub max_bytes: Option<u64>,
    #[schemars(range(min = 0))]
    pub offset: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskExport {
    pub workspace_id: String,
    pub output_path: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotName {
    pub workspace_id: String,
    pub name: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileList {
    pub workspace_id: String,
    pub path: Option<String>,
    #[serde(default)]
    pub recursive: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileRead {
    pub workspace_id: String,
    pub path: String,
    #[schemars(range(min = 1, max = READ_BYTES_MAX), extend("default" = READ_BYTES_DEFAULT))]
    pub max_bytes: Option<u64>,
    // Bytes to skip: the previous read's next_offset.
    #[schemars(range(min = 0))]
    pub offset: Option<u64>,
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
    /// {SECRET: ENV_NAME}
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
    /// next_cursor of the last read
    pub cursor: Option<u64>,
    #[schemars(range(min = 1, max = SHELL_READ_MAX), extend("default" = SHELL_READ_DEFAULT))]
    pub max_chars: Option<u64>,
    /// strip terminal control codes
    #[serde(default)]
    pub plain: bool,
    /// wait until quiet this long
    #[schemars(range(min = 0, max = crate::workspace::shells::MAX_IDLE_MS))]
    pub wait_for_idle_ms: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellWrite {
    pub workspace_id: String,
    pub shell_id: String,
    pub input: String,
    /// do not press Enter after input
    #[serde(default)]
    pub no_newline: bool,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellSignal {
    pub workspace_id: String,
    pub shell_id: String,
    /// INT (default), TERM, HUP, KILL, QUIT
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
    /// only at or under this path
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
    /// run with /bin/sh -c
    pub command: String,
    pub cwd: Option<String>,
    /// ready once this file exists
    pub ready_file: Option<String>,
    /// HOST:PORT accepts TCP
    pub ready_tcp: Option<String>,
    /// http:// URL answers 2xx/3xx
    pub ready_http: Option<String>,
    /// shell command exits 0
    pub ready_command: Option<String>,
    #[schemars(range(min = 1, max = super::MAX_EXEC_TIMEOUT_S), extend("default" = 30))]
    pub ready_timeout_seconds: Option<u64>,
    /// no or on-failure
    pub restart: Option<String>,
    /// {SECRET: ENV_NAME}
    #[serde(default)]
    pub secret_env: BTreeMap<String, String>,
}

/// A `secret_env` map (`{"SECRET": "ENV_NAME"}`, `""` for the secret's own name) as specs.
pub fn secret_env(m: &BTreeMap<String, String>) -> Result<Vec<crate::SecretEnv>> {
    m.iter().map(|(s, e)| crate::SecretEnv::parse(&if e.is_empty() { s.clone() } else { format!("{s}={e}") })).collect()
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceName {
    pub workspace_id: String,
    pub name: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceLogs {
    pub workspace_id: String,
    pub name: String,
    #[schemars(range(min = 0, max = SERVICE_TAIL_MAX), extend("default" = SERVICE_TAIL_DEFAULT))]
    pub tail_lines: Option<u64>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceStop {
    pub workspace_id: String,
    pub name: String,
    #[schemars(range(min = 0, max = crate::workspace::services::MAX_STOP_GRACE_S), extend("default" = 5))]
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
pub(super) mod tests {
    use super::*;
    use serde::de::{self, Visitor};

    /// A deserializer that only records the field names a `Deserialize` struct asks for:
    /// the argument struct's fields as serde sees them, independently of schemars.
    struct FieldNames(&'static [&'static str]);

    impl<'de> de::Deserializer<'de> for &mut FieldNames {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> std::result::Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> std::result::Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(de::Error::custom("recorded"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    fn keys(o: &JsonObject) -> Vec<String> {
        let mut k: Vec<String> = o["properties"].as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    }

    /// The listed schemas of a tool against its argument type `A` and result type `R`.
    pub(super) fn check<A: DeserializeOwned + JsonSchema, R: JsonSchema>(t: &Tool) {
        let mut probe = FieldNames(&[]);
        let _ = A::deserialize(&mut probe);
        let mut fields: Vec<String> = probe.0.iter().map(|s| s.to_string()).collect();
        fields.sort();
        assert_eq!(keys(&t.input_schema), fields, "{}: input schema vs argument struct", t.name);
        if let Some(out) = &t.output_schema {
            let all = schemars::schema_for!(R).to_value();
            let result: Vec<&String> = all["properties"].as_object().unwrap().keys().collect();
            for k in keys(out) {
                assert!(result.contains(&&k), "{}: output property {k} is not a field of the result", t.name);
            }
            assert!(out.get("required").is_none(), "{}", t.name);
        }
    }

    #[test]
    fn schemas_match_argument_and_result_types() {
        for d in catalogue() {
            (d.check)(&d.tool);
        }
        let run = catalogue().remove(0).tool;
        let p = &run.input_schema["properties"];
        assert_eq!(p["timeout_seconds"], json!({"type": "integer", "minimum": 1, "maximum": 3600, "default": 30}));
        assert_eq!(p["mem_mib"], json!({"type": "integer", "minimum": 256, "maximum": 65536}));
        assert_eq!(p["command"], json!({"type": "string"}));
        assert_eq!(run.input_schema["required"], json!(["command"]));
        let out = run.output_schema.as_ref().unwrap();
        assert_eq!(out["properties"]["stdout"], json!({"type": "string"}));
        assert_eq!(out["properties"]["exit_code"], json!({"type": "integer"}));
    }

    #[test]
    fn reduce_inlines_options_refs_and_enums() {
        #[derive(JsonSchema)]
        #[allow(dead_code)]
        struct S {
            /// a description longer than the forty characters kept on inputs
            a: Option<u64>,
            b: Option<crate::session::Cleanup>,
            c: SeedSource,
            d: Vec<String>,
        }
        let o = reduce(schemars::schema_for!(S), true);
        assert_eq!(
            Value::Object(o),
            json!({"type": "object", "required": ["c", "d"], "properties": {
                "a": {"type": "integer", "minimum": 0}, "b": {"type": "object"}, "c": {"type": "object"}, "d": {"type": "array"}
            }})
        );
    }

    #[test]
    fn catalogue_is_complete_and_within_budget() {
        let full = all();
        let names: Vec<&str> = full.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, WORKSPACE_FULL);
        let full_size = serde_json::to_vec(&json!({"tools": full})).unwrap().len();
        assert!(full_size <= FULL_TOOLS_LIST_BUDGET, "workspace-full tools/list is {full_size} bytes");
        println!("workspace-full tools/list: {full_size} bytes (without create_full's network fields)");
        let tools: Vec<Tool> = full.into_iter().filter(|t| WORKSPACE_CORE.contains(&t.name.as_ref())).collect();
        let size = serde_json::to_vec(&json!({"tools": tools})).unwrap().len();
        assert!(size <= TOOLS_LIST_BUDGET, "workspace-core tools/list is {size} bytes");
        for t in &tools {
            let a = t.annotations.as_ref().unwrap();
            assert_eq!(a.open_world_hint, None, "{}", t.name);
            assert!(t.description.as_ref().unwrap().len() <= 80, "{}", t.name);
            assert!(!serde_json::to_string(&t.input_schema).unwrap().contains("$"), "{}", t.name);
        }
        let with_output: Vec<&str> =
            tools.iter().filter(|t| t.output_schema.is_some()).map(|t| t.name.as_ref()).collect();
        println!("workspace-core tools/list: {size} bytes; output schemas: {with_output:?}");
    }

    #[test]
    fn log_tails_keep_the_newest_bytes() {
        assert_eq!(log_tail("abc", 10), "abc");
        let t = log_tail("0123456789", 4);
        assert_eq!(t, "[pyro: 6 older bytes not shown]\n6789");
        assert!(log_tail("ééé", 3).ends_with('é'));
    }

    #[test]
    fn full_profile_takes_secrets_and_core_refuses_them() {
        let c = create_full();
        assert_eq!(c.input_schema["properties"]["secrets"]["type"], "array");
        let e = exec_full();
        let p = e.input_schema["properties"].as_object().unwrap();
        assert_eq!(p["secret_env"]["type"], "object");
        assert!(p.contains_key("command") && p.contains_key("workspace_id"), "{p:?}");
        let a: ExecFull = args(
            "workspace_exec",
            json!({"workspace_id": "w", "command": "true", "secret_env": {"TOKEN": "GH_TOKEN"}}),
        )
        .unwrap();
        assert_eq!(a.secret_env["TOKEN"], "GH_TOKEN");
        assert!(args::<ExecFull>("workspace_exec", json!({"workspace_id": "w", "command": "x", "bogus": 1})).is_err());
        let core = json!({"workspace_id": "w", "command": "true", "secret_env": {"TOKEN": "T"}});
        assert!(args::<Exec>("workspace_exec", core).is_err());
        let f: CreateFull = args(
            "workspace_create",
            json!({"secrets": [{"name": "A", "file_path": "a"}, {"name": "B", "value": "v"}]}),
        )
        .unwrap();
        assert_eq!(f.secrets.len(), 2);
    }

    #[test]
    fn full_reset_takes_a_snapshot_and_core_reset_does_not() {
        let r = reset_full();
        check::<ResetFull, WorkspaceInfo>(&r);
        assert_eq!(r.input_schema["properties"]["snapshot"]["type"], "string");
        let a: ResetFull = args("workspace_reset", json!({"workspace_id": "w", "snapshot": "before"})).unwrap();
        assert_eq!(a.snapshot.as_deref(), Some("before"));
        assert!(args::<Id>("workspace_reset", json!({"workspace_id": "w", "snapshot": "before"})).is_err());
        let names: Vec<String> = all().iter().map(|t| t.name.to_string()).collect();
        for t in ["snapshot_create", "snapshot_list", "snapshot_delete"] {
            assert!(names.iter().any(|n| n == t) && !WORKSPACE_CORE.contains(&t), "{t}");
        }
    }

    #[test]
    fn bad_arguments_are_invalid_argument() {
        let e = args::<Id>("workspace_status", json!({"id": "x"})).err().unwrap();
        assert_eq!(e.code, crate::Code::InvalidArgument);
        assert!(e.message.contains("unknown field `id`"), "{}", e.message);
    }
}
