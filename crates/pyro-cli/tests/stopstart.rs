//! Stop and start against real VMs: a stop saves the guest's memory and leaves no QEMU; the
//! stopped disk is listed and read without booting the workspace; start resumes the same
//! processes (same PIDs, the service still ticking, the clock set); `--discard-memory` boots
//! from the disk instead (files kept, processes gone); bad calls change nothing; and `kill -9`
//! of `pyro` at random moments of stop, start and snapshot create leaves a workspace that runs
//! or says it is stopped, with no orphaned QEMU and nothing written lost.

use crate::common::*;
use std::time::Duration;

/// QEMU processes running this workspace's disk.
fn qemus(w: &Ws, id: &str) -> usize {
    let disk = w.data.path().join("workspaces").join(id);
    processes_mentioning(&disk).iter().filter(|p| p.contains("qemu-system")).count()
}

fn state(w: &Ws, name: &str) -> String {
    w.ok(&["workspace", "status", name, "--json"])["state"].as_str().unwrap().to_string()
}

#[test]
fn stop_keeps_processes_and_discard_memory_boots_from_disk() {
    let t = Env::new();
    let w = Ws::new(&t);
    let c = w.ok(&["workspace", "create", "debian:12", "--name", "pause", "--json"]);
    let id = c["id"].as_str().unwrap().to_string();
    w.sh(&id, "echo kept > /workspace/f.txt; echo outside > /etc/pyro-test; nohup sh -c 'sleep 100000' >/dev/null 2>&1 & echo $! > /workspace/pid");
    let pid = w.sh(&id, "cat /workspace/pid").trim().to_string();
    let svc = w.ok(&[
        "workspace",
        "service",
        "start",
        "pause",
        "ticker",
        "--ready-file",
        "/workspace/tick",
        "--json",
        "--",
        // Written aside and renamed: a read between the shell's truncation and `date`'s
        // write (slow under TCG on a loaded host) would see an empty file.
        "while :; do date +%s%N > /workspace/tick.new && mv /workspace/tick.new /workspace/tick; sleep 0.2; done",
    ]);
    let svc_pid = svc["pid"].as_i64().unwrap();

    // Stop: memory saved, no QEMU, state stopped; operations that need the guest say so.
    let s = w.ok(&["workspace", "stop", "pause", "--json"]);
    assert_eq!(s["memory_saved"], true, "{s}");
    assert!(s["memory_bytes"].as_u64().unwrap() > 1 << 20, "{s}");
    assert_eq!(s["state"], "stopped", "{s}");
    assert_eq!(qemus(&w, &id), 0, "no QEMU runs for a stopped workspace");
    assert_eq!(state(&w, "pause"), "stopped");
    let (_, err) = w.fails(&["workspace", "exec", "pause", "--", "true"]);
    assert!(err.contains("is stopped") && err.contains("workspace start"), "{err}");
    let (_, err) = w.fails(&["workspace", "stop", "pause"]);
    assert!(err.contains("stopped already"), "{err}");
    assert_eq!(qemus(&w, &id), 0, "a refused call boots nothing");
    let services = w.ok(&["workspace", "service", "list", "pause", "--json"]);
    assert_eq!(services["services"][0]["state"], "paused", "{services}");

    // The stopped disk, without booting the workspace.
    let list = w.ok(&["workspace", "disk", "list", "pause", "/workspace", "--json"]);
    let paths: Vec<&str> = list["entries"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"/workspace/f.txt") && paths.contains(&"/workspace/tick"), "{list}");
    let read = w.ok(&["workspace", "disk", "read", "pause", "/etc/pyro-test", "--json"]);
    assert_eq!(read["content"], "outside\n", "{read}");
    let read = w.ok(&["workspace", "disk", "read", "pause", "f.txt", "--max-bytes", "3", "--json"]);
    assert_eq!((read["content"].as_str(), read["truncated"].as_bool()), (Some("kep"), Some(true)), "{read}");
    let (_, err) = w.fails(&["workspace", "disk", "read", "pause", "/run/pyro/x"]);
    assert!(err.contains("runtime directory"), "{err}");
    let (_, err) = w.fails(&["workspace", "disk", "read", "pause", "/etc/../etc/passwd"]);
    assert!(err.contains(".."), "{err}");
    let image = w.data.path().join("disk.raw");
    let e = w.ok(&["workspace", "disk", "export", "pause", "--output", image.to_str().unwrap(), "--json"]);
    assert_eq!((e["format"].as_str(), e["file_system"].as_str()), (Some("raw"), Some("ext4")), "{e}");
    let mut magic = [0u8; 2];
    {
        use std::io::{Read, Seek};
        let mut f = std::fs::File::open(&image).unwrap();
        f.seek(std::io::SeekFrom::Start(1024 + 56)).unwrap();
        f.read_exact(&mut magic).unwrap();
    }
    assert_eq!(magic, [0x53, 0xef], "the export is an ext4 image");
    let (_, err) = w.fails(&["workspace", "disk", "export", "pause", "--output", image.to_str().unwrap()]);
    assert!(err.contains("already exists"), "{err}");
    std::fs::remove_file(&image).unwrap();
    assert_eq!(qemus(&w, &id), 0, "the disk tools leave no VM behind");
    assert_eq!(state(&w, "pause"), "stopped");

    // Start: the same processes go on, the clock is right, the service ticks on.
    let s = w.ok(&["workspace", "start", "pause", "--json"]);
    assert_eq!(s["resumed"], true, "{s}");
    assert_eq!(s["state"], "running");
    let (_, err) = w.fails(&["workspace", "start", "pause"]);
    assert!(err.contains("running already"), "{err}");
    let alive = w.sh(&id, &format!("test -d /proc/{pid} && tr '\\0' ' ' < /proc/{pid}/cmdline"));
    assert!(alive.contains("sleep 100000"), "process {pid} gone after start: {alive:?}");
    let skew = w.sh(&id, "date +%s");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((skew.trim().parse::<i64>().unwrap() - now).abs() < 30, "guest clock {skew} vs host {now}");
    let t1 = w.sh(&id, "cat /workspace/tick");
    std::thread::sleep(Duration::from_millis(1500));
    let t2 = w.sh(&id, "cat /workspace/tick");
    assert_ne!(t1, t2, "the service does not tick after start");
    let st = w.ok(&["workspace", "service", "status", "pause", "ticker", "--json"]);
    assert_eq!((st["state"].as_str(), st["pid"].as_i64()), (Some("ready"), Some(svc_pid)), "{st}");
    // Writes work: the file system was thawed.
    assert_eq!(w.sh(&id, "echo w > /workspace/w && cat /workspace/w"), "w\n");
    let sum = w.ok(&["workspace", "summary", "pause", "--json"]);
    assert_eq!(sum["stops"]["stops"], 1, "{sum}");
    assert_eq!(sum["stops"]["resumed"], 1, "{sum}");

    // Discard memory: files kept, processes gone, the service lost.
    let s = w.ok(&["workspace", "stop", "pause", "--discard-memory", "--json"]);
    assert_eq!(s["memory_saved"], false, "{s}");
    assert_eq!(qemus(&w, &id), 0);
    assert_eq!(state(&w, "pause"), "stopped");
    let s = w.ok(&["workspace", "start", "pause", "--json"]);
    assert_eq!(s["resumed"], false, "{s}");
    assert_eq!(w.sh(&id, "cat /workspace/f.txt /etc/pyro-test /workspace/w"), "kept\noutside\nw\n");
    assert_eq!(w.sh(&id, &format!("test -d /proc/{pid} && echo alive || echo gone")), "gone\n");
    let st = w.ok(&["workspace", "service", "status", "pause", "ticker", "--json"]);
    assert_eq!(st["state"], "lost", "{st}");

    // Disk tools on a running workspace, and reset of a stopped one.
    let (_, err) = w.fails(&["workspace", "disk", "list", "pause"]);
    assert!(err.contains("is running"), "{err}");
    w.ok(&["workspace", "stop", "pause", "--json"]);
    let r = w.ok(&["workspace", "reset", "pause", "--json"]);
    assert_eq!(r["state"], "running", "{r}");
    assert_eq!(w.sh(&id, "cat /workspace/f.txt 2>/dev/null || echo none"), "none\n");
    w.ok(&["workspace", "delete", "pause", "--json"]);
    t.assert_clean();
}

/// `kill -9` of `pyro` at random moments of stop, start and snapshot create (20 runs): every
/// time the workspace either runs or is stopped and starts, no second QEMU appears, and the
/// lines written before each kill are all there.
#[test]
fn kill_nine_during_stop_start_and_snapshot() {
    let t = Env::new();
    let w = Ws::new(&t);
    let c = w.ok(&["workspace", "create", "debian:12", "--name", "crash", "--json"]);
    let id = c["id"].as_str().unwrap().to_string();
    w.sh(&id, "echo base > /workspace/keep; sync");
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut kills, mut written, mut states) = (0, 0, std::collections::BTreeMap::<String, u32>::new());
    for i in 0..20 {
        let st = state(&w, "crash");
        let op: Vec<String> = match (st.as_str(), next() % 3) {
            ("stopped", _) => vec!["start".into()],
            (_, 0) => vec!["snapshot".into(), "create".into(), "crash".into(), format!("s{i}")],
            (_, 1) => vec!["stop".into(), "--discard-memory".into()],
            _ => vec!["stop".into()],
        };
        let mut args = vec!["workspace".to_string()];
        args.extend(op.iter().cloned());
        if op[0] != "snapshot" {
            args.push("crash".into());
        }
        let delay = next() % 900;
        let mut child = w
            .cmd()
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill();
        let _ = child.wait();
        kills += 1;
        // Let a supervisor that was handed the work finish it (it outlives the CLI).
        std::thread::sleep(Duration::from_millis(1500));
        // A start or boot the killed call left running finishes on its own ("starting").
        let mut after = state(&w, "crash");
        for _ in 0..240 {
            if after != "starting" {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
            after = state(&w, "crash");
        }
        *states.entry(format!("{} -> {after}", op[0])).or_default() += 1;
        assert!(
            ["running", "stopped", "dead"].contains(&after.as_str()),
            "run {i} ({args:?} after {delay} ms): {after}"
        );
        assert!(qemus(&w, &id) <= 1, "run {i}: more than one QEMU for the workspace");
        if after == "stopped" {
            assert_eq!(qemus(&w, &id), 0, "run {i}: stopped but a QEMU runs");
            // Half the time it stays stopped, so the next run kills a `start`.
            if next() % 2 == 0 {
                continue;
            }
            let o = w.run(&["workspace", "start", "crash", "--json"]);
            assert_eq!(o.status.code(), Some(0), "run {i}: start after {args:?}: {}", stderr(&o));
        }
        written += 1;
        let line = format!("after {i}");
        let out = w.sh(&id, &format!("echo '{line}' >> /workspace/keep; sync; cat /workspace/keep"));
        assert!(out.starts_with("base\n") && out.ends_with(&format!("{line}\n")), "run {i} ({args:?}): {out}");
        assert_eq!(out.lines().count(), written + 1, "run {i} ({args:?}): {out}");
    }
    println!("stop/start/snapshot kill -9 campaign: {kills} kills, outcomes {states:?}");
    // A clean stop and start still work after all that.
    if state(&w, "crash") == "stopped" {
        w.ok(&["workspace", "start", "crash", "--json"]);
    }
    w.ok(&["workspace", "stop", "crash", "--json"]);
    assert_eq!(w.ok(&["workspace", "start", "crash", "--json"])["resumed"], true);
    assert_eq!(w.sh(&id, "wc -l < /workspace/keep"), format!("{}\n", written + 1));
    w.ok(&["workspace", "delete", "crash", "--json"]);
    t.assert_clean();
}
