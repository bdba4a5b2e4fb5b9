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
mod model;
mod names;
mod output;
mod parse;
#[cfg(test)]
mod tests;

pub use model::{Action, Current, FileChange, PatchSummary, MAX_PATCH_BYTES};
pub use output::unified_diff;

use crate::error::{Error, Result};
use apply::{apply_replacement, apply_section, Reader};
use parse::{parse, Kind, Section};
use std::collections::HashMap;

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
