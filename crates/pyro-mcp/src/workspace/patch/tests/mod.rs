//! End-to-end tests of [`apply`] and [`unified_diff`] on patches made by git and diff, and the
//! shared helpers for the test modules below (an in-memory workspace and a caller that writes
//! [`FileChange`]s back to it).

mod big;
mod git_apply;
mod props;

use super::model::{is_symlink_mode, MAX_FILES};
use super::*;
use crate::error::Code;
use std::collections::BTreeMap;

/// An in-memory workspace: path -> (content, mode); a mode with the symlink type bits (see
/// [`is_symlink_mode`]) makes the content a link target.
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
            _ if c.symlink => {
                assert_eq!(c.mode, None);
                files.insert(c.path.clone(), (c.content.unwrap(), 0o120777));
            }
            _ => {
                // A file that was a link (type change) gets the mode the patch gives it.
                let prev_mode = files.get(&c.path).filter(|f| !is_symlink_mode(f.1)).map_or(0o644, |f| f.1);
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
    let twice = "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-1\n+one\n--- a/a.txt\n+++ b/a.txt\n@@ -3 +3 @@\n-3\n+three\n";
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
    assert!(unified_diff("b.bin", Some(b"\0"), Some(b"\x01")).ends_with("Binary files a/b.bin and b/b.bin differ\n"));
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

#[test]
fn absurd_hunk_numbers_fail_fast() {
    let f = fs(&[("a.txt", b"1\n2\n3\n")]);
    let start = std::time::Instant::now();
    for header in [
        "@@ -1000000000000000,3 +1000000000000000,3 @@",
        "@@ -1,1000000000000000 +1,3 @@",
        "@@ -18446744073709551615,3 +1,3 @@",
        "@@ -1,3 +18446744073709551615,18446744073709551615 @@",
        "@@ -99999999999999999999999,3 +1,3 @@",
    ] {
        let patch = format!("--- a/a.txt\n+++ b/a.txt\n{header}\n 1\n-2\n+two\n 3\n");
        let e = err(&patch, &f);
        assert_eq!(e.code, Code::InvalidArgument, "{header}: {e}");
        assert!(!e.message.contains('\n'), "{}", e.message);
    }
    // Large but allowed numbers: the search for the hunk stays within the file.
    let far = "--- a/a.txt\n+++ b/a.txt\n@@ -999999999,3 +999999999,3 @@\n 1\n-2\n+two\n 3\n";
    assert_eq!(one(far, &f).content.unwrap(), b"1\ntwo\n3\n");
    let far_miss = "--- a/a.txt\n+++ b/a.txt\n@@ -999999999,3 +999999999,3 @@\n 1\n-x\n+two\n 3\n";
    assert_eq!(err(far_miss, &f).code, Code::Conflict);
    let far_add = "--- a/a.txt\n+++ b/a.txt\n@@ -999999999,0 +999999999,1 @@\n+x\n";
    assert_eq!(err(far_add, &f).code, Code::Conflict);
    // A hunk after one ending near the limit must not overflow the overlap check.
    let two = "--- a/a.txt\n+++ b/a.txt\n@@ -999999999,1 +999999999,1 @@\n-1\n+x\n@@ -1,1 +1,1 @@\n-1\n+y\n";
    assert_eq!(err(two, &f).code, Code::InvalidArgument);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn huge_header_lines_give_short_messages() {
    let long = "x".repeat(1 << 20);
    for patch in [
        format!("--- a/a.txt\n+++ b/a.txt\n@@ -1,1 +1,1 @@ {long}\n-1\n+2\n 3\n"),
        format!("--- a/a.txt\n+++ b/a.txt\n@@ -1,{long} +1 @@\n-1\n+2\n"),
        format!("diff --git a/{long} b/{long}\nnew file mode 100644\n"),
        format!("diff --git \"a/{long}\n"),
        format!("diff --git a/x b/x\nold mode {long}\n"),
        format!("diff --git {}\nnew file mode 100644\n", " ".repeat(1 << 20)),
    ] {
        let e = err(&patch, &fs(&[("a.txt", b"1\n2\n3\n")]));
        assert!(e.message.len() < 400, "{}", crate::text::clip(&e.message, 400));
    }
}

#[test]
fn symlink_sections_by_hand() {
    let f: Fs = [("l".to_string(), (b"old/target".to_vec(), 0o120777)), ("f".to_string(), (b"x\n".to_vec(), 0o644))]
        .into_iter()
        .collect();
    // A rename of a link that also changes its target (git only prints this for long targets).
    let patch =
        "diff --git a/l b/m\nsimilarity index 80%\nrename from l\nrename to m\nindex 1..2 120000\n--- a/l\n+++ b/m\n\
                 @@ -1 +1 @@\n-old/target\n\\ No newline at end of file\n+new/target\n\\ No newline at end of file\n";
    let c = one(patch, &f);
    assert_eq!((c.action, c.symlink, c.mode), (Action::Renamed, true, None));
    assert_eq!((c.old_path.as_deref(), c.content.as_deref()), (Some("l"), Some(&b"new/target"[..])));
    // Deleting a link whose target changed meanwhile is a conflict.
    let del = "diff --git a/l b/l\ndeleted file mode 120000\nindex 1..0\n--- a/l\n+++ /dev/null\n@@ -1 +0,0 @@\n-other\n\\ No newline at end of file\n";
    assert_eq!(err(del, &f).code, Code::Conflict);
    // A plain diff (no modes) does not patch a link's target as if it were a file.
    let plain =
        "--- a/l\n+++ b/l\n@@ -1 +1 @@\n-old/target\n\\ No newline at end of file\n+x\n\\ No newline at end of file\n";
    assert!(err(plain, &f).message.contains("symbolic link"));
    // Turning a file into a link inside one section is refused; so are bad targets and link modes.
    let in_place = "diff --git a/f b/f\nold mode 100644\nnew mode 120000\n";
    assert!(err(in_place, &f).message.contains("in place"));
    let nul = "diff --git a/n b/n\nnew file mode 120000\n--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+a\0b\n\\ No newline at end of file\n";
    assert!(err(nul, &f).message.contains("NUL"));
    let empty = "diff --git a/n b/n\nnew file mode 120000\nindex 0000000..e69de29\n";
    assert!(err(empty, &f).message.contains("empty"));
    // Submodules stay refused.
    let sub = "diff --git a/s b/s\nnew file mode 160000\n";
    assert!(err(sub, &f).message.contains("submodule"));
    // A path deleted and created again without a type change is a plain rewrite.
    let rewrite = "diff --git a/f b/f\ndeleted file mode 100644\n--- a/f\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n\
                   diff --git a/f b/f\nnew file mode 100755\n--- /dev/null\n+++ b/f\n@@ -0,0 +1 @@\n+y\n";
    let c = one(rewrite, &f);
    assert_eq!((c.action, c.symlink, c.type_changed, c.mode), (Action::Modified, false, false, Some(0o755)));
    // But a third section for the same path is still refused.
    let thrice =
        format!("{rewrite}diff --git a/f b/f\ndeleted file mode 100755\n--- a/f\n+++ /dev/null\n@@ -1 +0,0 @@\n-y\n");
    assert!(err(&thrice, &f).message.contains("more than once"));
}
