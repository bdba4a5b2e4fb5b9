//! The seed model every step shares: limits and hints, the kinds of source, the manifest
//! entries and the summary a seed produces.

use serde::{Deserialize, Serialize};

/// Total bytes of file contents a seed may carry.
pub const MAX_SEED_BYTES: u64 = 2 << 30;
/// Files, directories and symlinks a seed may carry.
pub const MAX_SEED_ENTRIES: u64 = 200_000;

pub(super) const MAX_PATH_BYTES: usize = 4096;
pub(super) const MAX_NAME_BYTES: usize = 255;
/// Cap on one pax extended header (archives only); real ones are a few hundred bytes.
pub(super) const MAX_PAX_BYTES: u64 = 1 << 20;
/// Like the kernel's limit on nested symlinks: past it resolution fails (ELOOP) in the guest.
pub(super) const MAX_SYMLINK_HOPS: u32 = 40;
/// Permission bits and sticky bit. Owners become root in the guest, so setuid/setgid are
/// dropped rather than turned into setuid-root.
pub(super) const MODE_MASK: u32 = 0o1777;

pub(super) const FILE: &str = "file";
pub(super) const DIR: &str = "dir";
pub(super) const SYMLINK: &str = "symlink";

pub(super) const SUPPORTED: &str =
    "supported seed sources: a directory (a git checkout sends its tracked and untracked, \
     not ignored files plus .git), a .tar archive, or a .tar.gz / .tgz archive";
pub(super) const LIMIT_HINT: &str = "seed a smaller directory or a sub-directory; in a git checkout only tracked and \
     untracked-not-ignored files (plus .git) are sent, so ignoring build outputs helps";
pub(super) const SYMLINK_HINT: &str = "only relative symlinks that stay inside the seeded tree can be seeded; \
     remove or replace the link";
pub(super) const MEMBER_HINT: &str = "only directories, regular files, in-tree symlinks and hard links to earlier \
     members are accepted; repack with relative paths, e.g. `tar -C dir -cf seed.tar .`";
pub(super) const SPECIAL_HINT: &str = "only directories, regular files and in-tree symlinks can be seeded; \
     move the special file out of the tree";
pub(super) const CHANGED_HINT: &str = "retry once nothing is writing to the source, or seed from a tar archive of it";

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

#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) bytes: u64,
    pub(super) entries: u64,
}
