//! Workspace medians for `make bench`: create, seeded create, reset, sync push, exec through
//! the CLI (process start included) and through the SDK, and overlay creation per environment.

use pyro_mcp::{Command, CreateOptions, Pyro};
use std::path::Path;
use std::time::Instant;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn files(dir: &Path, n: usize) {
    for i in 0..n {
        let d = dir.join(format!("dir{}", i % 20));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(format!("file{i}.txt")), format!("line {i}\n").repeat(50)).unwrap();
    }
}

pub fn run(pyro: &Pyro, runs: usize, report: &dyn Fn(&str, &[f64], &str) -> f64) {
    let rt = pyro.runtime().expect("runtime");
    let mut ws = pyro.workspaces().expect("workspaces");
    let quiet = |_: &str| {};
    let true_cmd = || Command::Argv(vec!["true".into()]);

    // Overlay creation against each installed environment: O(1) in the base's size.
    for e in pyro.list_environments().environments.into_iter().filter(|e| e.installed) {
        let inst = pyro_mcp::internal::installed(pyro.paths(), &e.name).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let v: Vec<f64> = (0..runs)
            .map(|i| {
                let t = Instant::now();
                pyro_mcp::internal::create_overlay(
                    &rt.qemu_img,
                    &inst.image(),
                    &tmp.path().join(format!("o{i}.qcow2")),
                )
                .unwrap();
                ms(t)
            })
            .collect();
        let size = std::fs::metadata(tmp.path().join("o0.qcow2")).map(|m| m.len()).unwrap_or(0);
        report(
            &format!("overlay on {} ({} MiB base)", e.name, inst.size_bytes >> 20),
            &v,
            &format!("ms, {} KiB file", size / 1024),
        );
    }

    let mut ids = Vec::new();
    let v: Vec<f64> = (0..runs.min(5))
        .map(|_| {
            let t = Instant::now();
            let w =
                ws.create(&CreateOptions { environment: "debian:12".into(), ..Default::default() }, &quiet).unwrap();
            ws.exec(&w.id, true_cmd(), None, 30, vec![], None).unwrap();
            ids.push(w.id);
            ms(t)
        })
        .collect();
    report("workspace create (no seed) -> first exec", &v, "ms");

    let seed = tempfile::tempdir().unwrap();
    files(seed.path(), 1000);
    let v: Vec<f64> = (0..runs.min(3))
        .map(|_| {
            let t = Instant::now();
            let o = CreateOptions {
                environment: "debian:12".into(),
                seed_path: Some(seed.path().into()),
                ..Default::default()
            };
            let w = ws.create(&o, &quiet).unwrap();
            ids.push(w.id);
            ms(t)
        })
        .collect();
    report("workspace create, 1000-file seed", &v, "ms");

    let id = ids[0].clone();
    let v: Vec<f64> = (0..runs.min(3))
        .map(|_| {
            let t = Instant::now();
            ws.reset(&id).unwrap();
            ws.exec(&id, true_cmd(), None, 30, vec![], None).unwrap();
            ms(t)
        })
        .collect();
    report("workspace reset -> first exec", &v, "ms");

    let big = tempfile::tempdir().unwrap();
    let mut data = vec![0u8; 20 << 20];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i.wrapping_mul(2654435761) >> 13) as u8;
    }
    std::fs::write(big.path().join("blob.bin"), &data).unwrap();
    let v: Vec<f64> = (0..runs.min(3))
        .map(|_| {
            let t = Instant::now();
            ws.sync_push(&id, big.path(), None).unwrap();
            ms(t)
        })
        .collect();
    report("sync push of 20 MB", &v, "ms");

    let bin = pyro_mcp::internal::pyro_binary().unwrap();
    let v: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let o = std::process::Command::new(&bin).args(["workspace", "exec", &id, "--", "true"]).output().unwrap();
            assert!(o.status.success());
            ms(t)
        })
        .collect();
    report("`pyro workspace exec ID -- true` (CLI)", &v, "ms  (target < 50 ms)");
    let v: Vec<f64> = (0..30)
        .map(|_| {
            let t = Instant::now();
            ws.exec(&id, true_cmd(), None, 30, vec![], None).unwrap();
            ms(t)
        })
        .collect();
    report("workspace exec `true` (SDK)", &v, "ms");
    for id in ids {
        let _ = ws.delete(&id);
    }
}
