//! `pyro`: the command line over the pyro-mcp SDK. Each subcommand module parses, calls one
//! SDK operation and renders the result (human by default, `--json` everywhere).

mod commands;
mod host;
mod progress;
mod render;

use clap::{Parser, Subcommand};

const AFTER_HELP: &str =
    "First run:\n  pyro doctor\n  pyro env pull debian:12\n  pyro run debian:12 -- git --version\n  pyro demo";

#[derive(Parser)]
#[command(name = "pyro", version = pyro_mcp::VERSION, about = "Disposable microVM sandboxes for coding agents", after_help = AFTER_HELP)]
struct Cli {
    /// Print results (and errors) as JSON on stdout; accepted before or after the subcommand
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one command in a fresh microVM that is destroyed afterwards
    Run(commands::run::Args),
    /// Check that this host and user can run pyro's guests, and say how to fix what is missing
    Doctor {
        /// Also remove what killed pyro calls left behind (orphaned VMs, half-made workspaces)
        #[arg(long)]
        fix: bool,
    },
    /// Show the create, start, exec, delete lifecycle end to end
    Demo(commands::demo::Args),
    /// List and install environments
    #[command(subcommand)]
    Env(commands::env::EnvCmd),
    /// Persistent workspaces: create, exec, edit files, diff, export, reset, delete
    #[command(subcommand)]
    Workspace(commands::workspace::WsCmd),
    /// The MCP server for chat hosts and coding agents: `pyro mcp serve [--http ADDR:PORT]`
    #[command(subcommand)]
    Mcp(commands::mcp::McpCmd),
    /// Review workspaces in the browser: timeline, grouped diff, live logs, actions (loopback)
    Ui(commands::ui::Args),
    /// Connect chat hosts (Claude Code, Codex, OpenCode) to `pyro mcp serve`
    #[command(subcommand)]
    Host(commands::host::HostCmd),
    /// Internal: supervise one VM (started by pyro itself)
    #[command(name = "__supervise", hide = true)]
    Supervise { dir: std::path::PathBuf },
    /// Internal: build one warm template (started by pyro itself, in the background)
    #[command(name = "__template", hide = true)]
    Template { args: Vec<String> },
    /// Internal: prepare one warm spare VM (started by pyro itself, in the background)
    #[command(name = "__spare", hide = true)]
    Spare { args: Vec<String> },
}

fn main() {
    // First: this process is pyro, so VM supervisors run from this very executable whatever
    // it is named, not from some other `pyro` on PATH.
    pyro_mcp::internal::mark_self_is_pyro();
    // Broken pipes (`pyro run ... | head`) end quietly instead of panicking.
    // SAFETY: restoring the default disposition before any thread starts.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    let json = cli.json;
    let code = match cli.command {
        Cmd::Supervise { dir } => pyro_mcp::internal::supervise(&dir),
        Cmd::Template { args } => pyro_mcp::internal::build_template(&args),
        Cmd::Spare { args } => pyro_mcp::internal::prepare_spare(&args),
        Cmd::Run(a) => commands::run::main(a, json),
        Cmd::Doctor { fix } => commands::doctor::main(json, fix),
        Cmd::Demo(a) => commands::demo::main(a),
        Cmd::Env(c) => commands::env::main(c, json),
        Cmd::Workspace(c) => commands::workspace::main(c, json),
        Cmd::Mcp(c) => commands::mcp::main(c, json),
        Cmd::Host(c) => commands::host::main(c, json),
        Cmd::Ui(a) => commands::ui::main(a),
    };
    std::process::exit(code);
}
