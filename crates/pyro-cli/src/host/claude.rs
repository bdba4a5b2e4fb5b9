//! Claude Code: its three MCP scopes, which one it uses, and writing pyro's entry there.
//!
//! - user: `mcpServers.pyro` in `.claude.json`, which lives in `$CLAUDE_CONFIG_DIR` when that
//!   is set, else in `$HOME`;
//! - local: `projects["<project>"].mcpServers.pyro` in the same file, keyed by the git work
//!   tree around the working directory (else the directory itself);
//! - project: `mcpServers.pyro` in the nearest `.mcp.json` from the working directory up
//!   (checked against the real CLI: the closest file wins, and a server the user rejected is
//!   listed in `disabledMcpjsonServers`).
//!
//! Claude Code uses local, else project, else user. The user and local scopes are written
//! through `claude mcp add-json` when the CLI is installed (so Claude Code validates the
//! entry), else by editing `.claude.json`; a project entry is edited in its `.mcp.json`.
//! Entries carry a per-server `timeout` (ms), which Claude Code applies to each tool call
//! instead of `MCP_TOOL_TIMEOUT`.
//!
//! A remote entry (`pyro mcp serve --http` elsewhere) is `{"type": "http", "url": ...,
//! "headers": {"Authorization": "Bearer <token>"}, "timeout": ...}`, as `claude mcp add
//! --transport http NAME URL --header ...` writes it. It is written by editing `.claude.json`
//! even when the CLI is installed: `claude mcp add-json` would put the token on a command line
//! other users can read in /proc. Claude Code creates `.claude.json` 0600; so does pyro.

use super::entry::{
    bearer_auth, Broken, Entry, Found, Inspection, Written, ENTRY, STARTUP_TIMEOUT_MS, TOOL_TIMEOUT_MS,
};
use super::files::{self, json_ms};
use pyro_mcp::Error;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `.claude.json`, following `CLAUDE_CONFIG_DIR`.
pub fn config_file() -> Result<PathBuf, Error> {
    Ok(match files::env_dir("CLAUDE_CONFIG_DIR") {
        Some(d) => d.join(".claude.json"),
        None => files::home()?.join(".claude.json"),
    })
}

/// The key of this project in `.claude.json`'s `projects`.
fn project_key() -> Result<String, Error> {
    Ok(files::project_root(&files::cwd()?).to_string_lossy().into_owned())
}

/// Claude Code expands `${NAME}` in an entry's values from its environment.
fn env_ref(token: &str) -> Option<String> {
    let name = token.strip_prefix("${")?.strip_suffix('}')?;
    let name = name.split(":-").next().unwrap_or(name);
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')).then(|| name.to_string())
}

/// A header's value in a JSON `headers` object, whatever the case of its name.
pub fn header<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str())
}

/// One `mcpServers` entry as Claude Code reads it.
fn found(v: &Value, scope: &'static str, path: &Path) -> Found {
    let args = v["args"].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect());
    let kind = v["type"].as_str().unwrap_or_default();
    let mut issues = Vec::new();
    let entry = if kind == "http" || kind == "sse" || (v["url"].is_string() && v["command"].is_null()) {
        if kind == "sse" {
            issues.push("its type is sse, the old transport; pyro serves Streamable HTTP (type http)".to_string());
        }
        Entry::Remote {
            url: v["url"].as_str().unwrap_or_default().to_string(),
            auth: bearer_auth(header(&v["headers"], "authorization"), env_ref),
        }
    } else {
        Entry::Stdio { command: v["command"].as_str().unwrap_or_default().to_string(), args: args.unwrap_or_default() }
    };
    Found {
        entry,
        issues,
        scope,
        path: path.to_path_buf(),
        // Claude Code ignores a value below 1000 ms and falls back to MCP_TOOL_TIMEOUT.
        tool_timeout_ms: json_ms(&v["timeout"]).filter(|t| *t >= 1000),
        startup_timeout_ms: None,
        disabled: false,
    }
}

fn names(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default()
}

/// The nearest `.mcp.json` holding a `pyro` server, from the working directory up.
fn project_file(cwd: &Path) -> Result<Option<(PathBuf, Value)>, Broken> {
    for dir in cwd.ancestors() {
        let p = dir.join(".mcp.json");
        match files::read_json(&p) {
            Ok(Some(v)) if v["mcpServers"][ENTRY].is_object() => return Ok(Some((p, v))),
            Ok(_) => {}
            // A shared project file: never rewritten from scratch.
            Err(e) => return Err(Broken { path: p, message: e.message, repairable: false }),
        }
    }
    Ok(None)
}

pub fn inspect() -> Result<Inspection, Error> {
    let path = config_file()?;
    let mut insp = Inspection { default_path: path.clone(), ..Default::default() };
    let cfg = match files::read_json(&path) {
        Ok(v) => v.unwrap_or_else(|| serde_json::json!({})),
        Err(e) => {
            insp.broken = Some(Broken { path, message: e.message, repairable: true });
            return Ok(insp);
        }
    };
    let key = project_key()?;
    let proj = &cfg["projects"][&key];
    let user = cfg["mcpServers"][ENTRY].is_object().then(|| found(&cfg["mcpServers"][ENTRY], "user", &path));
    let local = proj["mcpServers"][ENTRY].is_object().then(|| found(&proj["mcpServers"][ENTRY], "local", &path));
    let project = match project_file(&files::cwd()?) {
        Ok(p) => p.map(|(p, v)| {
            let mut f = found(&v["mcpServers"][ENTRY], "project", &p);
            f.disabled = names(&proj["disabledMcpjsonServers"]).contains(&ENTRY);
            let approved = names(&proj["enabledMcpjsonServers"]).contains(&ENTRY)
                || proj["enableAllProjectMcpServers"].as_bool() == Some(true);
            if f.disabled {
                insp.notes.push(format!("the project entry in {} was rejected in Claude Code", p.display()));
            } else if !approved {
                insp.notes.push(format!(
                    "the project entry in {} awaits approval: Claude Code asks before starting it",
                    p.display()
                ));
            }
            f
        }),
        Err(b) => {
            insp.broken = Some(b);
            None
        }
    };
    // Precedence, checked against `claude mcp get`: local, then an enabled project entry, then user.
    let mut order: Vec<Found> = [local, project, user.clone()].into_iter().flatten().collect();
    if let Some(i) = order.iter().position(|f| !f.disabled) {
        insp.used = Some(order.remove(i));
    }
    insp.shadowed = order;
    insp.default = user;
    insp.notes.extend(env_notes());
    Ok(insp)
}

fn env_ms(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).filter(|v| *v > 0)
}

/// Claude Code's environment settings that bear on pyro.
fn env_notes() -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(t) = env_ms("MCP_TOOL_TIMEOUT").filter(|t| *t < TOOL_TIMEOUT_MS) {
        notes.push(format!(
            "MCP_TOOL_TIMEOUT={t} is below {TOOL_TIMEOUT_MS} ms; pyro's per-server `timeout` overrides it"
        ));
    }
    notes
}

/// Problems outside the entry that repair cannot fix, with their fix.
pub fn env_problems() -> Vec<(String, String)> {
    match env_ms("MCP_TIMEOUT").filter(|t| *t < STARTUP_TIMEOUT_MS) {
        Some(t) => vec![(
            format!("MCP_TIMEOUT={t} gives MCP servers less than {STARTUP_TIMEOUT_MS} ms to start"),
            format!("unset MCP_TIMEOUT or set it to at least {STARTUP_TIMEOUT_MS}"),
        )],
        None => Vec::new(),
    }
}

pub fn limit_problems(f: &Found) -> Vec<String> {
    match f.tool_timeout_ms {
        Some(t) if t >= TOOL_TIMEOUT_MS => Vec::new(),
        Some(t) => vec![format!("its timeout is {t} ms; pyro's calls can take {TOOL_TIMEOUT_MS} ms")],
        None => match env_ms("MCP_TOOL_TIMEOUT") {
            Some(t) if t >= TOOL_TIMEOUT_MS => Vec::new(),
            Some(t) => vec![format!(
                "it has no per-server timeout, and MCP_TOOL_TIMEOUT={t} ms is below the {TOOL_TIMEOUT_MS} ms pyro's calls can take"
            )],
            None => vec![format!("it has no per-server timeout (pyro's calls can take {TOOL_TIMEOUT_MS} ms)")],
        },
    }
}

/// pyro's server object, keeping the keys of `existing` we do not manage (env, other
/// headers, ...) and a larger timeout the user chose, and dropping the other transport's keys.
pub fn server_json(want: &Entry, existing: Option<&Value>) -> Value {
    let mut v = existing.filter(|e| e.is_object()).cloned().unwrap_or_else(|| serde_json::json!({}));
    let timeout = json_ms(&v["timeout"]).filter(|t| *t >= TOOL_TIMEOUT_MS).unwrap_or(TOOL_TIMEOUT_MS);
    let o = v.as_object_mut().expect("an object");
    match want {
        Entry::Stdio { command, args } => {
            for k in ["url", "headers", "headersHelper", "oauth"] {
                o.shift_remove(k);
            }
            o.insert("type".into(), "stdio".into());
            o.insert("command".into(), command.clone().into());
            o.insert("args".into(), args.clone().into());
            if !o.get("env").is_some_and(|e| e.is_object()) {
                o.insert("env".into(), serde_json::json!({}));
            }
        }
        Entry::Remote { url, auth } => {
            for k in ["command", "args", "env", "cwd"] {
                o.shift_remove(k);
            }
            o.insert("type".into(), "http".into());
            o.insert("url".into(), url.clone().into());
            auth.set_header(o, |name| format!("${{{name}}}"));
        }
    }
    o.insert("timeout".into(), timeout.into());
    v
}

/// Write pyro's entry in `target`'s scope (default: user). `broken`: `.claude.json` does
/// not parse, so the CLI cannot be trusted with it and we rewrite it ourselves.
pub fn write(want: &Entry, target: Option<&Found>, broken: bool) -> Result<Written, Error> {
    let scope = target.map(|f| f.scope).unwrap_or("user");
    if scope == "project" {
        let path = target.map(|f| f.path.clone()).unwrap_or_else(|| PathBuf::from(".mcp.json"));
        let mut v = files::read_json(&path)?.unwrap_or_else(|| serde_json::json!({}));
        if !v["mcpServers"].is_object() {
            v["mcpServers"] = serde_json::json!({});
        }
        v["mcpServers"][ENTRY] = server_json(want, Some(&v["mcpServers"][ENTRY]));
        let backup = files::backup(&path)?;
        files::write_config(&path, &files::json_text(&v))?;
        return Ok(Written { method: format!("edited {}", path.display()), path, scope, backup, manual: None });
    }
    let path = config_file()?;
    let cfg = if broken { None } else { files::read_json(&path)? };
    let key = project_key()?;
    let existing = cfg.as_ref().map(|c| match scope {
        "local" => c["projects"][&key]["mcpServers"][ENTRY].clone(),
        _ => c["mcpServers"][ENTRY].clone(),
    });
    let server = server_json(want, existing.as_ref());
    let backup = files::backup(&path)?;
    // A remote entry's token must not appear on a command line.
    let remote = matches!(want, Entry::Remote { .. });
    if !broken && !remote {
        if let Some(claude) = pyro_mcp::internal::which("claude") {
            // add-json takes the whole object, timeout included; add refuses an existing name.
            let _ = Command::new(&claude).args(["mcp", "remove", ENTRY, "--scope", scope]).output();
            let out = Command::new(&claude)
                .args(["mcp", "add-json", "--scope", scope, ENTRY, &server.to_string()])
                .output()
                .map_err(|e| Error::internal(format!("running claude: {e}")))?;
            if !out.status.success() {
                return Err(Error::internal(format!(
                    "claude mcp add-json failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            return Ok(Written {
                method: format!("claude mcp add-json --scope {scope}"),
                path,
                scope,
                backup,
                manual: None,
            });
        }
    }
    let mut v = cfg.filter(|v| v.is_object()).unwrap_or_else(|| serde_json::json!({}));
    let servers = match scope {
        "local" => {
            if !v["projects"].is_object() {
                v["projects"] = serde_json::json!({});
            }
            if !v["projects"][&key].is_object() {
                v["projects"][&key] = serde_json::json!({});
            }
            &mut v["projects"][&key]["mcpServers"]
        }
        _ => &mut v["mcpServers"],
    };
    if !servers.is_object() {
        *servers = serde_json::json!({});
    }
    servers[ENTRY] = server;
    // .claude.json may hold a token now (and always holds Claude Code's own account data).
    files::write_private(&path, &files::json_text(&v))?;
    Ok(Written { method: format!("edited {}", path.display()), path, scope, backup, manual: None })
}
