//! Reading patch text: `diff --git` and `diff -u` sections, their extended headers (modes,
//! renames, copies) and hunks, validated into [`Section`]s before anything is applied. File
//! names in headers are decoded and checked in `names`.

use super::model::{MAX_FILES, MAX_LINE_NUMBER, NO_NEWLINE, SHOWN};
use super::names::{best_name, clean_path, header_name, header_path, is_epoch, split_git_names};
use crate::error::{Error, Result};
use crate::text::clip;

/// One line of a hunk body: `kind` is b' ', b'-' or b'+'; `newline` is false when a
/// `\ No newline at end of file` marker follows it.
pub(super) struct Line<'a> {
    pub(super) kind: u8,
    pub(super) text: &'a [u8],
    pub(super) newline: bool,
}

pub(super) struct Hunk<'a> {
    pub(super) old_start: usize,
    pub(super) old_count: usize,
    pub(super) lines: Vec<Line<'a>>,
}

impl<'a> Hunk<'a> {
    /// The lines of one side (`b'-'` = old, `b'+'` = new), borrowed from the patch text.
    pub(super) fn side(&self, kind: u8) -> Vec<&Line<'a>> {
        self.lines.iter().filter(|l| l.kind == b' ' || l.kind == kind).collect()
    }
}

pub(super) enum Kind {
    Modify,
    Add,
    /// A plain diff with a single `@@ -0,0` hunk: creates the file when it is missing.
    AddOrModify,
    Delete,
    Rename(String),
    Copy(String),
}

/// One file's part of the patch, with validated paths.
pub(super) struct Section<'a> {
    pub(super) path: String,
    pub(super) kind: Kind,
    /// Full mode (type and permission bits) from `old mode` / `deleted file mode`.
    pub(super) old_mode: Option<u32>,
    /// Full mode from `new mode` / `new file mode`.
    pub(super) new_mode: Option<u32>,
    /// Full mode from the `index abc..def MODE` line (when both sides have the same mode).
    pub(super) index_mode: Option<u32>,
    pub(super) hunks: Vec<Hunk<'a>>,
}

impl Section<'_> {
    /// The recorded mode of the old side, if the patch gives one.
    pub(super) fn old_mode(&self) -> Option<u32> {
        self.old_mode.or(self.index_mode)
    }
}

struct Parser<'a> {
    lines: Vec<&'a str>,
    i: usize,
}

pub(super) fn parse(patch: &str) -> Result<Vec<Section<'_>>> {
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
    let file = clip(file, SHOWN);
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
            Some(v) => clip(&String::from_utf8_lossy(v), SHOWN),
            None => clip(rest, SHOWN),
        };
        let mut file = display(&git_old, &git_new);
        self.i += 1;

        let (mut old_mode, mut new_mode, mut index_mode) = (None, None, None);
        let (mut created, mut deleted) = (false, false);
        let (mut rename_from, mut rename_to, mut copy_from, mut copy_to) = (None, None, None, None);
        while let Some(line) = self.current() {
            // Old permission bits are not checked (git apply merely warns when they differ); the
            // old type (file or symlink) is, when applying.
            if let Some(m) = line.strip_prefix("old mode ") {
                old_mode = Some(parse_mode(m, &file)?);
            } else if let Some(m) = line.strip_prefix("new mode ") {
                new_mode = Some(parse_mode(m, &file)?);
            } else if let Some(m) = line.strip_prefix("deleted file mode ") {
                deleted = true;
                old_mode = Some(parse_mode(m, &file)?);
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
            } else if let Some(ids) = line.strip_prefix("index ") {
                // `index abc..def 100644`: the mode is given when both sides share it.
                if let Some(m) = ids.split_whitespace().nth(1) {
                    index_mode = Some(parse_mode(m, &file)?);
                }
            } else if !(line.starts_with("similarity index ") || line.starts_with("dissimilarity index ")) {
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
        let unknown = || Error::invalid(format!("cannot tell the file name from `diff --git {}`", clip(rest, SHOWN)));
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
        Ok(Section { path, kind, old_mode, new_mode, index_mode, hunks })
    }

    /// A `diff -u` section: `--- OLD[\tTIME]`, `+++ NEW[\tTIME]`, hunks.
    fn plain_section(&mut self) -> Result<Section<'a>> {
        let line = |k: usize, prefix: &str| self.lines.get(k).and_then(|l| l.strip_prefix(prefix));
        let (Some(first), Some(second)) = (line(self.i, "--- "), line(self.i + 1, "+++ ")) else {
            return Err(Error::internal("plain_section called without a ---/+++ pair"));
        };
        let (old, old_time) = header_name(first)?;
        let (new, new_time) = header_name(second)?;
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
            match n.iter().position(|&c| c == b'/').and_then(|k| n.get(k + 1..)) {
                Some(rest) if strip => rest.to_vec(),
                _ => n,
            }
        };
        let old = old.map(strip1).map(clean_path).transpose()?;
        let new = new.map(strip1).map(clean_path).transpose()?;
        let path = match (&old, &new) {
            (Some(o), Some(n)) => best_name(o, n).to_string(),
            (Some(p), None) | (None, Some(p)) => p.clone(),
            (None, None) => return Err(Error::invalid("a file header in the patch names /dev/null on both sides")),
        };
        let hunks = self.hunks(&path)?;
        if hunks.is_empty() {
            return Err(Error::invalid(format!("the patch for {path} has file headers but no hunks")));
        }
        let creates = matches!(hunks.as_slice(), [h] if h.old_start == 0 && h.old_count == 0);
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
        Ok(Section { path, kind, old_mode: None, new_mode: None, index_mode: None, hunks })
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
            let shown = clip(header, SHOWN);
            let (old_start, old_count, new_count) = parse_hunk_header(header)
                .ok_or_else(|| Error::invalid(format!("hunk {n} of {file} has a malformed header: {shown}")))?;
            // Checked before any work: a header claiming line 10^15 must not make the search
            // below (or anything else) take time proportional to it.
            if [old_start, old_count, new_count].iter().any(|&v| v > MAX_LINE_NUMBER) {
                return Err(Error::invalid(format!(
                    "hunk {n} of {file} has an impossible line number or count in its header: {shown}"
                ))
                .hint("the patch is corrupt: regenerate it"));
            }
            if let Some(prev) = hunks.last() {
                if old_start < prev.old_start.saturating_add(prev.old_count) {
                    return Err(Error::invalid(format!("hunk {n} of {file} overlaps or precedes the hunk before it")));
                }
            }
            let mismatch = || {
                Error::invalid(format!(
                    "hunk {n} of {file}: the line counts in its header ({}) do not match its body",
                    clip(header_ranges(header), SHOWN)
                ))
                .hint("the patch was edited or cut short: regenerate it rather than editing hunks by hand")
            };
            self.i += 1;
            let mut h = Hunk { old_start, old_count, lines: Vec::new() };
            let (mut old_left, mut new_left) = (old_count, new_count);
            while old_left > 0 || new_left > 0 {
                let Some(&line) = self.lines.get(self.i) else { return Err(mismatch()) };
                let bytes = line.as_bytes();
                let (kind, text) = match bytes.split_first() {
                    // An empty line stands for an empty context line (editors strip the space).
                    None => (b' ', bytes),
                    Some((&k @ (b' ' | b'-' | b'+'), text)) => (k, text),
                    Some((b'\\', _)) => {
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

/// A mode from a git header, with its type bits: regular files and symbolic links only.
fn parse_mode(text: &str, file: &str) -> Result<u32> {
    let text = clip(text.trim(), 20);
    let mode = u32::from_str_radix(&text, 8)
        .map_err(|_| Error::invalid(format!("the patch gives {file} an invalid mode `{text}`")))?;
    match mode & 0o170000 {
        0o100000 | 0o120000 => Ok(mode),
        0o160000 => Err(Error::invalid(format!("{file} is a submodule in the patch (mode {text}): not supported"))),
        _ => Err(Error::invalid(format!("the patch gives {file} an unsupported mode {text}"))),
    }
}
