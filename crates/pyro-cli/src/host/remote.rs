//! Remote entries (`pyro host connect HOST --url URL [--token-file F]`): the URL a host reaches
//! `pyro mcp serve --http` at, checked before anything is written, and the bearer token,
//! read from a copy of the server's token file (never created here: a token made on the
//! laptop would not be the server's).

use super::entry::{Entry, Secret, TOKEN_ENV};
use super::{files, probe_http, Host, Outcome};
use pyro_mcp::mcp::http::token;
use pyro_mcp::Error;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest URL accepted.
const MAX_URL: usize = 2048;

/// A checked server URL: `http(s)://HOST[:PORT]/PATH`, nothing else.
#[derive(Debug, Clone)]
pub struct Url {
    pub text: String,
    pub https: bool,
    pub host: String,
}

impl Url {
    /// Is the host this machine (where plain HTTP is fine: an SSH tunnel's end, say)?
    pub fn is_loopback(&self) -> bool {
        let h = self.host.trim_start_matches('[').trim_end_matches(']');
        h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

fn bad(url: &str, why: &str) -> Error {
    let shown: String = url.chars().filter(|c| !c.is_control()).take(120).collect();
    Error::invalid(format!("--url {shown:?}: {why}"))
}

/// Check `--url`: http or https, a host, an optional port, a path (pyro serves `/mcp`), and
/// no credentials, query or fragment (a token never goes in a URL).
pub fn check_url(url: &str) -> Result<Url, Error> {
    let example = "http://127.0.0.1:8765/mcp";
    if url.len() > MAX_URL {
        return Err(bad(url, &format!("longer than {MAX_URL} bytes")));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad(url, "contains spaces or control characters"));
    }
    let lower = url.to_ascii_lowercase();
    let (https, rest) = if lower.starts_with("https://") {
        (true, &url[8..])
    } else if lower.starts_with("http://") {
        (false, &url[7..])
    } else {
        return Err(bad(url, "must start with http:// or https://").hint(format!("for example {example}")));
    };
    if rest.contains(['?', '#']) {
        return Err(bad(url, "must not carry a query or fragment (the token goes in --token-file, never in the URL)"));
    }
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err(bad(url, "must not carry a user name or password (the token goes in --token-file)"));
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (addr, after) = v6.split_once(']').ok_or_else(|| bad(url, "has an unclosed [ in its host"))?;
            if addr.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad(url, "has an invalid IPv6 address"));
            }
            (format!("[{addr}]"), after.strip_prefix(':'))
        }
        None => match authority.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (authority.to_string(), None),
        },
    };
    let host_ok = !host.is_empty()
        && (host.starts_with('[') || host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')));
    if !host_ok {
        return Err(bad(url, "has no valid host name").hint(format!("for example {example}")));
    }
    if let Some(p) = port {
        if !p.parse::<u16>().is_ok_and(|n| n > 0) {
            return Err(bad(url, "has an invalid port (1 to 65535)"));
        }
    }
    if path.is_empty() || path == "/" {
        let scheme = if https { "https" } else { "http" };
        return Err(bad(url, "has no path; pyro serves MCP at /mcp")
            .hint(format!("use {scheme}://{authority}/mcp (or the path your reverse proxy maps to it)")));
    }
    let scheme = if https { "https://" } else { "http://" };
    Ok(Url { text: format!("{scheme}{rest}"), https, host })
}

/// The token file to read: `--token-file`, else pyro's default (`pyro mcp token` prints it).
pub fn token_file(flag: Option<PathBuf>) -> Result<PathBuf, Error> {
    match flag {
        Some(p) => Ok(p),
        None => token::default_file(),
    }
}

/// Read the bearer token from a copy of the server's token file; a missing file is refused
/// with how to make one.
pub fn read_token(path: &Path) -> Result<Secret, Error> {
    if std::fs::symlink_metadata(path).is_err() {
        return Err(Error::invalid(format!("no token file at {}", path.display())).hint(format!(
            "on the server machine run `pyro mcp token`, then put its output in a file only you can read: \
             install -m 600 /dev/null {p} && cat > {p} (paste, then Ctrl-D); or pass --token-file FILE",
            p = path.display()
        )));
    }
    Ok(Secret(token::load(path)?.reveal().to_string()))
}

/// What `--url URL [--token-file F]` asks for one host.
pub struct Want {
    pub entry: Entry,
    pub url: Url,
    pub token_file: PathBuf,
    /// None only for Codex without a token file: it takes the token from its environment.
    pub token: Option<Secret>,
}

/// Check the URL and read the token (Codex needs none: its entry names `$PYRO_MCP_TOKEN`, so
/// a missing default token file is fine for it; a missing `--token-file` is not).
pub fn want(host: Host, url: &str, token_file: Option<PathBuf>) -> Result<Want, Error> {
    let url = check_url(url)?;
    let explicit = token_file.is_some();
    let file = self::token_file(token_file)?;
    let token = if host == Host::Codex && !explicit && std::fs::symlink_metadata(&file).is_err() {
        None
    } else {
        Some(read_token(&file)?)
    };
    let entry = host.remote_entry(&url.text, token.as_ref().unwrap_or(&Secret(String::new())));
    Ok(Want { entry, url, token_file: file, token })
}

/// After a connect: say where the token is kept, warn about what exposes it, and ask the
/// server (a failure is a warning: the entry may be written before the server runs).
pub fn annotate(host: Host, w: &Want, o: &mut Outcome) {
    if !w.url.https && !w.url.is_loopback() {
        o.warnings.push(format!(
            "{} is plain http to another machine: the token crosses the network unencrypted; serve with --tls-cert/--tls-key, or use an SSH tunnel to 127.0.0.1",
            w.url.text
        ));
    }
    o.token = Some(match host {
        Host::Codex => {
            let value = match w.token {
                Some(_) => format!("\"$(cat {})\"", w.token_file.display()),
                None => "<the token `pyro mcp token` prints on the server>".to_string(),
            };
            format!("not stored: Codex reads it from ${TOKEN_ENV}; export {TOKEN_ENV}={value} in the shell that starts codex")
        }
        _ if o.snippet.is_some() => "in the snippet below: merge it into a file only you can read".to_string(),
        _ => {
            let mode = files::mode(&o.config_path).unwrap_or(0);
            if mode & 0o044 != 0 {
                o.warnings.push(format!(
                    "{} holds the token and can be read by others (mode {mode:03o}): chmod 600 {}",
                    o.config_path.display(),
                    o.config_path.display()
                ));
            }
            format!("stored in {} (mode {mode:03o})", o.config_path.display())
        }
    });
    let token = w.token.as_ref().map(|t| t.0.as_str());
    match probe_http::check(&w.url.text, token, Duration::from_secs(5)) {
        Ok(a) => o.server = Some(format!("{} {}", a.name, a.version)),
        // Codex without a token file: a 401 still says the server is there.
        Err(probe_http::Failure::Unauthorized) if token.is_none() => {}
        Err(f) => o.warnings.push(format!("the server did not answer as expected: {f}; see `pyro host doctor`")),
    }
}
