//! Symlink patches checked against real `git apply`: a scratch repository makes the change, `git diff`
//! prints it, `git apply` replays it on a copy of the original tree, and [`apply`] must produce
//! the same tree from the same original state held in memory.

use super::super::model::is_symlink_mode;
use super::*;
use std::fs as stdfs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

const LINK: u32 = 0o120777;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args([
            "-c",
            "core.symlinks=true",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("git prints UTF-8 here")
}

/// Write an in-memory tree to disk: symlinks as links, files with their permission bits.
fn write_tree(root: &Path, files: &Fs) {
    for (path, (content, mode)) in files {
        let p = root.join(path);
        stdfs::create_dir_all(p.parent().unwrap()).unwrap();
        if is_symlink_mode(*mode) {
            symlink(std::ffi::OsStr::from_bytes(content), &p).unwrap();
        } else {
            stdfs::write(&p, content).unwrap();
            stdfs::set_permissions(&p, stdfs::Permissions::from_mode(mode & 0o7777)).unwrap();
        }
    }
}

/// Read a tree back (skipping .git and directories): links as [`LINK`] + target, files with
/// only the executable bit kept, as git tracks it.
fn read_tree(root: &Path) -> Fs {
    fn walk(root: &Path, dir: &Path, out: &mut Fs) {
        for e in stdfs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
            let ty = e.file_type().unwrap();
            if rel == ".git" {
                continue;
            } else if ty.is_symlink() {
                out.insert(rel, (stdfs::read_link(&p).unwrap().into_os_string().into_vec(), LINK));
            } else if ty.is_dir() {
                walk(root, &p, out);
            } else {
                let mode = stdfs::metadata(&p).unwrap().permissions().mode();
                out.insert(rel, (stdfs::read(&p).unwrap(), git_mode(mode)));
            }
        }
    }
    let mut out = Fs::new();
    walk(root, root, &mut out);
    out
}

fn git_mode(mode: u32) -> u32 {
    if is_symlink_mode(mode) {
        LINK
    } else if mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// Make `before` a commit, turn the work tree into `after`, and return `git diff` of the change
/// (renames detected) together with the tree `git apply` makes of that diff on a copy of `before`.
fn git_round(before: &Fs, after: &Fs) -> (String, Fs) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let copy = tmp.path().join("copy");
    stdfs::create_dir_all(&repo).unwrap();
    stdfs::create_dir_all(&copy).unwrap();
    git(&repo, &["init", "-q"]);
    write_tree(&repo, before);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "before"]);
    for path in before.keys() {
        stdfs::remove_file(repo.join(path)).unwrap();
    }
    write_tree(&repo, after);
    git(&repo, &["add", "-A"]);
    let patch = git(&repo, &["diff", "--cached", "-M"]);
    stdfs::write(tmp.path().join("p.diff"), &patch).unwrap();
    write_tree(&copy, before);
    let patch_file = tmp.path().join("p.diff");
    git(&copy, &["apply", patch_file.to_str().unwrap()]);
    (patch, read_tree(&copy))
}

fn tree(entries: &[(&str, &[u8], u32)]) -> Fs {
    entries.iter().map(|(p, c, m)| (p.to_string(), (c.to_vec(), *m))).collect()
}

/// Our result in the same shape as [`read_tree`].
fn ours(patch: &str, before: &Fs) -> Fs {
    patched(patch, before.clone()).into_iter().map(|(p, (c, m))| (p, (c, git_mode(m)))).collect()
}

#[test]
fn symlinks_match_git_apply() {
    let before = tree(&[
        ("a.txt", b"alpha\n", 0o644),
        ("b.txt", b"beta\n", 0o644),
        ("run.sh", b"#!/bin/sh\n", 0o644),
        ("doomed", b"a.txt", LINK),
        ("retarget", b"a.txt", LINK),
        ("dir/old_name", b"../a.txt", LINK),
        ("file_to_link", b"plain\ntext\n", 0o644),
        ("link_to_file", b"b.txt", LINK),
        ("dir/renamed_and_changed", b"../some/long/path/to/the/target/file.txt", LINK),
    ]);
    let after = tree(&[
        ("a.txt", b"alpha\nmore\n", 0o644),
        ("b.txt", b"beta\n", 0o644),
        ("run.sh", b"#!/bin/sh\n", 0o755),
        ("retarget", b"b.txt", LINK),
        ("dir/new_name", b"../a.txt", LINK),
        ("file_to_link", b"a.txt", LINK),
        ("link_to_file", b"now a file\n", 0o644),
        ("dir/created", b"../b.txt", LINK),
        ("dangling", b"missing/target with space", LINK),
        ("dir/moved_and_changed", b"../some/long/path/to/the/target/file2.txt", LINK),
    ]);
    let (patch, want) = git_round(&before, &after);
    // The diff exercises every symlink case git prints.
    for needle in [
        "deleted file mode 120000",
        "new file mode 120000",
        "rename from dir/old_name",
        "index 8d14cbf..19acdd8 120000",
        "\\ No newline at end of file",
    ] {
        assert!(patch.contains(needle), "{needle} missing from:\n{patch}");
    }
    assert_eq!(want, tree_in_git_shape(&after));
    assert_eq!(ours(&patch, &before), want, "{patch}");
    let changes = run(&patch, &before).unwrap();
    let by_path = |p: &str| changes.iter().find(|c| c.path == p).unwrap();
    let doomed = by_path("doomed");
    assert_eq!((&doomed.action, doomed.symlink, &doomed.content), (&Action::Deleted, true, &None));
    let created = by_path("dir/created");
    assert_eq!(
        (&created.action, created.symlink, created.content.as_deref()),
        (&Action::Added, true, Some(&b"../b.txt"[..]))
    );
    assert_eq!(created.mode, None);
    let moved = by_path("dir/new_name");
    assert_eq!(
        (&moved.action, moved.symlink, moved.old_path.as_deref()),
        (&Action::Renamed, true, Some("dir/old_name"))
    );
    let to_link = by_path("file_to_link");
    assert_eq!((&to_link.action, to_link.symlink, to_link.type_changed), (&Action::Modified, true, true));
    let to_file = by_path("link_to_file");
    assert_eq!((&to_file.action, to_file.symlink, to_file.type_changed), (&Action::Modified, false, true));
    assert_eq!(to_file.mode, Some(0o644));
    let retarget = by_path("retarget");
    assert_eq!((retarget.symlink, retarget.content.as_deref()), (true, Some(&b"b.txt"[..])));
}

fn tree_in_git_shape(files: &Fs) -> Fs {
    files.iter().map(|(p, (c, m))| (p.clone(), (c.clone(), git_mode(*m)))).collect()
}

#[test]
fn symlink_type_is_checked() {
    let before = tree(&[("l", b"a.txt", LINK), ("f", b"a.txt", 0o644)]);
    let after = tree(&[("l", b"b.txt", LINK), ("f", b"b.txt", 0o644)]);
    let (patch, _) = git_round(&before, &after);
    // The same sections against swapped types: git says "wrong type", and so do we.
    let swapped = tree(&[("l", b"a.txt", 0o644), ("f", b"a.txt", LINK)]);
    let e = err(&patch, &swapped);
    assert_eq!(e.code, Code::Conflict);
    assert!(e.message.contains("symbolic link"), "{e}");
    // Full modes from the caller work like permission bits.
    let full = tree(&[("l", b"a.txt", LINK), ("f", b"a.txt", 0o100644)]);
    assert_eq!(ours(&patch, &full), tree_in_git_shape(&after));
}
