//! The MCP tool catalogue: names, short descriptions, input and output schemas, annotations,
//! which profile offers which tool, and the typed arguments each tool accepts.
//!
//! Schemas are written by hand to stay small: the whole `workspace-core` `tools/list` must
//! fit in 6 KB of JSON, so descriptions are one line and output schemas name only the fields
//! a model acts on (they list no `required` fields, so error results validate too).

use crate::error::{Error, Result};
use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Bounds the server applies to what models ask for (mirrored in the schemas).
pub const MAX_TIMEOUT_S: u64 = crate::run::MAX_TIMEOUT_S;
pub const MAX_READ_BYTES: u64 = crate::workspace::files::MAX_READ_BYTES;
/// Output kept per stream for `vm_run` and `workspace_exec` (head and tail, with a marker).
pub const EXEC_OUTPUT_BYTES: u64 = 64 * 1024;
pub const DEFAULT_ENVIRONMENT: &str = "debian:12";

pub const VM_RUN: &[&str] = &["vm_run"];
pub const WORKSPACE_CORE: &[&str] = &[
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
];
/// `workspace-full` is `workspace-core` plus the tools that have no core slot; none has
/// landed yet, so today it offers the same tools.
pub const WORKSPACE_FULL: &[&str] = WORKSPACE_CORE;

fn int(min: u64, max: u64, default: Option<u64>) -> Value {
    let mut v = json!({"type": "integer", "minimum": min, "maximum": max});
    if let Some(d) = default {
        v["default"] = d.into();
    }
    v
}

fn s(desc: &str) -> Value {
    if desc.is_empty() {
        json!({"type": "string"})
    } else {
        json!({"type": "string", "description": desc})
    }
}

fn map() -> Value {
    json!({"type": "object", "additionalProperties": {"type": "string"}})
}

/// `{"type":"object","properties":…,"required":…}`.
fn input(props: Value, required: &[&str]) -> JsonObject {
    let mut o = JsonObject::new();
    o.insert("type".into(), "object".into());
    o.insert("properties".into(), props);
    if !required.is_empty() {
        o.insert("required".into(), json!(required));
    }
    o
}

/// Output schema: the fields a model acts on, by type only; nothing required.
fn output(fields: &[(&str, &str)]) -> Option<Arc<JsonObject>> {
    let props: serde_json::Map<String, Value> =
        fields.iter().map(|(k, t)| (k.to_string(), json!({"type": t}))).collect();
    let mut o = JsonObject::new();
    o.insert("type".into(), "object".into());
    o.insert("properties".into(), Value::Object(props));
    Some(Arc::new(o))
}

#[derive(Clone, Copy)]
enum Kind {
    /// Reads only.
    Read,
    /// Changes state; (destructive, idempotent).
    Write(bool, bool),
}

fn tool(name: &'static str, desc: &'static str, inp: JsonObject, out: Option<Arc<JsonObject>>, kind: Kind) -> Tool {
    // Hints left at their spec defaults (readOnlyHint false, idempotentHint false) are left
    // out to keep tools/list small; destructiveHint and openWorldHint are always explicit.
    let a = match kind {
        Kind::Read => ToolAnnotations::new().read_only(true),
        Kind::Write(d, false) => ToolAnnotations::new().destructive(d),
        Kind::Write(d, true) => ToolAnnotations::new().destructive(d).idempotent(true),
    };
    let mut t = Tool::new(name, desc, inp).with_annotations(a.open_world(false));
    if let Some(o) = out {
        t = t.with_raw_output_schema(o);
    }
    t
}

const RUN_OUT: &[(&str, &str)] = &[("exit_code", "integer"), ("stdout", "string"), ("stderr", "string")];

/// Every tool the server knows, in catalogue order. Every result is structured content (a
/// JSON object); output schemas are declared where a model acts on specific fields.
pub fn all() -> Vec<Tool> {
    use Kind::*;
    let wid = || json!({"workspace_id": s("")});
    let only_id = || input(wid(), &["workspace_id"]);
    let with = |extra: Value| {
        let mut p = wid();
        p.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        p
    };
    let cpu = || int(1, crate::run::MAX_VCPUS as u64, None);
    let mem = || int(crate::run::MIN_MEM_MIB as u64, crate::run::MAX_MEM_MIB as u64, None);
    vec![
        tool(
            "vm_run",
            "Run a shell command in a throwaway microVM.",
            input(
                json!({
                    "command": s("run with /bin/sh -c"),
                    "environment": s(""),
                    "timeout_seconds": int(1, MAX_TIMEOUT_S, Some(30)),
                }),
                &["command"],
            ),
            output(RUN_OUT),
            Write(false, false),
        ),
        tool(
            "workspace_create",
            "Create a workspace VM seeded from seed_path or the project.",
            input(
                json!({
                    "seed_path": s("host dir or .tar(.gz)"),
                    "environment": s(""),
                    "name": s(""),
                    "labels": map(),
                    "vcpu_count": cpu(),
                    "mem_mib": mem(),
                }),
                &[],
            ),
            None,
            Write(false, false),
        ),
        tool("workspace_list", "List workspaces.", input(json!({}), &[]), None, Read),
        tool(
            "workspace_update",
            "Rename or relabel a workspace.",
            input(
                with(json!({
                    "name": s(""),
                    "clear_name": {"type": "boolean"},
                    "labels": map(),
                    "clear_labels": {"type": "array", "items": {"type": "string"}},
                })),
                &["workspace_id"],
            ),
            None,
            Write(false, true),
        ),
        tool("workspace_status", "A workspace's state.", only_id(), None, Read),
        tool(
            "workspace_sync_push",
            "Copy a host dir or archive into the workspace.",
            input(with(json!({"source_path": s(""), "dest": s("")})), &["workspace_id", "source_path"]),
            None,
            Write(true, true),
        ),
        tool(
            "workspace_exec",
            "Run a shell command in the workspace.",
            input(
                with(json!({
                    "command": s("run with /bin/sh -c"),
                    "cwd": s(""),
                    "timeout_seconds": int(1, MAX_TIMEOUT_S, Some(30)),
                    "env": map(),
                })),
                &["workspace_id", "command"],
            ),
            output(RUN_OUT),
            Write(true, false),
        ),
        tool("workspace_logs", "Command history since the last reset.", only_id(), None, Read),
        tool("workspace_summary", "Commands, failures and changes since the last reset.", only_id(), None, Read),
        tool(
            "workspace_file_list",
            "List workspace files.",
            input(with(json!({"path": s(""), "recursive": {"type": "boolean"}})), &["workspace_id"]),
            None,
            Read,
        ),
        tool(
            "workspace_file_read",
            "Read a workspace file.",
            input(
                with(json!({"path": s(""), "max_bytes": int(1, MAX_READ_BYTES, Some(65536))})),
                &["workspace_id", "path"],
            ),
            output(&[("content", "string")]),
            Read,
        ),
        tool(
            "workspace_file_write",
            "Create or replace a workspace file.",
            input(with(json!({"path": s(""), "content": s("")})), &["workspace_id", "path", "content"]),
            None,
            Write(true, true),
        ),
        tool(
            "workspace_patch_apply",
            "Apply a unified diff, all or nothing.",
            input(with(json!({"patch": s("")})), &["workspace_id", "patch"]),
            None,
            Write(true, false),
        ),
        tool(
            "workspace_diff",
            "Changes since the baseline, as a unified patch.",
            only_id(),
            output(&[("patch", "string")]),
            Read,
        ),
        tool(
            "workspace_export",
            "Copy a workspace file or dir to a new host path.",
            input(with(json!({"path": s(""), "output_path": s("")})), &["workspace_id", "path", "output_path"]),
            None,
            Write(false, false),
        ),
        tool("workspace_reset", "Discard all changes since the baseline.", only_id(), None, Write(true, true)),
        tool("workspace_delete", "Stop and delete the workspace.", only_id(), None, Write(true, true)),
    ]
}

/// Parse a tool's arguments; schema violations become `invalid_argument` errors.
pub fn args<T: DeserializeOwned>(tool: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        Error::invalid(format!("invalid arguments for {tool}: {e}")).hint("see the tool's input schema in tools/list")
    })
}

/// Check an optional integer argument against its schema bounds.
pub fn bounded(name: &str, v: Option<u64>, min: u64, max: u64, default: u64) -> Result<u64> {
    let v = v.unwrap_or(default);
    if v < min || v > max {
        return Err(Error::invalid(format!("{name} must be {min}..={max}, got {v}")));
    }
    Ok(v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmRun {
    pub command: String,
    pub environment: Option<String>,
    pub timeout_seconds: Option<u64>,
    pub vcpu_count: Option<u32>,
    pub mem_mib: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    pub seed_path: Option<String>,
    pub environment: Option<String>,
    pub name: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub vcpu_count: Option<u32>,
    pub mem_mib: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Id {
    pub workspace_id: String,
}

#[derive(Deserialize)]
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncPush {
    pub workspace_id: String,
    pub source_path: String,
    pub dest: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exec {
    pub workspace_id: String,
    pub command: String,
    pub cwd: Option<String>,
    pub timeout_seconds: Option<u64>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileList {
    pub workspace_id: String,
    pub path: Option<String>,
    #[serde(default)]
    pub recursive: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRead {
    pub workspace_id: String,
    pub path: String,
    pub max_bytes: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileWrite {
    pub workspace_id: String,
    pub path: String,
    pub content: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchApply {
    pub workspace_id: String,
    pub patch: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    pub workspace_id: String,
    pub path: String,
    pub output_path: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_complete_and_small() {
        let tools = all();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, WORKSPACE_CORE);
        let size = serde_json::to_vec(&json!({"tools": tools})).unwrap().len();
        assert!(size < 6000, "workspace-core tools/list is {size} bytes");
        for t in &tools {
            let a = t.annotations.as_ref().unwrap();
            assert_eq!(a.open_world_hint, Some(false), "{}", t.name);
            assert!(t.description.as_ref().unwrap().len() <= 100, "{}", t.name);
        }
    }

    #[test]
    fn schema_properties_match_argument_structs() {
        // Every property a schema advertises is accepted by its argument struct.
        for t in all() {
            let props = t.input_schema["properties"].as_object().unwrap();
            let mut v = serde_json::Map::new();
            for (k, p) in props {
                let sample = match p["type"].as_str().unwrap() {
                    "string" => json!("x"),
                    "integer" => p["minimum"].clone(),
                    "boolean" => json!(false),
                    "object" => json!({}),
                    "array" => json!([]),
                    other => panic!("{other}"),
                };
                v.insert(k.clone(), sample);
            }
            let v = Value::Object(v);
            let ok = match t.name.as_ref() {
                "vm_run" => args::<VmRun>("t", v).is_ok(),
                "workspace_create" => args::<Create>("t", v).is_ok(),
                "workspace_list" => args::<Empty>("t", v).is_ok(),
                "workspace_update" => args::<Update>("t", v).is_ok(),
                "workspace_sync_push" => args::<SyncPush>("t", v).is_ok(),
                "workspace_exec" => args::<Exec>("t", v).is_ok(),
                "workspace_file_list" => args::<FileList>("t", v).is_ok(),
                "workspace_file_read" => args::<FileRead>("t", v).is_ok(),
                "workspace_file_write" => args::<FileWrite>("t", v).is_ok(),
                "workspace_patch_apply" => args::<PatchApply>("t", v).is_ok(),
                "workspace_export" => args::<Export>("t", v).is_ok(),
                _ => args::<Id>("t", v).is_ok(),
            };
            assert!(ok, "{}", t.name);
        }
        let e = args::<Id>("workspace_status", json!({"id": "x"})).err().unwrap();
        assert_eq!(e.code, crate::Code::InvalidArgument);
        assert!(e.message.contains("unknown field `id`"), "{}", e.message);
    }
}
