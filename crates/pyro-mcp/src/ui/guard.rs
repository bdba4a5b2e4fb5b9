//! What every `pyro ui` request passes before a route sees it, and the headers every answer
//! carries.
//!
//! - `Host` must be the server's own address (`127.0.0.1:PORT`, `localhost:PORT`): a page on
//!   another site that points a name of its own at 127.0.0.1 (DNS rebinding) gets 403.
//! - The path must start with `/t/TOKEN/` (256 random bits, compared in constant time); the
//!   prefix is stripped before routing, and the request log shows `/t/…/` instead.
//! - `Origin`, when sent, must be the server's own; a POST (every action) must send it, and
//!   must carry JSON (a cross-site form cannot), and a fresh nonce (`Guard::fresh`): a
//!   replayed action is refused, so a double click or a resent request acts once.
//! - Answers forbid framing, sniffing, caching and referrers, and a Content-Security-Policy
//!   allows only our own script and style: a file named `<img src=x onerror=...>` that
//!   slipped past escaping still could not run anything.

use crate::mcp::http::token::Token;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Nonces remembered (the oldest are forgotten first): far more actions than a person takes.
const NONCES_KEPT: usize = 10_000;

pub(crate) struct Guard {
    token: Token,
    /// Accepted `Host` values.
    hosts: Vec<String>,
    /// Accepted `Origin` values (`http://` + a host).
    origins: Vec<String>,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Guard {
    pub fn new(addr: SocketAddr) -> crate::error::Result<Guard> {
        let port = addr.port();
        let mut hosts = vec![format!("localhost:{port}")];
        hosts.push(match addr {
            SocketAddr::V4(a) => format!("{}:{port}", a.ip()),
            SocketAddr::V6(a) => format!("[{}]:{port}", a.ip()),
        });
        let origins = hosts.iter().map(|h| format!("http://{h}")).collect();
        Ok(Guard { token: Token::generate()?, hosts, origins, seen: Mutex::new(Default::default()) })
    }

    pub fn token(&self) -> &str {
        self.token.reveal()
    }

    /// True the first time `nonce` is seen (then it is spent).
    pub fn fresh(&self, nonce: &str) -> bool {
        let mut g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let (set, order) = &mut *g;
        if !set.insert(nonce.to_string()) {
            return false;
        }
        order.push_back(nonce.to_string());
        if order.len() > NONCES_KEPT {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        true
    }
}

fn refuse(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({"error": {"code": "invalid_argument", "message": message}});
    (status, axum::Json(body)).into_response()
}

/// The checks above, the token stripped from the path, the request logged, headers added.
pub(crate) async fn check(State(g): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // Owned copies: a borrow of the request (its body is not Sync) may not live across an await.
    let (host, origin, content_type) = {
        let h = |name| req.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_string);
        (h(header::HOST), h(header::ORIGIN), h(header::CONTENT_TYPE))
    };
    // The path past the token, for routing and for the log (never the token itself).
    let path = req.uri().path().to_string();
    let rest = path
        .strip_prefix("/t/")
        .and_then(|r| r.split_once('/'))
        .filter(|(t, _)| g.token.matches(t.as_bytes()))
        .map(|(_, r)| r);
    let logged = match rest {
        Some(r) => format!("/t/…/{}", crate::text::clip(r, 120)),
        None => "(no token)".to_string(),
    };
    let verdict = if !host.is_some_and(|h| g.hosts.contains(&h)) {
        Err(refuse(StatusCode::FORBIDDEN, "unknown Host: open the URL `pyro ui` printed"))
    } else if rest.is_none() {
        Err(refuse(StatusCode::NOT_FOUND, "not found: open the URL `pyro ui` printed (it holds the token)"))
    } else if origin.as_ref().is_some_and(|o| !g.origins.contains(o)) {
        Err(refuse(StatusCode::FORBIDDEN, "foreign Origin"))
    } else if method != Method::GET && method != Method::HEAD && origin.is_none() {
        Err(refuse(StatusCode::FORBIDDEN, "an action must come from the page (no Origin)"))
    } else if method == Method::POST && !content_type.is_some_and(|c| c.starts_with("application/json")) {
        Err(refuse(StatusCode::UNSUPPORTED_MEDIA_TYPE, "an action's body is JSON"))
    } else {
        Ok(())
    };
    let mut resp = match verdict {
        Err(r) => r,
        Ok(()) => {
            let rest = rest.unwrap_or_default();
            let pq = match req.uri().query() {
                Some(q) => format!("/{rest}?{q}"),
                None => format!("/{rest}"),
            };
            match pq.parse::<Uri>() {
                Ok(u) => {
                    *req.uri_mut() = u;
                    next.run(req).await
                }
                Err(_) => refuse(StatusCode::BAD_REQUEST, "malformed path"),
            }
        }
    };
    let h = resp.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: &'static str, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    set(h, "x-content-type-options", "nosniff");
    set(h, "referrer-policy", "no-referrer");
    set(h, "x-frame-options", "DENY");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, "cache-control", "no-store");
    }
    eprintln!("[ui] {method} {logged} {} {:.3} s", resp.status().as_u16(), started.elapsed().as_secs_f64());
    resp
}
