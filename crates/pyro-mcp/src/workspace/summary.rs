//! `workspace summary`: one concise view of a workspace's session since the last reset,
//! synthesized from its review events, command history and the live diff.
//!
//! `synthesize` is pure (tested on recorded event streams); `Workspaces::summary` gathers its
//! inputs. Every list is capped with a "+N more" count, and empty sections are left out, so
//! the JSON stays small after hundreds of commands and changed files.

use super::base::Workspaces;
use super::diff::DiffResult;
use super::event::{StoredEvent, WorkspaceEvent};
use super::store::CommandRow;
use super::WorkspaceInfo;
use crate::clock::now_s;
use crate::error::Result;
use crate::text::clip;
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeMap;

/// Every event kind the workspace log records, in one place. Features that land later
/// (services, snapshots, shells) add their kinds here and a section in `synthesize`.
// Nothing reads it at run time: it is the checklist new features extend (see above).
#[allow(dead_code)]
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
    "workspace_stop",
    "workspace_start",
    "disk_export",
    "service_start",
    "service_ready",
    "service_stop",
    "service_exit",
    "service_failure",
    "shell_open",
    "shell_close",
    "network_denied",
];

const LAST_COMMANDS: usize = 5;
const MAX_PATHS: usize = 20;
const MAX_EXPORTS: usize = 5;
const TAIL_BYTES: usize = 800;

/// A review event as the store returns it (see `event`).
pub type Event = StoredEvent;

/// What the summary reads of an `exec` event.
struct Exec<'a> {
    sequence: u64,
    command: &'a str,
    exit_code: i64,
    duration_ms: u64,
    truncated: bool,
    secrets: &'a [String],
}

/// The `exec` events, in order.
fn execs(events: &[Event]) -> Vec<Exec<'_>> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            WorkspaceEvent::Exec { sequence, command, exit_code, duration_ms, truncated, secrets, .. } => Some(Exec {
                sequence: *sequence,
                command,
                exit_code: *exit_code,
                duration_ms: *duration_ms,
                truncated: *truncated,
                secrets,
            }),
            _ => None,
        })
        .collect()
}

/// Events that `is` picks, plus those of `kind` folded into the roll-up.
fn counted(events: &[Event], rollup: &[(String, u64)], kind: &str, is: fn(&WorkspaceEvent) -> bool) -> u64 {
    events.iter().filter(|e| is(&e.event)).count() as u64
        + rollup.iter().filter(|(k, _)| k == kind).map(|(_, n)| n).sum::<u64>()
}

/// `workspace summary`: empty sections are left out of the JSON.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Summary {
    /// The workspace: identity, state, age and resets.
    pub workspace: SummaryWorkspace,
    /// Commands run since the last reset; left out when there were none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commands: Option<CommandsSection>,
    /// Syncs, file writes and patches since the last reset, and the paths they touched; left out
    /// when there were none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edits: Option<EditsSection>,
    /// Exports since the last reset, oldest first (at most 5).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<ExportItem>,
    /// Exports left out past the cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exports_more: Option<usize>,
    /// The live diff against the baseline; left out when nothing changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<DiffSection>,
    /// The guest's network: left out when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkSection>,
    /// Shells opened and closed since the last reset, and those open now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shells: Option<ShellsSection>,
    /// The workspace's services, oldest start first (at most 20).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceItem>,
    /// Services left out past the cap of 20.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub services_more: Option<usize>,
    /// The workspace's snapshots now (newest first), and how many were taken, deleted and
    /// restored since the last reset: left out when there is nothing to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshots: Option<SnapshotsSection>,
    /// Stops and starts since the last reset: left out when there were none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stops: Option<StopsSection>,
    /// The workspace's secrets (names and sources) and which commands used: left out when it
    /// has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<SecretsSection>,
    /// Things a reviewer should not miss (VM restarts, truncated output, folded events).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notable: Vec<String>,
}

/// Snapshots: the names there are now (newest first, at most 20) and the snapshot events
/// since the last reset.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SnapshotsSection {
    /// The snapshots there are now, newest first (at most 20).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub current: Vec<String>,
    /// Snapshots left out past the cap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_more: Option<usize>,
    /// Snapshots taken since the last reset.
    pub created: u64,
    /// Snapshots deleted since the last reset.
    pub deleted: u64,
}

impl SnapshotsSection {
    /// The section, or None when there are no snapshots and none were taken or deleted.
    pub fn of(events: &[Event], rollup: &[(String, u64)], names: Vec<String>) -> Option<SnapshotsSection> {
        let created =
            counted(events, rollup, "snapshot_create", |e| matches!(e, WorkspaceEvent::SnapshotCreate { .. }));
        let deleted =
            counted(events, rollup, "snapshot_delete", |e| matches!(e, WorkspaceEvent::SnapshotDelete { .. }));
        let (current, current_more) = capped(names, 20);
        (created > 0 || deleted > 0 || !current.is_empty()).then_some(SnapshotsSection {
            current,
            current_more,
            created,
            deleted,
        })
    }
}

/// Stops and starts since the last reset: how many kept the guest's memory, how many starts
/// resumed it, and why the last start that could not resume did not.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StopsSection {
    /// How many times the workspace was stopped.
    pub stops: u64,
    /// How many of those stops saved the guest's memory.
    pub memory_saved: u64,
    /// How many times it was started.
    pub starts: u64,
    /// How many of those starts resumed the saved guest.
    pub resumed: u64,
    /// Why the last start that did not resume booted from the disk instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_note: Option<String>,
}

impl StopsSection {
    /// The section, or None when the workspace was never stopped or started since the last reset.
    pub fn of(events: &[Event]) -> Option<StopsSection> {
        let stops: Vec<bool> = events
            .iter()
            .filter_map(|e| match &e.event {
                WorkspaceEvent::WorkspaceStop { memory_saved, .. } => Some(*memory_saved),
                _ => None,
            })
            .collect();
        let starts: Vec<(bool, Option<&String>)> = events
            .iter()
            .filter_map(|e| match &e.event {
                WorkspaceEvent::WorkspaceStart { resumed, note, .. } => Some((*resumed, note.as_ref())),
                _ => None,
            })
            .collect();
        if stops.is_empty() && starts.is_empty() {
            return None;
        }
        Some(StopsSection {
            stops: stops.len() as u64,
            memory_saved: stops.iter().filter(|saved| **saved).count() as u64,
            starts: starts.len() as u64,
            resumed: starts.iter().filter(|(resumed, _)| *resumed).count() as u64,
            last_note: starts.iter().rev().find_map(|(_, note)| *note).map(|n| clip(n, 200)),
        })
    }
}

/// Shells: how many were opened and closed since the last reset, and the ones open now.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ShellsSection {
    pub opened: u64,
    pub closed: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub open: Vec<super::shells::ShellInfo>,
}

impl ShellsSection {
    /// The section, or None when no shell was ever opened since the last reset.
    pub fn of(
        events: &[Event],
        rollup: &[(String, u64)],
        open: Vec<super::shells::ShellInfo>,
    ) -> Option<ShellsSection> {
        let opened = counted(events, rollup, "shell_open", |e| matches!(e, WorkspaceEvent::ShellOpen { .. }));
        let closed = counted(events, rollup, "shell_close", |e| matches!(e, WorkspaceEvent::ShellClose { .. }));
        (opened > 0 || !open.is_empty()).then_some(ShellsSection { opened, closed, open })
    }
}

/// One service in the summary: its state and readiness.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ServiceItem {
    /// The service's name.
    pub name: String,
    /// Its state, as in `ServiceInfo::state`.
    pub state: String,
    /// Its readiness check, in one line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness: Option<String>,
    /// Its exit code, once it exited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it is no longer running, clipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ServiceItem {
    /// The summary's view of a service.
    pub fn of(s: &super::services::ServiceInfo) -> ServiceItem {
        ServiceItem {
            name: s.name.clone(),
            state: s.state.clone(),
            readiness: s.readiness.clone(),
            exit_code: s.exit_code,
            reason: s.stop_reason.as_ref().map(|r| clip(r, 200)),
        }
    }
}

/// Network policy, published ports, and what the guest tried to reach and was refused.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct NetworkSection {
    pub policy: crate::net::NetworkPolicy,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub published_ports: Vec<crate::net::PublishedPort>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allow_domains: Vec<String>,
    /// Refused destinations, most attempts first (at most 20).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub denials: Vec<crate::net::stack::Denial>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub denials_more: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl NetworkSection {
    /// The section for a workspace, or None when it has no network.
    pub fn of(info: &WorkspaceInfo, mut denials: Vec<crate::net::stack::Denial>) -> Option<NetworkSection> {
        if !info.network_policy.has_nic() {
            return None;
        }
        denials.sort_by(|a, b| b.count.cmp(&a.count).then(a.target.cmp(&b.target)));
        let more = denials.len().checked_sub(20).filter(|n| *n > 0);
        denials.truncate(20);
        Some(NetworkSection {
            policy: info.network_policy,
            published_ports: info.published_ports.clone(),
            allow_domains: info.allow_domains.clone(),
            denials,
            denials_more: more,
            error: info.network_error.clone(),
        })
    }
}

/// Names only: a summary never holds a secret's value.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SecretsSection {
    /// The workspace's secrets: names and sources, never values.
    pub available: Vec<super::SecretInfo>,
    /// Secrets put into a command's environment since the last reset, first use first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub used: Vec<String>,
}

/// The workspace as the summary shows it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SummaryWorkspace {
    /// The workspace's id.
    pub id: String,
    /// Its unique name, if it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its labels; left out when it has none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The environment it runs.
    pub environment: String,
    /// Its state, as in `WorkspaceInfo::state`.
    pub state: String,
    /// Why it is in that state, when that is worth saying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    /// Seconds since it was created.
    pub age_seconds: u64,
    /// How many times it was reset.
    pub reset_count: u32,
    /// When it was last reset, in seconds since the Unix epoch; left out if never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reset_at: Option<u64>,
    /// The snapshot the last reset went back to (left out for the baseline).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset_to_snapshot: Option<String>,
    /// The workspace this one was forked from, and when (its history up to then is this
    /// one's too).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<super::ForkOrigin>,
}

/// Commands since the last reset: how many, how many failed, the last few, and the last failure.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CommandsSection {
    /// Every command since the last reset, folded ones included.
    pub count: u64,
    /// Commands that exited non-zero.
    pub failures: u64,
    /// The last few, oldest first.
    pub last: Vec<CommandItem>,
    /// Commands started that have not reported back: still running, or lost with the guest
    /// or the caller (a kernel crash, a killed CLI). The newest few, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unfinished: Vec<UnfinishedItem>,
    /// The newest command that exited non-zero, with the end of its output.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<FailureItem>,
}

/// One command in the summary.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CommandItem {
    /// The command's number in the workspace's history.
    pub sequence: u64,
    /// The command, on one line (clipped).
    pub command: String,
    /// Its exit code.
    pub exit_code: i64,
    /// Milliseconds it ran.
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct UnfinishedItem {
    pub sequence: u64,
    pub command: String,
    /// When it was started (seconds since the epoch).
    pub started_at: u64,
}

/// The newest failed command.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FailureItem {
    /// The command's number in the workspace's history.
    pub sequence: u64,
    /// The command, on one line (clipped).
    pub command: String,
    /// Its exit code.
    pub exit_code: i64,
    /// The end of its stderr (or stdout when stderr is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tail: Option<String>,
}

/// Edits since the last reset: how many of each kind, and the paths they touched.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct EditsSection {
    /// Sync pushes; left out when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syncs: Option<u64>,
    /// File writes; left out when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_writes: Option<u64>,
    /// Patches applied; left out when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patches: Option<u64>,
    /// Paths the edits touched, first touch first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Paths left out past the cap of 20.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths_more: Option<usize>,
}

/// One export: what was copied out, and where to.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ExportItem {
    /// The path in the workspace that was exported.
    pub path: String,
    /// The host path it was written to.
    pub output: String,
}

/// The live diff: counts and changed paths, or `{"unavailable": true}` when it could not be
/// computed (the VM would not answer, the workspace is too large).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum DiffSection {
    /// What changed: counts and paths.
    Changes(DiffCounts),
    /// The live diff could not be computed.
    Unavailable {
        /// Always true: the JSON says `{"unavailable": true}`.
        unavailable: bool,
    },
}

/// The live diff's counts and changed paths.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DiffCounts {
    /// Paths that are new.
    pub added: usize,
    /// Paths whose content changed (a file's bytes or executable bit, a symlink's target).
    pub modified: usize,
    /// Paths that are gone.
    pub deleted: usize,
    /// Paths that became another type; left out when none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub type_changed: Option<usize>,
    /// `A path`, `M path`, `D path`, `T path`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Changed paths left out past the cap of 20.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths_more: Option<usize>,
}

/// A capped list: the first `max` items plus how many were left out (None for none).
fn capped<T>(mut items: Vec<T>, max: usize) -> (Vec<T>, Option<usize>) {
    let extra = items.len().saturating_sub(max);
    items.truncate(max);
    (items, (extra > 0).then_some(extra))
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
) -> Summary {
    let workspace = SummaryWorkspace {
        id: info.id.clone(),
        name: info.name.clone(),
        labels: info.labels.clone(),
        environment: info.environment.clone(),
        state: info.state.clone(),
        state_reason: info.state_reason.clone(),
        age_seconds: now.saturating_sub(info.created_at),
        reset_count: info.reset_count,
        last_reset_at: info.last_reset_at,
        reset_to_snapshot: events
            .iter()
            .rev()
            .find_map(|e| match &e.event {
                WorkspaceEvent::Reset { snapshot } => Some(snapshot.clone()),
                _ => None,
            })
            .flatten(),
        forked_from: info.forked_from.clone(),
    };
    let rolled: BTreeMap<&str, u64> = rollup.iter().map(|(k, c)| (k.as_str(), *c)).collect();
    let rolled = |k: &str| rolled.get(k).copied().unwrap_or(0);
    // Commands: exact counts from events plus the rolled-up ones.
    let execs = execs(events);
    let open: Vec<&CommandRow> = commands.iter().filter(|c| !c.finished).collect();
    let unfinished: Vec<UnfinishedItem> = open[open.len().saturating_sub(LAST_COMMANDS)..]
        .iter()
        .map(|c| UnfinishedItem { sequence: c.sequence, command: clip(&c.command, 120), started_at: c.recorded_at })
        .collect();
    let count = execs.len() as u64 + rolled("exec") + rolled("exec_failed") + open.len() as u64;
    let commands = (count > 0).then(|| {
        let failed: Vec<&Exec> = execs.iter().filter(|p| p.exit_code != 0).collect();
        let last = execs
            .iter()
            .rev()
            .take(LAST_COMMANDS)
            .rev()
            .map(|p| CommandItem {
                sequence: p.sequence,
                command: clip(p.command, 120),
                exit_code: p.exit_code,
                duration_ms: p.duration_ms,
            })
            .collect();
        let last_failure = failed.last().map(|p| FailureItem {
            sequence: p.sequence,
            command: clip(p.command, 120),
            exit_code: p.exit_code,
            output_tail: commands.iter().find(|r| r.sequence == p.sequence).and_then(|row| {
                let text = if row.stderr.trim().is_empty() { &row.stdout } else { &row.stderr };
                (!text.trim().is_empty()).then(|| tail(text.trim_end(), TAIL_BYTES))
            }),
        });
        CommandsSection { count, failures: failed.len() as u64 + rolled("exec_failed"), last, unfinished, last_failure }
    });

    // Edits: syncs, file writes and patches, with the paths they touched.
    let n = |kind: &str, is: fn(&WorkspaceEvent) -> bool| Some(counted(events, rollup, kind, is)).filter(|n| *n > 0);
    let mut paths: Vec<String> = Vec::new();
    for e in events {
        let touched: &[String] = match &e.event {
            WorkspaceEvent::FileWrite { path, .. } => std::slice::from_ref(path),
            WorkspaceEvent::PatchApply { paths, .. } | WorkspaceEvent::SyncPush { paths, .. } => paths,
            _ => continue,
        };
        for p in touched {
            if !paths.contains(p) {
                paths.push(p.clone());
            }
        }
    }
    let (paths, paths_more) = capped(paths, MAX_PATHS);
    let edits = EditsSection {
        syncs: n("sync_push", |e| matches!(e, WorkspaceEvent::SyncPush { .. })),
        file_writes: n("file_write", |e| matches!(e, WorkspaceEvent::FileWrite { .. })),
        patches: n("patch_apply", |e| matches!(e, WorkspaceEvent::PatchApply { .. })),
        paths,
        paths_more,
    };
    let edits =
        (edits.syncs.is_some() || edits.file_writes.is_some() || edits.patches.is_some() || !edits.paths.is_empty())
            .then_some(edits);

    let exports: Vec<ExportItem> = events
        .iter()
        .filter_map(|e| match &e.event {
            WorkspaceEvent::Export { path, output, .. } => {
                Some(ExportItem { path: path.clone(), output: output.clone() })
            }
            _ => None,
        })
        .collect();
    let (exports, exports_more) = capped(exports, MAX_EXPORTS);

    // The live diff against the baseline.
    let diff = match diff {
        Some(d) if d.changed => {
            let s = &d.summary;
            let changed: Vec<String> = d
                .entries
                .iter()
                .map(|e| {
                    let what = match (e.files, e.bytes) {
                        (Some(f), Some(b)) => crate::text::collapsed_dir(&e.path, f, b),
                        _ => e.path.clone(),
                    };
                    format!("{} {what}", &e.status[..1].to_uppercase())
                })
                .collect();
            let (paths, more) = capped(changed, MAX_PATHS);
            let more = more.unwrap_or(0) + d.entries_omitted.unwrap_or(0);
            Some(DiffSection::Changes(DiffCounts {
                added: s.added,
                modified: s.modified,
                deleted: s.deleted,
                type_changed: (s.type_changed > 0).then_some(s.type_changed),
                paths,
                paths_more: (more > 0).then_some(more),
            }))
        }
        Some(_) => None,
        None => Some(DiffSection::Unavailable { unavailable: true }),
    };

    // Notable things a reviewer should not miss.
    let mut notable = Vec::new();
    for e in events {
        if let WorkspaceEvent::VmRestarted { reason } = &e.event {
            notable.push(clip(if reason.is_empty() { "the VM was restarted" } else { reason }, 200));
        }
    }
    let truncated: Vec<String> = execs.iter().filter(|p| p.truncated).map(|p| format!("#{}", p.sequence)).collect();
    if !truncated.is_empty() {
        let (shown, extra) = capped(truncated, 5);
        notable.push(format!(
            "output was truncated for command {}{}",
            shown.join(", "),
            extra.map(|n| format!(" (+{n} more)")).unwrap_or_default()
        ));
    }
    if !rollup.is_empty() {
        let n: u64 = rollup.iter().map(|r| r.1).sum();
        notable.push(format!("{n} older events were folded into counts to keep the log bounded"));
    }
    if let Some(r) = &info.state_reason {
        if info.state != "running" {
            notable.push(format!("the VM is {}: {}", info.state, clip(r, 200)));
        }
    }
    let secrets = (!info.secrets.is_empty()).then(|| {
        let mut used: Vec<String> = Vec::new();
        for n in execs.iter().flat_map(|p| p.secrets) {
            if !used.contains(n) {
                used.push(n.clone());
            }
        }
        SecretsSection { available: info.secrets.clone(), used }
    });
    Summary {
        workspace,
        commands,
        edits,
        exports,
        exports_more,
        diff,
        network: None,
        shells: None,
        services: Vec::new(),
        services_more: None,
        snapshots: None,
        stops: None,
        secrets,
        notable,
    }
}

impl Workspaces<'_> {
    /// The supervisor's denial log, with what is new since the last look recorded as
    /// `network_denied` review events (one per destination, with how many new attempts).
    fn sync_denials(&mut self, id: &str) -> Result<Vec<crate::net::stack::Denial>> {
        let dir = super::base::ws_dir(self.paths(), id);
        let denials = crate::net::stack::read_denials(&dir.join("denials.json"));
        let seen_path = dir.join("denials.seen.json");
        let mut seen: BTreeMap<String, u64> =
            std::fs::read(&seen_path).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let mut changed = false;
        for d in &denials {
            let key = format!("{}:{}", d.target, d.port);
            let before = seen.get(&key).copied().unwrap_or(0);
            if d.count > before {
                self.store.event(
                    id,
                    &WorkspaceEvent::NetworkDenied {
                        target: d.target.clone(),
                        port: d.port,
                        reason: d.reason.clone(),
                        count: d.count - before,
                        first_at: d.first_at,
                        last_at: d.last_at,
                    },
                )?;
                seen.insert(key, d.count);
                changed = true;
            }
        }
        if changed {
            crate::paths::write_atomic(&seen_path, &serde_json::to_vec(&seen).unwrap_or_default())?;
        }
        Ok(denials)
    }

    /// A review of the workspace since its last reset: commands, edits, exports, the live diff,
    /// network, shells, services, snapshots, stops and secrets.
    pub fn summary(&mut self, key: &str) -> Result<Summary> {
        let r = self.resolve(key)?;
        let diff = self.diff_with(&r.id, false, None, 0, 0, super::diff::MAX_ENTRIES).ok();
        let r = self.resolve(&r.id)?;
        let info = self.info(&r);
        let denials = self.sync_denials(&r.id)?;
        let events = self.store.events(&r.id)?;
        let rollup = self.store.rollup(&r.id)?;
        let commands = self.store.commands(&r.id)?;
        let mut s = synthesize(&info, &events, &rollup, &commands, diff.as_ref(), now_s());
        s.network = NetworkSection::of(&info, denials);
        let open = if info.state == "running" { self.shells_if_running(&r.id) } else { Vec::new() };
        s.shells = ShellsSection::of(&events, &rollup, open);
        let services: Vec<ServiceItem> = self.service_summary(&r.id)?.iter().map(ServiceItem::of).collect();
        (s.services, s.services_more) = capped(services, 20);
        s.snapshots = SnapshotsSection::of(&events, &rollup, self.snapshot_names(&r.id)?);
        s.stops = StopsSection::of(&events);
        // What the summary quotes was stored redacted; redacting it again costs little.
        let redactor = self.redactor(&r.id)?;
        if let Some(c) = &mut s.commands {
            for l in &mut c.last {
                l.command = redactor.redact_str(&l.command);
            }
            if let Some(f) = &mut c.last_failure {
                f.command = redactor.redact_str(&f.command);
                f.output_tail = f.output_tail.as_ref().map(|t| redactor.redact_str(t));
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Render;

    /// An event as the store reads it back from its columns.
    fn ev(sequence: u64, kind: &str, recorded_at: u64, payload: serde_json::Value) -> Event {
        StoredEvent { sequence, recorded_at, event: WorkspaceEvent::from_row(kind, payload) }
    }
    use crate::workspace::diff::{DiffEntry, DiffSummary};
    use serde_json::json;

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
            network_policy: Default::default(),
            published_ports: vec![],
            allow_domains: vec![],
            network_error: None,
            secrets: vec![],
            forked_from: None,
            started_from: None,
        }
    }

    fn exec(seq: u64, code: i64, truncated: bool) -> Event {
        ev(
            seq,
            "exec",
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
            finished: true,
            cancelled: false,
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
                    files: None,
                    bytes: None,
                })
                .collect(),
            entries_omitted: (n > 500).then(|| n - 500),
            next_cursor: (n > 500).then_some(500),
            patch: String::new(),
            patch_truncated: false,
            hint: None,
        }
    }

    #[test]
    fn empty_sections_are_left_out() {
        let s = synthesize(&info(), &[ev(1, "create", 1000, json!({}))], &[], &[], Some(&diff(0)), 1060);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), vec!["workspace"]);
        assert_eq!(s.workspace.age_seconds, 60);
    }

    #[test]
    fn commands_edits_exports_and_failures() {
        let events = vec![
            ev(1, "create", 1000, json!({})),
            exec(1, 1, false),
            ev(3, "patch_apply", 1003, json!({"paths": ["add.sh", "NOTES.md"]})),
            ev(4, "file_write", 1004, json!({"path": "add.sh"})),
            exec(2, 0, true),
            ev(6, "export", 1006, json!({"path": "add.sh", "output": "/tmp/out"})),
            ev(7, "vm_restarted", 1007, json!({"reason": "the VM was dead (killed); booted it again from its disk"})),
        ];
        let s = synthesize(&info(), &events, &[], &[cmd(1, "FAIL: expected 5\n")], Some(&diff(2)), 1100);
        let c = s.commands.as_ref().unwrap();
        assert_eq!((c.count, c.failures), (2, 1));
        let f = c.last_failure.as_ref().unwrap();
        assert_eq!(f.sequence, 1);
        assert_eq!(f.output_tail.as_deref(), Some("FAIL: expected 5"));
        let e = s.edits.as_ref().unwrap();
        assert_eq!((e.patches, e.file_writes, e.syncs), (Some(1), Some(1), None));
        assert_eq!(e.paths, ["add.sh", "NOTES.md"]);
        assert_eq!(s.exports[0].output, "/tmp/out");
        let Some(DiffSection::Changes(d)) = &s.diff else { panic!("{:?}", s.diff) };
        assert_eq!(d.added, 2);
        let notable = s.notable.join("\n");
        assert!(notable.contains("booted it again") && notable.contains("truncated for command #2"), "{notable}");
        // The JSON keeps the shape clients rely on.
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["edits"]["paths"], json!(["add.sh", "NOTES.md"]));
        assert_eq!(v["diff"]["added"], 2);
        assert!(v["edits"].get("syncs").is_none() && v["diff"].get("type_changed").is_none(), "{v}");
        let text = s.text();
        assert!(text.contains("commands: 2 run, 1 failed") && text.contains("| FAIL: expected 5"), "{text}");
    }

    #[test]
    fn stays_small_after_hundreds_of_commands_and_files() {
        let mut events: Vec<Event> = (1..=300).map(|i| exec(i, (i % 7 == 0) as i64, false)).collect();
        for i in 0..200 {
            events.push(ev(400 + i, "patch_apply", 0, json!({"paths": [format!("src/deep/module/path/file_{i}.rs")]})));
        }
        let commands: Vec<CommandRow> =
            (1..=300).map(|i| cmd(i, &"error: something long went wrong\n".repeat(200))).collect();
        let s = synthesize(&info(), &events, &[("exec".into(), 50)], &commands, Some(&diff(600)), 5000);
        let size = serde_json::to_vec(&s).unwrap().len();
        assert!(size < 8192, "summary is {size} bytes");
        let c = s.commands.as_ref().unwrap();
        assert_eq!(c.count, 350);
        assert_eq!(c.last.len(), LAST_COMMANDS);
        let Some(DiffSection::Changes(d)) = &s.diff else { panic!("{:?}", s.diff) };
        assert_eq!(d.paths_more, Some(580));
        assert_eq!(s.edits.as_ref().unwrap().paths_more, Some(180));
        assert!(s.text().contains("  +580 more\n"));
    }

    #[test]
    fn secrets_section_names_only() {
        let mut i = info();
        i.secrets = vec![crate::workspace::SecretInfo { name: "TOKEN".into(), source: "file".into() }];
        let mut e = exec(1, 0, false);
        if let WorkspaceEvent::Exec { secrets, .. } = &mut e.event {
            *secrets = vec!["TOKEN".into()];
        }
        let s = synthesize(&i, &[e, exec(2, 0, false)], &[], &[], Some(&diff(0)), 1000);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["secrets"], json!({"available": [{"name": "TOKEN", "source": "file"}], "used": ["TOKEN"]}));
        assert!(s.text().contains("secrets: TOKEN (file)\n  used by commands: TOKEN\n"), "{}", s.text());
        assert!(synthesize(&info(), &[], &[], &[], Some(&diff(0)), 1000).secrets.is_none());
    }

    #[test]
    fn reset_to_a_snapshot_and_the_snapshots_section() {
        let events = vec![
            ev(1, "reset", 1000, json!({"snapshot": "before"})),
            ev(2, "snapshot_restore", 1000, json!({"name": "before"})),
            ev(3, "snapshot_create", 1001, json!({"name": "after"})),
            ev(4, "snapshot_delete", 1002, json!({"name": "old"})),
        ];
        let mut s = synthesize(&info(), &events, &[], &[], Some(&diff(0)), 1010);
        assert_eq!(s.workspace.reset_to_snapshot.as_deref(), Some("before"));
        s.snapshots = SnapshotsSection::of(&events, &[], vec!["after".into(), "before".into()]);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["snapshots"], json!({"current": ["after", "before"], "created": 1, "deleted": 1}));
        let text = s.text();
        assert!(text.contains("reset to snapshot before\n") && text.contains("snapshots: after, before"), "{text}");
        // A reset to the baseline says nothing; no snapshots and no events: no section.
        let plain = synthesize(&info(), &[ev(1, "reset", 1000, json!({}))], &[], &[], Some(&diff(0)), 1010);
        assert!(plain.workspace.reset_to_snapshot.is_none());
        assert!(SnapshotsSection::of(&[], &[], vec![]).is_none());
    }

    #[test]
    fn unknown_diff_is_marked() {
        let s = synthesize(&info(), &[], &[], &[], None, 1000);
        assert_eq!(serde_json::to_value(&s).unwrap()["diff"], json!({"unavailable": true}));
        assert!(s.text().contains("diff: unavailable"));
    }

    /// A database 4.3.0 wrote (testdata/pyro-4.3.0.db: a workspace that ran commands, wrote,
    /// patched, snapshotted, ran a service and a shell, exported, stopped and started, was
    /// relabelled, reset to its snapshot, synced and forked) opens with this version's store;
    /// every stored event reads as a typed event, and the summary renders from them.
    #[test]
    fn a_4_3_0_database_reads_typed_and_summarises() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pyro.db"), include_bytes!("testdata/pyro-4.3.0.db")).unwrap();
        let store = super::super::store::Store::open(dir.path()).unwrap();
        let conn = rusqlite::Connection::open(dir.path().join("pyro.db")).unwrap();
        let mut st = conn.prepare("SELECT kind, payload FROM events").unwrap();
        let rows: Vec<(String, String)> =
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), 43);
        for (kind, payload) in &rows {
            let e = WorkspaceEvent::from_row(kind, serde_json::from_str(payload).unwrap());
            assert!(!matches!(e, WorkspaceEvent::Unknown { .. }), "{kind} {payload} did not read typed");
            assert_eq!(&e.kind(), kind);
        }
        let events = store.events("8149dfb1aa25").unwrap();
        assert_eq!(events.len(), 6, "the events since its reset");
        assert_eq!(events[0].event, WorkspaceEvent::Reset { snapshot: Some("s1".into()) });
        let s = synthesize(&info(), &events, &[], &[], Some(&diff(0)), 2_000_000_000);
        let text = s.text();
        assert!(text.contains("reset to snapshot s1"), "{text}");
        assert!(text.contains("commands: 1 run, 0 failed"), "{text}");
        assert!(text.contains("#3 [exit 0] echo after reset"), "{text}");
        assert!(text.contains("edits: 1 syncs") && text.contains("touched: a.txt"), "{text}");
        let s = SnapshotsSection::of(&events, &[], vec!["s1".into()]).unwrap();
        assert_eq!((s.created, s.deleted), (0, 0));
        let stops = StopsSection::of(&events).unwrap();
        assert_eq!((stops.stops, stops.memory_saved, stops.starts), (1, 1, 0));
        // The fork's history starts with its `fork` event after the reset it inherited.
        let fork = store.events("e4e6e814576b").unwrap();
        assert!(fork
            .iter()
            .any(|e| matches!(&e.event, WorkspaceEvent::Fork { from, memory: true, .. } if from == "8149dfb1aa25")));
    }
}
