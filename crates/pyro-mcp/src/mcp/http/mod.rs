//! `pyro mcp serve --http ADDR:PORT`: the same MCP server over Streamable HTTP at `/mcp`, for
//! chat hosts and agents that are not on this machine. rmcp's `StreamableHttpService` speaks
//! the protocol (sessions for revisions up to 2025-11-25, stateless requests for 2026-07-28,
//! `Host`/`Origin` checks against DNS rebinding); hyper serves it, tokio-rustls adds TLS; the
//! checks in front of it are `guard` (auth, caps, the request log, a client gone cancels its
//! call), the accept loop `listen`, the token file `token`.
//!
//! Safe by default: a bearer token is required unless `--no-auth`, which only a loopback
//! address may use; a non-loopback address needs TLS or an explicit `--insecure-http`.

mod guard;
mod listen;
mod options;
pub mod token;

pub use options::{HttpLimits, HttpOptions};

use super::server::PyroServer;
use crate::error::{Error, Result};
use std::net::SocketAddr;
use std::time::Duration;

impl HttpOptions {
    /// Options for `listen` with every default.
    pub fn new(listen: SocketAddr) -> HttpOptions {
        HttpOptions {
            listen,
            token_file: None,
            no_auth: false,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            tls: None,
            insecure_http: false,
            limits: HttpLimits::default(),
        }
    }

    /// Refuse unsafe or inconsistent combinations before anything is bound.
    pub fn validate(&self) -> Result<()> {
        let loopback = self.listen.ip().is_loopback();
        if self.no_auth && !loopback {
            return Err(Error::invalid(format!(
                "--no-auth is refused on {}: without a token anyone who reaches the address runs commands here",
                self.listen.ip()
            ))
            .hint("listen on 127.0.0.1 (reach it over `ssh -L`), or keep the token"));
        }
        if !loopback && self.tls.is_none() && !self.insecure_http {
            return Err(Error::invalid(format!(
                "{} is not a loopback address: the token and every file would cross the network in clear",
                self.listen.ip()
            ))
            .hint("pass --tls-cert and --tls-key, or --insecure-http behind a TLS proxy you trust"));
        }
        if self.tls.is_some() && self.insecure_http {
            return Err(Error::invalid("--insecure-http and --tls-cert are exclusive"));
        }
        for o in &self.allowed_origins {
            if !(o == "null" || o.starts_with("http://") || o.starts_with("https://")) || o.len() > 256 {
                return Err(Error::invalid(format!(
                    "--allowed-origin {}: an origin is scheme://host[:port] (or null)",
                    crate::text::clip(o, 80)
                )));
            }
        }
        for h in &self.allowed_hosts {
            let ok = !h.is_empty()
                && h.len() <= 253
                && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
            if !ok {
                return Err(Error::invalid(format!(
                    "--allowed-host {}: a host name or address",
                    crate::text::clip(h, 80)
                )));
            }
        }
        let l = &self.limits;
        crate::error::in_range("body limit", l.body_bytes, 1024, 1 << 30)?;
        crate::error::in_range("sessions", l.sessions, 1, 100_000)?;
        crate::error::in_range("calls per token", l.calls_per_token, 1, 100_000)?;
        Ok(())
    }

    /// The `Host` values accepted: the bound address with its port, `localhost` on loopback,
    /// the `--allowed-host` names (with or without the port).
    fn host_names(&self, port: u16) -> Vec<String> {
        let ip = self.listen.ip();
        let mut hosts = Vec::new();
        let mut add = |h: String| {
            hosts.push(format!("{h}:{port}"));
            hosts.push(h);
        };
        if ip.is_loopback() || ip.is_unspecified() {
            for h in ["localhost", "127.0.0.1", "[::1]"] {
                add(h.to_string());
            }
        }
        if !ip.is_unspecified() {
            add(match ip {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            });
        }
        for h in &self.allowed_hosts {
            add(h.clone());
        }
        hosts
    }
}

/// Serve `server` over HTTP until SIGTERM or SIGINT: then running calls are cancelled (their
/// guest commands killed and recorded as cancelled), given `shutdown_grace` to wind down, and
/// the server returns. Blocks; runs its own tokio runtime.
pub fn serve_http(server: PyroServer, o: HttpOptions) -> Result<()> {
    o.validate()?;
    let token = if o.no_auth {
        None
    } else {
        let file = match &o.token_file {
            Some(f) => f.clone(),
            None => token::default_file()?,
        };
        Some((token::load_or_create(&file)?, file))
    };
    let tls = match &o.tls {
        Some((cert, key)) => Some(listen::tls_config(cert, key)?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    let result = rt.block_on(listen::run(server, o, token, tls));
    rt.shutdown_timeout(Duration::from_secs(2));
    result
}
