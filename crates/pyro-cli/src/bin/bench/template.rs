//! Warm templates and fork for `make bench`, in one run with templates on and off:
//! `workspace create` -> first exec, `pyro run debian:12 -- true` to exit, and the host memory
//! (PSS of QEMU and the supervisor) of an idle workspace (fork has its own section, `fork.rs`); then create -> first exec when a warm spare waits, and a waiting
//! spare's memory. `PYRO_BENCH_ONLY=templates` runs just this section.

use pyro_mcp::{Command, CreateOptions, Pyro};
use std::time::{Duration, Instant};

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Proportional set size of a process, from `/proc/PID/smaps_rollup`, in MiB.
fn pss_mib(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("Pss:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// QEMU's and the supervisor's PSS for a workspace's VM (from its `state.json`).
fn workspace_pss(pyro: &Pyro, id: &str) -> f64 {
    let st: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pyro.paths().vms().join(id).join("state.json")).unwrap_or_default())
            .unwrap_or_default();
    let pid = |k: &str| st[k].as_u64().unwrap_or(0) as u32;
    pss_mib(pid("qemu_pid")) + pss_mib(pid("supervisor_pid"))
}

/// Wait (up to 3 min) until debian:12 has a usable template of the default shape.
fn wait_template(pyro: &Pyro) -> bool {
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if let Ok(d) = pyro.inspect_environment("debian:12") {
            if d.templates.iter().any(|t| t.current && t.vcpus == 1 && t.mem_mib == 1024 && !t.nic) {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    false
}

pub fn run(runs: usize, report: &dyn Fn(&str, &[f64], &str) -> f64) {
    let pyro_bin = pyro_mcp::internal::pyro_binary().expect("pyro binary");
    let mut medians = Vec::new();
    for on in [true, false] {
        let label = if on { "templates on" } else { "templates off" };
        // Spares off here: this is a create that restores the template itself.
        let pyro = Pyro::new().expect("paths").with_templates(on).with_spares(false);
        let mut ws = pyro.workspaces().expect("workspaces");
        let create = |ws: &mut pyro_mcp::Workspaces<'_>| {
            ws.create(&CreateOptions { environment: "debian:12".into(), ..Default::default() }, &|_| {})
                .expect("create")
        };
        if on {
            // The first VM of a shape may boot cold while the template is built.
            let w = create(&mut ws);
            let _ = ws.delete(&w.id);
            if !wait_template(&pyro) {
                println!("{label}: no template was built within 3 min; skipped");
                continue;
            }
        }
        let (mut first, mut ids, mut how) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            let t = Instant::now();
            let w = create(&mut ws);
            ws.exec(&w.id, Command::Argv(vec!["true".into()]), None, 30, vec![], None).expect("exec");
            first.push(ms(t));
            how.push(w.started_from.map(|s| s.from).unwrap_or_default());
            ids.push(w.id);
        }
        let m = report(&format!("create -> first exec, {label}"), &first, "ms");
        println!("{:<42} {}", "", how.join(" "));
        // Idle: the guests sit 3 s after their last command.
        std::thread::sleep(Duration::from_secs(3));
        let pss: Vec<f64> = ids.iter().map(|id| workspace_pss(&pyro, id)).collect();
        report(&format!("idle workspace PSS, {label}, {} running", ids.len()), &pss, "MiB");
        for id in &ids {
            let _ = ws.delete(id);
        }
        let run: Vec<f64> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let o = std::process::Command::new(&pyro_bin)
                    .args(["run", "debian:12", "--", "true"])
                    .env("PYRO_TEMPLATES", if on { "on" } else { "off" })
                    .output()
                    .expect("run");
                assert!(o.status.success(), "pyro run failed: {}", String::from_utf8_lossy(&o.stderr));
                ms(t)
            })
            .collect();
        report(&format!("`pyro run debian:12 -- true`, {label}"), &run, "ms");
        medians.push(m);
    }
    let spare = spares(runs, report);
    if let [on, off] = medians[..] {
        println!("{:<42} {:>15.2}  (target <= 0.2: a fifth)", "create -> first exec, on / off", on / off);
        if let Some(s) = spare {
            println!("{:<42} {:>15.2}  (target <= 0.2: a fifth)", "create -> first exec, spare / off", s / off);
        }
    }
}

/// The id of a waiting spare in this data dir, if one is there (its `spare.json`).
fn waiting_spare(pyro: &Pyro) -> Option<String> {
    std::fs::read_dir(pyro.paths().data.join("workspaces"))
        .ok()?
        .flatten()
        .find(|e| e.path().join("spare.json").exists())
        .map(|e| e.file_name().to_string_lossy().to_string())
}

/// Create -> first exec when a warm spare waits (each create leaves the next one; the run
/// waits for it), and the host memory a waiting (paused) spare holds. Median, or None.
fn spares(runs: usize, report: &dyn Fn(&str, &[f64], &str) -> f64) -> Option<f64> {
    let pyro = Pyro::new().expect("paths").with_templates(true).with_spares(true);
    let mut ws = pyro.workspaces().expect("workspaces");
    let (mut first, mut ids, mut how, mut pss) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..=runs {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut spare = waiting_spare(&pyro);
        while spare.is_none() && i > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            spare = waiting_spare(&pyro);
        }
        if let Some(id) = &spare {
            pss.push(workspace_pss(&pyro, id));
        }
        let t = Instant::now();
        let w = ws
            .create(&CreateOptions { environment: "debian:12".into(), ..Default::default() }, &|_| {})
            .expect("create");
        ws.exec(&w.id, Command::Argv(vec!["true".into()]), None, 30, vec![], None).expect("exec");
        // The first create leaves the first spare; it is not counted.
        if i > 0 {
            first.push(ms(t));
            how.push(w.started_from.map(|s| s.from).unwrap_or_default());
        }
        ids.push(w.id);
    }
    let m = report("create -> first exec, a warm spare waiting", &first, "ms");
    println!("{:<42} {}", "", how.join(" "));
    report("idle (paused) spare PSS", &pss, "MiB");
    for id in &ids {
        let _ = ws.delete(id);
    }
    // The last create left a spare (and its preparer may still be at work): removed.
    std::thread::sleep(Duration::from_secs(3));
    pyro_mcp::internal::evict_spares(pyro.paths());
    Some(m)
}
