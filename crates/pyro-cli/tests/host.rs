//! `pyro host ...` against the hosts' real config formats, through their real CLIs (installed
//! from npm by `make host-clis`) and through files written the way each host writes them.
//! Nothing here boots a VM: `host doctor` only asks `pyro mcp serve` for its tool list, and the
//! remote entries (`connect --url`) are checked against a real `pyro mcp serve --http`.

use crate::common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const TOOL_MS: u64 = pyro_mcp::mcp::MAX_CALL_S * 1000;
const STARTUP_MS: u64 = pyro_mcp::mcp::STARTUP_TIMEOUT_S * 1000;

/// Where `make host-clis` installs Claude Code's and Codex's CLIs.
fn clis_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/host-clis/node_modules/.bin")
}

/// Whether both CLIs are installed. If not, the part of the test that needs them (`part`) is
/// skipped (`common::skip`: a failure under CI, printed and listed by `make test` elsewhere).
fn have_clis(part: &str) -> bool {
    let d = clis_dir();
    if d.join("claude").exists() && d.join("codex").exists() {
        return true;
    }
    skip(&format!("the host CLIs are not installed (make host-clis), so {part} did not run"));
    false
}

/// A private HOME with a git project inside; every command runs in the project.
struct Home {
    dir: tempfile::TempDir,
    t: Env,
    /// Extra environment (CLAUDE_CONFIG_DIR, ...), for pyro and the hosts' CLIs alike.
    env: Vec<(String, String)>,
}

impl Home {
    fn new() -> Home {
        let h = Home { dir: tempfile::tempdir().unwrap(), t: Env::new(), env: Vec::new() };
        std::fs::create_dir_all(h.proj()).unwrap();
        let git = Command::new("git").args(["init", "-q"]).current_dir(h.proj()).status();
        if !git.is_ok_and(|s| s.success()) {
            std::fs::create_dir_all(h.proj().join(".git")).unwrap();
        }
        h
    }
    fn proj(&self) -> PathBuf {
        self.dir.path().join("proj")
    }
    fn path_var(&self, with_clis: bool) -> String {
        match with_clis {
            true => format!("{}:/usr/local/bin:/usr/bin:/bin", clis_dir().display()),
            false => "/usr/local/bin:/usr/bin:/bin".into(),
        }
    }
    fn prepare(&self, c: &mut Command, with_clis: bool) {
        c.env("HOME", self.dir.path()).env("PATH", self.path_var(with_clis)).current_dir(self.proj());
        for v in [
            "CODEX_HOME",
            "CLAUDE_CONFIG_DIR",
            "XDG_CONFIG_HOME",
            "OPENCODE_CONFIG",
            "MCP_TIMEOUT",
            "MCP_TOOL_TIMEOUT",
            "PYRO_CONFIG_DIR",
            "PYRO_MCP_TOKEN",
        ] {
            c.env_remove(v);
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
    }
    /// pyro with this HOME; `with_clis` puts the hosts' CLIs on PATH.
    fn pyro(&self, with_clis: bool, args: &[&str]) -> Output {
        let mut c = self.t.cmd();
        self.prepare(&mut c, with_clis);
        c.args(args).output().unwrap()
    }
    /// A `--json` pyro call that must succeed.
    fn ok(&self, with_clis: bool, args: &[&str]) -> Value {
        let o = self.pyro(with_clis, args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}{}", stdout(&o), stderr(&o));
        json(&o)
    }
    fn doctor(&self) -> Value {
        json(&self.pyro(false, &["host", "doctor", "--json"]))
    }
    fn cli(&self, name: &str, args: &[&str]) -> String {
        let mut c = Command::new(clis_dir().join(name));
        self.prepare(&mut c, true);
        let o = c.args(args).output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    }
    /// A host CLI's `--json` answer (stdout only: Codex warns on stderr about temp dirs).
    fn cli_json(&self, name: &str, args: &[&str]) -> Value {
        let mut c = Command::new(clis_dir().join(name));
        self.prepare(&mut c, true);
        let o = c.args(args).output().unwrap();
        serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{name} {args:?} ({e}): {}{}", stdout(&o), stderr(&o)))
    }
    fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn write_json(p: &Path, v: &Value) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

fn backups(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".pyro-backup-"))
        .count()
}

fn row<'a>(d: &'a Value, host: &str) -> &'a Value {
    d["hosts"].as_array().unwrap().iter().find(|r| r["host"] == host).unwrap()
}

fn pyro_path() -> String {
    Path::new(env!("CARGO_BIN_EXE_pyro")).canonicalize().unwrap().to_string_lossy().into_owned()
}

/// An entry as `claude mcp add` writes it (no timeout).
fn claude_entry(command: &str) -> Value {
    json!({"type": "stdio", "command": command, "args": ["mcp", "serve"], "env": {}})
}

#[test]
fn claude_code_through_its_cli_is_idempotent_and_connects() {
    if !have_clis("the whole test") {
        return;
    }
    let h = Home::new();
    let v = h.ok(true, &["host", "connect", "claude-code", "--json"]);
    assert_eq!(v["changed"], true);
    assert_eq!(v["method"], "claude mcp add-json --scope user");
    let cfg = read_json(&h.file(".claude.json"));
    assert_eq!(cfg["mcpServers"]["pyro"]["args"], json!(["mcp", "serve"]));
    assert_eq!(cfg["mcpServers"]["pyro"]["timeout"], TOOL_MS);
    assert_eq!(h.ok(true, &["host", "connect", "claude-code", "--json"])["changed"], false);
    // Claude Code's own health check starts our server and talks MCP to it, and it reads
    // the per-server timeout.
    let list = h.cli("claude", &["mcp", "list"]);
    assert!(list.contains("pyro") && list.contains("Connected"), "{list}");
    let get = h.cli("claude", &["mcp", "get", "pyro"]);
    assert!(get.contains(&format!("Timeout: {TOOL_MS}ms")) && get.contains("User config"), "{get}");
    let dv = h.doctor();
    let r = row(&dv, "claude-code");
    assert_eq!(
        (r["configured"].clone(), r["server_ok"].clone(), r["ok"].clone()),
        (json!(true), json!(true), json!(true)),
        "{dv}"
    );
    assert_eq!(r["scope"], "user");
}

#[test]
fn claude_config_dir_is_followed_for_read_and_write() {
    let mut h = Home::new();
    let cfg_dir = h.file("claude-cfg");
    h.env.push(("CLAUDE_CONFIG_DIR".into(), cfg_dir.to_string_lossy().into()));
    let with_clis = have_clis("the check through `claude mcp get`");
    let v = h.ok(with_clis, &["host", "connect", "claude-code", "--json"]);
    assert_eq!(v["config_path"], cfg_dir.join(".claude.json").to_string_lossy().as_ref());
    assert!(!h.file(".claude.json").exists(), "~/.claude.json must not be written when CLAUDE_CONFIG_DIR is set");
    assert_eq!(read_json(&cfg_dir.join(".claude.json"))["mcpServers"]["pyro"]["timeout"], TOOL_MS);
    let r = h.doctor();
    assert_eq!(row(&r, "claude-code")["ok"], true, "{r}");
    assert_eq!(row(&r, "claude-code")["config_path"], cfg_dir.join(".claude.json").to_string_lossy().as_ref());
    if with_clis {
        let get = h.cli("claude", &["mcp", "get", "pyro"]);
        assert!(get.contains(&pyro_path()) && get.contains("User config"), "{get}");
    }
}

#[test]
fn a_stale_local_entry_shadowing_a_good_user_one_is_reported_and_repaired() {
    for with_clis in [false, true] {
        if with_clis && !have_clis("the round through the real CLI") {
            continue;
        }
        let h = Home::new();
        h.ok(false, &["host", "connect", "claude-code", "--json"]);
        // A local-scope entry as `claude mcp add --scope local` leaves it, for an old binary.
        let mut cfg = read_json(&h.file(".claude.json"));
        let key = h.proj().canonicalize().unwrap().to_string_lossy().into_owned();
        cfg["projects"] =
            json!({ key.clone(): {"allowedTools": [], "mcpServers": {"pyro": claude_entry("/old/pyro")}} });
        write_json(&h.file(".claude.json"), &cfg);
        if with_clis {
            let get = h.cli("claude", &["mcp", "get", "pyro"]);
            assert!(get.contains("Local config") && get.contains("/old/pyro"), "{get}");
        }
        let d = h.doctor();
        let r = row(&d, "claude-code");
        assert_eq!(r["scope"], "local", "{d}");
        assert_eq!(r["ok"], false);
        assert_eq!(r["fix"], "pyro host repair claude-code");
        let problems = r["problems"].to_string();
        assert!(problems.contains("shadows a good user entry") && problems.contains("/old/pyro"), "{problems}");
        let o = h.ok(with_clis, &["host", "repair", "claude-code", "--json"]);
        assert_eq!((o["scope"].clone(), o["changed"].clone()), (json!("local"), json!(true)), "{o}");
        let cfg = read_json(&h.file(".claude.json"));
        let local = &cfg["projects"][&key]["mcpServers"]["pyro"];
        assert_eq!((local["command"].as_str(), local["timeout"].as_u64()), (Some(pyro_path().as_str()), Some(TOOL_MS)));
        assert_eq!(cfg["projects"][&key]["allowedTools"], json!([]), "other project keys are kept");
        assert_eq!(cfg["mcpServers"]["pyro"]["command"], pyro_path().as_str(), "the user entry is untouched");
        assert_eq!(row(&h.doctor(), "claude-code")["ok"], true);
        if with_clis {
            let get = h.cli("claude", &["mcp", "get", "pyro"]);
            assert!(get.contains("Local config") && get.contains(&pyro_path()), "{get}");
        }
    }
}

#[test]
fn a_project_mcp_json_entry_is_read_and_repaired_in_place() {
    let h = Home::new();
    // `.mcp.json` as `claude mcp add --scope project` writes it, next to another server, and
    // approved in Claude Code (enabledMcpjsonServers).
    let mcp = h.proj().join(".mcp.json");
    write_json(
        &mcp,
        &json!({"mcpServers": {"other": claude_entry("other-server"), "pyro": claude_entry(&pyro_path())}}),
    );
    let key = h.proj().canonicalize().unwrap().to_string_lossy().into_owned();
    write_json(&h.file(".claude.json"), &json!({"projects": {key: {"enabledMcpjsonServers": ["pyro"]}}}));
    if have_clis("the check through `claude mcp get`") {
        let get = h.cli("claude", &["mcp", "get", "pyro"]);
        assert!(get.contains("Project config"), "{get}");
    }
    let d = h.doctor();
    let r = row(&d, "claude-code");
    assert_eq!((r["scope"].as_str(), r["server_ok"].as_bool()), (Some("project"), Some(true)), "{d}");
    assert_eq!(r["ok"], false, "no per-server timeout: {d}");
    assert!(r["problems"].to_string().contains("no per-server timeout"), "{d}");
    let o = h.ok(false, &["host", "repair", "claude-code", "--json"]);
    assert_eq!(o["config_path"], mcp.canonicalize().unwrap().to_string_lossy().as_ref(), "{o}");
    let v = read_json(&mcp);
    assert_eq!(v["mcpServers"]["pyro"]["timeout"], TOOL_MS);
    assert_eq!(v["mcpServers"]["other"]["command"], "other-server");
    assert!(!h.file(".claude.json").exists() || read_json(&h.file(".claude.json"))["mcpServers"].is_null());
    assert_eq!(backups(&h.proj()), 1);
    assert_eq!(row(&h.doctor(), "claude-code")["ok"], true);
}

#[test]
fn broken_claude_config_is_reported_refused_by_connect_and_repaired() {
    let h = Home::new();
    let broken = "{ \"mcpServers\": { \"pyro\": ";
    std::fs::write(h.file(".claude.json"), broken).unwrap();
    let d = h.doctor();
    assert_eq!(d["ok"], true, "a broken file is not configured yet: {d}");
    assert!(row(&d, "claude-code")["detail"].as_str().unwrap().contains("broken"), "{d}");
    assert_eq!(row(&d, "claude-code")["fix"], "pyro host repair claude-code");
    // connect: one clear line, nothing changed.
    let o = h.pyro(false, &["host", "connect", "claude-code"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().filter(|l| l.starts_with("error:")).count(), 1, "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    assert_eq!(std::fs::read_to_string(h.file(".claude.json")).unwrap(), broken);
    assert_eq!(backups(h.dir.path()), 0);
    h.ok(false, &["host", "repair", "claude-code", "--json"]);
    let cfg = read_json(&h.file(".claude.json"));
    assert_eq!(cfg["mcpServers"]["pyro"]["type"], "stdio");
    assert_eq!(backups(h.dir.path()), 1);
    // A stale entry (another binary) is rewritten by repair, other entries kept.
    let mut cfg = cfg;
    cfg["mcpServers"]["pyro"]["command"] = "/old/pyro".into();
    cfg["mcpServers"]["keep"] = json!({"type": "stdio", "command": "keep"});
    write_json(&h.file(".claude.json"), &cfg);
    let d = h.doctor();
    assert_eq!(d["ok"], false);
    assert_eq!(row(&d, "claude-code")["fix"], "pyro host repair claude-code");
    h.ok(false, &["host", "repair", "claude-code", "--json"]);
    let cfg = read_json(&h.file(".claude.json"));
    assert_eq!(cfg["mcpServers"]["pyro"]["command"], pyro_path().as_str());
    assert_eq!(cfg["mcpServers"]["keep"]["command"], "keep");
    // A bad flag changes nothing either.
    let o = h.pyro(false, &["host", "connect", "codex", "--profile", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!h.file(".codex").exists());
}

#[test]
fn codex_through_its_cli_and_by_file_edit() {
    let h = Home::new();
    std::fs::create_dir_all(h.file(".codex")).unwrap();
    let original = "# my settings\nmodel = \"o3\"\n\n[mcp_servers.other]\ncommand = \"other-server\"\nargs = []\n";
    std::fs::write(h.file(".codex/config.toml"), original).unwrap();
    // No CLI on PATH: the file is edited, comments and other servers kept, a backup made.
    let v = h.ok(false, &["host", "connect", "codex", "--json"]);
    assert_eq!(v["changed"], true, "{v}");
    let text = std::fs::read_to_string(h.file(".codex/config.toml")).unwrap();
    assert!(text.starts_with("# my settings\nmodel = \"o3\""), "{text}");
    assert!(text.contains("[mcp_servers.other]") && text.contains("[mcp_servers.pyro]"), "{text}");
    assert!(text.contains("tool_timeout_sec = 4200") && text.contains("startup_timeout_sec = 30"), "{text}");
    assert_eq!(backups(&h.file(".codex")), 1);
    assert_eq!(h.ok(false, &["host", "connect", "codex", "--json"])["changed"], false);
    assert_eq!(backups(&h.file(".codex")), 1, "an unchanged connect must not touch anything");
    if have_clis("the checks through the real Codex CLI") {
        // The real Codex CLI reads what we wrote, timeouts included.
        let got = h.cli_json("codex", &["mcp", "get", "pyro", "--json"]);
        assert_eq!(got["transport"]["args"], json!(["mcp", "serve"]));
        assert_eq!(got["tool_timeout_sec"].as_f64(), Some(4200.0), "{got}");
        assert_eq!(got["startup_timeout_sec"].as_f64(), Some(30.0), "{got}");
        assert!(h.cli("codex", &["mcp", "list"]).contains("other-server"));
        // A fresh home through the CLI: `codex mcp add`, then the timeouts.
        let h2 = Home::new();
        let v = h2.ok(true, &["host", "connect", "codex", "--json"]);
        assert_eq!(v["method"], "codex mcp add, then the timeouts with toml_edit", "{v}");
        let got = h2.cli_json("codex", &["mcp", "get", "pyro", "--json"]);
        assert_eq!(got["transport"]["command"], pyro_path().as_str());
        assert_eq!(got["tool_timeout_sec"].as_f64(), Some(4200.0), "{got}");
        assert_eq!(h2.ok(true, &["host", "connect", "codex", "--json"])["changed"], false);
        assert_eq!(row(&h2.doctor(), "codex")["ok"], true);
    }
}

#[test]
fn codex_with_a_low_tool_timeout_is_flagged_and_repaired_keeping_its_keys() {
    let h = Home::new();
    let text = format!(
        "[mcp_servers.pyro]\ncommand = {:?}\nargs = [\"mcp\", \"serve\"]\ntool_timeout_sec = 60\n\n[mcp_servers.pyro.env]\nKEEP = \"1\"\n",
        pyro_path()
    );
    std::fs::create_dir_all(h.file(".codex")).unwrap();
    std::fs::write(h.file(".codex/config.toml"), &text).unwrap();
    let d = h.doctor();
    let r = row(&d, "codex");
    assert_eq!((r["ok"].as_bool(), r["server_ok"].as_bool()), (Some(false), Some(true)), "{d}");
    assert!(r["problems"].to_string().contains("tool_timeout_sec = 60"), "{d}");
    assert_eq!(r["fix"], "pyro host repair codex");
    assert_eq!(h.pyro(false, &["host", "doctor"]).status.code(), Some(5));
    h.ok(false, &["host", "repair", "codex", "--json"]);
    let doc: toml_edit::DocumentMut = std::fs::read_to_string(h.file(".codex/config.toml")).unwrap().parse().unwrap();
    let t = &doc["mcp_servers"]["pyro"];
    assert_eq!(t["tool_timeout_sec"].as_integer(), Some(4200));
    assert_eq!(t["startup_timeout_sec"].as_integer(), Some(30));
    assert_eq!(t["env"]["KEEP"].as_str(), Some("1"));
    assert_eq!(row(&h.doctor(), "codex")["ok"], true);
}

#[test]
fn opencode_json_is_edited_and_jsonc_is_read_but_left_alone() {
    let h = Home::new();
    let dir = h.file(".config/opencode");
    // The docs' own JSONC example style: comments and trailing commas.
    let jsonc = format!(
        "{{\n  \"$schema\": \"https://opencode.ai/config.json\",\n  // my servers\n  \"mcp\": {{\n    \"pyro\": {{\n      \"type\": \"local\",\n      \"command\": [{:?}, \"mcp\", \"serve\"],\n      \"enabled\": true,\n    }},\n  }},\n}}\n",
        pyro_path()
    );
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("opencode.jsonc"), &jsonc).unwrap();
    let d = h.doctor();
    let r = row(&d, "opencode");
    assert_eq!(
        (r["configured"].as_bool(), r["server_ok"].as_bool(), r["ok"].as_bool()),
        (Some(true), Some(true), Some(false)),
        "{d}"
    );
    assert!(r["problems"].to_string().contains("experimental.mcp_timeout"), "{d}");
    // connect will not rewrite JSONC: it prints the snippet, exits 5, and changes nothing.
    let o = h.pyro(false, &["host", "connect", "opencode", "--json"]);
    assert_eq!(o.status.code(), Some(5), "{}", stdout(&o));
    let v = json(&o);
    assert_eq!(v["changed"], false);
    let snippet: Value = serde_json::from_str(v["snippet"].as_str().unwrap()).unwrap();
    assert_eq!(snippet["experimental"]["mcp_timeout"], TOOL_MS);
    assert_eq!(std::fs::read_to_string(dir.join("opencode.jsonc")).unwrap(), jsonc);
    assert_eq!(backups(&dir), 0);

    // Plain opencode.json: edited in place, other keys kept, idempotent.
    std::fs::remove_file(dir.join("opencode.jsonc")).unwrap();
    write_json(
        &dir.join("opencode.json"),
        &json!({"$schema": "https://opencode.ai/config.json", "model": "m", "mcp": {"other": {"type": "local", "command": ["other"]}}}),
    );
    let v = h.ok(false, &["host", "connect", "opencode", "--json"]);
    assert_eq!(v["changed"], true);
    let cfg = read_json(&dir.join("opencode.json"));
    assert_eq!(cfg["model"], "m");
    assert_eq!(cfg["mcp"]["other"]["command"], json!(["other"]));
    assert_eq!(
        cfg["mcp"]["pyro"],
        json!({"type": "local", "command": [pyro_path(), "mcp", "serve"], "enabled": true, "timeout": STARTUP_MS})
    );
    assert_eq!(cfg["experimental"]["mcp_timeout"], TOOL_MS);
    assert_eq!(h.ok(false, &["host", "connect", "opencode", "--json"])["changed"], false);
    assert_eq!(backups(&dir), 1);
    assert_eq!(row(&h.doctor(), "opencode")["ok"], true);

    // A project opencode.json in the newer `mcp.servers` layout overrides the global one.
    write_json(
        &h.proj().join("opencode.json"),
        &json!({"mcp": {"servers": {"pyro": {"type": "local", "command": ["/old/pyro", "mcp", "serve"]}}}}),
    );
    let d = h.doctor();
    let r = row(&d, "opencode");
    assert_eq!(r["scope"], "project", "{d}");
    assert!(r["problems"].to_string().contains("shadows a good global entry"), "{d}");
    h.ok(false, &["host", "repair", "opencode", "--json"]);
    let p = read_json(&h.proj().join("opencode.json"));
    assert_eq!(p["mcp"]["servers"]["pyro"]["timeout"], json!({"startup": STARTUP_MS, "request": TOOL_MS}));
    assert_eq!(p["mcp"]["servers"]["pyro"]["command"][0], pyro_path().as_str());
    assert!(p["mcp"]["pyro"].is_null() && p["mcp"]["servers"]["pyro"]["enabled"].is_null());
    assert_eq!(row(&h.doctor(), "opencode")["ok"], true);
}

#[test]
fn snippets_are_valid_for_any_path() {
    // A copy of pyro at an awkward path: current_exe is that path.
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("dir with space").join("it's \"q\" \\ é");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("pyro");
    std::fs::copy(env!("CARGO_BIN_EXE_pyro"), &exe).unwrap();
    let want = exe.canonicalize().unwrap().to_string_lossy().into_owned();
    let h = Home::new();
    let run = |args: &[&str]| {
        let mut c = Command::new(&exe);
        h.prepare(&mut c, false);
        c.env("PYRO_RUNTIME_DIR", h.t.runtime.path()).args(args).output().unwrap()
    };
    let o = run(&["host", "print-config", "codex"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let doc: toml_edit::DocumentMut = stdout(&o).parse().unwrap_or_else(|e| panic!("not TOML ({e}): {}", stdout(&o)));
    let t = &doc["mcp_servers"]["pyro"];
    assert_eq!(t["command"].as_str(), Some(want.as_str()));
    assert_eq!(t["tool_timeout_sec"].as_integer(), Some(4200));
    assert_eq!(t["startup_timeout_sec"].as_integer(), Some(30));
    let o = run(&["host", "print-config", "claude-code"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (v["mcpServers"]["pyro"]["command"].as_str(), v["mcpServers"]["pyro"]["timeout"].as_u64()),
        (Some(want.as_str()), Some(TOOL_MS))
    );
    let o = run(&["host", "print-config", "opencode"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["mcp"]["pyro"]["command"][0], want.as_str());
    // The entry written for that path starts a working server.
    assert_eq!(run(&["host", "connect", "codex"]).status.code(), Some(0));
    let o = run(&["host", "doctor", "--json"]);
    let d: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(row(&d, "codex")["ok"], true, "{d}");
}

/// A `pyro mcp serve --http` of its own (config, data and project in temp dirs): its URL,
/// port and token. Killed on drop.
struct Served {
    child: Child,
    url: String,
    port: u16,
    token: String,
    _dirs: (Env, tempfile::TempDir),
}

impl Served {
    fn start(listen: &str, extra: &[&str]) -> Served {
        let (t, dir) = (Env::new(), tempfile::tempdir().unwrap());
        std::fs::create_dir_all(dir.path().join("proj")).unwrap();
        let mut child = t
            .cmd()
            .env("PYRO_CONFIG_DIR", dir.path().join("config"))
            .env("PYRO_DATA_DIR", dir.path().join("data"))
            .args(["mcp", "serve", "--http", listen])
            .args(extra)
            .current_dir(dir.path().join("proj"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `pyro mcp serve: MCP at http://127.0.0.1:PORT/mcp (...)` on stderr.
        let (tx, rx) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Some(at) = line.find("MCP at ") {
                    let _ = tx.send(line[at + 7..].split_whitespace().next().unwrap_or("").to_string());
                }
            }
        });
        let Ok(url) = rx.recv_timeout(Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!("pyro mcp serve --http {listen} did not announce its URL");
        };
        let port = url.rsplit(':').next().unwrap().trim_end_matches("/mcp").parse().unwrap();
        let token = std::fs::read_to_string(dir.path().join("config/mcp-token")).unwrap().trim().to_string();
        assert_eq!(token.len(), 64);
        Served { child, url, port, token, _dirs: (t, dir) }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

impl Home {
    /// A copy of a server's token, in a 0600 file as the docs tell users to make it.
    fn token_file(&self, name: &str, token: &str) -> String {
        let p = self.file(name);
        std::fs::write(&p, format!("{token}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p.to_string_lossy().into_owned()
    }
    /// `pyro host connect HOST --url URL --token-file F --json`, which must succeed and never
    /// print the token.
    fn connect_url(&self, with_clis: bool, host: &str, url: &str, tok: &str, secret: &str) -> Value {
        let o = self.pyro(with_clis, &["host", "connect", host, "--url", url, "--token-file", tok, "--json"]);
        assert_eq!(o.status.code(), Some(0), "{host}: {}{}", stdout(&o), stderr(&o));
        assert!(!stdout(&o).contains(secret) && !stderr(&o).contains(secret), "the token was printed: {}", stdout(&o));
        json(&o)
    }
    fn doctor_text(&self) -> (Option<i32>, String) {
        let o = self.pyro(false, &["host", "doctor"]);
        (o.status.code(), stdout(&o) + &stderr(&o))
    }
}

#[test]
fn connect_url_writes_each_hosts_remote_entry_privately() {
    let srv = Served::start("127.0.0.1:0", &[]);
    let h = Home::new();
    let tok = h.token_file("pyro-token", &srv.token);
    let with_clis = have_clis("the checks through `claude mcp` and `codex mcp`");
    let server = format!("pyro-mcp {}", env!("CARGO_PKG_VERSION"));

    // Claude Code: type http with the header, in .claude.json (never through `claude mcp
    // add-json`, whose command line would show the token), created 0600.
    let v = h.connect_url(with_clis, "claude-code", &srv.url, &tok, &srv.token);
    assert_eq!((v["changed"].as_bool(), v["server"].as_str()), (Some(true), Some(server.as_str())), "{v}");
    assert!(v["method"].as_str().unwrap().starts_with("edited "), "{v}");
    assert!(v["token"].as_str().unwrap().contains("stored in") && v["token"].as_str().unwrap().contains("mode 600"));
    assert_eq!(v["entry"], json!({"url": srv.url, "auth": {"bearer": "(hidden)"}}));
    let cfg = read_json(&h.file(".claude.json"));
    assert_eq!(
        cfg["mcpServers"]["pyro"],
        json!({"type": "http", "url": srv.url, "headers": {"Authorization": format!("Bearer {}", srv.token)}, "timeout": TOOL_MS})
    );
    assert_eq!(mode(&h.file(".claude.json")), 0o600);
    assert_eq!(h.connect_url(with_clis, "claude-code", &srv.url, &tok, &srv.token)["changed"], false);
    if with_clis {
        // Claude Code's own health check reaches the server with the header.
        let list = h.cli("claude", &["mcp", "list"]);
        assert!(list.contains(&srv.url) && list.contains("Connected"), "{list}");
        let get = h.cli("claude", &["mcp", "get", "pyro"]);
        assert!(get.contains("Type: http") && get.contains(&format!("Timeout: {TOOL_MS}ms")), "{get}");
    }

    // Codex: url and bearer_token_env_var, no token in the file.
    let v = h.connect_url(with_clis, "codex", &srv.url, &tok, &srv.token);
    assert_eq!((v["changed"].as_bool(), v["server"].as_str()), (Some(true), Some(server.as_str())), "{v}");
    assert!(v["token"].as_str().unwrap().contains("export PYRO_MCP_TOKEN=\"$(cat "), "{v}");
    let text = std::fs::read_to_string(h.file(".codex/config.toml")).unwrap();
    assert!(!text.contains(&srv.token));
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    let t = doc["mcp_servers"]["pyro"].as_table().unwrap();
    let keys: Vec<&str> = t.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, ["url", "bearer_token_env_var", "startup_timeout_sec", "tool_timeout_sec"], "{text}");
    assert_eq!(
        (t["url"].as_str(), t["bearer_token_env_var"].as_str()),
        (Some(srv.url.as_str()), Some("PYRO_MCP_TOKEN"))
    );
    assert_eq!(h.connect_url(with_clis, "codex", &srv.url, &tok, &srv.token)["changed"], false);
    if with_clis {
        let got = h.cli_json("codex", &["mcp", "get", "pyro", "--json"]);
        assert_eq!(got["transport"]["type"], "streamable_http", "{got}");
        assert_eq!(got["transport"]["url"], srv.url.as_str());
        assert_eq!(got["transport"]["bearer_token_env_var"], "PYRO_MCP_TOKEN");
        assert_eq!(got["tool_timeout_sec"].as_f64(), Some(4200.0), "{got}");
    }

    // OpenCode: type remote with the header and oauth off, global opencode.json created 0600.
    let v = h.connect_url(false, "opencode", &srv.url, &tok, &srv.token);
    assert_eq!(v["server"].as_str(), Some(server.as_str()), "{v}");
    let path = h.file(".config/opencode/opencode.json");
    let cfg = read_json(&path);
    assert_eq!(
        cfg["mcp"]["pyro"],
        json!({"type": "remote", "url": srv.url, "headers": {"Authorization": format!("Bearer {}", srv.token)},
               "oauth": false, "enabled": true, "timeout": STARTUP_MS})
    );
    assert_eq!(cfg["experimental"]["mcp_timeout"], TOOL_MS);
    assert_eq!(mode(&path), 0o600);
    assert_eq!(h.connect_url(false, "opencode", &srv.url, &tok, &srv.token)["changed"], false);

    // The default token file is pyro's own (here under HOME/.config/pyro-mcp).
    let h2 = Home::new();
    std::fs::create_dir_all(h2.file(".config/pyro-mcp")).unwrap();
    h2.token_file(".config/pyro-mcp/mcp-token", &srv.token);
    let o = h2.pyro(false, &["host", "connect", "opencode", "--url", &srv.url, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(json(&o)["server"].as_str(), Some(server.as_str()));
}

#[test]
fn doctor_checks_a_remote_url_and_token() {
    let srv = Served::start("127.0.0.1:0", &[]);
    let mut h = Home::new();
    let tok = h.token_file("pyro-token", &srv.token);
    h.connect_url(false, "claude-code", &srv.url, &tok, &srv.token);
    h.connect_url(false, "codex", &srv.url, &tok, &srv.token);

    // OK: Claude Code's token from its entry, Codex's from $PYRO_MCP_TOKEN.
    h.env.push(("PYRO_MCP_TOKEN".into(), srv.token.clone()));
    let d = h.doctor();
    for host in ["claude-code", "codex"] {
        let r = row(&d, host);
        assert_eq!((r["ok"].as_bool(), r["server_ok"].as_bool()), (Some(true), Some(true)), "{d}");
        assert_eq!(r["url"], srv.url.as_str());
        assert_eq!(r["server_version"], format!("pyro-mcp {}", env!("CARGO_PKG_VERSION")));
    }
    let (code, text) = h.doctor_text();
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains(&format!("{} answers: pyro-mcp {}", srv.url, env!("CARGO_PKG_VERSION"))), "{text}");
    assert!(!text.contains(&srv.token));

    // 401: a wrong token in Codex's variable, and in Claude Code's entry.
    h.env.pop();
    h.env.push(("PYRO_MCP_TOKEN".into(), "0".repeat(64)));
    let wrong = h.token_file("wrong-token", &"1".repeat(64));
    let v = h.connect_url(false, "claude-code", &srv.url, &wrong, &"1".repeat(64));
    assert!(v["warnings"].to_string().contains("401"), "{v}");
    let d = h.doctor();
    assert_eq!(d["ok"], false);
    let r = row(&d, "codex");
    assert_eq!((r["ok"].as_bool(), r["server_ok"].as_bool()), (Some(false), Some(false)), "{d}");
    assert!(r["problems"].to_string().contains("401: the server refused the token"), "{d}");
    assert!(r["fix"].as_str().unwrap().contains("set PYRO_MCP_TOKEN"), "{d}");
    let r = row(&d, "claude-code");
    assert!(r["problems"].to_string().contains("401: the server refused the token"), "{d}");
    assert!(r["fix"].as_str().unwrap().contains("pyro mcp token"), "{d}");
    let (code, text) = h.doctor_text();
    assert_eq!(code, Some(5), "{text}");
    assert!(!text.contains(&"1".repeat(64)) && !text.contains(&"0".repeat(64)), "a token was printed: {text}");

    // A project's .mcp.json (it may come with a cloned repository) naming the variable: its
    // URL is checked without this shell's token.
    h.env.pop();
    h.env.push(("PYRO_MCP_TOKEN".into(), srv.token.clone()));
    let entry = json!({"type": "http", "url": srv.url, "headers": {"Authorization": "Bearer ${PYRO_MCP_TOKEN}"}, "timeout": TOOL_MS});
    write_json(&h.proj().join(".mcp.json"), &json!({"mcpServers": {"pyro": entry}}));
    let d = h.doctor();
    let r = row(&d, "claude-code");
    assert_eq!(r["scope"], "project", "{d}");
    assert!(r["detail"].as_str().unwrap().contains("401 without the token, as expected"), "{d}");
    assert!(r["notes"].to_string().contains("is not sent to the URL of a project file's entry"), "{d}");
    std::fs::remove_file(h.proj().join(".mcp.json")).unwrap();

    // Codex with no variable set: said, with the export to run.
    h.env.pop();
    let r = row(&h.doctor(), "codex").clone();
    assert!(r["problems"].to_string().contains("PYRO_MCP_TOKEN is not set here"), "{r}");
    assert!(r["fix"].as_str().unwrap().starts_with("export PYRO_MCP_TOKEN="), "{r}");

    // Unreachable: the server is gone (and a port nothing listens on).
    let url = srv.url.clone();
    drop(srv);
    let d = h.doctor();
    let r = row(&d, "claude-code");
    assert_eq!(r["server_ok"], false, "{d}");
    assert!(r["problems"].to_string().contains(&format!("{url}: unreachable")), "{d}");
    assert!(r["fix"].as_str().unwrap().contains("pyro mcp serve --http"), "{d}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{closed}/mcp");
    let v = h.connect_url(false, "opencode", &url, &tok, &"x".repeat(64));
    assert!(v["warnings"].to_string().contains("unreachable"), "{v}");
    assert!(row(&h.doctor(), "opencode")["problems"].to_string().contains("unreachable"));
}

#[test]
fn doctor_reports_a_refused_host_name_as_403() {
    // Every 127/8 address is this machine, but a server bound to 0.0.0.0 takes only the
    // loopback names it knows in `Host`.
    let srv = Served::start("0.0.0.0:0", &["--insecure-http"]);
    let h = Home::new();
    let tok = h.token_file("pyro-token", &srv.token);
    let url = format!("http://127.0.0.2:{}/mcp", srv.port);
    let v = h.connect_url(false, "claude-code", &url, &tok, &srv.token);
    assert!(v["warnings"].to_string().contains("403"), "{v}");
    let d = h.doctor();
    let r = row(&d, "claude-code");
    assert!(r["problems"].to_string().contains("403: the server refused this client's Host or Origin"), "{d}");
    assert!(r["fix"].as_str().unwrap().contains("--allowed-host"), "{d}");
    // ... and with that name allowed, it answers.
    let srv2 = Served::start("0.0.0.0:0", &["--insecure-http", "--allowed-host", "127.0.0.2"]);
    let tok2 = h.token_file("pyro-token2", &srv2.token);
    let url = format!("http://127.0.0.2:{}/mcp", srv2.port);
    h.connect_url(false, "claude-code", &url, &tok2, &srv2.token);
    assert_eq!(row(&h.doctor(), "claude-code")["ok"], true);
}

#[test]
fn connect_url_refuses_bad_input_and_switches_transports_cleanly() {
    let h = Home::new();
    let url = "http://127.0.0.1:9/mcp";
    let fails = |args: &[&str], want: &str| {
        let o = h.pyro(false, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}{}", stdout(&o), stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    };
    // No token file: refused with how to make one; nothing written.
    fails(&["host", "connect", "claude-code", "--url", url], "no token file at");
    fails(&["host", "connect", "opencode", "--url", url], "pyro mcp token");
    fails(&["host", "connect", "codex", "--url", url, "--token-file", "/nonexistent"], "no token file at /nonexistent");
    let open = h.token_file("open-token", &"a".repeat(64));
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    fails(&["host", "connect", "claude-code", "--url", url, "--token-file", &open], "can be read by others");
    let tok = h.token_file("pyro-token", &"b".repeat(64));
    for (bad, why) in [
        ("ftp://127.0.0.1/mcp", "must start with http:// or https://"),
        ("http://127.0.0.1:8765", "has no path; pyro serves MCP at /mcp"),
        ("http://127.0.0.1:8765/mcp?access_token=x", "must not carry a query"),
        ("http://user:pw@127.0.0.1/mcp", "user name or password"),
        ("http://127.0.0.1:0/mcp", "invalid port"),
        ("http://a b/mcp", "spaces"),
        ("http:///mcp", "no valid host"),
    ] {
        fails(&["host", "connect", "claude-code", "--url", bad, "--token-file", &tok], why);
    }
    fails(&["host", "connect", "claude-code", "--token-file", &tok], "--token-file goes with --url");
    let o =
        h.pyro(false, &["host", "connect", "claude-code", "--url", url, "--token-file", &tok, "--profile", "vm-run"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!h.file(".claude.json").exists() && !h.file(".config/opencode").exists() && !h.file(".codex").exists());
    // Codex needs no token file (it reads $PYRO_MCP_TOKEN): without one it says what to export.
    let v = h.ok(false, &["host", "connect", "codex", "--url", url, "--json"]);
    assert!(v["token"].as_str().unwrap().contains("pyro mcp token"), "{v}");

    // Local, then remote, then local again: each time the other transport's keys go, and
    // the user's own keys and higher limits stay.
    let h = Home::new();
    h.ok(false, &["host", "connect", "codex", "--json"]);
    h.ok(false, &["host", "connect", "claude-code", "--json"]);
    let mut cfg = read_json(&h.file(".claude.json"));
    cfg["mcpServers"]["pyro"]["headers"] = json!({"X-Keep": "1"});
    cfg["mcpServers"]["pyro"]["timeout"] = json!(TOOL_MS * 2);
    write_json(&h.file(".claude.json"), &cfg);
    std::fs::set_permissions(h.file(".claude.json"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let codex = h.file(".codex/config.toml");
    let text = std::fs::read_to_string(&codex).unwrap()
        + "enabled_tools = [\"vm_run\"]\n\n[mcp_servers.pyro.env]\nK = \"v\"\n";
    std::fs::write(&codex, text).unwrap();
    let v = h.connect_url(false, "claude-code", url, &tok, &"b".repeat(64));
    // An existing .claude.json keeps its mode; the user is told it now holds a token.
    assert!(v["warnings"].to_string().contains("can be read by others (mode 644): chmod 600"), "{v}");
    assert_eq!(mode(&h.file(".claude.json")), 0o644);
    let e = &read_json(&h.file(".claude.json"))["mcpServers"]["pyro"];
    assert_eq!(
        e,
        &json!({"type": "http", "headers": {"X-Keep": "1", "Authorization": format!("Bearer {}", "b".repeat(64))},
                "timeout": TOOL_MS * 2, "url": url})
    );
    h.connect_url(false, "codex", url, &tok, &"b".repeat(64));
    let doc: toml_edit::DocumentMut = std::fs::read_to_string(&codex).unwrap().parse().unwrap();
    let t = &doc["mcp_servers"]["pyro"];
    assert!(t.get("command").is_none() && t.get("args").is_none() && t.get("env").is_none(), "{doc}");
    assert_eq!(t["enabled_tools"].as_array().map(|a| a.len()), Some(1));
    assert_eq!(t["url"].as_str(), Some(url));
    // print-config --url prints the same entry (token included, for pasting on a laptop).
    let o = h.pyro(false, &["host", "print-config", "claude-code", "--url", url, "--token-file", &tok]);
    let p: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(p["mcpServers"]["pyro"]["headers"]["Authorization"], format!("Bearer {}", "b".repeat(64)));
    // repair keeps a remote entry remote: a timeout lowered by hand comes back, URL kept.
    let mut cfg = read_json(&h.file(".claude.json"));
    cfg["mcpServers"]["pyro"]["timeout"] = json!(60000);
    write_json(&h.file(".claude.json"), &cfg);
    let r = row(&h.doctor(), "claude-code").clone();
    assert_eq!(r["fix"].as_str().map(|f| f.starts_with("pyro host repair claude-code")), Some(true), "{r}");
    let v = h.ok(false, &["host", "repair", "claude-code", "--token-file", &tok, "--json"]);
    assert_eq!(v["entry"]["url"], url, "{v}");
    assert_eq!(read_json(&h.file(".claude.json"))["mcpServers"]["pyro"]["timeout"], TOOL_MS);
    // Back to local: the remote keys go.
    h.ok(false, &["host", "connect", "claude-code", "--json"]);
    h.ok(false, &["host", "connect", "codex", "--json"]);
    let e = &read_json(&h.file(".claude.json"))["mcpServers"]["pyro"];
    assert_eq!((e["type"].as_str(), e["url"].is_null()), (Some("stdio"), true), "{e}");
    assert!(e["headers"].is_null(), "a stdio entry has no headers: {e}");
    let doc: toml_edit::DocumentMut = std::fs::read_to_string(&codex).unwrap().parse().unwrap();
    let t = &doc["mcp_servers"]["pyro"];
    assert!(t.get("url").is_none() && t.get("bearer_token_env_var").is_none(), "{doc}");
    assert_eq!(t["command"].as_str(), Some(pyro_path().as_str()));
}
