//! Path resolution confined to `/workspace`, done by the kernel.
//!
//! Every file operation the host asks for starts from a directory fd of `/workspace` opened
//! with `O_DIRECTORY | O_NOFOLLOW` (so `/workspace` itself must be a real directory, never a
//! link to `/`), and opens what it needs with `openat2(RESOLVE_BENEATH)`: a symlink, `..` or
//! absolute path that would leave the tree fails with `EXDEV` inside the kernel, at the moment
//! of the lookup. Checking a path first and using it afterwards (canonicalize, then open) left a
//! window in which guest root could swap a directory for a link; an fd has no such window.
//!
//! Links inside the tree are followed where the operation follows links (read, list, the
//! parents of a write); walks below a directory use `RESOLVE_NO_SYMLINKS` as well, so they
//! never step through a link that appears mid-walk. Absolute link targets are refused even
//! when they name a place inside `/workspace` (the kernel cannot tell, and neither should we).

use pyro_proto::WireError;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// The workspace every guest file operation stays beneath.
pub const ROOT: &str = "/workspace";

pub type FsResult<T> = Result<T, WireError>;

pub fn invalid(m: impl Into<String>) -> WireError {
    WireError::invalid(m)
}
pub fn not_found(m: impl Into<String>) -> WireError {
    WireError::not_found(m)
}
pub fn internal(m: impl Into<String>) -> WireError {
    WireError::internal(m)
}

/// Where `/workspace` is for this process: itself in the guest; a temp dir in unit tests.
#[cfg(not(test))]
pub fn root_dir() -> PathBuf {
    PathBuf::from(ROOT)
}

#[cfg(test)]
thread_local! {
    pub static TEST_ROOT: std::cell::RefCell<PathBuf> = std::cell::RefCell::new(PathBuf::from(ROOT));
}

#[cfg(test)]
pub fn root_dir() -> PathBuf {
    TEST_ROOT.with(|r| r.borrow().clone())
}

/// The host's `/workspace/...` path as a path relative to the workspace root, checked
/// lexically (only normal components; "" for the root itself).
pub fn relative(path: &str) -> FsResult<PathBuf> {
    let Some(rest) = path.strip_prefix(ROOT) else {
        return Err(invalid(format!("{path} is outside /workspace")));
    };
    if !(rest.is_empty() || rest.starts_with('/')) || path.contains('\0') {
        return Err(invalid(format!("{path} is outside /workspace")));
    }
    let rel = Path::new(rest.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(invalid(format!("{path} contains . or .. components")));
    }
    Ok(rel.components().collect())
}

/// The workspace root as a directory fd. Refuses a `/workspace` that is a symlink (or not a
/// directory): replacing it with a link to `/` must not widen what file operations reach.
pub fn root() -> FsResult<OwnedFd> {
    let dir = root_dir();
    rustix::fs::open(&dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| match e {
            rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR => {
                invalid("/workspace is not a real directory (a symlink?); file operations refuse it")
            }
            rustix::io::Errno::NOENT => not_found("/workspace does not exist (removed in the guest?)"),
            e => internal(format!("/workspace: {e}")),
        })
}

/// How a lookup may treat symlinks.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Follow links that stay below the starting directory.
    Follow,
    /// Refuse any link on the way, and do not follow a final one (with `O_PATH | O_NOFOLLOW`
    /// the link itself is opened).
    Never,
}

/// `openat2(dir, rel, flags, RESOLVE_BENEATH)`. An empty `rel` opens `dir` itself (as `.`).
pub fn open(dir: &OwnedFd, rel: &Path, flags: OFlags, links: Links) -> std::io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let mut resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
    if links == Links::Never {
        resolve |= ResolveFlags::NO_SYMLINKS;
    }
    // EAGAIN: a rename elsewhere raced the lookup (the kernel asks callers to retry).
    let mut tries = 0;
    loop {
        // openat2 refuses a mode without O_CREAT; nothing here creates through it.
        match rustix::fs::openat2(dir, rel, flags | OFlags::CLOEXEC, Mode::empty(), resolve) {
            Err(rustix::io::Errno::AGAIN) if tries < 16 => tries += 1,
            r => return r.map_err(std::io::Error::from),
        }
    }
}

/// Map a lookup error to the agent's error codes: escapes are `invalid_argument`.
pub fn lookup_error(path: &str, e: std::io::Error) -> pyro_proto::WireError {
    match e.raw_os_error() {
        Some(libc::EXDEV) | Some(libc::ELOOP) => {
            invalid(format!("{path} resolves outside /workspace (through a symlink or an absolute link)"))
        }
        Some(libc::ENOENT) => not_found(format!("{path} does not exist")),
        Some(libc::ENOTDIR) => invalid(format!("a parent of {path} is not a directory")),
        Some(libc::ENAMETOOLONG) => invalid(format!("{path} is too long")),
        _ => internal(format!("{path}: {e}")),
    }
}

/// The directory holding `rel` (links inside followed), opened for `*at` calls, and the final
/// name. `rel` must not be the root.
pub fn parent(root: &OwnedFd, path: &str, rel: &Path) -> FsResult<(OwnedFd, std::ffi::OsString)> {
    let name = rel.file_name().ok_or_else(|| invalid("refusing to operate on /workspace itself"))?.to_owned();
    let dir = rel.parent().unwrap_or(Path::new(""));
    let fd = open(root, dir, OFlags::RDONLY | OFlags::DIRECTORY, Links::Follow).map_err(|e| lookup_error(path, e))?;
    Ok((fd, name))
}

/// Like `parent`, but creates missing directories (mode 0755) one by one with `mkdirat`
/// below the deepest one that exists; each one created is added to `created` (relative
/// paths), so a failed batch can remove them again.
pub fn parent_create(
    root: &OwnedFd,
    path: &str,
    rel: &Path,
    created: &mut Vec<PathBuf>,
) -> FsResult<(OwnedFd, std::ffi::OsString)> {
    match parent(root, path, rel) {
        Err(e) if e.code == pyro_proto::ErrorCode::NotFound => {}
        r => return r,
    }
    let name = rel.file_name().ok_or_else(|| invalid("refusing to operate on /workspace itself"))?.to_owned();
    let dir = rel.parent().unwrap_or(Path::new(""));
    let mut cur = PathBuf::new();
    let mut fd =
        open(root, &cur, OFlags::RDONLY | OFlags::DIRECTORY, Links::Follow).map_err(|e| lookup_error(path, e))?;
    for c in dir.components() {
        cur.push(c);
        let next = match open(&fd, Path::new(c.as_os_str()), OFlags::RDONLY | OFlags::DIRECTORY, Links::Follow) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                rustix::fs::mkdirat(&fd, c.as_os_str(), Mode::from_raw_mode(0o755))
                    .map_err(|e| internal(format!("creating parents of {path}: {e}")))?;
                created.push(cur.clone());
                open(&fd, Path::new(c.as_os_str()), OFlags::RDONLY | OFlags::DIRECTORY, Links::Never)
                    .map_err(|e| lookup_error(path, e))?
            }
            Err(e) => return Err(lookup_error(path, e)),
        };
        fd = next;
    }
    // The path walked component by component must still be the same directory when looked
    // up from the root (a link met on the way must not have led outside the root).
    let (fd2, _) = parent(root, path, rel)?;
    let (a, b) = (rustix::fs::fstat(&fd), rustix::fs::fstat(&fd2));
    match (a, b) {
        (Ok(a), Ok(b)) if a.st_dev == b.st_dev && a.st_ino == b.st_ino => Ok((fd2, name)),
        _ => Err(invalid(format!("{path} resolves outside /workspace (its parents changed)"))),
    }
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)` as std metadata-like fields, or None if absent.
pub fn lstat_at(dir: &OwnedFd, name: &std::ffi::OsStr) -> std::io::Result<Option<rustix::fs::Stat>> {
    match rustix::fs::statat(dir, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => Ok(Some(s)),
        Err(rustix::io::Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn is_dir(st: &rustix::fs::Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn is_link(st: &rustix::fs::Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

pub fn is_file(st: &rustix::fs::Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// The sorted names in directory `fd` (without `.` and `..`).
pub fn names(fd: &OwnedFd) -> std::io::Result<Vec<std::ffi::OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut out = Vec::new();
    for e in rustix::fs::Dir::read_from(fd)? {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            out.push(std::ffi::OsStr::from_bytes(n).to_owned());
        }
    }
    out.sort();
    Ok(out)
}

/// A link's target, from an `O_PATH | O_NOFOLLOW` fd of the link itself.
pub fn link_target(link: &OwnedFd) -> std::io::Result<Vec<u8>> {
    Ok(rustix::fs::readlinkat(link, "", Vec::new())?.into_bytes())
}
