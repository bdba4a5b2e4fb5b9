//! The HTTP server's accept loop: binds, prints where it serves, serves each connection with
//! hyper (HTTP/1.1 or h2, TLS when configured) under a connection cap and a header timeout
//! (a client that trickles its request is cut off), and on SIGTERM or SIGINT stops
//! accepting, cancels running calls, waits for them a bounded time, and closes the rest.

use super::guard::Gate;
use super::token::Token;
use super::HttpOptions;
use crate::error::{Code, Error, Result};
use crate::mcp::server::PyroServer;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The TLS server config from a PEM certificate chain and private key.
pub(super) fn tls_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, p: &Path, e: &dyn std::fmt::Display| {
        Error::invalid(format!("{what} {}: {e}", p.display()))
            .hint("give PEM files (for example from certbot or mkcert)")
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<std::result::Result<_, _>>())
        .map_err(|e| bad("--tls-cert", cert, &e))?;
    if certs.is_empty() {
        return Err(bad("--tls-cert", cert, &"no certificate in it"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("--tls-key", key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::internal(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| Error::invalid(format!("--tls-cert and --tls-key do not make a TLS identity: {e}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Bind, serve until a signal, shut down.
pub(super) async fn run(
    server: PyroServer,
    o: HttpOptions,
    token: Option<(Token, PathBuf)>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<()> {
    let listener = TcpListener::bind(o.listen).await.map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::AddrInUse { Code::Conflict } else { Code::InvalidArgument };
        Error::new(code, format!("cannot listen on {}: {e}", o.listen))
    })?;
    let local = listener.local_addr().map_err(|e| Error::io("reading the bound address", e))?;
    // Signals are set up before the address is announced: a SIGTERM right after is handled.
    let mut term = signal(SignalKind::terminate()).map_err(|e| Error::io("handling SIGTERM", e))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| Error::io("handling SIGINT", e))?;
    let stop = CancellationToken::new();
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(o.limits.session_idle);
    let sessions = Arc::new(sessions);
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(o.host_names(local.port()))
        .with_allowed_origins(o.allowed_origins.clone())
        .enforce_origin_validation()
        .with_cancellation_token(stop.child_token())
        .with_max_request_body_bytes(o.limits.body_bytes);
    let calls = server.calls().clone();
    let profile = server.profile();
    let rmcp = StreamableHttpService::new(move || Ok(server.clone()), sessions.clone(), config);
    let gate = Arc::new(Gate {
        rmcp,
        sessions,
        token: token.as_ref().map(|(t, _)| t.clone()),
        calls: calls.clone(),
        permits: Arc::new(Semaphore::new(o.limits.calls_per_token)),
        limits: o.limits.clone(),
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    let auth = match &token {
        Some((_, file)) => format!("bearer token in {}", file.display()),
        None => "no authentication (--no-auth)".to_string(),
    };
    eprintln!("pyro mcp serve: MCP at {scheme}://{local}/mcp (profile {profile}; {auth})");
    if o.insecure_http {
        eprintln!(
            "pyro mcp serve: warning: plain HTTP on {}: the token and every file cross the network unencrypted",
            local.ip()
        );
    }
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let connections = Arc::new(Semaphore::new(o.limits.connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let read_timeout = o.limits.read_timeout;
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors and the like: wait a little rather than spin.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        // Over the cap: closed at once (the client sees a reset and retries later).
        let Ok(slot) = connections.clone().try_acquire_owned() else { continue };
        let _ = stream.set_nodelay(true);
        let gate = gate.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req| {
                let gate = gate.clone();
                async move { Ok::<_, std::convert::Infallible>(gate.handle(req, peer).await) }
            });
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(read_timeout).half_close(false);
            builder.http2().timer(TokioTimer::new());
            match tls {
                Some(acceptor) => {
                    let Ok(Ok(s)) = tokio::time::timeout(read_timeout, acceptor.accept(stream)).await else { return };
                    let _ = watcher.watch(builder.serve_connection(TokioIo::new(s), service).into_owned()).await;
                }
                None => {
                    let _ = watcher.watch(builder.serve_connection(TokioIo::new(stream), service).into_owned()).await;
                }
            }
        });
    }
    // Stop: no new connections; running calls are cancelled (their guest commands killed and
    // recorded), and get a bounded time to say so to their clients.
    drop(listener);
    let n = calls.cancel_all();
    eprintln!("pyro mcp serve: stopping ({n} running calls cancelled)");
    let deadline = Instant::now() + o.limits.shutdown_grace;
    while calls.running() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), graceful.shutdown()).await;
    eprintln!("pyro mcp serve: stopped");
    Ok(())
}
