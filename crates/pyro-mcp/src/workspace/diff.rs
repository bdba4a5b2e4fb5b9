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
/// Most lines `diff_listing` and `diff_patch` return (a reviewer's page virtualises them).
pub const MAX_LISTING: usize = 100_000;
const MAX_TEXT_FILE: u64 = 256 * 1024;
/// Most entries a workspace may have for `diff` (and the summary's live diff).
pub const MAX_MANIFEST_ENTRIES: u32 = 500_000;

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
    /// Set when this entry is a directory that stands for everything below it (all added or
    /// all deleted, more than 20 entries: a vendored or generated tree): how many files
    /// (everything but directories) it holds. Diff its path to list them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// With `files`: the bytes of those files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// A directory whose entries all appeared (or all went) is one entry when it holds more than
/// this many: `deleted node_modules/lodash/ (1,053 files, 1.4 MB)` instead of a thousand
/// lines pushing the real edits out of view. A small new directory (a few new sources) is
/// listed in full, its files in the patch.
const COLLAPSE_OVER: usize = 20;

/// A change as the diff shows it: one path, or (`files` set) a collapsed directory.
#[derive(Debug, Clone, PartialEq)]
struct Line {
    path: String,
    status: &'static str,
    kind: String,
    /// (files, bytes) of a collapsed directory.
    collapsed: Option<(u64, u64)>,
}

/// Group `changes` (sorted by path, as `compare` returns them) for display: directories all
/// added or all deleted with more than [`COLLAPSE_OVER`] entries below them collapse into one
/// line (never `root`, the path asked for); then edits (modified, type changed) come first,
/// then the collapsed trees, then single additions and deletions, each by path. `size`
/// gives a file's size (the current one for an added path, the baseline's for a deleted one).
fn group(changes: &[(String, &'static str, String)], root: &str, size: &dyn Fn(&str, &str) -> u64) -> Vec<Line> {
    // A directory's descendants are contiguous in path order, but not always right after it
    // (`a-b` sorts between `a` and `a/x`): find their range by search.
    let first_at_or_after = |key: &str| changes.partition_point(|(q, _, _)| q.as_str() < key);
    let mut consumed = vec![false; changes.len()];
    let mut lines = Vec::new();
    for (i, (p, st, kind)) in changes.iter().enumerate() {
        if consumed[i] {
            continue;
        }
        let mut collapsed = None;
        if (*st == "added" || *st == "deleted") && kind == "dir" && p != root {
            // '0' follows '/': the range is every path that starts with "p/".
            let (from, to) = (first_at_or_after(&format!("{p}/")), first_at_or_after(&format!("{p}0")));
            let below = &changes[from..to];
            if below.len() > COLLAPSE_OVER && below.iter().all(|(_, s2, _)| s2 == st) {
                let files = below.iter().filter(|(_, _, k)| k != "dir").count() as u64;
                let bytes = below.iter().filter(|(_, _, k)| k == "file").map(|(q, s2, _)| size(q, s2)).sum();
                collapsed = Some((files, bytes));
                consumed[from..to].iter_mut().for_each(|c| *c = true);
            }
        }
        lines.push(Line { path: p.clone(), status: st, kind: kind.clone(), collapsed });
    }
    // Edits, then whole trees (a few lines that say the most), then single additions and
    // deletions; stable, so by path within each group.
    lines.sort_by_key(|l| match (l.status, l.collapsed) {
        ("modified" | "type_changed", _) => 0,
        (_, Some(_)) => 1,
        _ => 2,
    });
    lines
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
    /// The changed paths: edits (modified, type changed) first, then directories added or
    /// deleted with all they hold (more than 20 entries) as one entry each with `files` and
    /// `bytes`, then single additions and deletions, each group by path (capped at 500; see
    /// `entries_omitted` and `next_cursor`).
    pub entries: Vec<DiffEntry>,
    /// Entries not listed (past the cap of 500, or before `cursor`); absent when all are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries_omitted: Option<usize>,
    /// Where the next page of entries starts (pass it as `cursor`); absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<usize>,
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
        self.diff_with(key, true, None, MAX_PATCH_TEXT, 0, MAX_ENTRIES)
    }

    /// `diff` of what is at or under `path` (a file or directory in the workspace), with the
    /// patch text capped at `max_patch` bytes (at most [`MAX_PATCH_TEXT`]): how a capped diff
    /// is read piece by piece.
    pub fn diff_path(&mut self, key: &str, path: Option<&str>, max_patch: usize) -> Result<DiffResult> {
        self.diff_with(key, true, path, max_patch.min(MAX_PATCH_TEXT), 0, MAX_ENTRIES)
    }

    /// `diff_path` from entry `cursor` on (a previous result's `next_cursor`): the next page
    /// of a diff with more than 500 entries, its patch covering that page's files.
    pub fn diff_page(&mut self, key: &str, path: Option<&str>, max_patch: usize, cursor: usize) -> Result<DiffResult> {
        self.diff_with(key, true, path, max_patch.min(MAX_PATCH_TEXT), cursor, MAX_ENTRIES)
    }

    /// Every changed path at or under `path`, grouped as `diff` groups them, without a patch
    /// (up to [`MAX_LISTING`] lines): one manifest for a reviewer's file tree, where `diff`
    /// would take a page per 500 entries. A file's hunks come from `diff_path` on it.
    pub fn diff_listing(&mut self, key: &str, path: Option<&str>) -> Result<DiffResult> {
        self.diff_with(key, false, path, 0, 0, MAX_LISTING)
    }

    /// `diff` with every text change in its patch, up to `max_patch` bytes (a download).
    pub fn diff_patch(&mut self, key: &str, max_patch: usize) -> Result<DiffResult> {
        self.diff_with(key, true, None, max_patch, 0, MAX_LISTING)
    }

    /// `diff`; without `with_patch` only the manifests are compared (no file contents are
    /// read): what the summary needs, fast on big trees. `page` entries from `cursor` on.
    pub(crate) fn diff_with(
        &mut self,
        key: &str,
        with_patch: bool,
        path: Option<&str>,
        max_patch: usize,
        cursor: usize,
        page: usize,
    ) -> Result<DiffResult> {
        let page_size = page;
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
            full_scan: !self.host.diff_tracking,
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
        let mut summary = DiffSummary { total: changes.len(), ..Default::default() };
        for (_, st, _) in &changes {
            match *st {
                "added" => summary.added += 1,
                "modified" => summary.modified += 1,
                "deleted" => summary.deleted += 1,
                _ => summary.type_changed += 1,
            }
        }
        let base_sizes: BTreeMap<&str, u64> = base.iter().map(|e| (e.path.as_str(), e.size)).collect();
        let cur_sizes: BTreeMap<&str, u64> = cur.iter().map(|e| (e.path.as_str(), e.size)).collect();
        // Edits first, then additions and deletions, big new or removed trees as one line
        // each: after an install adds thousands of files, the capped entry list and patch
        // still show the real changes. `cursor` pages through the lines.
        let size = |p: &str, st: &str| {
            let sizes = if st == "deleted" { &base_sizes } else { &cur_sizes };
            sizes.get(p).copied().unwrap_or(0)
        };
        let lines = group(&changes, &under, &size);
        let page: Vec<&Line> = lines.iter().skip(cursor).take(page_size).collect();
        // Old contents for the text files we will patch, in one pass over the baseline archive.
        let wanted: HashSet<String> = page
            .iter()
            .filter(|l| {
                with_patch
                    && l.collapsed.is_none()
                    && l.kind == "file"
                    && l.status != "added"
                    && base_sizes.get(l.path.as_str()).is_some_and(|s| *s <= MAX_TEXT_FILE)
            })
            .map(|l| l.path.clone())
            .collect();
        let old = read_from_tar(&dir.join("baseline.tar"), &wanted)?;
        // New contents: the text-sized files the patch may show, read from the guest many at a
        // time (one round trip per file made a diff after 3,000 new files take seconds).
        let need: Vec<String> = page
            .iter()
            .filter(|l| {
                with_patch
                    && l.collapsed.is_none()
                    && l.kind == "file"
                    && l.status != "deleted"
                    && cur_sizes.get(l.path.as_str()).is_some_and(|s| *s <= MAX_TEXT_FILE)
            })
            .map(|l| l.path.clone())
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
        for line in &page {
            let (p, st, kind) = (&line.path, &line.status, &line.kind);
            let mut binary = false;
            // Once the patch text is capped, file contents are not fetched any more: the
            // entries still list every change, and reading thousands of files for a patch
            // nobody will see would make diff slow on big trees.
            if with_patch && line.collapsed.is_none() && (kind == "file" || *st == "deleted") && !patch_truncated {
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
            entries.push(DiffEntry {
                path: p.clone(),
                status: st.to_string(),
                artifact_type: kind.clone(),
                binary,
                files: line.collapsed.map(|(f, _)| f),
                bytes: line.collapsed.map(|(_, b)| b),
            });
        }
        // New contents come from the guest: a secret a command wrote to a file is redacted.
        let redactor = self.redactor(&r.id)?;
        if !redactor.is_empty() {
            patch_text = redactor.redact_str(&patch_text);
            for e in &mut entries {
                e.path = redactor.redact_str(&e.path);
            }
        }
        let shown_to = (cursor + page.len()).min(lines.len());
        let omitted = lines.len() - page.len();
        let next_cursor = (shown_to < lines.len()).then_some(shown_to);
        let collapsed = entries.iter().any(|e| e.files.is_some());
        let hint = if omitted > 0 || patch_truncated {
            Some(format!(
                "the diff is capped: {}diff one file or directory at a time (path), read files, or export",
                next_cursor.map(|c| format!("the next page starts at cursor {c}; ")).unwrap_or_default()
            ))
        } else if collapsed {
            Some("a directory with a file count stands for everything below it: diff its path to list them".into())
        } else {
            None
        };
        Ok(DiffResult {
            workspace_id: r.id,
            changed: !changes.is_empty(),
            summary,
            entries,
            entries_omitted: (omitted > 0).then_some(omitted),
            next_cursor,
            patch: patch_text,
            patch_truncated,
            hint,
        })
    }
}

/// Reads the files a diff's patch needs in batches, in the order the patch asks for them
/// (`need` is made by the same filter as the patch's loop): a batch holds the next files up
/// to `bytes` (by their listed sizes) or 2,000 files.
struct BatchReader<'a> {
    need: &'a [String],
    next: usize,
    got: HashMap<String, Option<Vec<u8>>>,
    bytes: u64,
}

impl BatchReader<'_> {
    /// `path`'s bytes (at most [`MAX_TEXT_FILE`]), or None if it could not be read.
    fn get(&mut self, c: &mut crate::vm::Client, path: &str, sizes: &BTreeMap<&str, u64>) -> Result<Option<Vec<u8>>> {
        if !self.got.contains_key(path) && self.next < self.need.len() {
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
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(list: &[(&str, &'static str, &str)]) -> Vec<(String, &'static str, String)> {
        let mut v: Vec<_> = list.iter().map(|(p, s, k)| (p.to_string(), *s, k.to_string())).collect();
        v.sort();
        v
    }

    #[test]
    fn big_added_and_deleted_trees_collapse_and_edits_come_first() {
        let mut list =
            vec![("package.json", "modified", "file"), ("src", "added", "dir"), ("src/a.rs", "added", "file")];
        let names: Vec<String> = (0..30).map(|i| format!("node_modules/lodash/f{i:02}.js")).collect();
        list.push(("node_modules/lodash", "deleted", "dir"));
        list.push(("node_modules/lodash/sub", "deleted", "dir"));
        for n in &names {
            list.push((n.as_str(), "deleted", "file"));
        }
        list.push(("node_modules/lodash-es.txt", "added", "file"));
        list.push(("zz", "type_changed", "dir"));
        let changes = ch(&list);
        let lines = group(&changes, "", &|_, _| 10);
        type Shown<'a> = (String, &'a str, Option<(u64, u64)>);
        let shown: Vec<Shown> = lines.iter().map(|l| (l.path.clone(), l.status, l.collapsed)).collect();
        assert_eq!(
            shown,
            vec![
                ("package.json".to_string(), "modified", None),
                ("zz".to_string(), "type_changed", None),
                ("node_modules/lodash".to_string(), "deleted", Some((30, 300))),
                ("node_modules/lodash-es.txt".to_string(), "added", None),
                ("src".to_string(), "added", None),
                ("src/a.rs".to_string(), "added", None),
            ]
        );
        // Asked for by its path, the tree is listed (its own entries may collapse again).
        let under: Vec<_> = changes
            .iter()
            .filter(|(p, _, _)| p.starts_with("node_modules/lodash/") || p == "node_modules/lodash")
            .cloned()
            .collect();
        let lines = group(&under, "node_modules/lodash", &|_, _| 10);
        assert!(lines.iter().all(|l| l.collapsed.is_none()) && lines.len() == 32, "{lines:?}");
    }

    #[test]
    fn small_new_directories_stay_listed() {
        let mut list = vec![("gen", "added", "dir")];
        let names: Vec<String> = (0..COLLAPSE_OVER).map(|i| format!("gen/f{i}")).collect();
        for n in &names {
            list.push((n.as_str(), "added", "file"));
        }
        let changes = ch(&list);
        assert_eq!(group(&changes, "", &|_, _| 1).len(), COLLAPSE_OVER + 1);
    }
}
