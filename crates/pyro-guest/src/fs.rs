//! Workspace file operations in the guest: list, read, batch write/delete/chmod, manifests
//! (for diffs) and tar export. Every path must resolve inside /workspace: the host sends
//! normalized absolute paths, and here symlinks are resolved and checked too, so a link
//! pointing outside the workspace cannot be read through or written through.

use pyro_proto::{FsEntry, FsOp};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const ROOT: &str = "/workspace";
const MAX_READ: u64 = 1 << 20;
const MAX_LIST: u32 = 50_000;

pub type FsResult<T> = Result<T, (String, String)>;

fn invalid(m: impl Into<String>) -> (String, String) {
    ("invalid_argument".into(), m.into())
}
fn not_found(m: impl Into<String>) -> (String, String) {
    ("not_found".into(), m.into())
}
fn internal(m: impl Into<String>) -> (String, String) {
    ("internal".into(), m.into())
}

fn lexical(path: &str) -> FsResult<PathBuf> {
    let p = Path::new(path);
    if !p.starts_with(ROOT) || path.contains('\0') {
        return Err(invalid(format!("{path} is outside /workspace")));
    }
    if p.components().any(|c| matches!(c, std::path::Component::ParentDir | std::path::Component::CurDir)) {
        return Err(invalid(format!("{path} contains . or .. components")));
    }
    Ok(p.to_path_buf())
}

/// Resolve `path`, following symlinks, and check the result stays inside /workspace. The path
/// may not exist yet: the existing prefix is resolved and the rest appended.
pub fn resolve(path: &str) -> FsResult<PathBuf> {
    let p = lexical(path)?;
    let root = std::fs::canonicalize(ROOT).map_err(|e| internal(format!("/workspace: {e}")))?;
    let mut existing = p.clone();
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(&existing).is_err() {
        rest.push(existing.file_name().map(|n| n.to_owned()).unwrap_or_default());
        if !existing.pop() {
            break;
        }
    }
    let mut real = std::fs::canonicalize(&existing).map_err(|e| internal(format!("{}: {e}", existing.display())))?;
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
    let name = p.file_name().ok_or_else(|| invalid(format!("{path} has no file name")))?.to_owned();
    if p == Path::new(ROOT) {
        return Err(invalid("refusing to operate on /workspace itself"));
    }
    let parent = resolve(&p.parent().unwrap().display().to_string())?;
    Ok(parent.join(name))
}

fn rel(p: &Path) -> String {
    p.strip_prefix(ROOT).map(|r| r.display().to_string()).unwrap_or_else(|_| p.display().to_string())
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

/// Walk `dir` (not following symlinks), sorted, calling `f` for each entry below it.
fn walk(dir: &Path, recursive: bool, max: u32, hash: bool, out: &mut Vec<FsEntry>) -> bool {
    let Ok(rd) = std::fs::read_dir(dir) else { return false };
    let mut names: Vec<_> = rd.flatten().map(|e| e.path()).collect();
    names.sort();
    for p in names {
        if out.len() as u32 >= max {
            return true;
        }
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        out.push(entry(&p, &meta, hash));
        if recursive && meta.is_dir() && walk(&p, true, max, hash, out) {
            return true;
        }
    }
    false
}

pub fn list(path: &str, recursive: bool, max_entries: u32, hash: bool) -> FsResult<(Vec<FsEntry>, bool)> {
    let p = resolve(path)?;
    let meta = std::fs::symlink_metadata(&p).map_err(|_| not_found(format!("{path} does not exist")))?;
    let max = max_entries.clamp(1, MAX_LIST);
    if !meta.is_dir() {
        return Ok((vec![entry(&p, &meta, hash)], false));
    }
    let mut out = Vec::new();
    let truncated = walk(&p, recursive, max, hash, &mut out);
    Ok((out, truncated))
}

pub struct ReadResult {
    pub data: Vec<u8>,
    pub size: u64,
    pub truncated: bool,
    pub binary: bool,
    pub mode: u32,
}

pub fn read(path: &str, max_bytes: u64) -> FsResult<ReadResult> {
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
    Ok(ReadResult {
        binary: looks_binary(&data, truncated),
        data,
        size: meta.size(),
        truncated,
        mode: meta.mode() & 0o7777,
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

/// All-or-nothing: everything is validated and staged as temp files first; only then are
/// the temps renamed into place and deletes/chmods done.
pub fn batch(ops: &[FsOp], payload: &[u8]) -> FsResult<(u64, u64)> {
    // Validate and resolve every op before touching anything.
    let mut resolved = Vec::new();
    let mut offset = 0u64;
    for op in ops {
        match op {
            FsOp::Write { path, len, .. } => {
                let target = resolve_parent(path)?;
                if target.is_dir() {
                    return Err(invalid(format!("{path} is a directory")));
                }
                if offset + len > payload.len() as u64 {
                    return Err(invalid("batch payload shorter than its writes"));
                }
                offset += len;
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
                if !target.exists() && !ops.iter().any(|o| matches!(o, FsOp::Write { path: p, .. } if p == path)) {
                    return Err(not_found(format!("{path} does not exist")));
                }
                resolved.push(target);
            }
        }
    }
    // Stage writes.
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut created_dirs: Vec<PathBuf> = Vec::new();
    let mut offset = 0usize;
    let stage =
        |staged: &mut Vec<(PathBuf, PathBuf)>, created: &mut Vec<PathBuf>, offset: &mut usize| -> FsResult<()> {
            for (op, target) in ops.iter().zip(&resolved) {
                let FsOp::Write { path, len, mode } = op else { continue };
                let data = &payload[*offset..*offset + *len as usize];
                *offset += *len as usize;
                let parent = target.parent().unwrap();
                if !parent.exists() {
                    let mut missing = Vec::new();
                    let mut p = parent.to_path_buf();
                    while !p.exists() {
                        missing.push(p.clone());
                        p.pop();
                    }
                    std::fs::create_dir_all(parent)
                        .map_err(|e| internal(format!("creating parents of {path}: {e}")))?;
                    created.extend(missing.into_iter().rev());
                } else if !parent.is_dir() {
                    return Err(invalid(format!("a parent of {path} is not a directory")));
                }
                let keep = std::fs::metadata(target).ok().filter(|m| m.is_file()).map(|m| m.mode() & 0o7777);
                let mode = mode.or(keep).unwrap_or(0o644);
                let tmp = parent.join(format!(".{}.pyro-tmp", target.file_name().unwrap().to_string_lossy()));
                let mut f = std::fs::File::create(&tmp).map_err(|e| internal(format!("writing {path}: {e}")))?;
                staged.push((tmp.clone(), target.clone()));
                f.write_all(data).and_then(|_| f.sync_data()).map_err(|e| internal(format!("writing {path}: {e}")))?;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
                    .map_err(|e| internal(format!("chmod {path}: {e}")))?;
            }
            Ok(())
        };
    if let Err(e) = stage(&mut staged, &mut created_dirs, &mut offset) {
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
        std::fs::rename(tmp, target).map_err(|e| internal(format!("renaming into {}: {e}", target.display())))?;
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
            FsOp::Write { .. } => {}
        }
    }
    // SAFETY: plain sync; the batch is durable when we reply.
    unsafe { libc::sync() };
    Ok((written, deleted))
}

/// Writer that cuts a byte stream into `Chunk` frames for one request id.
pub struct ChunkWriter<F: FnMut(&[u8]) -> std::io::Result<()>> {
    pub send: F,
    pub buf: Vec<u8>,
}

impl<F: FnMut(&[u8]) -> std::io::Result<()>> Write for ChunkWriter<F> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= pyro_proto::CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            (self.send)(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
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
        let m = std::fs::symlink_metadata(full).map_err(|e| internal(format!("{}: {e}", full.display())))?;
        if !(m.is_file() || m.is_dir() || m.file_type().is_symlink()) {
            return Err(invalid(format!("{} is a special file; export refuses it", rel(full))));
        }
        b.append_path_with_name(full, name).map_err(|e| internal(format!("archiving {}: {e}", rel(full))))?;
        entries += 1;
        if m.is_file() {
            bytes += m.size();
        }
        Ok(())
    };
    if meta.is_dir() {
        let mut all = Vec::new();
        walk(&p, true, u32::MAX, false, &mut all);
        add(&mut b, &p, &name)?;
        for e in all {
            let full = Path::new(ROOT).join(&e.path);
            let inner = full.strip_prefix(&p).unwrap_or(&full).display().to_string();
            add(&mut b, &full, &format!("{name}/{inner}"))?;
        }
    } else {
        add(&mut b, &p, &name)?;
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
