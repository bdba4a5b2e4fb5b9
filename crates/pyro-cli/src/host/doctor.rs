//! `pyro host doctor`: for each host, the entry it will actually use, and whether that entry
//! runs this pyro, gives pyro's calls enough time, and starts a working server; for a remote
//! entry, whether its URL answers and its token works (`remote_check`).

use super::probe_http::{self, Failure};
use super::{claude, probe, Auth, Entry, Found, Host};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

/// One host's verdict.
#[derive(Debug, Serialize)]
pub struct Row {
    pub host: &'static str,
    /// The file holding the entry the host uses (or where connect would write one).
    pub config_path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<&'static str>,
    pub configured: bool,
    /// Configured and nothing wrong (true for a host that is not configured at all).
    pub ok: bool,
    pub server_ok: Option<bool>,
    /// A remote entry's URL, and the name and version of the server that answered there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_timeout_ms: Option<u64>,
    pub detail: String,
    pub problems: Vec<String>,
    pub notes: Vec<String>,
    pub fix: Option<String>,
}

pub fn check(host: Host, want: &Entry) -> Row {
    let name = host.name();
    let mut row = Row {
        host: name,
        config_path: PathBuf::new(),
        scope: None,
        configured: false,
        ok: true,
        server_ok: None,
        url: None,
        server_version: None,
        tool_timeout_ms: None,
        startup_timeout_ms: None,
        detail: "not configured".into(),
        problems: Vec::new(),
        notes: Vec::new(),
        fix: Some(format!("pyro host connect {name}")),
    };
    let insp = match host.inspect() {
        Ok(i) => i,
        Err(e) => {
            row.ok = false;
            row.detail = format!("cannot read its config: {}", e.message);
            row.fix = e.hint;
            return row;
        }
    };
    row.config_path = insp.default_path.clone();
    row.notes = insp.notes.clone();
    let mut fixes = Vec::new();
    if let Some(b) = &insp.broken {
        row.config_path = b.path.clone();
        row.detail = format!("config is broken: {}", b.message);
        let fix =
            if b.repairable { format!("pyro host repair {name}") } else { format!("fix {} by hand", b.path.display()) };
        row.fix = Some(fix.clone());
        if insp.used.is_none() {
            return row;
        }
        row.problems.push(row.detail.clone());
        fixes.push(fix);
    }
    let Some(used) = &insp.used else { return row };
    row.configured = true;
    row.config_path = used.path.clone();
    row.scope = Some(used.scope);
    row.tool_timeout_ms = used.tool_timeout_ms;
    row.startup_timeout_ms = used.startup_timeout_ms;

    if let Entry::Stdio { command, .. } = &used.entry {
        if command != want.command() {
            row.problems.push(format!("it runs another program: {command}"));
        }
    }
    row.problems.extend(used.issues.iter().cloned());
    for p in host.limit_problems(used) {
        row.problems.push(p);
    }
    let entry_bad = !row.problems.is_empty();
    // What repair cannot fix for a remote entry (the server, the token): said by remote_check.
    let mut remote_fixes = Vec::new();
    let stdio = matches!(used.entry, Entry::Stdio { .. });
    let server = match &used.entry {
        Entry::Stdio { .. } => probe::check(&used.entry, Duration::from_secs(15))
            .map(|n| format!("server answers with {n} tools"))
            .map_err(|why| format!("its server does not work: {why}")),
        Entry::Remote { .. } => remote_check(host, used, &mut row, &mut remote_fixes),
    };
    row.server_ok = Some(server.is_ok());
    if let Err(why) = &server {
        row.problems.push(why.clone());
    }
    // Repair rewrites the entry: stale, refused or too-low limits, or a local server that
    // does not start.
    let mut repair = entry_bad || (stdio && server.is_err());
    // Name what the used entry hides; a broken one hiding a good one is the classic trap.
    for s in &insp.shadowed {
        let good = s.entry.command() == want.command()
            && !s.disabled
            && s.issues.is_empty()
            && host.limit_problems(s).is_empty();
        if good && stdio && (entry_bad || server.is_err()) {
            repair = true;
            row.problems.push(format!(
                "this stale {} entry ({}) shadows a good {} entry ({})",
                used.scope,
                used.path.display(),
                s.scope,
                s.path.display()
            ));
        } else if !s.disabled {
            row.notes.push(format!("it shadows the {} entry in {}", s.scope, s.path.display()));
        }
    }
    if repair && !fixes.contains(&format!("pyro host repair {name}")) {
        fixes.push(format!("pyro host repair {name}"));
    }
    fixes.extend(remote_fixes);
    if host == Host::ClaudeCode {
        for (p, f) in claude::env_problems() {
            row.problems.push(p);
            fixes.push(f);
        }
    }
    row.ok = row.problems.is_empty();
    row.fix = (!fixes.is_empty()).then(|| fixes.join("; then "));
    let place = format!("{} entry in {}", used.scope, used.path.display());
    row.detail = match (&server, row.ok) {
        (Ok(said), true) => format!("configured ({place}); {said}"),
        (Ok(said), false) => format!("configured ({place}); {said}, but {}", row.problems.join("; ")),
        (Err(_), _) => format!("configured ({place}), but {}", row.problems.join("; ")),
    };
    row
}

/// A remote entry: does its URL answer, and does the server take its token? What the host
/// will send is what is sent: the token in the entry, or the one in the environment variable
/// it names (as seen from this shell, where the host presumably starts).
fn remote_check(host: Host, used: &Found, row: &mut Row, fixes: &mut Vec<String>) -> Result<String, String> {
    let Entry::Remote { url, auth } = &used.entry else { return Err("not a remote entry".into()) };
    let name = host.name();
    row.url = Some(url.clone());
    let token = match auth {
        Auth::Bearer(t) => Some(t.0.clone()),
        // A project's file may come with the repository: its URL gets none of this shell's
        // secrets (the host asks before using a project's server; doctor does not ask).
        Auth::Env(var) if used.scope == "project" => {
            row.notes.push(format!("${var} is not sent to the URL of a project file's entry; checked without a token"));
            None
        }
        Auth::Env(var) => match std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
            Some(v) => Some(v.trim().to_string()),
            None => {
                row.problems.push(format!("{var} is not set here, and {name} reads the server's token from it"));
                fixes.push(format!(
                    "export {var}=\"$(cat TOKEN_FILE)\" (the token `pyro mcp token` prints on the server) in the shell that starts {name}"
                ));
                None
            }
        },
        Auth::None => {
            row.problems.push("it sends no bearer token".into());
            None
        }
    };
    let reconnect = format!(
        "put the token `pyro mcp token` prints on the server in a file only you can read, then `pyro host connect {name} --url {url} --token-file FILE`"
    );
    match probe_http::check(url, token.as_deref(), Duration::from_secs(5)) {
        Ok(a) => {
            row.server_version = Some(format!("{} {}", a.name, a.version));
            if a.name != "pyro-mcp" {
                row.notes.push(format!("the server there calls itself {:?}, not pyro-mcp", a.name));
            } else if a.version != env!("CARGO_PKG_VERSION") {
                row.notes.push(format!(
                    "the server runs pyro {}, this pyro is {}",
                    a.version,
                    env!("CARGO_PKG_VERSION")
                ));
            }
            Ok(format!("{url} answers: {} {}, {} tools", a.name, a.version, a.tools))
        }
        // A project entry checked without its token: a 401 says the server is there.
        Err(Failure::Unauthorized) if token.is_none() && matches!(auth, Auth::Env(_)) && used.scope == "project" => {
            Ok(format!("{url} answers (401 without the token, as expected)"))
        }
        // No token to send (already said why): the server asking for one is no news.
        Err(Failure::Unauthorized) if token.is_none() => {
            if matches!(auth, Auth::None) {
                fixes.push(reconnect);
            }
            Err(format!("{url}: 401: the server wants a bearer token"))
        }
        Err(f) => {
            let fix = match (&f, auth) {
                (Failure::Unreachable(_), _) => format!(
                    "start `pyro mcp serve --http` on the server (and the SSH tunnel if you use one: ssh -N -L PORT:127.0.0.1:PORT BOX), or fix the URL with `pyro host connect {name} --url URL`"
                ),
                (Failure::Unauthorized, Auth::Env(var)) => {
                    format!("set {var} to the token `pyro mcp token` prints on the server")
                }
                (Failure::Unauthorized, _) => reconnect,
                (Failure::Forbidden, _) => {
                    "on the server, add --allowed-host NAME (the host name in this URL) to `pyro mcp serve --http`".into()
                }
                _ => format!(
                    "check the URL: pyro serves MCP at http(s)://HOST:PORT/mcp (`pyro host connect {name} --url URL`)"
                ),
            };
            fixes.push(fix);
            Err(format!("{url}: {f}"))
        }
    }
}

/// Text rendering: one line per host, then its problems, notes and fix.
pub fn print(rows: &[Row]) {
    for r in rows {
        println!("{:<12} {}", r.host, r.detail);
        for n in &r.notes {
            println!("{:<12} note: {n}", "");
        }
        if let Some(f) = &r.fix {
            println!("{:<12} fix: {f}", "");
        }
    }
}
