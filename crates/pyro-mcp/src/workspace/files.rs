//! File operations on a live workspace: list, read, write, sync push, patch apply and
//! export. Paths are normalized on the host (`guest_path`) and checked again in the guest,
//! where symlinks are resolved; writes are atomic and batches are all-or-nothing. Export
//! lives in `export`.

use super::base::Workspaces;
use super::event::WorkspaceEvent;
pub use super::patch::PatchSummary;
use super::{guest_path, patch, seed};
use crate::error::{Code, Context, Error, Result};
use crate::text::clip;
use pyro_proto::{FsOp, Request};
use schemars::JsonSchema;
use serde::Serialize;
use std::path::{Path, PathBuf};

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub const DEFAULT_READ_BYTES: u64 = 64 * 1024;
pub const MAX_READ_BYTES: u64 = 1 << 20;
/// Largest content `file write` takes, in bytes (1 MiB); larger files go in with `sync push`.
pub const MAX_WRITE_BYTES: usize = 1 << 20;
pub const DEFAULT_LIST_ENTRIES: u32 = 1000;
/// Largest file a patch may touch (read whole, patched in memory).
pub const MAX_PATCH_FILE_BYTES: u64 = 64 << 20;

/// One entry of `file list`. The SDK's own copy of the guest's `FsEntry`, so the public
/// result does not change when the wire protocol does.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FileEntry {
    /// Relative to /workspace.
    pub path: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: String,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Where a symlink points, as written in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// sha256 of a regular file's content, when the listing computed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl From<pyro_proto::FsEntry> for FileEntry {
    fn from(e: pyro_proto::FsEntry) -> Self {
        FileEntry {
            path: e.path,
            kind: e.kind.as_str().into(),
            mode: e.mode,
            size: e.size,
            target: e.target,
            sha256: e.sha256,
        }
    }
}

/// `file list`: a directory's entries.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FileList {
    /// The workspace (its id).
    pub workspace_id: String,
    /// The directory listed, as an absolute guest path.
    pub path: String,
    /// How many entries are listed.
    pub count: usize,
    /// The entries, relative to /workspace.
    pub entries: Vec<FileEntry>,
    /// The listing stopped at its cap; `hint` says how to see the rest.
    pub truncated: bool,
    /// Set when the listing was capped: how to see the rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// `file read`: a file's content from an offset.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FileRead {
    /// The workspace (its id).
    pub workspace_id: String,
    /// The file read, as an absolute guest path.
    pub path: String,
    /// The file's size in bytes.
    pub size_bytes: u64,
    /// Where in the file `content` starts.
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: u64,
    /// The file goes on after `content`.
    pub truncated: bool,
    /// When truncated: the `offset` that reads on from here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<u64>,
    /// The content has NUL bytes or is not UTF-8, so `content` shows it with replacement
    /// characters.
    pub binary: bool,
    /// The file's permission bits (with the file-type bits when read without following a symlink).
    pub mode: u32,
    /// What was read, as text (invalid UTF-8 replaced, secrets redacted).
    #[serde(serialize_with = "crate::text::lossy")]
    #[schemars(with = "String")]
    pub content: Vec<u8>,
}

/// `file write`: what was written where.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FileWrite {
    /// The workspace (its id).
    pub workspace_id: String,
    /// The file written, as an absolute guest path.
    pub path: String,
    /// Bytes written.
    pub bytes_written: u64,
}

/// `sync push`: what was copied where.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SyncPush {
    /// The workspace (its id).
    pub workspace_id: String,
    /// What was copied and where.
    pub workspace_sync: SyncDetails,
}

/// What `sync push` copied: from where, to where, and how much.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SyncDetails {
    /// `directory`, `git_checkout`, `tar` or `tar_gz`.
    #[schemars(with = "String")]
    pub mode: seed::SourceKind,
    /// The host directory or archive copied from.
    pub source_path: PathBuf,
    /// Where it was unpacked in the guest (an absolute path).
    pub destination: String,
    /// Files, directories and symlinks copied.
    pub entry_count: u64,
    /// Bytes of file content copied.
    pub bytes_written: u64,
}

/// `patch apply`: each file and what happened to it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PatchReport {
    /// The workspace (its id).
    pub workspace_id: String,
    /// The patch changed at least one file.
    pub changed: bool,
    /// How many files of each kind the patch changed.
    pub summary: PatchSummary,
    /// Each file the patch touched.
    pub entries: Vec<PatchEntry>,
}

/// One file a patch touched.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PatchEntry {
    /// The file's path, relative to /workspace (for a rename, the new path).
    pub path: String,
    /// `added`, `modified`, `deleted`, `renamed` or `mode_changed`.
    #[schemars(with = "String")]
    pub status: patch::Action,
    /// The path a rename moved away from (null otherwise).
    pub old_path: Option<String>,
    /// Hunks of the patch applied to the file.
    pub hunks: usize,
    /// Lines the patch added to the file.
    pub additions: usize,
    /// Lines the patch removed from the file.
    pub deletions: usize,
}

impl Workspaces<'_> {
    /// A directory's entries (`/workspace` by default; with `recursive`, everything below it),
    /// capped at 1000.
    pub fn file_list(&mut self, key: &str, path: Option<&str>, recursive: bool) -> Result<FileList> {
        let gp = guest_path(path.unwrap_or("/workspace"))?;
        let r = self.resolve(key)?;
        let (mut c, _) = self.connect(&r)?;
        let list = Request::FsList { path: gp.clone(), recursive, max_entries: DEFAULT_LIST_ENTRIES };
        let (entries, truncated) = c.entries(&list, DEFAULT_LIST_ENTRIES as u64)?;
        let redactor = self.redactor(&r.id)?;
        let entries: Vec<FileEntry> = entries
            .into_iter()
            .map(FileEntry::from)
            .map(|mut e| {
                e.path = redactor.redact_str(&e.path);
                e.target = e.target.map(|t| redactor.redact_str(&t));
                e
            })
            .collect();
        Ok(FileList {
            workspace_id: r.id,
            path: gp,
            count: entries.len(),
            entries,
            truncated,
            hint: truncated.then(|| {
                format!("listing capped at {DEFAULT_LIST_ENTRIES} entries; list a sub-directory to see the rest")
            }),
        })
    }

    /// The start of a file, up to `max_bytes` (64 KiB by default, 1 MiB at most).
    pub fn file_read(&mut self, key: &str, path: &str, max_bytes: Option<u64>) -> Result<FileRead> {
        self.file_read_at(key, path, 0, max_bytes)
    }

    /// Read up to `max_bytes` from `offset` bytes into the file: a large file is paged with
    /// the `next_offset` each truncated read returns.
    pub fn file_read_at(&mut self, key: &str, path: &str, offset: u64, max_bytes: Option<u64>) -> Result<FileRead> {
        let gp = guest_path(path)?;
        let max = crate::error::in_range("max_bytes", max_bytes.unwrap_or(DEFAULT_READ_BYTES), 1, MAX_READ_BYTES)?;
        let r = self.resolve(key)?;
        let (mut c, _) = self.connect(&r)?;
        let redactor = self.redactor(&r.id)?;
        let mut f = c.read_file_at(&gp, offset, max, false).map_err(|e| redactor.redact_error(e))?;
        // Offsets count the file's bytes, so they are taken before redaction changes lengths.
        // A value cut by the page boundary is not recognised (see `secrets`).
        let next_offset = f.truncated.then(|| offset + f.content.len() as u64);
        redactor.redact_vec(&mut f.content);
        Ok(FileRead {
            workspace_id: r.id,
            path: gp,
            size_bytes: f.size,
            offset,
            truncated: f.truncated,
            next_offset,
            binary: f.binary,
            mode: f.mode,
            content: f.content,
        })
    }

    /// Create or replace one file with `content`, atomically (its directories are created).
    pub fn file_write(&mut self, key: &str, path: &str, content: &[u8]) -> Result<FileWrite> {
        let gp = guest_path(path)?;
        if gp == "/workspace" {
            return Err(Error::invalid("cannot write to /workspace itself"));
        }
        if content.len() > MAX_WRITE_BYTES {
            return Err(Error::limit(format!(
                "file content is {} bytes; the limit is {MAX_WRITE_BYTES}",
                content.len()
            )));
        }
        let r = self.resolve(key)?;
        let (mut c, _) = self.connect(&r)?;
        c.batch(vec![FsOp::Write { path: gp.clone(), len: content.len() as u64, mode: None }], content)?;
        self.store.event(&r.id, &WorkspaceEvent::FileWrite { path: rel(&gp), bytes: content.len() as u64 })?;
        Ok(FileWrite { workspace_id: r.id, path: gp, bytes_written: content.len() as u64 })
    }

    /// Copy a host directory or archive into the live workspace (default `/workspace`),
    /// overwriting what it carries and leaving the rest. The baseline does not move.
    pub fn sync_push(&mut self, key: &str, source: &Path, dest: Option<&str>) -> Result<SyncPush> {
        self.sync_push_in(key, source, false, dest)
    }

    /// `sync_push`; `exact`: the caller resolved and confined `source` (the MCP server), so a
    /// source that resolves elsewhere when it is opened is refused (see `seed::build_seed_tar_in`).
    pub fn sync_push_in(&mut self, key: &str, source: &Path, exact: bool, dest: Option<&str>) -> Result<SyncPush> {
        let gp = guest_path(dest.unwrap_or("/workspace"))?;
        seed::detect_kind_in(source, exact)?;
        let r = self.resolve(key)?;
        let tmp = super::base::ws_dir(self.paths(), &r.id).join(format!("sync-{}.tar", crate::vm::new_id()));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp).ctx("creating sync archive")?;
            // Held while the archive is in use: a sweep removes only unlocked ones (left by a
            // killed call).
            let _held = crate::lockfile::lock(&tmp)?;
            let info = seed::build_seed_tar_in(source, exact, &mut f)?;
            drop(f);
            let (mut c, _) = self.connect(&r)?;
            let mut rd = std::io::BufReader::new(std::fs::File::open(&tmp).ctx("opening sync archive")?);
            c.unpack(&gp, false, &mut rd, &mut |_| {})?;
            Ok(info)
        })();
        let _ = std::fs::remove_file(&tmp);
        let info = result?;
        let paths: Vec<String> =
            info.manifest.iter().filter(|e| e.kind != "dir").take(20).map(|e| e.path.clone()).collect();
        self.store.event(
            &r.id,
            &WorkspaceEvent::SyncPush {
                source: clip(&source.display().to_string(), 300),
                destination: rel(&gp),
                entries: info.entries,
                bytes: info.bytes,
                paths,
            },
        )?;
        Ok(SyncPush {
            workspace_id: r.id,
            workspace_sync: SyncDetails {
                mode: info.kind,
                source_path: source.to_path_buf(),
                destination: gp,
                entry_count: info.entries,
                bytes_written: info.bytes,
            },
        })
    }

    /// Apply a unified diff all or nothing; the result lists each file and what happened.
    pub fn patch_apply(&mut self, key: &str, patch_text: &str) -> Result<PatchReport> {
        if patch_text.len() > patch::MAX_PATCH_BYTES {
            return Err(Error::limit(format!(
                "patch is {} bytes; the limit is {}",
                patch_text.len(),
                patch::MAX_PATCH_BYTES
            )));
        }
        let r = self.resolve(key)?;
        let (mut c, _) = self.connect(&r)?;
        let mut read = |p: &str| -> Result<Option<patch::Current>> {
            let gp = guest_path(p)?;
            match c.read_file(&gp, MAX_PATCH_FILE_BYTES, true) {
                Ok(f) if f.truncated => Err(Error::limit(format!(
                    "{p} is larger than {} MiB; patching it is not supported",
                    MAX_PATCH_FILE_BYTES >> 20
                ))),
                Ok(f) => Ok(Some(patch::Current { content: f.content, mode: f.mode })),
                Err(e) if e.code == Code::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        };
        let changes = patch::apply(patch_text, &mut read)?;
        let mut ops = Vec::new();
        let mut payload = Vec::new();
        for ch in &changes {
            let gp = guest_path(&ch.path)?;
            match ch.action {
                patch::Action::Deleted => ops.push(FsOp::Delete { path: gp }),
                _ => {
                    if let Some(old) = &ch.old_path {
                        ops.push(FsOp::Delete { path: guest_path(old)? });
                    }
                    // A type change needs no delete: the staged file or link is renamed over
                    // what is there, which replaces a link itself and never writes through it.
                    match &ch.content {
                        Some(target) if ch.symlink => {
                            let target = String::from_utf8(target.clone())
                                .map_err(|_| Error::invalid(format!("the link target for {} is not UTF-8", ch.path)))?;
                            ops.push(FsOp::Symlink { path: gp, target });
                        }
                        Some(content) => {
                            ops.push(FsOp::Write { path: gp.clone(), len: content.len() as u64, mode: ch.mode });
                            payload.extend_from_slice(content);
                        }
                        None => {
                            if let Some(mode) = ch.mode {
                                ops.push(FsOp::Chmod { path: gp, mode });
                            }
                        }
                    }
                }
            }
        }
        // Renames write the new path before deleting the old one: order writes first.
        ops.sort_by_key(|o| matches!(o, FsOp::Delete { .. }));
        c.batch(ops, &payload)?;
        let count = |a: patch::Action| changes.iter().filter(|c| c.action == a).count();
        let summary = PatchSummary {
            total: changes.len(),
            added: count(patch::Action::Added),
            modified: count(patch::Action::Modified),
            deleted: count(patch::Action::Deleted),
            renamed: count(patch::Action::Renamed),
            mode_changed: count(patch::Action::ModeChanged),
        };
        let paths: Vec<&str> = changes.iter().take(50).map(|c| c.path.as_str()).collect();
        self.store.event(
            &r.id,
            &WorkspaceEvent::PatchApply {
                files: changes.len() as u64,
                paths: paths.iter().map(|p| p.to_string()).collect(),
                summary: Some(summary.clone()),
            },
        )?;
        let entries = changes
            .into_iter()
            .map(|ch| PatchEntry {
                path: ch.path,
                status: ch.action,
                old_path: ch.old_path,
                hunks: ch.hunks,
                additions: ch.additions,
                deletions: ch.deletions,
            })
            .collect::<Vec<_>>();
        Ok(PatchReport { workspace_id: r.id, changed: !entries.is_empty(), summary, entries })
    }
}

/// Path relative to /workspace, for events and summaries.
pub fn rel(gp: &str) -> String {
    gp.strip_prefix("/workspace/").unwrap_or(if gp == "/workspace" { "." } else { gp }).to_string()
}
