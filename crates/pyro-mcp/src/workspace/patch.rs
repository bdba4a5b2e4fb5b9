//! Unified-diff patches for workspaces: parsing `git diff` and `diff -u` / `diff -ruN` output,
//! applying it all-or-nothing against in-memory file contents, and producing unified diffs.
//!
//! Pure: no I/O. [`apply`] asks the caller for current contents through a callback and returns
//! the full new state of every touched path as [`FileChange`]s, which the caller writes to the
//! guest as one batch; on any failure it returns an error and nothing to write. File contents are
//! bytes (CRLF and non-UTF-8 files work); only the patch text itself is `&str`.

use crate::error::{Code, Error, Result};
use std::collections::HashSet;

/// Largest patch text [`apply`] accepts.
pub const MAX_PATCH_BYTES: usize = 1 << 20; // 1 MiB
/// Most files one patch may touch.
pub const MAX_FILES: usize = 1000;
/// Longest path accepted in a patch, in bytes.
const MAX_PATH_BYTES: usize = 4096;
/// Context lines around each change in [`unified_diff`] output.
const CONTEXT: usize = 3;
/// Mode of new files when the patch does not give one.
const DEFAULT_MODE: u32 = 0o644;
const NO_NEWLINE: &str = "\\ No newline at end of file";

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
    /// New full content: None for Deleted and for ModeChanged (content unchanged).
    pub content: Option<Vec<u8>>,
    /// Permission bits to set (e.g. 0o755): when the patch sets a mode, for new files
    /// (default 0o644) and for renames (the source's mode unless the patch changes it).
    pub mode: Option<u32>,
    pub hunks: usize,
    pub additions: usize,
    pub deletions: usize,
}

/// The current state of a file, as the caller's `read` callback reports it.
#[derive(Debug, Clone)]
pub struct Current {
    pub content: Vec<u8>,
    pub mode: u32,
}

/// Parse the whole patch first (validating paths and structure), then apply every hunk in memory
/// against the current files obtained through `read` (None = file does not exist). Any failure
/// returns an Error naming the file and the hunk (e.g. "hunk 2 of src/lib.rs does not apply at line 40")
/// and nothing is returned to write.
pub fn apply(patch: &str, read: &mut dyn FnMut(&str) -> Result<Option<Current>>) -> Result<Vec<FileChange>> {
    if patch.len() > MAX_PATCH_BYTES {
        return Err(Error::limit(format!(
            "patch is {} bytes, more than the limit of {MAX_PATCH_BYTES} bytes (1 MiB)",
            patch.len()
        ))
        .hint("split the change into several smaller patches"));
    }
    let sections = parse(patch)?;
    let mut seen = HashSet::new();
    for s in &sections {
        let source = match &s.kind {
            Kind::Rename(from) => Some(from),
            _ => None,
        };
        for p in std::iter::once(&s.path).chain(source) {
            if !seen.insert(p.as_str()) {
                return Err(Error::invalid(format!("{p} appears more than once in the patch"))
                    .hint("give each file a single section: combine its changes into one diff"));
            }
        }
    }
    sections.iter().map(|s| apply_section(s, read)).collect()
}

/// Produce a unified diff (like `diff -u` / git, with `--- a/PATH` / `+++ b/PATH` headers, 3 lines of context,
/// `\ No newline at end of file` markers) of old -> new; None/empty for added/deleted handled via /dev/null headers.
///
/// The output carries a `diff --git` line (plus `new file mode` / `deleted file mode` for added and
/// deleted files) so that it also expresses empty added or deleted files. Identical inputs give an
/// empty string; content that is not UTF-8 text or contains NUL gives a `Binary files ... differ` line.
pub fn unified_diff(path: &str, old: Option<&[u8]>, new: Option<&[u8]>) -> String {
    let a = old.unwrap_or_default();
    let b = new.unwrap_or_default();
    if old.is_some() == new.is_some() && a == b {
        return String::new();
    }
    let a_name = output_name("a/", path);
    let b_name = output_name("b/", path);
    let mut out = format!("diff --git {} {}\n", a_name.trim_end_matches('\t'), b_name.trim_end_matches('\t'));
    if old.is_none() {
        out.push_str("new file mode 100644\n");
    }
    if new.is_none() {
        out.push_str("deleted file mode 100644\n");
    }
    let old_label = if old.is_some() { a_name.as_str() } else { "/dev/null" };
    let new_label = if new.is_some() { b_name.as_str() } else { "/dev/null" };
    if is_binary(a) || is_binary(b) {
        out.push_str(&format!(
            "Binary files {} and {} differ\n",
            old_label.trim_end_matches('\t'),
            new_label.trim_end_matches('\t')
        ));
        return out;
    }
    if a == b {
        return out;
    }
    out.push_str(&format!("--- {old_label}\n+++ {new_label}\n"));
    let old_lines = split_lines(a);
    let new_lines = split_lines(b);
    let ops = similar::capture_diff_slices(similar::Algorithm::Myers, &old_lines, &new_lines);
    for group in similar::group_diff_ops(ops, CONTEXT) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else { continue };
        let olds = first.old_range().start..last.old_range().end;
        let news = first.new_range().start..last.new_range().end;
        out.push_str(&format!("@@ -{} +{} @@\n", range_label(olds), range_label(news)));
        for op in &group {
            let (tag, o, n) = op.as_tag_tuple();
            match tag {
                similar::DiffTag::Equal => o.for_each(|i| push_line(&mut out, ' ', old_lines[i])),
                similar::DiffTag::Delete => o.for_each(|i| push_line(&mut out, '-', old_lines[i])),
                similar::DiffTag::Insert => n.for_each(|i| push_line(&mut out, '+', new_lines[i])),
                similar::DiffTag::Replace => {
                    o.for_each(|i| push_line(&mut out, '-', old_lines[i]));
                    n.for_each(|i| push_line(&mut out, '+', new_lines[i]));
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Output helpers

/// `@@` range: `start,count` with 1-based start, `start` alone for one line, and the line
/// before the change (`N,0`) for empty ranges, as diff prints them.
fn range_label(r: std::ops::Range<usize>) -> String {
    match r.len() {
        0 => format!("{},0", r.start),
        1 => format!("{}", r.start + 1),
        n => format!("{},{n}", r.start + 1),
    }
}

fn push_line(out: &mut String, prefix: char, line: &[u8]) {
    out.push(prefix);
    match line.strip_suffix(b"\n") {
        Some(body) => {
            out.push_str(&String::from_utf8_lossy(body));
            out.push('\n');
        }
        None => {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
            out.push_str(NO_NEWLINE);
            out.push('\n');
        }
    }
}

fn is_binary(content: &[u8]) -> bool {
    content.contains(&0) || std::str::from_utf8(content).is_err()
}

/// A path as git prints it in headers: C-quoted when it holds control characters, `"` or `\`,
/// and followed by a tab when it holds a space (so the name's end is unambiguous).
fn output_name(prefix: &str, path: &str) -> String {
    let needs_quote = path.bytes().any(|c| c < 0x20 || c == 0x7f || c == b'"' || c == b'\\');
    if !needs_quote {
        let name = format!("{prefix}{path}");
        return if name.contains(' ') { name + "\t" } else { name };
    }
    let mut out = format!("\"{prefix}");
    for c in path.chars() {
        match c {
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\{:03o}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// One line of a hunk body: `kind` is b' ', b'-' or b'+'; `newline` is false when a
/// `\ No newline at end of file` marker follows it.
struct Line<'a> {
    kind: u8,
    text: &'a [u8],
    newline: bool,
}

struct Hunk<'a> {
    old_start: usize,
    old_count: usize,
    lines: Vec<Line<'a>>,
}

impl Hunk<'_> {
    /// The lines of one side (`b'-'` = old, `b'+'` = new), each with its newline if it has one.
    fn side(&self, kind: u8) -> Vec<Vec<u8>> {
        self.lines
            .iter()
            .filter(|l| l.kind == b' ' || l.kind == kind)
            .map(|l| {
                let mut v = l.text.to_vec();
                if l.newline {
                    v.push(b'\n');
                }
                v
            })
            .collect()
    }
}

enum Kind {
    Modify,
    Add,
    /// A plain diff with a single `@@ -0,0` hunk: creates the file when it is missing.
    AddOrModify,
    Delete,
    Rename(String),
    Copy(String),
}

/// One file's part of the patch, with validated paths.
struct Section<'a> {
    path: String,
    kind: Kind,
    new_mode: Option<u32>,
    hunks: Vec<Hunk<'a>>,
}

struct Parser<'a> {
    lines: Vec<&'a str>,
    i: usize,
}

fn parse(patch: &str) -> Result<Vec<Section<'_>>> {
    let mut lines: Vec<&str> = patch.split('\n').collect();
    if patch.ends_with('\n') {
        lines.pop();
    }
    let mut p = Parser { lines, i: 0 };
    let mut out = Vec::new();
    while let Some(&line) = p.lines.get(p.i) {
        let section = if let Some(rest) = line.strip_prefix("diff --git ") {
            p.git_section(rest)?
        } else if line.starts_with("--- ") && p.lines.get(p.i + 1).is_some_and(|l| l.starts_with("+++ ")) {
            p.plain_section()?
        } else if let Some(names) = line.trim_end_matches('\r').strip_prefix("Binary files ") {
            if let Some(names) = names.strip_suffix(" differ") {
                return Err(binary_error(&plain_binary_name(names)));
            }
            p.i += 1;
            continue;
        } else if line.starts_with("@@ -") {
            return Err(Error::invalid(format!(
                "hunk header at line {} of the patch has no file header before it",
                p.i + 1
            ))
            .hint("each file's hunks must follow its `--- a/PATH` and `+++ b/PATH` lines"));
        } else {
            // Commit messages, `diff -ruN` command lines, `Only in` notes, `index` lines...
            p.i += 1;
            continue;
        };
        out.push(section);
        if out.len() > MAX_FILES {
            return Err(Error::limit(format!("patch touches more than {MAX_FILES} files"))
                .hint("split the change into several smaller patches"));
        }
    }
    if out.is_empty() {
        return Err(Error::invalid("no file changes found in patch")
            .hint("pass unified diff text as printed by `git diff` or `diff -u`"));
    }
    Ok(out)
}

fn binary_error(file: &str) -> Error {
    Error::invalid(format!("binary patch for {file} is not supported: only text diffs can be applied"))
        .hint("write the file's new content directly instead of patching it")
}

/// The file named by a `diff -r` line `Binary files X and Y differ`, with `-p1` stripping.
fn plain_binary_name(names: &str) -> String {
    let (a, b) = names.split_once(" and ").unwrap_or((names, names));
    let name = if b == "/dev/null" { a } else { b };
    match name.split_once('/') {
        Some((_, rest)) if !rest.is_empty() => rest.to_string(),
        _ => name.to_string(),
    }
}

impl<'a> Parser<'a> {
    fn current(&self) -> Option<&'a str> {
        self.lines.get(self.i).map(|l| l.trim_end_matches('\r'))
    }

    /// A `diff --git` section: extended headers, optional `---`/`+++` lines, hunks.
    fn git_section(&mut self, rest: &str) -> Result<Section<'a>> {
        let rest = rest.trim_end_matches('\r');
        let names = split_git_names(rest)?;
        let prefixed = match &names {
            Some((a, b)) => a.starts_with(b"a/") && b.starts_with(b"b/"),
            None => {
                (rest.starts_with("a/") || rest.starts_with("\"a/")) && (rest.contains(" b/") || rest.contains(" \"b/"))
            }
        };
        let strip = |name: Vec<u8>, prefix: &[u8]| -> Vec<u8> {
            match name.strip_prefix(prefix) {
                Some(s) if prefixed => s.to_vec(),
                _ => name,
            }
        };
        let (git_old, git_new) = match names {
            Some((a, b)) => (Some(strip(a, b"a/")), Some(strip(b, b"b/"))),
            None => (None, None),
        };
        let display = |o: &Option<Vec<u8>>, n: &Option<Vec<u8>>| match n.as_ref().or(o.as_ref()) {
            Some(v) => String::from_utf8_lossy(v).into_owned(),
            None => rest.to_string(),
        };
        let mut file = display(&git_old, &git_new);
        self.i += 1;

        let mut new_mode = None;
        let (mut created, mut deleted) = (false, false);
        let (mut rename_from, mut rename_to, mut copy_from, mut copy_to) = (None, None, None, None);
        while let Some(line) = self.current() {
            // Old modes are only checked for being regular files: git apply merely warns when they differ.
            if let Some(m) = line.strip_prefix("old mode ") {
                parse_mode(m, &file)?;
            } else if let Some(m) = line.strip_prefix("new mode ") {
                new_mode = Some(parse_mode(m, &file)?);
            } else if let Some(m) = line.strip_prefix("deleted file mode ") {
                deleted = true;
                parse_mode(m, &file)?;
            } else if let Some(m) = line.strip_prefix("new file mode ") {
                created = true;
                new_mode = Some(parse_mode(m, &file)?);
            } else if let Some(p) = line.strip_prefix("rename from ").or_else(|| line.strip_prefix("rename old ")) {
                rename_from = Some(header_path(p)?);
            } else if let Some(p) = line.strip_prefix("rename to ").or_else(|| line.strip_prefix("rename new ")) {
                rename_to = Some(header_path(p)?);
            } else if let Some(p) = line.strip_prefix("copy from ") {
                copy_from = Some(header_path(p)?);
            } else if let Some(p) = line.strip_prefix("copy to ") {
                copy_to = Some(header_path(p)?);
            } else if line.starts_with("Binary files ") || line == "GIT binary patch" {
                return Err(binary_error(&file));
            } else if !(line.starts_with("index ")
                || line.starts_with("similarity index ")
                || line.starts_with("dissimilarity index "))
            {
                break;
            }
            self.i += 1;
        }

        let (mut dash_old, mut dash_new, mut dashes) = (None, None, false);
        if let Some(line) = self.current() {
            if let (Some(o), Some(n)) =
                (line.strip_prefix("--- "), self.lines.get(self.i + 1).and_then(|l| l.strip_prefix("+++ ")))
            {
                let o = header_name(o)?.0;
                let n = header_name(n)?.0;
                created |= o.is_none();
                deleted |= n.is_none();
                dash_old = o.map(|v| strip(v, b"a/"));
                dash_new = n.map(|v| strip(v, b"b/"));
                if dash_old.is_some() || dash_new.is_some() {
                    file = display(&dash_old, &dash_new);
                }
                dashes = true;
                self.i += 2;
            }
        }
        let hunks = self.hunks(&file)?;
        if dashes && hunks.is_empty() {
            return Err(Error::invalid(format!("the patch for {file} has file headers but no hunks")));
        }

        let old = rename_from.clone().or(copy_from.clone()).or(dash_old).or(git_old);
        let new = rename_to.clone().or(copy_to.clone()).or(dash_new).or(git_new);
        let unknown = || Error::invalid(format!("cannot tell the file name from `diff --git {rest}`"));
        if created && deleted {
            return Err(Error::invalid(format!("the patch both creates and deletes {file}")));
        }
        let (path, kind) = if rename_from.is_some() || rename_to.is_some() {
            let (Some(from), Some(to)) = (rename_from, rename_to) else {
                return Err(Error::invalid(format!("rename of {file} needs both `rename from` and `rename to`")));
            };
            (clean_path(to)?, Kind::Rename(clean_path(from)?))
        } else if copy_from.is_some() || copy_to.is_some() {
            let (Some(from), Some(to)) = (copy_from, copy_to) else {
                return Err(Error::invalid(format!("copy to {file} needs both `copy from` and `copy to`")));
            };
            (clean_path(to)?, Kind::Copy(clean_path(from)?))
        } else if created {
            (clean_path(new.ok_or_else(unknown)?)?, Kind::Add)
        } else if deleted {
            (clean_path(old.ok_or_else(unknown)?)?, Kind::Delete)
        } else {
            let old = clean_path(old.ok_or_else(unknown)?)?;
            let new = clean_path(new.ok_or_else(unknown)?)?;
            if old != new {
                return Err(Error::invalid(format!(
                    "the patch names two different files ({old} and {new}) without a rename header"
                )));
            }
            if hunks.is_empty() && new_mode.is_none() {
                return Err(Error::invalid(format!("the patch section for {new} changes nothing")));
            }
            (new, Kind::Modify)
        };
        Ok(Section { path, kind, new_mode, hunks })
    }

    /// A `diff -u` section: `--- OLD[\tTIME]`, `+++ NEW[\tTIME]`, hunks.
    fn plain_section(&mut self) -> Result<Section<'a>> {
        let (first, second): (&'a str, &'a str) = (self.lines[self.i], self.lines[self.i + 1]);
        let (old, old_time) = header_name(&first[4..])?;
        let (new, new_time) = header_name(&second[4..])?;
        self.i += 2;
        let names: Vec<&Vec<u8>> = old.iter().chain(new.iter()).collect();
        if names.is_empty() {
            return Err(Error::invalid("a file header in the patch names /dev/null on both sides"));
        }
        if let Some(abs) = names.iter().find(|n| n.starts_with(b"/")) {
            return Err(Error::invalid(format!(
                "invalid path {} in patch: paths must be relative to the workspace",
                String::from_utf8_lossy(abs)
            )));
        }
        // Like `patch -p1`: drop the first component (a/, b/, dir1/, dir2/) when every name has one.
        let strip = names.iter().all(|n| n.contains(&b'/'));
        let strip1 = |n: Vec<u8>| -> Vec<u8> {
            match n.iter().position(|&c| c == b'/') {
                Some(k) if strip => n[k + 1..].to_vec(),
                _ => n,
            }
        };
        let old = old.map(strip1).map(clean_path).transpose()?;
        let new = new.map(strip1).map(clean_path).transpose()?;
        let path = match (&old, &new) {
            (Some(o), Some(n)) => best_name(o, n).to_string(),
            (Some(p), None) | (None, Some(p)) => p.clone(),
            (None, None) => unreachable!("checked above"),
        };
        let hunks = self.hunks(&path)?;
        if hunks.is_empty() {
            return Err(Error::invalid(format!("the patch for {path} has file headers but no hunks")));
        }
        let creates = hunks.len() == 1 && hunks[0].old_start == 0 && hunks[0].old_count == 0;
        let empties = hunks.iter().all(|h| h.lines.iter().all(|l| l.kind != b' ' && l.kind != b'+'));
        let kind = if old.is_none() || (creates && is_epoch(old_time)) {
            Kind::Add
        } else if new.is_none() || (empties && is_epoch(new_time)) {
            Kind::Delete
        } else if creates {
            Kind::AddOrModify
        } else {
            Kind::Modify
        };
        Ok(Section { path, kind, new_mode: None, hunks })
    }

    /// The hunks that follow a file header, checked against their `@@` line counts.
    fn hunks(&mut self, file: &str) -> Result<Vec<Hunk<'a>>> {
        let mut hunks: Vec<Hunk<'a>> = Vec::new();
        while let Some(&header) = self.lines.get(self.i) {
            if !header.starts_with("@@ ") {
                break;
            }
            let n = hunks.len() + 1;
            let header = header.trim_end_matches('\r');
            let (old_start, old_count, new_count) = parse_hunk_header(header)
                .ok_or_else(|| Error::invalid(format!("hunk {n} of {file} has a malformed header: {header}")))?;
            if let Some(prev) = hunks.last() {
                if old_start < prev.old_start + prev.old_count {
                    return Err(Error::invalid(format!("hunk {n} of {file} overlaps or precedes the hunk before it")));
                }
            }
            let mismatch = || {
                Error::invalid(format!(
                    "hunk {n} of {file}: the line counts in its header ({}) do not match its body",
                    header_ranges(header)
                ))
                .hint("the patch was edited or cut short: regenerate it rather than editing hunks by hand")
            };
            self.i += 1;
            let mut h = Hunk { old_start, old_count, lines: Vec::new() };
            let (mut old_left, mut new_left) = (old_count, new_count);
            while old_left > 0 || new_left > 0 {
                let Some(&line) = self.lines.get(self.i) else { return Err(mismatch()) };
                let bytes = line.as_bytes();
                let (kind, text) = match bytes.first() {
                    // An empty line stands for an empty context line (editors strip the space).
                    None => (b' ', bytes),
                    Some(&k @ (b' ' | b'-' | b'+')) => (k, &bytes[1..]),
                    Some(b'\\') => {
                        mark_no_newline(&mut h, n, file)?;
                        self.i += 1;
                        continue;
                    }
                    Some(_) => return Err(mismatch()),
                };
                let (o, nw) = match kind {
                    b' ' => (1, 1),
                    b'-' => (1, 0),
                    _ => (0, 1),
                };
                if old_left < o || new_left < nw {
                    return Err(mismatch());
                }
                old_left -= o;
                new_left -= nw;
                h.lines.push(Line { kind, text, newline: true });
                self.i += 1;
            }
            if self.lines.get(self.i).is_some_and(|l| l.starts_with('\\')) {
                mark_no_newline(&mut h, n, file)?;
                self.i += 1;
            }
            if let Some(&next) = self.lines.get(self.i) {
                let extra = next.starts_with('+')
                    || next.starts_with(' ')
                    || (next.starts_with('-') && !next.starts_with("--- ") && next.trim_end() != "--");
                if extra {
                    return Err(mismatch());
                }
            }
            hunks.push(h);
        }
        // A line without newline can only be the last line of its side, in the last hunk.
        let last = hunks.len();
        for (k, h) in hunks.iter().enumerate() {
            for side in [b'-', b'+'] {
                let lines: Vec<&Line> = h.lines.iter().filter(|l| l.kind == b' ' || l.kind == side).collect();
                let bad = lines.iter().enumerate().any(|(j, l)| !l.newline && (j + 1 < lines.len() || k + 1 < last));
                if bad {
                    return Err(Error::invalid(format!(
                        "hunk {} of {file} has a '{NO_NEWLINE}' marker before its last line",
                        k + 1
                    )));
                }
            }
        }
        Ok(hunks)
    }
}

fn mark_no_newline(h: &mut Hunk, n: usize, file: &str) -> Result<()> {
    match h.lines.last_mut() {
        Some(l) if l.newline => {
            l.newline = false;
            Ok(())
        }
        _ => Err(Error::invalid(format!("hunk {n} of {file} has a misplaced '{NO_NEWLINE}' marker"))),
    }
}

/// `@@ -a[,b] +c[,d] @@ ...` -> (a, b, d); counts default to 1.
fn parse_hunk_header(line: &str) -> Option<(usize, usize, usize)> {
    let rest = line.strip_prefix("@@ -")?;
    let (old, rest) = rest.split_once(" +")?;
    let (new, rest) = rest.split_once(' ')?;
    if !rest.starts_with("@@") {
        return None;
    }
    let range = |r: &str| -> Option<(usize, usize)> {
        let (start, count) = match r.split_once(',') {
            Some((s, c)) => (s.parse().ok()?, c.parse().ok()?),
            None => (r.parse().ok()?, 1),
        };
        // A non-empty range starts at line 1 or later.
        (count == 0 || start > 0).then_some((start, count))
    };
    let (old_start, old_count) = range(old)?;
    let (_, new_count) = range(new)?;
    Some((old_start, old_count, new_count))
}

/// `-3,4 +3,5` from an `@@` line, for messages.
fn header_ranges(line: &str) -> &str {
    line.strip_prefix("@@ ").and_then(|r| r.split(" @@").next()).unwrap_or(line)
}

fn parse_mode(text: &str, file: &str) -> Result<u32> {
    let text = text.trim();
    let mode = u32::from_str_radix(text, 8)
        .map_err(|_| Error::invalid(format!("the patch gives {file} an invalid mode `{text}`")))?;
    match mode & 0o170000 {
        0o100000 => Ok(mode & 0o7777),
        0o120000 => Err(Error::invalid(format!("{file} is a symbolic link in the patch (mode {text}): not supported"))
            .hint("create the link with a command instead")),
        0o160000 => Err(Error::invalid(format!("{file} is a submodule in the patch (mode {text}): not supported"))),
        _ => Err(Error::invalid(format!("the patch gives {file} an unsupported mode {text}"))),
    }
}

/// True for the timestamps `diff -N` prints for a missing file (the epoch in some time zone).
fn is_epoch(time: Option<&str>) -> bool {
    time.is_some_and(|t| {
        t.starts_with("1970-01-01 ") || t.starts_with("1969-12-31 ") || t.contains(" 1970") || t.contains(" 1969")
    })
}

/// GNU patch's choice between two differing names: fewest components, then shortest base name,
/// then shortest name; the old name on a tie.
fn best_name<'s>(old: &'s str, new: &'s str) -> &'s str {
    let key = |p: &str| (p.split('/').count(), p.rsplit('/').next().map_or(0, str::len), p.len());
    if key(new) < key(old) {
        new
    } else {
        old
    }
}

/// The name in a `---` / `+++` line (possibly quoted) and the timestamp after a tab, if any;
/// None for `/dev/null`.
fn header_name(text: &str) -> Result<(Option<Vec<u8>>, Option<&str>)> {
    let text = text.trim_end_matches('\r');
    let (name, time) = if text.starts_with('"') {
        let (name, rest) = unquote(text)?;
        (name, rest.strip_prefix('\t'))
    } else {
        match text.split_once('\t') {
            Some((name, time)) => (name.as_bytes().to_vec(), Some(time)),
            None => (text.trim_end().as_bytes().to_vec(), None),
        }
    };
    Ok(((name != b"/dev/null").then_some(name), time))
}

/// The path in a `rename from` / `copy to` line (no a/ b/ prefix there).
fn header_path(text: &str) -> Result<Vec<u8>> {
    if text.starts_with('"') {
        Ok(unquote(text)?.0)
    } else {
        Ok(text.as_bytes().to_vec())
    }
}

/// The two names of `diff --git A B`, still with their prefixes. None when unquoted names with
/// spaces cannot be told apart (renames then name the files in their own headers).
fn split_git_names(rest: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    if rest.starts_with('"') {
        let (a, after) = unquote(rest)?;
        let Some(b) = after.strip_prefix(' ') else { return Ok(None) };
        let b = if b.starts_with('"') { unquote(b)?.0 } else { b.as_bytes().to_vec() };
        return Ok(Some((a, b)));
    }
    if let Some(k) = rest.find(" \"") {
        let (b, _) = unquote(&rest[k + 1..])?;
        return Ok(Some((rest.as_bytes()[..k].to_vec(), b)));
    }
    let spaces: Vec<usize> = rest.match_indices(' ').map(|(k, _)| k).collect();
    for &k in &spaces {
        let (a, b) = (&rest[..k], &rest[k + 1..]);
        let same = match (a.strip_prefix("a/"), b.strip_prefix("b/")) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        };
        if same {
            return Ok(Some((a.as_bytes().to_vec(), b.as_bytes().to_vec())));
        }
    }
    Ok(match spaces.as_slice() {
        [k] => Some((rest.as_bytes()[..*k].to_vec(), rest.as_bytes()[k + 1..].to_vec())),
        _ => None,
    })
}

/// Decode a C-style quoted name as git writes it (`"a/tab\there"`, octal `\303\251` bytes).
/// Returns the bytes and the text after the closing quote.
fn unquote(text: &str) -> Result<(Vec<u8>, &str)> {
    let bad = || Error::invalid(format!("malformed quoted path in patch: {text}"));
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut k = 1;
    while k < bytes.len() {
        match bytes[k] {
            b'"' => return Ok((out, &text[k + 1..])),
            b'\\' => {
                let c = *bytes.get(k + 1).ok_or_else(bad)?;
                k += 2;
                out.push(match c {
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b't' => b'\t',
                    b'n' => b'\n',
                    b'v' => 0x0b,
                    b'f' => 0x0c,
                    b'r' => b'\r',
                    b'"' | b'\\' => c,
                    b'0'..=b'3' => {
                        let digits = bytes.get(k..k + 2).ok_or_else(bad)?;
                        if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                            return Err(bad());
                        }
                        k += 2;
                        ((c - b'0') << 6) | ((digits[0] - b'0') << 3) | (digits[1] - b'0')
                    }
                    _ => return Err(bad()),
                });
            }
            c => {
                out.push(c);
                k += 1;
            }
        }
    }
    Err(bad())
}

/// Validate and normalize a path from the patch: relative, inside the workspace, UTF-8.
fn clean_path(raw: Vec<u8>) -> Result<String> {
    let shown = String::from_utf8_lossy(&raw).into_owned();
    let invalid = |why: &str| {
        Error::invalid(format!("invalid path {shown:?} in patch: {why}"))
            .hint("patch paths must be relative to the workspace root, like src/main.rs")
    };
    let path = String::from_utf8(raw).map_err(|_| invalid("not valid UTF-8"))?;
    if path.contains('\0') {
        return Err(invalid("contains a NUL byte"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(invalid(&format!("longer than {MAX_PATH_BYTES} bytes")));
    }
    let mut rest = path.as_str();
    while let Some(r) = rest.strip_prefix("./") {
        rest = r;
    }
    if rest.starts_with('/') {
        return Err(invalid("absolute paths are not allowed"));
    }
    let mut parts = Vec::new();
    for part in rest.split('/') {
        match part {
            "" => return Err(invalid("empty path component")),
            "." => {}
            ".." => return Err(invalid("`..` would escape the workspace")),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err(invalid("names no file"));
    }
    Ok(parts.join("/"))
}

// ---------------------------------------------------------------------------------------------
// Application

fn apply_section(s: &Section, read: &mut dyn FnMut(&str) -> Result<Option<Current>>) -> Result<FileChange> {
    let path = s.path.as_str();
    let count = |kind: u8| s.hunks.iter().flat_map(|h| &h.lines).filter(|l| l.kind == kind).count();
    let mut change = FileChange {
        path: s.path.clone(),
        action: Action::Modified,
        old_path: None,
        content: None,
        mode: s.new_mode,
        hunks: s.hunks.len(),
        additions: count(b'+'),
        deletions: count(b'-'),
    };
    let exists = |path: &str| Error::new(Code::Conflict, format!("cannot create {path}: it already exists"));
    let missing = |what: &str| Error::not_found(format!("cannot {what} {path}: it does not exist"));
    match &s.kind {
        Kind::Add => {
            if read(path)?.is_some() {
                return Err(exists(path));
            }
            change.action = Action::Added;
            change.content = Some(apply_hunks(&[], &s.hunks, path)?);
            change.mode = Some(s.new_mode.unwrap_or(DEFAULT_MODE));
        }
        Kind::AddOrModify => match read(path)? {
            None => {
                change.action = Action::Added;
                change.content = Some(apply_hunks(&[], &s.hunks, path)?);
                change.mode = Some(DEFAULT_MODE);
            }
            Some(cur) => change.content = Some(apply_hunks(&cur.content, &s.hunks, path)?),
        },
        Kind::Modify => {
            let cur = read(path)?.ok_or_else(|| missing("patch"))?;
            if s.hunks.is_empty() {
                change.action = Action::ModeChanged;
            } else {
                change.content = Some(apply_hunks(&cur.content, &s.hunks, path)?);
            }
        }
        Kind::Delete => {
            let cur = read(path)?.ok_or_else(|| missing("delete"))?;
            if !apply_hunks(&cur.content, &s.hunks, path)?.is_empty() {
                return Err(Error::new(
                    Code::Conflict,
                    format!("cannot delete {path}: it has content the patch does not remove"),
                )
                .hint("the file changed since the patch was made: read it again and regenerate the patch"));
            }
            change.action = Action::Deleted;
            change.mode = None;
        }
        Kind::Rename(from) | Kind::Copy(from) => {
            let verb = if matches!(s.kind, Kind::Rename(_)) { "rename" } else { "copy" };
            let src = read(from)?
                .ok_or_else(|| Error::not_found(format!("cannot {verb} {from} to {path}: {from} does not exist")))?;
            if read(path)?.is_some() {
                return Err(Error::new(
                    Code::Conflict,
                    format!("cannot {verb} {from} to {path}: {path} already exists"),
                ));
            }
            change.content = Some(apply_hunks(&src.content, &s.hunks, path)?);
            change.mode = Some(s.new_mode.unwrap_or(src.mode & 0o7777));
            if verb == "rename" {
                change.action = Action::Renamed;
                change.old_path = Some(from.clone());
            } else {
                change.action = Action::Added;
            }
        }
    }
    Ok(change)
}

/// Lines of `content`, each with its `\n` (the last may lack one).
fn split_lines(content: &[u8]) -> Vec<&[u8]> {
    content.split_inclusive(|&c| c == b'\n').collect()
}

/// Apply hunks in order: each at its stated line (shifted by the offset the previous hunk
/// needed) when its old lines match exactly there, else at the nearest offset where they do,
/// never overlapping the previous hunk.
fn apply_hunks(content: &[u8], hunks: &[Hunk], path: &str) -> Result<Vec<u8>> {
    let lines = split_lines(content);
    let mut out = Vec::with_capacity(content.len());
    let mut cursor = 0;
    let mut offset: isize = 0;
    for (k, h) in hunks.iter().enumerate() {
        let old = h.side(b'-');
        let new = h.side(b'+');
        let stated = if h.old_count == 0 { h.old_start } else { h.old_start - 1 };
        let leading = h.lines.iter().take_while(|l| l.kind == b' ').count();
        let trailing = h.lines.iter().rev().take_while(|l| l.kind == b' ').count();
        // Less context on one side than the other means the hunk touches that end of the file;
        // so does a new last line without newline.
        let anchor = Anchor {
            start: h.old_count > 0 && h.old_start == 1 && leading < trailing,
            end: trailing < leading || new.last().is_some_and(|l| !l.ends_with(b"\n")),
        };
        let pos = find(&lines, &old, stated as isize + offset, cursor, anchor)
            .ok_or_else(|| not_applicable(k + 1, path, h.old_start, &lines, &old, stated))?;
        lines[cursor..pos].iter().for_each(|l| out.extend_from_slice(l));
        new.iter().for_each(|l| out.extend_from_slice(l));
        cursor = pos + old.len();
        offset = pos as isize - stated as isize;
    }
    lines[cursor..].iter().for_each(|l| out.extend_from_slice(l));
    Ok(out)
}

#[derive(Clone, Copy)]
struct Anchor {
    start: bool,
    end: bool,
}

/// Where `old` occurs in `lines` at or after `lo`, nearest to `expected` first (later before
/// earlier at equal distance). A hunk with no old lines only goes exactly where it says.
fn find(lines: &[&[u8]], old: &[Vec<u8>], expected: isize, lo: usize, anchor: Anchor) -> Option<usize> {
    let hi = lines.len().checked_sub(old.len())?;
    if lo > hi {
        return None;
    }
    let fits = |p: usize| {
        (!anchor.start || p == 0)
            && (!anchor.end || p == hi)
            // Nothing goes after a last line that has no newline.
            && (p == 0 || lines[p - 1].ends_with(b"\n"))
            && lines[p..p + old.len()].iter().zip(old).all(|(a, b)| *a == b.as_slice())
    };
    let in_range = |p: isize| p >= lo as isize && p <= hi as isize;
    if old.is_empty() {
        return (in_range(expected) && fits(expected as usize)).then_some(expected as usize);
    }
    let span = (expected - lo as isize).abs().max((hi as isize - expected).abs());
    for d in 0..=span {
        for p in [expected + d, expected - d] {
            if in_range(p) && fits(p as usize) {
                return Some(p as usize);
            }
            if d == 0 {
                break;
            }
        }
    }
    None
}

fn not_applicable(n: usize, path: &str, line: usize, lines: &[&[u8]], old: &[Vec<u8>], stated: usize) -> Error {
    let show = |l: &[u8]| {
        let s = String::from_utf8_lossy(l.strip_suffix(b"\n").unwrap_or(l)).into_owned();
        if s.chars().count() > 80 {
            format!("{:?}...", s.chars().take(80).collect::<String>())
        } else {
            format!("{s:?}")
        }
    };
    let detail = old.iter().enumerate().find_map(|(j, want)| match lines.get(stated + j) {
        Some(have) if *have == want.as_slice() => None,
        Some(have) => Some(format!("line {} is {} but the patch expects {}", stated + j + 1, show(have), show(want))),
        None => Some(format!("the file has only {} lines but the patch expects {}", lines.len(), show(want))),
    });
    let hint = match detail {
        Some(d) => format!("{d}; the file changed since the patch was made: read it again and regenerate the patch"),
        None => "the file changed since the patch was made: read it again and regenerate the patch".to_string(),
    };
    Error::new(Code::Conflict, format!("hunk {n} of {path} does not apply at line {line}")).hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An in-memory workspace: path -> (content, mode).
    type Fs = BTreeMap<String, (Vec<u8>, u32)>;

    fn fs(files: &[(&str, &[u8])]) -> Fs {
        files.iter().map(|(p, c)| (p.to_string(), (c.to_vec(), 0o644))).collect()
    }

    fn run(patch: &str, fs: &Fs) -> Result<Vec<FileChange>> {
        let mut read = |p: &str| Ok(fs.get(p).map(|(c, m)| Current { content: c.clone(), mode: *m }));
        apply(patch, &mut read)
    }

    /// Apply and write the changes back, as the caller would.
    fn patched(patch: &str, mut files: Fs) -> Fs {
        for c in run(patch, &files).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint)) {
            if let Some(old) = &c.old_path {
                files.remove(old);
            }
            match c.action {
                Action::Deleted => {
                    files.remove(&c.path);
                }
                Action::ModeChanged => files.get_mut(&c.path).unwrap().1 = c.mode.unwrap(),
                _ => {
                    let prev_mode = files.get(&c.path).map_or(0o644, |f| f.1);
                    files.insert(c.path.clone(), (c.content.unwrap(), c.mode.unwrap_or(prev_mode)));
                }
            }
        }
        files
    }

    fn lib_rs() -> Vec<u8> {
        (1..=30).map(|n| format!("line {n}\n")).collect::<String>().into_bytes()
    }

    /// The tree `ALL_GIT` was made from (`git diff --cached` in a scratch repository).
    fn initial() -> Fs {
        let lib = lib_rs();
        let mut f = fs(&[
            ("src/main.rs", b"fn main() {\n    println!(\"hello\");\n}\n"),
            ("src/lib.rs", &lib),
            ("gone.txt", b"old content\n"),
            ("run.sh", b"#!/bin/sh\necho hi\n"),
            ("moved.txt", b"a\nb\nc\nd\ne\nf\ng\n"),
            ("renamed_changed.txt", b"keep1\nkeep2\nkeep3\nkeep4\nkeep5\nkeep6\n"),
            ("nonl.txt", b"no newline"),
            ("addnl.txt", b"has newline\n"),
            ("crlf.txt", b"one\r\ntwo\r\nthree\r\n"),
            ("with space.txt", b"x\n"),
        ]);
        f.get_mut("run.sh").unwrap().1 = 0o644;
        f
    }

    const ALL_GIT: &str = "diff --git a/addnl.txt b/addnl.txt
index 9d0103b..4974d4c 100644
--- a/addnl.txt
+++ b/addnl.txt
@@ -1 +1 @@
-has newline
+has newline
\\ No newline at end of file
diff --git a/crlf.txt b/crlf.txt
index e1587ff..103b2f6 100644
--- a/crlf.txt
+++ b/crlf.txt
@@ -1,3 +1,3 @@
 one\r
-two\r
+TWO\r
 three\r
diff --git a/renamed_changed.txt b/dir_renamed.txt
similarity index 76%
rename from renamed_changed.txt
rename to dir_renamed.txt
index 551b4fb..7f1f50a 100644
--- a/renamed_changed.txt
+++ b/dir_renamed.txt
@@ -3,4 +3,4 @@ keep2
 keep3
 keep4
 keep5
-keep6
+changed6
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
index 33194a0..0000000
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-old content
diff --git a/moved.txt b/moved2.txt
similarity index 100%
rename from moved.txt
rename to moved2.txt
diff --git a/new.txt b/new.txt
new file mode 100644
index 0000000..5786b13
--- /dev/null
+++ b/new.txt
@@ -0,0 +1,2 @@
+brand
+new
diff --git a/nonl.txt b/nonl.txt
index 20cbb4d..7bcfef5 100644
--- a/nonl.txt
+++ b/nonl.txt
@@ -1 +1 @@
-no newline
\\ No newline at end of file
+no newline
diff --git a/run.sh b/run.sh
old mode 100644
new mode 100755
diff --git a/src/lib.rs b/src/lib.rs
index ac9837c..142b630 100644
--- a/src/lib.rs
+++ b/src/lib.rs
@@ -2,7 +2,7 @@ line 1
 line 2
 line 3
 line 4
-line 5
+line five
 line 6
 line 7
 line 8
@@ -22,7 +22,7 @@ line 21
 line 22
 line 23
 line 24
-line 25
+line twenty-five
 line 26
 line 27
 line 28
diff --git a/src/main.rs b/src/main.rs
index 7527576..1e2aae4 100644
--- a/src/main.rs
+++ b/src/main.rs
@@ -1,3 +1,4 @@
 fn main() {
-    println!(\"hello\");
+    println!(\"hello, world\");
+    println!(\"bye\");
 }
diff --git a/with space.txt b/with space.txt
index 587be6b..975fbec 100644
--- a/with space.txt\t
+++ b/with space.txt\t
@@ -1 +1 @@
-x
+y
";

    /// The `diff --git` section of `ALL_GIT` for `path`.
    fn section(path: &str) -> String {
        let start = ALL_GIT.find(&format!("diff --git a/{path} ")).unwrap();
        let end = ALL_GIT[start + 1..].find("diff --git ").map_or(ALL_GIT.len(), |k| start + 1 + k);
        ALL_GIT[start..end].to_string()
    }

    fn one(patch: &str, files: &Fs) -> FileChange {
        let mut changes = run(patch, files).unwrap();
        assert_eq!(changes.len(), 1);
        changes.remove(0)
    }

    fn err(patch: &str, files: &Fs) -> Error {
        match run(patch, files) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn modify() {
        let c = one(&section("src/main.rs"), &initial());
        assert_eq!(c.action, Action::Modified);
        assert_eq!(c.path, "src/main.rs");
        assert_eq!(c.content.unwrap(), b"fn main() {\n    println!(\"hello, world\");\n    println!(\"bye\");\n}\n");
        assert_eq!((c.hunks, c.additions, c.deletions, c.mode), (1, 2, 1, None));
    }

    #[test]
    fn add_and_delete() {
        let c = one(&section("new.txt"), &initial());
        assert_eq!((c.action, c.content.unwrap(), c.mode), (Action::Added, b"brand\nnew\n".to_vec(), Some(0o644)));
        let c = one(&section("gone.txt"), &initial());
        assert_eq!((c.action, c.content, c.deletions), (Action::Deleted, None, 1));
        // Adding over an existing file, or deleting/patching a missing one, fails.
        let mut f = initial();
        f.insert("new.txt".into(), (b"x\n".to_vec(), 0o644));
        assert_eq!(err(&section("new.txt"), &f).code, Code::Conflict);
        let mut f = initial();
        f.remove("gone.txt");
        f.remove("src/main.rs");
        assert_eq!(err(&section("gone.txt"), &f).code, Code::NotFound);
        assert!(err(&section("src/main.rs"), &f).message.contains("src/main.rs"));
        // Deleting checks the whole content.
        let mut f = initial();
        f.insert("gone.txt".into(), (b"old content\nmore\n".to_vec(), 0o644));
        let e = err(&section("gone.txt"), &f);
        assert!(e.message.contains("cannot delete gone.txt"), "{e}");
    }

    #[test]
    fn empty_files_added_and_deleted_without_hunks() {
        // `git diff --cached` after `: > empty.txt; git add` and after `git rm empty.txt`.
        let add = "diff --git a/empty.txt b/empty.txt\nnew file mode 100644\nindex 0000000..e69de29\n";
        let del = "diff --git a/empty.txt b/empty.txt\ndeleted file mode 100644\nindex e69de29..0000000\n";
        let c = one(add, &initial());
        assert_eq!((c.action, c.content.unwrap(), c.hunks), (Action::Added, vec![], 0));
        let f = fs(&[("empty.txt", b"")]);
        assert_eq!(one(del, &f).action, Action::Deleted);
        let f = fs(&[("empty.txt", b"not empty\n")]);
        assert_eq!(err(del, &f).code, Code::Conflict);
    }

    #[test]
    fn mode_change_only() {
        let c = one(&section("run.sh"), &initial());
        assert_eq!((c.action, c.content, c.mode, c.hunks), (Action::ModeChanged, None, Some(0o755), 0));
    }

    #[test]
    fn renames() {
        let c = one(&section("moved.txt"), &initial());
        assert_eq!(c.action, Action::Renamed);
        assert_eq!((c.path.as_str(), c.old_path.as_deref()), ("moved2.txt", Some("moved.txt")));
        assert_eq!(c.content.unwrap(), b"a\nb\nc\nd\ne\nf\ng\n");
        assert_eq!(c.mode, Some(0o644));
        let c = one(&section("renamed_changed.txt"), &initial());
        assert_eq!(c.action, Action::Renamed);
        assert_eq!((c.path.as_str(), c.old_path.as_deref()), ("dir_renamed.txt", Some("renamed_changed.txt")));
        assert_eq!(c.content.unwrap(), b"keep1\nkeep2\nkeep3\nkeep4\nkeep5\nchanged6\n");
        // The target must not exist yet.
        let mut f = initial();
        f.insert("moved2.txt".into(), (vec![], 0o644));
        assert_eq!(err(&section("moved.txt"), &f).code, Code::Conflict);
    }

    #[test]
    fn format_patch_mail_with_spaced_rename() {
        // `git format-patch -1 --stdout`: mail headers, diffstat and signature around the diff.
        let patch = "From 6af0130c02b7772bfa05b54bc24f5307503a6663 Mon Sep 17 00:00:00 2001
From: t <a@b>
Date: Wed, 25 Nov 2026 01:31:09 +0000
Subject: [PATCH] rename spaced

---
 with space.txt => other name.txt | 1 +
 1 file changed, 1 insertion(+)
 rename with space.txt => other name.txt (50%)

diff --git a/with space.txt b/other name.txt
similarity index 50%
rename from with space.txt
rename to other name.txt
index 975fbec..2795c87 100644
--- a/with space.txt\t
+++ b/other name.txt\t
@@ -1 +1,2 @@
 y
+z
--\x20
2.47.3
";
        let c = one(patch, &fs(&[("with space.txt", b"y\n")]));
        assert_eq!(
            (c.action, c.path.as_str(), c.old_path.as_deref()),
            (Action::Renamed, "other name.txt", Some("with space.txt"))
        );
        assert_eq!(c.content.unwrap(), b"y\nz\n");
    }

    #[test]
    fn copy_is_an_addition() {
        let patch = "diff --git a/moved.txt b/copy.txt\nsimilarity index 100%\ncopy from moved.txt\ncopy to copy.txt\n";
        let c = one(patch, &initial());
        assert_eq!((c.action, c.path.as_str(), c.old_path), (Action::Added, "copy.txt", None));
        assert_eq!(c.content.unwrap(), b"a\nb\nc\nd\ne\nf\ng\n");
    }

    #[test]
    fn newline_at_eof_both_directions() {
        let c = one(&section("addnl.txt"), &initial());
        assert_eq!(c.content.unwrap(), b"has newline");
        let c = one(&section("nonl.txt"), &initial());
        assert_eq!(c.content.unwrap(), b"no newline\n");
        // The marker is exact: the old side without newline does not match a file that has one.
        let f = fs(&[("nonl.txt", b"no newline\n")]);
        assert_eq!(err(&section("nonl.txt"), &f).code, Code::Conflict);
    }

    #[test]
    fn end_of_file_lines_stay_at_the_end() {
        // A new last line without newline cannot land before other lines...
        let patch = "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -0,0 +1 @@\n+new0\n\\ No newline at end of file\n";
        assert_eq!(one(patch, &fs(&[("f", b"")])).content.unwrap(), b"new0");
        assert_eq!(err(patch, &fs(&[("f", b"pre\n")])).code, Code::Conflict);
        // ...and nothing is appended after a last line without newline.
        let patch = "--- a/f\n+++ b/f\n@@ -1,0 +2 @@\n+x\n";
        assert_eq!(one(patch, &fs(&[("f", b"a\n")])).content.unwrap(), b"a\nx\n");
        assert_eq!(err(patch, &fs(&[("f", b"a")])).code, Code::Conflict);
    }

    #[test]
    fn crlf_file() {
        let c = one(&section("crlf.txt"), &initial());
        assert_eq!(c.content.unwrap(), b"one\r\nTWO\r\nthree\r\n");
        // LF lines do not match CRLF context.
        let f = fs(&[("crlf.txt", b"one\ntwo\nthree\n")]);
        assert!(run(&section("crlf.txt"), &f).is_err());
    }

    #[test]
    fn quoted_and_spaced_paths() {
        let c = one(&section("with space.txt"), &initial());
        assert_eq!((c.path.as_str(), c.content.unwrap()), ("with space.txt", b"y\n".to_vec()));
        // `git diff` of a new file named "tab<TAB>name.txt".
        let patch = "diff --git \"a/tab\\tname.txt\" \"b/tab\\tname.txt\"
new file mode 100644
index 0000000..bca70f3
--- /dev/null
+++ \"b/tab\\tname.txt\"
@@ -0,0 +1 @@
+q
";
        let c = one(patch, &initial());
        assert_eq!((c.path.as_str(), c.content.unwrap()), ("tab\tname.txt", b"q\n".to_vec()));
        let octal = "diff --git \"a/caf\\303\\251\" \"b/caf\\303\\251\"\nnew file mode 100755\n";
        let c = one(octal, &initial());
        assert_eq!((c.path.as_str(), c.mode), ("café", Some(0o755)));
    }

    #[test]
    fn whole_multi_file_patch() {
        let f = patched(ALL_GIT, initial());
        let get = |p: &str| f.get(p).map(|(c, _)| c.as_slice());
        assert_eq!(get("addnl.txt"), Some(&b"has newline"[..]));
        assert_eq!(get("crlf.txt"), Some(&b"one\r\nTWO\r\nthree\r\n"[..]));
        assert_eq!(get("renamed_changed.txt"), None);
        assert_eq!(get("dir_renamed.txt"), Some(&b"keep1\nkeep2\nkeep3\nkeep4\nkeep5\nchanged6\n"[..]));
        assert_eq!(get("gone.txt"), None);
        assert_eq!(get("moved.txt"), None);
        assert_eq!(get("moved2.txt"), Some(&b"a\nb\nc\nd\ne\nf\ng\n"[..]));
        assert_eq!(get("new.txt"), Some(&b"brand\nnew\n"[..]));
        assert_eq!(get("nonl.txt"), Some(&b"no newline\n"[..]));
        assert_eq!(f["run.sh"].1, 0o755);
        let lib = String::from_utf8(lib_rs()).unwrap().replace("line 5\n", "line five\n");
        let lib = lib.replace("line 25\n", "line twenty-five\n");
        assert_eq!(get("src/lib.rs"), Some(lib.as_bytes()));
        assert_eq!(get("with space.txt"), Some(&b"y\n"[..]));
        assert_eq!(run(ALL_GIT, &initial()).unwrap().len(), 11);
    }

    #[test]
    fn offset_hunks() {
        // Lines added above both hunks and between them: each hunk is found at its offset.
        let lib = String::from_utf8(lib_rs()).unwrap();
        let shifted = format!("new 1\nnew 2\n{}", lib.replace("line 15\n", "line 15\nextra a\nextra b\nextra c\n"));
        let f = fs(&[("src/lib.rs", shifted.as_bytes())]);
        let c = one(&section("src/lib.rs"), &f);
        let want = shifted.replace("line 5\n", "line five\n").replace("line 25\n", "line twenty-five\n");
        assert_eq!(String::from_utf8(c.content.unwrap()).unwrap(), want);
        // Lines removed above: negative offset.
        let f = fs(&[("src/lib.rs", lib.replace("line 1\n", "").as_bytes())]);
        let c = one(&section("src/lib.rs"), &f);
        assert!(String::from_utf8(c.content.unwrap()).unwrap().starts_with("line 2\nline 3\nline 4\nline five\n"));
    }

    #[test]
    fn non_matching_hunk_fails_whole_patch() {
        let mut f = initial();
        let lib = String::from_utf8(lib_rs()).unwrap().replace("line 24\n", "line 24 edited\n");
        f.insert("src/lib.rs".into(), (lib.into_bytes(), 0o644));
        let e = err(ALL_GIT, &f);
        assert_eq!(e.code, Code::Conflict);
        assert_eq!(e.message, "hunk 2 of src/lib.rs does not apply at line 22");
        let hint = e.hint.unwrap();
        assert!(hint.contains("line 24 is \"line 24 edited\" but the patch expects \"line 24\""), "{hint}");
    }

    #[test]
    fn plain_diff_ru_n() {
        // `TZ=UTC diff -ruN d1 d2`: a deletion and a creation shown against the epoch.
        let patch = "diff -ruN d1/removed.txt d2/removed.txt
--- d1/removed.txt\t2026-11-25 01:24:01.009617684 +0000
+++ d2/removed.txt\t1970-01-01 00:00:00.000000000 +0000
@@ -1 +0,0 @@
-doomed
diff -ruN d1/src/a.txt d2/src/a.txt
--- d1/src/a.txt\t2026-11-25 01:24:01.009617684 +0000
+++ d2/src/a.txt\t2026-11-25 01:24:01.009617684 +0000
@@ -1,3 +1,3 @@
 alpha
-beta
+BETA
 gamma
diff -ruN d1/src/created.txt d2/src/created.txt
--- d1/src/created.txt\t1970-01-01 00:00:00.000000000 +0000
+++ d2/src/created.txt\t2026-11-25 01:24:01.009617684 +0000
@@ -0,0 +1 @@
+only new
";
        let f = fs(&[("removed.txt", b"doomed\n"), ("src/a.txt", b"alpha\nbeta\ngamma\n")]);
        let changes = run(patch, &f).unwrap();
        let summary: Vec<(&str, &Action)> = changes.iter().map(|c| (c.path.as_str(), &c.action)).collect();
        assert_eq!(
            summary,
            [("removed.txt", &Action::Deleted), ("src/a.txt", &Action::Modified), ("src/created.txt", &Action::Added)]
        );
        assert_eq!(changes[1].content.as_deref(), Some(&b"alpha\nBETA\ngamma\n"[..]));
        assert_eq!(changes[2].content.as_deref(), Some(&b"only new\n"[..]));
    }

    #[test]
    fn plain_diff_u_of_two_files() {
        // `diff -u f1 f2` and `diff -u f1 /dev/null`: no directory to strip.
        let patch = "--- f1\t2026-11-25 01:24:01.014057906 +0000
+++ f2\t2026-11-25 01:24:01.014057906 +0000
@@ -1,2 +1,2 @@
 x
-y
+z
";
        let f = fs(&[("f1", b"x\ny\n")]);
        let c = one(patch, &f);
        assert_eq!((c.path.as_str(), c.content.unwrap()), ("f1", b"x\nz\n".to_vec()));
        let del = "--- f1\t2026-11-25 01:24:01.014057906 +0000
+++ /dev/null\t2026-11-20 00:06:20.078141556 +0000
@@ -1,2 +0,0 @@
-x
-y
";
        assert_eq!(one(del, &f).action, Action::Deleted);
        // `diff -u foo.c.orig foo.c` targets foo.c.
        let orig = "--- ./foo.c.orig\n+++ ./foo.c\n@@ -1 +1 @@\n-a\n+b\n";
        let f = fs(&[("foo.c", b"a\n")]);
        assert_eq!(one(orig, &f).path, "foo.c");
    }

    #[test]
    fn git_no_prefix() {
        // `git diff --no-prefix`: names are used as they are.
        let patch =
            "diff --git src/a.txt src/a.txt\nindex 1..2 100644\n--- src/a.txt\n+++ src/a.txt\n@@ -1 +1 @@\n-a\n+b\n";
        let f = fs(&[("src/a.txt", b"a\n")]);
        assert_eq!(one(patch, &f).content.unwrap(), b"b\n");
    }

    #[test]
    fn paths_are_confined() {
        for (patch, shown) in [
            ("--- a/../etc/passwd\n+++ b/../etc/passwd\n@@ -1 +1 @@\n-x\n+y\n", "../etc/passwd"),
            ("diff --git a/../etc/passwd b/../etc/passwd\nnew file mode 100644\n", "../etc/passwd"),
            ("diff --git a/x b/x\n--- a/x\n+++ b/x/../../y\n@@ -1 +1 @@\n-x\n+y\n", "x/../../y"),
            ("--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-x\n+y\n", "/etc/passwd"),
            ("diff --git a//etc/passwd b//etc/passwd\nnew file mode 100644\n", "/etc/passwd"),
            ("diff --git a/ok b/ok\nsimilarity index 100%\nrename from ok\nrename to /tmp/evil\n", "/tmp/evil"),
            ("diff --git a/a//b b/a//b\nnew file mode 100644\n", "a//b"),
        ] {
            let e = err(patch, &fs(&[]));
            assert_eq!(e.code, Code::InvalidArgument, "{patch}");
            assert!(e.message.contains(shown), "{} lacks {shown}", e.message);
        }
        let c = one("--- a/./src/./x\n+++ b/./src/./x\n@@ -0,0 +1 @@\n+y\n", &fs(&[]));
        assert_eq!((c.path.as_str(), c.action), ("src/x", Action::Added));
    }

    #[test]
    fn binary_patches_rejected() {
        let git = "diff --git a/bin.dat b/bin.dat
new file mode 100644
index 0000000000000000000000000000000000000000..8352675d67aed6625ece79af41c27fdb4ee2e867
GIT binary patch
literal 3
KcmZQzWC8#H2LJ>B

literal 0
HcmV?d00001

";
        let plain_git = "diff --git a/bin.dat b/bin.dat
new file mode 100644
index 0000000..8352675
Binary files /dev/null and b/bin.dat differ
";
        let diff_r = "Binary files d1/img/x.png and d2/img/x.png differ\n";
        for (patch, name) in [(git, "bin.dat"), (plain_git, "bin.dat"), (diff_r, "img/x.png")] {
            let e = err(patch, &fs(&[]));
            assert_eq!(e.code, Code::InvalidArgument);
            assert_eq!(e.message, format!("binary patch for {name} is not supported: only text diffs can be applied"));
        }
    }

    #[test]
    fn count_mismatch_rejected() {
        let f = fs(&[("a.txt", b"1\n2\n3\n")]);
        let short = "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n 1\n-2\n+two\n";
        let long = "--- a/a.txt\n+++ b/a.txt\n@@ -1,2 +1,2 @@\n 1\n-2\n+two\n 3\n";
        let truncated = "--- a/a.txt\n+++ b/a.txt\n@@ -1,3 +1,3 @@\n 1\n-2\n";
        for patch in [short, long, truncated] {
            let e = err(patch, &f);
            assert_eq!(e.code, Code::InvalidArgument);
            assert!(e.message.starts_with("hunk 1 of a.txt: the line counts in its header"), "{}", e.message);
        }
        let malformed = "--- a/a.txt\n+++ b/a.txt\n@@ -1,x +1 @@\n-1\n+2\n";
        assert!(err(malformed, &f).message.contains("malformed header"));
    }

    #[test]
    fn structural_errors() {
        let f = fs(&[("a.txt", b"1\n2\n3\n")]);
        let twice =
            "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-1\n+one\n--- a/a.txt\n+++ b/a.txt\n@@ -3 +3 @@\n-3\n+three\n";
        assert_eq!(err(twice, &f).message, "a.txt appears more than once in the patch");
        let overlap = "--- a/a.txt\n+++ b/a.txt\n@@ -2 +2 @@\n-2\n+x\n@@ -1 +1 @@\n-1\n+y\n";
        assert!(err(overlap, &f).message.contains("hunk 2 of a.txt overlaps"));
        let orphan = "@@ -1 +1 @@\n-1\n+2\n";
        assert!(err(orphan, &f).message.contains("no file header"));
        for garbage in ["", "\n", "hello world\nthis is not a patch\n", "diff -ruN d1 d2\n"] {
            let e = err(garbage, &f);
            assert_eq!((e.code, e.message.as_str()), (Code::InvalidArgument, "no file changes found in patch"));
        }
        let symlink = "diff --git a/l b/l\nnew file mode 120000\n--- /dev/null\n+++ b/l\n@@ -0,0 +1 @@\n+t\n";
        assert!(err(symlink, &f).message.contains("symbolic link"));
    }

    #[test]
    fn limits() {
        let big = format!("--- a/a\n+++ b/a\n@@ -0,0 +1 @@\n+{}\n", "x".repeat(MAX_PATCH_BYTES));
        assert_eq!(err(&big, &fs(&[])).code, Code::LimitExceeded);
        let many: String = (0..=MAX_FILES).map(|n| format!("--- a/f{n}\n+++ b/f{n}\n@@ -0,0 +1 @@\n+x\n")).collect();
        assert_eq!(err(&many, &fs(&[])).code, Code::LimitExceeded);
        let ok: String = (0..MAX_FILES).map(|n| format!("--- a/f{n}\n+++ b/f{n}\n@@ -0,0 +1 @@\n+x\n")).collect();
        assert_eq!(run(&ok, &fs(&[])).unwrap().len(), MAX_FILES);
    }

    #[test]
    fn non_utf8_content() {
        let f = fs(&[("latin1.txt", b"caf\xe9\nline\n")]);
        let patch = "--- a/latin1.txt\n+++ b/latin1.txt\n@@ -1,2 +1,2 @@\n caf\u{fffd}\n-line\n+LINE\n";
        // Context given as U+FFFD does not match the byte 0xE9...
        assert!(run(patch, &f).is_err());
        // ...but hunks that do not touch the non-UTF-8 line apply, keeping its bytes.
        let patch = "--- a/latin1.txt\n+++ b/latin1.txt\n@@ -2 +2 @@\n-line\n+LINE\n";
        assert_eq!(one(patch, &f).content.unwrap(), b"caf\xe9\nLINE\n");
    }

    #[test]
    fn unified_diff_format() {
        let old = b"a\nb\nc\n";
        let new = b"a\nB\nc";
        assert_eq!(
            unified_diff("x.txt", Some(old), Some(new)),
            "diff --git a/x.txt b/x.txt\n--- a/x.txt\n+++ b/x.txt\n@@ -1,3 +1,3 @@\n a\n-b\n-c\n+B\n+c\n\\ No newline at end of file\n"
        );
        assert_eq!(unified_diff("x", Some(b"same"), Some(b"same")), "");
        assert_eq!(
            unified_diff("n.txt", None, Some(b"hi\n")),
            "diff --git a/n.txt b/n.txt\nnew file mode 100644\n--- /dev/null\n+++ b/n.txt\n@@ -0,0 +1 @@\n+hi\n"
        );
        assert!(
            unified_diff("b.bin", Some(b"\0"), Some(b"\x01")).ends_with("Binary files a/b.bin and b/b.bin differ\n")
        );
    }

    #[test]
    fn unified_diff_round_trips() {
        let long: String = (1..=40).map(|n| format!("l{n}\n")).collect();
        let edited = long.replace("l3\n", "L3\n").replace("l20\n", "").replace("l39\n", "l39\nnew\n");
        type Case<'c> = (&'c str, Option<&'c [u8]>, Option<&'c [u8]>);
        let cases: Vec<Case> = vec![
            ("a.txt", Some(b"one\ntwo\n"), Some(b"one\n2\n")),
            ("a.txt", Some(b"no newline"), Some(b"no newline\n")),
            ("a.txt", Some(b"newline\n"), Some(b"newline")),
            ("a.txt", Some(b"x\ny"), Some(b"x\nz")),
            ("a.txt", Some(b""), Some(b"content\n")),
            ("a.txt", Some(b"content\n"), Some(b"")),
            ("a.txt", Some(b""), Some(b"no newline")),
            ("a.txt", None, Some(b"new\nfile\n")),
            ("a.txt", None, Some(b"")),
            ("a.txt", None, Some(b"x")),
            ("a.txt", Some(b"gone\n"), None),
            ("a.txt", Some(b""), None),
            ("a.txt", Some(b"gone"), None),
            ("a.txt", Some(b"1\r\n2\r\n"), Some(b"1\r\n3\r\n")),
            ("dir/with space.txt", Some(b"a\n"), Some(b"b\n")),
            ("dir/tab\there \"q\".txt", Some(b"a\n"), Some(b"b\n")),
            ("dir/café.txt", None, Some(b"\xc3\xa9\n")),
            ("long.txt", Some(long.as_bytes()), Some(edited.as_bytes())),
            ("long.txt", Some(edited.as_bytes()), Some(long.as_bytes())),
            ("long.txt", Some(long.as_bytes()), Some(b"")),
            ("long.txt", Some(long.as_bytes()), Some(b"l1\n")),
        ];
        for (path, old, new) in cases {
            let patch = unified_diff(path, old, new);
            let files: Fs = old.map(|c| (path.to_string(), (c.to_vec(), 0o644))).into_iter().collect();
            let after = patched(&patch, files);
            assert_eq!(after.get(path).map(|f| f.0.as_slice()), new, "{path}: {patch}");
            assert_eq!(after.len(), usize::from(new.is_some()), "{patch}");
        }
        // Every prefix/suffix combination of a few lines, with and without final newline.
        let pieces = ["a\n", "b\n", "c\n", "a\n", "d", "e\n"];
        let texts: Vec<String> = (0..64u32)
            .map(|m| pieces.iter().enumerate().filter(|(k, _)| m & (1 << k) != 0).map(|(_, p)| *p).collect())
            .collect();
        for old in &texts {
            for new in &texts {
                let patch = unified_diff("f", Some(old.as_bytes()), Some(new.as_bytes()));
                if old == new {
                    assert!(patch.is_empty());
                    continue;
                }
                let after = patched(&patch, fs(&[("f", old.as_bytes())]));
                assert_eq!(after["f"].0, new.as_bytes(), "{old:?} -> {new:?}: {patch}");
            }
        }
    }
}
