//! Unified-diff patches for workspaces: parsing `git diff` and `diff -u` / `diff -ruN` output,
//! applying it all-or-nothing against in-memory file contents, and producing unified diffs.
//!
//! Pure: no I/O. [`apply`] asks the caller for current contents through a callback and returns
//! the full new state of every touched path as [`FileChange`]s, which the caller writes to the
//! guest as one batch; on any failure it returns an error and nothing to write. File contents are
//! bytes (CRLF and non-UTF-8 files work); only the patch text itself is `&str`.

mod apply;
mod output;
mod parse;
#[cfg(test)]
mod tests;

pub use output::unified_diff;

use crate::error::{Error, Result};
use apply::apply_section;
use parse::{parse, Kind};
use std::collections::HashSet;

/// Largest patch text [`apply`] accepts.
pub const MAX_PATCH_BYTES: usize = 1 << 20; // 1 MiB
/// Most files one patch may touch.
pub const MAX_FILES: usize = 1000;
/// Longest path accepted in a patch, in bytes.
const MAX_PATH_BYTES: usize = 4096;
/// Context lines around each change in [`unified_diff`] output.
const CONTEXT: usize = 3;
/// Mode of new files when the patch does not give one.
const DEFAULT_MODE: u32 = 0o644;
const NO_NEWLINE: &str = "\\ No newline at end of file";

/// What a patch does to one path.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Added,
    Modified,
    Deleted,
    Renamed,
    ModeChanged,
}

/// What applying the patch does to one path (the caller writes these to the guest as one batch).
#[derive(Debug, Clone)]
pub struct FileChange {
    /// Workspace-relative, normalized path, e.g. "src/main.rs" (the new path for renames).
    pub path: String,
    pub action: Action,
    /// The path a rename moves away from (the caller removes it).
    pub old_path: Option<String>,
    /// New full content: None for Deleted and for ModeChanged (content unchanged).
    pub content: Option<Vec<u8>>,
    /// Permission bits to set (e.g. 0o755): when the patch sets a mode, for new files
    /// (default 0o644) and for renames (the source's mode unless the patch changes it).
    pub mode: Option<u32>,
    pub hunks: usize,
    pub additions: usize,
    pub deletions: usize,
}

/// The current state of a file, as the caller's `read` callback reports it.
#[derive(Debug, Clone)]
pub struct Current {
    pub content: Vec<u8>,
    pub mode: u32,
}

/// Parse the whole patch first (validating paths and structure), then apply every hunk in memory
/// against the current files obtained through `read` (None = file does not exist). Any failure
/// returns an Error naming the file and the hunk (e.g. "hunk 2 of src/lib.rs does not apply at line 40")
/// and nothing is returned to write.
pub fn apply(patch: &str, read: &mut dyn FnMut(&str) -> Result<Option<Current>>) -> Result<Vec<FileChange>> {
    if patch.len() > MAX_PATCH_BYTES {
        return Err(Error::limit(format!(
            "patch is {} bytes, more than the limit of {MAX_PATCH_BYTES} bytes (1 MiB)",
            patch.len()
        ))
        .hint("split the change into several smaller patches"));
    }
    let sections = parse(patch)?;
    let mut seen = HashSet::new();
    for s in &sections {
        let source = match &s.kind {
            Kind::Rename(from) => Some(from),
            _ => None,
        };
        for p in std::iter::once(&s.path).chain(source) {
            if !seen.insert(p.as_str()) {
                return Err(Error::invalid(format!("{p} appears more than once in the patch"))
                    .hint("give each file a single section: combine its changes into one diff"));
            }
        }
    }
    sections.iter().map(|s| apply_section(s, read)).collect()
}
