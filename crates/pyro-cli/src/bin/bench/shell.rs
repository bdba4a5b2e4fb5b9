//! Shell median for `make bench`: one `shell write` followed by `shell read` calls until the
//! echoed line is back (the read waits for nothing: it polls), through the SDK.

use pyro_mcp::types::{ShellOptions, ShellReadOptions};
use pyro_mcp::{CreateOptions, Pyro};
use std::time::Instant;

pub fn run(pyro: &Pyro, runs: usize, report: &dyn Fn(&str, &[f64], &str) -> f64) {
    let mut ws = pyro.workspaces().expect("workspaces");
    let o = CreateOptions { environment: "debian:12".into(), ..Default::default() };
    let w = ws.create(&o, &|_| {}).expect("create");
    let sh = ws.shell_open(&w.id, &ShellOptions::default()).expect("shell open");
    // Let the prompt come up before timing.
    let idle = ShellReadOptions { wait_for_idle_ms: 500, ..Default::default() };
    let mut cursor = ws.shell_read(&w.id, &sh.shell_id, &idle).expect("read").next_cursor;
    let mut rtt = Vec::new();
    for i in 0..runs.max(5) * 2 {
        let marker = format!("pyro-bench-{i}");
        let t = Instant::now();
        ws.shell_write(&w.id, &sh.shell_id, &format!("echo {marker}"), true).expect("write");
        let mut seen = String::new();
        // The echo of the typed line shows the marker once; its output shows it again.
        while seen.matches(&marker).count() < 2 {
            let r =
                ws.shell_read(&w.id, &sh.shell_id, &ShellReadOptions { cursor, ..Default::default() }).expect("read");
            cursor = r.next_cursor;
            seen.push_str(&r.output);
            assert!(t.elapsed().as_secs() < 30, "no echo of {marker}: {seen:?}");
        }
        rtt.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    report("shell write -> read of the echo", &rtt, "ms");
    let _ = ws.shell_close(&w.id, &sh.shell_id);
    let _ = ws.delete(&w.id);
}
