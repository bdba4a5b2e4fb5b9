//! Fork medians for `make bench` (`PYRO_BENCH_ONLY=fork`): ten forks of one running
//! workspace, each timed from the call to its first exec, with how long the source was
//! paused (`forked_from.source_paused_ms`), the fork call alone and the first exec alone;
//! then the same from a source that has touched 400 MiB of its memory. Medians and maxima:
//! the issue asks for both.

use pyro_mcp::{Command, CreateOptions, ForkOptions, Pyro};
use std::time::Instant;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

pub fn run(runs: usize, report: &dyn Fn(&str, &[f64], &str) -> f64) {
    let pyro = Pyro::new().expect("paths").with_spares(false);
    let mut ws = pyro.workspaces().expect("workspaces");
    let src =
        ws.create(&CreateOptions { environment: "debian:12".into(), ..Default::default() }, &|_| {}).expect("create");
    let exec = |ws: &mut pyro_mcp::Workspaces<'_>, id: &str, cmd: &str| {
        let r = ws.exec(id, Command::Shell(cmd.into()), None, 120, vec![], None).expect("exec");
        assert_eq!(r.exit_code, 0, "{cmd}: {}", String::from_utf8_lossy(&r.stderr));
    };
    exec(&mut ws, &src.id, "true");
    for (label, warm) in [("idle source", ""), ("source using 400 MiB", "head -c 400M /dev/urandom > /dev/shm/fill")] {
        if !warm.is_empty() {
            exec(&mut ws, &src.id, warm);
        }
        let (mut total, mut paused, mut call, mut first) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs.max(10) {
            let t = Instant::now();
            let f = ws.fork(&src.id, &ForkOptions::default()).expect("fork");
            call.push(ms(t));
            let t1 = Instant::now();
            exec(&mut ws, &f.id, "true");
            first.push(ms(t1));
            total.push(ms(t));
            paused.push(f.forked_from.and_then(|o| o.source_paused_ms).unwrap_or(0) as f64);
            let _ = ws.delete(&f.id);
        }
        report(&format!("fork -> first exec, {label}"), &total, "ms");
        report(&format!("  source paused, {label}"), &paused, "ms");
        report(&format!("  fork call, {label}"), &call, "ms");
        report(&format!("  first exec in the fork, {label}"), &first, "ms");
    }
    let _ = ws.delete(&src.id);
}
