//! `workspace diff`: the live workspace against its baseline (the seed as of the last
//! reset). The guest reports a manifest with hashes; the host compares it with the baseline
//! manifest and builds unified patches for changed text files, old contents coming from the
//! baseline archive. Everything is capped, with markers and hints to get the rest.

use super::base::{ws_dir, Workspaces};
use super::patch;
use super::seed::ManifestEntry;
use crate::error::{Context, Error, Result};
use pyro_proto::{EntryKind, Request};
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;

pub const MAX_ENTRIES: usize = 500;
pub const MAX_PATCH_TEXT: usize = 200 * 1024;
const MAX_TEXT_FILE: u64 = 256 * 1024;
/// Most entries a workspace may have for `diff` (and the summary's live diff).
pub const MAX_MANIFEST_ENTRIES: u32 = 500_000;

/// Whether the guest may reuse its hashes of files unchanged since it last hashed them
/// (`PYRO_DIFF_TRACKING=off|0|false|no` makes every diff and summary hash every file again).
pub fn tracking_enabled() -> bool {
    !std::env::var("PYRO_DIFF_TRACKING").is_ok_and(|v| matches!(v.as_str(), "off" | "0" | "false" | "no"))
}

/// How many paths changed, by kind of change, and how many of the changed files have a text patch.
#[derive(Debug, Clone, Serialize, JsonSchema, Default)]
pub struct DiffSummary {
    /// Paths that changed, of every kind.
    pub total: usize,
    /// Paths that are new.
    pub added: usize,
    /// Paths whose content changed (a file's bytes or executable bit, a symlink's target).
    pub modified: usize,
    /// Paths that are gone.
    pub deleted: usize,
    /// Paths that became another type (a file became a directory or a symlink, ...).
    pub type_changed: usize,
    /// Changed files shown in the patch as text.
    pub text_patched: usize,
    /// Changed files left out of the patch: binary, or too large to diff.
    pub non_text: usize,
}

/// One changed path.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DiffEntry {
    /// The path, relative to /workspace.
    pub path: String,
    /// `added`, `modified`, `deleted` or `type_changed`.
    pub status: String,
    /// What is there now (or was, when deleted): `file`, `dir`, `symlink` or `other`.
    pub artifact_type: String,
    /// Its content is binary or too large, so the patch leaves it out; absent when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub binary: bool,
}

/// `diff`: the live workspace against its baseline, capped.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct DiffResult {
    /// The workspace (its id).
    pub workspace_id: String,
    /// Anything changed since the baseline.
    pub changed: bool,
    /// How many paths changed, by kind.
    pub summary: DiffSummary,
    /// The changed paths, edits to what existed first, then additions (capped; see
    /// `entries_omitted`).
    pub entries: Vec<DiffEntry>,
    /// Changed paths not listed past the cap; absent when all are listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries_omitted: Option<usize>,
    /// A unified diff of the changed text files (capped; a marker says where).
    pub patch: String,
    /// The patch was cut at its cap.
    pub patch_truncated: bool,
    /// How to see the rest when the result is capped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// `.git` is the repository's own bookkeeping: listing its churn would drown the real changes.
fn ignored(path: &str) -> bool {
    path == ".git" || path.starts_with(".git/")
}

pub fn baseline_manifest(dir: &std::path::Path) -> Vec<ManifestEntry> {
    std::fs::read(dir.join("baseline.json")).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Compare two manifests: (path, status, kind) sorted by path.
pub fn compare(base: &[ManifestEntry], cur: &[pyro_proto::FsEntry]) -> Vec<(String, &'static str, String)> {
    let b: BTreeMap<&str, &ManifestEntry> =
        base.iter().filter(|e| !ignored(&e.path)).map(|e| (e.path.as_str(), e)).collect();
    let c: BTreeMap<&str, &pyro_proto::FsEntry> =
        cur.iter().filter(|e| !ignored(&e.path)).map(|e| (e.path.as_str(), e)).collect();
    let mut out = Vec::new();
    for (p, ce) in &c {
        match b.get(p) {
            None => out.push((p.to_string(), "added", ce.kind.as_str().to_string())),
            Some(be) if be.kind != ce.kind.as_str() => {
                out.push((p.to_string(), "type_changed", ce.kind.as_str().to_string()))
            }
            Some(be) => {
                let differs = match ce.kind {
                    EntryKind::File => be.sha256 != ce.sha256 || (be.mode & 0o111 != 0) != (ce.mode & 0o111 != 0),
                    EntryKind::Symlink => be.target != ce.target,
                    EntryKind::Dir | EntryKind::Other => false,
                };
                if differs {
                    out.push((p.to_string(), "modified", ce.kind.as_str().to_string()));
                }
            }
        }
    }
    for (p, be) in &b {
        if !c.contains_key(p) {
            out.push((p.to_string(), "deleted", be.kind.clone()));
        }
    }
    out.sort();
    out
}

fn is_text(b: &[u8]) -> bool {
    !b.contains(&0) && std::str::from_utf8(b).is_ok()
}

impl Workspaces<'_> {
    /// The live workspace against its baseline: what changed, and a unified patch of the text
    /// files (capped).
    pub fn diff(&mut self, key: &str) -> Result<DiffResult> {
        self.diff_with(key, true, None, MAX_PATCH_TEXT)
    }

    /// `diff` of what is at or under `path` (a file or directory in the workspace), with the
    /// patch text capped at `max_patch` bytes (at most [`MAX_PATCH_TEXT`]): how a capped diff
    /// is read piece by piece.
    pub fn diff_path(&mut self, key: &str, path: Option<&str>, max_patch: usize) -> Result<DiffResult> {
        self.diff_with(key, true, path, max_patch.min(MAX_PATCH_TEXT))
    }

    /// `diff`; without `with_patch` only the manifests are compared (no file contents are
    /// read): what the summary needs, fast on big trees.
    pub(crate) fn diff_with(
        &mut self,
        key: &str,
        with_patch: bool,
        path: Option<&str>,
        max_patch: usize,
    ) -> Result<DiffResult> {
        // The path's form relative to /workspace ("" for all of it), as manifests name paths.
        let under = match path {
            Some(p) => super::guest_path(p)?.trim_start_matches("/workspace").trim_start_matches('/').to_string(),
            None => String::new(),
        };
        let r = self.resolve(key)?;
        let dir = ws_dir(self.paths(), &r.id);
        let base = baseline_manifest(&dir);
        let (mut c, _) = self.connect(&r)?;
        let manifest = Request::FsManifest {
            path: "/workspace".into(),
            max_entries: MAX_MANIFEST_ENTRIES,
            full_scan: !tracking_enabled(),
        };
        let (cur, truncated) = c.entries(&manifest, MAX_MANIFEST_ENTRIES as u64)?;
        if truncated {
            return Err(Error::limit(format!(
                "the workspace has more than {MAX_MANIFEST_ENTRIES} entries; diff is not available"
            ))
            .hint("export the workspace and diff it on the host"));
        }
        let mut changes = compare(&base, &cur);
        if !under.is_empty() {
            changes
                .retain(|(p, _, _)| p == &under || p.strip_prefix(under.as_str()).is_some_and(|r| r.starts_with('/')));
        }
        // Edits to what was there come first, then additions: after an install adds thousands
        // of files, the capped entry list and patch still show the real changes.
        changes.sort_by_key(|(p, st, _)| (*st == "added", p.clone()));
        let mut summary = DiffSummary { total: changes.len(), ..Default::default() };
        for (_, st, _) in &changes {
            match *st {
                "added" => summary.added += 1,
                "modified" => summary.modified += 1,
                "deleted" => summary.deleted += 1,
                _ => summary.type_changed += 1,
            }
        }
        // Old contents for the text files we will patch, in one pass over the baseline archive.
        let base_sizes: BTreeMap<&str, u64> = base.iter().map(|e| (e.path.as_str(), e.size)).collect();
        let cur_sizes: BTreeMap<&str, u64> = cur.iter().map(|e| (e.path.as_str(), e.size)).collect();
        let wanted: HashSet<String> = changes
            .iter()
            .filter(|(p, st, k)| {
                with_patch
                    && k == "file"
                    && *st != "added"
                    && base_sizes.get(p.as_str()).is_some_and(|s| *s <= MAX_TEXT_FILE)
            })
            .map(|(p, _, _)| p.clone())
            .collect();
        let old = read_from_tar(&dir.join("baseline.tar"), &wanted)?;
        // New contents: the text-sized files the patch may show, read from the guest many at a
        // time (one round trip per file made a diff after 3,000 new files take seconds).
        let need: Vec<String> = changes
            .iter()
            .filter(|(p, st, k)| {
                with_patch
                    && k == "file"
                    && *st != "deleted"
                    && cur_sizes.get(p.as_str()).is_some_and(|s| *s <= MAX_TEXT_FILE)
            })
            .map(|(p, _, _)| p.clone())
            .collect();
        let mut reader = BatchReader {
            need: &need,
            next: 0,
            got: HashMap::new(),
            bytes: (2 * max_patch as u64).clamp(64 << 10, 4 << 20),
        };
        let mut patch_text = String::new();
        let mut patch_truncated = false;
        let mut entries = Vec::new();
        for (p, st, kind) in &changes {
            let mut binary = false;
            // Once the patch text is capped, file contents are not fetched any more: the
            // entries still list every change, and reading thousands of files for a patch
            // nobody will see would make diff slow on big trees.
            if with_patch && (kind == "file" || *st == "deleted") && !patch_truncated {
                let old_bytes = old.get(p);
                let new_bytes = if *st == "deleted" || cur_sizes.get(p.as_str()).is_none_or(|s| *s > MAX_TEXT_FILE) {
                    None
                } else {
                    reader.get(&mut c, p, &cur_sizes)?
                };
                let too_big = (*st != "deleted" && new_bytes.is_none())
                    || (*st != "added" && old_bytes.is_none() && base_sizes.get(p.as_str()).is_some_and(|s| *s > 0));
                let text =
                    !too_big && old_bytes.is_none_or(|b| is_text(b)) && new_bytes.as_ref().is_none_or(|b| is_text(b));
                if text {
                    summary.text_patched += 1;
                    if !patch_truncated {
                        let piece = patch::unified_diff(p, old_bytes.map(|v| v.as_slice()), new_bytes.as_deref());
                        if patch_text.len() + piece.len() > max_patch {
                            patch_truncated = true;
                            patch_text.push_str(&format!(
                                "[pyro: patch truncated at {} KiB; diff one path at a time, or read the files]\n",
                                max_patch / 1024
                            ));
                        } else {
                            patch_text.push_str(&piece);
                        }
                    }
                } else {
                    binary = true;
                    summary.non_text += 1;
                }
            }
            if entries.len() < MAX_ENTRIES {
                entries.push(DiffEntry {
                    path: p.clone(),
                    status: st.to_string(),
                    artifact_type: kind.clone(),
                    binary,
                });
            }
        }
        // New contents come from the guest: a secret a command wrote to a file is redacted.
        let redactor = self.redactor(&r.id)?;
        if !redactor.is_empty() {
            patch_text = redactor.redact_str(&patch_text);
            for e in &mut entries {
                e.path = redactor.redact_str(&e.path);
            }
        }
        let omitted = changes.len().saturating_sub(MAX_ENTRIES);
        let hint = (omitted > 0 || patch_truncated).then(|| {
            "the diff is capped: diff one file or directory at a time (path), read files, or export".to_string()
        });
        Ok(DiffResult {
            workspace_id: r.id,
            changed: !changes.is_empty(),
            summary,
            entries,
            entries_omitted: (omitted > 0).then_some(omitted),
            patch: patch_text,
            patch_truncated,
            hint,
        })
    }
}

/// Reads the files a diff's patch needs in batches, in the order the patch asks for them: a
/// batch holds the next files up to `bytes` (by their listed sizes) or 2,000 files.
struct BatchReader<'a> {
    need: &'a [String],
    next: usize,
    got: HashMap<String, Option<Vec<u8>>>,
    bytes: u64,
}

impl BatchReader<'_> {
    /// `path`'s bytes (at most [`MAX_TEXT_FILE`]), or None if it could not be read.
    fn get(&mut self, c: &mut crate::vm::Client, path: &str, sizes: &BTreeMap<&str, u64>) -> Result<Option<Vec<u8>>> {
        if let Some(d) = self.got.remove(path) {
            return Ok(d);
        }
        // The patch asks in `need`'s order; anything else is read on its own.
        if self.need.get(self.next).is_none_or(|p| p != path) {
            return Ok(c.read_file(&format!("/workspace/{path}"), MAX_TEXT_FILE, false).ok().map(|d| d.content));
        }
        let (mut n, mut total) = (0, 0u64);
        while self.next + n < self.need.len() && n < 2000 && (n == 0 || total < self.bytes) {
            total += sizes.get(self.need[self.next + n].as_str()).copied().unwrap_or(0);
            n += 1;
        }
        let batch = &self.need[self.next..self.next + n];
        self.next += n;
        let paths: Vec<String> = batch.iter().map(|p| format!("/workspace/{p}")).collect();
        let data = c.read_files(&paths, MAX_TEXT_FILE, self.bytes)?;
        self.got.extend(batch.iter().cloned().zip(data));
        Ok(self.got.remove(path).flatten())
    }
}

fn read_from_tar(path: &std::path::Path, wanted: &HashSet<String>) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    if wanted.is_empty() || !path.exists() {
        return Ok(out);
    }
    let mut ar = tar::Archive::new(std::fs::File::open(path).ctx("opening baseline archive")?);
    for e in ar.entries().ctx("reading baseline archive")? {
        let mut e = e.ctx("reading baseline archive")?;
        let p = e.path().ctx("reading baseline archive")?.display().to_string();
        let p = p.trim_start_matches("./").to_string();
        if wanted.contains(&p) {
            let mut b = Vec::new();
            e.read_to_end(&mut b).ctx("reading baseline archive")?;
            out.insert(p, b);
        }
    }
    Ok(out)
}
