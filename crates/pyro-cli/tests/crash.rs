//! The kill -9 campaign: `pyro` killed with SIGKILL at random instants of create, exec, sync
//! push, patch apply, export, reset and delete, each kill followed by `list`, `status` and a
//! next call on the workspace it hit, and a search for orphans (a QEMU or supervisor, a VM
//! runtime dir, a workspace dir or socket file of a workspace that is not listed, a dead VM's
//! sockets, a `disk.qcow2.new` or `reset.json` left after the next call).
//!
//! It boots many VMs, so it is an ignored test that `cargo test` lists but does not run:
//! `make test-crash` runs it (`-- --ignored crash::`).
//! `PYRO_CRASH_KILLS` (default 105) sets how many kills, `PYRO_CRASH_SEED` replays a run.
//! Only the CLI process is killed, never a VM: supervisors are detached and go on.
//! It ends with `crash: K kills, I inconsistent states, O orphans`; both must be 0.

use crate::common;

use crate::common::{json, stderr, stdout, Env, Ws};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// xorshift64*: enough randomness for kill instants, replayable from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

const OPS: [&str; 7] = ["create", "exec", "sync_push", "patch_apply", "export", "reset", "delete"];

struct Campaign<'a> {
    ws: Ws<'a>,
    base: String,
    seed_dir: std::path::PathBuf,
    scratch: std::path::PathBuf,
    inconsistent: Vec<String>,
    orphans: Vec<String>,
}

impl Campaign<'_> {
    fn listed(&mut self, ctx: &str) -> BTreeSet<String> {
        let o = self.ws.run(&["--json", "workspace", "list"]);
        if o.status.code() != Some(0) {
            self.inconsistent.push(format!("{ctx}: list failed: {}", stderr(&o)));
            return BTreeSet::new();
        }
        json(&o)["workspaces"]
            .as_array()
            .map(|a| a.iter().filter_map(|w| w["id"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }

    /// The args of one operation on workspace `target` (iteration `i` keeps names apart).
    fn args(&self, op: &str, target: &str, i: usize) -> Vec<String> {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        match op {
            "create" => s(&["workspace", "create", "debian:12", "--seed-path", &self.seed_dir.display().to_string()]),
            "exec" => s(&["workspace", "exec", target, "--", &format!("echo {i} > /workspace/exec-{i}; sleep 0.3")]),
            "sync_push" => s(&["workspace", "sync", "push", target, &self.seed_dir.display().to_string()]),
            "patch_apply" => s(&[
                "workspace",
                "patch",
                "apply",
                target,
                // `=`: a value starting with `--` would read as a flag.
                &format!("--patch=--- /dev/null\n+++ b/patched-{i}.txt\n@@ -0,0 +1 @@\n+{i}\n"),
            ]),
            "export" => s(&[
                "workspace",
                "export",
                target,
                "/workspace",
                "--output",
                &self.scratch.join(format!("export-{i}")).display().to_string(),
            ]),
            "reset" => s(&["workspace", "reset", target]),
            _ => s(&["workspace", "delete", target]),
        }
    }

    /// After a kill: the workspace hit is listed and usable (its next call completes or rolls
    /// back what was cut short), or not listed and gone without a trace.
    fn check(&mut self, ctx: &str, target: Option<&str>) {
        let listed = self.listed(ctx);
        for id in &listed {
            let o = self.ws.run(&["--json", "workspace", "status", id]);
            if o.status.code() != Some(0) {
                self.inconsistent.push(format!("{ctx}: status {id} failed: {}", stderr(&o)));
            }
        }
        if let Some(t) = target.filter(|t| listed.contains(*t)) {
            // A VM the killed call was stopping may still answer once with guest_unavailable
            // (a report); the call after that must work.
            let mut ok = false;
            let mut last = String::new();
            for _ in 0..2 {
                let o = self.ws.run(&["workspace", "exec", t, "--", "true"]);
                if o.status.code() == Some(0) {
                    ok = true;
                    break;
                }
                last = format!("exit {:?}: {}", o.status.code(), stderr(&o).trim());
                if o.status.code() != Some(6) {
                    break;
                }
            }
            if !ok {
                self.inconsistent.push(format!("{ctx}: the next exec in {t} failed: {last}"));
            }
            let dir = self.ws.data.path().join("workspaces").join(t);
            for f in ["disk.qcow2.new", "reset.json", "snapshot.pending"] {
                if dir.join(f).exists() {
                    self.orphans.push(format!("{ctx}: {t}/{f} left after the next call"));
                }
            }
        }
        self.find_orphans(ctx, &listed);
    }

    fn find_orphans(&mut self, ctx: &str, listed: &BTreeSet<String>) {
        let rt = self.ws.t.runtime.path().to_path_buf();
        let vms = rt.join("vms");
        for p in common::processes_mentioning(&rt) {
            let id = p.split("/vms/").nth(1).map(|r| r.chars().take(12).collect::<String>()).unwrap_or_default();
            if !listed.contains(&id) {
                self.orphans.push(format!("{ctx}: process of an unlisted VM: {p}"));
            }
        }
        for (root, what) in [(vms.clone(), "VM runtime dir"), (self.ws.data.path().join("workspaces"), "workspace dir")]
        {
            for e in std::fs::read_dir(&root).into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !name.starts_with('.') && !listed.contains(&name) {
                    self.orphans.push(format!("{ctx}: {what} of an unlisted workspace: {name}"));
                }
            }
        }
        for id in listed {
            let wdir = self.ws.data.path().join("workspaces").join(id);
            for e in std::fs::read_dir(&wdir).into_iter().flatten().flatten() {
                let n = e.file_name().to_string_lossy().to_string();
                if n.starts_with("sync-") && n.ends_with(".tar") {
                    self.orphans.push(format!("{ctx}: sync archive {id}/{n} of a killed call"));
                }
            }
            self.check_vm_dir(ctx, id, &vms.join(id));
        }
    }

    /// A listed workspace's VM dir: sockets only while a supervisor lives (else an orphan),
    /// at most one supervisor, and `supervisor.pid` names it (else an inconsistent state).
    /// Looked at for up to 2 s: one exiting removes its sockets as it goes.
    fn check_vm_dir(&mut self, ctx: &str, id: &str, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let socks: Vec<&str> = ["supervisor.sock", "ctl.sock", "qmp.sock", "serial.sock"]
                .into_iter()
                .filter(|s| dir.join(s).exists())
                .collect();
            let live = supervisors_of(dir);
            let recorded = std::fs::read_to_string(dir.join("supervisor.pid")).unwrap_or_default().trim().to_string();
            let orphan = !socks.is_empty() && live.is_empty();
            let unrecorded = live.len() > 1 || live.first().is_some_and(|p| p.to_string() != recorded);
            if !orphan && !unrecorded {
                return;
            }
            if Instant::now() > deadline {
                if orphan {
                    self.orphans.push(format!("{ctx}: sockets {socks:?} of {id} with no live supervisor"));
                }
                if unrecorded {
                    self.inconsistent.push(format!(
                        "{ctx}: supervisor(s) {live:?} of {id} running, supervisor.pid says {recorded:?}"
                    ));
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn create(&mut self) -> Option<String> {
        let o = self.ws.run(&[
            "--json",
            "workspace",
            "create",
            "debian:12",
            "--seed-path",
            &self.seed_dir.display().to_string(),
        ]);
        if o.status.code() != Some(0) {
            self.inconsistent.push(format!("create (not killed) failed: {}", stderr(&o)));
            return None;
        }
        json(&o)["id"].as_str().map(str::to_string)
    }
}

/// The live processes running `pyro __supervise DIR` (what `supervisor.pid` should name),
/// found in /proc rather than taken from the record the campaign checks.
fn supervisors_of(dir: &Path) -> Vec<i32> {
    let want = dir.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        // A zombie's command line is empty: it holds nothing and does not count.
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
        if args.windows(2).any(|w| w[0] == b"__supervise" && w[1] == want) {
            out.push(pid);
        }
    }
    out
}

#[test]
#[ignore = "the kill -9 campaign: make test-crash"]
fn kill_minus_nine_campaign() {
    let target_kills: usize = std::env::var("PYRO_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(105);
    let seed: u64 = std::env::var("PYRO_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("crash: seed {seed} (PYRO_CRASH_SEED replays), {target_kills} kills");
    let mut rng = Rng(seed);
    let t = Env::new();
    let scratch = tempfile::tempdir().unwrap();
    let seed_dir = scratch.path().join("seed");
    std::fs::create_dir_all(seed_dir.join("src")).unwrap();
    for i in 0..40 {
        std::fs::write(seed_dir.join("src").join(format!("f{i}.txt")), format!("{i}\n").repeat(200)).unwrap();
    }
    let mut c = Campaign {
        ws: Ws::new(&t),
        base: String::new(),
        seed_dir,
        scratch: scratch.path().to_path_buf(),
        inconsistent: Vec::new(),
        orphans: Vec::new(),
    };
    c.base = c.create().expect("the base workspace");
    // How long each operation takes when not killed: kills land uniformly inside that.
    let mut took_ms: [u64; 7] = [6000, 1500, 1500, 1500, 1500, 5000, 1500];
    let (mut kills, mut missed, mut per_op) = (0usize, 0usize, [0usize; 7]);
    let started = Instant::now();
    let mut i = 0usize;
    while kills < target_kills {
        i += 1;
        let k = i % OPS.len();
        let op = OPS[k];
        // Delete needs a victim of its own; create makes one.
        let target = match op {
            "delete" => match c.create() {
                Some(id) => id,
                None => continue,
            },
            "create" => String::new(),
            _ => c.base.clone(),
        };
        let before = c.listed("before");
        let args = c.args(op, &target, i);
        let delay = Duration::from_millis(rng.below(took_ms[k] * 9 / 10));
        let t0 = Instant::now();
        let mut child = c.ws.cmd().args(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let mut killed = false;
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if t0.elapsed() >= delay {
                // SAFETY: kill takes no pointers; our unreaped child.
                unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
                killed = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let status = child.wait().unwrap();
        if !killed || status.code().is_some() {
            // It finished first: remember how long that takes, and try again.
            if status.success() {
                took_ms[k] = (took_ms[k] + t0.elapsed().as_millis() as u64) / 2;
            }
            missed += 1;
            killed = false;
        }
        let ctx = format!("#{i} {op} killed at {} ms", delay.as_millis());
        let hit = match op {
            "create" => {
                let now = c.listed(&ctx);
                now.difference(&before).next().cloned()
            }
            _ => Some(target.clone()),
        };
        c.check(&ctx, hit.as_deref());
        if killed {
            kills += 1;
            per_op[k] += 1;
        }
        // Keep the VM count small: extra workspaces go (a delete not killed must work).
        for id in c.listed(&ctx) {
            if id != c.base {
                let o = c.ws.run(&["workspace", "delete", &id]);
                if o.status.code() != Some(0) {
                    c.inconsistent.push(format!("{ctx}: delete {id} failed: {}", stderr(&o)));
                }
            }
        }
        for e in std::fs::read_dir(&c.scratch).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with("export-") {
                let _ = std::fs::remove_dir_all(e.path()).or_else(|_| std::fs::remove_file(e.path()));
            }
        }
        if i.is_multiple_of(10) {
            eprintln!(
                "crash: {kills} kills ({missed} finished first) after {} s, {} inconsistent, {} orphans",
                started.elapsed().as_secs(),
                c.inconsistent.len(),
                c.orphans.len()
            );
        }
    }
    let base = c.base.clone();
    let o = c.ws.run(&["workspace", "delete", &base]);
    if o.status.code() != Some(0) {
        c.inconsistent.push(format!("final delete failed: {}{}", stdout(&o), stderr(&o)));
    }
    c.check("the end", None);
    for (n, op) in per_op.iter().zip(OPS) {
        eprintln!("crash: {op}: {n} kills");
    }
    for m in c.inconsistent.iter().chain(&c.orphans) {
        eprintln!("crash: {m}");
    }
    let (inc, orph) = (c.inconsistent.len(), c.orphans.len());
    println!("crash: {kills} kills, {inc} inconsistent states, {orph} orphans");
    eprintln!("crash: {kills} kills, {inc} inconsistent states, {orph} orphans ({} s)", started.elapsed().as_secs());
    assert!(inc == 0 && orph == 0, "the campaign found problems (seed {seed})");
    t.assert_clean();
}
