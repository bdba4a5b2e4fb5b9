//! Named snapshots of a workspace's whole guest disk, against real VMs: a reset to a snapshot
//! gives back its tree (inside and outside /workspace, deletions included), the guest is not
//! rebooted by a snapshot, deleting a middle snapshot keeps the later ones whole, bad names
//! change nothing, and `kill -9` of `pyro` in the middle of a create leaves a workspace that
//! runs with its disk and snapshots intact.

use crate::common::*;
use std::time::Duration;

/// The root file system's tree (path, type, size, mode) and checksums of the paths the test
/// changes. /tmp, /run and /var are left out: the guest's boot writes there.
const TREE: &str = "find / -xdev \\( -path /proc -o -path /tmp -o -path /run -o -path /var -o -path /dev \\) -prune \
                    -o -printf '%p %y %s %m\\n' | sort | md5sum; \
                    for f in /etc/x /etc/new /workspace/y /workspace/gone /opt/data/a; do \
                    if [ -e $f ]; then md5sum $f; else echo \"absent $f\"; fi; done";

fn boot_id(w: &Ws, id: &str) -> String {
    w.sh(id, "cat /proc/sys/kernel/random/boot_id").trim().to_string()
}

fn names(list: &serde_json::Value) -> Vec<String> {
    list["snapshots"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn snapshots_end_to_end() {
    let t = Env::new();
    let w = Ws::new(&t);
    let c = w.ok(&["workspace", "create", "debian:12", "--name", "snap", "--json"]);
    let id = c["id"].as_str().unwrap().to_string();

    // State one: files inside and outside /workspace.
    w.sh(&id, "echo one > /etc/x; echo y1 > /workspace/y; echo z > /workspace/gone; mkdir -p /opt/data; echo a1 > /opt/data/a; sync");
    let tree1 = w.sh(&id, TREE);
    let boot = boot_id(&w, &id);
    let s1 = w.ok(&["workspace", "snapshot", "create", "snap", "one", "--json"]);
    assert_eq!(s1["name"], "one");
    assert!(s1["size_bytes"].as_u64().unwrap() > 0, "{s1}");
    assert_eq!(boot_id(&w, &id), boot, "a snapshot must not reboot the guest");
    // Writes after the snapshot work (the file system was thawed).
    assert_eq!(w.sh(&id, "echo ok > /workspace/after && cat /workspace/after"), "ok\n");

    // State two: modified, added and deleted files.
    w.sh(&id, "rm /workspace/after; echo two > /etc/x; echo new > /etc/new; echo y2 > /workspace/y; rm /workspace/gone; echo a2 > /opt/data/a; sync");
    let tree2 = w.sh(&id, TREE);
    assert_ne!(tree1, tree2);
    w.ok(&["workspace", "snapshot", "create", "snap", "two", "--json"]);

    // State three.
    w.sh(&id, "echo three > /etc/x; rm /opt/data/a; sync");
    let tree3 = w.sh(&id, TREE);
    w.ok(&["workspace", "snapshot", "create", "snap", "three", "--json"]);
    w.sh(&id, "echo four > /etc/x; echo y4 > /workspace/y; sync");

    // Baseline first, then newest first.
    let list = w.ok(&["workspace", "snapshot", "list", "snap", "--json"]);
    assert_eq!(names(&list), ["baseline", "three", "two", "one"], "{list}");
    assert_eq!(list["live_on"], "three");
    for s in list["snapshots"].as_array().unwrap() {
        assert!(s["created_at"].as_u64().unwrap() > 0 && s["size_bytes"].as_u64().is_some(), "{s}");
    }

    // Bad input: one line, the right exit code, nothing changed (no reboot, same files).
    for (args, code, want) in [
        (vec!["snapshot", "create", "snap", "baseline"], 2, "reserved"),
        (vec!["snapshot", "create", "snap", "two"], 4, "already"),
        (vec!["snapshot", "create", "snap", "bad name"], 2, "invalid snapshot name"),
        (vec!["snapshot", "create", "snap", "../x"], 2, "invalid snapshot name"),
        (vec!["snapshot", "delete", "snap", "baseline"], 2, "cannot be deleted"),
        (vec!["snapshot", "delete", "snap", "nope"], 3, "no snapshot 'nope'"),
        (vec!["reset", "snap", "--snapshot", "nope"], 3, "no snapshot 'nope'"),
        (vec!["reset", "snap", "--snapshot", "-bad"], 2, ""),
        (vec!["reset", "snap", "--snapshot", "a b"], 2, "invalid snapshot name"),
    ] {
        let mut a = vec!["workspace"];
        a.extend(args.iter());
        if want.is_empty() {
            assert_ne!(w.run(&a).status.code(), Some(0), "{a:?}");
            continue;
        }
        let (rc, err) = w.fails(&a);
        assert_eq!(rc, code, "{a:?}: {err}");
        assert!(err.contains(want), "{a:?}: {err}");
    }
    assert_eq!(names(&w.ok(&["workspace", "snapshot", "list", "snap", "--json"])), names(&list));
    assert_eq!(boot_id(&w, &id), boot, "a refused call must not reboot the guest");
    assert_eq!(w.sh(&id, "cat /etc/x"), "four\n");

    // Reset to a snapshot: its tree exactly, and the summary says which snapshot.
    let r = w.ok(&["workspace", "reset", "snap", "--snapshot", "one", "--json"]);
    assert_eq!(r["reset_count"], 1);
    assert_eq!(w.sh(&id, TREE), tree1);
    let s = w.ok(&["workspace", "summary", "snap", "--json"]);
    assert_eq!(s["workspace"]["reset_to_snapshot"], "one", "{s}");
    assert_eq!(s["snapshots"]["current"], serde_json::json!(["three", "two", "one"]), "{s}");
    // The diff still compares against the seed (no seed: everything in /workspace is added).
    let d = w.ok(&["workspace", "diff", "snap", "--json"]);
    assert!(d["summary"]["added"].as_u64().unwrap() >= 2, "{d}");
    let text = stdout(&w.run(&["workspace", "summary", "snap"]));
    assert!(text.contains("reset to snapshot one"), "{text}");

    // Changes on top of a restored snapshot do not touch it.
    w.sh(&id, "echo scribble > /etc/x; rm /workspace/y; sync");
    w.ok(&["workspace", "reset", "snap", "--snapshot", "one", "--json"]);
    assert_eq!(w.sh(&id, TREE), tree1);

    // Deleting the middle snapshot keeps the later one whole (its data stays: refcounted).
    let del = w.ok(&["workspace", "snapshot", "delete", "snap", "two", "--json"]);
    assert_eq!(del["data_kept"], true, "{del}");
    assert_eq!(names(&w.ok(&["workspace", "snapshot", "list", "snap", "--json"])), ["baseline", "three", "one"]);
    w.ok(&["workspace", "reset", "snap", "--snapshot", "three", "--json"]);
    assert_eq!(w.sh(&id, TREE), tree3);
    let (rc, _) = w.fails(&["workspace", "reset", "snap", "--snapshot", "two"]);
    assert_eq!(rc, 3);
    assert_ne!(tree2, tree3);

    // Back to the baseline: nothing of the snapshots is left in the guest, and they remain.
    let r = w.ok(&["workspace", "reset", "snap", "--json"]);
    assert_eq!(r["reset_count"], 4);
    assert_eq!(w.sh(&id, "cat /etc/x /workspace/y 2>&1 | grep -c 'No such file'"), "2\n");
    let s = w.ok(&["workspace", "summary", "snap", "--json"]);
    assert!(s["workspace"].get("reset_to_snapshot").is_none(), "{s}");
    w.ok(&["workspace", "reset", "snap", "--snapshot", "three", "--json"]);
    assert_eq!(w.sh(&id, TREE), tree3);

    // With nothing above them any more, deleted snapshots' layers go.
    w.ok(&["workspace", "reset", "snap", "--json"]);
    for n in ["three", "one"] {
        let del = w.ok(&["workspace", "snapshot", "delete", "snap", n, "--json"]);
        assert_eq!(del["data_kept"], false, "{del}");
    }
    let dir = w.data.path().join("workspaces").join(&id);
    let layers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("layer-"))
        .collect();
    assert!(layers.is_empty(), "{layers:?}");

    // Snapshot of a stopped VM: no guest needed; the next boot opens the new chain.
    w.sh(&id, "echo offline > /etc/x; sync");
    let vm = t.runtime.path().join("vms").join(&id);
    let st: serde_json::Value = serde_json::from_slice(&std::fs::read(vm.join("state.json")).unwrap()).unwrap();
    let pid = st["supervisor_pid"].as_i64().unwrap() as i32;
    // SAFETY: kill takes no pointers; the pid is this test's VM supervisor.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(500));
    w.ok(&["workspace", "snapshot", "create", "snap", "cold", "--json"]);
    assert_eq!(w.sh(&id, "cat /etc/x"), "offline\n");
    w.sh(&id, "echo warm > /etc/x; sync");
    w.ok(&["workspace", "reset", "snap", "--snapshot", "cold", "--json"]);
    assert_eq!(w.sh(&id, "cat /etc/x"), "offline\n");

    w.ok(&["workspace", "delete", "snap", "--json"]);
    t.assert_clean();
}

#[test]
fn kill_9_during_snapshot_create_leaves_the_workspace_intact() {
    let t = Env::new();
    let w = Ws::new(&t);
    let c = w.ok(&["workspace", "create", "debian:12", "--name", "crash", "--json"]);
    let id = c["id"].as_str().unwrap().to_string();
    w.sh(&id, "echo base > /workspace/keep; sync");
    let vm = t.runtime.path().join("vms").join(&id);
    let kill_vm = || {
        let st: serde_json::Value = serde_json::from_slice(&std::fs::read(vm.join("state.json")).unwrap()).unwrap();
        // SAFETY: kill takes no pointers; the pid is this test's VM supervisor.
        unsafe { libc::kill(st["supervisor_pid"].as_i64().unwrap() as i32, libc::SIGKILL) };
        std::thread::sleep(Duration::from_millis(500));
    };
    let pending = w.data.path().join("workspaces").join(&id).join("snapshot.pending");

    // The worst moment, exactly: QEMU writes the new layer, `disk.qcow2` names the old one.
    // (a) The VM stops before anything else runs: its next boot puts the new layer in place.
    let o = w
        .cmd()
        .args(["workspace", "snapshot", "create", "crash", "cut"])
        .env("PYRO_FAULT", "snapshot-after-switch")
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(pending.exists());
    w.sh(&id, "echo written-after-cut >> /workspace/keep; sync");
    kill_vm();
    assert_eq!(w.sh(&id, "cat /workspace/keep"), "base\nwritten-after-cut\n");
    assert!(!pending.exists());
    // (b) The VM keeps running: the next snapshot call asks QEMU and finishes the move.
    let o = w
        .cmd()
        .args(["workspace", "snapshot", "create", "crash", "cut"])
        .env("PYRO_FAULT", "snapshot-after-switch")
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    w.sh(&id, "echo second-cut > /workspace/keep; sync");
    let list = w.ok(&["workspace", "snapshot", "list", "crash", "--json"]);
    assert_eq!(names(&list), ["baseline"], "a cut-short create records no name: {list}");
    w.ok(&["workspace", "snapshot", "create", "crash", "after-cut", "--json"]);
    assert!(!pending.exists());
    kill_vm();
    assert_eq!(w.sh(&id, "cat /workspace/keep"), "second-cut\n");
    w.ok(&["workspace", "reset", "crash", "--snapshot", "after-cut", "--json"]);
    assert_eq!(w.sh(&id, "cat /workspace/keep"), "second-cut\n");
    w.ok(&["workspace", "snapshot", "delete", "crash", "after-cut", "--json"]);
    w.sh(&id, "echo base > /workspace/keep; sync");

    // Kills at random moments.
    for (i, delay_ms) in [5u64, 40, 120, 250, 400, 700].into_iter().enumerate() {
        let name = format!("k{i}");
        let mut child = w.cmd().args(["workspace", "snapshot", "create", "crash", &name]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        // Running or stopped, never broken: the guest answers (booting again if need be),
        // a write works (a freeze left behind ends by itself), and nothing written is lost.
        let st = w.ok(&["workspace", "status", "crash", "--json"]);
        let state = st["state"].as_str().unwrap().to_string();
        assert!(["running", "stopped", "dead"].contains(&state.as_str()), "{st}");
        let line = format!("after {i}");
        let out = w.sh(&id, &format!("echo '{line}' >> /workspace/keep; sync; cat /workspace/keep"));
        assert!(out.starts_with("base\n") && out.ends_with(&format!("{line}\n")), "{i}: {out}");
        assert_eq!(out.lines().count(), i + 2, "{i}: {out}");
        // Each listed snapshot can be restored.
        let list = w.ok(&["workspace", "snapshot", "list", "crash", "--json"]);
        let listed = names(&list);
        if listed.contains(&name) {
            let o = w.run(&["workspace", "snapshot", "create", "crash", &format!("{name}-probe")]);
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        }
    }
    // The disk as it is on the host holds every line: kill the VM and boot it again.
    kill_vm();
    let keep = w.sh(&id, "cat /workspace/keep");
    assert_eq!(keep.lines().count(), 7, "{keep}");
    // Every snapshot left restores to a tree that has the seed line, and the workspace runs.
    let list = w.ok(&["workspace", "snapshot", "list", "crash", "--json"]);
    for n in names(&list) {
        w.ok(&["workspace", "reset", "crash", "--snapshot", &n, "--json"]);
        let keep = w.sh(&id, "cat /workspace/keep 2>/dev/null || echo none");
        assert!(n == "baseline" || keep.starts_with("base\n"), "{n}: {keep}");
    }
    // A fresh snapshot after all that still works.
    w.ok(&["workspace", "snapshot", "create", "crash", "last", "--json"]);
    w.ok(&["workspace", "delete", "crash", "--json"]);
    t.assert_clean();
}
