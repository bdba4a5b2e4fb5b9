//! MCP server figures for `make bench`: for each profile, a fresh `pyro mcp serve` (the way a
//! chat host starts it) driven over its stdio by hand-written JSON-RPC; the time from spawn
//! through `initialize` to the `tools/list` answer, and the size of that answer. Then the size
//! of a typical `workspace_exec` result (100 lines of output) as a model receives it, in the
//! layout before 4.3 (output in the text and in the structured content) and now (a brief text).

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

const SPAWNS: usize = 10;

/// `pyro mcp serve --profile PROFILE` on pipes, as a chat host starts it: the child, its
/// stdin and its stdout.
pub fn spawn_stdio(
    bin: &std::path::Path,
    profile: &str,
) -> (std::process::Child, std::process::ChildStdin, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(bin)
        .args(["mcp", "serve", "--profile", profile])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pyro mcp serve");
    let stdin = child.stdin.take().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, stdin, out)
}

/// One session: (milliseconds from spawn to the tools/list answer, bytes of its result).
fn once(bin: &std::path::Path, profile: &str) -> (f64, usize) {
    let t = Instant::now();
    let (mut child, mut stdin, mut out) = spawn_stdio(bin, profile);
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

/// A tool result as the server sends it (rmcp's `CallToolResult` serialized): the structured
/// content plus one text block.
fn result_bytes(structured: &Value, text: &str) -> usize {
    let r = json!({"content": [{"type": "text", "text": text}], "structuredContent": structured, "isError": false});
    serde_json::to_vec(&r).unwrap().len()
}

fn exec_result_size(pyro: &pyro_mcp::Pyro) {
    use pyro_mcp::Render;
    let mut ws = pyro.workspaces().expect("workspaces");
    let o = pyro_mcp::CreateOptions { environment: "debian:12".into(), ..Default::default() };
    let w = ws.create(&o, &|_| {}).expect("create");
    let cmd = pyro_mcp::Command::Shell("seq -f 'line %g of the output' 1 100".into());
    let cap = Some(pyro_mcp::mcp::tools::EXEC_OUTPUT_BYTES);
    let r = ws.exec(&w.id, cmd, None, 30, vec![], cap).expect("exec");
    ws.delete(&w.id).expect("delete");
    let structured = serde_json::to_value(&r).unwrap();
    let model = serde_json::to_vec(&structured).unwrap().len();
    let (before, after) = (result_bytes(&structured, &r.text()), result_bytes(&structured, &r.brief()));
    println!("{:<42} {:>8} B", "mcp exec result, 100 lines: before (4.2)", before);
    println!(
        "{:<42} {:>8} B  ({:.0}% less)",
        "mcp exec result, 100 lines: now",
        after,
        100.0 - 100.0 * after as f64 / before as f64
    );
    println!("{:<42} {:>8} B  (what Claude Code and Codex pass on)", "  of which structured content", model);
}

pub fn run(pyro: &pyro_mcp::Pyro, report: &dyn Fn(&str, &[f64], &str) -> f64) {
    exec_result_size(pyro);
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
        let target = if profile == "workspace-core" { "  (budget 6,144 B)" } else { "" };
        println!("{:<42} {:>8} B{target}", format!("mcp {profile}: tools/list size"), size);
    }
}
