//! `pyro host doctor`: for each host, the entry it will actually use, and whether that entry
//! runs this pyro, gives pyro's calls enough time, and starts a working server.

use super::{claude, probe, Entry, Host};
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

    let stale = used.entry.command != want.command;
    if stale {
        row.problems.push(format!("it runs another program: {}", used.entry.command));
    }
    for p in host.limit_problems(used) {
        row.problems.push(p);
    }
    let entry_bad = !row.problems.is_empty();
    let server = probe::check(&used.entry, Duration::from_secs(15));
    row.server_ok = Some(server.is_ok());
    if let Err(why) = &server {
        row.problems.push(format!("its server does not work: {why}"));
    }
    // Name what the used entry hides; a broken one hiding a good one is the classic trap.
    for s in &insp.shadowed {
        let good = s.entry.command == want.command && !s.disabled && host.limit_problems(s).is_empty();
        if good && (entry_bad || server.is_err()) {
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
    if row.problems.len() > fixes.len() {
        fixes.push(format!("pyro host repair {name}"));
    }
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
        (Ok(n), true) => format!("configured ({place}); server answers with {n} tools"),
        (Ok(n), false) => {
            format!("configured ({place}); server answers with {n} tools, but {}", row.problems.join("; "))
        }
        (Err(_), _) => format!("configured ({place}), but {}", row.problems.join("; ")),
    };
    row
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
