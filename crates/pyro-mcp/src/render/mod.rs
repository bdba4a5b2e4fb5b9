//! Text renderings of operation results: one per result type, used both for the CLI's human
//! output and for the MCP server's text content, so the two always state the same facts.
//! (`--json` and MCP structured content are the same values, serialized.)
//!
//! One submodule per area (runs, workspaces, files, environments). Results whose payload is a
//! byte stream (run and exec output, file content) also have a one-line `status_line`: the
//! CLI passes the bytes through untouched and prints that line on stderr, the MCP text puts
//! the line first and the streams after it.

pub mod throttle;

use crate::text::bytes;
use std::fmt::Write;

/// A result that people (and models reading text) can read.
pub trait Render {
    /// The result's facts as short lines of plain text, ending in a newline.
    fn text(&self) -> String;

    /// The MCP text content: `text` without the large fields (output streams, file content,
    /// the patch) that the structured content carries already, so a result is not sent twice.
    /// Hosts that show models the structured content (Codex, Claude Code) lose nothing; the
    /// host's tool row stays short.
    fn brief(&self) -> String {
        self.text()
    }
}

/// `stdout: 12 lines, 1.2 KiB (truncated); stderr: empty` for a brief.
pub(super) fn stream_sizes(stdout: &[u8], stderr: &[u8], truncated: (bool, bool)) -> String {
    let one = |name: &str, b: &[u8], cut: bool| {
        if b.is_empty() {
            format!("{name}: empty")
        } else {
            let lines = b.iter().filter(|&&c| c == b'\n').count() + usize::from(!b.ends_with(b"\n"));
            format!("{name}: {lines} lines, {}{}", bytes(b.len() as u64), if cut { " (truncated)" } else { "" })
        }
    };
    format!("{}; {}\n", one("stdout", stdout, truncated.0), one("stderr", stderr, truncated.1))
}

/// `\n[stdout]\n...` for each non-empty stream.
pub(super) fn streams(out: &mut String, stdout: &[u8], stderr: &[u8], truncated: (bool, bool)) {
    for (name, bytes, cut) in [("stdout", stdout, truncated.0), ("stderr", stderr, truncated.1)] {
        if !bytes.is_empty() {
            out.push_str(&format!("[{name}{}]\n", if cut { ", truncated" } else { "" }));
            out.push_str(&String::from_utf8_lossy(bytes));
            if !bytes.ends_with(b"\n") {
                out.push('\n');
            }
        }
    }
}

pub(super) fn labels(l: &std::collections::BTreeMap<String, String>, sep: &str) -> String {
    l.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(sep)
}

/// `YYYY-MM-DD HH:MM:SS UTC` from seconds since the epoch.
pub(crate) fn utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// One `name  value` row of `env inspect`.
pub(super) fn row(o: &mut String, k: &str, v: &str) {
    let _ = writeln!(o, "{k:<14} {v}");
}

/// `{before}{n}{after}` for a "+N more" count, or nothing.
pub(super) fn more(n: Option<usize>, before: &str, after: &str) -> String {
    n.map(|n| format!("{before}{n}{after}")).unwrap_or_default()
}

mod env;
mod files;
mod run;
#[cfg(test)]
mod tests;
mod workspace;
