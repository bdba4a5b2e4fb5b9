//! Short text for messages: clipping strings that come from users, chat models or the guest,
//! byte counts written for people, captured bytes serialized as text, and control characters
//! made visible before text reaches a person's terminal.

/// `s` cut to at most `max` chars (never inside a char), with `…` marking a cut, so that a huge
/// or hostile input cannot swell an error message, an event or a summary.
pub(crate) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `12.0 MiB`, `3.2 GiB`.
pub(crate) fn bytes(n: u64) -> String {
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

/// A count for people, with thousands separated: `1,053`.
pub(crate) fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// How a diff names a directory that stands for everything below it:
/// `node_modules/lodash/ (1,053 files, 1.4 MiB)`.
pub(crate) fn collapsed_dir(path: &str, files: u64, bytes: u64) -> String {
    format!("{path}/ ({} file{}, {})", count(files), if files == 1 { "" } else { "s" }, self::bytes(bytes))
}

/// Serialize captured bytes (command output, file content) as UTF-8 text, replacing invalid
/// sequences: JSON results stay valid whatever the guest printed.
pub(crate) fn lossy<S: serde::Serializer>(b: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(b))
}

/// `s` with every control character except `\n` and `\t` written out visibly: C0 controls
/// and DEL as `\x1b`-style escapes, C1 controls (U+0080..U+009F, which some terminals obey
/// as CSI and friends) as `\u{9b}`. Text from the guest (file names, diffs, logs, summaries)
/// passes through this before a terminal sees it, so an escape sequence cannot move the
/// cursor, hide lines of a review, or retitle the window. JSON output never goes through it.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| (c.is_control() && c != '\n' && c != '\t') || c == '\u{2028}' || c == '\u{2029}';
    if !s.chars().any(bad) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if !bad(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_but_newlines_and_tabs_kept() {
        assert_eq!(escape_controls("a\tb\nc"), "a\tb\nc");
        assert_eq!(escape_controls("\x1b[2K\x1b[1Ahidden\r"), "\\x1b[2K\\x1b[1Ahidden\\x0d");
        assert_eq!(escape_controls("bell\x07 del\x7f nul\0"), "bell\\x07 del\\x7f nul\\x00");
        assert_eq!(escape_controls("csi\u{9b}31m"), "csi\\u{9b}31m");
        assert_eq!(escape_controls("été ✓"), "été ✓");
    }

    #[test]
    fn clip_marks_only_a_real_cut() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("abcd", 3), "abc…");
        assert_eq!(clip("ééé", 2), "éé…");
    }

    #[test]
    fn counts_have_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1053), "1,053");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(collapsed_dir("a/b", 1, 10), "a/b/ (1 file, 10 B)");
    }

    #[test]
    fn bytes_picks_the_unit() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 << 20), "12.0 MiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
