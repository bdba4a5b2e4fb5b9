//! Codex: `[mcp_servers.pyro]` in `$CODEX_HOME/config.toml` (default `~/.codex`), with
//! `startup_timeout_sec` and `tool_timeout_sec` (Codex's defaults, 10 s and 60 s, are far below
//! pyro's longest call).
//!
//! A new entry is added through `codex mcp add` when the CLI is installed (so Codex validates
//! it); that command takes no timeout flags, so the two keys are then set with toml_edit. An
//! existing table is edited in place with toml_edit instead, because `codex mcp add` replaces
//! the whole table and would drop keys the user set there (env, enabled_tools, ...). Comments
//! and other tables stay as they were.
//!
//! A remote entry (Streamable HTTP) is `url = ...` with `bearer_token_env_var =
//! "PYRO_MCP_TOKEN"`: Codex reads the token from that variable when it starts and refuses an
//! inline `bearer_token`, so no token is written (`codex mcp add pyro --url URL
//! --bearer-token-env-var PYRO_MCP_TOKEN` writes the same two keys, checked in codex-cli
//! 0.171.0). Codex rejects a table that mixes the two transports' keys, so switching drops the
//! other transport's keys.

use super::entry::{
    bearer_auth, Auth, Broken, Entry, Found, Inspection, Written, ENTRY, STARTUP_TIMEOUT_MS, TOOL_TIMEOUT_MS,
};
use super::files;
use pyro_mcp::mcp::{MAX_CALL_S, STARTUP_TIMEOUT_S};
use pyro_mcp::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use toml_edit::{value, Array, DocumentMut, Item, Table};

pub fn config_file() -> Result<PathBuf, Error> {
    Ok(files::env_dir("CODEX_HOME").unwrap_or(files::home()?.join(".codex")).join("config.toml"))
}

/// A seconds value (integer or float, as Codex accepts) in ms.
fn secs_ms(i: Option<&Item>) -> Option<u64> {
    let v = i?.as_value()?;
    v.as_integer().map(|s| s.max(0) as u64 * 1000).or_else(|| v.as_float().map(|s| (s.max(0.0) * 1000.0) as u64))
}

fn parse(path: &Path) -> Result<Option<DocumentMut>, Error> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    text.parse::<DocumentMut>()
        .map(Some)
        .map_err(|e| Error::invalid(format!("{} is not valid TOML: {}", path.display(), e.to_string().trim())))
}

pub fn inspect() -> Result<Inspection, Error> {
    let path = config_file()?;
    let mut insp = Inspection { default_path: path.clone(), ..Default::default() };
    let doc = match parse(&path) {
        Ok(d) => d,
        Err(e) => {
            insp.broken = Some(Broken { path, message: e.message, repairable: true });
            return Ok(insp);
        }
    };
    let t = doc.as_ref().and_then(|d| d.get("mcp_servers")).and_then(|s| s.get(ENTRY));
    if let Some(t) = t {
        let (entry, issues) = entry_of(t);
        let f = Found {
            entry,
            issues,
            scope: "user",
            path,
            tool_timeout_ms: secs_ms(t.get("tool_timeout_sec")),
            startup_timeout_ms: secs_ms(t.get("startup_timeout_sec")),
            disabled: t.get("enabled").and_then(|e| e.as_bool()) == Some(false),
        };
        insp.used = Some(f.clone());
        insp.default = Some(f);
    }
    Ok(insp)
}

/// The keys only a stdio server has, and only a Streamable HTTP server has.
const STDIO_KEYS: &[&str] = &["command", "args", "env", "env_vars", "cwd"];
const HTTP_KEYS: &[&str] =
    &["url", "bearer_token", "bearer_token_env_var", "http_headers", "env_http_headers", "http_headers_helper"];

/// pyro's table as Codex reads it, and what Codex would refuse in it.
fn entry_of(t: &Item) -> (Entry, Vec<String>) {
    let s = |k: &str| t.get(k).and_then(|v| v.as_str()).map(String::from);
    let Some(url) = s("url") else {
        let args = t.get("args").and_then(|a| a.as_array());
        let args = args.map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect());
        return (
            Entry::Stdio { command: s("command").unwrap_or_default(), args: args.unwrap_or_default() },
            Vec::new(),
        );
    };
    let mut issues = Vec::new();
    if STDIO_KEYS.iter().any(|k| t.get(k).is_some()) {
        issues.push("it mixes a url with stdio keys (command, args, env), which Codex refuses".to_string());
    }
    let header = t.get("http_headers").and_then(|h| h.get("Authorization").or_else(|| h.get("authorization")));
    let auth = if let Some(v) = s("bearer_token_env_var") {
        Auth::Env(v)
    } else if let Some(tok) = s("bearer_token") {
        issues.push("it has an inline bearer_token, which Codex refuses (it takes bearer_token_env_var)".to_string());
        Auth::Bearer(super::entry::Secret(tok))
    } else {
        bearer_auth(header.and_then(|h| h.as_str()), |_| None)
    };
    (Entry::Remote { url, auth }, issues)
}

pub fn limit_problems(f: &Found) -> Vec<String> {
    let mut p = Vec::new();
    match f.tool_timeout_ms {
        None => p.push(format!(
            "tool_timeout_sec is not set (Codex's default is 60 s; pyro's calls can take {MAX_CALL_S} s)"
        )),
        Some(t) if t < TOOL_TIMEOUT_MS => {
            p.push(format!("tool_timeout_sec = {} is below the {MAX_CALL_S} s pyro's calls can take", t / 1000))
        }
        _ => {}
    }
    match f.startup_timeout_ms {
        None => p.push(format!(
            "startup_timeout_sec is not set (Codex's default is 10 s; pyro asks for {STARTUP_TIMEOUT_S} s)"
        )),
        Some(t) if t < STARTUP_TIMEOUT_MS => {
            p.push(format!("startup_timeout_sec = {} is below {STARTUP_TIMEOUT_S} s", t / 1000))
        }
        _ => {}
    }
    if f.disabled {
        p.push("it is disabled (enabled = false)".into());
    }
    p
}

/// Set pyro's command and args (or url and token variable) and timeouts in `t`, keeping its
/// other keys and a larger timeout the user chose.
fn fill(t: &mut Table, want: &Entry) {
    match want {
        Entry::Stdio { command, args } => {
            for k in HTTP_KEYS {
                t.remove(k);
            }
            t["command"] = value(command.clone());
            let mut a = Array::new();
            for x in args {
                a.push(x.as_str());
            }
            t["args"] = value(a);
        }
        Entry::Remote { url, auth } => {
            for k in STDIO_KEYS.iter().chain(["bearer_token"].iter()) {
                t.remove(k);
            }
            if let Some(h) = t.get_mut("http_headers").and_then(|h| h.as_table_like_mut()) {
                h.remove("Authorization");
                h.remove("authorization");
            }
            t["url"] = value(url.clone());
            match auth {
                Auth::Env(name) => t["bearer_token_env_var"] = value(name.clone()),
                _ => {
                    t.remove("bearer_token_env_var");
                }
            }
        }
    }
    if secs_ms(t.get("startup_timeout_sec")).is_none_or(|ms| ms < STARTUP_TIMEOUT_MS) {
        t["startup_timeout_sec"] = value(STARTUP_TIMEOUT_S as i64);
    }
    if secs_ms(t.get("tool_timeout_sec")).is_none_or(|ms| ms < TOOL_TIMEOUT_MS) {
        t["tool_timeout_sec"] = value(MAX_CALL_S as i64);
    }
    if t.get("enabled").and_then(|e| e.as_bool()) == Some(false) {
        t.remove("enabled");
    }
}

/// Put pyro's table in `doc`, creating `[mcp_servers]` implicitly (no empty header).
fn set_entry(doc: &mut DocumentMut, want: &Entry) {
    if !doc.contains_table("mcp_servers") {
        let mut t = Table::new();
        t.set_implicit(true);
        doc["mcp_servers"] = Item::Table(t);
    }
    let servers = doc["mcp_servers"].as_table_mut().expect("mcp_servers is a table");
    if !servers.get(ENTRY).is_some_and(|t| t.is_table()) {
        servers.insert(ENTRY, Item::Table(Table::new()));
    }
    fill(servers[ENTRY].as_table_mut().expect("a table"), want);
}

/// The `print-config codex` text: built with toml_edit, so any path (spaces, quotes,
/// backslashes, unicode) comes out as valid TOML.
pub fn snippet(want: &Entry) -> String {
    let mut doc = DocumentMut::new();
    set_entry(&mut doc, want);
    doc.to_string()
}

/// `broken`: config.toml does not parse; it is rewritten from scratch (the backup keeps it).
pub fn write(want: &Entry, broken: bool) -> Result<Written, Error> {
    let path = config_file()?;
    let doc = if broken { None } else { parse(&path)? };
    let has_table = doc.as_ref().and_then(|d| d.get("mcp_servers")).and_then(|s| s.get(ENTRY)).is_some();
    let backup = files::backup(&path)?;
    let mut method = format!("edited {}", path.display());
    if !broken && !has_table {
        if let Some(codex) = pyro_mcp::internal::which("codex") {
            let mut c = Command::new(&codex);
            c.args(["mcp", "add", ENTRY]);
            match want {
                Entry::Stdio { command, args } => c.arg("--").arg(command).args(args),
                Entry::Remote { url, auth } => match auth {
                    Auth::Env(name) => c.args(["--url", url, "--bearer-token-env-var", name]),
                    // Never a token on a command line; Codex takes none inline anyway.
                    _ => c.args(["--url", url]),
                },
            };
            let out = c.output().map_err(|e| Error::internal(format!("running codex: {e}")))?;
            if !out.status.success() {
                return Err(Error::internal(format!(
                    "codex mcp add failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            method = "codex mcp add, then the timeouts with toml_edit".into();
        }
    }
    // Re-read: the CLI may have rewritten the file.
    let mut doc = if broken { DocumentMut::new() } else { parse(&path)?.unwrap_or_default() };
    set_entry(&mut doc, want);
    files::write_config(&path, &doc.to_string())?;
    Ok(Written { method, path, scope: "user", backup, manual: None })
}
