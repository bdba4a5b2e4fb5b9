//! Directory and git checkout sources: walking the host tree (or asking git for its files)
//! into the plan, then streaming the planned files into the tar.

use super::archive::normalize_member;
use super::detect::Detected;
use super::model::{Limits, SourceKind, DIR, FILE, MODE_MASK, SPECIAL_HINT, SYMLINK, SYMLINK_HINT};
use super::pack::{emit_dirs, emit_file, emit_symlinks, finish, VerifyReader};
use super::plan::{changed, item, path_problem, Origin, Plan};
use crate::error::Error;
use crate::error::Result;
use std::fs;
use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::io::BufWriter;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Stdio;

pub(super) fn host_error(label: &str, rel: &str, doing: &str, e: io::Error) -> Error {
    let at = if rel.is_empty() { ".".to_string() } else { rel.to_string() };
    if e.kind() == io::ErrorKind::PermissionDenied {
        Error::invalid(format!("seed source {label}: cannot {doing} {at}: {e}"))
            .hint("make it readable, or seed a directory that does not contain it")
    } else {
        Error::io(format!("seed source {label}: cannot {doing} {at}"), e)
    }
}

pub(super) fn non_utf8(label: &str, raw: &[u8]) -> Error {
    Error::invalid(format!("seed source {label}: the path name {} is not valid UTF-8", String::from_utf8_lossy(raw)))
        .hint("rename it, or seed a directory that does not contain it")
}

pub(super) fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Validation pass for directories: walk, check totals and symlinks, then hash every file.
pub(super) fn plan_host(det: &Detected, limits: Limits) -> Result<Plan> {
    let mut plan = Plan::new(&det.label, limits);
    if det.kind == SourceKind::GitCheckout {
        collect_git(&mut plan, &det.root)?;
    } else {
        walk_dir(&mut plan, &det.root, "", false)?;
    }
    plan.check_total_bytes()?;
    plan.check_symlinks()?;
    for (path, it) in plan.items.iter_mut() {
        let Origin::Host(abs) = &it.origin else { continue };
        if it.entry.kind != FILE {
            continue;
        }
        let file = open_host_file(&plan.label, path, abs, it.entry.size)?;
        let mut reader = VerifyReader::new(file, it.entry.size);
        if let Err(e) = io::copy(&mut reader, &mut io::sink()) {
            return Err(reader.error(&plan.label, path, e));
        }
        it.entry.sha256 = Some(reader.finish(&plan.label, path)?);
    }
    Ok(plan)
}

pub(super) fn walk_dir(plan: &mut Plan, abs: &Path, rel: &str, in_git_dir: bool) -> Result<()> {
    let mut names = Vec::new();
    let rd = fs::read_dir(abs).map_err(|e| host_error(&plan.label, rel, "read directory", e))?;
    for ent in rd {
        names.push(ent.map_err(|e| host_error(&plan.label, rel, "read directory", e))?.file_name());
    }
    names.sort();
    for name in names {
        let Some(name_str) = name.to_str() else {
            let raw = join_rel(rel, &String::from_utf8_lossy(name.as_bytes()));
            return Err(non_utf8(&plan.label, raw.as_bytes()));
        };
        let child = join_rel(rel, name_str);
        add_host(plan, &abs.join(&name), child, in_git_dir || name_str == ".git")?;
    }
    Ok(())
}

/// Add one host object (recursively for directories). A path that vanished is skipped.
/// Sockets and FIFOs inside a `.git` directory (daemon IPC, not repository content) are skipped;
/// anywhere else any special file is refused.
pub(super) fn add_host(plan: &mut Plan, abs: &Path, rel: String, in_git_dir: bool) -> Result<()> {
    if let Some(problem) = path_problem(&rel) {
        return Err(Error::invalid(format!("seed source {}: {rel} cannot be seeded: {problem}", plan.label)));
    }
    let md = match fs::symlink_metadata(abs) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(host_error(&plan.label, &rel, "inspect", e)),
    };
    let ft = md.file_type();
    let mode = md.mode() & MODE_MASK;
    let mtime = md.mtime().max(0) as u64;
    let present = plan.items.contains_key(&rel);
    if ft.is_dir() {
        if !present {
            let it = item(&rel, DIR, mode, 0, mtime, Origin::Host(abs.to_path_buf()));
            plan.insert(rel.clone(), it)?;
        }
        walk_dir(plan, abs, &rel, in_git_dir)
    } else if present {
        Ok(())
    } else if ft.is_file() {
        plan.bytes = plan.bytes.saturating_add(md.len());
        plan.insert(rel.clone(), item(&rel, FILE, mode, md.len(), mtime, Origin::Host(abs.to_path_buf())))
    } else if ft.is_symlink() {
        let target = fs::read_link(abs).map_err(|e| host_error(&plan.label, &rel, "read symlink", e))?;
        let Some(target) = target.to_str() else {
            return Err(Error::invalid(format!(
                "seed source {}: symlink {rel} refused: its target {} is not valid UTF-8",
                plan.label,
                target.to_string_lossy()
            ))
            .hint(SYMLINK_HINT));
        };
        let mut it = item(&rel, SYMLINK, 0o777, target.len() as u64, mtime, Origin::Host(abs.to_path_buf()));
        it.entry.target = Some(target.to_string());
        plan.insert(rel, it)
    } else if in_git_dir && (ft.is_socket() || ft.is_fifo()) {
        Ok(())
    } else {
        let what = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_block_device() || ft.is_char_device() {
            "a device file"
        } else {
            "not a regular file, directory or symlink"
        };
        Err(Error::invalid(format!("seed source {}: {rel} is {what} and cannot be seeded", plan.label))
            .hint(SPECIAL_HINT))
    }
}

/// Git checkout: tracked plus untracked-not-ignored files as `git ls-files` lists them (read
/// from the work tree, so uncommitted changes come along), their parent directories, and the
/// whole `.git`. Index entries missing from the work tree are skipped; so are entries under a
/// parent that is no longer a directory. Listed directories (submodules, nested repositories)
/// are sent whole.
pub(super) fn collect_git(plan: &mut Plan, root: &Path) -> Result<()> {
    let out = crate::git::command_in(root)
        .args(["ls-files", "-z", "--cached", "--others", "--exclude-standard"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| Error::io(format!("seed source {}: running git ls-files", plan.label), e))?;
    if !out.status.success() {
        return Err(Error::internal(format!(
            "seed source {}: git ls-files failed: {}",
            plan.label,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut listed: Vec<&[u8]> = out.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()).collect();
    listed.sort_unstable();
    listed.dedup();
    for raw in listed {
        let s = std::str::from_utf8(raw).map_err(|_| non_utf8(&plan.label, raw))?;
        let rel = match normalize_member(s) {
            Ok(Some(rel)) => rel,
            _ => return Err(Error::internal(format!("seed source {}: git listed an unexpected path {s}", plan.label))),
        };
        if rel == ".git" || rel.starts_with(".git/") {
            continue;
        }
        if !add_host_parents(plan, root, &rel)? {
            continue;
        }
        add_host(plan, &root.join(&rel), rel, false)?;
    }
    add_host(plan, &root.join(".git"), ".git".to_string(), true)
}

/// Add the parent directories of `rel`; false when one of them is not a real directory (any
/// more) in the work tree.
pub(super) fn add_host_parents(plan: &mut Plan, root: &Path, rel: &str) -> Result<bool> {
    for (i, _) in rel.match_indices('/') {
        let parent = &rel[..i];
        if let Some(existing) = plan.items.get(parent) {
            if existing.entry.kind == DIR {
                continue;
            }
            return Ok(false);
        }
        let abs = root.join(parent);
        match fs::symlink_metadata(&abs) {
            Ok(md) if md.is_dir() => {
                let it = item(parent, DIR, md.mode() & MODE_MASK, 0, md.mtime().max(0) as u64, Origin::Host(abs));
                plan.insert(parent.to_string(), it)?;
            }
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(host_error(&plan.label, parent, "inspect", e)),
        }
    }
    Ok(true)
}

/// Open a file seen by the walk without following a symlink or blocking on a FIFO that took
/// its place, and check it is still a regular file of the size recorded.
pub(super) fn open_host_file(label: &str, rel: &str, abs: &Path, size: u64) -> Result<File> {
    let file = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(abs) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(changed(label, rel, "it was removed")),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(changed(label, rel, "it was replaced by a symlink"))
        }
        Err(e) => return Err(host_error(label, rel, "open", e)),
    };
    let md = file.metadata().map_err(|e| host_error(label, rel, "inspect", e))?;
    if !md.is_file() {
        return Err(changed(label, rel, "it is no longer a regular file"));
    }
    if md.len() != size {
        return Err(changed(label, rel, format_args!("its size went from {size} to {} bytes", md.len())));
    }
    Ok(file)
}

pub(super) fn emit_host(plan: &Plan, out: &mut dyn Write) -> Result<()> {
    let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 16, out));
    emit_dirs(&mut b, plan)?;
    for (path, it) in &plan.items {
        let Origin::Host(abs) = &it.origin else { continue };
        if it.entry.kind == FILE {
            let mut file = open_host_file(&plan.label, path, abs, it.entry.size)?;
            emit_file(&mut b, &plan.label, path, it, &mut file)?;
        }
    }
    emit_symlinks(&mut b, plan)?;
    finish(b)
}
