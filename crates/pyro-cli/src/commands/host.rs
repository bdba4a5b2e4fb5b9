//! `pyro host connect|print-config|doctor|repair`: set chat hosts up to run `pyro mcp serve`.

use crate::host::{self, doctor, probe, Entry, Host};
use crate::render;
use pyro_mcp::Error;
use std::time::Duration;

#[derive(clap::Subcommand)]
pub enum HostCmd {
    /// Add pyro's MCP server, with its timeouts, to a host (through its CLI when installed, else its config file)
    Connect {
        #[arg(value_enum)]
        host: Host,
        /// MCP profile the host should get (default: workspace-core)
        #[arg(long)]
        profile: Option<String>,
    },
    /// Print the host's config snippet for pyro, timeouts included
    PrintConfig {
        #[arg(value_enum)]
        host: Host,
        #[arg(long)]
        profile: Option<String>,
    },
    /// Which entry each host uses, and is it this pyro, with enough time, starting a working server?
    Doctor,
    /// Fix the entry the host uses, in its scope: stale, broken, or timeouts too low (a backup is kept)
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
    tool_timeout_ms: u64,
    startup_timeout_ms: u64,
    hosts: Vec<doctor::Row>,
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
        match o.scope {
            Some(scope) => println!("  config: {} ({scope})", o.config_path.display()),
            None => println!("  config: {}", o.config_path.display()),
        }
        if let Some(b) = &o.backup {
            println!("  backup: {}", b.display());
        }
        println!("  runs:   {} {}", o.entry.command, o.entry.args.join(" "));
        println!("  limits: {} ms per call, {} ms to start", o.tool_timeout_ms, o.startup_timeout_ms);
        for w in &o.warnings {
            println!("  warning: {w}");
        }
        if let Some(s) = &o.snippet {
            print!("{s}");
        }
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
            let o = host::connect(host, profile.as_deref(), false, false)?;
            print_outcome(&o, json);
            // Not edited (OpenCode JSONC): the host is not configured yet.
            if o.snippet.is_some() {
                return Ok(pyro_mcp::Code::State.exit_code());
            }
        }
        HostCmd::Repair { host, profile } => {
            check_profile(&profile)?;
            let want = Entry::desired(profile.as_deref())?;
            // An entry that looks right but whose server does not start is rewritten anyway.
            let used = host.inspect().ok().and_then(|i| i.used);
            let force = used
                .is_some_and(|f| host.satisfies(&f, &want) && probe::check(&f.entry, Duration::from_secs(15)).is_err());
            let o = host::connect(host, profile.as_deref(), true, force)?;
            print_outcome(&o, json);
            if o.snippet.is_some() {
                return Ok(pyro_mcp::Code::State.exit_code());
            }
        }
        HostCmd::PrintConfig { host, profile } => {
            check_profile(&profile)?;
            print!("{}", host.snippet(&Entry::desired(profile.as_deref())?));
        }
        HostCmd::Doctor => {
            let want = Entry::desired(None)?;
            let rows: Vec<doctor::Row> =
                [Host::ClaudeCode, Host::Codex, Host::Opencode].into_iter().map(|h| doctor::check(h, &want)).collect();
            let all_ok = rows.iter().all(|r| r.ok);
            if json {
                render::json(&HostDoctor {
                    ok: all_ok,
                    tool_timeout_ms: host::TOOL_TIMEOUT_MS,
                    startup_timeout_ms: host::STARTUP_TIMEOUT_MS,
                    hosts: rows,
                });
            } else {
                doctor::print(&rows);
            }
            return Ok(if all_ok { 0 } else { pyro_mcp::Code::State.exit_code() });
        }
    }
    Ok(0)
}
