//! Archive sources (.tar, .tar.gz): scanning members into the plan, refusing hostile ones,
//! then re-reading the archive to emit the normalized tar.

use super::detect::{open_error, Detected};
use super::model::{
    Limits, SourceKind, DIR, FILE, LIMIT_HINT, MAX_PATH_BYTES, MAX_PAX_BYTES, MEMBER_HINT, MODE_MASK, SUPPORTED,
    SYMLINK,
};
use super::pack::{emit_dirs, emit_file, emit_symlinks, finish, VerifyReader};
use super::plan::{changed, item, path_problem, Item, Origin, Plan};
use crate::error::Error;
use crate::error::Result;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::fs;
use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::io::BufReader;
use std::io::BufWriter;
use std::io::Read;
use std::io::Seek;
use std::io::SeekFrom;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use tar::EntryType;

#[derive(Debug)]
pub(super) enum MemberKind {
    File,
    Dir,
    Symlink(String),
    /// Normalized path of the member linked to.
    HardLink(String),
}

#[derive(Debug)]
pub(super) struct Member {
    /// Normalized; `None` for the root itself ("." or "./").
    pub(super) path: Option<String>,
    pub(super) kind: MemberKind,
    pub(super) mode: u32,
    pub(super) mtime: u64,
    pub(super) size: u64,
}

/// Normalize a member name: drop "." components, repeated and trailing slashes. `Ok(None)` is
/// the root itself; `Err` holds the reason the name is refused.
pub(super) fn normalize_member(raw: &str) -> std::result::Result<Option<String>, String> {
    if raw.is_empty() {
        return Err("it has an empty name".into());
    }
    if raw.starts_with('/') {
        return Err("its path is absolute".into());
    }
    let mut parts = Vec::new();
    for comp in raw.split('/') {
        match comp {
            "" | "." => {}
            ".." => return Err("its path has a '..' component".into()),
            c => parts.push(c),
        }
    }
    if parts.is_empty() {
        return Ok(None);
    }
    let path = parts.join("/");
    match path_problem(&path) {
        Some(problem) => Err(problem),
        None => Ok(Some(path)),
    }
}

pub(super) fn refuse_member(label: &str, name: &str, reason: impl Display) -> Error {
    Error::invalid(format!("seed source {label}: member {} refused: {reason}", crate::text::clip(name, 300)))
        .hint(MEMBER_HINT)
}

pub(super) fn corrupt(label: &str, e: impl Display) -> Error {
    Error::invalid(format!("seed source {label} is not a readable tar archive: {e}")).hint(SUPPORTED)
}

pub(super) fn open_archive(det: &Detected) -> Result<Box<dyn Read>> {
    // The descriptor `detect` opened and checked, read from the start at its own offset.
    let file = det.file.clone().ok_or_else(|| open_error(&det.root, std::io::Error::from_raw_os_error(libc::EBADF)))?;
    let reader = BufReader::with_capacity(1 << 16, crate::hostfile::AtReader::new(file));
    Ok(match det.kind {
        SourceKind::TarGz => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        _ => Box::new(reader),
    })
}

/// Read an extension header's data, refusing oversized ones (the tar crate would buffer them).
pub(super) fn read_capped(label: &str, entry: &mut dyn Read, size: u64, cap: u64, what: &str) -> Result<Vec<u8>> {
    if size > cap {
        return Err(Error::invalid(format!(
            "seed source {label}: the archive has a {what} of {size} bytes (limit {cap})"
        ))
        .hint(MEMBER_HINT));
    }
    let mut data = Vec::with_capacity(size as usize);
    entry.read_to_end(&mut data).map_err(|e| corrupt(label, e))?;
    Ok(data)
}

pub(super) fn strip_nuls(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// Read the archive once, normalizing and checking every member, and hand each one to
/// `visit` with its data. Extension headers (GNU long names, pax) are handled here, with caps,
/// rather than by the tar crate (which buffers them whole).
pub(super) fn scan_archive(
    det: &Detected,
    limits: Limits,
    visit: &mut dyn FnMut(Member, &mut dyn Read) -> Result<()>,
) -> Result<()> {
    let label = det.label.as_str();
    let mut archive = tar::Archive::new(open_archive(det)?);
    let entries = archive.entries().map_err(|e| corrupt(label, e))?.raw(true);
    let max_headers = limits.entries.saturating_mul(4).saturating_add(64);
    let mut headers = 0u64;
    let mut pax: Option<Vec<u8>> = None;
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(label, e))?;
        headers += 1;
        if headers > max_headers {
            return Err(Error::limit(format!(
                "seed source {label} has more than {max_headers} tar headers for at most {} entries",
                limits.entries
            ))
            .hint(LIMIT_HINT));
        }
        let header = entry.header().clone();
        let ty = header.entry_type();
        let header_size = header.entry_size().map_err(|e| corrupt(label, e))?;
        match ty {
            EntryType::XHeader | EntryType::XGlobalHeader => {
                let data = read_capped(label, &mut entry, header_size, MAX_PAX_BYTES, "pax header")?;
                if ty == EntryType::XHeader {
                    if pax.replace(data).is_some() {
                        return Err(corrupt(label, "two pax headers for one member"));
                    }
                    continue;
                }
                for ext in tar::PaxExtensions::new(&data) {
                    let ext = ext.map_err(|e| corrupt(label, e))?;
                    if matches!(ext.key_bytes(), b"path" | b"linkpath" | b"size")
                        || ext.key_bytes().starts_with(b"GNU.sparse")
                    {
                        return Err(Error::invalid(format!(
                            "seed source {label}: the archive has a global pax header setting {} (not supported)",
                            String::from_utf8_lossy(ext.key_bytes())
                        ))
                        .hint(MEMBER_HINT));
                    }
                }
                continue;
            }
            EntryType::GNULongName | EntryType::GNULongLink => {
                let cap = MAX_PATH_BYTES as u64 + 1;
                let data = strip_nuls(read_capped(label, &mut entry, header_size, cap, "GNU long name")?);
                let slot = if ty == EntryType::GNULongName { &mut long_name } else { &mut long_link };
                if slot.replace(data).is_some() {
                    return Err(corrupt(label, "two GNU long names for one member"));
                }
                continue;
            }
            _ => {}
        }
        let mut path_bytes = long_name.take().unwrap_or_else(|| header.path_bytes().into_owned());
        let mut link_bytes = long_link.take().or_else(|| header.link_name_bytes().map(|l| l.into_owned()));
        let mut mtime = header.mtime().map_err(|e| corrupt(label, e))?;
        if let Some(data) = pax.take() {
            for ext in tar::PaxExtensions::new(&data) {
                let ext = ext.map_err(|e| corrupt(label, e))?;
                match ext.key_bytes() {
                    b"path" => path_bytes = ext.value_bytes().to_vec(),
                    b"linkpath" => link_bytes = Some(ext.value_bytes().to_vec()),
                    b"mtime" => {
                        let v = ext.value().unwrap_or("");
                        let secs = v.split('.').next().unwrap_or("");
                        mtime = if secs.starts_with('-') { 0 } else { secs.parse().unwrap_or(mtime) };
                    }
                    b"size" => {
                        let size: u64 = ext
                            .value()
                            .ok()
                            .and_then(|v| v.parse().ok())
                            .ok_or_else(|| corrupt(label, "bad pax size"))?;
                        if size > limits.bytes {
                            return Err(Error::limit(format!(
                                "seed source {label} has a member of {size} bytes, over the limit of {} bytes in all",
                                limits.bytes
                            ))
                            .hint(LIMIT_HINT));
                        }
                        if size != header_size {
                            let name = String::from_utf8_lossy(&path_bytes).into_owned();
                            return Err(refuse_member(label, &name, "its pax size disagrees with its header size"));
                        }
                    }
                    k if k.starts_with(b"GNU.sparse") => {
                        let name = String::from_utf8_lossy(&path_bytes).into_owned();
                        return Err(refuse_member(label, &name, "it is a sparse file, which is not supported"));
                    }
                    _ => {}
                }
            }
        }
        let display = String::from_utf8_lossy(&path_bytes).into_owned();
        let Ok(name) = std::str::from_utf8(&path_bytes) else {
            return Err(refuse_member(label, &display, "its name is not valid UTF-8"));
        };
        let path = normalize_member(name).map_err(|reason| refuse_member(label, &display, reason))?;
        let mode = header.mode().map_err(|e| corrupt(label, e))? & MODE_MASK;
        let kind = match ty {
            EntryType::Regular | EntryType::Continuous if name.ends_with('/') && header_size == 0 => MemberKind::Dir,
            EntryType::Regular | EntryType::Continuous => MemberKind::File,
            EntryType::Directory => MemberKind::Dir,
            EntryType::Symlink => {
                let raw = link_bytes.unwrap_or_default();
                let Ok(target) = String::from_utf8(raw) else {
                    return Err(refuse_member(label, &display, "its symlink target is not valid UTF-8"));
                };
                MemberKind::Symlink(target)
            }
            EntryType::Link => {
                let raw = link_bytes.unwrap_or_default();
                let target = std::str::from_utf8(&raw)
                    .map_err(|_| refuse_member(label, &display, "its hard link target is not valid UTF-8"))?;
                match normalize_member(target) {
                    Ok(Some(t)) => MemberKind::HardLink(t),
                    Ok(None) => return Err(refuse_member(label, &display, "it is a hard link to the root directory")),
                    Err(reason) => {
                        return Err(refuse_member(
                            label,
                            &display,
                            format_args!("its hard link target {target}: {reason}"),
                        ))
                    }
                }
            }
            EntryType::Char | EntryType::Block => return Err(refuse_member(label, &display, "it is a device file")),
            EntryType::Fifo => return Err(refuse_member(label, &display, "it is a FIFO")),
            EntryType::GNUSparse => {
                return Err(refuse_member(label, &display, "it is a sparse file, which is not supported"))
            }
            other => {
                let byte = other.as_byte();
                let shown = if byte.is_ascii_graphic() { (byte as char).to_string() } else { format!("0x{byte:02x}") };
                return Err(refuse_member(label, &display, format_args!("its member type '{shown}' is not supported")));
            }
        };
        if !matches!(kind, MemberKind::File) && header_size != 0 {
            return Err(refuse_member(
                label,
                &display,
                format_args!("it is not a file but carries {header_size} bytes"),
            ));
        }
        visit(Member { path, kind, mode, mtime, size: header_size }, &mut entry)?;
    }
    if pax.is_some() || long_name.is_some() || long_link.is_some() {
        return Err(corrupt(label, "an extension header is not followed by a member"));
    }
    Ok(())
}

/// Validation pass for archives: one read, computing the manifest and hashes.
pub(super) fn plan_archive(det: &Detected, limits: Limits) -> Result<Plan> {
    let mut plan = Plan::new(&det.label, limits);
    scan_archive(det, limits, &mut |m, data| plan.add_member(m, data))?;
    plan.check_symlinks()?;
    Ok(plan)
}

impl Plan {
    pub(super) fn add_member(&mut self, m: Member, data: &mut dyn Read) -> Result<()> {
        let label = self.label.clone();
        let Some(path) = m.path else {
            return match m.kind {
                MemberKind::Dir => Ok(()), // "./": the root itself
                _ => Err(refuse_member(&label, ".", "it has an empty name")),
            };
        };
        // Parents: must not be files or symlinks (the unpacker would write through a symlink);
        // missing ones are added as implicit directories.
        for (i, _) in path.match_indices('/') {
            let parent = &path[..i];
            match self.items.get(parent) {
                Some(p) if p.entry.kind == DIR => {}
                Some(p) => {
                    let reason = format!("its parent {parent} is a {} in the archive, not a directory", p.entry.kind);
                    return Err(refuse_member(&label, &path, reason));
                }
                None => self.insert(parent.to_string(), item(parent, DIR, 0o755, 0, m.mtime, Origin::Implicit))?,
            }
        }
        if let Some(existing) = self.items.get_mut(&path) {
            if existing.origin == Origin::Implicit && matches!(m.kind, MemberKind::Dir) {
                existing.origin = Origin::Archive;
                existing.entry.mode = m.mode;
                existing.mtime = m.mtime;
                return Ok(());
            }
            return Err(refuse_member(&label, &path, "it appears more than once in the archive (duplicate member)"));
        }
        match m.kind {
            MemberKind::Dir => self.insert(path.clone(), item(&path, DIR, m.mode, 0, m.mtime, Origin::Archive)),
            MemberKind::Symlink(target) => {
                let mut it = item(&path, SYMLINK, 0o777, target.len() as u64, m.mtime, Origin::Archive);
                it.entry.target = Some(target);
                self.insert(path, it)
            }
            MemberKind::File => {
                self.add_bytes_now(m.size)?;
                let mut reader = VerifyReader::new(data, m.size);
                if let Err(e) = io::copy(&mut reader, &mut io::sink()) {
                    return Err(if reader.short {
                        corrupt(&label, format_args!("member {path} is truncated"))
                    } else {
                        corrupt(&label, e)
                    });
                }
                let sha = reader.finish(&label, &path)?;
                let mut it = item(&path, FILE, m.mode, m.size, m.mtime, Origin::Archive);
                it.entry.sha256 = Some(sha);
                self.insert(path, it)
            }
            MemberKind::HardLink(target) => {
                let (root, size, sha, mode, mtime) = match self.items.get(&target) {
                    Some(t) if t.entry.kind == FILE => {
                        let root = match &t.origin {
                            Origin::Link(root) => root.clone(),
                            _ => target.clone(),
                        };
                        (root, t.entry.size, t.entry.sha256.clone(), t.entry.mode, t.mtime)
                    }
                    _ => {
                        let reason =
                            format!("it is a hard link to {target}, which is not an earlier regular file member");
                        return Err(refuse_member(&label, &path, reason));
                    }
                };
                self.add_bytes_now(size)?;
                let mut it = item(&path, FILE, mode, size, mtime, Origin::Link(root));
                it.entry.sha256 = sha;
                self.insert(path, it)
            }
        }
    }
}

/// Emit pass for archives: directories from the plan, files in archive order (second read),
/// hard-link copies (third read, only if there are any), symlinks from the plan.
pub(super) fn emit_archive(plan: &Plan, det: &Detected, out: &mut dyn Write) -> Result<()> {
    let label = plan.label.as_str();
    let mut b = tar::Builder::new(BufWriter::with_capacity(1 << 16, out));
    emit_dirs(&mut b, plan)?;
    let expected = plan.items.values().filter(|it| it.entry.kind == FILE && it.origin == Origin::Archive).count();
    let mut seen = 0usize;
    scan_archive(det, plan.limits, &mut |m, data| {
        let (Some(path), MemberKind::File) = (&m.path, &m.kind) else { return Ok(()) };
        match plan.items.get(path) {
            Some(it) if it.origin == Origin::Archive && it.entry.kind == FILE && it.entry.size == m.size => {
                seen += 1;
                emit_file(&mut b, label, path, it, data)
            }
            _ => Err(changed(label, path, "the archive differs from its first read")),
        }
    })?;
    if seen != expected {
        return Err(changed(label, "the archive", "it has fewer files than on its first read"));
    }
    let mut copies: BTreeMap<&str, Vec<(&str, &Item)>> = BTreeMap::new();
    for (path, it) in &plan.items {
        if let Origin::Link(root) = &it.origin {
            copies.entry(root.as_str()).or_default().push((path.as_str(), it));
        }
    }
    if !copies.is_empty() {
        let mut done = 0usize;
        scan_archive(det, plan.limits, &mut |m, data| {
            let (Some(path), MemberKind::File) = (&m.path, &m.kind) else { return Ok(()) };
            let Some(links) = copies.get(path.as_str()) else { return Ok(()) };
            done += 1;
            if let [(link, it)] = links.as_slice() {
                return emit_file(&mut b, label, link, it, data);
            }
            // Several copies of one member: spool it once to an unlinked temporary file.
            let mut spool = spool_file()?;
            let size = plan.items.get(path.as_str()).map(|t| t.entry.size).unwrap_or(0);
            let mut reader = VerifyReader::new(data, size);
            if let Err(e) = io::copy(&mut reader, &mut spool) {
                return Err(reader.error(label, path, e));
            }
            reader.finish(label, path)?;
            for (link, it) in links {
                spool.seek(SeekFrom::Start(0)).map_err(|e| Error::io("rewinding the seed spool file", e))?;
                emit_file(&mut b, label, link, it, &mut spool)?;
            }
            Ok(())
        })?;
        if done != copies.len() {
            return Err(changed(label, "the archive", "hard link targets are missing on a later read"));
        }
    }
    emit_symlinks(&mut b, plan)?;
    finish(b)
}

pub(super) fn spool_file() -> Result<File> {
    let dir = std::env::temp_dir();
    let nanos = crate::clock::now_ns();
    for attempt in 0..16 {
        let path = dir.join(format!(".pyro-seed-spool-{}-{nanos}-{attempt}", std::process::id()));
        match OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path) {
            Ok(f) => {
                let _ = fs::remove_file(&path);
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::io(format!("creating a spool file in {}", dir.display()), e)),
        }
    }
    Err(Error::internal(format!("could not create a spool file in {}", dir.display())))
}
