//! What every HTTP request passes before rmcp sees it, in this order: the path (`/mcp`, else
//! 404), no token in the URL (400), the method (405), the bearer token (401 with
//! `WWW-Authenticate: Bearer` and nothing else), the per-token cap on requests being answered
//! (429), the body read within its cap and time (413, 408), the session cap on a new
//! `initialize` (503). Then the request gets its key in `calls` (a response dropped before its
//! end, because the client went away, cancels the call it carries) and one log line when its
//! response ends: peer, method, JSON-RPC method and tool, status, duration. Never the token,
//! never arguments.

use super::options::HttpLimits;
use super::token::Token;
use crate::mcp::calls::{Calls, CALL_HEADER};
use crate::mcp::server::PyroServer;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::StreamableHttpService;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_service::Service;

/// A response as hyper sends it (rmcp's body type).
pub(super) type Reply = Response<BoxBody<Bytes, Infallible>>;

/// The checks and what they need, shared by every connection.
pub(super) struct Gate {
    pub(super) rmcp: StreamableHttpService<PyroServer, LocalSessionManager>,
    pub(super) sessions: Arc<LocalSessionManager>,
    pub(super) token: Option<Token>,
    pub(super) calls: Arc<Calls>,
    /// Requests being answered (one token per server, so one pool).
    pub(super) permits: Arc<Semaphore>,
    pub(super) limits: HttpLimits,
}

/// Query keys that carry credentials somewhere: refused, so a token never lands in a proxy's
/// or browser's history (and never authenticates).
const TOKEN_KEYS: &[&str] = &["token", "access_token", "auth", "authorization", "api_key", "apikey", "key", "bearer"];

/// A plain one-line answer.
fn plain(status: StatusCode, text: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(format!("{text}\n"))).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

/// A JSON-RPC error (for refusals of a well-formed JSON-RPC request).
fn rpc_error(status: StatusCode, id: &serde_json::Value, code: i64, message: &str) -> Reply {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// What the log line says about a request.
struct Line {
    peer: SocketAddr,
    method: Method,
    rpc: String,
    started: Instant,
}

impl Line {
    fn print(&self, status: StatusCode, note: &str) {
        let rpc = if self.rpc.is_empty() { String::new() } else { format!(" {}", self.rpc) };
        eprintln!(
            "mcp http: {} {}{rpc} {} {:.3} s{note}",
            self.peer,
            self.method,
            status.as_u16(),
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// `Bearer <token>` from the request, if that is what it carries.
fn bearer(req: &Request<Incoming>) -> Option<&[u8]> {
    let v = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| v[7..].trim_ascii())
}

fn token_in_query(req: &Request<Incoming>) -> bool {
    let Some(q) = req.uri().query() else { return false };
    q.split('&').any(|pair| {
        let key = pair.split('=').next().unwrap_or("");
        TOKEN_KEYS.iter().any(|k| key.eq_ignore_ascii_case(k))
    })
}

/// The JSON-RPC method of a message (and the tool of a `tools/call`), for the log and the
/// session cap, and its id.
fn rpc_of(v: &serde_json::Value) -> (String, serde_json::Value) {
    let method = v.get("method").and_then(|m| m.as_str()).unwrap_or("");
    let mut rpc = crate::text::clip(method, 40);
    if method == "tools/call" {
        if let Some(t) = v.pointer("/params/name").and_then(|n| n.as_str()) {
            rpc = format!("{rpc} {}", crate::text::clip(t, 60));
        }
    }
    let rpc = rpc.chars().filter(|c| !c.is_control()).collect();
    (rpc, v.get("id").cloned().unwrap_or(serde_json::Value::Null))
}

impl Gate {
    /// Answer one request (never an error: every refusal is a response).
    pub(super) async fn handle(self: Arc<Self>, req: Request<Incoming>, peer: SocketAddr) -> Reply {
        let mut line = Line { peer, method: req.method().clone(), rpc: String::new(), started: Instant::now() };
        let refuse = |line: &Line, r: Reply| {
            line.print(r.status(), "");
            r
        };
        if req.uri().path() != "/mcp" {
            return refuse(&line, plain(StatusCode::NOT_FOUND, "not found: pyro serves MCP at /mcp"));
        }
        if token_in_query(&req) {
            return refuse(
                &line,
                plain(
                    StatusCode::BAD_REQUEST,
                    "a credential in the URL is refused: send Authorization: Bearer <token>",
                ),
            );
        }
        if ![Method::POST, Method::GET, Method::DELETE].contains(req.method()) {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed: /mcp takes POST, GET and DELETE");
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            return refuse(&line, r);
        }
        if let Some(token) = &self.token {
            if !bearer(&req).is_some_and(|given| token.matches(given)) {
                let mut r = Response::new(Full::new(Bytes::new()).boxed());
                *r.status_mut() = StatusCode::UNAUTHORIZED;
                r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return refuse(&line, r);
            }
        }
        // A GET is the server's stream of a session: long-lived and answered by rmcp alone,
        // it holds no call permit (sessions are capped instead).
        let permit = if req.method() == Method::GET {
            None
        } else {
            match self.permits.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    let mut r = plain(
                        StatusCode::TOO_MANY_REQUESTS,
                        &format!("too many requests at once for this token (at most {})", self.limits.calls_per_token),
                    );
                    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                    return refuse(&line, r);
                }
            }
        };
        let (mut parts, body) = req.into_parts();
        let bytes = if parts.method == Method::POST {
            let limited = Limited::new(body, self.limits.body_bytes);
            match tokio::time::timeout(self.limits.read_timeout, limited.collect()).await {
                Ok(Ok(c)) => c.to_bytes(),
                Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                    let text = format!("request body over {} bytes", self.limits.body_bytes);
                    return refuse(&line, plain(StatusCode::PAYLOAD_TOO_LARGE, &text));
                }
                Ok(Err(_)) => return refuse(&line, plain(StatusCode::BAD_REQUEST, "the request body broke off")),
                Err(_) => {
                    let text = format!("request body not received within {} s", self.limits.read_timeout.as_secs());
                    return refuse(&line, plain(StatusCode::REQUEST_TIMEOUT, &text));
                }
            }
        } else {
            Bytes::new()
        };
        // Parsed once, here: malformed JSON gets the JSON-RPC error (rmcp answers 415 in plain
        // text); the method names the log line and the id goes into refusals.
        let mut id = serde_json::Value::Null;
        if parts.method == Method::POST {
            match serde_json::from_slice::<serde_json::Value>(&bytes) {
                Ok(v) => (line.rpc, id) = rpc_of(&v),
                Err(e) => {
                    let text = format!("Parse error: {}", crate::text::clip(&e.to_string(), 200));
                    return refuse(&line, rpc_error(StatusCode::BAD_REQUEST, &id, -32700, &text));
                }
            }
        }
        if line.rpc == "initialize" && !parts.headers.contains_key("mcp-session-id") {
            let open = self.sessions.sessions.read().await.len();
            if open >= self.limits.sessions {
                let text = format!(
                    "too many MCP sessions open ({open}; at most {}): close one (DELETE /mcp) or wait for idle ones to expire",
                    self.limits.sessions
                );
                return refuse(&line, rpc_error(StatusCode::SERVICE_UNAVAILABLE, &id, -32000, &text));
            }
        }
        // The key the handler finds its request by (whatever the client put there goes). From
        // here the request is in flight: if this future is dropped (the client went away before
        // the response began), `Flight` cancels the call and logs it.
        let key = self.calls.open();
        parts.headers.insert(CALL_HEADER, HeaderValue::from(key));
        let mut flight = Flight { calls: self.calls.clone(), key, line, status: None, done: false, _permit: permit };
        let bytes_was_empty = bytes.is_empty();
        let req = Request::from_parts(parts, Full::new(bytes));
        let is_delete = req.method() == Method::DELETE;
        let Ok(resp) = self.rmcp.clone().call(req).await;
        let (mut parts, body) = resp.into_parts();
        // A session ended by DELETE is 200: the Python SDK reports rmcp's 202 as a failed
        // termination.
        if is_delete && parts.status == StatusCode::ACCEPTED {
            parts.status = StatusCode::OK;
        }
        // JSON that is not a JSON-RPC message: rmcp says 415 in plain text; say Invalid Request.
        if parts.status == StatusCode::UNSUPPORTED_MEDIA_TYPE && !bytes_was_empty {
            let why = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            let text = format!("Invalid Request: {}", crate::text::clip(&String::from_utf8_lossy(&why), 200));
            let r = rpc_error(StatusCode::BAD_REQUEST, &id, -32600, &text);
            flight.status = Some(r.status());
            flight.end(true);
            return r;
        }
        flight.status = Some(parts.status);
        Response::from_parts(parts, Tracked { inner: body, flight }.boxed())
    }
}

/// A request between its key and its response's end: the log line, the call's slot, the
/// permit. Ended unfinished (dropped), it cancels the call and logs `(client gone)`.
struct Flight {
    calls: Arc<Calls>,
    key: u64,
    line: Line,
    /// The response's status, once rmcp answered.
    status: Option<StatusCode>,
    done: bool,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Flight {
    fn end(&mut self, completed: bool) {
        if self.done {
            return;
        }
        self.done = true;
        self.calls.finish(self.key, completed);
        let status = self.status.unwrap_or(StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST));
        self.line.print(status, if completed { "" } else { " (client gone)" });
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        // hyper drops an unfinished response when the client went away (or the server stops).
        self.end(false);
    }
}

/// A response body that ends its request's [`Flight`] when it ends (or is dropped).
struct Tracked {
    inner: BoxBody<Bytes, Infallible>,
    flight: Flight,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            self.flight.end(true);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        // A body whose last frame was read but whose end was never polled is complete.
        let complete = self.inner.is_end_stream();
        self.flight.end(complete);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_names_come_from_the_body_without_control_characters() {
        let v = serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "workspace_exec"}});
        let (rpc, id) = rpc_of(&v);
        assert_eq!(rpc, "tools/call workspace_exec");
        assert_eq!(id, 7);
        let (rpc, _) = rpc_of(&serde_json::json!({"method": "a\u{1b}[2Jb"}));
        assert_eq!(rpc, "a[2Jb");
        assert_eq!(rpc_of(&serde_json::json!([1, 2])).0, "");
    }
}
