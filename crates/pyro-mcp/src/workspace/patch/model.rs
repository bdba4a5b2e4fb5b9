//! The patch model every step shares: limits, the result of applying (`FileChange`,
//! `Action`), what a file looks like before (`Current`), and mode helpers.

/// Largest patch text [`apply`] accepts: big enough for a real change touching a dozen
/// near-megabyte files; parsing and applying are linear in it.
pub const MAX_PATCH_BYTES: usize = 64 << 20; // 64 MiB
/// Most files one patch may touch.
pub const MAX_FILES: usize = 10_000;
/// Longest path accepted in a patch, in bytes.
pub(super) const MAX_PATH_BYTES: usize = 4096;
/// Longest symlink target (PATH_MAX minus the terminating NUL).
pub(super) const MAX_LINK_BYTES: usize = 4095;
/// Largest line number or line count a hunk header may give. Far above any file a workspace
/// holds; larger numbers are corrupt or hostile patches, refused before any work is done.
pub(super) const MAX_LINE_NUMBER: usize = 1_000_000_000;
/// Context lines around each change in [`unified_diff`] output.
pub(super) const CONTEXT: usize = 3;
/// Mode of new files when the patch does not give one.
pub(super) const DEFAULT_MODE: u32 = 0o644;
pub(super) const NO_NEWLINE: &str = "\\ No newline at end of file";

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

/// How much of a patch line an error message quotes (messages stay one short line).
pub(super) const SHOWN: usize = 120;

/// How many files of each kind a patch changed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
pub struct PatchSummary {
    /// Files the patch changed, of every kind.
    pub total: usize,
    /// Files it created.
    pub added: usize,
    /// Files whose content it changed.
    pub modified: usize,
    /// Files it deleted.
    pub deleted: usize,
    /// Files it renamed (with or without content changes).
    pub renamed: usize,
    /// Files whose mode alone it changed.
    pub mode_changed: usize,
}
