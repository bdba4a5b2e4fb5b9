//! MCP over HTTP figures for `make bench`, next to stdio: one `pyro mcp serve --http
//! 127.0.0.1:0` (a private token file), the round trip of `tools/list` and of
//! `workspace_exec true` in one session, the same two over one stdio session, and `tools/list`
//! requests per second with 8 clients at once (each its own session).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../host/probe_http.rs"]
#[allow(dead_code)]
mod probe_http;

const ROUNDS: usize = 30;

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

fn list_body(id: u64) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}).to_string()
}

fn call_body(id: u64, tool: &str, args: Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}}).to_string()
}

/// Over stdio: (tools/list ms per round, exec true ms per round).
fn stdio(bin: &std::path::Path) -> (Vec<f64>, Vec<f64>) {
    let (mut child, mut stdin, mut out) = super::mcp_bench::spawn_stdio(bin, "workspace-core");
    // A request and its answer (id 0: a notification, no answer).
    let mut rpc = |body: String, id: u64| -> Value {
        writeln!(stdin, "{body}").expect("write to server");
        if id == 0 {
            return Value::Null;
        }
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).expect("read") > 0, "server closed");
            let v: Value = serde_json::from_str(&line).expect("JSON-RPC line");
            if v["id"] == id {
                return v;
            }
        }
    };
    rpc(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "pyro-bench", "version": "0"}}})
        .to_string(),
        1,
    );
    rpc(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(), 0);
    let mut id = 1;
    let mut next = || {
        id += 1;
        id
    };
    let lists: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            let i = next();
            rpc(list_body(i), i);
            ms(t)
        })
        .collect();
    let i = next();
    let created = rpc(call_body(i, "workspace_create", json!({})), i);
    let ws = created["result"]["structuredContent"]["id"].as_str().expect("workspace id").to_string();
    let execs: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            let i = next();
            rpc(call_body(i, "workspace_exec", json!({"workspace_id": ws, "command": "true"})), i);
            ms(t)
        })
        .collect();
    let i = next();
    rpc(call_body(i, "workspace_delete", json!({"workspace_id": ws})), i);
    drop(stdin);
    let _ = child.wait();
    (lists, execs)
}

/// Over HTTP against `url`: (tools/list ms, exec true ms), then requests per second.
fn http(url: &str, token: &str) -> (Vec<f64>, Vec<f64>, f64) {
    let timeout = Duration::from_secs(120);
    let mut c = probe_http::client(url, Some(token), timeout);
    c.initialize().expect("initialize over HTTP");
    let lists: Vec<f64> = (0..ROUNDS)
        .map(|i| {
            let t = Instant::now();
            c.call(&list_body(10 + i as u64), 10 + i as u64).expect("tools/list");
            ms(t)
        })
        .collect();
    let (_, created) = c.call(&call_body(100, "workspace_create", json!({})), 100).expect("create");
    let ws = created["result"]["structuredContent"]["id"].as_str().expect("workspace id").to_string();
    let execs: Vec<f64> = (0..ROUNDS)
        .map(|i| {
            let id = 200 + i as u64;
            let t = Instant::now();
            c.call(&call_body(id, "workspace_exec", json!({"workspace_id": ws, "command": "true"})), id).expect("exec");
            ms(t)
        })
        .collect();
    c.call(&call_body(300, "workspace_delete", json!({"workspace_id": ws})), 300).expect("delete");
    c.close();
    // 8 clients, each its own session, tools/list for 5 s.
    let until = Instant::now() + Duration::from_secs(5);
    let done: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut c = probe_http::client(url, Some(token), timeout);
                    c.initialize().expect("initialize");
                    let mut n = 0;
                    while Instant::now() < until {
                        c.call(&list_body(n as u64 + 2), n as u64 + 2).expect("tools/list");
                        n += 1;
                    }
                    c.close();
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    (lists, execs, done as f64 / 5.0)
}

pub fn run(report: &dyn Fn(&str, &[f64], &str) -> f64) {
    let bin = pyro_mcp::internal::pyro_binary().expect("pyro binary");
    let config = std::env::temp_dir().join(format!("pyro-bench-http-{}", std::process::id()));
    let mut server = Command::new(&bin)
        .args(["mcp", "serve", "--http", "127.0.0.1:0"])
        .env("PYRO_CONFIG_DIR", &config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pyro mcp serve --http");
    let mut err = BufReader::new(server.stderr.take().unwrap());
    let mut url = None;
    let mut line = String::new();
    while url.is_none() && err.read_line(&mut line).unwrap_or(0) > 0 {
        url = line.split("MCP at ").nth(1).and_then(|r| r.split_whitespace().next()).map(String::from);
        line.clear();
    }
    // Keep reading its log so the pipe never fills.
    std::thread::spawn(move || for _ in err.lines() {});
    let url = url.expect("the server's URL");
    let token = std::fs::read_to_string(config.join("mcp-token")).expect("token").trim().to_string();
    let (s_list, s_exec) = stdio(&bin);
    let (h_list, h_exec, rps) = http(&url, &token);
    report("mcp stdio: tools/list round trip", &s_list, "ms");
    report("mcp http: tools/list round trip", &h_list, "ms");
    report("mcp stdio: workspace_exec true", &s_exec, "ms");
    report("mcp http: workspace_exec true", &h_exec, "ms");
    println!("{:<42} {:>8.0} /s", "mcp http: tools/list, 8 clients", rps);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&config);
}
