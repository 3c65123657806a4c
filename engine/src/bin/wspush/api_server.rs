//! Serving the HTTP API's connections: the accept loop, the cap on open connections, and
//! each connection's header and idle deadlines (the body deadline is the push handlers',
//! in `api.rs`). `axum::serve` has none of these, and hyper's own header timeout also runs
//! while a kept-alive connection waits, so it cannot be told apart from the idle timeout.
//!
//! A connection is in one of three phases, each with its own deadline:
//! - **head**: from the accept, or from the first byte after a response, until a complete
//!   request head is read: `header_timeout`, then the connection is closed (counted in
//!   `api_timeouts`);
//! - **busy**: a request is being handled: no deadline here (the handlers bound themselves:
//!   the body timeout, then the engine's receipt timeout);
//! - **idle**: after a response (while it is written, and while waiting for the next
//!   request): `idle_timeout`, then the connection is closed.
//!
//! Over `max_connections` the server stops accepting: new connections wait in the kernel's
//! listen backlog, holding no file descriptor, and are accepted in arrival order as slots
//! free (a silent connection frees its slot after `header_timeout`), so `/healthz` stays
//! reachable under a flood of idle connections, only later.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::service::{service_fn, Service as _};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

/// The API's timeouts (`None`: no limit) and its connection cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiLimits {
    /// From the accept (or a request's first byte) to its complete head.
    pub header_timeout: Option<Duration>,
    /// From a push's head to the end of its body.
    pub body_timeout: Option<Duration>,
    /// From a response to the first byte of the next request.
    pub idle_timeout: Option<Duration>,
    /// Most open connections.
    pub max_connections: usize,
}

/// The API server's own counters (not the engine's: they are about the API's connections).
#[derive(Debug, Default)]
pub struct ApiCounters {
    /// Open API connections.
    pub connections: AtomicU64,
    /// Connections closed for not sending a request head in time, and pushes answered 408
    /// for not sending their body in time.
    pub timeouts: AtomicU64,
}

impl ApiCounters {
    /// Counts one timeout.
    pub fn timed_out(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }
}

/// Accepts and serves connections until `stop` resolves, then lets the open ones finish
/// their requests (graceful shutdown) and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    app: Router,
    limits: ApiLimits,
    counters: Arc<ApiCounters>,
    stop: impl std::future::Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Each connection holds a receiver: `closed()` resolves when the last one is gone.
    let (stopping_tx, stopping_rx) = watch::channel(false);
    tokio::pin!(stop);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut stop => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // No Nagle: a publisher that pipelines requests on a keep-alive connection would
        // otherwise wait for delayed ACKs between small responses (milliseconds each).
        if let Err(e) = stream.set_nodelay(true) {
            debug!("cannot set TCP_NODELAY on an API connection: {e}");
        }
        let (app, limits, counters, stopping) =
            (app.clone(), limits.clone(), counters.clone(), stopping_rx.clone());
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, app, limits, counters, stopping).await,
                Some(config) => {
                    // The TLS handshake under the head's deadline (a client that stalls in it
                    // holds a slot no longer than one that stalls in its request).
                    let deadline = limits.header_timeout.unwrap_or(TLS_HANDSHAKE_TIMEOUT);
                    match tokio::time::timeout(deadline, TlsAcceptor::from(config).accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, app, limits, counters, stopping).await,
                        Ok(Err(e)) => debug!("API TLS handshake failed: {e}"),
                        Err(_) => {
                            counters.timed_out();
                            debug!("API TLS handshake timed out");
                        }
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    drop(stopping_rx);
    let _ = stopping_tx.send(true);
    stopping_tx.closed().await;
}

/// How long an API client has for its TLS handshake when `api_header_timeout` is off.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Out of file descriptors, or a transient error: wait a little instead of spinning.
async fn accept_failed(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionRefused
    ) {
        return;
    }
    warn!("cannot accept an API connection: {error}; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves one connection until it closes, its deadline passes, or shutdown ends it.
async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    app: Router,
    limits: ApiLimits,
    counters: Arc<ApiCounters>,
    mut stopping: watch::Receiver<bool>,
) {
    counters.connections.fetch_add(1, Ordering::Relaxed);
    let phase = Arc::new(PhaseClock::new(limits.header_timeout, limits.idle_timeout));
    let router = TowerToHyperService::new(app);
    let service = {
        let phase = phase.clone();
        service_fn(move |request: hyper::Request<Incoming>| {
            let busy = phase.busy();
            let response = router.call(request);
            async move {
                let response = response.await;
                drop(busy);
                response
            }
        })
    };
    let io = TokioIo::new(Watched { stream, phase: phase.clone() });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The phases above do it; hyper's would also cut kept-alive connections after it.
    builder.header_read_timeout(None);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let expired = phase.expired();
    tokio::pin!(expired);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    debug!("api connection ended: {e}");
                }
                break;
            }
            waited = &mut expired => {
                if waited == Phase::Head {
                    counters.timed_out();
                    debug!("api connection closed: no complete request head in time");
                }
                break;
            }
            changed = stopping.changed(), if !shutting_down => {
                if changed.is_err() || *stopping.borrow() {
                    shutting_down = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
    counters.connections.fetch_sub(1, Ordering::Relaxed);
}

/// What a connection is doing, for its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for a complete request head.
    Head,
    /// A request is being handled.
    Busy,
    /// Writing a response, or waiting for the next request.
    Idle,
}

/// A connection's phase and deadline, moved by its reads and its requests.
struct PhaseClock {
    state: Mutex<(Phase, Option<Instant>)>,
    changed: Notify,
    header_timeout: Option<Duration>,
    idle_timeout: Option<Duration>,
}

impl PhaseClock {
    fn new(header_timeout: Option<Duration>, idle_timeout: Option<Duration>) -> Self {
        let deadline = header_timeout.map(|timeout| Instant::now() + timeout);
        Self {
            state: Mutex::new((Phase::Head, deadline)),
            changed: Notify::new(),
            header_timeout,
            idle_timeout,
        }
    }

    fn set(&self, phase: Phase, timeout: Option<Duration>) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) =
            (phase, timeout.map(|timeout| Instant::now() + timeout));
        self.changed.notify_one();
    }

    /// Bytes arrived: an idle connection has begun its next request head.
    fn on_bytes(&self) {
        let idle = self.state.lock().unwrap_or_else(|e| e.into_inner()).0 == Phase::Idle;
        if idle {
            self.set(Phase::Head, self.header_timeout);
        }
    }

    /// A request head is complete: busy until the guard is dropped (the response is made).
    fn busy(self: &Arc<Self>) -> BusyGuard {
        self.set(Phase::Busy, None);
        BusyGuard(self.clone())
    }

    /// Resolves with the phase whose deadline passed.
    async fn expired(&self) -> Phase {
        loop {
            let (phase, deadline) = *self.state.lock().unwrap_or_else(|e| e.into_inner());
            match deadline {
                // A permit stored by a change since the lock above wakes this at once.
                None => self.changed.notified().await,
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {
                            let now = *self.state.lock().unwrap_or_else(|e| e.into_inner());
                            if now == (phase, Some(deadline)) {
                                return phase;
                            }
                        }
                        () = self.changed.notified() => {}
                    }
                }
            }
        }
    }
}

/// Puts its connection back to idle when the request's response is made (or abandoned).
struct BusyGuard(Arc<PhaseClock>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.set(Phase::Idle, self.0.idle_timeout);
    }
}

/// The connection's socket, telling its clock when bytes arrive.
struct Watched<S> {
    stream: S,
    phase: Arc<PhaseClock>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.phase.on_bytes();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
