//! Writing unified diffs: [`unified_diff`] and the helpers that format its headers and lines.

use super::apply::split_lines;
use super::model::{CONTEXT, NO_NEWLINE};

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
