//! Workspace file operations in the guest: list, read, batch write/symlink/delete/chmod,
//! manifests (for diffs) and tar export. Every path must resolve inside /workspace: the host
//! sends normalized absolute paths, and here symlinks are resolved and checked too, so a link
//! pointing outside the workspace cannot be read through or written through.
//!
//! Listings walk iteratively (a deep tree cannot overflow the stack) and hand each entry to a
//! callback that streams it out, so a workspace of any size never sits in one message.

use pyro_proto::{FsEntry, FsOp};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const ROOT: &str = "/workspace";
/// Largest read the host may ask for (patching and diffing big files).
pub const MAX_READ: u64 = 64 << 20;
/// Most entries one listing or manifest walks.
const MAX_LIST: u32 = 2_000_000;
/// Most content bytes one batch may carry.
pub const MAX_BATCH_BYTES: u64 = 1 << 30;
/// Longest symlink target (PATH_MAX less the NUL).
const MAX_LINK_TARGET: usize = 4095;
const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;

pub type FsResult<T> = Result<T, (String, String)>;

pub fn invalid(m: impl Into<String>) -> (String, String) {
    ("invalid_argument".into(), m.into())
}
pub fn not_found(m: impl Into<String>) -> (String, String) {
    ("not_found".into(), m.into())
}
pub fn internal(m: impl Into<String>) -> (String, String) {
    ("internal".into(), m.into())
}

/// Where `/workspace` is for this process: itself in the guest; a temp dir in unit tests.
#[cfg(not(test))]
fn root_dir() -> PathBuf {
    PathBuf::from(ROOT)
}

#[cfg(test)]
thread_local! {
    pub static TEST_ROOT: std::cell::RefCell<PathBuf> = std::cell::RefCell::new(PathBuf::from(ROOT));
}

#[cfg(test)]
fn root_dir() -> PathBuf {
    TEST_ROOT.with(|r| r.borrow().clone())
}

/// The host's `/workspace/...` path mapped onto the root, checked lexically.
fn lexical(path: &str) -> FsResult<PathBuf> {
    let Some(rest) = path.strip_prefix(ROOT) else {
        return Err(invalid(format!("{path} is outside /workspace")));
    };
    if !(rest.is_empty() || rest.starts_with('/')) || path.contains('\0') {
        return Err(invalid(format!("{path} is outside /workspace")));
    }
    let rel = Path::new(rest.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(invalid(format!("{path} contains . or .. components")));
    }
    Ok(root_dir().join(rel))
}

/// Resolve `path`, following symlinks, and check the result stays inside /workspace. The path
/// may not exist yet: the existing prefix is resolved and the rest appended.
pub fn resolve(path: &str) -> FsResult<PathBuf> {
    let p = lexical(path)?;
    let root = std::fs::canonicalize(root_dir()).map_err(|e| internal(format!("/workspace: {e}")))?;
    let mut existing = p.clone();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(&existing).is_err() {
        rest.push(existing.file_name().map(|n| n.to_owned()).unwrap_or_default());
        if !existing.pop() {
            break;
        }
    }
    let mut real = std::fs::canonicalize(&existing)
        .map_err(|e| invalid(format!("{path} cannot be resolved (a dangling or looping symlink?): {e}")))?;
    if !real.starts_with(&root) {
        return Err(invalid(format!("{path} resolves outside /workspace (through a symlink)")));
    }
    for c in rest.iter().rev() {
        real.push(c);
    }
    Ok(real)
}

/// Resolve the parent of `path` (following links) but not the final component itself.
pub fn resolve_parent(path: &str) -> FsResult<PathBuf> {
    let p = lexical(path)?;
    if p == root_dir() {
        return Err(invalid("refusing to operate on /workspace itself"));
    }
    let name = p.file_name().ok_or_else(|| invalid(format!("{path} has no file name")))?.to_owned();
    let parent = path.rsplit_once('/').map(|(a, _)| a).unwrap_or(ROOT);
    let parent = resolve(parent)?;
    Ok(parent.join(name))
}

fn rel(p: &Path) -> String {
    let root = root_dir();
    p.strip_prefix(&root).map(|r| r.display().to_string()).unwrap_or_else(|_| p.display().to_string())
}

fn entry(path: &Path, meta: &std::fs::Metadata, hash: bool) -> FsEntry {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        "file"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else {
        "other"
    };
    let target = ft.is_symlink().then(|| std::fs::read_link(path).map(|t| t.display().to_string()).unwrap_or_default());
    let sha256 = (hash && ft.is_file()).then(|| sha256_file(path).unwrap_or_default());
    FsEntry { path: rel(path), kind: kind.into(), mode: meta.mode() & 0o7777, size: meta.size(), target, sha256 }
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn sorted_children(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut names: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
    names.sort();
    names
}

/// Walk below `dir` (not following symlinks) in sorted depth-first order, calling `f` for at
/// most `max` entries. Returns whether the walk stopped at `max`.
fn walk(
    dir: &Path,
    recursive: bool,
    max: u64,
    f: &mut dyn FnMut(&Path, &std::fs::Metadata) -> FsResult<()>,
) -> FsResult<bool> {
    let mut stack = vec![sorted_children(dir).into_iter()];
    let mut count = 0u64;
    while let Some(top) = stack.last_mut() {
        let Some(p) = top.next() else {
            stack.pop();
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if count >= max {
            return Ok(true);
        }
        f(&p, &meta)?;
        count += 1;
        if recursive && meta.is_dir() {
            stack.push(sorted_children(&p).into_iter());
        }
    }
    Ok(false)
}

/// List `path` (its entries, or the entry itself if it is not a directory), handing each to
/// `emit`. Returns (entries emitted, truncated at `max_entries`).
pub fn list(
    path: &str,
    recursive: bool,
    max_entries: u32,
    hash: bool,
    emit: &mut dyn FnMut(FsEntry) -> FsResult<()>,
) -> FsResult<(u64, bool)> {
    let p = resolve(path)?;
    let meta = std::fs::symlink_metadata(&p).map_err(|_| not_found(format!("{path} does not exist")))?;
    let max = max_entries.clamp(1, MAX_LIST) as u64;
    if !meta.is_dir() {
        emit(entry(&p, &meta, hash))?;
        return Ok((1, false));
    }
    let mut count = 0u64;
    let truncated = walk(&p, recursive, max, &mut |p, m| {
        count += 1;
        emit(entry(p, m, hash))
    })?;
    Ok((count, truncated))
}

pub struct ReadResult {
    pub data: Vec<u8>,
    pub size: u64,
    pub truncated: bool,
    pub binary: bool,
    pub mode: u32,
}

/// Read a regular file (following links inside /workspace), or with `nofollow` a symlink's
/// target (as content, mode `0o120000 | perms`).
pub fn read(path: &str, max_bytes: u64, nofollow: bool) -> FsResult<ReadResult> {
    if nofollow {
        let p = resolve_parent(path)?;
        let meta = std::fs::symlink_metadata(&p).map_err(|_| not_found(format!("{path} does not exist")))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&p).map_err(|e| internal(format!("reading link {path}: {e}")))?;
            let data = target.into_os_string().into_encoded_bytes();
            return Ok(ReadResult {
                size: data.len() as u64,
                data,
                truncated: false,
                binary: false,
                mode: S_IFLNK | (meta.mode() & 0o7777),
            });
        }
    }
    let p = resolve(path)?;
    let meta = std::fs::metadata(&p).map_err(|_| not_found(format!("{path} does not exist")))?;
    if !meta.is_file() {
        return Err(invalid(format!("{path} is not a regular file")));
    }
    let cap = max_bytes.clamp(1, MAX_READ);
    let mut data = Vec::new();
    std::fs::File::open(&p)
        .and_then(|f| f.take(cap).read_to_end(&mut data))
        .map_err(|e| internal(format!("reading {path}: {e}")))?;
    let truncated = meta.size() > data.len() as u64;
    let type_bits = if nofollow { S_IFREG } else { 0 };
    Ok(ReadResult {
        binary: looks_binary(&data, truncated),
        data,
        size: meta.size(),
        truncated,
        mode: type_bits | (meta.mode() & 0o7777),
    })
}

/// NUL bytes, or invalid UTF-8 (other than a sequence cut at the truncation point).
fn looks_binary(data: &[u8], truncated: bool) -> bool {
    if data.iter().take(8192).any(|&b| b == 0) {
        return true;
    }
    match std::str::from_utf8(data) {
        Ok(_) => false,
        Err(e) => !(truncated && e.error_len().is_none()),
    }
}

/// A unique staging name next to `target`, so a planted file or link cannot be written through.
fn staging_name(target: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let name =
        target.file_name().map(|n| n.to_string_lossy().chars().take(100).collect::<String>()).unwrap_or_default();
    let tag = format!("{:x}{:x}", nanos as u64 ^ std::process::id() as u64, SEQ.fetch_add(1, Ordering::Relaxed));
    target.with_file_name(format!(".{name}.{tag}.pyro-tmp"))
}

/// All-or-nothing: every op is validated first, then writes and links are staged as temp
/// entries (contents read from `data`, the batch's stream, in op order); only then are the
/// temps renamed into place and deletes/chmods done.
pub fn batch(ops: &[FsOp], data: &mut dyn Read) -> FsResult<(u64, u64)> {
    let mut resolved = Vec::with_capacity(ops.len());
    let mut total = 0u64;
    for op in ops {
        match op {
            FsOp::Write { path, len, .. } => {
                let target = resolve_parent(path)?;
                if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                    return Err(invalid(format!("{path} is a directory")));
                }
                total = total.checked_add(*len).filter(|t| *t <= MAX_BATCH_BYTES).ok_or_else(|| {
                    ("limit_exceeded".to_string(), format!("a batch carries at most {MAX_BATCH_BYTES} bytes"))
                })?;
                resolved.push(target);
            }
            FsOp::Symlink { path, target: link } => {
                let target = resolve_parent(path)?;
                if std::fs::symlink_metadata(&target).is_ok_and(|m| m.is_dir()) {
                    return Err(invalid(format!("{path} is a directory")));
                }
                if link.is_empty() || link.len() > MAX_LINK_TARGET || link.contains('\0') {
                    return Err(invalid(format!("symlink target for {path} is empty, too long or contains NUL")));
                }
                resolved.push(target);
            }
            FsOp::Delete { path } => {
                let target = resolve_parent(path)?;
                let meta =
                    std::fs::symlink_metadata(&target).map_err(|_| not_found(format!("{path} does not exist")))?;
                if meta.is_dir() {
                    return Err(invalid(format!("{path} is a directory; only files are deleted")));
                }
                resolved.push(target);
            }
            FsOp::Chmod { path, .. } => {
                let target = resolve(path)?;
                let written = ops.iter().any(|o| matches!(o, FsOp::Write { path: p, .. } if p == path));
                if !target.exists() && !written {
                    return Err(not_found(format!("{path} does not exist")));
                }
                resolved.push(target);
            }
        }
    }
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut created_dirs: Vec<PathBuf> = Vec::new();
    if let Err(e) = stage(ops, &resolved, data, &mut staged, &mut created_dirs) {
        for (tmp, _) in &staged {
            let _ = std::fs::remove_file(tmp);
        }
        for d in created_dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
        return Err(e);
    }
    // Commit.
    let mut written = 0u64;
    for (tmp, target) in &staged {
        std::fs::rename(tmp, target).map_err(|e| internal(format!("renaming into {}: {e}", rel(target))))?;
        written += 1;
    }
    let mut deleted = 0u64;
    for (op, target) in ops.iter().zip(&resolved) {
        match op {
            FsOp::Delete { path } => {
                std::fs::remove_file(target).map_err(|e| internal(format!("deleting {path}: {e}")))?;
                deleted += 1;
            }
            FsOp::Chmod { path, mode } => {
                std::fs::set_permissions(target, std::fs::Permissions::from_mode(*mode & 0o7777))
                    .map_err(|e| internal(format!("chmod {path}: {e}")))?;
            }
            FsOp::Write { .. } | FsOp::Symlink { .. } => {}
        }
    }
    // SAFETY: plain sync; the batch is durable when we reply.
    unsafe { libc::sync() };
    Ok((written, deleted))
}

/// Stage every write and symlink of a batch as a temp entry next to its target.
fn stage(
    ops: &[FsOp],
    resolved: &[PathBuf],
    data: &mut dyn Read,
    staged: &mut Vec<(PathBuf, PathBuf)>,
    created: &mut Vec<PathBuf>,
) -> FsResult<()> {
    for (op, target) in ops.iter().zip(resolved) {
        let path = match op {
            FsOp::Write { path, .. } | FsOp::Symlink { path, .. } => path,
            _ => continue,
        };
        let parent = target.parent().ok_or_else(|| invalid(format!("{path} has no parent")))?;
        if !parent.exists() {
            let mut missing = Vec::new();
            let mut p = parent.to_path_buf();
            while !p.exists() {
                missing.push(p.clone());
                if !p.pop() {
                    break;
                }
            }
            std::fs::create_dir_all(parent).map_err(|e| internal(format!("creating parents of {path}: {e}")))?;
            created.extend(missing.into_iter().rev());
        } else if !parent.is_dir() {
            return Err(invalid(format!("a parent of {path} is not a directory")));
        }
        let tmp = staging_name(target);
        match op {
            FsOp::Write { len, mode, .. } => {
                let keep = std::fs::symlink_metadata(target).ok().filter(|m| m.is_file()).map(|m| m.mode() & 0o7777);
                let mode = mode.or(keep).unwrap_or(0o644);
                // create_new: O_EXCL, so nothing planted at the temp name is followed.
                let mut f = std::fs::File::options()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .map_err(|e| internal(format!("writing {path}: {e}")))?;
                staged.push((tmp.clone(), target.clone()));
                let copied = std::io::copy(&mut data.take(*len), &mut f)
                    .map_err(|e| internal(format!("writing {path}: {e}")))?;
                if copied != *len {
                    return Err(invalid(format!("the batch stream ended before the contents of {path}")));
                }
                f.sync_data().map_err(|e| internal(format!("writing {path}: {e}")))?;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(|e| internal(format!("chmod {path}: {e}")))?;
            }
            FsOp::Symlink { target: link, .. } => {
                std::os::unix::fs::symlink(link, &tmp).map_err(|e| internal(format!("linking {path}: {e}")))?;
                staged.push((tmp, target.clone()));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Stream `path` (file or directory) as a tar archive whose members are named relative to
/// the parent of `path` (so exporting `/workspace/src` yields `src/...`).
pub fn tar_out(path: &str, out: &mut dyn Write) -> FsResult<(u64, u64)> {
    let p = resolve(path)?;
    let meta = std::fs::symlink_metadata(&p).map_err(|_| not_found(format!("{path} does not exist")))?;
    let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "workspace".into());
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let (mut entries, mut bytes) = (0u64, 0u64);
    let mut add = |b: &mut tar::Builder<&mut dyn Write>, full: &Path, name: &str| -> FsResult<()> {
        let m = std::fs::symlink_metadata(full).map_err(|e| internal(format!("{}: {e}", rel(full))))?;
        if !(m.is_file() || m.is_dir() || m.file_type().is_symlink()) {
            return Err(invalid(format!("{} is a special file; export refuses it", rel(full))));
        }
        let archived = if m.file_type().is_symlink() {
            // Link targets byte for byte (the tar crate would normalize them).
            let target = std::fs::read_link(full).map_err(|e| internal(format!("{}: {e}", rel(full))))?;
            let mut h = tar::Header::new_gnu();
            h.set_metadata(&m);
            pyro_proto::tarlink::append_symlink(b, &mut h, name, target.as_os_str().as_encoded_bytes())
        } else {
            b.append_path_with_name(full, name)
        };
        archived.map_err(|e| internal(format!("archiving {}: {e}", rel(full))))?;
        entries += 1;
        if m.is_file() {
            bytes += m.size();
        }
        Ok(())
    };
    add(&mut b, &p, &name)?;
    if meta.is_dir() {
        walk(&p, true, u64::MAX, &mut |full, _| {
            let inner = full.strip_prefix(&p).unwrap_or(full).display().to_string();
            add(&mut b, full, &format!("{name}/{inner}"))
        })?;
    }
    b.finish().map_err(|e| internal(format!("finishing archive: {e}")))?;
    Ok((entries, bytes))
}

const FIFREEZE: libc::c_ulong = 0xC004_5877;
const FITHAW: libc::c_ulong = 0xC004_5878;

/// Freeze (or thaw) the root file system so a disk snapshot taken now is consistent.
pub fn freeze(on: bool) -> FsResult<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: plain sync.
    unsafe { libc::sync() };
    let f = std::fs::File::open("/").map_err(|e| internal(format!("open /: {e}")))?;
    // SAFETY: FIFREEZE/FITHAW take an int argument (ignored) on an fd of the mount.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), if on { FIFREEZE } else { FITHAW }, 0) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        // Thawing a file system that is not frozen is not an error for us.
        if !on && e.raw_os_error() == Some(libc::EINVAL) {
            return Ok(());
        }
        return Err(internal(format!("{} failed: {e}", if on { "freeze" } else { "thaw" })));
    }
    Ok(())
}
