//! The HTTP server's accept loop: binds, prints where it serves, serves each connection with
//! hyper (HTTP/1.1 or h2, TLS when configured) under a connection cap and a header timeout
//! (a client that trickles its request is cut off) and an idle cut (a connection that moves
//! no byte either way for `idle` closes: every open response stream sends a keep-alive
//! every 15 s, so only a silent client is cut), and on SIGTERM or SIGINT stops
//! accepting, cancels running calls, waits for them a bounded time, and closes the rest.

use super::guard::Gate;
use super::options::HttpOptions;
use super::token::Token;
use crate::error::{Code, Error, Result};
use crate::mcp::server::PyroServer;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// What watches connections for a graceful stop.
type Watcher = hyper_util::server::graceful::Watcher;

/// Milliseconds since `base`, for the activity clock.
fn ms_since(base: Instant) -> u64 {
    base.elapsed().as_millis() as u64
}

/// A connection's byte stream, stamping the time of its last read or write.
struct Activity<T> {
    io: T,
    base: Instant,
    last: Arc<AtomicU64>,
}

impl<T> Activity<T> {
    fn touch(&self) {
        self.last.store(ms_since(self.base), Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Activity<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Activity<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Serve one connection until it ends, or until it has been silent for `idle`.
async fn serve_one<T>(io: T, gate: Arc<Gate>, peer: SocketAddr, limits: (Duration, Duration), watcher: Watcher)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (read_timeout, idle) = limits;
    let service = hyper::service::service_fn(move |req| {
        let gate = gate.clone();
        async move { Ok::<_, Infallible>(gate.handle(req, peer).await) }
    });
    let base = Instant::now();
    let last = Arc::new(AtomicU64::new(0));
    let io = Activity { io, base, last: last.clone() };
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(read_timeout).half_close(false);
    builder.http2().timer(TokioTimer::new());
    let conn = watcher.watch(builder.serve_connection(TokioIo::new(io), service).into_owned());
    let silent = async {
        loop {
            tokio::time::sleep(idle / 4).await;
            if ms_since(base).saturating_sub(last.load(Ordering::Relaxed)) >= idle.as_millis() as u64 {
                return;
            }
        }
    };
    // Dropping the connection drops its responses: calls they carry are cancelled (`guard`).
    tokio::select! {
        _ = conn => {}
        _ = silent => {}
    }
}

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
    let idle = o.limits.idle;
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
            match tls {
                Some(acceptor) => {
                    let Ok(Ok(s)) = tokio::time::timeout(read_timeout, acceptor.accept(stream)).await else { return };
                    serve_one(s, gate, peer, (read_timeout, idle), watcher).await;
                }
                None => serve_one(stream, gate, peer, (read_timeout, idle), watcher).await,
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
