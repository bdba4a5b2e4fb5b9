//! The options of `serve_http`: where it listens, whom it lets in, and its caps and timeouts.
//! A file of their own, so the request gate and the accept loop can use them without
//! importing the module that starts them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How `serve_http` listens and whom it lets in.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// The address and port to listen on (`127.0.0.1:8765`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Where the bearer token is kept (default: [`super::token::default_file`]).
    pub token_file: Option<PathBuf>,
    /// Serve without a token (loopback addresses only).
    pub no_auth: bool,
    /// Browser origins allowed besides none (`https://app.example.org`); any other `Origin`
    /// gets 403.
    pub allowed_origins: Vec<String>,
    /// Host names clients may use in `Host` besides the bound address (and, on loopback,
    /// `localhost`): the name a reverse proxy or DNS gives this machine.
    pub allowed_hosts: Vec<String>,
    /// Certificate chain and private key (PEM) to serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Serve plain HTTP on a non-loopback address (a warning is logged).
    pub insecure_http: bool,
    /// Caps and timeouts.
    pub limits: HttpLimits,
}

/// Caps and timeouts of the HTTP server (every one is hit with a one-line error).
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest request body (JSON-RPC messages are small; patches and files go in them).
    pub body_bytes: usize,
    /// A client must send its request headers within this, and its body within this after.
    pub read_timeout: Duration,
    /// A connection that moves no byte either way for this long is closed (open response
    /// streams send a keep-alive every 15 s).
    pub idle: Duration,
    /// MCP sessions open at once (an idle session closes after `session_idle`).
    pub sessions: usize,
    /// A session with no traffic for this long is closed.
    pub session_idle: Duration,
    /// Requests being answered at once per token (all requests on `--no-auth`).
    pub calls_per_token: usize,
    /// TCP connections open at once.
    pub connections: usize,
    /// On SIGTERM, how long running calls get to wind down after they are cancelled.
    pub shutdown_grace: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            body_bytes: 8 << 20,
            read_timeout: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            sessions: 64,
            session_idle: Duration::from_secs(600),
            calls_per_token: 32,
            connections: 256,
            shutdown_grace: Duration::from_secs(20),
        }
    }
}
