//! Resources, races and half-made state: VM limits, a truncated seed archive, host files that
//! never end, the serial console, parallel history, a command that crashes the guest kernel,
//! and a delete racing execs.

use crate::common;

use crate::common::{json, stderr, stdout, Env, Ws};

/// Nothing of any workspace is left: not listed, no workspace dir, no VM dir, no process.
fn assert_nothing_left(w: &Ws) {
    let v = w.ok(&["--json", "workspace", "list"]);
    assert_eq!(v["count"], 0, "{v}");
    let left = |d: std::path::PathBuf| -> Vec<String> {
        std::fs::read_dir(d)
            .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
            .unwrap_or_default()
    };
    let ws_left: Vec<String> =
        left(w.data.path().join("workspaces")).into_iter().filter(|n| !n.starts_with('.')).collect();
    assert!(ws_left.is_empty(), "workspace dirs left: {ws_left:?}");
    w.t.assert_clean();
}

#[test]
fn vm_limits_are_refused_before_anything_boots() {
    let t = Env::new();
    let w = Ws::new(&t);
    let o = w.cmd().env("PYRO_MAX_VM_MEMORY_MIB", "300").args(["workspace", "create", "debian:12"]).output().unwrap();
    assert_eq!(o.status.code(), Some(8), "{}", stderr(&o));
    assert!(stderr(&o).contains("PYRO_MAX_VM_MEMORY_MIB"), "{}", stderr(&o));
    assert_nothing_left(&w);
    let id = w.ok(&["--json", "workspace", "create", "debian:12"])["id"].as_str().unwrap().to_string();
    for args in [&["run", "debian:12", "--", "true"][..], &["workspace", "create", "debian:12"][..]] {
        let o = w.cmd().env("PYRO_MAX_VMS", "1").args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(8), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("1 VMs are running, the limit is 1") && err.contains("PYRO_MAX_VMS"), "{err}");
    }
    assert_eq!(w.ok(&["--json", "workspace", "list"])["count"], 1);
    w.ok(&["--json", "workspace", "delete", &id]);
    assert_nothing_left(&w);
}

#[test]
fn a_truncated_seed_archive_leaves_nothing() {
    let t = Env::new();
    let w = Ws::new(&t);
    let dir = tempfile::tempdir().unwrap();
    for (name, size) in [("huge.tar", 3u64 << 30), ("big.tar", 1u64 << 30)] {
        // One member header claiming `size` bytes, and nothing after it.
        let mut h = tar::Header::new_gnu();
        h.set_path("big.bin").unwrap();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        let p = dir.path().join(name);
        std::fs::write(&p, h.as_bytes()).unwrap();
        let o = w.run(&["workspace", "create", "debian:12", "--seed-path", p.to_str().unwrap()]);
        assert!(matches!(o.status.code(), Some(2) | Some(8)), "{name}: {:?} {}", o.status.code(), stderr(&o));
        assert_eq!(stderr(&o).lines().filter(|l| l.starts_with("error:")).count(), 1, "{}", stderr(&o));
        assert_nothing_left(&w);
    }
}

#[test]
fn host_input_files_must_be_regular_and_bounded() {
    let t = Env::new();
    let w = Ws::new(&t);
    // Read before the workspace is even looked up: /dev/zero would otherwise be read forever.
    let o = w.run(&["workspace", "file", "write", "nosuch", "/workspace/x", "--text-file", "/dev/zero"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    let o = w.run(&["workspace", "patch", "apply", "nosuch", "--patch-file", "/dev/zero"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn history_serial_kernel_crash_and_delete_race() {
    let t = Env::new();
    let w = Ws::new(&t);
    let id = w.ok(&["--json", "workspace", "create", "debian:12"])["id"].as_str().unwrap().to_string();
    let vdir = t.runtime.path().join("vms").join(&id);

    // The serial console reaches serial.log through the supervisor's ring.
    w.sh(&id, "head -c 20000 /dev/zero | tr '\\0' x > /dev/ttyS0; echo SERIAL-MARKER > /dev/ttyS0");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(vdir.join("serial.log")).unwrap_or_default().contains("SERIAL-MARKER") {
        assert!(std::time::Instant::now() < deadline, "the marker never reached serial.log");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(std::fs::metadata(vdir.join("serial.log")).unwrap().len() <= 512 * 1024);

    // 24 parallel execs: every one in the history.
    let handles: Vec<_> = (0..24)
        .map(|i| {
            let mut c = w.cmd();
            c.args(["workspace", "exec", &id, "--", &format!("echo p{i}")]);
            std::thread::spawn(move || c.output().unwrap())
        })
        .collect();
    for h in handles {
        let o = h.join().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let logs = w.ok(&["--json", "workspace", "logs", &id]);
    assert_eq!(logs["count"], 24 + 1, "{logs}");

    // A command that crashes the guest kernel stays in the history, unfinished.
    // The VM stops (guest_unavailable), or under load its panic path outlasts the call's
    // deadline (timeout); either way no result comes back.
    let o = w.run(&["workspace", "exec", &id, "--timeout-seconds", "10", "--", "echo c > /proc/sysrq-trigger"]);
    assert!(matches!(o.status.code(), Some(6) | Some(7)), "{:?}: {}{}", o.status.code(), stdout(&o), stderr(&o));
    let logs = w.ok(&["--json", "workspace", "logs", &id]);
    let last = logs["entries"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["finished"], false, "{last}");
    assert!(last["command"].as_str().unwrap().contains("sysrq-trigger"), "{last}");
    let text = stdout(&w.run(&["workspace", "logs", &id]));
    assert!(text.contains("unfinished"), "{text}");
    let summary = w.ok(&["--json", "workspace", "summary", &id]);
    assert_eq!(summary["commands"]["unfinished"][0]["sequence"], last["sequence"], "{summary}");

    // A delete racing 20 execs: deleted, not listed, the execs fail cleanly or ran.
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let mut c = w.cmd();
            c.args(["workspace", "exec", &id, "--", &format!("sleep 0.{i}")]);
            std::thread::spawn(move || c.output().unwrap())
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let del = w.run(&["--json", "workspace", "delete", &id]);
    assert_eq!(del.status.code(), Some(0), "{}", stderr(&del));
    assert_eq!(json(&del)["deleted"], true);
    for h in handles {
        let o = h.join().unwrap();
        let code = o.status.code();
        assert!(matches!(code, Some(0) | Some(3) | Some(6)), "{code:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked") && !stderr(&o).contains("database"), "{}", stderr(&o));
    }
    assert_nothing_left(&w);
}

#[test]
fn doctor_fix_settles_a_create_killed_mid_boot() {
    let t = Env::new();
    let w = Ws::new(&t);
    let mut child = w.cmd().args(["workspace", "create", "debian:12"]).spawn().unwrap();
    // Kill the CLI once its VM's supervisor is on record (booting, detached from the CLI).
    let vms = t.runtime.path().join("vms");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let booting =
            std::fs::read_dir(&vms).into_iter().flatten().flatten().any(|e| e.path().join("supervisor.pid").exists());
        if booting {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no VM started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: kill takes no pointers; our unreaped child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert!(!common::processes_mentioning(t.runtime.path()).is_empty(), "the VM outlives its killed launcher");
    let o = w.run(&["--json", "doctor", "--fix"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(r["workspaces"].as_array().map(Vec::len), Some(1), "{r}");
    assert!(r["supervisors_stopped"].as_u64().unwrap() >= 1, "{r}");
    assert_nothing_left(&w);
}
