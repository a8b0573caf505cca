//! Serving the router over TCP with limits a client cannot defeat: [`serve`] runs its own
//! accept loop over hyper's HTTP/1 connections instead of `axum::serve`, which has no header
//! timeout, no connection limit and waits for every connection on shutdown.
//!
//! - **Header timeout**: a request's head must arrive within [`Limits::header_timeout`], counted
//!   from the moment the connection waits for it (its opening, or on a kept-alive connection the
//!   end of the previous response: so this is also the idle timeout of kept-alive connections).
//!   Otherwise hyper closes the connection. A client that sends half a request holds a
//!   connection for that long, no longer.
//! - **Body timeout**: a body must be read in full within [`Limits::body_timeout`] of its head,
//!   or the request gets 408 `BODY_TIMEOUT` (the deadline travels in the request's extensions as
//!   a [`BodyDeadline`]; [`crate::body::bytes`] enforces it).
//! - **Connection limit**: at most [`Limits::max_connections`] connections are open at once.
//!   Past that the server stops accepting: new connections wait in the kernel's backlog until a
//!   connection closes (a slow one closes at the latest after the header timeout), so the process
//!   never runs out of file descriptors and `/healthz` answers again once the slow ones are gone.
//! - **Bounded shutdown**: when `shutdown` resolves, the listener is closed, idle connections are
//!   closed, in-flight requests are answered, and after [`Limits::shutdown_timeout`] whatever is
//!   still open is dropped.
//! - **TLS** ([`serve_tls`]): the handshake runs in the connection's own task, holding its slot,
//!   and must finish within [`Limits::header_timeout`] of the connection's opening, or the
//!   connection is closed: a client that stalls its handshake holds a slot no longer than one
//!   that stalls its headers. The header timeout then starts again for the request's head.
//!   A failed handshake (a client that does not trust the certificate) just closes the
//!   connection; on shutdown, connections still in their handshake are closed at once.

pub use crate::tls::{Tls, TlsError};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

/// The limits of [`serve`]. [`Limits::default`] gives the documented defaults of `allot serve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to receive a request's head (also the idle time allowed on a kept-alive connection).
    pub header_timeout: Duration,
    /// Time to receive a request's body, from the end of its head.
    pub body_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time given to open connections to finish on shutdown.
    pub shutdown_timeout: Duration,
}

/// Default of [`Limits::header_timeout`].
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`Limits::body_timeout`].
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default of [`Limits::max_connections`].
pub const MAX_CONNECTIONS: usize = 4096;
/// Default of [`Limits::shutdown_timeout`].
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: HEADER_TIMEOUT,
            body_timeout: BODY_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            shutdown_timeout: SHUTDOWN_TIMEOUT,
        }
    }
}

/// Counters of [`serve`], shown in `/metrics` (`allot_http_connections`,
/// `allot_http_connections_waited_total`).
#[derive(Debug, Default)]
pub struct Connections {
    /// Connections open now.
    pub open: AtomicUsize,
    /// Times the limit was reached and accepting had to wait for a connection to close.
    pub waited: AtomicU64,
    /// The limit (0 until [`serve`] runs).
    pub limit: AtomicUsize,
}

/// When the body of a request must have been read by: set by [`serve`] on every request.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub Instant);

/// Marks a request that arrived over TLS: set by [`serve_tls`] on every request (the console
/// marks its session cookie `Secure` then).
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

/// Serves `router` on `listener` under `limits` until `shutdown` resolves, then shuts down within
/// [`Limits::shutdown_timeout`], counting connections in `stats`. Returns how many connections
/// were still open at the bound and were dropped.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stats: Arc<Connections>,
    shutdown: impl Future<Output = ()> + Send,
) -> usize {
    run(listener, None, router, limits, stats, shutdown).await
}

/// [`serve`] over HTTPS: every connection starts with a TLS handshake with `tls`'s certificate,
/// bounded by [`Limits::header_timeout`].
pub async fn serve_tls(
    listener: TcpListener,
    tls: Tls,
    router: Router,
    limits: Limits,
    stats: Arc<Connections>,
    shutdown: impl Future<Output = ()> + Send,
) -> usize {
    run(listener, Some(tls), router, limits, stats, shutdown).await
}

async fn run(
    listener: TcpListener,
    tls: Option<Tls>,
    router: Router,
    limits: Limits,
    stats: Arc<Connections>,
    shutdown: impl Future<Output = ()> + Send,
) -> usize {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    stats.limit.store(limits.max_connections.max(1), Ordering::Relaxed);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let mut full = false;
    tokio::pin!(shutdown);
    loop {
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
        let slot = match slots.clone().try_acquire_owned() {
            Ok(s) => {
                full = false;
                s
            }
            Err(_) => {
                if !full {
                    tracing::warn!(limit = limits.max_connections, "connection limit reached: new connections wait");
                    full = true;
                }
                stats.waited.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = &mut shutdown => break,
                    s = slots.clone().acquire_owned() => match s {
                        Ok(s) => s,
                        Err(_) => break,
                    },
                }
            }
        };
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and the like: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let body_timeout = limits.body_timeout;
        let over_tls = tls.is_some();
        let service = hyper::service::service_fn(move |req: axum::http::Request<Incoming>| {
            let mut req = req.map(axum::body::Body::new);
            req.extensions_mut().insert(BodyDeadline(Instant::now() + body_timeout));
            if over_tls {
                req.extensions_mut().insert(OverTls);
            }
            let router = router.clone();
            async move { Ok::<_, Infallible>(router.oneshot(req).await.unwrap_or_else(|e| match e {})) }
        });
        let stop = stop_rx.clone();
        let open = Open::new(stats.clone());
        let (http, tls, handshake_timeout) = (http.clone(), tls.clone(), limits.header_timeout);
        conns.spawn(async move {
            let (_slot, _open) = (slot, open);
            match tls {
                None => connection(&http, stream, service, stop).await,
                Some(tls) => {
                    let mut stopped = stop.clone();
                    let handshake = tokio::time::timeout(handshake_timeout, tls.acceptor.accept(stream));
                    let stream = tokio::select! {
                        r = handshake => match r {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => return tracing::debug!(error = %e, "TLS handshake failed"),
                            Err(_) => return tracing::debug!("TLS handshake timed out"),
                        },
                        // Nothing was asked yet: nothing to finish.
                        _ = stopped.wait_for(|s| *s) => return,
                    };
                    connection(&http, stream, service, stop).await
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = conns.len();
    if open > 0 {
        tracing::info!(connections = open, "closing connections");
    }
    let drained =
        tokio::time::timeout(limits.shutdown_timeout, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_ok() {
        return 0;
    }
    let left = conns.len();
    tracing::warn!(connections = left, "shutdown timeout: dropping connections still open");
    conns.shutdown().await;
    left
}

/// Serves one connection's requests until it ends, or gracefully once `stop` turns true.
async fn connection<I, S>(http: &http1::Builder, io: I, service: S, mut stop: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => finished(r),
        _ = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            finished(conn.await);
        }
    }
}

/// One open connection in [`Connections::open`], for as long as it lives (also when aborted).
struct Open(Arc<Connections>);

impl Open {
    fn new(stats: Arc<Connections>) -> Open {
        stats.open.fetch_add(1, Ordering::Relaxed);
        Open(stats)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn finished(r: Result<(), hyper::Error>) {
    if let Err(e) = r {
        // Timeouts and clients that went away are the normal end of a connection here.
        tracing::debug!(error = %e, "connection closed");
    }
}
