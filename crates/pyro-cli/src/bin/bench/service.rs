//! Service median for `make bench`: `service start` -> ready for a service that is ready at
//! once (a TCP listener on loopback, probed every 50 ms), then its stop, through the SDK.

use pyro_mcp::types::{Readiness, ServiceOptions};
use pyro_mcp::{Command, CreateOptions, Pyro};
use std::time::Instant;

pub fn run(pyro: &Pyro, runs: usize, report: &dyn Fn(&str, &[f64], &str) -> f64) {
    let mut ws = pyro.workspaces().expect("workspaces");
    let o = CreateOptions { environment: "debian:12".into(), ..Default::default() };
    let w = ws.create(&o, &|_| {}).expect("create");
    let server = "exec perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalPort => 7000, Listen => 5, \
                  ReuseAddr => 1) or die; while (my $c = $s->accept) { close $c }'";
    let (mut start, mut stop) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(3) {
        let mut s = ServiceOptions::new("bench", Command::Shell(server.into()));
        s.readiness = Some(Readiness::Tcp { host: "127.0.0.1".into(), port: 7000 });
        s.ready_interval_ms = 50;
        let t = Instant::now();
        ws.service_start(&w.id, &s).expect("service start");
        start.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        ws.service_stop(&w.id, "bench", None).expect("service stop");
        stop.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    report("service start -> ready (tcp probe)", &start, "ms");
    report("service stop", &stop, "ms");
    let _ = ws.delete(&w.id);
}
