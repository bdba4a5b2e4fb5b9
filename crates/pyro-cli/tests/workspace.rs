//! Persistent workspaces through the CLI, against real VMs.

use crate::common::*;
use std::path::Path;
use std::process::Command as Proc;

fn git(dir: &Path, args: &[&str]) {
    let o = Proc::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A tiny repo whose test fails: `./test.sh` checks that add.sh adds.
fn repro_repo() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::write(p.join("add.sh"), "#!/bin/sh\necho $(($1 - $2))\n").unwrap();
    std::fs::write(
        p.join("test.sh"),
        "#!/bin/sh\nset -e\n[ \"$(sh add.sh 2 3)\" = 5 ] && echo PASS || { echo FAIL; exit 1; }\n",
    )
    .unwrap();
    std::fs::write(p.join("README"), "calc\n").unwrap();
    git(p, &["init", "-q"]);
    git(p, &["add", "."]);
    git(p, &["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"]);
    d
}

const FIX: &str = "diff --git a/add.sh b/add.sh
index 1111111..2222222 100644
--- a/add.sh
+++ b/add.sh
@@ -1,2 +1,2 @@
 #!/bin/sh
-echo $(($1 - $2))
+echo $(($1 + $2))
diff --git a/NOTES.md b/NOTES.md
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/NOTES.md
@@ -0,0 +1 @@
+fixed the sign
";

#[test]
fn repro_fix_loop_end_to_end() {
    let t = Env::new();
    let w = Ws::new(&t);
    let repo = repro_repo();
    let seed = repo.path().to_str().unwrap();
    let created = w.ok(&[
        "workspace",
        "create",
        "debian:12",
        "--seed-path",
        seed,
        "--name",
        "repro",
        "--label",
        "task=fix",
        "--json",
    ]);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["state"], "running");
    assert_eq!(created["seed"]["kind"], "git_checkout");

    // The test fails; git works in the guest.
    let o = w.run(&["workspace", "exec", "repro", "--", "sh", "test.sh"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "FAIL\n");
    let o = w.run(&["workspace", "exec", &id, "--", "git status --porcelain && git log --oneline | wc -l"]);
    assert_eq!(stdout(&o), "1\n", "{}", stderr(&o));

    // Read the file, apply the fix, rerun.
    let r = w.ok(&["workspace", "file", "read", "repro", "add.sh", "--json"]);
    assert_eq!(r["content"], "#!/bin/sh\necho $(($1 - $2))\n");
    let p = w.ok(&["workspace", "patch", "apply", "repro", "--patch", FIX, "--json"]);
    assert_eq!(p["summary"]["modified"], 1);
    assert_eq!(p["summary"]["added"], 1);
    let o = w.run(&["workspace", "exec", "repro", "--", "sh", "test.sh"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "PASS\n");

    // Diff shows exactly that change.
    let d = w.ok(&["workspace", "diff", "repro", "--json"]);
    assert_eq!(d["summary"]["total"], 2, "{d}");
    assert_eq!(d["summary"]["modified"], 1);
    assert_eq!(d["summary"]["added"], 1);
    let patch = d["patch"].as_str().unwrap();
    assert!(patch.contains("-echo $(($1 - $2))\n+echo $(($1 + $2))"), "{patch}");
    assert!(patch.contains("+fixed the sign"), "{patch}");
    // One path at a time: how a capped diff is read piece by piece.
    let d = w.ok(&["workspace", "diff", "repro", "--path", "add.sh", "--json"]);
    assert_eq!(d["summary"]["total"], 1, "{d}");
    assert!(!d["patch"].as_str().unwrap().contains("fixed the sign"), "{d}");
    let d = w.ok(&["workspace", "diff", "repro", "--path", "/workspace/nothing-here", "--json"]);
    assert_eq!(d["changed"], false, "{d}");
    // Paging a file read: offset and next_offset.
    let r = w.ok(&["workspace", "file", "read", "repro", "add.sh", "--max-bytes", "10", "--json"]);
    assert_eq!((r["content"].as_str(), r["next_offset"].as_u64()), (Some("#!/bin/sh\n"), Some(10)), "{r}");
    let r = w.ok(&["workspace", "file", "read", "repro", "add.sh", "--offset", "10", "--json"]);
    assert_eq!(r["content"], "echo $(($1 + $2))\n", "{r}");
    assert!(r.get("next_offset").is_none() && r["truncated"] == false, "{r}");

    // Export the fixed file and the whole tree; an existing target is refused.
    let out = tempfile::tempdir().unwrap();
    let f = out.path().join("add.sh");
    w.ok(&["workspace", "export", "repro", "add.sh", "--output", f.to_str().unwrap(), "--json"]);
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "#!/bin/sh\necho $(($1 + $2))\n");
    let o = w.run(&["workspace", "export", "repro", "add.sh", "--output", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let tree = out.path().join("tree");
    w.ok(&["workspace", "export", "repro", ".", "--output", tree.to_str().unwrap(), "--json"]);
    assert!(tree.join("NOTES.md").is_file() && tree.join(".git/HEAD").is_file());

    // History, list, update.
    let logs = w.ok(&["workspace", "logs", "repro", "--json"]);
    assert_eq!(logs["count"], 3);
    let l = w.ok(&["workspace", "list", "--json"]);
    assert_eq!(l["count"], 1);
    assert_eq!(l["workspaces"][0]["command_count"], 3);
    let u = w.ok(&["workspace", "update", "repro", "--label", "state=fixed", "--clear-label", "task", "--json"]);
    assert_eq!(u["labels"]["state"], "fixed");
    assert!(u["labels"].get("task").is_none());

    // Reset: back to the seed, clean diff, history cleared.
    let r = w.ok(&["workspace", "reset", "repro", "--json"]);
    assert_eq!(r["reset_count"], 1);
    assert_eq!(r["command_count"], 0);
    let d = w.ok(&["workspace", "diff", "repro", "--json"]);
    assert_eq!(d["changed"], false, "{d}");
    let o = w.run(&["workspace", "exec", "repro", "--", "sh", "test.sh"]);
    assert_eq!(stdout(&o), "FAIL\n");

    let del = w.ok(&["workspace", "delete", "repro", "--json"]);
    assert_eq!(del["deleted"], true);
    let o = w.run(&["workspace", "status", &id]);
    assert_eq!(o.status.code(), Some(3));
    t.assert_clean();
}

#[test]
fn files_and_bad_input() {
    let t = Env::new();
    let w = Ws::new(&t);
    let id = w.ok(&["workspace", "create", "debian:12", "--json"])["id"].as_str().unwrap().to_string();
    // Write creates parents, keeps an existing mode, new files 0644.
    w.ok(&["workspace", "file", "write", &id, "a/b/c.txt", "--text", "hello\n", "--json"]);
    w.ok(&["workspace", "exec", &id, "--json", "--", "chmod", "755", "a/b/c.txt"]);
    w.ok(&["workspace", "file", "write", &id, "/workspace/a/b/c.txt", "--text", "again\n", "--json"]);
    let o = w.run(&[
        "workspace",
        "exec",
        &id,
        "--",
        "stat -c %a a/b/c.txt; cat a/b/c.txt; w=$(cat a/b/c.txt); stat -c %a a",
    ]);
    assert_eq!(stdout(&o), "755\nagain\n755\n");
    let l = w.ok(&["workspace", "file", "list", &id, "--recursive", "--json"]);
    let paths: Vec<&str> = l["entries"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec!["a", "a/b", "a/b/c.txt"]);
    // Escapes are refused and change nothing.
    for bad in ["../etc/passwd", "/etc/passwd", "a/../../x"] {
        let o = w.run(&["workspace", "file", "write", &id, bad, "--text", "x"]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
    }
    w.ok(&["workspace", "exec", &id, "--json", "--", "ln", "-s", "/etc", "link"]);
    let o = w.run(&["workspace", "file", "read", &id, "link/passwd"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("outside /workspace"), "{}", stderr(&o));
    let o = w.run(&["workspace", "file", "write", &id, "link/evil", "--text", "x"]);
    assert_eq!(o.status.code(), Some(2));
    // A read cap out of its range is a bad argument (not a size limit); binary detection, truncation.
    let o = w.run(&["workspace", "file", "read", &id, "a/b/c.txt", "--max-bytes", "99999999"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("max_bytes must be 1..=1048576"), "{}", stderr(&o));
    w.ok(&["workspace", "exec", &id, "--json", "--", "sh", "-c", "head -c 100000 /dev/zero > zeros"]);
    let r = w.ok(&["workspace", "file", "read", &id, "zeros", "--max-bytes", "10", "--json"]);
    assert_eq!(r["binary"], true);
    assert_eq!(r["truncated"], true);
    assert_eq!(r["size_bytes"], 100000);
    // A patch that does not apply names file and hunk and changes nothing.
    let bad = "--- a/a/b/c.txt\n+++ b/a/b/c.txt\n@@ -1 +1 @@\n-nothere\n+x\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+new\n";
    let o = w.run(&["workspace", "patch", "apply", &id, "--patch", bad]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("a/b/c.txt"), "{}", stderr(&o));
    let o = w.run(&["workspace", "file", "read", &id, "new.txt"]);
    assert_eq!(o.status.code(), Some(3), "new.txt must not exist: {}", stderr(&o));
    // Unknown ids, bad names and labels.
    assert_eq!(w.run(&["workspace", "status", "nope"]).status.code(), Some(3));
    assert_eq!(w.run(&["workspace", "update", &id, "--name", "bad name"]).status.code(), Some(2));
    assert_eq!(w.run(&["workspace", "update", &id, "--label", "k"]).status.code(), Some(2));
    assert_eq!(w.run(&["workspace", "create", "debian:12", "--seed-path", "/nonexistent/x"]).status.code(), Some(3));
    w.ok(&["workspace", "delete", &id, "--json"]);
    t.assert_clean();
}

#[test]
fn killed_vm_recovers_with_its_files() {
    let t = Env::new();
    let w = Ws::new(&t);
    let id =
        w.ok(&["workspace", "create", "debian:12", "--name", "crashy", "--json"])["id"].as_str().unwrap().to_string();
    w.ok(&["workspace", "file", "write", "crashy", "keep.txt", "--text", "survives\n", "--json"]);
    // Kill QEMU and the supervisor behind pyro's back.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.runtime.path().join("vms").join(&id).join("state.json")).unwrap())
            .unwrap();
    let qemu = state["qemu_pid"].as_i64().unwrap();
    Proc::new("kill").args(["-9", &qemu.to_string()]).status().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let s = w.ok(&["workspace", "status", "crashy", "--json"]);
    assert_ne!(s["state"], "running", "{s}");
    assert!(s["state_reason"].as_str().unwrap().contains("killed"), "{s}");
    let r = w.ok(&["workspace", "exec", "crashy", "--json", "--", "cat", "keep.txt"]);
    assert_eq!(r["stdout"], "survives\n");
    assert!(r["vm_restarted"].as_str().unwrap().contains("booted it again"), "{r}");
    // Now kill the supervisor itself: QEMU dies with it (PDEATHSIG).
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.runtime.path().join("vms").join(&id).join("state.json")).unwrap())
            .unwrap();
    Proc::new("kill").args(["-9", &state["supervisor_pid"].as_i64().unwrap().to_string()]).status().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let r = w.ok(&["workspace", "exec", "crashy", "--json", "--", "cat", "keep.txt"]);
    assert_eq!(r["stdout"], "survives\n");
    w.ok(&["workspace", "delete", "crashy", "--json"]);
    t.assert_clean();
}

#[test]
fn summary_reports_the_session_and_resets_to_a_clean_slate() {
    let t = Env::new();
    let w = Ws::new(&t);
    let repo = repro_repo();
    let id = w.ok(&[
        "workspace",
        "create",
        "debian:12",
        "--seed-path",
        repo.path().to_str().unwrap(),
        "--name",
        "sum",
        "--json",
    ])["id"]
        .as_str()
        .unwrap()
        .to_string();
    w.ok(&["workspace", "patch", "apply", "sum", "--patch", FIX, "--json"]);
    let o = w.run(&["workspace", "exec", "sum", "--", "sh", "-c", "echo boom >&2; exit 3"]);
    assert_eq!(o.status.code(), Some(3));
    let o = w.run(&["workspace", "exec", "sum", "--", "sh", "test.sh"]);
    assert_eq!(o.status.code(), Some(0));
    let s = w.ok(&["workspace", "summary", "sum", "--json"]);
    assert_eq!(s["workspace"]["id"], id.as_str());
    assert_eq!(s["workspace"]["name"], "sum");
    assert_eq!(s["commands"]["count"], 2);
    assert_eq!(s["commands"]["failures"], 1);
    assert_eq!(s["commands"]["last_failure"]["exit_code"], 3);
    assert_eq!(s["commands"]["last_failure"]["output_tail"], "boom");
    assert_eq!(s["commands"]["last"][1]["command"], "sh test.sh");
    assert_eq!(s["edits"]["patches"], 1);
    assert_eq!(s["edits"]["paths"], serde_json::json!(["add.sh", "NOTES.md"]));
    assert_eq!(s["diff"]["added"], 1);
    assert_eq!(s["diff"]["modified"], 1);
    assert!(s.get("exports").is_none() && s.get("notable").is_none(), "{s}");
    let o = w.run(&["workspace", "summary", "sum"]);
    assert!(stdout(&o).contains("commands: 2 run, 1 failed"), "{}", stdout(&o));
    w.ok(&["workspace", "reset", "sum", "--json"]);
    let s = w.ok(&["workspace", "summary", "sum", "--json"]);
    assert_eq!(s["workspace"]["reset_count"], 1);
    let keys: Vec<&String> = s.as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["workspace"], "clean slate expected: {s}");
    w.ok(&["workspace", "delete", "sum", "--json"]);
    t.assert_clean();
}

#[test]
fn sync_push_archives_prefixes_and_concurrency() {
    let t = Env::new();
    let w = Ws::new(&t);
    // Seed from a .tar.gz made by the system tar.
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("pkg")).unwrap();
    std::fs::write(src.path().join("pkg/a.txt"), "from tarball\n").unwrap();
    let tgz = src.path().join("seed.tar.gz");
    let ok = Proc::new("tar").arg("-C").arg(src.path()).args(["-czf", tgz.to_str().unwrap(), "pkg"]).status().unwrap();
    assert!(ok.success());
    let o = w.run(&["workspace", "create", "debian:12", "--seed-path", tgz.to_str().unwrap(), "--id-only"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let id = stdout(&o).trim().to_string();
    assert_eq!(id.len(), 12);
    let o = w.run(&["workspace", "exec", &id[..6], "--", "cat", "pkg/a.txt"]);
    assert_eq!(stdout(&o), "from tarball\n", "{}", stderr(&o));
    // Sync push overwrites what it carries and leaves the rest; the baseline does not move.
    let push = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(push.path().join("pkg")).unwrap();
    std::fs::write(push.path().join("pkg/b.txt"), "pushed\n").unwrap();
    w.ok(&["workspace", "sync", "push", &id, push.path().to_str().unwrap(), "--dest", "/workspace", "--json"]);
    let o = w.run(&["workspace", "exec", &id, "--", "cat pkg/a.txt pkg/b.txt"]);
    assert_eq!(stdout(&o), "from tarball\npushed\n");
    let d = w.ok(&["workspace", "diff", &id, "--json"]);
    assert_eq!(d["summary"]["added"], 1, "{d}");
    // An escaping symlink in a sync source is refused before anything is written.
    let evil = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/etc/passwd", evil.path().join("pw")).unwrap();
    std::fs::write(evil.path().join("innocent.txt"), "x").unwrap();
    let o = w.run(&["workspace", "sync", "push", &id, evil.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = w.run(&["workspace", "file", "read", &id, "innocent.txt"]);
    assert_eq!(o.status.code(), Some(3));
    // Two execs and a file write at once never corrupt the state: each exec gets its own
    // output, the file is written.
    let spawn = |script: &str| {
        w.cmd()
            .args(["workspace", "exec", &id, "--", "sh", "-c", script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn("sleep 2; echo A");
    let b = spawn("sleep 1; echo B");
    w.ok(&["workspace", "file", "write", &id, "during.txt", "--text", "ok", "--json"]);
    for (child, want) in [(a, "A\n"), (b, "B\n")] {
        let o = child.wait_with_output().unwrap();
        assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), want), "{}", stderr(&o));
    }
    assert_eq!(w.ok(&["workspace", "file", "read", &id, "during.txt", "--json"])["content"], "ok");
    let logs = w.ok(&["workspace", "logs", &id, "--json"]);
    let seqs: Vec<u64> = logs["entries"].as_array().unwrap().iter().map(|e| e["sequence"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4], "{logs}");
    let l = w.ok(&["workspace", "list", "--json"]);
    assert_eq!(l["workspaces"][0]["command_count"], 4);
    w.ok(&["workspace", "delete", &id, "--json"]);
    t.assert_clean();
}
