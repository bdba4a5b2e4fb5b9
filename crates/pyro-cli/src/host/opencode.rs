//! OpenCode: pyro's entry in `opencode.json` / `opencode.jsonc`, global
//! (`$XDG_CONFIG_HOME/opencode/`, default `~/.config/opencode/`), `$OPENCODE_CONFIG`, and the
//! project's files from the git work tree down to the working directory. OpenCode merges them
//! and a later file wins, so the entry it uses is the one in the last file that has it.
//!
//! Two layouts are read:
//! - `mcp.pyro = {type: "local", command: [...], enabled, timeout}` (OpenCode 1.x docs):
//!   `timeout` bounds startup and the tools listing; tool calls are bounded by the global
//!   `experimental.mcp_timeout`;
//! - `mcp.servers.pyro = {type: "local", command: [...], disabled, timeout: {startup,
//!   request}}` (OpenCode's V2 docs), with `mcp.timeout` as the default for every server.
//!
//! A remote entry is `{type: "remote", url, headers: {Authorization: "Bearer <token>"}, oauth:
//! false, ...}` (OpenCode's remote schema is strict: the local keys `command` and
//! `environment` are dropped; `oauth: false` stops OpenCode from starting an OAuth flow on a
//! 401). A global file that pyro creates for it is 0600; a `{env:NAME}` token is read as a
//! reference to that variable, as OpenCode substitutes it.
//!
//! Files are parsed as JSONC (comments, trailing commas), as OpenCode does. pyro edits only a
//! file that is plain JSON: rewriting JSONC would lose its comments, so for those it hands back
//! the snippet to merge by hand.

use super::entry::{
    bearer_auth, Auth, Broken, Entry, Found, Inspection, Written, ENTRY, STARTUP_TIMEOUT_MS, TOOL_TIMEOUT_MS,
};
use super::files::{self, json_ms};
use pyro_mcp::Error;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

const SCHEMA: &str = "https://opencode.ai/config.json";

/// One config file OpenCode reads.
struct Layer {
    path: PathBuf,
    scope: &'static str,
    value: Value,
}

fn global_dir() -> Result<PathBuf, Error> {
    Ok(files::env_dir("XDG_CONFIG_HOME").unwrap_or(files::home()?.join(".config")).join("opencode"))
}

/// The files OpenCode reads, lowest precedence first.
fn candidates() -> Result<Vec<(PathBuf, &'static str)>, Error> {
    let g = global_dir()?;
    let mut out = vec![(g.join("opencode.json"), "global"), (g.join("opencode.jsonc"), "global")];
    if let Some(p) = files::env_dir("OPENCODE_CONFIG") {
        out.push((p, "custom"));
    }
    let cwd = files::cwd()?;
    let root = files::project_root(&cwd);
    // From the work tree's root down to cwd; OpenCode looks up `opencode.jsonc` first and
    // `opencode.json` second and merges each list root first, so a `.json` wins.
    let mut dirs: Vec<&Path> = cwd.ancestors().take_while(|d| d.starts_with(&root)).collect();
    dirs.reverse();
    for name in ["opencode.jsonc", "opencode.json"] {
        out.extend(dirs.iter().map(|d| (d.join(name), "project")));
    }
    Ok(out)
}

/// Parse a config file: strict JSON when it is, else JSONC. The flag: it has comments or
/// trailing commas (or is named `.jsonc`), so pyro does not rewrite it.
fn parse(path: &Path) -> Result<Option<(Value, bool)>, Error> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    let named_jsonc = path.extension().is_some_and(|e| e == "jsonc");
    if text.trim().is_empty() {
        return Ok(Some((json!({}), named_jsonc)));
    }
    let (v, jsonc) = match serde_json::from_str::<Value>(&text) {
        Ok(v) => (v, named_jsonc),
        Err(_) => {
            let v: Value = jsonc_parser::parse_to_serde_value(&text, &Default::default())
                .map_err(|e| Error::invalid(format!("{} is not valid JSON or JSONC: {e}", path.display())))?;
            (v, true)
        }
    };
    if !v.is_object() {
        return Err(Error::invalid(format!("{} is not a JSON object", path.display())));
    }
    Ok(Some((v, jsonc)))
}

/// `mcp.servers` is the V2 layout's map, unless it is a 1.x server that happens to be
/// named "servers" (it would have a `type`).
fn v2_servers(v: &Value) -> Option<&Value> {
    let s = &v["mcp"]["servers"];
    (s.is_object() && s.get("type").is_none()).then_some(s)
}

/// OpenCode substitutes `{env:NAME}` in config values.
fn env_ref(token: &str) -> Option<String> {
    let name = token.strip_prefix("{env:")?.strip_suffix('}')?;
    (!name.is_empty()).then(|| name.to_string())
}

fn entry_of(e: &Value) -> Option<Entry> {
    if e["type"] == "remote" {
        let url = e["url"].as_str()?.to_string();
        return Some(Entry::Remote {
            url,
            auth: bearer_auth(super::claude::header(&e["headers"], "authorization"), env_ref),
        });
    }
    let words: Vec<String> = e["command"].as_array()?.iter().filter_map(|w| w.as_str().map(String::from)).collect();
    words.split_first().map(|(c, a)| Entry::Stdio { command: c.clone(), args: a.to_vec() })
}

/// pyro's entry in one layer; v1 entries get the tool limit from `experimental.mcp_timeout`
/// later, as that key may sit in another file.
fn found_in(l: &Layer) -> Option<(Found, bool)> {
    if let Some(servers) = v2_servers(&l.value) {
        let e = &servers[ENTRY];
        let entry = entry_of(e)?;
        let defaults = &l.value["mcp"]["timeout"];
        let pick = |k: &str| json_ms(&e["timeout"][k]).or_else(|| json_ms(&defaults[k]));
        let f = Found {
            entry,
            scope: l.scope,
            path: l.path.clone(),
            tool_timeout_ms: pick("request"),
            startup_timeout_ms: pick("startup"),
            disabled: e["disabled"].as_bool() == Some(true),
            issues: Vec::new(),
        };
        return Some((f, true));
    }
    let e = &l.value["mcp"][ENTRY];
    let f = Found {
        entry: entry_of(e)?,
        scope: l.scope,
        path: l.path.clone(),
        tool_timeout_ms: None,
        startup_timeout_ms: json_ms(&e["timeout"]),
        disabled: e["enabled"].as_bool() == Some(false),
        issues: Vec::new(),
    };
    Some((f, false))
}

fn layers() -> Result<(Vec<Layer>, Option<Broken>), Error> {
    let mut out = Vec::new();
    for (path, scope) in candidates()? {
        match parse(&path) {
            Ok(Some((value, _))) => out.push(Layer { path, scope, value }),
            Ok(None) => {}
            Err(e) => return Ok((out, Some(Broken { path, message: e.message, repairable: false }))),
        }
    }
    Ok((out, None))
}

pub fn inspect() -> Result<Inspection, Error> {
    let g = global_dir()?;
    let (layers, broken) = layers()?;
    let jsonc = g.join("opencode.jsonc");
    let default_path =
        if jsonc.exists() && !g.join("opencode.json").exists() { jsonc } else { g.join("opencode.json") };
    let mut insp = Inspection { default_path, broken, ..Default::default() };
    // The last file that sets it wins, as with any key.
    let mcp_timeout = layers.iter().rev().find_map(|l| json_ms(&l.value["experimental"]["mcp_timeout"]));
    let mut all: Vec<Found> = layers
        .iter()
        .filter_map(found_in)
        .map(|(mut f, v2)| {
            if !v2 {
                f.tool_timeout_ms = mcp_timeout;
            }
            f
        })
        .collect();
    insp.default = all.iter().rev().find(|f| f.scope == "global").cloned();
    insp.used = all.pop();
    all.reverse();
    insp.shadowed = all;
    Ok(insp)
}

pub fn limit_problems(f: &Found) -> Vec<String> {
    let mut p = Vec::new();
    match f.tool_timeout_ms {
        None => p.push(format!(
            "no tool-call timeout is set (experimental.mcp_timeout, or timeout.request in the mcp.servers layout); pyro's calls can take {TOOL_TIMEOUT_MS} ms"
        )),
        Some(t) if t < TOOL_TIMEOUT_MS => {
            p.push(format!("its tool-call timeout is {t} ms; pyro's calls can take {TOOL_TIMEOUT_MS} ms"))
        }
        _ => {}
    }
    match f.startup_timeout_ms {
        None => p.push(format!(
            "no startup timeout is set (OpenCode's default is 5000 ms; pyro asks for {STARTUP_TIMEOUT_MS})"
        )),
        Some(t) if t < STARTUP_TIMEOUT_MS => {
            p.push(format!("its startup timeout is {t} ms, below {STARTUP_TIMEOUT_MS}"))
        }
        _ => {}
    }
    if f.disabled {
        p.push("it is disabled".into());
    }
    p
}

fn at_least(v: &Value, min: u64) -> u64 {
    json_ms(v).filter(|t| *t >= min).unwrap_or(min)
}

/// Set the transport's keys of one server object and drop the other transport's (OpenCode
/// refuses unknown keys).
fn set_transport(e: &mut Value, want: &Entry, v2: bool) {
    let o = e.as_object_mut().expect("an object");
    match want {
        Entry::Stdio { .. } => {
            for k in ["url", "headers", "oauth"] {
                o.shift_remove(k);
            }
            o.insert("type".into(), "local".into());
            o.insert("command".into(), want.argv().into());
        }
        Entry::Remote { url, auth } => {
            for k in ["command", "environment"] {
                o.shift_remove(k);
            }
            o.insert("type".into(), "remote".into());
            o.insert("url".into(), url.clone().into());
            auth.set_header(o, |name| format!("{{env:{name}}}"));
            // The 1.x schema's way to say "a static token, no OAuth"; V2's is not documented.
            if !v2 {
                o.insert("oauth".into(), false.into());
            }
        }
    }
}

/// Put pyro's entry in a config object, in the layout the object already uses, keeping
/// every other key and larger timeouts the user chose.
fn set_entry(v: &mut Value, want: &Entry, v2: bool) {
    if !v["mcp"].is_object() {
        v["mcp"] = json!({});
    }
    if v2 {
        let e = &mut v["mcp"]["servers"][ENTRY];
        if !e.is_object() {
            *e = json!({});
        }
        set_transport(e, want, true);
        if let Some(o) = e.as_object_mut() {
            o.remove("disabled");
        }
        let startup = at_least(&e["timeout"]["startup"], STARTUP_TIMEOUT_MS);
        let request = at_least(&e["timeout"]["request"], TOOL_TIMEOUT_MS);
        if !e["timeout"].is_object() {
            e["timeout"] = json!({});
        }
        e["timeout"]["startup"] = startup.into();
        e["timeout"]["request"] = request.into();
        return;
    }
    let e = &mut v["mcp"][ENTRY];
    if !e.is_object() {
        *e = json!({});
    }
    set_transport(e, want, false);
    e["enabled"] = true.into();
    e["timeout"] = at_least(&e["timeout"], STARTUP_TIMEOUT_MS).into();
    if !v["experimental"].is_object() {
        v["experimental"] = json!({});
    }
    v["experimental"]["mcp_timeout"] = at_least(&v["experimental"]["mcp_timeout"], TOOL_TIMEOUT_MS).into();
}

/// The `print-config opencode` object: the layout of OpenCode's current (1.x) docs.
pub fn snippet(want: &Entry) -> Value {
    let mut v = json!({ "$schema": SCHEMA });
    set_entry(&mut v, want, false);
    v
}

/// Write pyro's entry into `target`'s file (default: the global config). A JSONC file is
/// left alone and the snippet for it returned instead.
pub fn write(want: &Entry, target: Option<&Found>) -> Result<Written, Error> {
    let path = match target {
        Some(f) => f.path.clone(),
        None => inspect()?.default_path,
    };
    let scope = target.map(|f| f.scope).unwrap_or("global");
    let (mut v, jsonc) = parse(&path)?.unwrap_or_else(|| (json!({ "$schema": SCHEMA }), false));
    let v2 = v2_servers(&v).is_some();
    if jsonc {
        let mut s = json!({});
        set_entry(&mut s, want, v2);
        let text = files::json_text(&s);
        return Ok(Written { method: "manual".into(), path, scope, backup: None, manual: Some(text) });
    }
    set_entry(&mut v, want, v2);
    let backup = files::backup(&path)?;
    if matches!(want, Entry::Remote { auth: Auth::Bearer(_), .. }) {
        files::write_private(&path, &files::json_text(&v))?;
    } else {
        files::write_config(&path, &files::json_text(&v))?;
    }
    Ok(Written { method: format!("edited {}", path.display()), path, scope, backup, manual: None })
}
