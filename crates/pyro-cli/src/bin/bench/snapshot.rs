//! Snapshot medians for `make bench`: `snapshot create` on a running workspace of 1,000 and of
//! 20,000 seeded files (O(1) in the workspace's size: both should take about the same), and
//! `reset --snapshot` -> first exec; then stop (memory saved), start -> first exec, the memory
//! file's size for a 1024 MiB guest, and stop/start with the memory discarded; all through
//! the SDK.

use pyro_mcp::{Command, CreateOptions, Pyro};
use std::path::Path;
use std::time::Instant;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn files(dir: &Path, n: usize) {
    for i in 0..n {
        let d = dir.join(format!("dir{}", i % 50));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("file{i}.txt")), format!("line {i}\n").repeat(20)).unwrap();
    }
}

pub fn run(pyro: &Pyro, runs: usize, report: &dyn Fn(&str, &[f64], &str) -> f64) {
    let mut ws = pyro.workspaces().expect("workspaces");
    for n in [1000, 20_000] {
        let seed = tempfile::tempdir().unwrap();
        files(seed.path(), n);
        let o = CreateOptions {
            environment: "debian:12".into(),
            seed_path: Some(seed.path().into()),
            ..Default::default()
        };
        let w = ws.create(&o, &|_| {}).expect("create");
        // Each run writes a little, then snapshots: what a session does between checkpoints.
        let mut v = Vec::new();
        for i in 0..runs.max(3) {
            ws.exec(&w.id, Command::Shell(format!("echo {i} > /workspace/run; sync")), None, 60, vec![], None)
                .expect("exec");
            let t = Instant::now();
            ws.snapshot_create(&w.id, &format!("s{i}")).expect("snapshot create");
            v.push(ms(t));
        }
        report(&format!("snapshot create, {n}-file workspace"), &v, "ms");
        if n == 1000 {
            let v: Vec<f64> = (0..runs.max(3))
                .map(|_| {
                    let t = Instant::now();
                    ws.reset_to(&w.id, Some("s0")).expect("reset to snapshot");
                    ws.exec(&w.id, Command::Argv(vec!["true".into()]), None, 30, vec![], None).expect("exec");
                    ms(t)
                })
                .collect();
            report("reset --snapshot -> first exec", &v, "ms");
            stop_start(&mut ws, &w.id, runs.max(3), report);
        }
        let _ = ws.delete(&w.id);
    }
}

fn stop_start(ws: &mut pyro_mcp::Workspaces<'_>, id: &str, runs: usize, report: &dyn Fn(&str, &[f64], &str) -> f64) {
    let (mut stop, mut start, mut size) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        let s = ws.stop(id, false).expect("stop");
        stop.push(ms(t));
        size.push(s.memory_bytes.unwrap_or(0) as f64 / (1 << 20) as f64);
        let t = Instant::now();
        let r = ws.start(id).expect("start");
        assert!(r.resumed, "start did not resume: {:?}", r.note);
        ws.exec(id, Command::Argv(vec!["true".into()]), None, 30, vec![], None).expect("exec");
        start.push(ms(t));
    }
    report("stop (memory saved, 1024 MiB guest)", &stop, "ms");
    report("start (resume) -> first exec", &start, "ms");
    report("memory file, 1024 MiB guest", &size, "MiB");
    let (mut stop, mut start) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        ws.stop(id, true).expect("stop --discard-memory");
        stop.push(ms(t));
        let t = Instant::now();
        ws.start(id).expect("start");
        ws.exec(id, Command::Argv(vec!["true".into()]), None, 30, vec![], None).expect("exec");
        start.push(ms(t));
    }
    report("stop --discard-memory", &stop, "ms");
    report("start (boot from disk) -> first exec", &start, "ms");
}
