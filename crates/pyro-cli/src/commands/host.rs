//! `pyro host connect|print-config|doctor|repair`: set chat hosts up to run `pyro mcp serve`.

use crate::host::{self, probe, Entry, Host};
use crate::render;
use pyro_mcp::Error;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum HostCmd {
    /// Add pyro's MCP server to a host (through its CLI when installed, else its config file)
    Connect {
        #[arg(value_enum)]
        host: Host,
        /// MCP profile the host should get (default: workspace-core)
        #[arg(long)]
        profile: Option<String>,
    },
    /// Print the config snippet for a host that is configured by hand
    PrintConfig {
        #[arg(value_enum)]
        host: Host,
        #[arg(long)]
        profile: Option<String>,
    },
    /// Is each host configured, and does its entry start a working server?
    Doctor,
    /// Rewrite a stale or broken entry (a backup is kept)
    Repair {
        #[arg(value_enum)]
        host: Host,
        #[arg(long)]
        profile: Option<String>,
    },
}

/// `host doctor --json`.
#[derive(serde::Serialize)]
struct HostDoctor {
    ok: bool,
    hosts: Vec<HostRow>,
}

#[derive(serde::Serialize)]
struct HostRow {
    host: &'static str,
    config_path: std::path::PathBuf,
    configured: bool,
    server_ok: Option<bool>,
    detail: String,
    fix: Option<String>,
}

fn check_profile(p: &Option<String>) -> Result<(), Error> {
    match p.as_deref() {
        None | Some("vm-run" | "workspace-core" | "workspace-full") => Ok(()),
        Some(other) => {
            Err(Error::invalid(format!("unknown profile '{other}'")).hint("vm-run, workspace-core or workspace-full"))
        }
    }
}

fn print_outcome(o: &host::Outcome, json: bool) {
    if json {
        render::json(o);
    } else {
        println!("{}: {} ({})", o.host, o.message, o.method);
        println!("  config: {}", o.config_path.display());
        if let Some(b) = &o.backup {
            println!("  backup: {}", b.display());
        }
        println!("  runs:   {} {}", o.entry.command, o.entry.args.join(" "));
    }
}

pub fn main(c: HostCmd, json: bool) -> i32 {
    match run(c, json) {
        Ok(code) => code,
        Err(e) => render::error(&e, json),
    }
}

fn run(c: HostCmd, json: bool) -> Result<i32, Error> {
    match c {
        HostCmd::Connect { host, profile } => {
            check_profile(&profile)?;
            print_outcome(&host::connect(host, profile.as_deref(), false)?, json);
        }
        HostCmd::Repair { host, profile } => {
            check_profile(&profile)?;
            let want = Entry::desired(profile.as_deref())?;
            let healthy = matches!(host.current(), Ok(Some(e)) if e == want)
                && probe::check(&want, Duration::from_secs(15)).is_ok();
            let o = host::connect(host, profile.as_deref(), !healthy)?;
            print_outcome(&o, json);
        }
        HostCmd::PrintConfig { host, profile } => {
            check_profile(&profile)?;
            let e = Entry::desired(profile.as_deref())?;
            let v = match host {
                Host::Opencode => host::opencode_snippet(&e),
                Host::ClaudeCode => {
                    serde_json::json!({"mcpServers": {host::ENTRY: {"type": "stdio", "command": e.command, "args": e.args, "env": {}}}})
                }
                Host::Codex => {
                    println!("[mcp_servers.{}]\ncommand = {:?}\nargs = {:?}", host::ENTRY, e.command, e.args);
                    return Ok(0);
                }
            };
            render::json(&v);
        }
        HostCmd::Doctor => {
            let want = Entry::desired(None)?;
            let mut rows = Vec::new();
            let mut all_ok = true;
            for h in [Host::ClaudeCode, Host::Codex, Host::Opencode] {
                let path = h.config_path()?;
                let (configured, detail, server) = match h.current() {
                    Err(e) => (false, format!("config is broken: {}", e.message), None),
                    Ok(None) => (false, "not configured".to_string(), None),
                    Ok(Some(e)) => {
                        let server = probe::check(&e, Duration::from_secs(15));
                        let stale = e.command != want.command;
                        let detail = match (&server, stale) {
                            (Ok(n), false) => format!("configured; server answers with {n} tools"),
                            (Ok(n), true) => {
                                format!("configured with another pyro ({}); server answers with {n} tools", e.command)
                            }
                            (Err(why), _) => format!("configured, but the server does not work: {why}"),
                        };
                        (true, detail, Some(server.is_ok()))
                    }
                };
                if configured && server != Some(true) {
                    all_ok = false;
                }
                let fix = match (configured, server) {
                    (true, Some(true)) => None,
                    (true, _) => Some(format!("pyro host repair {}", h.name())),
                    (false, _) if h == Host::Opencode => Some("pyro host print-config opencode".to_string()),
                    (false, _) => Some(format!("pyro host connect {}", h.name())),
                };
                rows.push(HostRow { host: h.name(), config_path: path, configured, server_ok: server, detail, fix });
            }
            if json {
                render::json(&HostDoctor { ok: all_ok, hosts: rows });
            } else {
                for r in &rows {
                    println!("{:<12} {}", r.host, r.detail);
                    if let Some(f) = &r.fix {
                        println!("{:<12} fix: {f}", "");
                    }
                }
            }
            return Ok(if all_ok { 0 } else { pyro_mcp::Code::State.exit_code() });
        }
    }
    Ok(0)
}
