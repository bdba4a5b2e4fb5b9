//! A reviewer's view of one workspace beyond the summary: every review event since the last
//! reset in order (`timeline`, the `pyro ui` page's timeline and charts read it), and what the
//! workspace costs the host right now (`usage`: disk bytes, the VM's resident memory).
//!
//! Both read host-side state only (the store, the files, `/proc`): no guest round trip, so a
//! page may poll them.

use super::base::{vm_dir, vm_state, ws_dir, Workspaces};
use crate::error::Result;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// `timeline`: the review log since the last reset, oldest first.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Timeline {
    /// The workspace (its id).
    pub workspace_id: String,
    /// The events kept (the newest 2,000 or so; older ones are counted in `rolled_up`).
    pub events: Vec<TimelineEvent>,
    /// Events of each kind folded away to keep the log bounded; absent when none were.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rolled_up: BTreeMap<String, u64>,
}

/// One event: its place in the log, when, its kind and its fields as recorded.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct TimelineEvent {
    pub sequence: u64,
    /// Seconds since the Unix epoch.
    pub recorded_at: u64,
    /// `create`, `exec`, `file_write`, `reset`, ... (the summary's event kinds).
    pub kind: String,
    /// The event's fields, as the log stores them (secrets redacted).
    pub detail: Value,
}

/// `usage`: what the workspace holds on the host now.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Usage {
    /// The workspace (its id).
    pub workspace_id: String,
    /// `running`, `stopped`, `dead`, ...
    pub state: String,
    /// Bytes of host disk its files take (disks, baseline, snapshots, saved memory).
    pub disk_bytes: u64,
    /// Resident memory of its VM's QEMU process; absent when no VM runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// The memory the VM was given, in bytes.
    pub memory_limit_bytes: u64,
}

/// Bytes allocated on disk under `dir` (sparse files count what they hold).
fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else {
                total = total.saturating_add(m.blocks().saturating_mul(512));
            }
        }
    }
    total
}

/// `VmRSS` of process `pid`, in bytes.
fn resident(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Every string in `v` through `f` (event payloads are stored redacted; this is a second net).
fn map_strings(v: &mut Value, f: &dyn Fn(&str) -> String) {
    match v {
        Value::String(s) => *s = f(s),
        Value::Array(a) => a.iter_mut().for_each(|x| map_strings(x, f)),
        Value::Object(o) => o.values_mut().for_each(|x| map_strings(x, f)),
        _ => {}
    }
}

impl Workspaces<'_> {
    /// Every review event since the last reset, oldest first.
    pub fn timeline(&mut self, key: &str) -> Result<Timeline> {
        let r = self.resolve(key)?;
        let redactor = self.redactor(&r.id)?;
        let events = self
            .store
            .events(&r.id)?
            .into_iter()
            .map(|e| {
                let (kind, mut detail) = e.event.to_row();
                if !redactor.is_empty() {
                    map_strings(&mut detail, &|s| redactor.redact_str(s));
                }
                TimelineEvent { sequence: e.sequence, recorded_at: e.recorded_at, kind, detail }
            })
            .collect();
        let rolled_up = self.store.rollup(&r.id)?.into_iter().collect();
        Ok(Timeline { workspace_id: r.id, events, rolled_up })
    }

    /// Host disk and memory the workspace takes now.
    pub fn usage(&mut self, key: &str) -> Result<Usage> {
        let r = self.resolve(key)?;
        let (state, _) = vm_state(self.paths(), &r.id);
        let vdir = vm_dir(self.paths(), &r.id);
        let memory_bytes = if state == "running" {
            std::fs::read(vdir.join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice::<crate::vm::spec::VmState>(&b).ok())
                .and_then(|s| resident(s.qemu_pid))
        } else {
            None
        };
        let disk_bytes = allocated(&ws_dir(self.paths(), &r.id)).saturating_add(allocated(&vdir));
        Ok(Usage {
            workspace_id: r.id,
            state,
            disk_bytes,
            memory_bytes,
            memory_limit_bytes: u64::from(r.mem_mib) << 20,
        })
    }
}
