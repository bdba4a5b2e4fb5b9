//! `workspace summary`: one concise view of a workspace's session since the last reset,
//! synthesized from its review events, command history and the live diff.
//!
//! `synthesize` is pure (tested on recorded event streams); `Workspaces::summary` gathers its
//! inputs. Every list is capped with a "+N more" count, and empty sections are left out, so
//! the JSON stays small after hundreds of commands and changed files.

use super::diff::DiffResult;
use super::lifecycle::Workspaces;
use super::store::{now, CommandRow};
use super::{clip, WorkspaceInfo};
use crate::error::Result;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// Every event kind the workspace log records, in one place. Features that land later
/// (services, snapshots, shells) add their kinds here and a section in `synthesize`.
pub const EVENT_KINDS: &[&str] = &[
    "create",
    "update",
    "exec",
    "sync_push",
    "file_write",
    "patch_apply",
    "export",
    "reset",
    "vm_restarted",
    "snapshot_create",
    "snapshot_delete",
    "snapshot_restore",
    "service_start",
    "service_ready",
    "service_stop",
    "service_exit",
    "service_failure",
    "shell_open",
    "shell_close",
];

const LAST_COMMANDS: usize = 5;
const MAX_PATHS: usize = 20;
const MAX_EXPORTS: usize = 5;
const TAIL_BYTES: usize = 800;

pub type Event = (u64, String, u64, Value);

/// A capped list: the first `max` items plus how many were left out.
fn capped(items: Vec<Value>, max: usize) -> (Vec<Value>, usize) {
    let extra = items.len().saturating_sub(max);
    (items.into_iter().take(max).collect(), extra)
}

fn put_list(obj: &mut Map<String, Value>, key: &str, items: Vec<Value>, max: usize) {
    if items.is_empty() {
        return;
    }
    let (items, extra) = capped(items, max);
    obj.insert(key.into(), Value::Array(items));
    if extra > 0 {
        obj.insert(format!("{key}_more"), json!(extra));
    }
}

fn tail(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let start = s.char_indices().map(|(i, _)| i).find(|&i| i >= s.len() - max).unwrap_or(0);
    format!("…{}", &s[start..])
}

/// Build the summary from its inputs. `diff` is None when it could not be computed.
pub fn synthesize(
    info: &WorkspaceInfo,
    events: &[Event],
    rollup: &[(String, u64)],
    commands: &[CommandRow],
    diff: Option<&DiffResult>,
    now: u64,
) -> Value {
    let mut out = Map::new();
    let mut ws = json!({
        "id": info.id, "environment": info.environment, "state": info.state,
        "age_seconds": now.saturating_sub(info.created_at), "reset_count": info.reset_count,
    });
    if let Some(n) = &info.name {
        ws["name"] = json!(n);
    }
    if !info.labels.is_empty() {
        ws["labels"] = json!(info.labels);
    }
    if let Some(r) = &info.state_reason {
        ws["state_reason"] = json!(r);
    }
    if let Some(t) = info.last_reset_at {
        ws["last_reset_at"] = json!(t);
    }
    out.insert("workspace".into(), ws);

    let rolled: BTreeMap<&str, u64> = rollup.iter().map(|(k, c)| (k.as_str(), *c)).collect();
    fn of<'e>(events: &'e [Event], kind: &'e str) -> impl Iterator<Item = &'e Event> + 'e {
        events.iter().filter(move |e| e.1 == kind)
    }

    // Commands: exact counts from events plus the rolled-up ones.
    let execs: Vec<&Event> = of(events, "exec").collect();
    let count =
        execs.len() as u64 + rolled.get("exec").copied().unwrap_or(0) + rolled.get("exec_failed").copied().unwrap_or(0);
    if count > 0 {
        let failed: Vec<&&Event> = execs.iter().filter(|e| e.3["exit_code"].as_i64() != Some(0)).collect();
        let failures = failed.len() as u64 + rolled.get("exec_failed").copied().unwrap_or(0);
        let mut c = json!({"count": count, "failures": failures});
        let last: Vec<Value> = execs
            .iter()
            .rev()
            .take(LAST_COMMANDS)
            .rev()
            .map(|e| json!({"sequence": e.3["sequence"], "command": clip(e.3["command"].as_str().unwrap_or(""), 120), "exit_code": e.3["exit_code"], "duration_ms": e.3["duration_ms"]}))
            .collect();
        c["last"] = json!(last);
        if let Some(f) = failed.last() {
            let seq = f.3["sequence"].as_u64().unwrap_or(0);
            let mut lf = json!({"sequence": seq, "command": clip(f.3["command"].as_str().unwrap_or(""), 120), "exit_code": f.3["exit_code"]});
            if let Some(row) = commands.iter().find(|r| r.sequence == seq) {
                let text = if row.stderr.trim().is_empty() { &row.stdout } else { &row.stderr };
                if !text.trim().is_empty() {
                    lf["output_tail"] = json!(tail(text.trim_end(), TAIL_BYTES));
                }
            }
            c["last_failure"] = lf;
        }
        out.insert("commands".into(), c);
    }

    // Edits: syncs, file writes and patches, with the paths they touched.
    let mut edits = Map::new();
    let mut paths: Vec<String> = Vec::new();
    let mut add_paths = |v: &Value| {
        for p in v.as_array().into_iter().flatten().filter_map(|p| p.as_str()) {
            if !paths.iter().any(|q| q == p) {
                paths.push(p.to_string());
            }
        }
    };
    for (kind, key) in [("sync_push", "syncs"), ("file_write", "file_writes"), ("patch_apply", "patches")] {
        let n = of(events, kind).count() as u64 + rolled.get(kind).copied().unwrap_or(0);
        if n > 0 {
            edits.insert(key.into(), json!(n));
        }
    }
    for e in events {
        match e.1.as_str() {
            "file_write" => add_paths(&json!([e.3["path"]])),
            "patch_apply" | "sync_push" => add_paths(&e.3["paths"]),
            _ => {}
        }
    }
    put_list(&mut edits, "paths", paths.into_iter().map(Value::from).collect(), MAX_PATHS);
    if !edits.is_empty() {
        out.insert("edits".into(), Value::Object(edits));
    }

    let exports: Vec<Value> =
        of(events, "export").map(|e| json!({"path": e.3["path"], "output": e.3["output"]})).collect();
    put_list(&mut out, "exports", exports, MAX_EXPORTS);

    // The live diff against the baseline.
    match diff {
        Some(d) if d.changed => {
            let s = &d.summary;
            let mut dv = json!({"added": s.added, "modified": s.modified, "deleted": s.deleted});
            if s.type_changed > 0 {
                dv["type_changed"] = json!(s.type_changed);
            }
            let mut m = dv.as_object().unwrap().clone();
            let changed: Vec<Value> =
                d.entries.iter().map(|e| json!(format!("{} {}", &e.status[..1].to_uppercase(), e.path))).collect();
            let omitted = d.entries_omitted.unwrap_or(0);
            put_list(&mut m, "paths", changed, MAX_PATHS);
            if omitted > 0 {
                let more = m.get("paths_more").and_then(|v| v.as_u64()).unwrap_or(0) + omitted as u64;
                m.insert("paths_more".into(), json!(more));
            }
            out.insert("diff".into(), Value::Object(m));
        }
        Some(_) => {}
        None => {
            out.insert("diff".into(), json!({"unavailable": true}));
        }
    }

    // Notable things a reviewer should not miss.
    let mut notable = Vec::new();
    for e in of(events, "vm_restarted") {
        notable.push(json!(clip(e.3["reason"].as_str().unwrap_or("the VM was restarted"), 200)));
    }
    let truncated: Vec<String> =
        of(events, "exec").filter(|e| e.3["truncated"] == true).map(|e| e.3["sequence"].to_string()).collect();
    if !truncated.is_empty() {
        let (shown, extra) = capped(truncated.iter().map(|s| json!(s)).collect(), 5);
        let list: Vec<String> = shown.iter().map(|v| format!("#{}", v.as_str().unwrap_or(""))).collect();
        notable.push(json!(format!(
            "output was truncated for command {}{}",
            list.join(", "),
            if extra > 0 { format!(" (+{extra} more)") } else { String::new() }
        )));
    }
    if !rollup.is_empty() {
        let n: u64 = rollup.iter().map(|r| r.1).sum();
        notable.push(json!(format!("{n} older events were folded into counts to keep the log bounded")));
    }
    if let Some(r) = &info.state_reason {
        if info.state != "running" {
            notable.push(json!(format!("the VM is {}: {}", info.state, clip(r, 200))));
        }
    }
    if !notable.is_empty() {
        out.insert("notable".into(), json!(notable));
    }
    Value::Object(out)
}

/// A short readable block for people.
pub fn render(s: &Value) -> String {
    let mut o = String::new();
    let w = &s["workspace"];
    o.push_str(&format!(
        "workspace {}{} ({}, {}), up {} s, resets {}\n",
        w["id"].as_str().unwrap_or(""),
        w["name"].as_str().map(|n| format!(" \"{n}\"")).unwrap_or_default(),
        w["environment"].as_str().unwrap_or(""),
        w["state"].as_str().unwrap_or(""),
        w["age_seconds"],
        w["reset_count"]
    ));
    if let Some(c) = s.get("commands") {
        o.push_str(&format!("commands: {} run, {} failed\n", c["count"], c["failures"]));
        for l in c["last"].as_array().into_iter().flatten() {
            o.push_str(&format!(
                "  #{} [exit {}] {} ({} ms)\n",
                l["sequence"],
                l["exit_code"],
                l["command"].as_str().unwrap_or(""),
                l["duration_ms"]
            ));
        }
        if let Some(f) = c.get("last_failure") {
            if let Some(t) = f["output_tail"].as_str() {
                o.push_str(&format!("  last failure #{} output:\n", f["sequence"]));
                for line in t.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev() {
                    o.push_str(&format!("    | {line}\n"));
                }
            }
        }
    }
    if let Some(e) = s.get("edits") {
        let parts: Vec<String> = ["syncs", "file_writes", "patches"]
            .iter()
            .filter_map(|k| e.get(*k).map(|n| format!("{n} {}", k.replace('_', " "))))
            .collect();
        o.push_str(&format!("edits: {}\n", parts.join(", ")));
        if let Some(p) = e.get("paths") {
            let list: Vec<&str> = p.as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
            o.push_str(&format!(
                "  touched: {}{}\n",
                list.join(", "),
                e.get("paths_more").map(|m| format!(" (+{m} more)")).unwrap_or_default()
            ));
        }
    }
    if let Some(x) = s.get("exports") {
        for e in x.as_array().unwrap() {
            o.push_str(&format!(
                "export: {} -> {}\n",
                e["path"].as_str().unwrap_or(""),
                e["output"].as_str().unwrap_or("")
            ));
        }
    }
    if let Some(d) = s.get("diff") {
        if d.get("unavailable").is_some() {
            o.push_str("diff: unavailable\n");
        } else {
            o.push_str(&format!("diff: {} added, {} modified, {} deleted\n", d["added"], d["modified"], d["deleted"]));
            for p in d["paths"].as_array().into_iter().flatten() {
                o.push_str(&format!("  {}\n", p.as_str().unwrap_or("")));
            }
            if let Some(m) = d.get("paths_more") {
                o.push_str(&format!("  +{m} more\n"));
            }
        }
    }
    for n in s["notable"].as_array().into_iter().flatten() {
        o.push_str(&format!("note: {}\n", n.as_str().unwrap_or("")));
    }
    o
}

impl Workspaces<'_> {
    pub fn summary(&mut self, key: &str) -> Result<Value> {
        let r = self.resolve(key)?;
        let diff = self.diff(&r.id).ok();
        let r = self.resolve(&r.id)?;
        let info = self.info(&r);
        let events = self.store.events(&r.id)?;
        let rollup = self.store.rollup(&r.id)?;
        let commands = self.store.commands(&r.id)?;
        Ok(synthesize(&info, &events, &rollup, &commands, diff.as_ref(), now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workspace::diff::{DiffEntry, DiffSummary};

    fn info() -> WorkspaceInfo {
        WorkspaceInfo {
            id: "abc123abc123".into(),
            name: Some("fix".into()),
            labels: Default::default(),
            environment: "debian:12".into(),
            state: "running".into(),
            state_reason: None,
            vcpu_count: 1,
            mem_mib: 1024,
            created_at: 1000,
            last_activity_at: 1100,
            reset_count: 0,
            last_reset_at: None,
            command_count: 0,
            seed: None,
        }
    }

    fn exec(seq: u64, code: i64, truncated: bool) -> Event {
        (
            seq,
            "exec".into(),
            1000 + seq,
            json!({"sequence": seq, "command": format!("make test {seq}"), "exit_code": code, "duration_ms": 12, "truncated": truncated}),
        )
    }

    fn cmd(seq: u64, stderr: &str) -> CommandRow {
        CommandRow {
            sequence: seq,
            command: "x".into(),
            cwd: "/workspace".into(),
            exit_code: 1,
            timed_out: false,
            duration_ms: 1,
            recorded_at: 0,
            stdout: String::new(),
            stderr: stderr.into(),
            stdout_truncated: false,
            stderr_truncated: false,
        }
    }

    fn diff(n: usize) -> DiffResult {
        DiffResult {
            workspace_id: "abc".into(),
            changed: n > 0,
            summary: DiffSummary { total: n, added: n, ..Default::default() },
            entries: (0..n.min(500))
                .map(|i| DiffEntry {
                    path: format!("src/file{i}.rs"),
                    status: "added".into(),
                    artifact_type: "file".into(),
                    binary: false,
                })
                .collect(),
            entries_omitted: (n > 500).then(|| n - 500),
            patch: String::new(),
            patch_truncated: false,
            hint: None,
        }
    }

    #[test]
    fn empty_sections_are_left_out() {
        let s = synthesize(&info(), &[(1, "create".into(), 1000, json!({}))], &[], &[], Some(&diff(0)), 1060);
        let o = s.as_object().unwrap();
        assert_eq!(o.keys().collect::<Vec<_>>(), vec!["workspace"]);
        assert_eq!(s["workspace"]["age_seconds"], 60);
    }

    #[test]
    fn commands_edits_exports_and_failures() {
        let events = vec![
            (1, "create".into(), 1000, json!({})),
            exec(1, 1, false),
            (3, "patch_apply".into(), 1003, json!({"paths": ["add.sh", "NOTES.md"]})),
            (4, "file_write".into(), 1004, json!({"path": "add.sh"})),
            exec(2, 0, true),
            (6, "export".into(), 1006, json!({"path": "add.sh", "output": "/tmp/out"})),
            (
                7,
                "vm_restarted".into(),
                1007,
                json!({"reason": "the VM was dead (killed); booted it again from its disk"}),
            ),
        ];
        let s = synthesize(&info(), &events, &[], &[cmd(1, "FAIL: expected 5\n")], Some(&diff(2)), 1100);
        assert_eq!(s["commands"]["count"], 2);
        assert_eq!(s["commands"]["failures"], 1);
        assert_eq!(s["commands"]["last_failure"]["sequence"], 1);
        assert_eq!(s["commands"]["last_failure"]["output_tail"], "FAIL: expected 5");
        assert_eq!(s["edits"]["patches"], 1);
        assert_eq!(s["edits"]["file_writes"], 1);
        assert_eq!(s["edits"]["paths"], json!(["add.sh", "NOTES.md"]));
        assert_eq!(s["exports"][0]["output"], "/tmp/out");
        assert_eq!(s["diff"]["added"], 2);
        let notable = s["notable"].to_string();
        assert!(notable.contains("booted it again") && notable.contains("truncated for command #2"), "{notable}");
        let text = render(&s);
        assert!(text.contains("commands: 2 run, 1 failed") && text.contains("| FAIL: expected 5"), "{text}");
    }

    #[test]
    fn stays_small_after_hundreds_of_commands_and_files() {
        let mut events: Vec<Event> = (1..=300).map(|i| exec(i, (i % 7 == 0) as i64, false)).collect();
        for i in 0..200 {
            events.push((
                400 + i,
                "patch_apply".into(),
                0,
                json!({"paths": [format!("src/deep/module/path/file_{i}.rs")]}),
            ));
        }
        let commands: Vec<CommandRow> =
            (1..=300).map(|i| cmd(i, &"error: something long went wrong\n".repeat(200))).collect();
        let s = synthesize(&info(), &events, &[("exec".into(), 50)], &commands, Some(&diff(600)), 5000);
        let size = serde_json::to_vec(&s).unwrap().len();
        assert!(size < 8192, "summary is {size} bytes");
        assert_eq!(s["commands"]["count"], 350);
        assert_eq!(s["commands"]["last"].as_array().unwrap().len(), LAST_COMMANDS);
        assert_eq!(s["diff"]["paths_more"], 580);
        assert_eq!(s["edits"]["paths_more"], 180);
    }

    #[test]
    fn unknown_diff_is_marked() {
        let s = synthesize(&info(), &[], &[], &[], None, 1000);
        assert_eq!(s["diff"]["unavailable"], true);
    }
}
