//! `make dist-check`'s checks of installed artifacts (scripts/dist-check.sh installs them and
//! runs this ignored test with `PYRO_DIST_TARGETS`, one `LABEL=COMMAND` per line: an installed
//! `pyro` by its path, or a launcher such as `uvx --from WHEEL pyro`). Never the `pyro` of this
//! build, never one on PATH.
//!
//! For each: `--version` is the pinned version, `doctor --json` parses and says ok, `mcp serve`
//! answers `initialize` (serverInfo version) and `tools/list` with the pinned tools of each
//! profile, `run debian:12 -- true` exits 0, `env list` shows the catalog, and for a path, the
//! guest agent is installed beside it. Prints one line per check and
//! `checks: N passed, M failed`, and fails unless all passed. `cargo test` lists it as ignored.

use crate::common::contract::Pin;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const CATALOG: &[&str] = &["debian:12", "debian:12-base", "debian:12-build"];

struct Target {
    label: String,
    argv: Vec<String>,
}

impl Target {
    /// The command with pyro's own steering variables removed: an installed pyro must find
    /// its guest agent and supervisor by itself. Private runtime and data dirs; the user's
    /// cache (kernel, environments) is shared, so nothing is rebuilt.
    fn cmd(&self, dirs: &Dirs, args: &[&str]) -> Command {
        let mut c = Command::new(&self.argv[0]);
        c.args(&self.argv[1..])
            .args(args)
            .env_remove("PYRO_BIN")
            .env_remove("PYRO_GUEST_BIN")
            .env("PYRO_RUNTIME_DIR", dirs.runtime.path())
            .env("PYRO_DATA_DIR", dirs.data.path())
            .current_dir(dirs.cwd.path())
            .stdin(Stdio::null());
        c
    }
}

struct Dirs {
    runtime: tempfile::TempDir,
    data: tempfile::TempDir,
    cwd: tempfile::TempDir,
}

fn output(mut c: Command) -> Result<std::process::Output, String> {
    c.output().map_err(|e| format!("cannot run: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

fn last_line(b: &[u8]) -> String {
    text(b).lines().last().unwrap_or("").to_string()
}

/// initialize, then tools/list, over the server's stdio (newline-delimited JSON-RPC).
fn mcp_tools(t: &Target, dirs: &Dirs, profile: &str, version: &str) -> Result<Vec<String>, String> {
    let mut child = t
        .cmd(dirs, &["mcp", "serve", "--profile", profile])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start: {e}"))?;
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let answer = |id: u64| -> Result<Value, String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx.recv_timeout(left).map_err(|_| format!("no answer to request {id}"))?;
            let v: Value = serde_json::from_str(&line).map_err(|e| format!("not JSON ({e}): {line}"))?;
            if v["id"] == id {
                return match v.get("error") {
                    Some(e) => Err(format!("error: {e}")),
                    None => Ok(v["result"].clone()),
                };
            }
        }
    };
    let mut send = |v: Value| writeln!(stdin, "{v}").map_err(|e| format!("writing to the server: {e}"));
    let result = (|| {
        send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "pyro-dist-check", "version": version}}}))?;
        let init = answer(1)?;
        let server = &init["serverInfo"];
        if server["name"] != "pyro-mcp" || server["version"] != version {
            return Err(format!("serverInfo is {server}, expected pyro-mcp {version}"));
        }
        send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))?;
        send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}))?;
        let list = answer(2)?;
        let tools = list["tools"].as_array().ok_or("tools/list has no tools")?;
        Ok(tools.iter().map(|t| t["name"].as_str().unwrap_or("?").to_string()).collect())
    })();
    drop(stdin);
    // The server exits once its stdin closes.
    let end = Instant::now() + Duration::from_secs(10);
    while child.try_wait().ok().flatten().is_none() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// The installed executable behind a path target, and its directory's pyro-guest.
fn guest_beside(exe: &Path) -> Result<String, String> {
    let real = std::fs::canonicalize(exe).map_err(|e| format!("{}: {e}", exe.display()))?;
    let guest = real.with_file_name("pyro-guest");
    let meta = std::fs::metadata(&guest).map_err(|e| format!("{}: {e}", guest.display()))?;
    use std::os::unix::fs::PermissionsExt;
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", guest.display()));
    }
    Ok(guest.display().to_string())
}

fn check(t: &Target, pin: &Pin, results: &mut Vec<(String, Result<String, String>)>) {
    let dirs = Dirs {
        runtime: tempfile::Builder::new().prefix("pyro-dist-rt").tempdir().unwrap(),
        data: tempfile::tempdir().unwrap(),
        cwd: tempfile::tempdir().unwrap(),
    };
    let mut record = |what: &str, r: Result<String, String>| {
        let line = format!("{}: {what}", t.label);
        match &r {
            Ok(detail) => println!("ok    {line}: {detail}"),
            Err(e) => println!("FAIL  {line}: {e}"),
        }
        results.push((line, r));
    };
    let want = format!("pyro {}", pin.version);
    record(
        "--version",
        output(t.cmd(&dirs, &["--version"])).and_then(|o| {
            let got = text(&o.stdout);
            if o.status.success() && got == want {
                Ok(got)
            } else {
                Err(format!("got {got:?} ({}), expected {want:?}", o.status))
            }
        }),
    );
    if t.argv.len() == 1 {
        record("pyro-guest beside pyro", guest_beside(Path::new(&t.argv[0])));
    }
    record(
        "doctor --json",
        output(t.cmd(&dirs, &["doctor", "--json"])).and_then(|o| {
            let v: Value =
                serde_json::from_slice(&o.stdout).map_err(|e| format!("not JSON ({e}): {}", text(&o.stdout)))?;
            match v["ok"].as_bool() {
                Some(true) => Ok(format!("ok, accelerator {}", v["accelerator"].as_str().unwrap_or("?"))),
                _ => Err(format!("parses, but not ok ({}): {}", o.status, last_line(&o.stderr))),
            }
        }),
    );
    for (profile, tools) in &pin.mcp {
        record(
            &format!("mcp serve --profile {profile}"),
            mcp_tools(t, &dirs, profile, &pin.version).and_then(|got| {
                if &got == tools {
                    Ok(format!("{} tools as pinned", got.len()))
                } else {
                    Err(format!("tools/list {got:?}, pinned {tools:?}"))
                }
            }),
        );
    }
    record(
        "run debian:12 -- true",
        output(t.cmd(&dirs, &["run", "debian:12", "--", "true"])).and_then(|o| {
            if o.status.success() {
                Ok(last_line(&o.stderr))
            } else {
                Err(format!("{}: {}", o.status, last_line(&o.stderr)))
            }
        }),
    );
    record(
        "env list",
        output(t.cmd(&dirs, &["env", "list"])).and_then(|o| {
            let out = text(&o.stdout);
            let missing: Vec<&str> = CATALOG
                .iter()
                .copied()
                .filter(|name| !out.lines().any(|l| l.split_whitespace().next() == Some(*name)))
                .collect();
            if o.status.success() && missing.is_empty() {
                Ok(CATALOG.join(", "))
            } else {
                Err(format!("{}; missing {missing:?}: {out}", o.status))
            }
        }),
    );
}

#[test]
#[ignore = "checks installed release artifacts: make dist-check"]
fn installed_artifacts() {
    // `LABEL=COMMAND [ARGS...]` per line, the command split at spaces (dist-check's paths have none).
    let spec = std::env::var("PYRO_DIST_TARGETS").unwrap_or_default();
    let targets: Vec<Target> = spec
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|a| {
            let (label, cmd) = a.split_once('=').unwrap_or_else(|| panic!("expected LABEL=COMMAND, got {a}"));
            Target {
                label: label.to_string(),
                argv: cmd.split(' ').filter(|w| !w.is_empty()).map(String::from).collect(),
            }
        })
        .collect();
    assert!(!targets.is_empty(), "set PYRO_DIST_TARGETS to LABEL=/path/to/installed/pyro lines (make dist-check)");
    for t in &targets {
        let exe = PathBuf::from(&t.argv[0]);
        assert!(exe.is_absolute(), "{}: run installed executables by their absolute path", t.label);
    }
    let pin = Pin::load();
    let mut results = Vec::new();
    for t in &targets {
        check(t, &pin, &mut results);
    }
    let failed = results.iter().filter(|(_, r)| r.is_err()).count();
    println!("checks: {} passed, {failed} failed", results.len() - failed);
    assert_eq!(failed, 0, "{failed} installed-artifact checks failed (the lines above say which)");
}
