//! Review events: one typed `WorkspaceEvent` per kind of mutation, appended in the same
//! transaction as the state change (`store`) and read back typed for the summary.
//!
//! Stored as two columns, `kind` (the variant's tag, e.g. `file_write`) and `payload` (the
//! variant's fields as a JSON object): the layout 4.3.0 wrote, so its databases read as they
//! are. Reading is tolerant: fields added since are `#[serde(default)]`, and a row whose kind
//! this version does not know (a newer pyro wrote it) or whose payload does not fit comes back
//! as `Unknown` with what was stored, never as an error that hides the rest of the log.

use super::patch::PatchSummary;
use super::secrets::SecretInfo;
use super::WorkspaceSeed;
use crate::vm::template::StartedFrom;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// One review event. The tag is the `kind` column; the fields are the `payload` column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkspaceEvent {
    /// The workspace was made (its first event).
    Create {
        environment: String,
        #[serde(default)]
        seed: Option<WorkspaceSeed>,
        #[serde(default)]
        secrets: Vec<SecretInfo>,
        #[serde(default)]
        started_from: Option<StartedFrom>,
    },
    /// This workspace was forked from `from` (its first event).
    Fork {
        from: String,
        #[serde(default)]
        memory: bool,
        #[serde(default)]
        source_paused_ms: Option<u64>,
    },
    /// A fork `to` was made from this workspace.
    Forked {
        to: String,
        #[serde(default)]
        memory: bool,
        #[serde(default)]
        paused_ms: Option<u64>,
    },
    /// Name or labels changed. `name: Some(None)` is a cleared name (stored as `null`).
    Update {
        #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
        name: Option<Option<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        labels: Option<BTreeMap<String, String>>,
    },
    /// A command finished (see the command history for its output).
    Exec {
        sequence: u64,
        command: String,
        exit_code: i64,
        #[serde(default)]
        duration_ms: u64,
        #[serde(default)]
        timed_out: bool,
        #[serde(default)]
        cancelled: bool,
        /// Either stream was cut to its cap.
        #[serde(default)]
        truncated: bool,
        /// Names of the secrets in its environment.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        secrets: Vec<String>,
    },
    FileWrite {
        path: String,
        #[serde(default)]
        bytes: u64,
    },
    SyncPush {
        #[serde(default)]
        source: String,
        #[serde(default)]
        destination: String,
        #[serde(default)]
        entries: u64,
        #[serde(default)]
        bytes: u64,
        #[serde(default)]
        paths: Vec<String>,
    },
    PatchApply {
        #[serde(default)]
        files: u64,
        #[serde(default)]
        paths: Vec<String>,
        #[serde(default)]
        summary: Option<PatchSummary>,
    },
    Export {
        path: String,
        output: String,
        #[serde(default)]
        entries: u64,
        #[serde(default)]
        bytes: u64,
        #[serde(default)]
        skipped: u64,
    },
    DiskExport {
        output: String,
        #[serde(default)]
        bytes: u64,
    },
    /// Back to the baseline (`snapshot: None`) or a named snapshot; the first event of its
    /// generation.
    Reset {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<String>,
    },
    SnapshotRestore {
        name: String,
    },
    SnapshotCreate {
        name: String,
        #[serde(default)]
        vm_running: bool,
    },
    SnapshotDelete {
        name: String,
    },
    ServiceStart {
        name: String,
        #[serde(default)]
        command: String,
        #[serde(default)]
        readiness: Option<String>,
    },
    ServiceReady(ServiceChange),
    ServiceExit(ServiceChange),
    ServiceFailure(ServiceChange),
    ServiceStop(ServiceChange),
    ShellOpen {
        shell_id: String,
        #[serde(default)]
        path: String,
        #[serde(default)]
        secrets: Vec<String>,
    },
    ShellClose {
        shell_id: String,
        #[serde(default)]
        exit_code: Option<i32>,
    },
    WorkspaceStop {
        #[serde(default)]
        memory_saved: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory_bytes: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ms: Option<u64>,
        /// Why the stop happened without saving memory (the VM was gone, or is a fork's).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    WorkspaceStart {
        #[serde(default)]
        resumed: bool,
        #[serde(default)]
        note: Option<String>,
        #[serde(default)]
        ms: u64,
    },
    /// The VM had died and was booted again from its disk.
    VmRestarted {
        #[serde(default)]
        reason: String,
    },
    /// New attempts to reach a destination the network policy denies.
    NetworkDenied {
        target: String,
        port: u16,
        #[serde(default)]
        reason: String,
        #[serde(default)]
        count: u64,
        #[serde(default)]
        first_at: u64,
        #[serde(default)]
        last_at: u64,
    },
    /// A row this version cannot read as one of the above, kept as stored.
    #[serde(skip)]
    Unknown {
        kind: String,
        payload: Value,
    },
}

/// A service's state changed (`service_ready`, `service_exit`, `service_failure`,
/// `service_stop`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceChange {
    pub name: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub restarts: u32,
}

/// A field that is there, even as `null`, is `Some(...)`; an absent one is `None` (by
/// `default`): `Update`'s `name: null` means "cleared", which plain `Option` would lose.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl WorkspaceEvent {
    /// The `kind` column and the `payload` object, as stored.
    pub fn to_row(&self) -> (String, Value) {
        if let WorkspaceEvent::Unknown { kind, payload } = self {
            return (kind.clone(), payload.clone());
        }
        // Serialising a derived enum of plain data cannot fail.
        let mut v = serde_json::to_value(self).unwrap_or_default();
        let kind = v.as_object_mut().and_then(|o| o.remove("kind")).and_then(|k| k.as_str().map(str::to_string));
        (kind.unwrap_or_default(), v)
    }

    /// An event read back from its `kind` and `payload` columns; `Unknown` when it does not
    /// fit any variant.
    pub fn from_row(kind: &str, payload: Value) -> WorkspaceEvent {
        let mut obj = match &payload {
            Value::Object(o) => o.clone(),
            _ => serde_json::Map::new(),
        };
        obj.insert("kind".into(), Value::String(kind.to_string()));
        serde_json::from_value(Value::Object(obj))
            .unwrap_or_else(|_| WorkspaceEvent::Unknown { kind: kind.to_string(), payload })
    }

    /// The stored kind (`exec`, `file_write`, ...).
    pub fn kind(&self) -> String {
        self.to_row().0
    }
}

/// An event as read from the log: its place, when, and what.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub sequence: u64,
    pub recorded_at: u64,
    pub event: WorkspaceEvent,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_round_trip_in_the_stored_layout() {
        let e = WorkspaceEvent::FileWrite { path: "notes.md".into(), bytes: 10 };
        let (kind, payload) = e.to_row();
        assert_eq!(kind, "file_write");
        assert_eq!(payload, json!({"path": "notes.md", "bytes": 10}));
        assert_eq!(WorkspaceEvent::from_row(&kind, payload), e);
        let s = WorkspaceEvent::ServiceExit(ServiceChange {
            name: "web".into(),
            state: "exited".into(),
            exit_code: Some(3),
            reason: None,
            restarts: 0,
        });
        let (kind, payload) = s.to_row();
        assert_eq!(kind, "service_exit");
        assert_eq!(WorkspaceEvent::from_row(&kind, payload), s);
    }

    #[test]
    fn a_cleared_name_stays_cleared() {
        let e = WorkspaceEvent::Update { name: Some(None), labels: None };
        let (kind, payload) = e.to_row();
        assert_eq!(payload, json!({"name": null}));
        assert_eq!(WorkspaceEvent::from_row(&kind, payload), e);
        let untouched = WorkspaceEvent::from_row("update", json!({"labels": {"a": "b"}}));
        assert!(matches!(untouched, WorkspaceEvent::Update { name: None, labels: Some(_) }));
    }

    #[test]
    fn unknown_and_malformed_rows_are_kept_not_dropped() {
        let e = WorkspaceEvent::from_row("teleport", json!({"to": "mars"}));
        assert_eq!(e, WorkspaceEvent::Unknown { kind: "teleport".into(), payload: json!({"to": "mars"}) });
        assert_eq!(e.to_row(), ("teleport".to_string(), json!({"to": "mars"})));
        // A known kind whose payload lacks a required field.
        assert!(matches!(WorkspaceEvent::from_row("exec", json!({})), WorkspaceEvent::Unknown { .. }));
    }

    /// Payloads exactly as 4.3.0 wrote them (copied from its writers) read as typed events.
    #[test]
    fn payloads_of_4_3_0_read_typed() {
        let rows = [
            ("reset", json!({})),
            ("reset", json!({"snapshot": "s1"})),
            (
                "exec",
                json!({"sequence": 2, "command": "exit 3", "exit_code": 3, "duration_ms": 40, "timed_out": false, "cancelled": false, "truncated": false}),
            ),
            ("workspace_stop", json!({"memory_saved": false, "note": "the VM was gone"})),
            ("workspace_stop", json!({"memory_saved": true, "memory_bytes": 1000, "ms": 300})),
            ("workspace_start", json!({"resumed": true, "note": null, "ms": 200})),
            (
                "patch_apply",
                json!({"files": 1, "paths": ["a.txt"], "summary": {"total": 1, "added": 0, "modified": 1, "deleted": 0, "renamed": 0, "mode_changed": 0}}),
            ),
            (
                "network_denied",
                json!({"target": "example.org", "port": 443, "reason": "not allowed", "count": 2, "first_at": 1, "last_at": 2}),
            ),
            ("service_start", json!({"name": "svc", "command": "sleep 600", "readiness": "file /tmp/up"})),
            ("update", json!({"name": "x", "labels": {"team": "a"}})),
        ];
        for (kind, payload) in rows {
            let e = WorkspaceEvent::from_row(kind, payload.clone());
            assert!(!matches!(e, WorkspaceEvent::Unknown { .. }), "{kind} {payload} did not read typed");
            assert_eq!(e.kind(), kind);
        }
    }
}
