//! `pyro mcp serve`: the MCP server on stdin/stdout, or over Streamable HTTP with `--http`;
//! `pyro mcp token`: the HTTP server's bearer token. Thin wrappers: options in, one log line
//! on stderr, then `pyro_mcp::mcp::PyroServer` serves until the client disconnects (stdio) or
//! a signal (HTTP).

use crate::render;
use pyro_mcp::mcp::http::token;
use pyro_mcp::mcp::{HttpOptions, PyroServer, ServeOptions};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Subcommand)]
pub enum McpCmd {
    /// Serve the pyro tools over MCP on stdin/stdout, or over HTTP with --http (for chat hosts
    /// and coding agents)
    Serve(Box<ServeArgs>),
    /// Print the HTTP server's bearer token (created when missing), or replace it
    Token(TokenArgs),
}

#[derive(clap::Args)]
pub struct TokenArgs {
    /// The token file (default: ~/.config/pyro-mcp/mcp-token, or under $PYRO_CONFIG_DIR or
    /// $XDG_CONFIG_HOME)
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Replace the token with a fresh one (a running server keeps the old one until restarted)
    #[arg(long)]
    rotate: bool,
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
    /// Serve MCP's Streamable HTTP transport at http://ADDR:PORT/mcp instead of stdio
    #[arg(long, value_name = "ADDR:PORT")]
    http: Option<SocketAddr>,
    /// The bearer token clients must send (created 0600 when missing; see `pyro mcp token`)
    #[arg(long, value_name = "FILE", requires = "http")]
    token_file: Option<PathBuf>,
    /// Serve without a token (only on a loopback address, for local tools that cannot send headers)
    #[arg(long, requires = "http", conflicts_with = "token_file")]
    no_auth: bool,
    /// A browser origin allowed to call the server (scheme://host[:port]; repeatable); others get 403
    #[arg(long = "allowed-origin", value_name = "ORIGIN", requires = "http")]
    allowed_origins: Vec<String>,
    /// A host name clients reach this server by, besides its address (repeatable); others get 403
    #[arg(long = "allowed-host", value_name = "NAME", requires = "http")]
    allowed_hosts: Vec<String>,
    /// TLS certificate chain (PEM) to serve HTTPS
    #[arg(long, value_name = "FILE", requires_all = ["http", "tls_key"])]
    tls_cert: Option<PathBuf>,
    /// TLS private key (PEM)
    #[arg(long, value_name = "FILE", requires_all = ["http", "tls_cert"])]
    tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (behind a TLS proxy you trust)
    #[arg(long, requires = "http", conflicts_with = "tls_cert")]
    insecure_http: bool,
}

/// `pyro mcp token`: the token alone on stdout (for `$(pyro mcp token)`), or JSON.
fn token_main(a: TokenArgs, json: bool) -> i32 {
    let file = match a.token_file.map(Ok).unwrap_or_else(token::default_file) {
        Ok(f) => f,
        Err(e) => return render::error(&e, json),
    };
    let made = if a.rotate { token::rotate(&file) } else { token::load_or_create(&file) };
    match made {
        Ok(t) if json => {
            let v = serde_json::json!({"token_file": file, "token": t.reveal(), "rotated": a.rotate});
            println!("{v}");
            0
        }
        Ok(t) => {
            println!("{}", t.reveal());
            0
        }
        Err(e) => render::error(&e, json),
    }
}

pub fn main(c: McpCmd, json: bool) -> i32 {
    let a = match c {
        McpCmd::Serve(a) => a,
        McpCmd::Token(t) => return token_main(t, json),
    };
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
    let transport = match a.http {
        Some(_) => "HTTP".to_string(),
        None => "stdio".to_string(),
    };
    eprintln!(
        "[mcp] serving profile {} ({} tools) on {transport}; project source: {}; host roots: {}; scope: {}",
        server.profile(),
        server.tools().len(),
        server.source().line(),
        if roots.is_empty() { "none" } else { &roots },
        if a_all { "all workspaces".to_string() } else { format!("{}={}", pyro_mcp::mcp::SCOPE_LABEL, server.scope()) }
    );
    // A server writes to sockets (and stdout) whose peer may be gone: that is an error on that
    // connection (EPIPE), never the end of the process. `main` restores SIGPIPE's default for
    // the one-shot commands (`pyro run ... | head`); over TLS, a client's hang-up killed the
    // server silently through it.
    // SAFETY: setting a signal disposition; no handler runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let served = match a.http {
        Some(addr) => {
            let mut o = HttpOptions::new(addr);
            o.token_file = a.token_file;
            o.no_auth = a.no_auth;
            o.allowed_origins = a.allowed_origins;
            o.allowed_hosts = a.allowed_hosts;
            o.tls = a.tls_cert.zip(a.tls_key);
            o.insecure_http = a.insecure_http;
            pyro_mcp::mcp::serve_http(server, o)
        }
        None => server.serve_stdio(),
    };
    match served {
        Ok(()) => 0,
        Err(e) => render::error(&e, false),
    }
}
