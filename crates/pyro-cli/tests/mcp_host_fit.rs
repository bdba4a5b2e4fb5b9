//! `pyro mcp serve` as chat hosts use it, driven by the official TypeScript MCP SDK client
//! (`tests/clients/ts_client.mjs`; the SDK comes from npm through `make mcp-client`): progress
//! during a 30 s exec, a cancelled `sleep 600` gone from the guest and recorded as cancelled,
//! the size of a typical exec result as a model receives it, tool titles and `_meta`, and
//! `initialize` answered at once while a `--repo-url` clone hangs.

use crate::common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The SDK's node_modules, if `make mcp-client` installed it. Otherwise the test is skipped
/// (`common::skip`: a failure under CI).
fn sdk() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/mcp-client/node_modules");
    if p.join("@modelcontextprotocol/sdk").exists() && Command::new("node").arg("--version").output().is_ok() {
        return Some(p);
    }
    skip("node or the TypeScript MCP SDK is not installed (make mcp-client)");
    None
}

/// Run the client script; its one line of JSON.
fn client(sdk: &Path, t: &Env, data: &Path, cwd: &Path, scenario: &str, serve: &[&str]) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/clients/ts_client.mjs");
    // ESM resolves bare imports from the script's own directory upwards, not NODE_PATH: run a
    // copy placed next to the SDK's node_modules.
    let copy = sdk.parent().unwrap().join("ts_client.mjs");
    std::fs::copy(&script, &copy).unwrap();
    let o = Command::new("node")
        .arg(&copy)
        .arg(scenario)
        .arg(env!("CARGO_BIN_EXE_pyro"))
        .args(serve)
        .current_dir(cwd)
        .env("PYRO_RUNTIME_DIR", t.runtime.path())
        .env("PYRO_DATA_DIR", data)
        .env("PYRO_GUEST_PS", GUEST_PS)
        .env_remove("PYRO_ACCEL")
        .output()
        .unwrap();
    assert!(o.status.success(), "client failed: {}\n{}", stderr(&o), stdout(&o));
    let line = stdout(&o).lines().last().unwrap_or("").to_string();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("client printed no JSON ({e}): {}", stdout(&o)))
}

fn project() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("README"), "host fit\n").unwrap();
    let git = |args: &[&str]| {
        let ok = Command::new("git").arg("-C").arg(d.path()).args(args).output().unwrap().status.success();
        assert!(ok, "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"]);
    d
}

#[test]
fn progress_cancellation_and_result_size_with_the_typescript_client() {
    let Some(sdk) = sdk() else { return };
    let t = Env::new();
    let data = tempfile::tempdir().unwrap();
    let repo = project();
    let out = client(&sdk, &t, data.path(), repo.path(), "session", &[]);
    eprintln!("client: {out}");
    assert!(out["initialize_ms"].as_u64().unwrap() < 5000, "{out}");
    assert!(out["instructions_chars"].as_u64().unwrap() < 2048, "{out}");

    // The 30 s exec: progress at least every 10 s, naming the last line of output.
    let long = &out["long"];
    assert_eq!(long["exit_code"], 0, "{long}");
    assert!(long["progress_count"].as_u64().unwrap() >= 3, "{long}");
    assert!(long["max_gap_ms"].as_u64().unwrap() <= 10_000, "{long}");
    let msgs: Vec<&str> = long["messages"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(msgs.iter().any(|m| m.contains("last line: tick")), "{msgs:?}");
    // The text is a brief: the output travels once, in the structured content.
    let text = long["text"].as_str().unwrap();
    assert!(!text.contains("tick 17"), "{text}");
    assert!(text.contains("stdout: 30 lines"), "{text}");

    // A typical result (100 lines of output) as the model receives it.
    let typical = &out["typical"];
    eprintln!("typical exec result: {typical}");
    assert!(typical["text_bytes"].as_u64().unwrap() < 300, "{typical}");

    // The cancelled `sleep 600`: gone from the guest within 2 s, recorded as cancelled, and
    // the workspace goes on working.
    // The check that it is gone (guest /proc through `common::GUEST_PS`) saw it running first.
    let c = &out["cancel"];
    assert_eq!(c["running_before_abort"], 1, "the check did not see the running sleep 600: {c}");
    assert!(c["client_saw"].as_str().unwrap().starts_with("rejected"), "{c}");
    let gone = c["gone_ms"].as_u64().unwrap_or_else(|| panic!("sleep 600 still running: {c}"));
    assert!(gone <= 2000, "gone after {gone} ms: {c}");
    let h = &c["history"][0];
    assert_eq!((h["cancelled"].as_bool(), h["exit_code"].as_i64()), (Some(true), Some(137)), "{c}");
    assert_eq!(c["after"], "still usable\n");

    // Every tool has a title; the large-result tools declare their size to Claude Code.
    for tool in out["tools"].as_array().unwrap() {
        assert!(tool["title"].as_str().is_some_and(|t| !t.is_empty()), "{tool}");
    }
    let exec = out["tools"].as_array().unwrap().iter().find(|t| t["name"] == "workspace_exec").unwrap();
    assert_eq!(exec["meta"]["anthropic/maxResultSizeChars"], 200_000, "{exec}");
    t.assert_clean();
}

/// An HTTP "server" that accepts connections and never answers: a clone from it hangs.
fn black_hole() -> (String, std::thread::JoinHandle<()>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/repo.git", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        l.set_nonblocking(true).unwrap();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < until {
            if let Ok((mut s, _)) = l.accept() {
                let mut b = [0u8; 1024];
                let _ = s.set_read_timeout(Some(std::time::Duration::from_millis(100)));
                let _ = s.read(&mut b);
                let _ = s.flush();
                held.push(s);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    });
    (url, h)
}

#[test]
fn initialize_answers_at_once_while_a_repo_url_clone_hangs() {
    let Some(sdk) = sdk() else { return };
    let t = Env::new();
    let data = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let (url, _server) = black_hole();
    let out = client(&sdk, &t, data.path(), cwd.path(), "slow-clone", &["--repo-url", &url]);
    eprintln!("client: {out}");
    assert!(out["initialize_ms"].as_u64().unwrap() < 1000, "{out}");
    // The create waited for the clone and was cancelled: nothing was made.
    let c = &out["create"];
    assert!(c["client_saw"].as_str().unwrap().starts_with("rejected"), "{c}");
    assert_eq!(out["list"]["count"], 0, "{out}");
    t.assert_clean();
}
