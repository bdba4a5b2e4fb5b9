//! `pyro mcp serve --http` against real clients and real VMs: the official Python SDK in two
//! releases (mcp 1.23.0 speaks 2025-06-18; mcp 2.3.0 speaks 2026-07-28, and 2025-11-25 in
//! legacy mode) and the official TypeScript SDK (2025-11-25), each through its own Streamable
//! HTTP transport (`tests/clients/py_http_client.py`, `tests/clients/ts_client.mjs`). Also
//! the refusals (401, 403, 404, 405, 413, 400, 429-free floods), a slowloris client cut off
//! while others are served, eight clients at once, progress, cancellation, a client killed
//! mid-exec, SIGTERM and `kill -9` of the server.

use crate::common::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `pyro mcp serve --http 127.0.0.1:0`, its URL, token and stderr so far.
struct Server {
    child: Child,
    url: String,
    addr: String,
    token: String,
    log: Arc<Mutex<String>>,
}

/// Where one test keeps its pyro data and config.
struct Dirs {
    t: Env,
    data: tempfile::TempDir,
    config: tempfile::TempDir,
    project: tempfile::TempDir,
}

impl Dirs {
    fn new() -> Dirs {
        let project = tempfile::tempdir().unwrap();
        std::fs::write(project.path().join("README"), "over http\n").unwrap();
        Dirs { t: Env::new(), data: tempfile::tempdir().unwrap(), config: tempfile::tempdir().unwrap(), project }
    }

    /// `pyro` with this test's dirs.
    fn pyro(&self) -> Command {
        let mut c = self.t.cmd();
        c.env("PYRO_DATA_DIR", self.data.path()).env("PYRO_CONFIG_DIR", self.config.path());
        c
    }

    fn token_file(&self) -> PathBuf {
        self.config.path().join("mcp-token")
    }

    fn serve(&self, extra: &[&str]) -> Server {
        let mut child = self
            .pyro()
            .args(["mcp", "serve", "--http", "127.0.0.1:0"])
            .args(extra)
            .current_dir(self.project.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        let l2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(at) = line.find("MCP at ") {
                    let url = line[at + 7..].split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(url);
                }
                l2.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the server did not announce its URL: {}", log.lock().unwrap())
        });
        let addr = url.trim_start_matches("http://").trim_end_matches("/mcp").to_string();
        let token = std::fs::read_to_string(self.token_file()).unwrap_or_default().trim().to_string();
        Server { child, url, addr, token, log }
    }
}

impl Server {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, and how the server ended (within 40 s).
    fn terminate(&mut self) -> Option<i32> {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let until = Instant::now() + Duration::from_secs(40);
        while Instant::now() < until {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request on a fresh connection: the status, the headers (lowercase names) and
/// the body as text.
fn http(addr: &str, head: &str, body: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let req = format!("{head}\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = headers.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, headers.to_lowercase(), body.to_string())
}

const ACCEPT: &str = "Accept: application/json, text/event-stream\r\nContent-Type: application/json";
const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

fn post(srv: &Server, auth: Option<&str>, extra: &str, body: &str) -> (u16, String, String) {
    let auth = auth.map(|t| format!("\r\nAuthorization: Bearer {t}")).unwrap_or_default();
    let extra = if extra.is_empty() { String::new() } else { format!("\r\n{extra}") };
    http(&srv.addr, &format!("POST /mcp HTTP/1.1\r\n{ACCEPT}{auth}{extra}"), body.as_bytes())
}

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
fn refusals_limits_and_a_slowloris_client() {
    let d = Dirs::new();
    // Unsafe listen addresses are refused before anything is bound.
    for (args, want) in [
        (vec!["--http", "0.0.0.0:0", "--no-auth"], "--no-auth is refused"),
        (vec!["--http", "0.0.0.0:0"], "is not a loopback address"),
    ] {
        let o = d.pyro().args(["mcp", "serve"]).args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    let srv = d.serve(&[]);
    assert_eq!(srv.token.len(), 64, "a 256-bit token in hex");
    // The token file is the owner's alone; `pyro mcp token` prints the same token.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(d.token_file()).unwrap().permissions().mode() & 0o777, 0o600);
    let o = d.pyro().args(["mcp", "token"]).output().unwrap();
    assert_eq!(stdout(&o).trim(), srv.token);

    let (st, h, body) = post(&srv, None, "", LIST);
    assert_eq!((st, h.contains("www-authenticate: bearer"), body.as_str()), (401, true, ""), "{h}");
    let wrong = "0".repeat(64);
    assert_eq!(post(&srv, Some(&wrong), "", LIST).0, 401);
    let (st, _, body) = post(&srv, Some(&srv.token), "", LIST);
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("\"serverInfo\""), "{body}");
    // A token in the query string is refused, and does not authenticate.
    let q = format!("POST /mcp?access_token={} HTTP/1.1\r\n{ACCEPT}", srv.token);
    assert_eq!(http(&srv.addr, &q, LIST.as_bytes()).0, 400);
    // DNS rebinding: a foreign Origin or Host is 403, even with the token.
    assert_eq!(post(&srv, Some(&srv.token), "Origin: http://evil.example.com", LIST).0, 403);
    let evil =
        format!("POST /mcp HTTP/1.1\r\n{ACCEPT}\r\nAuthorization: Bearer {}\r\nHost: evil.example.com", srv.token);
    // (Sent by hand: `http` adds the right Host.)
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    let req = format!("{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{LIST}", evil, LIST.len());
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    // Paths, methods, sizes.
    let auth = format!("Authorization: Bearer {}", srv.token);
    assert_eq!(http(&srv.addr, &format!("GET /other HTTP/1.1\r\n{auth}"), b"").0, 404);
    let (st, h, _) = http(&srv.addr, &format!("PUT /mcp HTTP/1.1\r\n{auth}"), b"");
    assert_eq!((st, h.contains("allow: get, post, delete")), (405, true), "{h}");
    let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(9 << 20));
    let (st, _, body) = post(&srv, Some(&srv.token), "", &big);
    assert_eq!(st, 413, "{body}");
    // Malformed JSON-RPC: the JSON-RPC error, 1,000 times in a row, then a good call works.
    for i in 0..1000 {
        let (st, _, body) = post(&srv, Some(&srv.token), "", &format!("{{not json {i}"));
        assert!(st == 400 && body.contains("-32700"), "{i}: {st} {body}");
    }
    let (st, _, body) = post(&srv, Some(&srv.token), "", r#"{"jsonrpc":"2.0","id":3,"nonsense":true}"#);
    assert!(st == 400 && body.contains("-32600"), "{st} {body}");
    assert_eq!(post(&srv, Some(&srv.token), "", LIST).0, 200);

    // Slowloris: headers one byte a second are cut off (10 s), while others are served.
    let addr = srv.addr.clone();
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        let started = Instant::now();
        for b in b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter()
        {
            if s.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            if started.elapsed() > Duration::from_secs(45) {
                break;
            }
        }
        started.elapsed()
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(post(&srv, Some(&srv.token), "", LIST).0, 200, "served while a slow client trickles");
    let held = slow.join().unwrap();
    assert!(held < Duration::from_secs(30), "the slow client was not cut off ({held:?})");

    // The log: one line per request, never the token.
    let log = srv.log();
    assert!(log.contains("POST initialize 200"), "{log}");
    assert!(log.contains(" 401 "), "{log}");
    assert!(!log.contains(&srv.token), "the token reached the log");

    // A token file others can read is refused with the fix; --rotate makes a new token.
    drop(srv);
    std::fs::set_permissions(d.token_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = d.pyro().args(["mcp", "serve", "--http", "127.0.0.1:0"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
    std::fs::set_permissions(d.token_file(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let old = std::fs::read_to_string(d.token_file()).unwrap();
    let o = d.pyro().args(["mcp", "token", "--rotate", "--json"]).output().unwrap();
    let v = json(&o);
    assert_eq!(v["rotated"], true);
    assert_ne!(v["token"].as_str().unwrap(), old.trim());
    d.t.assert_clean();
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

#[test]
fn a_client_killed_mid_exec_and_the_server_stopped_or_killed() {
    let (Some(v1), Some(v2)) = (python("1.23.0"), python("2.3.0")) else { return };
    let d = Dirs::new();
    let mut srv = d.serve(&[]);
    // Another session runs a 25 s exec all along: it must not be disturbed.
    let other = py_client(&v1, &srv, "progress", &[]).stdout(Stdio::piped()).spawn().unwrap();
    let mut hang = py_client(&v2, &srv, "hang", &["--tag", "gone"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(hang.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let id = serde_json::from_str::<Value>(&first).unwrap()["id"].as_str().unwrap().to_string();
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
    let mut hang = py_client(&v2, &srv, "hang", &["--tag", "term"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(hang.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let id2 = serde_json::from_str::<Value>(&first).unwrap()["id"].as_str().unwrap().to_string();
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
    let mut hang = py_client(&v2, &srv, "hang", &["--tag", "nine"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(hang.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let id3 = serde_json::from_str::<Value>(&first).unwrap()["id"].as_str().unwrap().to_string();
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
