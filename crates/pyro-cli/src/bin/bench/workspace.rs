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
    // The same with a statically linked `true` (built here by `cc`): the difference is the
    // guest's dynamic loader mapping and relocating libc under emulation, not pyro.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.c"), "int main(void) { return 0; }\n").unwrap();
    let built = std::process::Command::new("cc")
        .args(["-O2", "-static", "-o"])
        .arg(dir.path().join("static-true"))
        .arg(dir.path().join("t.c"))
        .status()
        .is_ok_and(|s| s.success());
    if built {
        std::fs::remove_file(dir.path().join("t.c")).unwrap();
        ws.sync_push(&id, dir.path(), Some("bin")).unwrap();
        let st = || Command::Argv(vec!["/workspace/bin/static-true".into()]);
        ws.exec(&id, st(), None, 30, vec![], None).unwrap();
        let v: Vec<f64> = (0..30)
            .map(|_| {
                let t = Instant::now();
                ws.exec(&id, st(), None, 30, vec![], None).unwrap();
                ms(t)
            })
            .collect();
        report("workspace exec, a static `true` (SDK)", &v, "ms");
        // The guest's own cost of one fork+exec of each, without pyro (a shell loop of 50).
        let lp = "for b in /bin/true /workspace/bin/static-true; do s=$(date +%s%N); for i in $(seq 50); do $b; done; \
                  echo $(( ($(date +%s%N) - s) / 50000 )); done";
        let o =
            ws.exec(&id, Command::Argv(vec!["bash".into(), "-c".into(), lp.into()]), None, 60, vec![], None).unwrap();
        let us: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| format!("{:.1}", l.trim().parse::<f64>().unwrap_or(0.0) / 1000.0))
            .collect();
        println!(
            "{:<42} {:>8} ms  (dynamic / static, in a guest shell loop)",
            "  fork+exec inside the guest",
            us.join(" / ")
        );
    }
    for id in ids {
        let _ = ws.delete(&id);
    }
}
