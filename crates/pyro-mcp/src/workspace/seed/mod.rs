//! Workspace seeding, host side: turns a host path chosen by a user or a chat model (a
//! directory, a git checkout, a `.tar` or a `.tar.gz`) into a validated, bounded, normalized tar
//! stream to unpack into the guest's /workspace (or a sub-directory), plus the manifest of what
//! it contains (the baseline for later diffs).
//!
//! Everything is checked before the first byte is written: a validation pass walks the
//! directory (or reads the archive) and computes the manifest, sha256 of every file included;
//! a second pass emits the tar. Files are streamed, never held in memory. A source that changes
//! between the passes fails with a `conflict` error (the caller must discard what was written).
//!
//! The emitted tar holds only directories, regular files and symlinks that stay inside the
//! tree, with relative paths, uid/gid 0, modes (minus setuid/setgid) and mtimes kept. It lists
//! all directories first (sorted, parents before children), then the files, then the symlinks.
//! Hard links in archives are accepted when they point to an earlier regular member, and are
//! emitted as independent copies of that member.

mod archive;
mod detect;
mod host;
mod pack;
mod plan;
#[cfg(test)]
mod tests;

use crate::error::Result;
use archive::{emit_archive, plan_archive};
#[cfg(test)]
use detect::detect;
use host::{emit_host, plan_host};
use serde::Deserialize;
use serde::Serialize;
use std::io::Write;
use std::path::Path;

/// Total bytes of file contents a seed may carry.
pub const MAX_SEED_BYTES: u64 = 2 << 30;
/// Files, directories and symlinks a seed may carry.
pub const MAX_SEED_ENTRIES: u64 = 200_000;

const MAX_PATH_BYTES: usize = 4096;
const MAX_NAME_BYTES: usize = 255;
/// Cap on one pax extended header (archives only); real ones are a few hundred bytes.
const MAX_PAX_BYTES: u64 = 1 << 20;
/// Like the kernel's limit on nested symlinks: past it resolution fails (ELOOP) in the guest.
const MAX_SYMLINK_HOPS: u32 = 40;
/// Permission bits and sticky bit. Owners become root in the guest, so setuid/setgid are
/// dropped rather than turned into setuid-root.
const MODE_MASK: u32 = 0o1777;

const FILE: &str = "file";
const DIR: &str = "dir";
const SYMLINK: &str = "symlink";

const SUPPORTED: &str = "supported seed sources: a directory (a git checkout sends its tracked and untracked, \
     not ignored files plus .git), a .tar archive, or a .tar.gz / .tgz archive";
const LIMIT_HINT: &str = "seed a smaller directory or a sub-directory; in a git checkout only tracked and \
     untracked-not-ignored files (plus .git) are sent, so ignoring build outputs helps";
const SYMLINK_HINT: &str = "only relative symlinks that stay inside the seeded tree can be seeded; \
     remove or replace the link";
const MEMBER_HINT: &str = "only directories, regular files, in-tree symlinks and hard links to earlier \
     members are accepted; repack with relative paths, e.g. `tar -C dir -cf seed.tar .`";
const SPECIAL_HINT: &str = "only directories, regular files and in-tree symlinks can be seeded; \
     move the special file out of the tree";
const CHANGED_HINT: &str = "retry once nothing is writing to the source, or seed from a tar archive of it";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Directory,
    GitCheckout,
    Tar,
    TarGz,
}

/// One entry of a seed (and of the diff baseline).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Relative, '/'-separated, no leading "/" ("src/main.rs").
    pub path: String,
    /// "file", "dir" or "symlink".
    pub kind: String,
    /// Permission bits (plus sticky), no file type bits; 0o777 for symlinks.
    pub mode: u32,
    /// Content length for files, target length for symlinks, 0 for directories.
    pub size: u64,
    /// Hex sha256 of the contents (files only).
    pub sha256: Option<String>,
    /// Link target as stored (symlinks only).
    pub target: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeedInfo {
    pub kind: SourceKind,
    /// Canonical host path, plus a note in parentheses when a checkout was seeded as a plain directory.
    pub source: String,
    pub entries: u64,
    /// Total bytes of file contents.
    pub bytes: u64,
    /// Sorted by path, directories included (not the root itself).
    pub manifest: Vec<ManifestEntry>,
}

/// Inspect and validate the source fully (nothing is sent before everything was checked),
/// then write a normalized uncompressed tar (paths relative, no leading "/", uid/gid 0, mtimes kept, modes kept,
/// only regular files, dirs and in-tree symlinks) to `out`. Returns what was written.
#[cfg(test)]
pub fn build_seed_tar(source: &Path, out: &mut dyn Write) -> Result<SeedInfo> {
    build_seed_tar_in(source, false, out)
}

/// `build_seed_tar`; `exact`: the caller resolved and confined `source` already (the MCP
/// server), so a source that resolves elsewhere now (a symlink swapped in) is refused.
pub fn build_seed_tar_in(source: &Path, exact: bool, out: &mut dyn Write) -> Result<SeedInfo> {
    build_det(detect::detect_in(source, exact)?, out, Limits { bytes: MAX_SEED_BYTES, entries: MAX_SEED_ENTRIES })
}

/// What kind of seed source `source` is; errors as `build_seed_tar` would for a missing or
/// unsupported source.
#[cfg(test)]
pub fn detect_kind(source: &Path) -> Result<SourceKind> {
    Ok(detect(source)?.kind)
}

/// `detect_kind`, with `exact` as in `build_seed_tar_in`.
pub fn detect_kind_in(source: &Path, exact: bool) -> Result<SourceKind> {
    Ok(detect::detect_in(source, exact)?.kind)
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    bytes: u64,
    entries: u64,
}

#[cfg(test)]
fn build_limited(source: &Path, out: &mut dyn Write, limits: Limits) -> Result<SeedInfo> {
    build_det(detect(source)?, out, limits)
}

fn build_det(det: detect::Detected, out: &mut dyn Write, limits: Limits) -> Result<SeedInfo> {
    let plan = match det.kind {
        SourceKind::Directory | SourceKind::GitCheckout => {
            let plan = plan_host(&det, limits)?;
            emit_host(&plan, out)?;
            plan
        }
        SourceKind::Tar | SourceKind::TarGz => {
            let plan = plan_archive(&det, limits)?;
            emit_archive(&plan, &det, out)?;
            plan
        }
    };
    Ok(plan.into_info(&det))
}
