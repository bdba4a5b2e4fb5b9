//! Workspaces: info and lists, deletes, stop and start, shells, services, snapshots, and the
//! session summary.

use super::{labels, more, utc, Render};
use crate::clock::now_s;
use crate::text::clip;
use crate::workspace::lifecycle::DeleteReport;
use crate::workspace::services::{RestartPolicy, ServiceInfo, ServiceList, ServiceLogs};
use crate::workspace::shells::{ShellInfo, ShellList, ShellRead};
use crate::workspace::snapshots::{SnapshotDeleted, SnapshotInfo, SnapshotList};
use crate::workspace::stop::{StartReport, StopReport};
use crate::workspace::summary::{DiffSection, Summary};
use crate::workspace::{WorkspaceInfo, WorkspaceList};

impl Render for WorkspaceInfo {
    fn text(&self) -> String {
        let mut s = format!("id:           {}\n", self.id);
        if let Some(n) = &self.name {
            s.push_str(&format!("name:         {n}\n"));
        }
        if !self.labels.is_empty() {
            s.push_str(&format!("labels:       {}\n", labels(&self.labels, ", ")));
        }
        s.push_str(&format!("environment:  {}\n", self.environment));
        let reason = self.state_reason.as_ref().map(|r| format!(" ({r})")).unwrap_or_default();
        s.push_str(&format!("state:        {}{reason}\n", self.state));
        s.push_str(&format!("resources:    {} vCPU, {} MiB\n", self.vcpu_count, self.mem_mib));
        s.push_str(&format!("commands:     {} (resets: {})\n", self.command_count, self.reset_count));
        if let Some(seed) = &self.seed {
            s.push_str(&format!(
                "seed:         {} {} ({} entries, {} bytes)\n",
                seed.kind, seed.source, seed.entries, seed.bytes
            ));
        }
        s.push_str(&format!("network:      {}", self.network_policy.as_str()));
        if !self.allow_domains.is_empty() {
            s.push_str(&format!(" (allow: {})", self.allow_domains.join(", ")));
        }
        s.push('\n');
        for p in &self.published_ports {
            s.push_str(&format!("published:    {}:{} -> guest {}/{}\n", p.host, p.host_port, p.guest_port, p.protocol));
        }
        if let Some(e) = &self.network_error {
            s.push_str(&format!("network error: {e}\n"));
        }
        if !self.secrets.is_empty() {
            let names: Vec<String> = self.secrets.iter().map(|i| format!("{} ({})", i.name, i.source)).collect();
            s.push_str(&format!("secrets:      {}\n", names.join(", ")));
        }
        if let Some(f) = &self.forked_from {
            s.push_str(&format!(
                "forked from:  {} at {} ({})\n",
                f.workspace_id,
                utc(f.at),
                if f.memory { "disk and memory" } else { "disk" }
            ));
        }
        if let Some(st) = &self.started_from {
            let note = st.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
            s.push_str(&format!("started from: {}{note}\n", st.from));
        }
        s
    }
}

impl Render for WorkspaceList {
    fn text(&self) -> String {
        if self.workspaces.is_empty() {
            return "no workspaces\n".into();
        }
        let mut s =
            format!("{:<13} {:<20} {:<9} {:<12} {:>8}  LABELS\n", "ID", "NAME", "STATE", "ENVIRONMENT", "COMMANDS");
        for w in &self.workspaces {
            s.push_str(&format!(
                "{:<13} {:<20} {:<9} {:<12} {:>8}  {}\n",
                w.id,
                w.name.as_deref().unwrap_or(""),
                w.state,
                w.environment,
                w.command_count,
                labels(&w.labels, ",")
            ));
        }
        s
    }
}

impl Render for ShellInfo {
    fn text(&self) -> String {
        let state = match (self.alive, self.exit_code) {
            (true, _) => "running".to_string(),
            (false, Some(c)) => format!("exited {c}"),
            (false, None) => "exited".to_string(),
        };
        format!(
            "{} {state} {}x{} cwd={} output_bytes={} age_s={}\n",
            self.shell_id,
            self.cols,
            self.rows,
            self.cwd,
            self.output_bytes,
            self.age_ms / 1000
        )
    }
}

impl Render for ShellList {
    fn text(&self) -> String {
        let mut s = format!("{} shells\n", self.count);
        for sh in &self.shells {
            s.push_str(&sh.text());
        }
        s
    }
}

impl ShellRead {
    /// `shell_id=... cursor=... next_cursor=... more=... idle=... alive=...`
    pub fn status_line(&self) -> String {
        let mut s = format!(
            "shell_id={} cursor={} next_cursor={} more={} idle={} alive={}",
            self.shell_id, self.cursor, self.next_cursor, self.more, self.idle, self.alive
        );
        if self.dropped_bytes > 0 {
            s.push_str(&format!(" dropped_bytes={}", self.dropped_bytes));
        }
        if let Some(c) = self.exit_code {
            s.push_str(&format!(" exit_code={c}"));
        }
        s
    }
}

impl Render for ShellRead {
    fn text(&self) -> String {
        format!("{}\n{}", self.status_line(), self.output)
    }
    fn brief(&self) -> String {
        format!("{} output_chars={}\n", self.status_line(), self.output.chars().count())
    }
}

impl Render for DeleteReport {
    fn text(&self) -> String {
        format!("deleted {}\n", self.workspace_id)
    }
}

impl Render for StopReport {
    fn text(&self) -> String {
        let what = match (self.memory_saved, self.memory_bytes) {
            (true, Some(b)) => format!("stopped; memory saved ({} MiB) in {} ms", b >> 20, self.duration_ms),
            _ => format!("stopped; memory not kept ({} ms)", self.duration_ms),
        };
        let note = self.note.as_ref().map(|n| format!("note:         {n}\n")).unwrap_or_default();
        format!("{}{what}\n{note}", self.workspace.text())
    }
}

impl Render for StartReport {
    fn text(&self) -> String {
        let what = if self.resumed {
            format!("started; resumed from saved memory in {} ms", self.duration_ms)
        } else {
            format!("started; booted from its disk in {} ms", self.duration_ms)
        };
        let note = self.note.as_ref().map(|n| format!("note:         {n}\n")).unwrap_or_default();
        format!("{}{what}\n{note}", self.workspace.text())
    }
}

/// A short readable block for people (and the MCP text content).
impl Render for Summary {
    fn text(&self) -> String {
        let mut o = String::new();
        let w = &self.workspace;
        o.push_str(&format!(
            "workspace {}{} ({}, {}), up {} s, resets {}\n",
            w.id,
            w.name.as_ref().map(|n| format!(" \"{n}\"")).unwrap_or_default(),
            w.environment,
            w.state,
            w.age_seconds,
            w.reset_count
        ));
        if let Some(n) = &w.reset_to_snapshot {
            o.push_str(&format!("reset to snapshot {n}\n"));
        }
        if let Some(f) = &w.forked_from {
            o.push_str(&format!(
                "forked from {}{} at {} ({})\n",
                f.workspace_id,
                f.name.as_ref().map(|n| format!(" \"{n}\"")).unwrap_or_default(),
                utc(f.at),
                if f.memory { "disk and memory: its processes went on here" } else { "disk; booted here" }
            ));
        }
        if let Some(c) = &self.commands {
            o.push_str(&format!("commands: {} run, {} failed\n", c.count, c.failures));
            for l in &c.last {
                o.push_str(&format!("  #{} [exit {}] {} ({} ms)\n", l.sequence, l.exit_code, l.command, l.duration_ms));
            }
            for u in &c.unfinished {
                o.push_str(&format!("  #{} [unfinished: no result recorded] {}\n", u.sequence, u.command));
            }
            if let Some(f) = &c.last_failure {
                if let Some(t) = &f.output_tail {
                    o.push_str(&format!("  last failure #{} output:\n", f.sequence));
                    for line in t.lines().rev().take(8).collect::<Vec<_>>().into_iter().rev() {
                        o.push_str(&format!("    | {line}\n"));
                    }
                }
            }
        }
        if let Some(e) = &self.edits {
            let parts: Vec<String> = [(e.syncs, "syncs"), (e.file_writes, "file writes"), (e.patches, "patches")]
                .iter()
                .filter_map(|(n, what)| n.map(|n| format!("{n} {what}")))
                .collect();
            o.push_str(&format!("edits: {}\n", parts.join(", ")));
            if !e.paths.is_empty() {
                o.push_str(&format!("  touched: {}{}\n", e.paths.join(", "), more(e.paths_more, " (+", " more)")));
            }
        }
        for e in &self.exports {
            o.push_str(&format!("export: {} -> {}\n", e.path, e.output));
        }
        match &self.diff {
            Some(DiffSection::Unavailable { .. }) => o.push_str("diff: unavailable\n"),
            Some(DiffSection::Changes(d)) => {
                o.push_str(&format!("diff: {} added, {} modified, {} deleted\n", d.added, d.modified, d.deleted));
                for p in &d.paths {
                    o.push_str(&format!("  {p}\n"));
                }
                o.push_str(&more(d.paths_more, "  +", " more\n"));
            }
            None => {}
        }
        if let Some(sh) = &self.shells {
            o.push_str(&format!("shells: {} opened, {} closed, {} open\n", sh.opened, sh.closed, sh.open.len()));
            for s in &sh.open {
                o.push_str(&format!("  {}", Render::text(s)));
            }
        }
        if let Some(n) = &self.network {
            o.push_str(&format!("network: {}", n.policy.as_str()));
            if !n.allow_domains.is_empty() {
                o.push_str(&format!(" (allow: {})", n.allow_domains.join(", ")));
            }
            o.push('\n');
            for p in &n.published_ports {
                o.push_str(&format!("  published {}:{} -> guest {}\n", p.host, p.host_port, p.guest_port));
            }
            for d in &n.denials {
                o.push_str(&format!("  denied {}:{} x{} ({})\n", d.target, d.port, d.count, d.reason));
            }
            o.push_str(&more(n.denials_more, "  +", " more denied destinations\n"));
            if let Some(e) = &n.error {
                o.push_str(&format!("  error: {e}\n"));
            }
        }
        for s in &self.services {
            o.push_str(&format!("service {}: {}", s.name, s.state));
            if let Some(r) = &s.readiness {
                o.push_str(&format!(" ({r})"));
            }
            if let Some(r) = &s.reason {
                o.push_str(&format!(": {r}"));
            }
            o.push('\n');
        }
        o.push_str(&more(self.services_more, "  +", " more services\n"));
        if let Some(s) = &self.snapshots {
            o.push_str(&format!(
                "snapshots: {}{} ({} taken, {} deleted since the last reset)\n",
                if s.current.is_empty() { "none".to_string() } else { s.current.join(", ") },
                more(s.current_more, " (+", " more)"),
                s.created,
                s.deleted
            ));
        }
        if let Some(s) = &self.stops {
            o.push_str(&format!(
                "stops: {} ({} with memory saved), starts: {} ({} resumed)\n",
                s.stops, s.memory_saved, s.starts, s.resumed
            ));
            if let Some(n) = &s.last_note {
                o.push_str(&format!("  last start: {n}\n"));
            }
        }
        if let Some(s) = &self.secrets {
            let names: Vec<String> = s.available.iter().map(|i| format!("{} ({})", i.name, i.source)).collect();
            o.push_str(&format!("secrets: {}\n", names.join(", ")));
            if !s.used.is_empty() {
                o.push_str(&format!("  used by commands: {}\n", s.used.join(", ")));
            }
        }
        for n in &self.notable {
            o.push_str(&format!("note: {n}\n"));
        }
        o
    }
}

impl Render for ServiceInfo {
    fn text(&self) -> String {
        let mut o = format!("service {} ({}): {}\n", self.name, self.workspace_id, self.state);
        o.push_str(&format!("  command: {}\n  cwd: {}\n", self.command, self.cwd));
        if let Some(r) = &self.readiness {
            o.push_str(&format!("  readiness: {r}"));
            if let Some(p) = &self.last_probe {
                o.push_str(&format!(" (last probe: {p})"));
            }
            o.push('\n');
        }
        if let Some(p) = self.pid {
            o.push_str(&format!("  pid: {p}\n"));
        }
        if let Some(c) = self.exit_code {
            o.push_str(&format!("  exit code: {c}\n"));
        }
        if let Some(r) = &self.stop_reason {
            o.push_str(&format!("  reason: {r}\n"));
        }
        if self.restart != RestartPolicy::No || self.restarts > 0 {
            o.push_str(&format!("  restart: {} ({} restarts)\n", self.restart.as_str(), self.restarts));
        }
        for p in &self.published_ports {
            o.push_str(&format!("  published {}:{} -> guest {}\n", p.host, p.host_port, p.guest_port));
        }
        o.push_str(&format!(
            "  logs: stdout {} bytes, stderr {} bytes{}\n",
            self.stdout_bytes,
            self.stderr_bytes,
            if self.log_dropped_bytes > 0 { format!(", {} dropped", self.log_dropped_bytes) } else { String::new() }
        ));
        if let Some(v) = &self.vm_restarted {
            o.push_str(&format!("  note: {v}\n"));
        }
        o
    }
}

impl Render for ServiceList {
    fn text(&self) -> String {
        if self.services.is_empty() {
            return format!("no services in workspace {}\n", self.workspace_id);
        }
        let mut o = String::new();
        for s in &self.services {
            o.push_str(&format!("{:<20} {:<8} {}", s.name, s.state, clip(&s.command, 80)));
            if let Some(r) = &s.stop_reason {
                o.push_str(&format!("  ({})", clip(r, 120)));
            }
            o.push('\n');
        }
        o
    }
}

impl Render for ServiceLogs {
    fn text(&self) -> String {
        let mut o = format!("service {} ({})\n", self.name, self.state);
        for (name, s) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if !s.is_empty() {
                o.push_str(&format!("[{name}]\n{s}"));
                if !s.ends_with('\n') {
                    o.push('\n');
                }
            }
        }
        if self.log_dropped_bytes > 0 {
            o.push_str(&format!("[{} older bytes dropped from the rings]\n", self.log_dropped_bytes));
        }
        o
    }

    fn brief(&self) -> String {
        format!(
            "service {} ({}): stdout {} bytes, stderr {} bytes shown{}\n",
            self.name,
            self.state,
            self.stdout.len(),
            self.stderr.len(),
            if self.log_dropped_bytes > 0 { format!("; {} dropped", self.log_dropped_bytes) } else { String::new() }
        )
    }
}

impl Render for SnapshotInfo {
    fn text(&self) -> String {
        format!("snapshot {} ({}, {})\n", self.name, when(self.created_at), size(self.size_bytes))
    }
}

impl Render for SnapshotList {
    fn text(&self) -> String {
        let mut o = String::new();
        for s in &self.snapshots {
            let mark = if self.live_on.as_deref() == Some(s.name.as_str()) { "  <- live disk on this" } else { "" };
            o.push_str(&format!("{:<24} {:>12} {:>10}{mark}\n", s.name, when(s.created_at), size(s.size_bytes)));
        }
        o
    }
}

impl Render for SnapshotDeleted {
    fn text(&self) -> String {
        if self.data_kept {
            format!("deleted snapshot {} (its data stays while later layers need it)\n", self.name)
        } else {
            format!("deleted snapshot {}\n", self.name)
        }
    }
}

/// A snapshot's age, as people say it.
fn when(t: u64) -> String {
    let age = now_s().saturating_sub(t);
    match age {
        0..=119 => format!("{age} s ago"),
        120..=7199 => format!("{} min ago", age / 60),
        _ => format!("{} h ago", age / 3600),
    }
}

/// A snapshot's size, in KiB or MiB.
fn size(b: u64) -> String {
    if b >= 10 << 20 {
        format!("{} MiB", b >> 20)
    } else {
        format!("{} KiB", b.div_ceil(1024))
    }
}
