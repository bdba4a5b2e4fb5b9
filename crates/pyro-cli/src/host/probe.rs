//! Does a host's entry start a working server? Spawn its command, do the MCP handshake
//! (initialize, initialized, tools/list) over stdio, and report the tool count, bounded in time.

use super::Entry;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

pub fn check(e: &Entry, timeout: Duration) -> Result<usize, String> {
    let Entry::Stdio { command, args } = e else {
        return Err("not a stdio entry".into());
    };
    let mut child = Command::new(command)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| format!("cannot start {command}: {err}"))?;
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let msgs = [
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"pyro-host-doctor","version":"1"}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#,
    ];
    let mut result = Err("the server did not answer tools/list".to_string());
    for m in msgs {
        if writeln!(stdin, "{m}").is_err() {
            result = Err("the server closed its input".into());
            break;
        }
    }
    let deadline = std::time::Instant::now() + timeout;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                if v["id"] == 2 {
                    result = v["result"]["tools"].as_array().map(|t| t.len()).ok_or_else(|| {
                        format!("tools/list failed: {}", v["error"]["message"].as_str().unwrap_or("no result"))
                    });
                    break;
                }
            }
            Err(_) => {
                result = Err(format!("no tools/list answer within {} s", timeout.as_secs()));
                break;
            }
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    result
}
