//! Guest networking against real VMs: no NIC by default, egress that never reaches the host
//! itself, ports published on 127.0.0.1 only, and a domain allow list that fails closed and
//! shows its denials in the summary. Only `egress_downloads_over_verified_tls` uses the outside
//! world; when the host itself has no route out it is skipped (`common::skip`: a failure
//! under CI).

use crate::common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A shell loop that tries each `ip/port` with bash's /dev/tcp and prints OPEN or refused.
fn probe(targets: &[String]) -> String {
    format!(
        "for t in {}; do timeout 8 bash -c \"echo > /dev/tcp/$t\" 2>/dev/null && echo \"$t OPEN\" || echo \"$t refused\"; done",
        targets.join(" ")
    )
}

/// The host's first non-loopback IPv4 address, if it has one.
fn host_address() -> Option<String> {
    let o = std::process::Command::new("hostname").arg("-I").output().ok()?;
    String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .find(|a| a.contains('.') && !a.starts_with("127."))
        .map(String::from)
}

#[test]
fn policies_and_options_are_checked() {
    let t = Env::new();
    let w = Ws::new(&t);
    for (args, want) in [
        (vec!["--network-policy", "open"], "unknown network policy"),
        (vec!["--network-policy", "egress", "--publish", "8080"], "egress+published-ports"),
        (vec!["--network-policy", "egress+published-ports", "--publish", "70000"], "invalid port"),
        (vec!["--allow-domain", "pypi.org"], "needs a network policy"),
        (vec!["--network-policy", "egress", "--allow-domain", "not a name"], "not a domain name"),
    ] {
        let mut a = vec!["workspace", "create", "debian:12"];
        a.extend(args.iter());
        let o = w.run(&a);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{a:?}: {}", stderr(&o));
    }
    // A host port that is taken is a conflict, and nothing is created.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let spec = format!("{port}:80");
    let o =
        w.run(&["workspace", "create", "debian:12", "--network-policy", "egress+published-ports", "--publish", &spec]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let l = w.ok(&["workspace", "list", "--json"]);
    assert_eq!(l["workspaces"].as_array().unwrap().len(), 0, "{l}");
}

#[test]
fn egress_never_reaches_the_host_and_off_has_no_network() {
    let t = Env::new();
    let w = Ws::new(&t);
    let lo = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut targets = vec![format!("10.0.2.2/{}", lo.local_addr().unwrap().port())];
    let _own = host_address().map(|a| {
        let l = TcpListener::bind((a.as_str(), 0)).unwrap();
        targets.push(format!("{a}/{}", l.local_addr().unwrap().port()));
        l
    });
    targets.push("169.254.169.254/80".into());
    let c = w.ok(&["workspace", "create", "debian:12", "--network-policy", "egress", "--json"]);
    assert_eq!(c["network_policy"], "egress");
    let id = c["id"].as_str().unwrap().to_string();
    let out = w.sh(&id, &probe(&targets));
    for t in &targets {
        assert!(out.contains(&format!("{t} refused")), "{t} must be unreachable: {out}");
    }
    // The supervisor writes its denial log at most once a second: wait for it (bounded).
    let until = std::time::Instant::now() + Duration::from_secs(15);
    let s = loop {
        let s = w.ok(&["workspace", "summary", &id, "--json"]);
        let denied = s["network"]["denials"].as_array().cloned().unwrap_or_default();
        if denied.iter().any(|d| d["target"] == "10.0.2.2") || std::time::Instant::now() > until {
            break s;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let denied = s["network"]["denials"].as_array().cloned().unwrap_or_default();
    assert!(denied.iter().any(|d| d["target"] == "10.0.2.2"), "{s}");

    // No policy: no NIC, no route, no resolver; loopback up (flags IFF_UP | IFF_LOOPBACK).
    let c = w.ok(&["workspace", "create", "debian:12", "--json"]);
    assert_eq!(c["network_policy"], "off");
    let off = c["id"].as_str().unwrap().to_string();
    let out = w.sh(&off, "ls /sys/class/net; cat /sys/class/net/lo/flags; getent hosts deb.debian.org || echo no-dns");
    assert_eq!(out, "lo\n0x9\nno-dns\n");
    w.ok(&["workspace", "delete", &id, "--json"]);
    w.ok(&["workspace", "delete", &off, "--json"]);
}

#[test]
fn published_ports_answer_on_loopback_only() {
    let t = Env::new();
    let w = Ws::new(&t);
    let c = w.ok(&[
        "workspace",
        "create",
        "debian:12",
        "--network-policy",
        "egress+published-ports",
        "--publish",
        "8000",
        "--json",
    ]);
    let id = c["id"].as_str().unwrap().to_string();
    let p = &c["published_ports"][0];
    assert_eq!(p["host"], "127.0.0.1");
    assert_eq!(p["guest_port"], 8000);
    assert_eq!(p["protocol"], "tcp");
    let host_port = p["host_port"].as_u64().unwrap() as u16;
    assert_ne!(host_port, 0);
    // A server in the guest (perl is in every Debian image).
    let server = "nohup perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalPort => 8000, Listen => 5, \
                  ReuseAddr => 1) or die; while (my $c = $s->accept) { <$c>; print $c \"hello from the guest\\n\"; \
                  close $c }' >/dev/null 2>&1 & \
                  for i in $(seq 100); do grep -q ':1F40 00000000:0000 0A' /proc/net/tcp && break; sleep 0.2; done; \
                  echo started";
    assert_eq!(w.sh(&id, server), "started\n");
    let mut s = TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"hi\n").unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    assert_eq!(got, "hello from the guest\n");
    // Bound to loopback only.
    if let Some(a) = host_address() {
        assert!(
            TcpStream::connect_timeout(&format!("{a}:{host_port}").parse().unwrap(), Duration::from_secs(3)).is_err()
        );
    }
    let st = w.ok(&["workspace", "status", &id, "--json"]);
    assert_eq!(st["published_ports"][0]["host_port"], host_port);
    w.ok(&["workspace", "delete", &id, "--json"]);
}

/// Whether the host itself reaches `host:443` (the outside world may be unreachable in CI).
fn host_reaches(host: &str) -> bool {
    let Ok(addrs) = (host, 443).to_socket_addrs() else { return false };
    addrs.into_iter().any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok())
}

#[test]
fn egress_downloads_over_verified_tls_and_the_allow_list_fails_closed() {
    let registry = "registry.npmjs.org";
    if !host_reaches(registry) {
        return skip(&format!("this host has no route to {registry}:443, so the download test cannot run"));
    }
    let t = Env::new();
    let w = Ws::new(&t);
    // A small npm package over HTTPS, with apt's https method (GnuTLS; it verifies the peer
    // against the guest's system CA bundle, which the agent extends with the host's).
    let fetch = format!(
        "( printf '600 URI Acquire\\nURI: https://{registry}/is-number/-/is-number-7.0.0.tgz\\nFilename: /tmp/p.tgz\\n\\n'; \
         sleep 60 ) | timeout 60 /usr/lib/apt/methods/https > /tmp/log 2>&1 & \
         for i in $(seq 120); do grep -qE '^(201|400) ' /tmp/log && break; sleep 0.5; done; \
         grep -E '^(201|400) |^Message' /tmp/log | tail -2; tar tzf /tmp/p.tgz 2>/dev/null | grep package.json"
    );
    let c = w.ok(&["workspace", "create", "debian:12", "--network-policy", "egress", "--json"]);
    let id = c["id"].as_str().unwrap().to_string();
    let out = w.sh(&id, &fetch);
    assert!(out.contains("201 URI Done") && out.contains("package/package.json"), "{out}");
    w.ok(&["workspace", "delete", &id, "--json"]);

    // The same from a workspace without network fails.
    let c = w.ok(&["workspace", "create", "debian:12", "--json"]);
    let off = c["id"].as_str().unwrap().to_string();
    let (code, out) = w.sh_status(&off, &fetch);
    assert_eq!(code, Some(1), "the last grep finds no package.json: {out}");
    assert!(out.contains("400 URI Failure") && !out.contains("package.json"), "{out}");
    w.ok(&["workspace", "delete", &off, "--json"]);

    // An allow list: the listed name works; another name, and raw TCP, do not get out.
    let c =
        w.ok(&["workspace", "create", "debian:12", "--network-policy", "egress", "--allow-domain", registry, "--json"]);
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["allow_domains"][0], registry);
    let out = w.sh(&id, &fetch);
    assert!(out.contains("201 URI Done") && out.contains("package/package.json"), "{out}");
    let ip = w.sh(&id, &format!("getent hosts {registry} | cut -d' ' -f1")).trim().to_string();
    assert!(!ip.is_empty());
    let out = w.sh(
        &id,
        &format!(
            "getent hosts deb.debian.org || echo no-dns; printf 'GET / HTTP/1.1\\r\\nHost: deb.debian.org\\r\\n\\r\\n' > /tmp/r; \
             timeout 10 bash -c 'exec 3<>/dev/tcp/{ip}/80; cat /tmp/r >&3; cat <&3' >/dev/null 2>&1 || echo http-refused; {}",
            probe(&[format!("{ip}/22")])
        ),
    );
    assert!(
        out.contains("no-dns") && out.contains("http-refused") && out.contains(&format!("{ip}/22 refused")),
        "{out}"
    );
    std::thread::sleep(Duration::from_secs(2)); // the denial log is written at most once a second
    let s = w.ok(&["workspace", "summary", &id, "--json"]);
    let denied: Vec<String> = s["network"]["denials"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|d| format!("{}:{}", d["target"].as_str().unwrap_or(""), d["port"]))
        .collect();
    for want in ["deb.debian.org:53".to_string(), "deb.debian.org:80".to_string(), format!("{ip}:22")] {
        assert!(denied.contains(&want), "{want} in {denied:?}");
    }
    w.ok(&["workspace", "delete", &id, "--json"]);
}

#[test]
fn doctor_boots_a_guest_with_a_nic() {
    let t = Env::new();
    let o = t.run(&["doctor", "--json"]);
    let r = json(&o);
    assert_eq!(r["capabilities"]["guest_network"], true, "{}", r["capabilities"]);
    assert!(r["capabilities"]["guest_network_reason"].as_str().unwrap().contains("eth0"), "{}", r["capabilities"]);
}
