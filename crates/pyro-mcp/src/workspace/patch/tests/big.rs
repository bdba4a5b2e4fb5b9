//! A big real-world-sized patch (12 files of 900 KB, thousands of hunks each, over 10 MB of
//! patch text) must apply in linear time: this test takes well under a few seconds in debug builds.

use super::*;
use std::time::{Duration, Instant};

const FILES: usize = 12;
/// 36,000 lines of 25 bytes: 900 KB per file.
const LINES: usize = 36_000;
/// Every 8th line changes: 4,500 one-line hunks per file with 3 lines of context each side.
const EVERY: usize = 8;

fn line(f: usize, n: usize, changed: bool) -> String {
    if changed {
        format!("F{f:02} LINE {n:06} CHANGED!\n")
    } else {
        format!("f{f:02} line {n:06} abcdefgh\n")
    }
}

/// The patch `git diff` would print for the change, written directly (a Myers diff of these
/// files in a debug build would take longer than the apply being measured).
fn hunks(f: usize, out: &mut String) {
    for n in (EVERY / 2..LINES).step_by(EVERY) {
        let first = n - 3;
        out.push_str(&format!("@@ -{},7 +{},7 @@\n", first + 1, first + 1));
        for k in first..n {
            out.push(' ');
            out.push_str(&line(f, k, false));
        }
        out.push('-');
        out.push_str(&line(f, n, false));
        out.push('+');
        out.push_str(&line(f, n, true));
        for k in n + 1..=n + 3 {
            out.push(' ');
            out.push_str(&line(f, k, false));
        }
    }
}

#[test]
fn ten_megabyte_patch_is_fast() {
    let mut before = Fs::new();
    let mut want = Fs::new();
    let mut patch = String::new();
    for f in 0..FILES {
        let path = format!("big/file{f:02}.txt");
        let old: String = (0..LINES).map(|n| line(f, n, false)).collect();
        let new: String = (0..LINES).map(|n| line(f, n, n % EVERY == EVERY / 2)).collect();
        assert_eq!(old.len(), 900_000);
        patch.push_str(&format!(
            "diff --git a/{path} b/{path}\nindex 1111111..2222222 100644\n--- a/{path}\n+++ b/{path}\n"
        ));
        hunks(f, &mut patch);
        before.insert(path.clone(), (old.into_bytes(), 0o644));
        want.insert(path, (new.into_bytes(), 0o644));
    }
    assert!(patch.len() > 10 << 20, "the patch is only {} bytes", patch.len());

    let start = Instant::now();
    let changes = run(&patch, &before).unwrap_or_else(|e| panic!("{e} ({:?})", e.hint));
    let took = start.elapsed();
    assert_eq!(changes.len(), FILES);
    assert!(changes.iter().all(|c| c.hunks == LINES / EVERY && c.additions == LINES / EVERY));
    for c in changes {
        assert_eq!(c.content.as_deref(), Some(want[&c.path].0.as_slice()), "{}", c.path);
    }
    // Linear work is well under a second even in debug builds on a busy machine; anything
    // quadratic in the 432,000 lines would take minutes.
    assert!(took < Duration::from_secs(20), "applying took {took:?}");
}
