//! `pyro mcp serve`: the MCP server on stdin/stdout. A thin wrapper: options in, one log line
//! on stderr, then `pyro_mcp::mcp::PyroServer` serves until the client disconnects.

use crate::render;
use pyro_mcp::mcp::{PyroServer, ServeOptions};
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum McpCmd {
    /// Serve the pyro tools over MCP on stdin/stdout (for chat hosts and coding agents)
    Serve(ServeArgs),
}

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Which tools to offer
    #[arg(long, default_value = "workspace-core", value_parser = ["vm-run", "workspace-core", "workspace-full"])]
    profile: String,
    /// The project to seed workspaces from (its git work tree); default: the git work tree
    /// around the current directory
    #[arg(long, value_name = "PATH", conflicts_with = "repo_url")]
    project_path: Option<PathBuf>,
    /// Clone this repository (in the background, from startup) and seed workspaces from the
    /// clean clone
    #[arg(long, value_name = "URL")]
    repo_url: Option<String>,
    /// The branch, tag or commit to check out in the clone
    #[arg(long, value_name = "REF", requires = "repo_url")]
    repo_ref: Option<String>,
    /// Another host directory that seed, sync and export paths may be in (repeatable)
    #[arg(long = "allow-root", value_name = "PATH")]
    allow_roots: Vec<PathBuf>,
    /// List and act on every workspace of this user, not only this project's
    #[arg(long)]
    all_workspaces: bool,
    /// Let tool calls name registry images that are not installed yet (they are pulled)
    #[arg(long)]
    allow_pull: bool,
}

pub fn main(c: McpCmd) -> i32 {
    let McpCmd::Serve(a) = c;
    let a_all = a.all_workspaces;
    let options = ServeOptions {
        profile: match a.profile.parse() {
            Ok(p) => p,
            Err(e) => return render::error(&e, false),
        },
        project_path: a.project_path,
        repo_url: a.repo_url,
        repo_ref: a.repo_ref,
        allow_roots: a.allow_roots,
        paths: None,
        all_workspaces: a.all_workspaces,
        allow_pull: a.allow_pull,
    };
    let server = match PyroServer::new(options) {
        Ok(s) => s,
        Err(e) => return render::error(&e, false),
    };
    let roots = server.host_roots().list();
    eprintln!(
        "[mcp] serving profile {} ({} tools) on stdio; project source: {}; host roots: {}; scope: {}",
        server.profile(),
        server.tools().len(),
        server.source().line(),
        if roots.is_empty() { "none" } else { &roots },
        if a_all { "all workspaces".to_string() } else { format!("{}={}", pyro_mcp::mcp::SCOPE_LABEL, server.scope()) }
    );
    match server.serve_stdio() {
        Ok(()) => 0,
        Err(e) => render::error(&e, false),
    }
}
