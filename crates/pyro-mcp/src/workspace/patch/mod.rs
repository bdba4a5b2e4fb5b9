//! Unified-diff patches for workspaces: parsing `git diff` and `diff -u` / `diff -ruN` output,
//! applying it all-or-nothing against in-memory file contents, and producing unified diffs.
//!
//! Pure: no I/O. [`apply`] asks the caller for current contents through a callback and returns
//! the full new state of every touched path as [`FileChange`]s, which the caller writes to the
//! guest as one batch; on any failure it returns an error and nothing to write. File contents are
//! bytes (CRLF and non-UTF-8 files work); only the patch text itself is `&str`.
//!
//! Symbolic links are handled the way git records them: mode 120000, and the "content" is the
//! link target (one line, no final newline). Binary patches are refused.
//!
//! Layout: `parse` (patch text -> sections and hunks), `names` (header file names and path
//! checks), `apply` (sections -> [`FileChange`]s), `output` ([`unified_diff`]).

mod apply;
mod names;
mod output;
mod parse;
#[cfg(test)]
mod tests;

pub use output::unified_diff;

use crate::error::{Error, Result};
use apply::{apply_replacement, apply_section, Reader};
use parse::{parse, Kind, Section};
use std::collections::HashMap;

/// Largest patch text [`apply`] accepts: big enough for a real change touching a dozen
/// near-megabyte files; parsing and applying are linear in it.
pub const MAX_PATCH_BYTES: usize = 64 << 20; // 64 MiB
/// Most files one patch may touch.
pub const MAX_FILES: usize = 10_000;
/// Longest path accepted in a patch, in bytes.
const MAX_PATH_BYTES: usize = 4096;
/// Longest symlink target (PATH_MAX minus the terminating NUL).
const MAX_LINK_BYTES: usize = 4095;
/// Largest line number or line count a hunk header may give. Far above any file a workspace
/// holds; larger numbers are corrupt or hostile patches, refused before any work is done.
const MAX_LINE_NUMBER: usize = 1_000_000_000;
/// Context lines around each change in [`unified_diff`] output.
const CONTEXT: usize = 3;
/// Mode of new files when the patch does not give one.
const DEFAULT_MODE: u32 = 0o644;
const NO_NEWLINE: &str = "\\ No newline at end of file";

/// True when `mode` (as in `stat`'s `st_mode`, or git's 120000) is a symbolic link's.
pub fn is_symlink_mode(mode: u32) -> bool {
    mode & 0o170000 == 0o120000
}

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
    /// New full content: None for Deleted and for ModeChanged (content unchanged). For a
    /// symbolic link, its target bytes (no trailing newline).
    pub content: Option<Vec<u8>>,
    /// Permission bits to set (e.g. 0o755): when the patch sets a mode, for new files
    /// (default 0o644) and for renames (the source's mode unless the patch changes it).
    /// Always None for symbolic links (their permission bits mean nothing).
    pub mode: Option<u32>,
    /// The path is (after the change) a symbolic link whose target is `content`; for Deleted,
    /// the path being removed is a link.
    pub symlink: bool,
    /// The path turns from a regular file into a symbolic link or back (git prints this as a
    /// deletion and a creation of the path; here it is one Modified change). The caller must
    /// remove what is there before creating the new one, never write through an old link.
    pub type_changed: bool,
    pub hunks: usize,
    pub additions: usize,
    pub deletions: usize,
}

/// The current state of a path, as the caller's `read` callback reports it.
#[derive(Debug, Clone)]
pub struct Current {
    /// File content, or the link target when `mode` is a symlink's.
    pub content: Vec<u8>,
    /// Permission bits (0o644), or a full `st_mode` (0o100644); `0o120000 | perms` (see
    /// [`is_symlink_mode`]) marks a symbolic link.
    pub mode: u32,
}

/// Parse the whole patch first (validating paths and structure), then apply every hunk in memory
/// against the current files obtained through `read` (None = file does not exist). Any failure
/// returns an Error naming the file and the hunk (e.g. "hunk 2 of src/lib.rs does not apply at line 40")
/// and nothing is returned to write.
pub fn apply(patch: &str, read: &mut dyn FnMut(&str) -> Result<Option<Current>>) -> Result<Vec<FileChange>> {
    if patch.len() > MAX_PATCH_BYTES {
        return Err(Error::limit(format!(
            "patch is {} bytes, more than the limit of {MAX_PATCH_BYTES} bytes (64 MiB)",
            patch.len()
        ))
        .hint("split the change into several smaller patches"));
    }
    let sections = parse(patch)?;
    let read: &mut Reader = read;
    units(&sections)?
        .into_iter()
        .map(|u| match u {
            Unit::One(s) => apply_section(s, read),
            Unit::Replace(del, add) => apply_replacement(del, add, read),
        })
        .collect()
}

/// What is applied as one [`FileChange`].
enum Unit<'s, 'a> {
    One(&'s Section<'a>),
    /// A deletion then a creation of the same path: git's way of printing a type change.
    Replace(&'s Section<'a>, &'s Section<'a>),
}

/// Group sections into units, refusing a path named twice in any other way (its changes would
/// depend on the order the caller writes them in).
fn units<'s, 'a>(sections: &'s [Section<'a>]) -> Result<Vec<Unit<'s, 'a>>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out: Vec<Unit> = Vec::with_capacity(sections.len());
    for s in sections {
        if matches!(s.kind, Kind::Add) {
            if let Some(&k) = seen.get(s.path.as_str()) {
                if let Some(unit @ Unit::One(Section { kind: Kind::Delete, .. })) = out.get_mut(k) {
                    if let Unit::One(del) = *unit {
                        *unit = Unit::Replace(del, s);
                        continue;
                    }
                }
            }
        }
        let source = match &s.kind {
            Kind::Rename(from) => Some(from),
            _ => None,
        };
        for p in std::iter::once(&s.path).chain(source) {
            if seen.insert(p.as_str(), out.len()).is_some() {
                return Err(Error::invalid(format!("{p} appears more than once in the patch"))
                    .hint("give each file a single section: combine its changes into one diff"));
            }
        }
        out.push(Unit::One(s));
    }
    Ok(out)
}
