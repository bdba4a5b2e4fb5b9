//! MCP server figures for `make bench`: for each profile, a fresh `pyro mcp serve` (the way a
//! chat host starts it) driven over its stdio by hand-written JSON-RPC; the time from spawn
//! through `initialize` to the `tools/list` answer, and the size of that answer.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

const SPAWNS: usize = 10;

/// One session: (milliseconds from spawn to the tools/list answer, bytes of its result).
fn once(bin: &std::path::Path, profile: &str) -> (f64, usize) {
    let t = Instant::now();
    let mut child = Command::new(bin)
        .args(["mcp", "serve", "--profile", profile])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pyro mcp serve");
    let mut stdin = child.stdin.take().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut send = |v: Value| writeln!(stdin, "{v}").expect("write to server");
    let mut answer = |id: u64| -> Value {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(out.read_line(&mut line).expect("read from server") > 0, "server closed");
            let mut v: Value = serde_json::from_str(&line).expect("JSON-RPC line");
            if v["id"] == id {
                assert!(v.get("result").is_some(), "{v}");
                return v["result"].take();
            }
        }
    };
    send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "pyro-bench", "version": "0"}}}));
    answer(1);
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    let tools = answer(2);
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    drop(stdin);
    let _ = child.wait();
    (ms, serde_json::to_vec(&tools).unwrap().len())
}

pub fn run(report: &dyn Fn(&str, &[f64], &str) -> f64) {
    let bin = pyro_mcp::internal::pyro_binary().expect("pyro binary");
    for profile in ["vm-run", "workspace-core", "workspace-full"] {
        let mut size = 0;
        let v: Vec<f64> = (0..SPAWNS)
            .map(|_| {
                let (ms, bytes) = once(&bin, profile);
                size = bytes;
                ms
            })
            .collect();
        let m = report(&format!("mcp {profile}: spawn -> tools/list"), &v, "ms");
        println!("{:<42} {:>15}  (target < 50 ms)", "", if m < 50.0 { "met" } else { "missed" });
        let target = if profile == "workspace-core" { "  (target < 6 KB)" } else { "" };
        println!("{:<42} {:>8} B{target}", format!("mcp {profile}: tools/list size"), size);
    }
}
