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
mod model;
mod pack;
mod plan;
#[cfg(test)]
mod tests;

use crate::error::Result;
use archive::{emit_archive, plan_archive};
#[cfg(test)]
use detect::detect;
use host::{emit_host, plan_host};
use model::Limits;
pub use model::{ManifestEntry, SeedInfo, SourceKind, MAX_SEED_BYTES, MAX_SEED_ENTRIES};
use std::io::Write;
use std::path::Path;

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
