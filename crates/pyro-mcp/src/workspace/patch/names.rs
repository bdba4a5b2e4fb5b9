//! File names in patch headers: git's C-quoted names, `---`/`+++` names with timestamps, the
//! two names of a `diff --git` line, and the validation that keeps every path inside the workspace.

use super::model::MAX_PATH_BYTES;
use super::model::SHOWN;
use crate::error::{Error, Result};
use crate::text::clip;

/// True for the timestamps `diff -N` prints for a missing file (the epoch in some time zone).
pub(super) fn is_epoch(time: Option<&str>) -> bool {
    time.is_some_and(|t| {
        t.starts_with("1970-01-01 ") || t.starts_with("1969-12-31 ") || t.contains(" 1970") || t.contains(" 1969")
    })
}

/// GNU patch's choice between two differing names: fewest components, then shortest base name,
/// then shortest name; the old name on a tie.
pub(super) fn best_name<'s>(old: &'s str, new: &'s str) -> &'s str {
    let key = |p: &str| (p.split('/').count(), p.rsplit('/').next().map_or(0, str::len), p.len());
    if key(new) < key(old) {
        new
    } else {
        old
    }
}

/// The name in a `---` / `+++` line (possibly quoted) and the timestamp after a tab, if any;
/// None for `/dev/null`.
pub(super) fn header_name(text: &str) -> Result<(Option<Vec<u8>>, Option<&str>)> {
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
pub(super) fn header_path(text: &str) -> Result<Vec<u8>> {
    if text.starts_with('"') {
        Ok(unquote(text)?.0)
    } else {
        Ok(text.as_bytes().to_vec())
    }
}

/// The two names of `diff --git A B`, still with their prefixes. None when unquoted names with
/// spaces cannot be told apart (renames then name the files in their own headers).
pub(super) fn split_git_names(rest: &str) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
    if rest.starts_with('"') {
        let (a, after) = unquote(rest)?;
        let Some(b) = after.strip_prefix(' ') else { return Ok(None) };
        let b = if b.starts_with('"') { unquote(b)?.0 } else { b.as_bytes().to_vec() };
        return Ok(Some((a, b)));
    }
    if let Some(k) = rest.find(" \"") {
        let (a, b) = rest.split_at(k);
        let (b, _) = unquote(b.get(1..).unwrap_or_default())?;
        return Ok(Some((a.as_bytes().to_vec(), b)));
    }
    // Try every space as the separator (no list of them is kept: a hostile line may hold
    // millions); with a single space, that one separates the names whatever they are.
    let (mut spaces, mut only) = (0usize, None);
    for (k, _) in rest.match_indices(' ') {
        let (a, b) = rest.split_at(k);
        let b = b.get(1..).unwrap_or_default();
        let same = match (a.strip_prefix("a/"), b.strip_prefix("b/")) {
            (Some(x), Some(y)) => x == y,
            _ => a == b,
        };
        if same {
            return Ok(Some((a.as_bytes().to_vec(), b.as_bytes().to_vec())));
        }
        spaces += 1;
        only = Some((a, b));
    }
    Ok(match (spaces, only) {
        (1, Some((a, b))) => Some((a.as_bytes().to_vec(), b.as_bytes().to_vec())),
        _ => None,
    })
}

/// Decode a C-style quoted name as git writes it (`"a/tab\there"`, octal `\303\251` bytes).
/// Returns the bytes and the text after the closing quote.
pub(super) fn unquote(text: &str) -> Result<(Vec<u8>, &str)> {
    let bad = || Error::invalid(format!("malformed quoted path in patch: {}", clip(text, SHOWN)));
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut k = 1;
    while let Some(&b) = bytes.get(k) {
        match b {
            b'"' => return Ok((out, text.get(k + 1..).unwrap_or_default())),
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
                        let [d1, d2] = [digits.first(), digits.get(1)].map(|d| d.map_or(0, |d| d - b'0'));
                        ((c - b'0') << 6) | (d1 << 3) | d2
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
pub(super) fn clean_path(raw: Vec<u8>) -> Result<String> {
    let shown = clip(&String::from_utf8_lossy(&raw), SHOWN);
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
