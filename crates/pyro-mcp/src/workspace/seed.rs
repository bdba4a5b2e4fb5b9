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

use crate::error::{Code, Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::OsStr;
use std::fmt::Display;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use tar::EntryType;

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
pub fn build_seed_tar(source: &Path, out: &mut dyn Write) -> Result<SeedInfo> {
    build_limited(source, out, Limits { bytes: MAX_SEED_BYTES, entries: MAX_SEED_ENTRIES })
}

/// What kind of seed source `source` is; errors as `build_seed_tar` would for a missing or
/// unsupported source.
pub fn detect_kind(source: &Path) -> Result<SourceKind> {
    Ok(detect(source)?.kind)
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    bytes: u64,
    entries: u64,
}

fn build_limited(source: &Path, out: &mut dyn Write, limits: Limits) -> Result<SeedInfo> {
    let det = detect(source)?;
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

// ---------------------------------------------------------------------------------------------
// Detection

#[derive(Debug)]
struct Detected {
    kind: SourceKind,
    root: PathBuf,
    label: String,
    /// Why a directory with `.git` is seeded as a plain directory.
    note: Option<String>,
}

fn detect(source: &Path) -> Result<Detected> {
    let root = fs::canonicalize(source).map_err(|e| open_error(source, e))?;
    let label = root.display().to_string();
    let md = fs::metadata(&root).map_err(|e| open_error(source, e))?;
    if md.is_dir() {
        let (kind, note) = match probe_git(&root) {
            GitProbe::Toplevel => (SourceKind::GitCheckout, None),
            GitProbe::NotToplevel => (SourceKind::Directory, None),
            GitProbe::Unusable(why) => (SourceKind::Directory, Some(why)),
        };
        return Ok(Detected { kind, root, label, note });
    }
    if !md.is_file() {
        return Err(
            Error::invalid(format!("seed source {label} is neither a directory nor a regular file")).hint(SUPPORTED)
        );
    }
    let kind = archive_kind(&root, &label)?;
    Ok(Detected { kind, root, label, note: None })
}

fn open_error(path: &Path, e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::NotFound => Error::not_found(format!("seed source {} does not exist", path.display()))
            .hint("pass an existing directory or .tar / .tar.gz file on the host"),
        io::ErrorKind::PermissionDenied => {
            Error::invalid(format!("seed source {} is not readable: {e}", path.display()))
        }
        _ => Error::io(format!("opening seed source {}", path.display()), e),
    }
}

fn archive_kind(root: &Path, label: &str) -> Result<SourceKind> {
    let mut head = Vec::with_capacity(512);
    File::open(root).and_then(|f| f.take(512).read_to_end(&mut head)).map_err(|e| open_error(root, e))?;
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

enum GitProbe {
    Toplevel,
    NotToplevel,
    /// `.git` is there but git cannot be used; the reason goes into `SeedInfo::source`.
    Unusable(String),
}

/// `git -C dir ...` with a clean environment (no GIT_DIR & co. inherited from the caller) and
/// the file system monitor off (it may run a configured command).
fn git_command(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.as_bytes().starts_with(b"GIT_") {
            cmd.env_remove(&key);
        }
    }
    cmd.arg("-C").arg(dir).args(["-c", "core.fsmonitor=false"]).stdin(Stdio::null());
    cmd
}

fn probe_git(root: &Path) -> GitProbe {
    if fs::symlink_metadata(root.join(".git")).is_err() {
        return GitProbe::NotToplevel;
    }
    let out = match git_command(root).args(["rev-parse", "--show-toplevel"]).output() {
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

// ---------------------------------------------------------------------------------------------
// The plan: the validated manifest plus where each entry comes from

#[derive(Debug, Clone, PartialEq)]
enum Origin {
    /// A host file system object (directory sources).
    Host(PathBuf),
    /// An archive member.
    Archive,
    /// An archive hard link, emitted as a copy of this earlier regular member.
    Link(String),
    /// A parent directory an archive does not list.
    Implicit,
}

#[derive(Debug)]
struct Item {
    entry: ManifestEntry,
    mtime: u64,
    origin: Origin,
}

#[derive(Debug)]
struct Plan {
    label: String,
    limits: Limits,
    items: BTreeMap<String, Item>,
    bytes: u64,
}

fn item(path: &str, kind: &str, mode: u32, size: u64, mtime: u64, origin: Origin) -> Item {
    let entry =
        ManifestEntry { path: path.to_string(), kind: kind.to_string(), mode, size, sha256: None, target: None };
    Item { entry, mtime, origin }
}

impl Plan {
    fn new(label: &str, limits: Limits) -> Self {
        Plan { label: label.to_string(), limits, items: BTreeMap::new(), bytes: 0 }
    }

    fn insert(&mut self, path: String, it: Item) -> Result<()> {
        if self.items.len() as u64 >= self.limits.entries {
            return Err(Error::limit(format!(
                "seed source {} has more than {} entries (files, directories and symlinks); the limit is {}",
                self.label, self.limits.entries, self.limits.entries
            ))
            .hint(LIMIT_HINT));
        }
        self.items.insert(path, it);
        Ok(())
    }

    /// Archives: fail as soon as the running total passes the limit.
    fn add_bytes_now(&mut self, size: u64) -> Result<()> {
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.bytes {
            return Err(Error::limit(format!(
                "seed source {} holds more than {} bytes of files ({}; at least {} bytes counted so far)",
                self.label,
                self.limits.bytes,
                human(self.limits.bytes),
                self.bytes
            ))
            .hint(LIMIT_HINT));
        }
        Ok(())
    }

    /// Directories: the walk is cheap, so the exact total is known before anything is hashed.
    fn check_total_bytes(&self) -> Result<()> {
        if self.bytes > self.limits.bytes {
            return Err(Error::limit(format!(
                "seed source {} holds {} bytes of files ({}), over the limit of {} bytes ({})",
                self.label,
                self.bytes,
                human(self.bytes),
                self.limits.bytes,
                human(self.limits.bytes)
            ))
            .hint(LIMIT_HINT));
        }
        Ok(())
    }

    /// Every symlink must be relative and stay inside the tree, on its own (resolved
    /// lexically from the link's directory) and when followed through the other symlinks of
    /// the seed (as the guest kernel would).
    fn check_symlinks(&self) -> Result<()> {
        let links: HashMap<&str, &str> = self
            .items
            .iter()
            .filter(|(_, it)| it.entry.kind == SYMLINK)
            .map(|(p, it)| (p.as_str(), it.entry.target.as_deref().unwrap_or("")))
            .collect();
        let sorted: BTreeMap<&str, &str> = links.iter().map(|(p, t)| (*p, *t)).collect();
        for (path, target) in &sorted {
            let reason = if target.is_empty() {
                Some("it has an empty target".to_string())
            } else if target.starts_with('/') {
                Some(format!("its target {target} is absolute"))
            } else if target.len() > MAX_PATH_BYTES {
                Some(format!("its target is {} bytes long (limit {MAX_PATH_BYTES})", target.len()))
            } else if resolve_in_tree(path, target, None).is_err() {
                Some(format!("its target {target} escapes the seeded tree"))
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(self.refuse_symlink(path, &reason));
            }
        }
        for (path, target) in &sorted {
            if let Err(via) = resolve_in_tree(path, target, Some(&links)) {
                let via = via.unwrap_or_default();
                let reason = format!("its target {target} escapes the seeded tree when followed through symlink {via}");
                return Err(self.refuse_symlink(path, &reason));
            }
        }
        Ok(())
    }

    fn refuse_symlink(&self, path: &str, reason: &str) -> Error {
        Error::invalid(format!("seed source {}: symlink {path} refused: {reason}", self.label)).hint(SYMLINK_HINT)
    }

    fn into_info(self, det: &Detected) -> SeedInfo {
        let source = match &det.note {
            Some(note) => format!("{} (seeded as a plain directory: {note})", det.label),
            None => det.label.clone(),
        };
        let manifest: Vec<ManifestEntry> = self.items.into_values().map(|it| it.entry).collect();
        SeedInfo { kind: det.kind, source, entries: manifest.len() as u64, bytes: self.bytes, manifest }
    }
}

/// Follow `target` from the directory of the symlink at `link`, lexically, expanding the
/// seed's other symlinks when `links` is given. `Err` means it climbs above the root; it holds
/// the last symlink expanded on the way, if any. Loops end quietly (they fail with ELOOP).
fn resolve_in_tree<'a>(
    link: &'a str,
    target: &'a str,
    links: Option<&HashMap<&'a str, &'a str>>,
) -> std::result::Result<(), Option<String>> {
    let mut cur: Vec<&'a str> = link.split('/').collect();
    cur.pop();
    let mut pending: VecDeque<&'a str> = target.split('/').collect();
    let mut via: Option<String> = None;
    let mut hops = 0;
    while let Some(comp) = pending.pop_front() {
        match comp {
            "" | "." => {}
            ".." => {
                if cur.pop().is_none() {
                    return Err(via);
                }
            }
            name => {
                cur.push(name);
                let Some(links) = links else { continue };
                let joined = cur.join("/");
                if let Some(&next) = links.get(joined.as_str()) {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Ok(());
                    }
                    if next.starts_with('/') {
                        return Err(Some(joined));
                    }
                    cur.pop();
                    for part in next.split('/').rev() {
                        pending.push_front(part);
                    }
                    via = Some(joined);
                }
            }
        }
    }
    Ok(())
}

/// Length rules for a normalized relative path; the reason if broken.
fn path_problem(path: &str) -> Option<String> {
    if path.len() > MAX_PATH_BYTES {
        return Some(format!("the path is {} bytes long (limit {MAX_PATH_BYTES})", path.len()));
    }
    path.split('/')
        .find(|c| c.len() > MAX_NAME_BYTES)
        .map(|c| format!("the name {}... is {} bytes long (limit {MAX_NAME_BYTES})", clip(c, 40), c.len()))
}

fn clip(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn human(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

fn changed(label: &str, path: &str, what: impl Display) -> Error {
    Error::new(Code::Conflict, format!("seed source {label}: {path} changed while it was being seeded ({what})"))
        .hint(CHANGED_HINT)
}

// ---------------------------------------------------------------------------------------------
// Directory and git checkout sources

fn host_error(label: &str, rel: &str, doing: &str, e: io::Error) -> Error {
    let at = if rel.is_empty() { ".".to_string() } else { rel.to_string() };
    if e.kind() == io::ErrorKind::PermissionDenied {
        Error::invalid(format!("seed source {label}: cannot {doing} {at}: {e}"))
            .hint("make it readable, or seed a directory that does not contain it")
    } else {
        Error::io(format!("seed source {label}: cannot {doing} {at}"), e)
    }
}

fn non_utf8(label: &str, raw: &[u8]) -> Error {
    Error::invalid(format!("seed source {label}: the path name {} is not valid UTF-8", String::from_utf8_lossy(raw)))
        .hint("rename it, or seed a directory that does not contain it")
}

fn join_rel(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Validation pass for directories: walk, check totals and symlinks, then hash every file.
fn plan_host(det: &Detected, limits: Limits) -> Result<Plan> {
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

fn walk_dir(plan: &mut Plan, abs: &Path, rel: &str, in_git_dir: bool) -> Result<()> {
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
fn add_host(plan: &mut Plan, abs: &Path, rel: String, in_git_dir: bool) -> Result<()> {
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
fn collect_git(plan: &mut Plan, root: &Path) -> Result<()> {
    let out = git_command(root)
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
fn add_host_parents(plan: &mut Plan, root: &Path, rel: &str) -> Result<bool> {
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
fn open_host_file(label: &str, rel: &str, abs: &Path, size: u64) -> Result<File> {
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

fn emit_host(plan: &Plan, out: &mut dyn Write) -> Result<()> {
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

// ---------------------------------------------------------------------------------------------
// Archive sources

#[derive(Debug)]
enum MemberKind {
    File,
    Dir,
    Symlink(String),
    /// Normalized path of the member linked to.
    HardLink(String),
}

#[derive(Debug)]
struct Member {
    /// Normalized; `None` for the root itself ("." or "./").
    path: Option<String>,
    kind: MemberKind,
    mode: u32,
    mtime: u64,
    size: u64,
}

/// Normalize a member name: drop "." components, repeated and trailing slashes. `Ok(None)` is
/// the root itself; `Err` holds the reason the name is refused.
fn normalize_member(raw: &str) -> std::result::Result<Option<String>, String> {
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

fn refuse_member(label: &str, name: &str, reason: impl Display) -> Error {
    Error::invalid(format!("seed source {label}: member {} refused: {reason}", clip(name, 300))).hint(MEMBER_HINT)
}

fn corrupt(label: &str, e: impl Display) -> Error {
    Error::invalid(format!("seed source {label} is not a readable tar archive: {e}")).hint(SUPPORTED)
}

fn open_archive(det: &Detected) -> Result<Box<dyn Read>> {
    let file = File::open(&det.root).map_err(|e| open_error(&det.root, e))?;
    let reader = BufReader::with_capacity(1 << 16, file);
    Ok(match det.kind {
        SourceKind::TarGz => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        _ => Box::new(reader),
    })
}

/// Read an extension header's data, refusing oversized ones (the tar crate would buffer them).
fn read_capped(label: &str, entry: &mut dyn Read, size: u64, cap: u64, what: &str) -> Result<Vec<u8>> {
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

fn strip_nuls(mut v: Vec<u8>) -> Vec<u8> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// Read the archive once, normalizing and checking every member, and hand each one to
/// `visit` with its data. Extension headers (GNU long names, pax) are handled here, with caps,
/// rather than by the tar crate (which buffers them whole).
fn scan_archive(
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
fn plan_archive(det: &Detected, limits: Limits) -> Result<Plan> {
    let mut plan = Plan::new(&det.label, limits);
    scan_archive(det, limits, &mut |m, data| plan.add_member(m, data))?;
    plan.check_symlinks()?;
    Ok(plan)
}

impl Plan {
    fn add_member(&mut self, m: Member, data: &mut dyn Read) -> Result<()> {
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
fn emit_archive(plan: &Plan, det: &Detected, out: &mut dyn Write) -> Result<()> {
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

fn spool_file() -> Result<File> {
    let dir = std::env::temp_dir();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
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

// ---------------------------------------------------------------------------------------------
// Tar output

fn header(ty: EntryType, mode: u32, mtime: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(ty);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

fn write_error(e: io::Error) -> Error {
    Error::io("writing the seed tar", e)
}

fn emit_dirs<W: Write>(b: &mut tar::Builder<W>, plan: &Plan) -> Result<()> {
    for (path, it) in plan.items.iter().filter(|(_, it)| it.entry.kind == DIR) {
        let mut h = header(EntryType::Directory, it.entry.mode, it.mtime, 0);
        b.append_data(&mut h, path, io::empty()).map_err(write_error)?;
    }
    Ok(())
}

fn emit_symlinks<W: Write>(b: &mut tar::Builder<W>, plan: &Plan) -> Result<()> {
    for (path, it) in plan.items.iter().filter(|(_, it)| it.entry.kind == SYMLINK) {
        let mut h = header(EntryType::Symlink, 0o777, it.mtime, 0);
        b.append_link(&mut h, path, it.entry.target.as_deref().unwrap_or("")).map_err(write_error)?;
    }
    Ok(())
}

/// Stream exactly `it.entry.size` bytes of `data` as the file `path`, checking the content
/// still hashes to what the validation pass recorded.
fn emit_file<W: Write, R: Read + ?Sized>(
    b: &mut tar::Builder<W>,
    label: &str,
    path: &str,
    it: &Item,
    data: &mut R,
) -> Result<()> {
    let mut reader = VerifyReader::new(data, it.entry.size);
    let mut h = header(EntryType::Regular, it.entry.mode, it.mtime, it.entry.size);
    if let Err(e) = b.append_data(&mut h, path, &mut reader) {
        return Err(reader.error(label, path, e));
    }
    let sha = reader.finish(label, path)?;
    if it.entry.sha256.as_deref() != Some(sha.as_str()) {
        return Err(changed(label, path, "its content differs from the validation pass"));
    }
    Ok(())
}

fn finish<W: Write>(b: tar::Builder<W>) -> Result<()> {
    let mut w = b.into_inner().map_err(write_error)?;
    w.flush().map_err(write_error)
}

/// Reads exactly `remaining` bytes from `inner`, hashing them; an early end is an error.
struct VerifyReader<R> {
    inner: R,
    hasher: Sha256,
    remaining: u64,
    short: bool,
    read_error: Option<String>,
}

impl<R: Read> VerifyReader<R> {
    fn new(inner: R, size: u64) -> Self {
        VerifyReader { inner, hasher: Sha256::new(), remaining: size, short: false, read_error: None }
    }

    /// Turn an error out of a copy through this reader into ours: source changed, source
    /// unreadable, or (otherwise) the output failed.
    fn error(&self, label: &str, path: &str, e: io::Error) -> Error {
        if self.short {
            changed(label, path, "it became shorter")
        } else if let Some(msg) = &self.read_error {
            Error::internal(format!("seed source {label}: reading {path}: {msg}"))
        } else {
            write_error(e)
        }
    }

    /// After the copy: the source must end here too; returns the hex sha256.
    fn finish(mut self, label: &str, path: &str) -> Result<String> {
        if self.remaining != 0 {
            return Err(changed(label, path, "it became shorter"));
        }
        let mut one = [0u8; 1];
        loop {
            match self.inner.read(&mut one) {
                Ok(0) => break,
                Ok(_) => return Err(changed(label, path, "it grew")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::internal(format!("seed source {label}: reading {path}: {e}"))),
            }
        }
        Ok(hex::encode(self.hasher.finalize()))
    }
}

impl<R: Read> Read for VerifyReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let got = loop {
            match self.inner.read(&mut buf[..want]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.read_error = Some(e.to_string());
                    return Err(e);
                }
            }
        };
        if got == 0 {
            self.short = true;
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the source ended early"));
        }
        self.hasher.update(&buf[..got]);
        self.remaining -= got as u64;
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn seed(src: &Path) -> Result<(SeedInfo, Vec<u8>)> {
        let mut out = Vec::new();
        let info = build_seed_tar(src, &mut out)?;
        Ok((info, out))
    }

    fn refused(src: &Path, code: Code) -> Error {
        let mut out = Vec::new();
        let err = build_seed_tar(src, &mut out).expect_err("seeding should fail");
        assert_eq!(err.code, code, "{err}");
        assert!(out.is_empty(), "nothing may be written before validation: {err}");
        err
    }

    fn sha(b: &[u8]) -> String {
        hex::encode(Sha256::digest(b))
    }

    fn entry<'a>(info: &'a SeedInfo, path: &str) -> &'a ManifestEntry {
        info.manifest.iter().find(|e| e.path == path).unwrap_or_else(|| panic!("{path} not in manifest"))
    }

    fn paths(info: &SeedInfo) -> Vec<&str> {
        info.manifest.iter().map(|e| e.path.as_str()).collect()
    }

    fn unpack(tar_bytes: &[u8], dst: &Path) {
        let mut a = tar::Archive::new(tar_bytes);
        a.set_preserve_permissions(true);
        a.unpack(dst).unwrap();
    }

    /// Normalized tar: relative paths, root owner, only dirs, then files, then symlinks.
    fn check_normalized(tar_bytes: &[u8]) {
        let mut a = tar::Archive::new(tar_bytes);
        let mut phase = 0;
        for e in a.entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            assert!(!p.starts_with('/') && !p.split('/').any(|c| c == ".."), "{p}");
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            let rank = match h.entry_type() {
                EntryType::Directory => 0,
                EntryType::Regular => 1,
                EntryType::Symlink => 2,
                t => panic!("unexpected member type {t:?}"),
            };
            assert!(rank >= phase, "{p} out of order");
            phase = rank;
        }
    }

    fn write(p: &Path, data: &[u8], mode: u32) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn plain_directory_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src.join("README.md"), b"hello\n", 0o644);
        write(&src.join("bin/run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
        write(&src.join("a/b/c/deep.txt"), b"deep", 0o600);
        fs::create_dir_all(src.join("empty")).unwrap();
        symlink("b/c/deep.txt", src.join("a/link")).unwrap();
        symlink("../README.md", src.join("bin/readme")).unwrap();
        symlink("..", src.join("a/up")).unwrap();
        let (info, out) = seed(&src).unwrap();
        assert_eq!(info.kind, SourceKind::Directory);
        assert_eq!(info.source, fs::canonicalize(&src).unwrap().display().to_string());
        assert_eq!(
            paths(&info),
            [
                "README.md",
                "a",
                "a/b",
                "a/b/c",
                "a/b/c/deep.txt",
                "a/link",
                "a/up",
                "bin",
                "bin/readme",
                "bin/run.sh",
                "empty"
            ]
        );
        assert_eq!(info.entries, 11);
        assert_eq!(info.bytes, 6 + 18 + 4);
        let run = entry(&info, "bin/run.sh");
        assert_eq!((run.kind.as_str(), run.mode, run.size), (FILE, 0o755, 18));
        assert_eq!(run.sha256.as_deref(), Some(sha(b"#!/bin/sh\necho hi\n").as_str()));
        assert_eq!(entry(&info, "a/b/c/deep.txt").mode, 0o600);
        let link = entry(&info, "a/link");
        assert_eq!(
            (link.kind.as_str(), link.target.as_deref(), link.sha256.as_deref()),
            (SYMLINK, Some("b/c/deep.txt"), None)
        );
        assert_eq!(entry(&info, "a").kind, DIR);
        check_normalized(&out);

        let dst = tmp.path().join("dst");
        unpack(&out, &dst);
        assert_eq!(fs::metadata(dst.join("bin/run.sh")).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(fs::read_link(dst.join("a/link")).unwrap(), Path::new("b/c/deep.txt"));
        assert_eq!(fs::read(dst.join("a/link")).unwrap(), b"deep");
        let mtime = |p: &Path| fs::metadata(p).unwrap().mtime();
        assert_eq!(mtime(&dst.join("README.md")), mtime(&src.join("README.md")));
        let (again, _) = seed(&dst).unwrap();
        assert_eq!(again.manifest, info.manifest);
    }

    #[test]
    fn symlinks_leaving_the_tree_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("esc");
        write(&src.join("sub/f"), b"x", 0o644);
        symlink("../../etc", src.join("sub/etc")).unwrap();
        let err = refused(&src, Code::InvalidArgument);
        assert!(err.message.contains("sub/etc") && err.message.contains("escapes"), "{err}");

        let src = tmp.path().join("abs");
        write(&src.join("f"), b"x", 0o644);
        symlink("/etc/passwd", src.join("passwd")).unwrap();
        let err = refused(&src, Code::InvalidArgument);
        assert!(err.message.contains("passwd") && err.message.contains("absolute"), "{err}");

        // Each link alone stays inside, but followed through `b` (-> the root) `c` climbs out.
        let src = tmp.path().join("chain");
        fs::create_dir_all(src.join("d1/d2")).unwrap();
        symlink("../..", src.join("d1/d2/b")).unwrap();
        symlink("b/../..", src.join("d1/d2/c")).unwrap();
        let err = refused(&src, Code::InvalidArgument);
        assert!(err.message.contains("d1/d2/c") && err.message.contains("through symlink d1/d2/b"), "{err}");
    }

    #[test]
    fn special_and_non_utf8_files_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("fifo");
        fs::create_dir_all(&src).unwrap();
        let c = std::ffi::CString::new(src.join("pipe").as_os_str().as_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let err = refused(&src, Code::InvalidArgument);
        assert!(err.message.contains("pipe is a FIFO"), "{err}");

        let src = tmp.path().join("utf8");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join(OsStr::from_bytes(b"bad\xffname")), b"x").unwrap();
        let err = refused(&src, Code::InvalidArgument);
        assert!(err.message.contains("not valid UTF-8"), "{err}");
    }

    #[test]
    fn missing_and_unsupported_sources() {
        let tmp = tempfile::tempdir().unwrap();
        let err = refused(&tmp.path().join("nope"), Code::NotFound);
        assert!(err.message.contains("does not exist"), "{err}");
        assert_eq!(detect_kind(&tmp.path().join("nope")).unwrap_err().code, Code::NotFound);
        let zip = tmp.path().join("x.zip");
        fs::write(&zip, b"PK\x03\x04rest of a zip").unwrap();
        let err = refused(&zip, Code::InvalidArgument);
        assert!(err.message.contains("zip"), "{err}");
        assert!(err.hint.as_deref().unwrap_or("").contains(".tar.gz"), "{err:?}");
        let fake = tmp.path().join("x.tgz");
        fs::write(&fake, b"plain text").unwrap();
        assert_eq!(detect_kind(&fake).unwrap_err().code, Code::InvalidArgument);
    }

    fn git_available() -> bool {
        Command::new("git").arg("--version").output().map(|o| o.status.success()).unwrap_or(false)
    }

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = git_command(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false"])
            .args(["-c", "init.defaultBranch=main"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn git_checkout_sends_tracked_untracked_and_dot_git() {
        if !git_available() {
            eprintln!("git not installed: skipped");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("repo");
        fs::create_dir_all(&src).unwrap();
        git(&src, &["init", "-q"]);
        write(&src.join("tracked.txt"), b"v1\n", 0o644);
        write(&src.join("src/lib.rs"), b"// lib\n", 0o644);
        write(&src.join("gone.txt"), b"soon deleted\n", 0o644);
        write(&src.join(".gitignore"), b"ignored.txt\nbuild/\n", 0o644);
        git(&src, &["add", "."]);
        git(&src, &["commit", "-q", "-m", "init"]);
        write(&src.join("tracked.txt"), b"v2, uncommitted\n", 0o644);
        write(&src.join("new/untracked.txt"), b"new\n", 0o644);
        write(&src.join("ignored.txt"), b"secret\n", 0o644);
        write(&src.join("build/out.bin"), b"artifact", 0o644);
        fs::remove_file(src.join("gone.txt")).unwrap();

        assert_eq!(detect_kind(&src).unwrap(), SourceKind::GitCheckout);
        let (info, out) = seed(&src).unwrap();
        assert_eq!(info.kind, SourceKind::GitCheckout);
        let p = paths(&info);
        for want in [".gitignore", "tracked.txt", "src", "src/lib.rs", "new", "new/untracked.txt", ".git", ".git/HEAD"]
        {
            assert!(p.contains(&want), "{want} missing from {p:?}");
        }
        for unwanted in ["ignored.txt", "build", "build/out.bin", "gone.txt"] {
            assert!(!p.contains(&unwanted), "{unwanted} should not be seeded");
        }
        assert!(p.windows(2).all(|w| w[0] < w[1]), "manifest not sorted");
        assert_eq!(entry(&info, "tracked.txt").sha256.as_deref(), Some(sha(b"v2, uncommitted\n").as_str()));
        check_normalized(&out);

        // git works on the unpacked copy and sees the same changes.
        let dst = tmp.path().join("dst");
        unpack(&out, &dst);
        let status = git(&dst, &["status", "--porcelain"]);
        assert!(status.contains(" M tracked.txt") && status.contains(" D gone.txt"), "{status}");
        assert!(status.contains("?? new/") && !status.contains("ignored"), "{status}");
        assert_eq!(git(&dst, &["log", "--format=%s"]).trim(), "init");

        // A sub-directory of a checkout is a plain directory: everything in it.
        assert_eq!(detect_kind(&src.join("src")).unwrap(), SourceKind::Directory);
    }

    #[test]
    fn a_source_changing_between_passes_fails() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src.join("f.txt"), b"0123456789", 0o644);
        let limits = Limits { bytes: MAX_SEED_BYTES, entries: MAX_SEED_ENTRIES };
        let det = detect(&src).unwrap();
        let plan = plan_host(&det, limits).unwrap();
        fs::write(src.join("f.txt"), b"0123").unwrap();
        let err = emit_host(&plan, &mut Vec::new()).unwrap_err();
        assert_eq!(err.code, Code::Conflict, "{err}");
        assert!(err.message.contains("f.txt") && err.message.contains("size"), "{err}");
        fs::write(src.join("f.txt"), b"abcdefghij").unwrap();
        let err = emit_host(&plan, &mut Vec::new()).unwrap_err();
        assert!(err.message.contains("content differs"), "{err}");
    }

    #[test]
    fn limits_are_enforced() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        write(&src.join("a/one"), b"12345", 0o644);
        write(&src.join("a/two"), b"67890", 0o644);
        let ok = build_limited(&src, &mut Vec::new(), Limits { bytes: 10, entries: 3 }).unwrap();
        assert_eq!((ok.entries, ok.bytes), (3, 10));
        let mut out = Vec::new();
        let err = build_limited(&src, &mut out, Limits { bytes: 9, entries: 3 }).unwrap_err();
        assert_eq!(err.code, Code::LimitExceeded);
        assert!(err.message.contains("10 bytes") && err.message.contains("limit of 9"), "{err}");
        let err = build_limited(&src, &mut out, Limits { bytes: 10, entries: 2 }).unwrap_err();
        assert_eq!(err.code, Code::LimitExceeded);
        assert!(err.message.contains("more than 2 entries"), "{err}");
        assert!(out.is_empty());

        let tar_path = tmp.path().join("s.tar");
        fs::write(&tar_path, tar_of(&[("a", b"12345"), ("b", b"67890")])).unwrap();
        let err = build_limited(&tar_path, &mut out, Limits { bytes: 9, entries: 10 }).unwrap_err();
        assert_eq!(err.code, Code::LimitExceeded);
        assert!(err.message.contains("more than 9 bytes"), "{err}");
        let err = build_limited(&tar_path, &mut out, Limits { bytes: 100, entries: 1 }).unwrap_err();
        assert_eq!(err.code, Code::LimitExceeded);
        assert!(out.is_empty());
    }

    /// One member with a raw (unchecked) name, so tests can build hostile archives.
    fn raw_member(b: &mut tar::Builder<Vec<u8>>, name: &[u8], ty: EntryType, link: &[u8], data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        {
            let gnu = h.as_gnu_mut().unwrap();
            gnu.name[..name.len()].copy_from_slice(name);
            gnu.linkname[..link.len()].copy_from_slice(link);
        }
        h.set_entry_type(ty);
        h.set_size(data.len() as u64);
        h.set_mode(if ty == EntryType::Directory { 0o755 } else { 0o644 });
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            raw_member(&mut b, name.as_bytes(), EntryType::Regular, b"", data);
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn sample_archive() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        raw_member(&mut b, b"./", EntryType::Directory, b"", b"");
        raw_member(&mut b, b"./src/", EntryType::Directory, b"", b"");
        raw_member(&mut b, b"./src/main.rs", EntryType::Regular, b"", b"fn main() {}\n");
        raw_member(&mut b, b"implicit/dir/file.txt", EntryType::Regular, b"", b"nested");
        raw_member(&mut b, b"implicit/", EntryType::Directory, b"", b"");
        raw_member(&mut b, b"tool", EntryType::Regular, b"", b"#!/bin/sh\n");
        raw_member(&mut b, b"one-link", EntryType::Link, b"tool", b"");
        raw_member(&mut b, b"copy1", EntryType::Link, b"./src/main.rs", b"");
        raw_member(&mut b, b"copy2", EntryType::Link, b"copy1", b"");
        raw_member(&mut b, b"src/lnk", EntryType::Symlink, b"main.rs", b"");
        // Long names go through GNU long-name headers.
        let long = format!("{}/{}.txt", "d".repeat(120), "f".repeat(150));
        let mut h = header(EntryType::Regular, 0o755, 1_700_000_000, 4);
        b.append_data(&mut h, &long, &b"long"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn tar_and_tar_gz_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let raw = sample_archive();
        let plain = tmp.path().join("seed.tar");
        fs::write(&plain, &raw).unwrap();
        let (info, out) = seed(&plain).unwrap();
        assert_eq!(info.kind, SourceKind::Tar);
        let long = format!("{}/{}.txt", "d".repeat(120), "f".repeat(150));
        let mut want = vec![
            "copy1",
            "copy2",
            "implicit",
            "implicit/dir",
            "implicit/dir/file.txt",
            "one-link",
            "src",
            "src/lnk",
            "src/main.rs",
            "tool",
            &long[..120],
            &long,
        ];
        want.sort();
        assert_eq!(paths(&info), want);
        let main_sha = sha(b"fn main() {}\n");
        for p in ["src/main.rs", "copy1", "copy2"] {
            let e = entry(&info, p);
            assert_eq!((e.kind.as_str(), e.sha256.as_deref()), (FILE, Some(main_sha.as_str())), "{p}");
        }
        assert_eq!(entry(&info, "one-link").sha256.as_deref(), Some(sha(b"#!/bin/sh\n").as_str()));
        assert_eq!(entry(&info, &long).mode, 0o755);
        assert_eq!(entry(&info, "src/lnk").target.as_deref(), Some("main.rs"));
        assert_eq!(info.bytes, 13 * 3 + 6 + 10 * 2 + 4);
        check_normalized(&out);
        let dst = tmp.path().join("dst");
        unpack(&out, &dst);
        let (again, _) = seed(&dst).unwrap();
        assert_eq!(again.manifest, info.manifest);
        assert_eq!(fs::metadata(dst.join("tool")).unwrap().mtime(), 1_700_000_000);

        // Gzip: by extension, and by magic bytes whatever the name.
        for name in ["seed.tar.gz", "seed.tgz", "seed.bin"] {
            let gz = tmp.path().join(name);
            fs::write(&gz, gzip(&raw)).unwrap();
            assert_eq!(detect_kind(&gz).unwrap(), SourceKind::TarGz, "{name}");
            let (gz_info, gz_out) = seed(&gz).unwrap();
            assert_eq!(gz_info.manifest, info.manifest);
            assert_eq!(gz_out, out);
        }
    }

    fn refused_archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>), needle: &str) {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        raw_member(&mut b, b"fine.txt", EntryType::Regular, b"", b"ok");
        build(&mut b);
        let raw = b.into_inner().unwrap();
        for (name, data) in [("bad.tar", raw.clone()), ("bad.tar.gz", gzip(&raw))] {
            let p = tmp.path().join(name);
            fs::write(&p, data).unwrap();
            let err = refused(&p, Code::InvalidArgument);
            assert!(err.message.contains(needle), "expected {needle:?} in: {err}");
        }
    }

    #[test]
    fn hostile_archives_are_refused() {
        refused_archive(
            |b| raw_member(b, b"../x", EntryType::Regular, b"", b"evil"),
            "member ../x refused: its path has a '..'",
        );
        refused_archive(|b| raw_member(b, b"a/../../x", EntryType::Regular, b"", b""), "'..'");
        refused_archive(
            |b| raw_member(b, b"/etc/passwd", EntryType::Regular, b"", b"x"),
            "/etc/passwd refused: its path is absolute",
        );
        refused_archive(
            |b| raw_member(b, b"dev/null", EntryType::Char, b"", b""),
            "dev/null refused: it is a device file",
        );
        refused_archive(|b| raw_member(b, b"sda", EntryType::Block, b"", b""), "device file");
        refused_archive(|b| raw_member(b, b"pipe", EntryType::Fifo, b"", b""), "FIFO");
        refused_archive(|b| raw_member(b, b"", EntryType::Regular, b"", b""), "empty name");
        refused_archive(|b| raw_member(b, b"fine.txt", EntryType::Regular, b"", b"again"), "duplicate");
        refused_archive(|b| raw_member(b, b"./fine.txt", EntryType::Regular, b"", b"again"), "duplicate");
        refused_archive(|b| raw_member(b, b"bad\xff", EntryType::Regular, b"", b""), "not valid UTF-8");
        refused_archive(|b| raw_member(b, b"esc", EntryType::Symlink, b"../../etc", b""), "escapes");
        refused_archive(|b| raw_member(b, b"abs", EntryType::Symlink, b"/etc", b""), "absolute");
        refused_archive(
            |b| {
                raw_member(b, b"h", EntryType::Link, b"later", b"");
                raw_member(b, b"later", EntryType::Regular, b"", b"x");
            },
            "not an earlier regular file",
        );
        refused_archive(|b| raw_member(b, b"h", EntryType::Link, b"/etc/shadow", b""), "absolute");
        refused_archive(
            |b| {
                raw_member(b, b"d", EntryType::Symlink, b".", b"");
                raw_member(b, b"d/x", EntryType::Regular, b"", b"through the link");
            },
            "its parent d is a symlink",
        );
        refused_archive(
            |b| {
                let mut h = header(EntryType::Regular, 0o644, 0, 0);
                b.append_data(&mut h, format!("{}.txt", "n".repeat(300)), io::empty()).unwrap();
            },
            "bytes long (limit 255)",
        );
        refused_archive(
            |b| {
                let long = vec!["p".repeat(200); 25].join("/");
                let mut h = header(EntryType::Regular, 0o644, 0, 0);
                b.append_data(&mut h, long, io::empty()).unwrap();
            },
            "long name",
        );
    }

    #[test]
    fn corrupt_archives_are_invalid() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("trunc.tar");
        let raw = tar_of(&[("a", &[7u8; 5000][..])]);
        fs::write(&p, &raw[..2048]).unwrap();
        let err = refused(&p, Code::InvalidArgument);
        assert!(err.message.contains("not a readable tar archive"), "{err}");
        let p = tmp.path().join("text.gz");
        fs::write(&p, gzip(b"just some text, not a tar archive at all")).unwrap();
        refused(&p, Code::InvalidArgument);
    }

    #[test]
    fn resolver_cases() {
        let links: HashMap<&str, &str> = [("a/b", "../c"), ("c", "x/y"), ("loop", "loop")].into_iter().collect();
        assert!(resolve_in_tree("a/l", "..", None).is_ok());
        assert_eq!(resolve_in_tree("a/l", "../..", None), Err(None));
        assert!(resolve_in_tree("l", "a/b/..", Some(&links)).is_ok());
        assert_eq!(resolve_in_tree("l", "c/../../..", Some(&links)), Err(Some("c".into())));
        assert!(resolve_in_tree("l", "loop/x", Some(&links)).is_ok());
    }
}
