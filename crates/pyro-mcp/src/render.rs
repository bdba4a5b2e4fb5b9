//! Text renderings of operation results: one per result type, used both for the CLI's human
//! output and for the MCP server's text content, so the two always state the same facts.
//! (`--json` and MCP structured content are the same values, serialized.)
//!
//! `Summary`'s rendering lives next to it in `workspace::summary`. Results whose payload is a
//! byte stream (run and exec output, file content) also have a one-line `status_line`: the
//! CLI passes the bytes through untouched and prints that line on stderr, the MCP text puts
//! the line first and the streams after it.

use crate::env::{EnvironmentDetails, PruneReport, PullReport};
use crate::run::RunResult;
use crate::text::{bytes, clip};
use crate::workspace::export::ExportReport;
use crate::workspace::files::{FileList, FileRead, FileWrite, PatchReport, SyncPush};
use crate::workspace::lifecycle::{DeleteReport, ExecRecord, Logs};
use crate::workspace::patch::Action;
use crate::workspace::shells::{ShellInfo, ShellList, ShellRead};
use crate::workspace::{diff::DiffResult, WorkspaceInfo, WorkspaceList};
use crate::EnvironmentList;
use std::fmt::Write;

/// A result that people (and models reading text) can read.
pub trait Render {
    /// The result's facts as short lines of plain text, ending in a newline.
    fn text(&self) -> String;

    /// The MCP text content: `text` without the large fields (output streams, file content,
    /// the patch) that the structured content carries already, so a result is not sent twice.
    /// Hosts that show models the structured content (Codex, Claude Code) lose nothing; the
    /// host's tool row stays short.
    fn brief(&self) -> String {
        self.text()
    }
}

/// `stdout: 12 lines, 1.2 KiB (truncated); stderr: empty` for a brief.
fn stream_sizes(stdout: &[u8], stderr: &[u8], truncated: (bool, bool)) -> String {
    let one = |name: &str, b: &[u8], cut: bool| {
        if b.is_empty() {
            format!("{name}: empty")
        } else {
            let lines = b.iter().filter(|&&c| c == b'\n').count() + usize::from(!b.ends_with(b"\n"));
            format!("{name}: {lines} lines, {}{}", bytes(b.len() as u64), if cut { " (truncated)" } else { "" })
        }
    };
    format!("{}; {}\n", one("stdout", stdout, truncated.0), one("stderr", stderr, truncated.1))
}

/// `\n[stdout]\n...` for each non-empty stream.
fn streams(out: &mut String, stdout: &[u8], stderr: &[u8], truncated: (bool, bool)) {
    for (name, bytes, cut) in [("stdout", stdout, truncated.0), ("stderr", stderr, truncated.1)] {
        if !bytes.is_empty() {
            out.push_str(&format!("[{name}{}]\n", if cut { ", truncated" } else { "" }));
            out.push_str(&String::from_utf8_lossy(bytes));
            if !bytes.ends_with(b"\n") {
                out.push('\n');
            }
        }
    }
}

impl RunResult {
    /// `environment=... execution_mode=... exit_code=... boot_ms=... duration_ms=... total_ms=...`
    pub fn status_line(&self) -> String {
        format!(
            "environment={} execution_mode={} accelerator={} exit_code={}{} boot_ms={} duration_ms={} total_ms={}",
            self.environment,
            self.execution_mode,
            self.accelerator,
            self.exit_code,
            if self.timed_out { " timed_out=true" } else { "" },
            self.boot_ms,
            self.duration_ms,
            self.total_ms
        )
    }
}

impl Render for RunResult {
    fn text(&self) -> String {
        let mut s = self.status_line() + "\n";
        streams(&mut s, &self.stdout, &self.stderr, (self.stdout_truncated, self.stderr_truncated));
        s
    }
    fn brief(&self) -> String {
        self.status_line()
            + "\n"
            + &stream_sizes(&self.stdout, &self.stderr, (self.stdout_truncated, self.stderr_truncated))
    }
}

impl ExecRecord {
    /// `workspace_id=... sequence=... exit_code=... duration_ms=...`
    pub fn status_line(&self) -> String {
        format!(
            "workspace_id={} sequence={} exit_code={}{}{} duration_ms={}",
            self.workspace_id,
            self.sequence,
            self.exit_code,
            if self.timed_out { " timed_out=true" } else { "" },
            if self.cancelled { " cancelled=true" } else { "" },
            self.duration_ms
        )
    }
}

impl Render for ExecRecord {
    fn text(&self) -> String {
        let mut s = self.status_line() + "\n";
        if let Some(why) = &self.vm_restarted {
            s.push_str(&format!("note: {why}\n"));
        }
        streams(&mut s, &self.stdout, &self.stderr, (self.stdout_truncated, self.stderr_truncated));
        s
    }
    fn brief(&self) -> String {
        let mut s = self.status_line() + "\n";
        if let Some(why) = &self.vm_restarted {
            s.push_str(&format!("note: {why}\n"));
        }
        s + &stream_sizes(&self.stdout, &self.stderr, (self.stdout_truncated, self.stderr_truncated))
    }
}

fn labels(l: &std::collections::BTreeMap<String, String>, sep: &str) -> String {
    l.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(sep)
}

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

impl Logs {
    fn render(&self, with_output: bool) -> String {
        let mut s = format!("{} commands since the last reset\n", self.count);
        for e in &self.entries {
            if !e.finished {
                s.push_str(&format!(
                    "#{} [unfinished: running, or lost with the VM or its caller] {}\n",
                    e.sequence,
                    clip(&e.command, 200)
                ));
                continue;
            }
            let how = if e.cancelled {
                ", cancelled"
            } else if e.timed_out {
                ", timed out"
            } else {
                ""
            };
            s.push_str(&format!(
                "#{} [exit {}{how}] {} ({} ms)\n",
                e.sequence,
                e.exit_code,
                clip(&e.command, 200),
                e.duration_ms
            ));
            if !with_output {
                continue;
            }
            for (out, label) in [(&e.stdout, "out"), (&e.stderr, "err")] {
                for line in out.lines() {
                    s.push_str(&format!("  {label}| {line}\n"));
                }
            }
        }
        s
    }
}

impl Render for Logs {
    fn text(&self) -> String {
        self.render(true)
    }
    fn brief(&self) -> String {
        self.render(false)
    }
}

impl Render for FileList {
    fn text(&self) -> String {
        let mut s = format!("{} entries under {}\n", self.count, self.path);
        for e in &self.entries {
            let target = e.target.as_ref().map(|t| format!(" -> {t}")).unwrap_or_default();
            s.push_str(&format!("{:<8} {:>10} {}{target}\n", e.kind, e.size, e.path));
        }
        if let Some(h) = &self.hint {
            s.push_str(&format!("[truncated] {h}\n"));
        }
        s
    }
}

impl FileRead {
    /// `path=... size_bytes=... truncated=... binary=...`
    pub fn status_line(&self) -> String {
        let mut s = format!(
            "path={} size_bytes={} truncated={} binary={}",
            self.path, self.size_bytes, self.truncated, self.binary
        );
        if self.offset > 0 {
            s.push_str(&format!(" offset={}", self.offset));
        }
        if let Some(n) = self.next_offset {
            s.push_str(&format!(" next_offset={n}"));
        }
        s
    }
}

impl Render for FileRead {
    fn text(&self) -> String {
        format!("{}\n{}", self.status_line(), String::from_utf8_lossy(&self.content))
    }
    fn brief(&self) -> String {
        format!("{} content_bytes={}\n", self.status_line(), self.content.len())
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

impl Render for FileWrite {
    fn text(&self) -> String {
        format!("wrote {} bytes to {}\n", self.bytes_written, self.path)
    }
}

impl Render for SyncPush {
    fn text(&self) -> String {
        let s = &self.workspace_sync;
        format!("pushed {} entries ({} bytes) to {}\n", s.entry_count, s.bytes_written, s.destination)
    }
}

/// The serialized name of a patch action (`patch.rs` gives it no `Display`).
fn action(a: &Action) -> &'static str {
    match a {
        Action::Added => "added",
        Action::Modified => "modified",
        Action::Deleted => "deleted",
        Action::Renamed => "renamed",
        Action::ModeChanged => "mode_changed",
    }
}

impl Render for PatchReport {
    fn text(&self) -> String {
        let m = &self.summary;
        let mut s = format!(
            "{} files: {} added, {} modified, {} deleted, {} renamed, {} mode changed\n",
            m.total, m.added, m.modified, m.deleted, m.renamed, m.mode_changed
        );
        for e in &self.entries {
            s.push_str(&format!("{:<12} {} (+{} -{})\n", action(&e.status), e.path, e.additions, e.deletions));
        }
        s
    }
}

impl Render for DiffResult {
    fn text(&self) -> String {
        if !self.changed {
            return "no changes since the baseline\n".into();
        }
        let m = &self.summary;
        let mut s = format!(
            "{} changed: {} added, {} modified, {} deleted, {} type changed\n",
            m.total, m.added, m.modified, m.deleted, m.type_changed
        );
        for e in &self.entries {
            s.push_str(&format!("  {:<12} {}{}\n", e.status, e.path, if e.binary { " (binary)" } else { "" }));
        }
        if let Some(n) = self.entries_omitted {
            s.push_str(&format!("  +{n} more\n"));
        }
        if let Some(h) = &self.hint {
            s.push_str(&format!("hint: {h}\n"));
        }
        s.push_str(&self.patch);
        s
    }
    fn brief(&self) -> String {
        let text = self.text();
        let head = text.len() - self.patch.len();
        let mut s = text[..head].to_string();
        if !self.patch.is_empty() {
            s.push_str(&format!(
                "patch: {}{}\n",
                bytes(self.patch.len() as u64),
                if self.patch_truncated { " (truncated)" } else { "" }
            ));
        }
        s
    }
}

impl Render for ExportReport {
    fn text(&self) -> String {
        let mut s = format!(
            "exported {} ({}, {} entries, {} bytes) to {}\n",
            self.path,
            self.artifact_type,
            self.entry_count,
            self.bytes_written,
            self.output_path.display()
        );
        if self.skipped_count > 0 {
            s.push_str(&format!("left out {} entries:\n", self.skipped_count));
            let shown = self.skipped.len().min(20);
            for e in &self.skipped[..shown] {
                s.push_str(&format!("  {} ({})\n", e.path, e.reason));
            }
            // Entries inside a left-out directory are counted, not listed.
            if self.skipped_count > shown as u64 {
                s.push_str(&format!(
                    "  and {} more inside those or beyond the list\n",
                    self.skipped_count - shown as u64
                ));
            }
        }
        s
    }
}

impl Render for DeleteReport {
    fn text(&self) -> String {
        format!("deleted {}\n", self.workspace_id)
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` from seconds since the epoch.
pub(crate) fn utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// One `name  value` row of `env inspect`.
fn row(o: &mut String, k: &str, v: &str) {
    let _ = writeln!(o, "{k:<14} {v}");
}

impl Render for EnvironmentList {
    fn text(&self) -> String {
        let mut o = String::new();
        for e in &self.environments {
            let state = match (e.installed, e.size_bytes) {
                (true, Some(s)) => format!("installed, {} MiB", s >> 20),
                (true, None) => "installed".into(),
                _ => "not installed".into(),
            };
            let _ = writeln!(o, "{:<16} {:<12} {:<24} {}", e.name, e.version, state, e.description);
        }
        o
    }
}

impl Render for PullReport {
    fn text(&self) -> String {
        format!(
            "{} {} {} ({} MiB, sha256:{})\n",
            self.name,
            self.version,
            if self.built { "installed" } else { "already installed" },
            self.size_bytes >> 20,
            &self.digest[..16.min(self.digest.len())]
        )
    }
}

impl Render for EnvironmentDetails {
    fn text(&self) -> String {
        let d = self;
        let mut out = String::new();
        row(&mut out, "name", &d.name);
        row(&mut out, "kind", d.kind.as_str());
        if let Some(desc) = &d.description {
            row(&mut out, "description", desc);
        }
        if let Some(v) = &d.catalog_version {
            row(&mut out, "catalog", &format!("version {v}; recipe: {}", d.recipe_packages.join(" ")));
        }
        match &d.current {
            None => row(&mut out, "installed", "no"),
            Some(i) => {
                row(&mut out, "installed", &format!("yes, {}", utc(i.installed_at)));
                row(&mut out, "version", &i.version);
                row(&mut out, "digest", &format!("sha256:{}", i.digest));
                row(&mut out, "source", &i.source);
                row(&mut out, "size", &format!("{} on disk (sparse ext4 base)", bytes(i.size_bytes)));
                row(&mut out, "path", &i.dir.display().to_string());
                if let Some(k) = &i.kernel {
                    row(&mut out, "built with", k);
                }
                if let Some(o) = &i.oci {
                    row(&mut out, "manifest", &o.manifest_digest);
                    if let Some(x) = &o.index_digest {
                        row(&mut out, "index", &format!("{x} (resolved to {})", o.platform));
                    }
                    row(&mut out, "config", &o.config_digest);
                    if let Some(c) = &o.created {
                        row(&mut out, "created", c);
                    }
                    row(&mut out, "layers", &o.layers.len().to_string());
                    for (n, l) in o.layers.iter().enumerate() {
                        let _ =
                            writeln!(out, "{:<14}   {}. {} {} {}", "", n + 1, l.digest, bytes(l.size), l.media_type);
                    }
                    let c = &o.config;
                    let mut parts = Vec::new();
                    if !c.env.is_empty() {
                        parts.push(format!("Env={}", c.env.join(" ")));
                    }
                    if let Some(w) = &c.working_dir {
                        parts.push(format!("WorkingDir={w}"));
                    }
                    if let Some(u) = &c.user {
                        parts.push(format!("User={u}"));
                    }
                    if let Some(e) = &c.entrypoint {
                        parts.push(format!("Entrypoint={e:?}"));
                    }
                    if let Some(e) = &c.cmd {
                        parts.push(format!("Cmd={e:?}"));
                    }
                    row(&mut out, "image config", &if parts.is_empty() { "(empty)".into() } else { parts.join("; ") });
                    row(&mut out, "", "recorded only: commands run as root in /workspace with pyro's PATH");
                }
                row(&mut out, "packages", &i.packages.len().to_string());
                for chunk in i.packages.chunks(4) {
                    let _ = writeln!(out, "{:<14}   {}", "", chunk.join("  "));
                }
            }
        }
        if let Some(k) = &d.kernel {
            row(&mut out, "kernel", &format!("{k} (shared by every environment)"));
        }
        if !d.templates.is_empty() {
            row(&mut out, "templates", &d.templates.len().to_string());
            for t in &d.templates {
                let _ = writeln!(
                    out,
                    "{:<14}   {} vCPU, {} MiB, {}: {} MiB of RAM in use, built {}{}",
                    "",
                    t.vcpus,
                    t.mem_mib,
                    if t.nic { "NIC" } else { "no NIC" },
                    t.ram_bytes >> 20,
                    utc(t.built_at),
                    if t.current { "" } else { " (stale: another QEMU, kernel or agent)" }
                );
            }
        }
        if !d.installs.is_empty() {
            row(&mut out, "installs", &d.installs.len().to_string());
            for i in &d.installs {
                let mut note = vec![utc(i.installed_at), bytes(i.size_bytes)];
                if i.current {
                    note.push("current".into());
                }
                if !i.used_by.is_empty() {
                    note.push(format!("used by {}", i.used_by.join(", ")));
                }
                let _ = writeln!(out, "{:<14}   {} {} ({})", "", i.version, i.path, note.join(", "));
            }
        }
        out
    }
}

impl Render for PruneReport {
    fn text(&self) -> String {
        let r = self;
        let mut o = String::new();
        let verb = if r.dry_run { "would remove" } else { "removed" };
        for e in &r.removed {
            let _ = writeln!(o, "{verb:<12} {} ({}, {})", e.path, e.reason, bytes(e.size_bytes));
        }
        for e in &r.kept_in_use {
            let _ = writeln!(o, "{:<12} {} ({}; used by {})", "kept", e.path, e.reason, e.used_by.join(", "));
        }
        for e in &r.skipped_busy {
            let _ = writeln!(o, "{:<12} {e} (a pull is in progress)", "skipped");
        }
        let _ = writeln!(
            o,
            "{} {} entries, {}; kept {} current and {} in use",
            if r.dry_run { "would free" } else { "freed" },
            r.removed.len(),
            bytes(r.freed_bytes),
            r.kept_current.len(),
            r.kept_in_use.len()
        );
        o
    }
}

impl Render for crate::workspace::stop::StopReport {
    fn text(&self) -> String {
        let what = match (self.memory_saved, self.memory_bytes) {
            (true, Some(b)) => format!("stopped; memory saved ({} MiB) in {} ms", b >> 20, self.duration_ms),
            _ => format!("stopped; memory not kept ({} ms)", self.duration_ms),
        };
        let note = self.note.as_ref().map(|n| format!("note:         {n}\n")).unwrap_or_default();
        format!("{}{what}\n{note}", self.workspace.text())
    }
}

impl Render for crate::workspace::stop::StartReport {
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

impl Render for crate::workspace::disk::DiskExport {
    fn text(&self) -> String {
        format!(
            "exported the disk of {} to {} ({} {}, {} bytes, sparse)\n",
            self.workspace_id,
            self.output_path.display(),
            self.format,
            self.file_system,
            self.size_bytes
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Cleanup;

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
            patch: String::new(),
            patch_truncated: false,
            hint: None,
        };
        assert_eq!(d.text(), "no changes since the baseline\n");
        d.changed = true;
        d.summary = DiffSummary { total: 1, added: 1, ..Default::default() };
        d.entries =
            vec![DiffEntry { path: "a".into(), status: "added".into(), artifact_type: "file".into(), binary: false }];
        d.patch = "+x\n".into();
        assert_eq!(d.text(), "1 changed: 1 added, 0 modified, 0 deleted, 0 type changed\n  added        a\n+x\n");
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
}
