//! Workspaces at real-project sizes and under faults, against real VMs: a 20,000-file tree
//! with long names and long symlink targets, a patch over 10 MB checked against `git apply`,
//! a guest whose file system stops answering, and oversized or absurd requests. Each must end
//! in a result or a one-line error within its deadline, and leave the workspace usable.

use crate::common::*;
use std::path::Path;
use std::process::Command as Proc;
use std::time::{Duration, Instant};

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Proc::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else {
                n += 1;
            }
        }
    }
    n
}

/// 20,000 small files in 200 directories, a 255-byte file name, a deep directory chain, and
/// symlinks whose targets are thousands of bytes long (still pointing inside the tree).
fn big_tree() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    for i in 0..200 {
        let dir = p.join(format!("pkg{i:03}"));
        std::fs::create_dir(&dir).unwrap();
        for j in 0..100 {
            std::fs::write(dir.join(format!("f{j:03}.js")), format!("module.exports = {i} * {j};\n")).unwrap();
        }
    }
    std::fs::write(p.join("n".repeat(255)), "long name\n").unwrap();
    let mut deep = p.to_path_buf();
    for i in 0..60 {
        deep.push(format!("level{i:02}"));
    }
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("bottom.txt"), "deep\n").unwrap();
    let long_target = format!("{}pkg000/f000.js", "./".repeat(1500));
    std::os::unix::fs::symlink(&long_target, p.join("long-link")).unwrap();
    std::os::unix::fs::symlink("pkg001", p.join("dir-link")).unwrap();
    d
}

#[test]
fn twenty_thousand_files_diff_summary_list_export_reset() {
    let t = Env::new();
    let w = Ws::new(&t);
    let tree = big_tree();
    let seed = tree.path().to_str().unwrap();
    let c = w.ok(&["workspace", "create", "debian:12", "--seed-path", seed, "--name", "big", "--json"]);
    assert!(c["seed"]["entries"].as_u64().unwrap() > 20_000, "{c}");

    // Change a few files, and add 5,000 more in the guest (an install step, say).
    let script = "echo changed >> pkg000/f000.js && rm pkg002/f005.js && mkdir -p node_modules/x && \
                  cd node_modules/x && seq 1 5000 | xargs touch && echo ok";
    let o = w.run(&["workspace", "exec", "big", "--timeout-seconds", "300", "--", script]);
    assert_eq!(stdout(&o), "ok\n", "{}", stderr(&o));

    let d = w.ok(&["workspace", "diff", "big", "--json"]);
    let s = &d["summary"];
    assert_eq!(s["modified"], 1, "{s}");
    assert_eq!(s["deleted"], 1, "{s}");
    assert_eq!(s["added"], 5002, "{s}"); // node_modules, node_modules/x and 5,000 files
    let patch = d["patch"].as_str().unwrap();
    assert!(patch.contains("+changed"), "edits come before additions: {}", &patch[..patch.len().min(2000)]);
    assert_eq!(d["entries"][0]["path"], "pkg000/f000.js", "edits come before additions");
    assert!(d["entries"].as_array().unwrap().len() <= 500, "entries are capped");

    let sum = w.ok(&["workspace", "summary", "big", "--json"]);
    assert_eq!(sum["diff"]["added"], 5002, "{sum}");

    let l = w.ok(&["workspace", "file", "list", "big", "--recursive", "--json"]);
    assert_eq!(l["truncated"], true, "{}", l["count"]);
    assert!(l["entries"].as_array().unwrap().len() <= 1000);

    // The whole tree out to the host: every file, link and the deep chain.
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("export");
    let e = w.ok(&["workspace", "export", "big", ".", "--output", dest.to_str().unwrap(), "--json"]);
    assert!(e["entry_count"].as_u64().unwrap() > 25_000, "{e}");
    assert_eq!(count_files(&dest), 20_000 + 1 + 1 + 2 - 1 + 5000, "files, long name, deep file, 2 links");
    assert_eq!(
        std::fs::read_link(dest.join("long-link")).unwrap().to_str().unwrap().len(),
        "./".len() * 1500 + "pkg000/f000.js".len()
    );

    w.ok(&["workspace", "reset", "big", "--json"]);
    let d = w.ok(&["workspace", "diff", "big", "--json"]);
    assert_eq!(d["changed"], false, "{}", d["summary"]);
    let o = w.run(&["workspace", "exec", "big", "--", "ls pkg199 | wc -l"]);
    assert_eq!(stdout(&o), "100\n", "{}", stderr(&o));
    w.ok(&["workspace", "delete", "big", "--json"]);
}

/// A text file of `lines` numbered lines, each about 75 bytes.
fn text(seed: usize, lines: usize) -> String {
    (0..lines).map(|i| format!("file {seed:02} line {i:06}: the quick brown fox jumps over the lazy dog\n")).collect()
}

#[test]
fn ten_megabyte_patch_matches_git_apply() {
    let t = Env::new();
    let w = Ws::new(&t);
    let repo = tempfile::tempdir().unwrap();
    let p = repo.path();
    // 12 files of 900 KB.
    for i in 0..12 {
        std::fs::write(p.join(format!("data{i:02}.txt")), text(i, 12_000)).unwrap();
    }
    git(p, &["init", "-q"]);
    git(p, &["add", "."]);
    git(p, &["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"]);
    let c = w.ok(&["workspace", "create", "debian:12", "--seed-path", p.to_str().unwrap(), "--json"]);
    let id = c["id"].as_str().unwrap().to_string();

    // Rewrite every other line of every file, make the patch, and let git apply it on a copy.
    for i in 0..12 {
        let f = p.join(format!("data{i:02}.txt"));
        let s = std::fs::read_to_string(&f).unwrap();
        let new: String = s
            .lines()
            .enumerate()
            .map(|(n, l)| if n % 2 == 0 { format!("{}\n", l.replace("fox", "cat")) } else { format!("{l}\n") })
            .collect();
        std::fs::write(&f, new).unwrap();
    }
    let patch = git(p, &["diff"]);
    assert!(patch.len() > 10 << 20, "the patch is {} bytes", patch.len());
    let sums_host = Proc::new("sh").current_dir(p).arg("-c").arg("sha256sum data*.txt").output().unwrap();
    let patch_file = repo.path().join("big.patch");
    std::fs::write(&patch_file, &patch).unwrap();
    git(p, &["stash", "-q"]);
    git(p, &["apply", patch_file.to_str().unwrap()]);
    let sums_git = Proc::new("sh").current_dir(p).arg("-c").arg("sha256sum data*.txt").output().unwrap();
    assert_eq!(sums_git.stdout, sums_host.stdout, "git apply reproduces the edit");

    let r = w.ok(&["workspace", "patch", "apply", &id, "--patch-file", patch_file.to_str().unwrap(), "--json"]);
    assert_eq!(r["summary"]["modified"], 12, "{r}");
    let o = w.run(&["workspace", "exec", &id, "--", "sha256sum data*.txt"]);
    assert_eq!(stdout(&o), String::from_utf8_lossy(&sums_git.stdout), "{}", stderr(&o));
    w.ok(&["workspace", "delete", &id, "--json"]);
}

#[test]
fn frozen_guest_times_out_then_reset_recovers() {
    let t = Env::new();
    let w = Ws::new(&t);
    let c = w.ok(&["workspace", "create", "debian:12", "--json"]);
    let id = c["id"].as_str().unwrap().to_string();
    w.ok(&["workspace", "file", "write", &id, "before.txt", "--text", "before\n", "--json"]);
    let o = w.run(&["workspace", "exec", &id, "--", "fsfreeze -f / && echo frozen"]);
    assert_eq!(stdout(&o), "frozen\n", "{}", stderr(&o));

    // The guest's file system no longer answers: the write must come back as `timeout`.
    let started = Instant::now();
    let o = w
        .cmd()
        .env("PYRO_GUEST_TIMEOUT_S", "5")
        .args(["workspace", "file", "write", &id, "after.txt", "--text", "after\n"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(7), "timeout exits 7: {err}");
    assert!(err.starts_with("error:") && err.contains("did not answer"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(60), "bounded by its deadline, not a hang");

    // Reset brings it back (the stuck guest is killed), and everything works again.
    w.ok(&["workspace", "reset", &id, "--json"]);
    w.ok(&["workspace", "file", "write", &id, "after.txt", "--text", "after\n", "--json"]);
    let o = w.run(&["workspace", "exec", &id, "--", "cat after.txt"]);
    assert_eq!(stdout(&o), "after\n", "{}", stderr(&o));
    w.ok(&["workspace", "delete", &id, "--json"]);
}

#[test]
fn absurd_requests_get_one_line_errors_and_change_nothing() {
    let t = Env::new();
    let w = Ws::new(&t);
    let c = w.ok(&["workspace", "create", "debian:12", "--json"]);
    let id = c["id"].as_str().unwrap().to_string();

    // 1.2 MB of environment (in 10 variables: one argument may not exceed 128 KiB).
    let mut args: Vec<String> = vec!["workspace".into(), "exec".into(), id.clone()];
    for i in 0..10 {
        args.push("--env".into());
        args.push(format!("BIG{i}={}", "x".repeat(120_000)));
    }
    args.extend(["--".into(), "true".into()]);
    let (code, err) = w.fails(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 8, "limit_exceeded: {err}");

    // A hunk header that claims line 10^15.
    let absurd = "--- a/x\n+++ b/x\n@@ -1000000000000000,2 +1000000000000000,2 @@\n-a\n+b\n c\n";
    w.ok(&["workspace", "file", "write", &id, "x", "--text", "a\nc\n", "--json"]);
    let started = Instant::now();
    let (_, err) = w.fails(&["workspace", "patch", "apply", &id, "--patch", absurd]);
    assert!(started.elapsed() < Duration::from_secs(60), "no spin: {err}");

    // A read of a missing file fails, and the next request on the same guest works.
    let (code, _) = w.fails(&["workspace", "file", "read", &id, "missing.txt"]);
    assert_eq!(code, 3);
    let r = w.ok(&["workspace", "file", "read", &id, "x", "--json"]);
    assert_eq!(r["content"], "a\nc\n", "nothing was half-applied");

    // Output far past the cap comes back capped with the marker.
    let o = w.run(&["workspace", "exec", &id, "--", "head -c 50000000 /dev/zero | tr '\\0' a"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("[pyro: output truncated,"), "marker present");
    assert!(o.stdout.len() < 2 << 20);
    w.ok(&["workspace", "delete", &id, "--json"]);
}
