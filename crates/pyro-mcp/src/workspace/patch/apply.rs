//! Applying parsed sections to current file contents: locating each hunk (at its stated line or
//! the nearest offset where its old lines match) and building the [`FileChange`] for each path.

use super::parse::{Hunk, Kind, Section};
use super::{Action, Current, FileChange, DEFAULT_MODE};
use crate::error::{Code, Error, Result};

pub(super) fn apply_section(s: &Section, read: &mut dyn FnMut(&str) -> Result<Option<Current>>) -> Result<FileChange> {
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
pub(super) fn split_lines(content: &[u8]) -> Vec<&[u8]> {
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
