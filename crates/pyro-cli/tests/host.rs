//! `pyro host ...` against the hosts' real config formats, through their real CLIs (installed
//! from npm by `make host-clis`) and through direct file edits when no CLI is on PATH.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn clis() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/host-clis/node_modules/.bin");
    p.join("claude").exists().then_some(p)
}

struct Home {
    dir: tempfile::TempDir,
    t: Env,
}

impl Home {
    fn new() -> Home {
        Home { dir: tempfile::tempdir().unwrap(), t: Env::new() }
    }
    /// pyro with this HOME; `with_clis` puts the hosts' CLIs on PATH.
    fn pyro(&self, with_clis: bool, args: &[&str]) -> std::process::Output {
        let mut path = String::from("/usr/local/bin:/usr/bin:/bin");
        if with_clis {
            path = format!("{}:{path}", clis().unwrap().display());
        }
        self.t
            .cmd()
            .env("HOME", self.dir.path())
            .env("PATH", path)
            .env_remove("CODEX_HOME")
            .args(args)
            .output()
            .unwrap()
    }
    fn cli(&self, name: &str, args: &[&str]) -> String {
        let o = Command::new(clis().unwrap().join(name))
            .env("HOME", self.dir.path())
            .env("PATH", format!("{}:/usr/bin:/bin", clis().unwrap().display()))
            .args(args)
            .output()
            .unwrap();
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    }
    fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

fn backups(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".pyro-backup-"))
        .count()
}

#[test]
fn claude_code_through_its_cli_is_idempotent_and_connects() {
    let Some(_) = clis() else {
        eprintln!("skipped: host CLIs not installed (make host-clis)");
        return;
    };
    let h = Home::new();
    let o = h.pyro(true, &["host", "connect", "claude-code", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = json(&o);
    assert_eq!(v["changed"], true);
    assert_eq!(v["method"], "claude mcp add --scope user");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(h.file(".claude.json")).unwrap()).unwrap();
    assert_eq!(cfg["mcpServers"]["pyro"]["args"], serde_json::json!(["mcp", "serve"]));
    let again = json(&h.pyro(true, &["host", "connect", "claude-code", "--json"]));
    assert_eq!(again["changed"], false);
    // Claude Code's own health check starts our server and talks MCP to it.
    let list = h.cli("claude", &["mcp", "list"]);
    assert!(list.contains("pyro") && list.contains("Connected"), "{list}");
    let d = h.pyro(true, &["host", "doctor", "--json"]);
    let dv = json(&d);
    assert_eq!(dv["hosts"][0]["configured"], true, "{dv}");
    assert_eq!(dv["hosts"][0]["server_ok"], true, "{dv}");
}

#[test]
fn codex_through_its_cli_and_by_file_edit() {
    let h = Home::new();
    std::fs::create_dir_all(h.file(".codex")).unwrap();
    let original = "# my settings\nmodel = \"o3\"\n\n[mcp_servers.other]\ncommand = \"other-server\"\nargs = []\n";
    std::fs::write(h.file(".codex/config.toml"), original).unwrap();
    // No CLI on PATH: the file is edited, comments and other servers kept, a backup made.
    let v = json(&h.pyro(false, &["host", "connect", "codex", "--json"]));
    assert_eq!(v["changed"], true, "{v}");
    let text = std::fs::read_to_string(h.file(".codex/config.toml")).unwrap();
    assert!(text.starts_with("# my settings\nmodel = \"o3\""), "{text}");
    assert!(text.contains("[mcp_servers.other]") && text.contains("[mcp_servers.pyro]"), "{text}");
    assert_eq!(backups(&h.file(".codex")), 1);
    assert_eq!(json(&h.pyro(false, &["host", "connect", "codex", "--json"]))["changed"], false);
    assert_eq!(backups(&h.file(".codex")), 1, "an unchanged connect must not touch anything");
    if clis().is_some() {
        // The real Codex CLI reads what we wrote.
        let got = h.cli("codex", &["mcp", "get", "pyro", "--json"]);
        assert!(got.contains("\"mcp\"") && got.contains("\"serve\""), "{got}");
        assert!(h.cli("codex", &["mcp", "list"]).contains("other-server"));
    }
}

#[test]
fn broken_claude_config_is_reported_and_repaired() {
    let h = Home::new();
    std::fs::write(h.file(".claude.json"), "{ \"mcpServers\": { \"pyro\": ").unwrap();
    let d = json(&h.pyro(false, &["host", "doctor", "--json"]));
    assert_eq!(d["ok"], true, "a broken file is not configured yet: {d}");
    assert!(d["hosts"][0]["detail"].as_str().unwrap().contains("broken"), "{d}");
    let o = h.pyro(false, &["host", "repair", "claude-code", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(h.file(".claude.json")).unwrap()).unwrap();
    assert_eq!(cfg["mcpServers"]["pyro"]["type"], "stdio");
    assert_eq!(backups(h.dir.path()), 1);
    // A stale entry (another binary) is rewritten by repair, other entries kept.
    let mut cfg = cfg;
    cfg["mcpServers"]["pyro"]["command"] = "/old/pyro".into();
    cfg["mcpServers"]["keep"] = serde_json::json!({"type": "stdio", "command": "keep"});
    std::fs::write(h.file(".claude.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    let d = json(&h.pyro(false, &["host", "doctor", "--json"]));
    assert_eq!(d["ok"], false);
    assert_eq!(d["hosts"][0]["fix"], "pyro host repair claude-code");
    json(&h.pyro(false, &["host", "repair", "claude-code", "--json"]));
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(h.file(".claude.json")).unwrap()).unwrap();
    assert_ne!(cfg["mcpServers"]["pyro"]["command"], "/old/pyro");
    assert_eq!(cfg["mcpServers"]["keep"]["command"], "keep");
}

#[test]
fn opencode_snippet_is_valid() {
    let h = Home::new();
    let v = json(&h.pyro(false, &["host", "print-config", "opencode"]));
    assert_eq!(v["mcp"]["pyro"]["type"], "local");
    let cmd = v["mcp"]["pyro"]["command"].as_array().unwrap();
    assert!(cmd[0].as_str().unwrap().ends_with("/pyro"));
    assert_eq!(cmd[1], "mcp");
    let o = h.pyro(false, &["host", "connect", "opencode"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("print-config opencode"));
}
