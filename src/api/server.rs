//! The HTTP/1.1 server under the router: our own accept loop over hyper, because axum::serve has
//! no header-read timeout and no connection cap. A slow or idle client holds a connection for at
//! most `header_timeout`; at most `max_connections` are served at once, further clients wait in
//! the listen backlog. Connections go through a `Handshake`: `Plain`, or `Tls` (api/tls.rs).

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Listen backlog: clients beyond `max_connections` queue here rather than being refused.
const BACKLOG: i32 = 1024;
/// Request headers (request line included) larger than this are refused with 431.
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// The shortest timeouts accepted from the configuration.
const MIN_TIMEOUT: Duration = Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub max_connections: usize,
    /// Time to send request headers; also the idle keep-alive timeout and the TLS handshake
    /// timeout.
    pub header_timeout: Duration,
    /// Time to send a request body.
    pub body_timeout: Duration,
    /// How long shutdown waits for requests in progress.
    pub shutdown_grace: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self::from(&crate::config::ApiConfig::default())
    }
}

impl From<&crate::config::ApiConfig> for HttpOptions {
    fn from(c: &crate::config::ApiConfig) -> Self {
        Self {
            max_connections: c.max_connections.max(1),
            header_timeout: c.header_timeout.0.max(MIN_TIMEOUT),
            body_timeout: c.body_timeout.0.max(MIN_TIMEOUT),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Turns an accepted TCP stream into the stream HTTP is spoken on (plain: itself; `Tls`).
pub trait Handshake: Clone + Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn handshake(&self, tcp: TcpStream) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Plain;

impl Handshake for Plain {
    type Io = TcpStream;
    async fn handshake(&self, tcp: TcpStream) -> std::io::Result<TcpStream> {
        Ok(tcp)
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits up to `shutdown_grace` for
/// requests in progress.
pub async fn serve_with<H: Handshake>(
    listener: TcpListener,
    handshake: H,
    app: Router,
    opts: HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // std's bind() listens with a backlog of 128; raise it so that a burst of clients beyond
    // the cap waits instead of being dropped (Linux accepts listen() again on a listening socket).
    if let Err(e) = socket2::SockRef::from(&listener).listen(BACKLOG) {
        tracing::warn!("cannot raise the listen backlog to {BACKLOG}: {e}");
    }
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    let http = Arc::new(http);
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    let graceful = GracefulShutdown::new();
    let mut last_full_warning: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if last_full_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    tracing::warn!(
                        max_connections = opts.max_connections,
                        "HTTP connection limit reached: new clients wait (api.max_connections)"
                    );
                    last_full_warning = Some(Instant::now());
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    () = &mut shutdown => break,
                }
            }
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = tcp.set_nodelay(true);
        let (http, app, handshake) = (http.clone(), app.clone(), handshake.clone());
        let watcher = graceful.watcher();
        let header_timeout = opts.header_timeout;
        tokio::spawn(async move {
            let _permit = permit; // held for the connection's lifetime
            let io = match tokio::time::timeout(header_timeout, handshake.handshake(tcp)).await {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => {
                    tracing::debug!("HTTP handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!("HTTP handshake timed out after {header_timeout:?}");
                    return;
                }
            };
            // the client address for handlers that want it (`ConnectInfo`: sign-in damping)
            let app =
                tower_layer::Layer::layer(&axum::Extension(axum::extract::ConnectInfo(peer)), app);
            let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
            if let Err(e) = watcher.watch(conn).await {
                // header timeouts, resets, malformed requests: the client's problem
                tracing::debug!("HTTP connection: {e}");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(opts.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "HTTP requests still in progress after {:?}: closing them",
            opts.shutdown_grace
        );
    }
    Ok(())
}

/// Errors of one accept (the client gave up before we took it) are skipped; running out of file
/// descriptors is logged and retried after a pause, which lets connections finish.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    ) {
        return;
    }
    tracing::error!("HTTP accept failed: {e} (raise LimitNOFILE or lower api.max_connections)");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
