//! Detection: what kind of source a host path is (directory, git checkout, .tar, .tar.gz),
//! and the git probe that decides whether a checkout's file list can be trusted.

use super::model::{SourceKind, SUPPORTED};
use crate::error::Error;
use crate::error::Result;
use std::ffi::OsStr;
use std::fs;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug)]
pub(super) struct Detected {
    pub(super) kind: SourceKind,
    pub(super) root: PathBuf,
    pub(super) label: String,
    /// Why a directory with `.git` is seeded as a plain directory.
    pub(super) note: Option<String>,
    /// An archive, opened once: every pass reads this descriptor (never the name again).
    pub(super) file: Option<Arc<File>>,
}

/// Resolve `source` once and open what it resolved to, checking on the opened descriptor:
/// `O_NOFOLLOW` refuses a symlink swapped in since, the descriptor's own path must still be
/// the resolved one, and its `fstat` decides directory or regular file (a FIFO or device is
/// refused without blocking). `exact`: `source` was resolved and confined by the caller (the
/// MCP server), so it must resolve to itself now.
#[cfg(test)]
pub(super) fn detect(source: &Path) -> Result<Detected> {
    detect_in(source, false)
}

pub(super) fn detect_in(source: &Path, exact: bool) -> Result<Detected> {
    let root = fs::canonicalize(source).map_err(|e| open_error(source, e))?;
    let label = root.display().to_string();
    let changed = || {
        Error::invalid(format!(
            "seed source {} changed while it was being opened (a symlink was swapped in)",
            source.display()
        ))
        .hint("seed from a path nothing else is changing")
    };
    if exact && root != source {
        return Err(changed());
    }
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&root)
        .map_err(|e| if e.raw_os_error() == Some(libc::ELOOP) { changed() } else { open_error(source, e) })?;
    if crate::hostfile::real_path(&f).is_some_and(|p| p != root) {
        return Err(changed());
    }
    let md = f.metadata().map_err(|e| open_error(source, e))?;
    if md.is_dir() {
        let (kind, note) = match probe_git(&root) {
            GitProbe::Toplevel => (SourceKind::GitCheckout, None),
            GitProbe::NotToplevel => (SourceKind::Directory, None),
            GitProbe::Unusable(why) => (SourceKind::Directory, Some(why)),
        };
        return Ok(Detected { kind, root, label, note, file: None });
    }
    if !md.is_file() {
        return Err(
            Error::invalid(format!("seed source {label} is neither a directory nor a regular file")).hint(SUPPORTED)
        );
    }
    let kind = archive_kind(&f, &root, &label)?;
    Ok(Detected { kind, root, label, note: None, file: Some(Arc::new(f)) })
}

pub(super) fn open_error(path: &Path, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound => Error::not_found(format!("seed source {} does not exist", path.display()))
            .hint("pass an existing directory or .tar / .tar.gz file on the host"),
        io::ErrorKind::PermissionDenied => {
            Error::invalid(format!("seed source {} is not readable: {e}", path.display()))
        }
        _ => Error::io(format!("opening seed source {}", path.display()), e),
    }
}

pub(super) fn archive_kind(f: &File, root: &Path, label: &str) -> Result<SourceKind> {
    let mut head = vec![0u8; 512];
    let mut got = 0;
    while got < head.len() {
        match f.read_at(&mut head[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(open_error(root, e)),
        }
    }
    head.truncate(got);
    let name = root.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    let gz_name = name.ends_with(".tar.gz") || name.ends_with(".tgz");
    let is_gzip = head.starts_with(&[0x1f, 0x8b]);
    let is_ustar = head.len() >= 262 && &head[257..262] == b"ustar";
    if is_gzip {
        return Ok(SourceKind::TarGz);
    }
    if is_ustar {
        return Ok(SourceKind::Tar);
    }
    if gz_name {
        return Err(
            Error::invalid(format!("seed source {label} is named like a .tar.gz but is not gzip data")).hint(SUPPORTED)
        );
    }
    if name.ends_with(".tar") {
        return Ok(SourceKind::Tar); // old (v7) tar without magic: the reader validates checksums
    }
    let what = if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        "a zip archive, which is not supported"
    } else if head.starts_with(b"\xfd7zXZ\0") {
        "xz-compressed, which is not supported"
    } else if head.starts_with(b"BZh") {
        "bzip2-compressed, which is not supported"
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        "zstd-compressed, which is not supported"
    } else {
        "not a directory, .tar or .tar.gz archive"
    };
    Err(Error::invalid(format!("seed source {label} is {what}")).hint(SUPPORTED))
}

pub(super) enum GitProbe {
    Toplevel,
    NotToplevel,
    /// `.git` is there but git cannot be used; the reason goes into `SeedInfo::source`.
    Unusable(String),
}

pub(super) fn probe_git(root: &Path) -> GitProbe {
    if fs::symlink_metadata(root.join(".git")).is_err() {
        return GitProbe::NotToplevel;
    }
    let out = match crate::git::command_in(root).args(["rev-parse", "--show-toplevel"]).output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return GitProbe::Unusable("git is not installed on the host".into())
        }
        Err(e) => return GitProbe::Unusable(format!("could not run git: {e}")),
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let first = err.lines().find(|l| !l.trim().is_empty()).unwrap_or("no output").trim().to_string();
        return GitProbe::Unusable(format!("git rev-parse failed: {first}"));
    }
    let mut top = out.stdout.as_slice();
    while let [rest @ .., b'\n' | b'\r'] = top {
        top = rest;
    }
    match fs::canonicalize(OsStr::from_bytes(top)) {
        Ok(t) if t == root => GitProbe::Toplevel,
        _ => GitProbe::NotToplevel,
    }
}
