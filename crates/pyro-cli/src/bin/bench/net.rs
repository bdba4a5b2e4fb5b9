//! Network medians for `make bench`: what each network policy adds to `workspace create` ->
//! first exec, and the throughput of 100 MB sent from the host into the guest through a
//! published port (the guest's perl counts the bytes and answers with the total).

use pyro_mcp::{Command, CreateOptions, NetworkOptions, NetworkPolicy, PortSpec, Pyro};
use std::io::{Read, Write};
use std::time::Instant;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

pub fn run(pyro: &Pyro, runs: usize, report: &dyn Fn(&str, &[f64], &str) -> f64) {
    let mut ws = pyro.workspaces().expect("workspaces");
    let quiet = |_: &str| {};
    let true_cmd = || Command::Argv(vec!["true".into()]);
    let mut base = 0.0;
    for policy in [NetworkPolicy::Off, NetworkPolicy::Egress, NetworkPolicy::EgressPublishedPorts] {
        let publish = if policy == NetworkPolicy::EgressPublishedPorts {
            vec![PortSpec { host_port: 0, guest_port: 8000 }]
        } else {
            vec![]
        };
        let v: Vec<f64> = (0..runs.min(4))
            .map(|_| {
                let t = Instant::now();
                let o = CreateOptions {
                    environment: "debian:12".into(),
                    network: NetworkOptions { policy, publish: publish.clone(), allow_domains: vec![] },
                    ..Default::default()
                };
                let w = ws.create(&o, &quiet).expect("create");
                ws.exec(&w.id, true_cmd(), None, 30, vec![], None).expect("exec");
                let took = ms(t);
                let _ = ws.delete(&w.id);
                took
            })
            .collect();
        let m = report(&format!("create -> first exec, network {}", policy.as_str()), &v, "ms");
        if policy == NetworkPolicy::Off {
            base = m;
        } else {
            println!("{:<42} {:>8.1} ms  (over `off`)", "", m - base);
        }
    }

    let o = CreateOptions {
        environment: "debian:12".into(),
        network: NetworkOptions {
            policy: NetworkPolicy::EgressPublishedPorts,
            publish: vec![PortSpec { host_port: 0, guest_port: 8000 }],
            allow_domains: vec![],
        },
        ..Default::default()
    };
    let w = ws.create(&o, &quiet).expect("create");
    let port = w.published_ports[0].host_port;
    let server = "nohup perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalPort => 8000, Listen => 5, \
                  ReuseAddr => 1) or die; while (my $c = $s->accept) { my ($n, $b) = (0, q()); \
                  while (my $r = sysread($c, $b, 1 << 16)) { $n += $r } print $c \"$n\\n\"; close $c }' \
                  >/dev/null 2>&1 & for i in $(seq 100); do grep -q ':1F40 00000000:0000 0A' /proc/net/tcp && break; \
                  sleep 0.2; done";
    ws.exec(&w.id, Command::Shell(server.into()), None, 60, vec![], None).expect("server");
    let chunk = vec![b'x'; 1 << 20];
    let v: Vec<f64> = (0..runs.min(3))
        .map(|_| {
            let t = Instant::now();
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
            for _ in 0..100 {
                s.write_all(&chunk).expect("send");
            }
            s.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut answer = String::new();
            s.read_to_string(&mut answer).expect("answer");
            assert_eq!(answer.trim(), (100u64 << 20).to_string(), "the guest got every byte");
            100.0 * 1.048_576 / t.elapsed().as_secs_f64()
        })
        .collect();
    report("100 MB host -> guest, published port", &v, "MB/s");
    let _ = ws.delete(&w.id);
}
