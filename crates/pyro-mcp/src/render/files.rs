//! Files: listings, reads, writes, syncs, patches, diffs, exports and disk exports.

use super::Render;
use crate::text::bytes;
use crate::workspace::diff::DiffResult;
use crate::workspace::disk::DiskExport;
use crate::workspace::export::ExportReport;
use crate::workspace::files::{FileList, FileRead, FileWrite, PatchReport, SyncPush};
use crate::workspace::patch::Action;

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
            let path = match (e.files, e.bytes) {
                (Some(f), Some(b)) => crate::text::collapsed_dir(&e.path, f, b),
                _ => e.path.clone(),
            };
            s.push_str(&format!("  {:<12} {}{}\n", e.status, path, if e.binary { " (binary)" } else { "" }));
        }
        if let Some(n) = self.entries_omitted {
            s.push_str(&format!(
                "  +{n} more{}\n",
                self.next_cursor.map(|c| format!(" (--cursor {c})")).unwrap_or_default()
            ));
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

impl Render for DiskExport {
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
