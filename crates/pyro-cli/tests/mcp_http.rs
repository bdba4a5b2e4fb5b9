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
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

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

#[test]
fn sigterm_cancels_the_running_call_and_the_server_exits_0() {
    let Some(v2) = python("2.3.0") else { return };
    let d = Dirs::new();
    let mut srv = d.serve(&[]);
    let (mut hang, id) = start_hang(&v2, &srv, "term");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(srv.terminate(), Some(0), "{}", srv.log());
    let _ = hang.kill();
    let _ = hang.wait();
    let o = d.pyro().args(["workspace", "logs", &id, "--json"]).output().unwrap();
    let logs = json(&o);
    let h = logs["entries"].as_array().unwrap().iter().find(|e| e["command"] == "sleep 600").cloned();
    assert_eq!(h.and_then(|h| h["cancelled"].as_bool()), Some(true), "{logs}\n{}", srv.log());
    let o = d.pyro().args(["workspace", "delete", &id, "--json"]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    d.t.assert_clean();
}

/// A self-signed certificate for `localhost` (openssl comes with ca-certificates): (cert, key).
fn localhost_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let o = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "openssl: {}", stderr(&o));
    (cert, key)
}

/// The remote setup docs/hosts.md describes: every interface, TLS with the machine's
/// certificate, clients naming it by host name. The official client, trusting that
/// certificate, runs create -> exec -> diff -> delete; plain HTTP to the TLS port gets no MCP.
#[test]
fn https_on_every_interface_with_a_certificate() {
    let Some(v1) = python("1.23.0") else { return };
    let d = Dirs::new();
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = localhost_cert(certs.path());
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let args = ["--tls-cert", cert_s, "--tls-key", key_s, "--allowed-host", "localhost"];
    let mut srv = d.serve_at("0.0.0.0:0", &args);
    assert!(srv.url.starts_with("https://0.0.0.0:"), "{}", srv.url);
    assert!(!srv.log().contains("warning"), "TLS needs no warning: {}", srv.log());
    let port = srv.addr.rsplit(':').next().unwrap().to_string();
    srv.url = format!("https://localhost:{port}/mcp");
    let out = {
        let o = py_client(&v1, &srv, "loop", &["--tag", "tls"]).env("SSL_CERT_FILE", &cert).output().unwrap();
        let line = stdout(&o).lines().last().unwrap_or("").to_string();
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("no JSON ({e}): {}{}", stdout(&o), stderr(&o)))
    };
    assert_eq!(
        (out["stdout"].as_str(), out["deleted"].as_bool()),
        (Some("hello-tls\n"), Some(true)),
        "{out}\n{}",
        srv.log()
    );
    assert!(out["diff"].to_string().contains("note.txt"), "{out}");
    // The same client without the certificate trusted refuses the server.
    let o = py_client(&v1, &srv, "list", &[]).env_remove("SSL_CERT_FILE").output().unwrap();
    assert!(!o.status.success() && stdout(&o).contains("error"), "{}", stdout(&o));
    // Plain HTTP to the TLS port: no HTTP answer, and the server goes on serving.
    srv.addr = format!("127.0.0.1:{port}");
    let (st, _, _) = post(&srv, Some(&srv.token), "", LIST);
    assert_eq!(st, 0, "a plain HTTP request got an HTTP status");
    let again = py_client(&v1, &srv, "list", &[]).env("SSL_CERT_FILE", &cert).output().unwrap();
    assert!(again.status.success(), "{}{}", stdout(&again), stderr(&again));
    drop(srv);
    d.t.assert_clean();
}
