//! A `pyro mcp serve --http` for tests (its URL, token and log) and a raw HTTP/1.1 client, shared
//! by `mcp_http` (real MCP clients) and `security` (hostile requests).

use super::*;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `pyro mcp serve --http 127.0.0.1:0`, its URL, token and stderr so far.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub addr: String,
    pub token: String,
    pub log: Arc<Mutex<String>>,
}

/// Where one test keeps its pyro data and config.
pub struct Dirs {
    pub t: Env,
    pub data: tempfile::TempDir,
    pub config: tempfile::TempDir,
    pub project: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Dirs {
        let project = tempfile::tempdir().unwrap();
        std::fs::write(project.path().join("README"), "over http\n").unwrap();
        Dirs { t: Env::new(), data: tempfile::tempdir().unwrap(), config: tempfile::tempdir().unwrap(), project }
    }

    /// `pyro` with this test's dirs.
    pub fn pyro(&self) -> Command {
        let mut c = self.t.cmd();
        c.env("PYRO_DATA_DIR", self.data.path()).env("PYRO_CONFIG_DIR", self.config.path());
        c
    }

    pub fn token_file(&self) -> PathBuf {
        self.config.path().join("mcp-token")
    }

    /// `pyro mcp serve --http 127.0.0.1:0 EXTRA...`, once it says where it serves.
    pub fn serve(&self, extra: &[&str]) -> Server {
        self.serve_at("127.0.0.1:0", extra)
    }

    /// The server on `addr` (`0.0.0.0:0` needs TLS or `--insecure-http` in `extra`).
    pub fn serve_at(&self, addr: &str, extra: &[&str]) -> Server {
        let mut child = self
            .pyro()
            .args(["mcp", "serve", "--http", addr])
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
        let addr =
            url.trim_start_matches("https://").trim_start_matches("http://").trim_end_matches("/mcp").to_string();
        let token = std::fs::read_to_string(self.token_file()).unwrap_or_default().trim().to_string();
        Server { child, url, addr, token, log }
    }
}

impl Server {
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGTERM, and how the server ended (within 40 s).
    pub fn terminate(&mut self) -> Option<i32> {
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
pub fn http(addr: &str, head: &str, body: &[u8]) -> (u16, String, String) {
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

pub const ACCEPT: &str = "Accept: application/json, text/event-stream\r\nContent-Type: application/json";
pub const LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;

pub fn post(srv: &Server, auth: Option<&str>, extra: &str, body: &str) -> (u16, String, String) {
    let auth = auth.map(|t| format!("\r\nAuthorization: Bearer {t}")).unwrap_or_default();
    let extra = if extra.is_empty() { String::new() } else { format!("\r\n{extra}") };
    http(&srv.addr, &format!("POST /mcp HTTP/1.1\r\n{ACCEPT}{auth}{extra}"), body.as_bytes())
}

/// The venv's python for an mcp release, if `make mcp-py` made it (else skipped; a failure
/// under CI).
pub fn python(release: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("../../target/mcp-py/mcp-{release}/bin/python"));
    if p.exists() {
        return Some(p);
    }
    skip(&format!("the Python MCP SDK {release} is not installed (make mcp-py)"));
    None
}

pub fn py_client(py: &Path, srv: &Server, scenario: &str, extra: &[&str]) -> Command {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/py_http_client.py");
    let mut c = Command::new(py);
    c.arg(script).args([srv.url.as_str(), scenario, "--token", &srv.token]).args(extra);
    c
}

/// Run a Python client scenario to the end; its JSON line.
pub fn py(py: &Path, srv: &Server, scenario: &str, extra: &[&str]) -> Value {
    let o = py_client(py, srv, scenario, extra).output().unwrap();
    let line = stdout(&o).lines().last().unwrap_or("").to_string();
    let v: Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("no JSON ({e}): {}{}", stdout(&o), stderr(&o)));
    assert!(o.status.success() && v.get("error").is_none(), "{scenario} failed: {v}\nserver log:\n{}", srv.log());
    v
}

/// A Python client that creates a workspace, says its id, and runs `sleep 600` in it.
pub fn start_hang(v2: &Path, srv: &Server, tag: &str) -> (std::process::Child, String) {
    let mut c =
        py_client(v2, srv, "hang", &["--tag", tag]).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let mut first = String::new();
    BufReader::new(c.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let id =
        serde_json::from_str::<Value>(&first).unwrap_or_else(|_| panic!("{first}"))["id"].as_str().unwrap().to_string();
    (c, id)
}
