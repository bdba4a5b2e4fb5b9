//! Renderings checked against what people should read.

use super::*;
use crate::run::RunResult;
use crate::session::Cleanup;
use crate::workspace::diff::DiffResult;
use crate::workspace::files::PatchReport;
use crate::workspace::patch::Action;
use crate::workspace::{WorkspaceInfo, WorkspaceList};

#[test]
fn run_text_has_the_status_line_then_the_streams() {
    let r = RunResult {
        vm_id: "v".into(),
        environment: "debian:12".into(),
        environment_version: "1".into(),
        command: "true".into(),
        exit_code: 3,
        timed_out: false,
        cancelled: false,
        duration_ms: 5,
        boot_ms: 10,
        started_from: None,
        total_ms: 20,
        execution_mode: "guest_vm".into(),
        accelerator: "tcg".into(),
        stdout: b"hi".to_vec(),
        stderr: vec![],
        stdout_truncated: true,
        stderr_truncated: false,
        stdout_total_bytes: 2,
        stderr_total_bytes: 0,
        cleanup: Cleanup { vm_id: "v".into(), deleted: true, reason: "done".into() },
    };
    assert_eq!(
        r.text(),
        "environment=debian:12 execution_mode=guest_vm accelerator=tcg exit_code=3 boot_ms=10 duration_ms=5 \
         total_ms=20\n[stdout, truncated]\nhi\n"
    );
}

#[test]
fn workspace_text_states_state_reason_and_seed() {
    let w = WorkspaceInfo {
        id: "abc".into(),
        name: Some("fix".into()),
        labels: [("team".to_string(), "infra".to_string())].into(),
        environment: "debian:12".into(),
        state: "dead".into(),
        state_reason: Some("killed".into()),
        vcpu_count: 1,
        mem_mib: 1024,
        created_at: 0,
        last_activity_at: 0,
        reset_count: 1,
        last_reset_at: None,
        command_count: 2,
        seed: Some(crate::workspace::WorkspaceSeed {
            kind: "tar".into(),
            source: "/tmp/s.tar".into(),
            entries: 3,
            bytes: 40,
        }),
        network_policy: Default::default(),
        published_ports: vec![],
        allow_domains: vec![],
        network_error: None,
        secrets: vec![crate::workspace::SecretInfo { name: "TOKEN".into(), source: "file".into() }],
        forked_from: None,
        started_from: None,
    };
    let t = w.text();
    assert!(t.contains("secrets:      TOKEN (file)\n"), "{t}");
    for want in [
        "name:         fix",
        "labels:       team=infra",
        "state:        dead (killed)",
        "seed:         tar /tmp/s.tar (3 entries, 40 bytes)",
    ] {
        assert!(t.contains(want), "{t}");
    }
    let list = WorkspaceList { count: 1, workspaces: vec![w] }.text();
    assert!(list.starts_with("ID ") && list.contains("team=infra"), "{list}");
    assert_eq!(WorkspaceList { count: 0, workspaces: vec![] }.text(), "no workspaces\n");
}

#[test]
fn diff_and_patch_texts() {
    use crate::workspace::diff::{DiffEntry, DiffSummary};
    use crate::workspace::files::{PatchEntry, PatchSummary};
    let mut d = DiffResult {
        workspace_id: "w".into(),
        changed: false,
        summary: DiffSummary::default(),
        entries: vec![],
        entries_omitted: None,
        next_cursor: None,
        patch: String::new(),
        patch_truncated: false,
        hint: None,
    };
    assert_eq!(d.text(), "no changes since the baseline\n");
    d.changed = true;
    d.summary = DiffSummary { total: 1, added: 1, ..Default::default() };
    d.entries = vec![DiffEntry {
        path: "a".into(),
        status: "added".into(),
        artifact_type: "file".into(),
        binary: false,
        files: None,
        bytes: None,
    }];
    d.patch = "+x\n".into();
    assert_eq!(d.text(), "1 changed: 1 added, 0 modified, 0 deleted, 0 type changed\n  added        a\n+x\n");
    // A collapsed directory, and the cursor of the next page.
    d.entries.push(DiffEntry {
        path: "node_modules/lodash".into(),
        status: "deleted".into(),
        artifact_type: "dir".into(),
        binary: false,
        files: Some(1053),
        bytes: Some(1_468_006),
    });
    d.entries_omitted = Some(7);
    d.next_cursor = Some(500);
    let t = d.text();
    assert!(t.contains("  deleted      node_modules/lodash/ (1,053 files, 1.4 MiB)\n"), "{t}");
    assert!(t.contains("  +7 more (--cursor 500)\n"), "{t}");
    d.entries.pop();
    d.entries_omitted = None;
    d.next_cursor = None;
    let p = PatchReport {
        workspace_id: "w".into(),
        changed: true,
        summary: PatchSummary { total: 1, added: 0, modified: 0, deleted: 0, renamed: 0, mode_changed: 1 },
        entries: vec![PatchEntry {
            path: "run.sh".into(),
            status: Action::ModeChanged,
            old_path: None,
            hunks: 0,
            additions: 0,
            deletions: 0,
        }],
    };
    assert!(p.text().ends_with("mode_changed run.sh (+0 -0)\n"), "{}", p.text());
    assert_eq!(serde_json::to_value(&p).unwrap()["entries"][0]["status"], "mode_changed");
}

#[test]
fn utc_dates() {
    assert_eq!(super::utc(0), "1970-01-01 00:00:00 UTC");
    assert_eq!(super::utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
    assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00 UTC");
}
