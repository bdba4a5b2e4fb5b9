//! Does a remote entry reach a working server? The MCP handshake over Streamable HTTP with the
//! entry's bearer token: `initialize` (the server's name and version), `initialized`,
//! `tools/list`, then DELETE to end the session. Every request is bounded (a few seconds),
//! never follows a redirect (it would carry the token elsewhere), goes through no proxy when
//! the server is this machine (an SSH tunnel's end), and nothing it reports contains the token.

use std::io::{BufRead, BufReader};
use std::time::Duration;
use ureq::http::Response;
use ureq::Body;

/// What answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `serverInfo.name` and `version`.
    pub name: String,
    pub version: String,
    pub tools: usize,
}

/// Why it did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No HTTP answer: refused, unresolvable, timed out, TLS failed.
    Unreachable(String),
    /// 401: no token, or not the server's.
    Unauthorized,
    /// 403: the server refused this client's `Host` or `Origin`.
    Forbidden,
    /// Any other HTTP status, with the first line of its body.
    Status(u16, String),
    /// An HTTP 200 that is not a working MCP server.
    Protocol(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(why) => write!(f, "unreachable: {why}"),
            Failure::Unauthorized => f.write_str("401: the server refused the token"),
            Failure::Forbidden => f.write_str("403: the server refused this client's Host or Origin"),
            Failure::Status(code, text) if text.is_empty() => write!(f, "HTTP {code}"),
            Failure::Status(code, text) => write!(f, "HTTP {code}: {text}"),
            Failure::Protocol(why) => write!(f, "not a working MCP server: {why}"),
        }
    }
}

const PROTOCOL: &str = "2025-06-18";
/// Largest response read (the tools list of pyro is some tens of KB).
const MAX_BODY: u64 = 4 << 20;

/// An MCP session over Streamable HTTP (also driven by `make bench`).
pub struct Client {
    agent: ureq::Agent,
    url: String,
    token: Option<String>,
    session: Option<String>,
}

impl Client {
    /// POST one JSON-RPC message; the response when its status is 2xx.
    pub fn post(&self, body: &str) -> Result<Response<Body>, Failure> {
        let mut r = self
            .agent
            .post(&self.url)
            .header("Accept", "application/json, text/event-stream")
            .header("Content-Type", "application/json");
        if let Some(t) = &self.token {
            r = r.header("Authorization", &format!("Bearer {t}"));
        }
        if let Some(s) = &self.session {
            r = r.header("Mcp-Session-Id", s).header("MCP-Protocol-Version", PROTOCOL);
        }
        let resp = r.send(body).map_err(unreachable)?;
        match resp.status().as_u16() {
            200..=299 => Ok(resp),
            401 => Err(Failure::Unauthorized),
            403 => Err(Failure::Forbidden),
            code => {
                let mut resp = resp;
                let text = resp.body_mut().with_config().limit(4096).read_to_string().unwrap_or_default();
                let line: String =
                    text.lines().next().unwrap_or("").chars().filter(|c| !c.is_control()).take(200).collect();
                Err(Failure::Status(code, line))
            }
        }
    }

    /// POST a request and read the JSON-RPC response with this `id`, from a JSON body or an
    /// SSE stream (stopping at that message: the stream may stay open).
    pub fn call(&self, body: &str, id: u64) -> Result<(Response<()>, serde_json::Value), Failure> {
        let resp = self.post(body)?;
        let (parts, body) = resp.into_parts();
        let sse = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .starts_with("text/event-stream");
        let reader = body.into_with_config().limit(MAX_BODY).reader();
        let msg = if sse {
            let mut found = None;
            for line in BufReader::new(reader).lines() {
                let line = line.map_err(|e| Failure::Protocol(format!("reading the response: {e}")))?;
                let Some(data) = line.strip_prefix("data:") else { continue };
                let Ok(v) = serde_json::from_str::<serde_json::Value>(data.trim()) else { continue };
                if v["id"] == id {
                    found = Some(v);
                    break;
                }
            }
            found.ok_or_else(|| Failure::Protocol(format!("no answer to request {id} in the event stream")))?
        } else {
            serde_json::from_reader::<_, serde_json::Value>(reader)
                .map_err(|e| Failure::Protocol(format!("the answer is not JSON: {e}")))?
        };
        if let Some(err) = msg.get("error") {
            let m = err["message"].as_str().unwrap_or("an error");
            return Err(Failure::Protocol(format!("it answered {m:?}")));
        }
        Ok((Response::from_parts(parts, ()), msg))
    }
}

fn unreachable(e: ureq::Error) -> Failure {
    Failure::Unreachable(match e {
        ureq::Error::Timeout(t) => format!("no answer in time ({t})"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    })
}

/// Is the URL's host this machine?
fn loopback(url: &str) -> bool {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else { return false };
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A client for `url` with `token` (None: no `Authorization` header), each request bounded
/// by `timeout`; no session yet.
pub fn client(url: &str, token: Option<&str>, timeout: Duration) -> Client {
    let mut config = ureq::Agent::config_builder();
    if loopback(url) {
        config = config.proxy(None);
    }
    let agent: ureq::Agent = config
        .timeout_resolve(Some(timeout))
        .timeout_connect(Some(timeout))
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .user_agent(concat!("pyro-host-doctor/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    Client { agent, url: url.to_string(), token: token.map(String::from), session: None }
}

impl Client {
    /// `initialize` and `notifications/initialized`: the server's name and version; the
    /// session (if the server keeps one) is used by every later request.
    pub fn initialize(&mut self) -> Result<(String, String), Failure> {
        let init = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"{PROTOCOL}","capabilities":{{}},"clientInfo":{{"name":"pyro-host-doctor","version":"{}"}}}}}}"#,
            env!("CARGO_PKG_VERSION")
        );
        let (resp, v) = self.call(&init, 1)?;
        let info = &v["result"]["serverInfo"];
        let (Some(name), Some(version)) = (info["name"].as_str(), info["version"].as_str()) else {
            return Err(Failure::Protocol("its initialize answer has no serverInfo".into()));
        };
        self.session = resp.headers().get("mcp-session-id").and_then(|s| s.to_str().ok()).map(String::from);
        self.post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
        Ok((name.to_string(), version.to_string()))
    }

    /// End the session (DELETE), if there is one.
    pub fn close(&self) {
        if let Some(s) = &self.session {
            let mut r = self.agent.delete(&self.url).header("Mcp-Session-Id", s);
            if let Some(t) = &self.token {
                r = r.header("Authorization", &format!("Bearer {t}"));
            }
            let _ = r.call();
        }
    }
}

/// The handshake against `url` with `token` (None: no `Authorization` header), each request
/// bounded by `timeout`.
pub fn check(url: &str, token: Option<&str>, timeout: Duration) -> Result<Answer, Failure> {
    let mut c = client(url, token, timeout);
    let (name, version) = c.initialize()?;
    let result = (|| {
        let (_, v) = c.call(r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#, 2)?;
        let tools = v["result"]["tools"].as_array().map(|t| t.len());
        tools.ok_or_else(|| Failure::Protocol("its tools/list answer has no tools".into()))
    })();
    c.close();
    Ok(Answer { name, version, tools: result? })
}
