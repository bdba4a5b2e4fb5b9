//! Property tests: [`apply`] never panics or hangs on any input (random text, patch-like line
//! soup, mutations of real patches), and `apply(unified_diff(old, new))` on `old` gives `new`.

use super::*;
use proptest::prelude::*;
use std::time::{Duration, Instant};

/// Cases per property: thousands, so that each `cargo test` run explores new inputs.
const CASES: u32 = 2000;
/// No single case may take longer than this (a hang would show as a failure, not a stuck run).
const CASE_LIMIT: Duration = Duration::from_secs(2);

fn config() -> ProptestConfig {
    // XorShift: the default ChaCha generator is most of the run time in debug builds.
    let rng_algorithm = proptest::test_runner::RngAlgorithm::XorShift;
    ProptestConfig { cases: CASES, max_shrink_time: 30_000, rng_algorithm, ..ProptestConfig::default() }
}

/// The workspace the fuzzed patches run against: the files of `ALL_GIT` plus a symlink.
fn workspace() -> Fs {
    let mut f = initial();
    f.insert("link".into(), (b"src/lib.rs".to_vec(), 0o120777));
    f
}

/// Apply, checking only that it returns (Ok or Err) in bounded time.
fn survives(patch: &str, files: &Fs) -> std::result::Result<(), TestCaseError> {
    let start = Instant::now();
    let _ = run(patch, files);
    let took = start.elapsed();
    prop_assert!(took < CASE_LIMIT, "apply took {took:?} on {patch:?}");
    Ok(())
}

/// Numbers for hunk headers: mostly small, sometimes at the edges of the integer types.
fn number() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..50).prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| n.to_string()),
        1 => Just("1000000000000000".to_string()),
        1 => Just(usize::MAX.to_string()),
        1 => Just("18446744073709551616".to_string()),
        1 => Just("-1".to_string()),
    ]
}

/// One line of a patch-like text: headers, hunk lines, markers and noise.
fn patch_line() -> impl Strategy<Value = String> {
    let header = (number(), number(), number(), number()).prop_map(|(a, b, c, d)| format!("@@ -{a},{b} +{c},{d} @@"));
    let short_header = (number(), number()).prop_map(|(a, c)| format!("@@ -{a} +{c} @@ x"));
    let body = "[ +-]?[a-z0-9 \\r]{0,8}";
    prop_oneof![
        Just("diff --git a/src/lib.rs b/src/lib.rs".to_string()),
        Just("diff --git a/link b/link".to_string()),
        Just("diff --git \"a/q\\303\\251\" \"b/q\\t\"".to_string()),
        Just("--- a/src/lib.rs".to_string()),
        Just("+++ b/src/lib.rs".to_string()),
        Just("--- /dev/null".to_string()),
        Just("+++ /dev/null".to_string()),
        Just("--- a/link".to_string()),
        Just("+++ b/link".to_string()),
        Just("new file mode 120000".to_string()),
        Just("deleted file mode 120000".to_string()),
        Just("new file mode 100644".to_string()),
        Just("deleted file mode 100644".to_string()),
        Just("old mode 100644".to_string()),
        Just("new mode 100755".to_string()),
        Just("index 1234567..89abcde 120000".to_string()),
        Just("similarity index 100%".to_string()),
        Just("rename from link".to_string()),
        Just("rename to other".to_string()),
        Just("copy from src/lib.rs".to_string()),
        Just("copy to copied".to_string()),
        Just("\\ No newline at end of file".to_string()),
        Just("GIT binary patch".to_string()),
        Just("Binary files a/x and b/x differ".to_string()),
        Just(" line 5".to_string()),
        Just("-line 5".to_string()),
        Just("+line five".to_string()),
        Just("-src/lib.rs".to_string()),
        Just(String::new()),
        header,
        short_header,
        body.prop_map(|s| s),
        "[ -~\t\r\u{e9}\u{fffd}]{0,20}".prop_map(|s| s),
    ]
}

/// A real patch: every section of `ALL_GIT` plus symlink sections.
fn real_patch() -> String {
    format!(
        "{ALL_GIT}diff --git a/link b/link\nindex 1..2 120000\n--- a/link\n+++ b/link\n@@ -1 +1 @@\n-src/lib.rs\n\
         \\ No newline at end of file\n+src/main.rs\n\\ No newline at end of file\n\
         diff --git a/new_link b/new_link\nnew file mode 120000\nindex 0000000..1\n--- /dev/null\n+++ b/new_link\n\
         @@ -0,0 +1 @@\n+target\n\\ No newline at end of file\n"
    )
}

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR one byte (the result is read back lossily, as a patch is always `&str`).
    Flip(usize, u8),
    Truncate(usize),
    DuplicateLine(usize),
    DeleteLine(usize),
    SwapLines(usize, usize),
    /// Replace the numbers of one `@@` header.
    Header(usize, String, String),
    Insert(usize, String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(at, x)| Mutation::Flip(at, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        any::<usize>().prop_map(Mutation::DuplicateLine),
        any::<usize>().prop_map(Mutation::DeleteLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
        (any::<usize>(), number(), number()).prop_map(|(k, a, b)| Mutation::Header(k, a, b)),
        (any::<usize>(), patch_line()).prop_map(|(k, l)| Mutation::Insert(k, l)),
    ]
}

fn mutate(patch: &str, m: &Mutation) -> String {
    let mut lines: Vec<String> = patch.split_inclusive('\n').map(str::to_string).collect();
    let n = lines.len();
    let by_line = !matches!(m, Mutation::Flip(..) | Mutation::Truncate(_) | Mutation::Insert(..));
    if by_line && n == 0 {
        return patch.to_string();
    }
    match m {
        Mutation::Flip(at, x) => {
            let mut bytes = patch.as_bytes().to_vec();
            if let Some(b) = bytes.get_mut(at % patch.len().max(1)) {
                *b ^= x;
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        Mutation::Truncate(at) => {
            let cut = at % (patch.len() + 1);
            return String::from_utf8_lossy(&patch.as_bytes()[..cut]).into_owned();
        }
        Mutation::DuplicateLine(k) => {
            let l = lines[k % n].clone();
            lines.insert(k % n, l);
        }
        Mutation::DeleteLine(k) => {
            lines.remove(k % n);
        }
        Mutation::SwapLines(a, b) => lines.swap(a % n, b % n),
        Mutation::Header(k, a, b) => {
            let headers: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].starts_with("@@ ")).collect();
            if !headers.is_empty() {
                lines[headers[k % headers.len()]] = format!("@@ -{a},3 +{b},3 @@\n");
            }
        }
        Mutation::Insert(k, l) => lines.insert(k % (lines.len() + 1), format!("{l}\n")),
    }
    lines.concat()
}

/// Short texts over few distinct lines, so that diffs have context, repeats and moves; with or
/// without a final newline, sometimes with CRLF.
fn text() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![Just("a"), Just("b"), Just("c"), Just("d"), Just(""), Just("a\r"), Just("long line here")];
    (prop::collection::vec(line, 0..30), any::<bool>()).prop_map(|(lines, final_newline)| {
        let mut s = lines.join("\n");
        if final_newline && !s.is_empty() {
            s.push('\n');
        }
        s.into_bytes()
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_text_never_panics(s in ".{0,400}") {
        survives(&s, &workspace())?;
    }

    #[test]
    fn patch_like_lines_never_panic(lines in prop::collection::vec(patch_line(), 0..40)) {
        let mut s = lines.join("\n");
        s.push('\n');
        survives(&s, &workspace())?;
    }

    #[test]
    fn mutated_patches_never_panic(muts in prop::collection::vec(mutation(), 1..4)) {
        let mut patch = real_patch();
        for m in &muts {
            patch = mutate(&patch, m);
        }
        survives(&patch, &workspace())?;
    }

    #[test]
    fn unified_diff_round_trips(old in text(), new in text(), exists in any::<(bool, bool)>()) {
        let old = exists.0.then_some(old);
        let new = exists.1.then_some(new);
        let patch = unified_diff("dir/f.txt", old.as_deref(), new.as_deref());
        if old == new {
            prop_assert!(patch.is_empty());
        } else {
            let files: Fs = old.iter().map(|c| ("dir/f.txt".to_string(), (c.clone(), 0o644))).collect();
            let after = patched(&patch, files);
            prop_assert_eq!(after.get("dir/f.txt").map(|f| f.0.clone()), new, "{}", patch);
        }
    }
}
