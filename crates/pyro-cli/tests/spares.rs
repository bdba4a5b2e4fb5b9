//! Warm spares against real VMs: a create leaves a spare (restored, run once, paused), which
//! is no workspace (not listed, not found); the next create takes it over and gets a whole
//! workspace of its own (its id, hostname, machine id, random numbers, the host's clock after
//! the pause) that diffs, resets, forks and takes a seed like any other; an unclaimed spare
//! goes when its time is up, and nothing is left behind.

use crate::common;
use crate::common::*;
use std::process::Output;
use std::time::{Duration, Instant};

/// How long a spare waits here before it removes itself.
const TTL_S: u64 = 45;

struct Spares<'a> {
    w: Ws<'a>,
    /// `PYRO_SPARE_TTL_S` for its calls.
    ttl: u64,
}

impl Spares<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let mut c = self.w.cmd();
        c.env("PYRO_SPARES", "on").env("PYRO_SPARE_TTL_S", self.ttl.to_string());
        c.args(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> serde_json::Value {
        let o = self.run(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}{}", stdout(&o), stderr(&o));
        json(&o)
    }

    fn sh(&self, id: &str, script: &str) -> String {
        let o = self.run(&["workspace", "exec", id, "--timeout-seconds", "120", "--", script]);
        assert_eq!(o.status.code(), Some(0), "{script}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    }

    /// The ids of the spares waiting in the data dir (dirs with `spare.json`).
    fn waiting(&self) -> Vec<String> {
        std::fs::read_dir(self.w.data.path().join("workspaces"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().join("spare.json").exists())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Wait (up to 3 min: the first needs the template) for a spare; its id.
    fn wait_spare(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(id) = self.waiting().into_iter().next() {
                return id;
            }
            assert!(Instant::now() < deadline, "no spare was prepared within 3 min");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

#[test]
fn a_spare_becomes_a_whole_workspace_of_its_own_and_expires_unclaimed() {
    let t = Env::new();
    let s = Spares { w: Ws::new(&t), ttl: TTL_S };
    let pull = t.run(&["env", "pull", "debian:12"]);
    assert_eq!(pull.status.code(), Some(0), "{}", stderr(&pull));

    // A create leaves a spare; the spare is no workspace.
    let a = s.ok(&["workspace", "create", "debian:12", "--json"]);
    let aid = a["id"].as_str().unwrap().to_string();
    let spare = s.wait_spare();
    assert_ne!(spare, aid);
    let list = s.ok(&["workspace", "list", "--json"]);
    let ids: Vec<&str> = list["workspaces"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![aid.as_str()], "a spare must not be listed: {list}");
    let o = s.run(&["workspace", "status", &spare, "--json"]);
    assert_ne!(o.status.code(), Some(0), "a spare must not be found: {}", stdout(&o));
    // Paused while it waits: its clock stands still, and the claim must set it.
    std::thread::sleep(Duration::from_secs(4));

    // The next create takes it: the spare's id, its own identity and randomness.
    let b = s.ok(&["workspace", "create", "debian:12", "--name", "from-spare", "--json"]);
    assert_eq!(b["started_from"]["from"], "spare", "{b}");
    let bid = b["id"].as_str().unwrap().to_string();
    assert_eq!(bid, spare);
    let probe = "hostname; cat /etc/machine-id; cat /proc/sys/kernel/random/uuid; \
                 head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; date +%s";
    let (ai, bi) = (s.sh(&aid, probe), s.sh(&bid, probe));
    let (al, bl): (Vec<&str>, Vec<&str>) = (ai.lines().collect(), bi.lines().collect());
    assert_eq!(bl[0], format!("pyro-{bid}"), "{bi}");
    for i in 1..4 {
        assert_ne!(al[i], bl[i], "line {i} must differ between workspaces:\n{ai}\n{bi}");
    }
    let guest_now: i64 = bl[4].trim().parse().unwrap();
    assert!((guest_now - now_s()).abs() <= 3, "spare's clock {guest_now} vs host {}", now_s());

    // A whole workspace: listed, diffs, resets to its baseline (cold from its disk), forks.
    let v = s.ok(&["workspace", "status", "from-spare", "--json"]);
    assert_eq!(v["id"], bid.as_str(), "{v}");
    s.sh(&bid, "echo changed > /workspace/new.txt");
    let diff = s.ok(&["workspace", "diff", &bid, "--json"]);
    assert!(diff.to_string().contains("new.txt"), "{diff}");
    let f = s.ok(&["workspace", "fork", &bid, "--json"]);
    let fid = f["id"].as_str().unwrap().to_string();
    assert_eq!(s.sh(&fid, "cat /workspace/new.txt").trim(), "changed");
    s.ok(&["workspace", "reset", &bid, "--json"]);
    assert_eq!(s.sh(&bid, "ls /workspace | wc -l; hostname").trim(), format!("0\npyro-{bid}"));
    assert_eq!(s.sh(&bid, "cat /etc/machine-id").trim(), bl[1], "the machine id is the workspace's");

    // A seeded create takes a spare too; its seed is its baseline.
    let seed = tempfile::tempdir().unwrap();
    std::fs::write(seed.path().join("hello.txt"), "seeded\n").unwrap();
    let next = s.wait_spare();
    let c = s.ok(&["workspace", "create", "debian:12", "--seed-path", seed.path().to_str().unwrap(), "--json"]);
    assert_eq!(c["started_from"]["from"], "spare", "{c}");
    let cid = c["id"].as_str().unwrap().to_string();
    assert_eq!(cid, next);
    assert_eq!(s.sh(&cid, "cat /workspace/hello.txt").trim(), "seeded");
    s.sh(&cid, "rm /workspace/hello.txt");
    s.ok(&["workspace", "reset", &cid, "--json"]);
    assert_eq!(s.sh(&cid, "cat /workspace/hello.txt").trim(), "seeded");
    let diff = s.ok(&["workspace", "diff", &cid, "--json"]);
    assert!(!diff.to_string().contains("hello.txt"), "{diff}");

    for id in [&aid, &bid, &fid, &cid] {
        s.ok(&["workspace", "delete", id, "--json"]);
    }
    // The last create left a spare: unclaimed, it removes itself when its time is up.
    let last = s.wait_spare();
    let vdir = t.runtime.path().join("vms").join(&last);
    assert!(vdir.exists());
    let deadline = Instant::now() + Duration::from_secs(TTL_S + 60);
    while (s.w.data.path().join("workspaces").join(&last).exists() || vdir.exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(s.waiting().is_empty(), "the spare outlived its time");
    assert!(!vdir.exists(), "the spare's VM dir is left");
    t.assert_clean();
}

/// `kill -9` of a create at a random instant while it takes a spare: afterwards (the next
/// call sweeps) every VM left is a listed, working workspace or a waiting spare, and a spare
/// whose claim was cut short is gone with its VM.
#[test]
fn a_create_killed_while_taking_a_spare_leaves_a_consistent_state() {
    let t = Env::new();
    let s = Spares { w: Ws::new(&t), ttl: 20 };
    let pull = t.run(&["env", "pull", "debian:12"]);
    assert_eq!(pull.status.code(), Some(0), "{}", stderr(&pull));
    let mut seed = now_s() as u64;
    for round in 0..8 {
        // A create that finished leaves a spare; a killed one may not have.
        if s.waiting().is_empty() {
            s.ok(&["workspace", "create", "debian:12", "--json"]);
        }
        let spare = s.wait_spare();
        // xorshift: a kill 0-120 ms into the create (taking a spare takes 40-80 ms here).
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(seed % 120);
        let mut c = s.w.cmd();
        c.env("PYRO_SPARES", "on").env("PYRO_SPARE_TTL_S", s.ttl.to_string());
        c.args(["workspace", "create", "debian:12", "--json"]);
        c.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        std::thread::sleep(Duration::from_secs(2));
        let list = s.ok(&["workspace", "list", "--json"]);
        let ids: Vec<String> =
            list["workspaces"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap().to_string()).collect();
        let waiting = s.waiting();
        let vms: Vec<String> = std::fs::read_dir(t.runtime.path().join("vms"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
            .unwrap_or_default();
        // A spare still being prepared (for a create that finished) holds its dir's lock.
        let preparing = |v: &str| {
            let lock = s.w.data.path().join("workspaces").join(v).join("lock");
            lock.exists()
                && std::process::Command::new("flock").arg("-n").arg(&lock).arg("true").status().unwrap().code()
                    == Some(1)
        };
        for v in &vms {
            assert!(
                ids.contains(v) || waiting.contains(v) || preparing(v),
                "round {round} (kill after {delay:?}): VM dir {v} is neither a workspace {ids:?} nor a spare {waiting:?}"
            );
        }
        if !ids.contains(&spare) && !waiting.contains(&spare) {
            assert!(!s.w.data.path().join("workspaces").join(&spare).exists(), "round {round}: claimed spare left");
        }
        for id in &ids {
            assert_eq!(s.sh(id, "echo ok").trim(), "ok", "round {round}: workspace {id} does not work");
        }
        for id in &ids {
            s.ok(&["workspace", "delete", id, "--json"]);
        }
    }
    let list = s.ok(&["workspace", "list", "--json"]);
    for w in list["workspaces"].as_array().unwrap() {
        s.ok(&["workspace", "delete", w["id"].as_str().unwrap(), "--json"]);
    }
    // Spares left expire (20 s here) and take their VMs with them.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !common::processes_mentioning(t.runtime.path()).iter().all(|p| !p.contains("__supervise"))
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(250));
    }
    let left: Vec<String> =
        common::processes_mentioning(t.runtime.path()).into_iter().filter(|p| p.contains("__supervise")).collect();
    assert!(left.is_empty(), "supervisors left: {left:?}");
}
