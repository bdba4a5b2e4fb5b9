//! `pyro mcp serve --http` against real clients and real VMs: the official Python SDK in two
//! releases (mcp 1.23.0 speaks 2025-06-18; mcp 2.3.0 speaks 2026-07-28, and 2025-11-25 in
//! legacy mode) and the official TypeScript SDK (2025-11-25), each through its own Streamable
//! HTTP transport (`tests/clients/py_http_client.py`, `tests/clients/ts_client.mjs`): eight
//! clients at once, progress, cancellation, a client killed mid-exec, SIGTERM and `kill -9`
//! of the server. The refusals (tokens, origins, sizes, floods, a slowloris client) are
//! attacks in the security suite (`security::`, boundary "MCP over HTTP").

use crate::common::http::*;
use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The venv's python for an mcp release, if `make mcp-py` made it (else skipped; a failure
/// under CI).
fn python(release: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/mcp-py/mcp-{release}/bin/python"));
    if p.exists() {
        return Some(p);
    }
    skip(&format!("the Python MCP SDK {release} is not installed (make mcp-py)"));
    None
}

fn py_client(py: &Path, srv: &Server, scenario: &str, extra: &[&str]) -> Command {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/py_http_client.py");
    let mut c = Command::new(py);
    c.arg(script).args([srv.url.as_str(), scenario, "--token", &srv.token]).args(extra);
    c
}

/// Run a Python client scenario to the end; its JSON line.
fn py(py: &Path, srv: &Server, scenario: &str, extra: &[&str]) -> Value {
    let o = py_client(py, srv, scenario, extra).output().unwrap();
    let line = stdout(&o).lines().last().unwrap_or("").to_string();
    let v: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("no JSON ({e}): {}{}", stdout(&o), stderr(&o)));
    assert!(o.status.success() && v.get("error").is_none(), "{scenario} failed: {v}\nserver log:\n{}", srv.log());
    v
}

#[test]
fn each_protocol_revision_with_a_real_client_of_it() {
    let (Some(v1), Some(v2)) = (python("1.23.0"), python("2.3.0")) else { return };
    let d = Dirs::new();
    let srv = d.serve(&[]);
    let mut seen = Vec::new();
    for (python, mode, want) in
        [(&v1, None, "2025-06-18"), (&v2, Some("legacy"), "2025-11-25"), (&v2, Some("2026-07-28"), "2026-07-28")]
    {
        let extra: Vec<&str> = mode.map(|m| vec!["--mode", m]).unwrap_or_default();
        let out = py(python, &srv, "list", &extra);
        assert_eq!(out["protocol"], want, "{out}");
        assert_eq!(out["tools"].as_array().unwrap().len(), 17, "workspace-core's tools: {out}");
        seen.push(want);
    }
    // The TypeScript SDK (2025-11-25) runs its full session in
    // typescript_client_progress_and_cancellation_over_http.
    eprintln!("revisions spoken: {seen:?}");
}

#[test]
fn eight_clients_at_once_each_with_its_own_workspace() {
    let Some(v2) = python("2.3.0") else { return };
    let d = Dirs::new();
    let srv = d.serve(&[]);
    let children: Vec<(String, std::process::Child)> = (0..8)
        .map(|i| {
            let tag = format!("c{i}");
            let c = py_client(&v2, &srv, "loop", &["--tag", &tag]).stdout(Stdio::piped()).spawn().unwrap();
            (tag, c)
        })
        .collect();
    let mut ids = Vec::new();
    for (tag, c) in children {
        let o = c.wait_with_output().unwrap();
        let line = stdout(&o).lines().last().unwrap_or("").to_string();
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{tag}: {}", stdout(&o)));
        assert!(v.get("error").is_none(), "{tag}: {v}\n{}", srv.log());
        assert_eq!(v["protocol"], "2026-07-28");
        assert_eq!(v["stdout"], format!("hello-{tag}\n"), "{v}");
        assert_eq!(v["diff"]["summary"]["added"], 1, "{v}");
        assert_eq!(v["deleted"], true);
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "eight distinct workspaces");
    let o = d.pyro().args(["workspace", "list", "--json"]).output().unwrap();
    assert_eq!(json(&o)["workspaces"].as_array().unwrap().len(), 0, "all deleted");
    d.t.assert_clean();
}

#[test]
fn typescript_client_progress_and_cancellation_over_http() {
    let sdk = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/mcp-client/node_modules");
    if !sdk.join("@modelcontextprotocol/sdk").exists() {
        return skip("the TypeScript MCP SDK is not installed (make mcp-client)");
    }
    let d = Dirs::new();
    let srv = d.serve(&[]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/ts_client.mjs");
    let copy = sdk.parent().unwrap().join("ts_client.mjs");
    std::fs::copy(&script, &copy).unwrap();
    let o = Command::new("node")
        .arg(&copy)
        .args(["session", "unused"])
        .env("PYRO_MCP_URL", &srv.url)
        .env("PYRO_MCP_TOKEN", &srv.token)
        .env("PYRO_GUEST_PS", GUEST_PS)
        .output()
        .unwrap();
    assert!(o.status.success(), "client failed: {}\n{}\n{}", stderr(&o), stdout(&o), srv.log());
    let out: Value = serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    eprintln!("client: {out}");
    assert_eq!(out["protocol"], "2025-11-25");
    let long = &out["long"];
    assert_eq!(long["exit_code"], 0, "{long}");
    assert!(long["progress_count"].as_u64().unwrap() >= 3, "progress during a 30 s exec: {long}");
    let c = &out["cancel"];
    assert_eq!(c["running_before_abort"], 1, "{c}");
    assert!(c["gone_ms"].as_u64().is_some(), "sleep 600 still running after the cancel: {c}");
    let h = &c["history"][0];
    assert_eq!((h["cancelled"].as_bool(), h["exit_code"].as_i64()), (Some(true), Some(137)), "{c}");
    assert_eq!(c["after"], "still usable\n");
    d.t.assert_clean();
}

/// A Python client that creates a workspace, says its id, and runs `sleep 600` in it.
fn start_hang(v2: &Path, srv: &Server, tag: &str) -> (std::process::Child, String) {
    let mut c =
        py_client(v2, srv, "hang", &["--tag", tag]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(c.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let id =
        serde_json::from_str::<Value>(&first).unwrap_or_else(|_| panic!("{first}"))["id"].as_str().unwrap().to_string();
    (c, id)
}

#[test]
fn a_client_killed_mid_exec_and_the_server_stopped_or_killed() {
    let (Some(v1), Some(v2)) = (python("1.23.0"), python("2.3.0")) else { return };
    let d = Dirs::new();
    let mut srv = d.serve(&[]);
    // Another session runs a 25 s exec all along: it must not be disturbed.
    let other = py_client(&v1, &srv, "progress", &[]).stdout(Stdio::piped()).spawn().unwrap();
    let (mut hang, id) = start_hang(&v2, &srv, "gone");
    let sleeping = || {
        let o = d.pyro().args(["workspace", "exec", &id, "--", GUEST_PS]).output().unwrap();
        parse_guest_ps(&stdout(&o)).iter().filter(|p| p.argv == ["sleep", "600"]).count()
    };
    let until = Instant::now() + Duration::from_secs(60);
    while sleeping() == 0 {
        assert!(Instant::now() < until, "sleep 600 never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    hang.kill().unwrap();
    let _ = hang.wait();
    let killed = Instant::now();
    while sleeping() > 0 {
        assert!(killed.elapsed() < Duration::from_secs(30), "the disconnected client's command still runs");
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = d.pyro().args(["workspace", "logs", &id, "--json"]).output().unwrap();
    let logs = json(&o);
    let h = logs["entries"].as_array().unwrap().iter().find(|e| e["command"] == "sleep 600").cloned().unwrap();
    assert_eq!((h["cancelled"].as_bool(), h["exit_code"].as_i64()), (Some(true), Some(137)), "{h}");
    let o = other.wait_with_output().unwrap();
    let v: Value = serde_json::from_str(stdout(&o).lines().last().unwrap_or("")).unwrap();
    assert_eq!(v["exit_code"], 0, "the other session's exec: {v}");
    assert!(srv.log().contains("(client gone)"), "{}", srv.log());

    // SIGTERM during a call: it is cancelled and recorded, the server exits 0.
    let (mut hang, id2) = start_hang(&v2, &srv, "term");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(srv.terminate(), Some(0), "{}", srv.log());
    let _ = hang.kill();
    let _ = hang.wait();
    let o = d.pyro().args(["workspace", "logs", &id2, "--json"]).output().unwrap();
    let logs = json(&o);
    let h = logs["entries"].as_array().unwrap().iter().find(|e| e["command"] == "sleep 600").cloned();
    assert_eq!(h.and_then(|h| h["cancelled"].as_bool()), Some(true), "{logs}\n{}", srv.log());

    // kill -9 during a call: the next server finds the workspace consistent and usable.
    let mut srv = d.serve(&[]);
    let (mut hang, id3) = start_hang(&v2, &srv, "nine");
    std::thread::sleep(Duration::from_secs(3));
    srv.child.kill().unwrap();
    let _ = srv.child.wait();
    let _ = hang.kill();
    let _ = hang.wait();
    let srv = d.serve(&[]);
    let o = d.pyro().args(["workspace", "exec", &id3, "--", "echo", "alive"]).output().unwrap();
    assert_eq!(stdout(&o), "alive\n", "{}", stderr(&o));
    let out = py(&v2, &srv, "list", &[]);
    assert_eq!(out["tools"].as_array().unwrap().len(), 17);
    for id in [&id, &id2, &id3] {
        let o = d.pyro().args(["workspace", "delete", id, "--json"]).output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    drop(srv);
    d.t.assert_clean();
}
