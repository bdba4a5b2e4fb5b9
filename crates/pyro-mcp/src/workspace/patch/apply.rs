//! Applying parsed sections to current file contents: locating each hunk (at its stated line or
//! the nearest offset where its old lines match) and building the [`FileChange`] for each path,
//! regular file or symbolic link (whose "content" is its target).

use super::model::{is_symlink_mode, Action, Current, FileChange, DEFAULT_MODE, MAX_LINK_BYTES};
use super::parse::{Hunk, Kind, Line, Section};
use crate::error::{Code, Error, Result};
use crate::text::clip;

/// The caller's callback: current state of a path, None when it does not exist.
pub(super) type Reader<'r> = dyn FnMut(&str) -> Result<Option<Current>> + 'r;

const STALE_HINT: &str = "the file changed since the patch was made: read it again and regenerate the patch";

/// A change with the section's path, hunk and line counts filled in; the caller sets the rest.
fn change(s: &Section) -> FileChange {
    let count = |kind: u8| s.hunks.iter().flat_map(|h| &h.lines).filter(|l| l.kind == kind).count();
    FileChange {
        path: s.path.clone(),
        action: Action::Modified,
        old_path: None,
        content: None,
        mode: None,
        symlink: false,
        type_changed: false,
        hunks: s.hunks.len(),
        additions: count(b'+'),
        deletions: count(b'-'),
    }
}

fn kind_name(link: bool) -> &'static str {
    if link {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

/// Check that `cur` has the type the patch recorded for the old side (git refuses with "wrong
/// type" too). `inherit` allows a missing record: renames and copies take the source's type.
fn check_old_type(s: &Section, path: &str, cur: &Current, inherit: bool) -> Result<bool> {
    let link = is_symlink_mode(cur.mode);
    match s.old_mode() {
        Some(m) if is_symlink_mode(m) != link => Err(Error::new(
            Code::Conflict,
            format!("{path} is {} but the patch expects {}", kind_name(link), kind_name(!link)),
        )
        .hint(STALE_HINT)),
        // Without a recorded mode (plain `diff -u`, trimmed git sections) the hunks describe a
        // file's lines: applying them to a link's target string would silently do the wrong thing.
        None if link && !inherit => Err(Error::invalid(format!(
            "{path} is a symbolic link but the patch does not say so (no mode in its headers)"
        ))
        .hint("make the patch with `git diff`, which records symbolic links as mode 120000")),
        _ => Ok(link),
    }
}

/// A regular file cannot become a link (or back) within one section: git prints that as a
/// deletion followed by a creation of the same path.
fn check_new_type(s: &Section, path: &str, link: bool) -> Result<()> {
    match s.new_mode {
        Some(m) if is_symlink_mode(m) != link => Err(Error::invalid(format!(
            "the patch changes {path} from {} to {} in place",
            kind_name(link),
            kind_name(!link)
        ))
        .hint("write a type change as a deletion of the path followed by its creation, as `git diff` does")),
        _ => Ok(()),
    }
}

/// A link target must be something `symlink(2)` accepts, and git's form of it: no final newline.
fn check_target(path: &str, target: &[u8]) -> Result<()> {
    let why = if target.is_empty() {
        "is empty"
    } else if target.contains(&0) {
        "contains a NUL byte"
    } else if target.len() > MAX_LINK_BYTES {
        "is longer than 4095 bytes"
    } else if target.ends_with(b"\n") {
        "ends with a newline (is a `\\ No newline at end of file` marker missing?)"
    } else {
        return Ok(());
    };
    Err(Error::invalid(format!(
        "the patch makes {path} a symbolic link whose target {why}: {:?}",
        clip(&String::from_utf8_lossy(target), 80)
    )))
}

/// Fill in content, type and mode of a path that the section creates from nothing.
fn create(s: &Section, c: &mut FileChange) -> Result<()> {
    let content = apply_hunks(&[], &s.hunks, &s.path)?;
    c.symlink = s.new_mode.is_some_and(is_symlink_mode);
    if c.symlink {
        check_target(&s.path, &content)?;
    } else {
        c.mode = Some(s.new_mode.map_or(DEFAULT_MODE, |m| m & 0o7777));
    }
    c.content = Some(content);
    Ok(())
}

pub(super) fn apply_section(s: &Section, read: &mut Reader) -> Result<FileChange> {
    let path = s.path.as_str();
    let mut c = change(s);
    let exists = |path: &str| Error::new(Code::Conflict, format!("cannot create {path}: it already exists"));
    let missing = |what: &str| Error::not_found(format!("cannot {what} {path}: it does not exist"));
    match &s.kind {
        Kind::Add => {
            if read(path)?.is_some() {
                return Err(exists(path));
            }
            c.action = Action::Added;
            create(s, &mut c)?;
        }
        Kind::AddOrModify => match read(path)? {
            None => {
                c.action = Action::Added;
                create(s, &mut c)?;
            }
            Some(cur) => {
                check_old_type(s, path, &cur, false)?;
                c.content = Some(apply_hunks(&cur.content, &s.hunks, path)?);
            }
        },
        Kind::Modify => {
            let cur = read(path)?.ok_or_else(|| missing("patch"))?;
            c.symlink = check_old_type(s, path, &cur, false)?;
            check_new_type(s, path, c.symlink)?;
            if c.symlink && s.hunks.is_empty() {
                return Err(Error::invalid(format!("the patch changes the mode of {path}, a symbolic link")));
            }
            if s.hunks.is_empty() {
                c.action = Action::ModeChanged;
            } else {
                let content = apply_hunks(&cur.content, &s.hunks, path)?;
                if c.symlink {
                    check_target(path, &content)?;
                }
                c.content = Some(content);
            }
            c.mode = if c.symlink { None } else { s.new_mode.map(|m| m & 0o7777) };
        }
        Kind::Delete => {
            let cur = read(path)?.ok_or_else(|| missing("delete"))?;
            c.symlink = check_old_type(s, path, &cur, false)?;
            if !apply_hunks(&cur.content, &s.hunks, path)?.is_empty() {
                let what = if c.symlink { "a different target" } else { "content the patch does not remove" };
                return Err(Error::new(Code::Conflict, format!("cannot delete {path}: it has {what}")).hint(STALE_HINT));
            }
            c.action = Action::Deleted;
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
            c.symlink = check_old_type(s, from, &src, true)?;
            check_new_type(s, path, c.symlink)?;
            let content = apply_hunks(&src.content, &s.hunks, path)?;
            if c.symlink {
                check_target(path, &content)?;
            } else {
                c.mode = Some(s.new_mode.unwrap_or(src.mode) & 0o7777);
            }
            c.content = Some(content);
            if verb == "rename" {
                c.action = Action::Renamed;
                c.old_path = Some(from.clone());
            } else {
                c.action = Action::Added;
            }
        }
    }
    Ok(c)
}

/// A deletion and a creation of the same path (how git prints a regular file turning into a
/// symbolic link or back): one change that replaces what is there.
pub(super) fn apply_replacement(del: &Section, add: &Section, read: &mut Reader) -> Result<FileChange> {
    let gone = apply_section(del, read)?;
    let mut c = change(add);
    create(add, &mut c)?;
    c.type_changed = gone.symlink != c.symlink;
    c.hunks = c.hunks.saturating_add(gone.hunks);
    c.additions = c.additions.saturating_add(gone.additions);
    c.deletions = c.deletions.saturating_add(gone.deletions);
    Ok(c)
}

/// Lines of `content`, each with its `\n` (the last may lack one).
pub(super) fn split_lines(content: &[u8]) -> Vec<&[u8]> {
    content.split_inclusive(|&c| c == b'\n').collect()
}

/// True when a line of the file (with its `\n`, if any) is this hunk line.
fn same(file_line: &[u8], l: &Line) -> bool {
    match file_line.strip_suffix(b"\n") {
        Some(body) => l.newline && body == l.text,
        None => !l.newline && file_line == l.text,
    }
}

/// `stated` moved by `offset` lines, clamped to the usize range (overflow-safe for any input).
fn shifted(stated: usize, offset: i64) -> usize {
    let moved = i64::try_from(stated).unwrap_or(i64::MAX).saturating_add(offset);
    usize::try_from(moved.max(0)).unwrap_or(usize::MAX)
}

/// Apply hunks in order: each at its stated line (shifted by the offset the previous hunk
/// needed) when its old lines match exactly there, else at the nearest offset where they do,
/// never overlapping the previous hunk. Output is appended once, line by line: linear in the
/// size of the file plus the patch.
fn apply_hunks(content: &[u8], hunks: &[Hunk], path: &str) -> Result<Vec<u8>> {
    let lines = split_lines(content);
    let mut out = Vec::with_capacity(content.len());
    let mut cursor = 0;
    let mut offset: i64 = 0;
    for (k, h) in hunks.iter().enumerate() {
        let old = h.side(b'-');
        let new = h.side(b'+');
        let stated = if h.old_count == 0 { h.old_start } else { h.old_start.saturating_sub(1) };
        let leading = h.lines.iter().take_while(|l| l.kind == b' ').count();
        let trailing = h.lines.iter().rev().take_while(|l| l.kind == b' ').count();
        // Less context on one side than the other means the hunk touches that end of the file;
        // so does a new last line without newline.
        let anchor = Anchor {
            start: h.old_count > 0 && h.old_start == 1 && leading < trailing,
            end: trailing < leading || new.last().is_some_and(|l| !l.newline),
        };
        let pos = find(&lines, &old, shifted(stated, offset), cursor, anchor)
            .ok_or_else(|| not_applicable(k + 1, path, h.old_start, &lines, &old, stated))?;
        lines.get(cursor..pos).unwrap_or_default().iter().for_each(|l| out.extend_from_slice(l));
        for l in &new {
            out.extend_from_slice(l.text);
            if l.newline {
                out.push(b'\n');
            }
        }
        cursor = pos.saturating_add(old.len());
        let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        offset = to_i64(pos).saturating_sub(to_i64(stated));
    }
    lines.get(cursor..).unwrap_or_default().iter().for_each(|l| out.extend_from_slice(l));
    Ok(out)
}

#[derive(Clone, Copy)]
struct Anchor {
    start: bool,
    end: bool,
}

/// Where `old` occurs in `lines` at or after `lo`, nearest to `expected` first (later before
/// earlier at equal distance). A hunk with no old lines only goes exactly where it says.
///
/// `expected` comes from the patch and may be absurd (line 10^9 of a 3-line file): candidates
/// are walked outward from it but only inside `lo..=hi`, so the search costs at most one
/// comparison per line of the file, never one step per unit of distance.
fn find(lines: &[&[u8]], old: &[&Line], expected: usize, lo: usize, anchor: Anchor) -> Option<usize> {
    let hi = lines.len().checked_sub(old.len())?;
    if lo > hi {
        return None;
    }
    let fits = |p: usize| {
        (!anchor.start || p == 0)
            && (!anchor.end || p == hi)
            // Nothing goes after a last line that has no newline.
            && (p == 0 || lines.get(p - 1).is_some_and(|l| l.ends_with(b"\n")))
            && lines.get(p..p + old.len()).is_some_and(|w| w.iter().zip(old).all(|(a, b)| same(a, b)))
    };
    if old.is_empty() {
        return (lo <= expected && expected <= hi && fits(expected)).then_some(expected);
    }
    // `up` is the next candidate at or after `expected`; `down` is one past the next candidate before it.
    let mut up = expected.max(lo);
    let mut down = expected.min(hi + 1);
    loop {
        let take_up = match (up <= hi, down > lo) {
            (false, false) => return None,
            (true, false) => true,
            (false, true) => false,
            (true, true) => up.abs_diff(expected) <= (down - 1).abs_diff(expected),
        };
        if take_up {
            if fits(up) {
                return Some(up);
            }
            up += 1;
        } else {
            down -= 1;
            if fits(down) {
                return Some(down);
            }
        }
    }
}

fn not_applicable(n: usize, path: &str, line: usize, lines: &[&[u8]], old: &[&Line], stated: usize) -> Error {
    let show = |l: &[u8]| format!("{:?}", clip(&String::from_utf8_lossy(l), 80));
    let detail = old.iter().enumerate().find_map(|(j, want)| {
        let at = stated.saturating_add(j);
        match lines.get(at) {
            Some(have) if same(have, want) => None,
            Some(have) => Some(format!(
                "line {} is {} but the patch expects {}",
                at.saturating_add(1),
                show(have.strip_suffix(b"\n").unwrap_or(have)),
                show(want.text)
            )),
            None => Some(format!("the file has only {} lines but the patch expects {}", lines.len(), show(want.text))),
        }
    });
    let hint = match detail {
        Some(d) => format!("{d}; {STALE_HINT}"),
        None => STALE_HINT.to_string(),
    };
    Error::new(Code::Conflict, format!("hunk {n} of {path} does not apply at line {line}")).hint(hint)
}
