//! `pyro ui`: a review page for the person who accepts an agent's work, served on loopback.
//!
//! The page (`assets/`, embedded in the binary: it works offline) lists every workspace of the
//! user and shows one as a timeline, a grouped diff with a file tree and hunks loaded on
//! demand, live service logs and shell output (server-sent events), charts of commands and
//! usage, and actions (patch download, export, snapshot, reset, stop/start, delete). Every
//! route calls one SDK operation (`api`, `live`); nothing here re-implements one.
//!
//! Safety (`guard`): loopback only; a random token in the printed URL's path is required on
//! every request and never logged; `Host` must name the server (DNS rebinding); an action is a
//! POST with JSON from our own `Origin` and a fresh nonce (a replayed action is refused); a
//! strict Content-Security-Policy keeps anything the guest named from running as script.

mod api;
pub(crate) mod assets;
mod guard;
mod live;
mod state;

use state::App;

use crate::error::{Error, Result};
use crate::Pyro;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// How `pyro ui` serves.
#[derive(Debug, Clone)]
pub struct UiOptions {
    /// Where to listen: a loopback address (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The project directory exports may go to (besides a workspace's own seed directory).
    pub project: Option<PathBuf>,
    /// Open the page in the user's browser once serving (`xdg-open`).
    pub open: bool,
}

/// Serve the review page until SIGINT or SIGTERM. Prints one line with the URL (the token in
/// it) on stdout, then a request log without tokens on stderr. Blocks.
pub fn serve_ui(pyro: Pyro, o: UiOptions) -> Result<()> {
    if !o.listen.ip().is_loopback() {
        return Err(Error::invalid(format!(
            "pyro ui listens on loopback only, not {}: the page can reset and delete workspaces",
            o.listen.ip()
        ))
        .hint("use 127.0.0.1 and reach it from elsewhere over `ssh -L PORT:127.0.0.1:PORT`"));
    }
    let project = match &o.project {
        Some(p) => Some(p.canonicalize().map_err(|e| Error::not_found(format!("project {}: {e}", p.display())))?),
        None => None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(o.listen)
            .await
            .map_err(|e| Error::io(format!("listening on {}", o.listen), e))?;
        let addr = listener.local_addr().map_err(|e| Error::io("reading the bound address", e))?;
        let app = Arc::new(App { pyro, guard: Arc::new(guard::Guard::new(addr)?), project });
        let url = format!("http://{addr}/t/{}/", app.guard.token());
        println!("pyro ui: {url}");
        eprintln!("[ui] serving the review page on http://{addr}/ (the token is in the URL above; Ctrl-C stops)");
        if o.open {
            // Best effort: the URL is printed either way.
            let _ = std::process::Command::new("xdg-open")
                .arg(&url)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
        }
        // The guard wraps the whole router (a layer on routes would run after routing, and
        // the guard rewrites the path the routes match).
        let router = axum::Router::new()
            .fallback_service(api::router(app.clone()))
            .layer(axum::middleware::from_fn_with_state(app.guard.clone(), guard::check));
        axum::serve(listener, router)
            .with_graceful_shutdown(stopped())
            .await
            .map_err(|e| Error::io("serving the page", e))
    })?;
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok(())
}

/// SIGINT or SIGTERM.
async fn stopped() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    eprintln!("[ui] stopping");
}
