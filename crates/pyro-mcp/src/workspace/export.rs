//! `workspace export`: copy a file or directory out of the guest to a new host path.
//!
//! Everything in the archive is hostile (guest root writes it), and the output lands in the
//! user's project, where some files are code the host runs (`.git/hooks`, `core.fsmonitor`
//! in `.git/config`). So an export:
//!
//! - never writes at or below a directory named `.git` on the host (the output path and its
//!   resolved parent are checked), and leaves out the guest's `.git/config`, `.git/hooks` and
//!   `.git/info` unless the CLI user asks (`include_git_config`; never through MCP);
//! - resolves every symlink in the exported tree lexically against that tree, following links
//!   to links, and drops (with a note in the report) any that leaves it or is absolute;
//! - drops setuid, setgid, sticky and group/world-write bits;
//! - is capped in size (`max_bytes`, default 2 GiB): the guest-reported size and the host's
//!   free space are checked first, then the tar stream and the file contents are counted
//!   while they stream, and the export stops at once past the cap;
//! - extracts the stream once, into a private staging dir beside the output (same file
//!   system), and renames the result into place: a failed export leaves nothing behind.

use super::base::Workspaces;
use super::event::WorkspaceEvent;
use super::files::rel;
use super::guest_path;
use crate::error::{Code, Context, Error, Result};
use crate::text::clip;
use pyro_proto::Request;
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Default cap on an export's file contents.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;
/// Most entries one export may hold.
pub const MAX_ENTRIES: u64 = 1_000_000;
/// Most symlink hops followed while resolving one link (as the kernel's 40).
const MAX_HOPS: usize = 40;
/// Most skipped entries listed by name in the report (the count is always exact).
const MAX_SKIPPED_LISTED: usize = 100;
/// Names under a `.git` directory that the host's git runs or obeys.
const GIT_PROTECTED: [&str; 4] = ["config", "config.worktree", "hooks", "info"];

/// Export options. MCP always uses the defaults.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Cap on the exported file contents (default `DEFAULT_MAX_BYTES`).
    pub max_bytes: Option<u64>,
    /// Keep the guest's `.git/config`, `.git/hooks` and `.git/info` (left out by default:
    /// they can make the host's git run code).
    pub include_git_config: bool,
}

/// `export`: what was copied out, and where.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ExportReport {
    /// The workspace exported from (its id).
    pub workspace_id: String,
    /// The path in the workspace that was copied out.
    pub path: String,
    /// The host path it was copied to.
    pub output_path: PathBuf,
    /// `file` or `directory`.
    pub artifact_type: String,
    /// Files, directories and symlinks written.
    pub entry_count: u64,
    /// Bytes of file content written.
    pub bytes_written: u64,
    /// Entries left out, and why (escaping or absolute symlinks, git config and hooks); at
    /// most 100 listed, `skipped_count` counts them all.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedEntry>,
    /// How many entries were left out in all; absent when none.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped_count: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An entry `export` left out instead of writing it to the host.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct SkippedEntry {
    /// Relative to the export's top entry's parent (as in the archive).
    pub path: String,
    /// Why it was left out (an escaping or absolute symlink, git config or hooks, ...).
    pub reason: String,
}

impl Workspaces<'_> {
    /// Copy a file or directory out to a host path that must not exist yet, with the defaults.
    pub fn export(&mut self, key: &str, path: &str, output: &Path) -> Result<ExportReport> {
        self.export_with(key, path, output, &ExportOptions::default())
    }

    /// Copy a file or directory out to a host path that must not exist yet.
    pub fn export_with(&mut self, key: &str, path: &str, output: &Path, o: &ExportOptions) -> Result<ExportReport> {
        let gp = guest_path(path)?;
        let max_bytes = crate::error::in_range("max_bytes", o.max_bytes.unwrap_or(DEFAULT_MAX_BYTES), 1, u64::MAX)?;
        let (parent, name) = check_output(output)?;
        let r = self.resolve(key)?;
        let (mut c, _) = self.connect(&r)?;

        // What the guest says it holds: checked against the cap and the free space first, so
        // a 64 GiB sparse file is refused before a byte of it moves.
        let (mut count, mut bytes) = (0u64, 0u64);
        let listing = c.entries_each(
            &Request::FsList { path: gp.clone(), recursive: true, max_entries: MAX_ENTRIES as u32 },
            MAX_ENTRIES,
            &mut |e| {
                count += 1;
                if e.kind == pyro_proto::EntryKind::File {
                    bytes = bytes.saturating_add(e.size);
                }
            },
        )?;
        if listing || count >= MAX_ENTRIES || bytes > max_bytes {
            return Err(too_big(max_bytes, Some(bytes)));
        }
        if let Some(free) = crate::env::build::free_bytes(&parent) {
            // Room for the contents plus a block per entry.
            let need = bytes.saturating_add(count.saturating_mul(4096));
            if free < need {
                return Err(Error::limit(format!(
                    "the export needs about {need} bytes; {} has {free} free",
                    parent.display()
                ))
                .hint("free some space, or export a smaller path"));
            }
        }

        let stage = parent.join(format!(".pyro-export-{}", crate::vm::new_id()));
        crate::paths::private_dir(&stage)?;
        let rules = Rules {
            guest_parent: Path::new(&gp).parent().map(Path::to_path_buf).unwrap_or_default(),
            include_git_config: o.include_git_config,
            max_bytes,
        };
        let out_dir = stage.join("out");
        let result = (|| {
            let x = stream_and_extract(&mut c, &gp, &out_dir, &rules)?;
            let final_path = parent.join(&name);
            std::fs::rename(out_dir.join(&x.top), &final_path).ctx(format!("moving export to {}", output.display()))?;
            if let Some(mode) = x.top_dir_mode {
                // Last, so a read-only top directory could still be renamed into place.
                set_mode(&final_path, mode)?;
            }
            Ok(x)
        })();
        let _ = std::fs::remove_dir_all(&stage);
        let x = result?;
        let kind = if x.top_dir_mode.is_some() { "directory" } else { "file" };
        self.store.event(
            &r.id,
            &WorkspaceEvent::Export {
                path: rel(&gp),
                output: clip(&output.display().to_string(), 300),
                entries: x.entries,
                bytes: x.bytes,
                skipped: x.skipped_count,
            },
        )?;
        Ok(ExportReport {
            workspace_id: r.id,
            path: gp,
            output_path: output.to_path_buf(),
            artifact_type: kind.into(),
            entry_count: x.entries,
            bytes_written: x.bytes,
            skipped: x.skipped,
            skipped_count: x.skipped_count,
        })
    }
}

fn too_big(max: u64, reported: Option<u64>) -> Error {
    let what = match reported {
        Some(b) if b > max => format!("the export holds {b} bytes; the limit is {max}"),
        _ => format!("the export is larger than the limit of {max} bytes (or has more than {MAX_ENTRIES} entries)"),
    };
    Error::limit(what).hint("export a sub-directory, or raise the cap with `--max-bytes` (CLI) or ExportOptions")
}

/// Is `c` a path component named `.git` (any case: some host file systems fold case)?
fn is_git(c: &OsStr) -> bool {
    c.as_bytes().eq_ignore_ascii_case(b".git")
}

/// The output must be new, its parent a directory, and neither the path as given nor its
/// resolved parent may pass through a `.git` directory. Returns (resolved parent, name).
pub fn check_output(output: &Path) -> Result<(PathBuf, OsString)> {
    if output.as_os_str().is_empty() {
        return Err(Error::invalid("output path is empty"));
    }
    let git_refusal = || {
        Error::invalid(format!("{} is inside a .git directory; export refuses to write there", output.display()))
            .hint("git runs hooks and config from .git: export to a path outside it")
    };
    if output.components().any(|c| is_git(c.as_os_str())) {
        return Err(git_refusal());
    }
    let name = match output.components().next_back() {
        Some(Component::Normal(n)) => n.to_owned(),
        _ => return Err(Error::invalid(format!("{} does not end in a file name", output.display()))),
    };
    if std::fs::symlink_metadata(output).is_ok() {
        return Err(Error::new(Code::Conflict, format!("{} already exists", output.display()))
            .hint("export never overwrites: choose a new output path"));
    }
    let parent = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(Error::not_found(format!("{} does not exist", parent.display())));
    }
    // A link in the parent (`hooks -> .git/hooks`) must not lead into .git either.
    let real = std::fs::canonicalize(parent).ctx(format!("resolving {}", parent.display()))?;
    if real.components().any(|c| is_git(c.as_os_str())) {
        return Err(git_refusal());
    }
    Ok((real, name))
}

/// What the extraction must enforce.
struct Rules {
    /// The guest path holding the exported entry (member names are relative to it).
    guest_parent: PathBuf,
    include_git_config: bool,
    max_bytes: u64,
}

impl Rules {
    /// Is this member (archive path) git config or hooks the host's git would obey?
    fn git_protected(&self, member: &Path) -> bool {
        if self.include_git_config {
            return false;
        }
        let comps: Vec<&OsStr> =
            self.guest_parent.components().chain(member.components()).map(|c| c.as_os_str()).collect();
        match comps.iter().position(|c| is_git(c)) {
            Some(i) => comps[i + 1..].iter().any(|c| GIT_PROTECTED.iter().any(|p| c.as_bytes() == p.as_bytes())),
            None => false,
        }
    }
}

struct Extracted {
    top: OsString,
    entries: u64,
    bytes: u64,
    /// The top entry's (sanitized) mode when it is a directory.
    top_dir_mode: Option<u32>,
    skipped: Vec<SkippedEntry>,
    skipped_count: u64,
}

/// Counts what goes into the extraction pipe, and stops past `cap`.
struct Feed<'a> {
    pipe: std::io::PipeWriter,
    sent: u64,
    cap: u64,
    exceeded: &'a mut bool,
    /// The extraction stopped reading (it failed, and its error says why).
    broken: &'a mut bool,
}

impl Write for Feed<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.sent.saturating_add(buf.len() as u64) > self.cap {
            *self.exceeded = true;
            return Err(std::io::Error::other("the export stream passed its cap"));
        }
        self.pipe.write_all(buf).inspect_err(|_| *self.broken = true)?;
        self.sent += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stream the guest's archive through a pipe into an extraction thread: one pass, nothing
/// buffered whole, and either side failing stops the other.
fn stream_and_extract(c: &mut crate::vm::client::Client, gp: &str, out_dir: &Path, rules: &Rules) -> Result<Extracted> {
    std::fs::create_dir(out_dir).ctx("creating export staging dir")?;
    let (reader, writer) = std::io::pipe().ctx("creating export pipe")?;
    // Archive overhead (headers, long names, padding) may add as much again as the contents.
    let cap = rules.max_bytes.saturating_mul(2).saturating_add(16 << 20);
    let (mut exceeded, mut broken) = (false, false);
    std::thread::scope(|s| {
        let worker = s.spawn(move || extract(reader, out_dir, rules));
        let streamed = {
            let mut feed = Feed { pipe: writer, sent: 0, cap, exceeded: &mut exceeded, broken: &mut broken };
            c.tar_out(gp, &mut feed)
            // The writer closes here, so the extraction sees the end of the archive.
        };
        let extracted = worker.join().unwrap_or_else(|_| Err(Error::internal("the export extraction panicked")));
        match (streamed, extracted) {
            _ if exceeded => Err(too_big(rules.max_bytes, None)),
            // The extraction stopped reading first: its error says why.
            (Err(_), Err(e)) if broken => Err(e),
            // Otherwise the guest's refusal is the cause (the extraction only saw a short
            // archive).
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(_), Ok(x)) => Ok(x),
        }
    })
}

/// One member's kind, kept for resolving links afterwards.
enum Kind {
    Dir,
    File,
    Link(Vec<u8>),
}

/// Extract an archive into `dest`, refusing anything that could land outside it, anything
/// but plain files, directories and symlinks, and more than `max_bytes` of contents. Files
/// and directories are written as they stream; symlinks are created at the end, once every
/// member is known, and only those that resolve inside the tree.
fn extract(reader: impl Read, dest: &Path, rules: &Rules) -> Result<Extracted> {
    let mut ar = tar::Archive::new(reader);
    let mut members: HashMap<PathBuf, Kind> = HashMap::new();
    let mut order: Vec<PathBuf> = Vec::new();
    let mut dirs: Vec<(PathBuf, u32)> = Vec::new();
    let mut top: Option<OsString> = None;
    // `seen` counts members (for the cap), `entries` what was written.
    let (mut seen, mut entries, mut bytes) = (0u64, 0u64, 0u64);
    let mut skipped = Skipped::default();
    for e in ar.entries().ctx("reading export archive")? {
        let mut e = e.ctx("reading export archive")?;
        let p = e.path().ctx("reading export archive")?.to_path_buf();
        let ps = p.display().to_string();
        if p.as_os_str().is_empty() || p.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Error::invalid(format!("export member {} escapes the export", clip(&ps, 200))));
        }
        let first = p.components().next().map(|c| c.as_os_str().to_owned()).unwrap_or_default();
        match &top {
            None => top = Some(first),
            Some(t) if *t != first => return Err(Error::invalid("export archive has more than one top entry")),
            _ => {}
        }
        seen += 1;
        if seen > MAX_ENTRIES {
            return Err(too_big(rules.max_bytes, None));
        }
        if members.contains_key(&p) {
            return Err(Error::invalid(format!("export member {} appears twice", clip(&ps, 200))));
        }
        let et = e.header().entry_type();
        let mode = e.header().mode().unwrap_or(0o644);
        if rules.git_protected(&p) {
            if p.components().count() == 1 {
                return Err(Error::invalid(format!("{ps} is git configuration or hooks; export leaves it out"))
                    .hint("the CLI's --include-git-config exports it anyway"));
            }
            skipped.add(&p, "git config, hooks or info (the host's git would run or obey it)");
            continue;
        }
        // Parents come before children in the guest's archive; a member whose parent is not
        // a directory member (or is a link) is refused, so nothing is written through a link.
        if let Some(parent) = p.parent().filter(|q| !q.as_os_str().is_empty()) {
            if !matches!(members.get(parent), Some(Kind::Dir)) {
                if skipped.covers(parent) {
                    skipped.add(&p, "inside a left-out entry");
                    continue;
                }
                return Err(Error::invalid(format!("export member {} has no directory above it", clip(&ps, 200))));
            }
        }
        let target = dest.join(&p);
        if et.is_dir() {
            std::fs::DirBuilder::new().mode(0o700).create(&target).ctx(format!("creating {}", clip(&ps, 200)))?;
            dirs.push((p.clone(), sanitize(mode)));
            members.insert(p.clone(), Kind::Dir);
            entries += 1;
        } else if et.is_file() {
            let size = e.header().size().unwrap_or(u64::MAX);
            if bytes.saturating_add(size) > rules.max_bytes {
                return Err(too_big(rules.max_bytes, None));
            }
            let f = std::fs::File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&target)
                .ctx(format!("creating {}", clip(&ps, 200)))?;
            let mut limited = (&mut e).take(size);
            let copied = std::io::copy(&mut limited, &mut &f).ctx(format!("writing {}", clip(&ps, 200)))?;
            if copied != size {
                return Err(Error::invalid(format!("export member {} is cut short", clip(&ps, 200))));
            }
            bytes += copied;
            f.set_permissions(std::fs::Permissions::from_mode(sanitize(mode)))
                .ctx(format!("setting the mode of {}", clip(&ps, 200)))?;
            members.insert(p.clone(), Kind::File);
            entries += 1;
        } else if et.is_symlink() {
            let link = e.link_name_bytes().map(|b| b.into_owned()).unwrap_or_default();
            members.insert(p.clone(), Kind::Link(link));
            order.push(p.clone());
        } else {
            return Err(Error::invalid(format!("{} is a special file; export refuses it", clip(&ps, 200))));
        }
    }
    let top = top.ok_or_else(|| Error::not_found("nothing to export"))?;
    let top_path = PathBuf::from(&top);
    for link in &order {
        let Some(Kind::Link(target)) = members.get(link) else { continue };
        match resolve_link(&members, &top_path, link) {
            Ok(()) => {
                std::os::unix::fs::symlink(OsStr::from_bytes(target), dest.join(link))
                    .ctx(format!("creating link {}", link.display()))?;
                entries += 1;
            }
            Err(why) => {
                if link == &top_path {
                    return Err(Error::invalid(format!(
                        "{} is a symlink that {why}; export refuses it",
                        link.display()
                    )));
                }
                skipped.add(link, &format!("symlink that {why}"));
            }
        }
    }
    // Deepest first, the top last (after its rename): a read-only directory is set last.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    let mut top_dir_mode = None;
    for (p, mode) in dirs {
        if p == top_path {
            top_dir_mode = Some(mode);
        } else {
            set_mode(&dest.join(&p), mode)?;
        }
    }
    Ok(Extracted { top, entries, bytes, top_dir_mode, skipped: skipped.listed, skipped_count: skipped.count })
}

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

/// Entries left out so far.
#[derive(Default)]
struct Skipped {
    listed: Vec<SkippedEntry>,
    /// Directories left out: their members are left out too, without a note each.
    dirs: Vec<PathBuf>,
    count: u64,
}

impl Skipped {
    fn covers(&self, p: &Path) -> bool {
        self.dirs.iter().any(|d| p.starts_with(d))
    }

    fn add(&mut self, p: &Path, reason: &str) {
        self.count += 1;
        if self.covers(p) {
            return;
        }
        self.dirs.push(p.to_path_buf());
        if self.listed.len() < MAX_SKIPPED_LISTED {
            self.listed.push(SkippedEntry { path: clip(&p.display().to_string(), 300), reason: reason.into() });
        }
    }
}

/// Permissions only, and none that let others write or that change who a program runs as.
fn sanitize(mode: u32) -> u32 {
    mode & 0o777 & !0o022
}

fn set_mode(p: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .ctx(format!("setting the mode of {}", p.display()))
}

/// Resolve the link member `link` lexically inside the exported tree (whose top entry is
/// `top`), following links to other links in the tree. Err says how it leaves the tree.
fn resolve_link(members: &HashMap<PathBuf, Kind>, top: &Path, link: &Path) -> std::result::Result<(), &'static str> {
    let mut resolved: Vec<OsString> =
        link.parent().into_iter().flat_map(|p| p.components()).map(|c| c.as_os_str().to_owned()).collect();
    let Some(Kind::Link(first)) = members.get(link) else { return Ok(()) };
    let mut pending: Vec<OsString> = Vec::new();
    let push_target = |pending: &mut Vec<OsString>, t: &[u8]| -> std::result::Result<(), &'static str> {
        let t = Path::new(OsStr::from_bytes(t));
        if t.is_absolute() {
            return Err("has an absolute target");
        }
        if t.as_os_str().is_empty() {
            return Err("has an empty target");
        }
        // `pending` is a stack: the target's first component goes on top.
        for c in t.components().rev() {
            pending.push(c.as_os_str().to_owned());
        }
        Ok(())
    };
    push_target(&mut pending, first)?;
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        match c.as_bytes() {
            b"." => {}
            b".." => {
                resolved.pop();
            }
            _ => {
                resolved.push(c);
                let here: PathBuf = resolved.iter().collect();
                if let Some(Kind::Link(t)) = members.get(&here) {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Err("loops");
                    }
                    resolved.pop();
                    push_target(&mut pending, t)?;
                }
            }
        }
        // The top entry is the whole export: nothing may resolve beside or above it, even
        // on the way (on the host, the top is renamed, so `../top/x` names something else).
        if resolved.first().is_none_or(|f| Path::new(f) != top) {
            return Err("points outside the export");
        }
    }
    if resolved.first().is_none_or(|f| Path::new(f) != top) {
        return Err("points outside the export");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
