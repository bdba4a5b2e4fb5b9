//! `pyro host connect|print-config|doctor|repair`: set chat hosts up to run `pyro mcp serve`,
//! or (`--url`) to reach `pyro mcp serve --http` on another machine.

use crate::host::{self, doctor, probe, remote, Entry, Host};
use crate::render;
use pyro_mcp::Error;
use std::path::PathBuf;
use std::time::Duration;

/// `--url` and `--token-file`: a remote server instead of this pyro.
#[derive(clap::Args)]
pub struct RemoteArgs {
    /// Reach `pyro mcp serve --http` at this URL (http(s)://HOST:PORT/mcp) instead of running pyro here
    #[arg(long, value_name = "URL", conflicts_with = "profile")]
    url: Option<String>,
    /// The server's token, copied into a file only you can read (default: pyro's token file, the one
    /// `pyro mcp token` prints)
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
pub enum HostCmd {
    /// Add pyro's MCP server, with its timeouts, to a host (through its CLI when installed, else its config
    /// file); with --url, a remote `pyro mcp serve --http` and its token
    Connect {
        #[arg(value_enum)]
        host: Host,
        /// MCP profile the host should get (default: workspace-core)
        #[arg(long)]
        profile: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Print the host's config snippet for pyro, timeouts included (with --url: the remote entry, token included)
    PrintConfig {
        #[arg(value_enum)]
        host: Host,
        #[arg(long)]
        profile: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Which entry each host uses, and is it this pyro, with enough time, starting a working server? (a
    /// remote entry: does its URL answer, and does the server take its token?)
    Doctor,
    /// Fix the entry the host uses, in its scope: stale, broken, or timeouts too low (a backup is kept); a
    /// remote entry keeps its URL (or takes --url) and gets the token file's token again
    Repair {
        #[arg(value_enum)]
        host: Host,
        #[arg(long)]
        profile: Option<String>,
        #[command(flatten)]
        remote: RemoteArgs,
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

fn no_url() -> Error {
    Error::invalid("--token-file goes with --url (the remote server's token)")
        .hint("pyro host connect HOST --url URL --token-file FILE")
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
        match &o.entry {
            Entry::Stdio { .. } => println!("  runs:   {}", o.entry.describe()),
            Entry::Remote { .. } => println!("  url:    {}", o.entry.describe()),
        }
        if let Some(t) = &o.token {
            println!("  token:  {t}");
        }
        if let Some(s) = &o.server {
            println!("  server: {s} answers");
        }
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

/// Connect or repair with `want`, then say where a remote entry's token went.
fn connect(
    host: Host,
    want: &Entry,
    remote: Option<&remote::Want>,
    repair: bool,
    force: bool,
    json: bool,
) -> Result<i32, Error> {
    let mut o = host::connect(host, want, repair, force)?;
    if let Some(w) = remote {
        remote::annotate(host, w, &mut o);
    }
    print_outcome(&o, json);
    // Not edited (OpenCode JSONC): the host is not configured yet.
    Ok(if o.snippet.is_some() { pyro_mcp::Code::State.exit_code() } else { 0 })
}

fn run(c: HostCmd, json: bool) -> Result<i32, Error> {
    match c {
        HostCmd::Connect { host, profile, remote: r } => {
            check_profile(&profile)?;
            match r.url {
                Some(url) => {
                    let w = remote::want(host, &url, r.token_file)?;
                    return connect(host, &w.entry, Some(&w), false, false, json);
                }
                None if r.token_file.is_some() => return Err(no_url()),
                None => return connect(host, &Entry::desired(profile.as_deref())?, None, false, false, json),
            }
        }
        HostCmd::Repair { host, profile, remote: r } => {
            check_profile(&profile)?;
            let used = host.inspect().ok().and_then(|i| i.used);
            // A remote entry stays remote: its URL (or --url), the token read again.
            let url = r.url.or_else(|| used.as_ref().and_then(|f| f.entry.url().map(String::from)));
            if let Some(url) = url {
                let w = remote::want(host, &url, r.token_file)?;
                return connect(host, &w.entry, Some(&w), true, false, json);
            }
            if r.token_file.is_some() {
                return Err(no_url());
            }
            let want = Entry::desired(profile.as_deref())?;
            // An entry that looks right but whose server does not start is rewritten anyway.
            let force = used
                .is_some_and(|f| host.satisfies(&f, &want) && probe::check(&f.entry, Duration::from_secs(15)).is_err());
            return connect(host, &want, None, true, force, json);
        }
        HostCmd::PrintConfig { host, profile, remote: r } => {
            check_profile(&profile)?;
            let want = match r.url {
                Some(url) => remote::want(host, &url, r.token_file)?.entry,
                None if r.token_file.is_some() => return Err(no_url()),
                None => Entry::desired(profile.as_deref())?,
            };
            print!("{}", host.snippet(&want));
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
