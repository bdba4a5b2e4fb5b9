//! Long-running services in workspaces, against real VMs: readiness (HTTP after a delay, never
//! ready, exiting early), bounded logs, stops that leave nothing behind (also for a service that
//! ignores TERM), restarts, a second CLI process seeing the same service, services reported
//! lost after a reset or a killed VM, and published ports for a service.
//!
//! The guest servers are perl one-liners: perl is in every Debian image (python3 is not).

use crate::common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// A perl HTTP server on `port` that starts listening after `delay` seconds.
fn http_server(port: u16, delay: u32) -> String {
    format!(
        "echo starting; perl -MIO::Socket::INET -e 'sleep {delay}; my $s = IO::Socket::INET->new(LocalPort => {port}, \
         Listen => 5, ReuseAddr => 1) or die \"listen: $!\"; while (my $c = $s->accept) {{ <$c>; print $c \
         \"HTTP/1.0 200 OK\\r\\n\\r\\nhello from the guest\\n\"; close $c }}'"
    )
}

/// Whether a guest process named `comm` runs (read from /proc: the image has no procps).
fn running(w: &Ws, id: &str, comm: &str) -> bool {
    !w.guest_processes_where(id, |p| p.comm == comm).is_empty()
}

/// Whether a guest process with this argv shows up within 10 s (a loop's `sleep 1` comes
/// and goes).
fn seen_running(w: &Ws, id: &str, argv: &[&str]) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while w.guest_processes_where(id, |p| p.argv == argv).is_empty() {
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

#[test]
fn service_lifecycle_end_to_end() {
    let t = Env::new();
    let w = Ws::new(&t);
    let c = w.ok(&["workspace", "create", "debian:12", "--name", "svc", "--json"]);
    let id = c["id"].as_str().unwrap().to_string();

    // Bad input: one-line errors, nothing changed.
    for (args, code, want) in [
        (vec!["bad name", "--", "true"], 2, "invalid service name"),
        (vec!["-x", "--", "true"], 2, ""),
        (vec!["web", "--ready-file", "a", "--ready-tcp", "127.0.0.1:1", "--", "true"], 2, "at most one readiness"),
        (vec!["web", "--ready-tcp", "8080", "--", "true"], 2, "invalid readiness target"),
        (vec!["web", "--ready-tcp", "example.org:80", "--", "true"], 2, "not an IP address"),
        (vec!["web", "--ready-http", "https://127.0.0.1/", "--", "true"], 2, "only http://"),
        (vec!["web", "--ready-timeout-seconds", "0", "--", "true"], 2, "ready_timeout_seconds"),
        (vec!["web", "--restart", "always", "--", "true"], 2, "restart policy"),
        (vec!["web", "--publish", "8080", "--", "true"], 2, "egress+published-ports"),
    ] {
        let mut a = vec!["workspace", "service", "start", "svc"];
        a.extend(args.iter());
        if want.is_empty() {
            // clap refuses it before pyro sees it.
            assert_ne!(w.run(&a).status.code(), Some(0), "{a:?}");
            continue;
        }
        let (rc, err) = w.fails(&a);
        assert_eq!(rc, code, "{a:?}: {err}");
        assert!(err.contains(want), "{a:?}: {err}");
    }
    let (rc, err) = w.fails(&["workspace", "service", "status", "svc", "nope"]);
    assert_eq!(rc, 3, "{err}");
    let (rc, _) = w.fails(&["workspace", "service", "stop", "svc", "nope"]);
    assert_eq!(rc, 3);
    assert_eq!(w.ok(&["workspace", "service", "list", "svc", "--json"])["count"], 0);

    // Ready on HTTP after a delay: `start` returns only then.
    let t0 = Instant::now();
    let web = w.ok(&[
        "workspace",
        "service",
        "start",
        "svc",
        "web",
        "--ready-http",
        "http://127.0.0.1:8080/",
        "--ready-interval-ms",
        "200",
        "--json",
        "--",
        &http_server(8080, 2),
    ]);
    assert!(t0.elapsed() >= Duration::from_secs(2), "returned before the server listened: {web}");
    assert_eq!(web["state"], "ready", "{web}");
    assert_eq!(web["readiness"], "http http://127.0.0.1:8080/");
    assert_eq!(web["last_probe"], "ok");
    assert!(web["ready_at"].as_u64().unwrap() >= web["started_at"].as_u64().unwrap());
    // It keeps running between execs and answers.
    let got = w.sh(&id, "bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080; echo GET / >&3; cat <&3'");
    assert!(got.contains("hello from the guest"), "{got}");
    // A live name cannot be started twice.
    let (rc, err) = w.fails(&["workspace", "service", "start", "svc", "web", "--", "sleep 1"]);
    assert_eq!(rc, 4, "{err}");

    // Never ready: fails with the probe's last result and the log tail, and is stopped.
    let t0 = Instant::now();
    let (rc, err) = w.fails(&[
        "workspace",
        "service",
        "start",
        "svc",
        "never",
        "--ready-tcp",
        "127.0.0.1:9",
        "--ready-timeout-seconds",
        "2",
        "--",
        "echo waiting-forever; sleep 600",
    ]);
    assert!(t0.elapsed() < Duration::from_secs(30), "{:?}", t0.elapsed());
    assert_eq!(rc, 7, "{err}");
    assert!(err.contains("not ready within 2 s"), "{err}");
    assert!(err.contains("tcp 127.0.0.1:9") && err.contains("refused"), "{err}");
    assert!(err.contains("log tail: waiting-forever"), "{err}");
    let never = w.ok(&["workspace", "service", "status", "svc", "never", "--json"]);
    assert_eq!(never["state"], "failed", "{never}");

    // Exits early: the exit and its output.
    let (rc, err) = w.fails(&[
        "workspace",
        "service",
        "start",
        "svc",
        "early",
        "--ready-file",
        "/tmp/never-there",
        "--",
        "echo boom >&2; exit 3",
    ]);
    assert_eq!(rc, 5, "{err}");
    assert!(err.contains("exited with status 3") && err.contains("boom"), "{err}");
    let early = w.ok(&["workspace", "service", "status", "svc", "early", "--json"]);
    assert_eq!((early["state"].as_str(), early["exit_code"].as_i64()), (Some("failed"), Some(3)), "{early}");

    // A flood: the rings stay bounded and count what they dropped.
    let flood = w.ok(&["workspace", "service", "start", "svc", "flood", "--json", "--", "yes flood-line-0123456789"]);
    assert_eq!(flood["state"], "ready", "{flood}");
    assert!(seen_running(&w, &id, &["yes", "flood-line-0123456789"]), "the flood's `yes` is not in the guest's /proc");
    let mut st = flood.clone();
    let until = Instant::now() + Duration::from_secs(60);
    while st["log_dropped_bytes"].as_u64().unwrap_or(0) == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(500));
        st = w.ok(&["workspace", "service", "status", "svc", "flood", "--json"]);
    }
    assert!(st["stdout_bytes"].as_u64().unwrap() > 1 << 20, "{st}");
    assert!(st["log_dropped_bytes"].as_u64().unwrap() > 0, "{st}");
    let all = w.ok(&["workspace", "service", "logs", "svc", "flood", "--all", "--json"]);
    let out = all["stdout"].as_str().unwrap();
    assert!(out.len() <= 1 << 20 && out.len() > 1000, "{}", out.len());
    let tail = w.ok(&["workspace", "service", "logs", "svc", "flood", "--tail-lines", "5", "--json"]);
    assert_eq!(tail["stdout"].as_str().unwrap().lines().count(), 5, "{tail}");
    let s = w.ok(&["workspace", "service", "stop", "svc", "flood", "--json"]);
    assert_eq!(s["state"], "stopped", "{s}");

    // A service that ignores TERM is killed after the grace.
    w.ok(&[
        "workspace",
        "service",
        "start",
        "svc",
        "stubborn",
        // Ready once the trap is set: a TERM that came before it would end the shell at once.
        "--ready-file",
        "stubborn.ready",
        "--json",
        "--",
        "trap '' TERM; touch stubborn.ready; while true; do sleep 1; done",
    ]);
    assert!(seen_running(&w, &id, &["sleep", "1"]), "the stubborn service's sleep is not in the guest's /proc");
    let t0 = Instant::now();
    let s = w.ok(&["workspace", "service", "stop", "svc", "stubborn", "--grace-seconds", "1", "--json"]);
    assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
    assert_eq!((s["state"].as_str(), s["signal"].as_i64()), (Some("stopped"), Some(9)), "{s}");
    assert_eq!(s["stop_reason"], "stopped on request");

    // Restart on failure: it runs again after a backoff; a stop during the backoff ends it.
    w.ok(&[
        "workspace",
        "service",
        "start",
        "svc",
        "flaky",
        "--restart",
        "on-failure",
        "--json",
        "--",
        "echo run >> /tmp/runs; exit 1",
    ]);
    let mut st = w.ok(&["workspace", "service", "status", "svc", "flaky", "--json"]);
    let until = Instant::now() + Duration::from_secs(30);
    while st["restarts"].as_u64().unwrap_or(0) < 2 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(300));
        st = w.ok(&["workspace", "service", "status", "svc", "flaky", "--json"]);
    }
    assert!(st["restarts"].as_u64().unwrap() >= 2, "{st}");
    assert_eq!(st["restart"], "on-failure");
    let s = w.ok(&["workspace", "service", "stop", "svc", "flaky", "--json"]);
    assert_eq!(s["state"], "stopped", "{s}");
    // Each start wrote a line, except that the stop may have caught the last restart before
    // its `echo` ran: runs is restarts + 1, or restarts.
    let restarts = w.ok(&["workspace", "service", "status", "svc", "flaky", "--json"])["restarts"].as_u64().unwrap();
    let runs = w.sh(&id, "wc -l < /tmp/runs").trim().parse::<u64>().unwrap();
    assert!(restarts >= 2 && (runs == restarts + 1 || runs == restarts), "{runs} runs, {restarts} restarts");

    // Stopped services leave no process behind (both were seen running above); the web
    // server still runs.
    let procs = w.guest_processes(&id);
    for gone in ["yes", "sleep"] {
        assert!(!procs.iter().any(|p| p.comm == gone), "{gone} left behind: {procs:?}");
    }
    assert!(procs.iter().any(|p| p.comm == "perl"), "{procs:?}");

    // Another CLI process (each call is one) sees the same services; the summary lists them.
    let list = w.ok(&["workspace", "service", "list", &id, "--json"]);
    let states: Vec<(String, String)> = list["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s["state"].as_str().unwrap().to_string()))
        .collect();
    let want: Vec<(String, String)> = [
        ("web", "ready"),
        ("never", "failed"),
        ("early", "failed"),
        ("flood", "stopped"),
        ("stubborn", "stopped"),
        ("flaky", "stopped"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(states, want, "{list}");
    let text = stdout(&w.run(&["workspace", "service", "list", "svc"]));
    assert!(text.contains("web") && text.contains("ready"), "{text}");
    let sum = w.ok(&["workspace", "summary", "svc", "--json"]);
    let web_item = sum["services"].as_array().unwrap().iter().find(|s| s["name"] == "web").cloned().unwrap();
    assert_eq!(web_item["state"], "ready", "{sum}");
    assert_eq!(web_item["readiness"], "http http://127.0.0.1:8080/");
    let logs = w.ok(&["workspace", "service", "logs", "svc", "web", "--json"]);
    assert_eq!(logs["stdout"], "starting\n", "{logs}");

    // A reset reboots the VM: the service is lost, never running.
    w.ok(&["workspace", "reset", "svc", "--json"]);
    let web = w.ok(&["workspace", "service", "status", "svc", "web", "--json"]);
    assert_eq!(web["state"], "lost", "{web}");
    assert!(web["stop_reason"].as_str().unwrap().contains("restarted"), "{web}");
    assert!(web.get("pid").is_none(), "{web}");
    let (rc, err) = w.fails(&["workspace", "service", "logs", "svc", "web"]);
    assert_eq!(rc, 5, "{err}");
    // Stopped ones stay as they ended; the name can be started again.
    let flood = w.ok(&["workspace", "service", "status", "svc", "flood", "--json"]);
    assert_eq!(flood["state"], "stopped");
    let again = w.ok(&[
        "workspace",
        "service",
        "start",
        "svc",
        "web",
        "--ready-tcp",
        "127.0.0.1:8080",
        "--json",
        "--",
        &http_server(8080, 0),
    ]);
    assert_eq!(again["state"], "ready", "{again}");
    let stopped = w.ok(&["workspace", "service", "stop", "svc", "web", "--json"]);
    assert_eq!(stopped["state"], "stopped");
    assert!(!running(&w, &id, "perl"), "the stopped web server still runs");

    w.ok(&["workspace", "delete", &id, "--json"]);
    t.assert_clean();
}

#[test]
fn published_service_and_a_killed_vm() {
    let t = Env::new();
    let w = Ws::new(&t);
    let c = w.ok(&["workspace", "create", "debian:12", "--network-policy", "egress+published-ports", "--json"]);
    let id = c["id"].as_str().unwrap().to_string();
    let s = w.ok(&[
        "workspace",
        "service",
        "start",
        &id,
        "api",
        "--ready-http",
        "http://127.0.0.1:8000/",
        "--publish",
        "8000",
        "--json",
        "--",
        &http_server(8000, 0),
    ]);
    assert_eq!(s["state"], "ready", "{s}");
    let p = &s["published_ports"][0];
    assert_eq!((p["host"].as_str(), p["guest_port"].as_u64()), (Some("127.0.0.1"), Some(8000)), "{s}");
    let host_port = p["host_port"].as_u64().unwrap() as u16;
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", host_port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = conn.read_to_string(&mut body);
    assert!(body.contains("hello from the guest"), "{body}");

    // Kill the VM's supervisor (and with it QEMU): the service is lost, and stays lost once
    // the next call boots the VM again.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(t.runtime.path().join("vms").join(&id).join("state.json")).unwrap())
            .unwrap();
    let sup = state["supervisor_pid"].as_i64().unwrap() as i32;
    // SAFETY: kill takes no pointers; the pid is our test VM's supervisor.
    unsafe { libc::kill(sup, libc::SIGKILL) };
    let until = Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{sup}")).exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    let l = w.ok(&["workspace", "service", "list", &id, "--json"]);
    assert_eq!(l["services"][0]["state"], "lost", "{l}");
    assert!(l["services"][0]["stop_reason"].as_str().unwrap().contains("not running"), "{l}");
    // The next call boots the VM again from its disk (and must succeed).
    assert_eq!(w.sh(&id, "echo booted-again"), "booted-again\n");
    let s = w.ok(&["workspace", "service", "status", &id, "api", "--json"]);
    assert_eq!(s["state"], "lost", "{s}");
    w.ok(&["workspace", "delete", &id, "--json"]);
    t.assert_clean();
}
