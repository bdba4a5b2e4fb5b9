//! `workspace fork` against real VMs: a running workspace with a service that serves on a
//! published port forks into a second workspace whose service goes on serving (its own host
//! port), each with its own files, hostname and machine id afterwards, the history and
//! baseline carried over; a stopped one forks from its saved memory; bad calls change nothing.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Ask the guest server behind a published host port for its page.
fn get(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the published port");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET\n").unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).unwrap();
    got
}

fn published(svc: &serde_json::Value) -> u16 {
    svc["published_ports"][0]["host_port"].as_u64().expect("a published port") as u16
}

#[test]
fn fork_of_a_serving_workspace_serves_twice_with_independent_files() {
    let t = Env::new();
    let w = Ws::new(&t);
    let seed = tempfile::tempdir().unwrap();
    std::fs::write(seed.path().join("page.txt"), "original\n").unwrap();
    let seed_path = seed.path().to_str().unwrap();
    let c = w.ok(&[
        "workspace",
        "create",
        "debian:12",
        "--name",
        "src",
        "--seed-path",
        seed_path,
        "--network-policy",
        "egress+published-ports",
        "--json",
    ]);
    let src = c["id"].as_str().unwrap().to_string();
    // A server that answers with the page as it is on its workspace's disk now.
    let server = "perl -MIO::Socket::INET -e 'my $s = IO::Socket::INET->new(LocalPort => 8000, Listen => 5, \
                  ReuseAddr => 1) or die; while (my $c = $s->accept) { <$c>; open(my $f, \"<\", \"/workspace/page.txt\"); \
                  my @l = <$f>; print $c @l; close $c }'";
    let svc = w.ok(&[
        "workspace",
        "service",
        "start",
        "src",
        "web",
        "--ready-tcp",
        "127.0.0.1:8000",
        "--publish",
        "8000",
        "--json",
        "--",
        server,
    ]);
    let src_port = published(&svc);
    assert_eq!(get(src_port), "original\n");
    w.sh(&src, "echo 'from src' > note.txt");

    // Bad calls first: nothing is made.
    let before = w.ok(&["workspace", "list", "--json"])["count"].as_u64().unwrap();
    let (_, err) = w.fails(&["workspace", "fork", "src", "--name", "src"]);
    assert!(err.contains("already exists"), "{err}");
    let (_, err) = w.fails(&["workspace", "fork", "src", "--name", "bad name"]);
    assert!(err.contains("invalid workspace name"), "{err}");
    let (_, err) = w.fails(&["workspace", "fork", "nope"]);
    assert!(err.starts_with("error: "), "{err}");
    assert_eq!(w.ok(&["workspace", "list", "--json"])["count"].as_u64().unwrap(), before);

    // The fork: memory carried, the service goes on and serves on its own host port.
    let commands = w.ok(&["workspace", "status", "src", "--json"])["command_count"].as_u64().unwrap();
    let f = w.ok(&["workspace", "fork", "src", "--name", "copy", "--label", "try=b", "--json"]);
    let fork = f["id"].as_str().unwrap().to_string();
    assert_ne!(fork, src);
    assert_eq!(f["started_from"]["from"], "fork", "{f}");
    assert_eq!(f["forked_from"]["workspace_id"], src.as_str(), "{f}");
    assert_eq!(f["forked_from"]["memory"], true, "{f}");
    assert_eq!(f["labels"]["try"], "b", "{f}");
    assert_eq!(f["command_count"], commands, "history carried: {f}");
    let fsvc = w.ok(&["workspace", "service", "status", "copy", "web", "--json"]);
    assert_eq!(fsvc["state"], "ready", "{fsvc}");
    let fork_port = published(&fsvc);
    assert_ne!(fork_port, src_port, "{fsvc}");
    assert_eq!(get(fork_port), "original\n");
    assert_eq!(get(src_port), "original\n", "the source serves on");
    // The same process in both (its pid survived), each guest its own afterwards.
    assert_eq!(fsvc["pid"], svc["pid"]);
    let id_of = |ws: &str| w.sh(ws, "hostname; cat /etc/machine-id; cat /proc/sys/kernel/random/uuid");
    let (a, b) = (id_of(&src), id_of(&fork));
    assert!(b.starts_with(&format!("pyro-{fork}\n")), "{b}");
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    assert_ne!(a[1], b[1], "machine ids differ");
    assert_ne!(a[2], b[2], "random uuids differ");

    // Independent files from here on.
    w.sh(&fork, "echo 'changed in the fork' > page.txt; rm note.txt");
    w.sh(&src, "echo 'changed in src' > page.txt");
    assert_eq!(get(fork_port), "changed in the fork\n");
    assert_eq!(get(src_port), "changed in src\n");
    assert_eq!(w.sh(&src, "cat note.txt"), "from src\n");
    // Diff against the shared baseline, per workspace.
    let d = w.ok(&["workspace", "diff", "copy", "--json"]);
    let text = d.to_string();
    assert!(text.contains("page.txt") && !text.contains("note.txt"), "{d}");
    let s = w.ok(&["workspace", "summary", "copy", "--json"]);
    assert_eq!(s["workspace"]["forked_from"]["workspace_id"], src.as_str(), "{s}");
    let human = w.run(&["workspace", "summary", "copy"]);
    assert!(stdout(&human).contains(&format!("forked from {src} \"src\"")), "{}", stdout(&human));

    // A reset of the fork goes back to the baseline they share; the source is untouched.
    w.ok(&["workspace", "reset", "copy", "--json"]);
    assert_eq!(w.sh(&fork, "cat page.txt; ls"), "original\npage.txt\n");
    assert_eq!(w.sh(&src, "cat page.txt"), "changed in src\n");

    // A stopped workspace forks from its saved memory; deleting the source leaves the fork
    // whole (its layers are its own links).
    w.sh(&src, "nohup sleep 100000 >/dev/null 2>&1 & echo $! > /workspace/pid");
    let pid = w.sh(&src, "cat /workspace/pid");
    w.ok(&["workspace", "stop", "src", "--json"]);
    let f2 = w.ok(&["workspace", "fork", "src", "--json"]);
    let fork2 = f2["id"].as_str().unwrap().to_string();
    assert_eq!(f2["started_from"]["from"], "fork", "{f2}");
    assert_eq!(
        w.sh(&fork2, "kill -0 $(cat /workspace/pid) && echo alive; cat /workspace/pid"),
        format!("alive\n{pid}")
    );
    assert_eq!(w.ok(&["workspace", "status", "src", "--json"])["state"], "stopped");
    w.ok(&["workspace", "delete", "src", "--json"]);
    assert_eq!(w.sh(&fork2, "cat page.txt"), "changed in src\n");
    w.ok(&["workspace", "stop", &fork2, "--json"]);
    let st = w.ok(&["workspace", "start", &fork2, "--json"]);
    assert_eq!(st["resumed"], true, "{st}");
    assert_eq!(w.sh(&fork2, "cat note.txt"), "from src\n");
    w.ok(&["workspace", "delete", &fork2, "--json"]);
    w.ok(&["workspace", "delete", "copy", "--json"]);
    t.assert_clean();
}
