//! Connections: the accept loop, with limits and timeouts against idle, slow and runaway clients.
//!
//! - At most [`ConnectionLimits::max_connections`] connections are open at once. A new one
//!   past the limit closes the connection that has been idle longest (no request in progress)
//!   and takes its place; if every connection is busy it waits for one to finish. Idle sockets
//!   cannot lock out real clients, nor use up file descriptors.
//! - A connection with no request in progress is closed after `idle_timeout` (keep-alive), and
//!   one that has started sending a request but not finished its headers after
//!   `header_read_timeout` (a slow-header client cannot hold a connection).
//! - A response the client stops reading is abandoned after `write_timeout` without progress.
//! - Accept errors (such as running out of file descriptors) back off, doubling up to a second.
//! - With TLS, the handshake must end within `header_read_timeout` of the accept, and then the
//!   connection counts as fresh (idle, no request started). A client that speaks plain HTTP to
//!   the TLS port is answered with a plain-text 400 and closed.
//!
//! Each connection is watched through its socket (bytes read, writes blocked) and its requests
//! (how many are in progress, counted until their response bodies end).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, header};
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body::Frame;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tower::ServiceExt;

use crate::tls::{self, Tls};

/// Limits on connections; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open requests finish.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_tls(listener, app, limits, None, shutdown).await
}

/// [`serve`], over TLS when `tls` is given.
pub(crate) async fn serve_tls(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let registry = Arc::new(Registry::default());
    let limits = Arc::new(limits);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let _watching = tls.as_ref().map(Tls::watch_files);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = Duration::ZERO;
                accepted
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                registry.evict_idlest();
                tokio::select! {
                    () = &mut shutdown => break,
                    slot = slots.clone().acquire_owned() => slot.map_err(io::Error::other)?,
                }
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            // No Nagle delay: a response's last bytes must not wait for the client's delayed ACK.
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let activity = Arc::new(Activity::new());
        let registered = registry.add(activity.clone());
        let service = ConnService { router: app.clone(), peer, activity: activity.clone() };
        let io = Watched { inner: stream, activity: activity.clone() };
        let watcher = graceful.watcher();
        let limits = limits.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            // Dropped in this order: out of the registry before the slot is free again.
            let _held = (registered, slot);
            let connection = async {
                let Some(tls) = tls else { return serve_connection(io, service, watcher).await };
                match tokio::time::timeout(limits.header_read_timeout, tls_handshake(&tls, io)).await {
                    Err(_) => Err("the TLS handshake took longer than the header-read timeout".into()),
                    Ok(Err(e)) => Err(format!("TLS handshake failed: {e}").into()),
                    Ok(Ok(None)) => Ok(()),
                    Ok(Ok(Some(io))) => {
                        activity.handshake_done();
                        serve_connection(io, service, watcher).await
                    }
                }
            };
            tokio::select! {
                result = connection => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                }
                reason = activity.watchdog(&limits) => {
                    tracing::debug!(%peer, reason, "closing the connection");
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Serves HTTP/1.1 or HTTP/2 (whichever the client speaks) on one connection.
async fn serve_connection<I>(
    io: I,
    service: ConnService,
    watcher: hyper_util::server::graceful::Watcher,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().max_concurrent_streams(128);
    watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned()).await
}

/// The TLS handshake on a new connection; `None` when the client spoke plain HTTP and was
/// answered.
async fn tls_handshake(tls: &Tls, io: Watched) -> io::Result<Option<tokio_rustls::server::TlsStream<Watched>>> {
    let mut first = [0u8; 1];
    if io.inner.peek(&mut first).await? == 1 && tls::starts_plain_http(first[0]) {
        tls::answer_plain_http(io).await?;
        return Ok(None);
    }
    tls.acceptor().accept(io).await.map(Some)
}

/// The open connections, so that the idlest can make room for a new one.
#[derive(Debug, Default)]
struct Registry {
    next: AtomicU64,
    open: parking_lot::Mutex<std::collections::HashMap<u64, Arc<Activity>>>,
}

impl Registry {
    fn add(self: &Arc<Self>, activity: Arc<Activity>) -> Registered {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open.lock().insert(id, activity);
        Registered { registry: self.clone(), id }
    }

    /// Asks the connection idle longest (no request in progress) to close, unless one was
    /// asked already and is closing.
    fn evict_idlest(&self) {
        let open = self.open.lock();
        if open.values().any(|a| a.evicted.load(Ordering::SeqCst) && a.in_flight.load(Ordering::SeqCst) == 0) {
            return;
        }
        let idlest = open.values().filter_map(|a| a.idle_since_instant().map(|t| (t, a))).min_by_key(|(t, _)| *t);
        if let Some((_, activity)) = idlest {
            activity.evict();
        }
    }
}

/// A connection's place in the [`Registry`], until dropped.
struct Registered {
    registry: Arc<Registry>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.open.lock().remove(&self.id);
    }
}

/// Errors of one connection that was being accepted, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

const NEVER: u64 = u64::MAX;

/// What a connection is doing, in milliseconds since it was accepted.
#[derive(Debug)]
struct Activity {
    start: Instant,
    /// Requests whose response has not ended.
    in_flight: AtomicUsize,
    /// When the last request ended (or the connection was accepted).
    idle_since: AtomicU64,
    /// When the first byte of a request arrived while none was in progress.
    head_started: AtomicU64,
    /// When writing blocked without progress.
    write_blocked_since: AtomicU64,
    /// Asked to close to make room for a new connection.
    evicted: std::sync::atomic::AtomicBool,
    /// Wakes the watchdog when a deadline may have moved earlier.
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(NEVER),
            write_blocked_since: AtomicU64::new(NEVER),
            evicted: std::sync::atomic::AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn read(&self, bytes: usize) {
        if bytes > 0
            && self.in_flight.load(Ordering::SeqCst) == 0
            && self.head_started.compare_exchange(NEVER, self.now(), Ordering::SeqCst, Ordering::SeqCst).is_ok()
        {
            self.changed.notify_one();
        }
    }

    fn wrote(&self, progress: bool) {
        if progress {
            self.write_blocked_since.store(NEVER, Ordering::SeqCst);
        } else if self
            .write_blocked_since
            .compare_exchange(NEVER, self.now(), Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// Since when the connection has had no request in progress (counting from the first byte
    /// of a request still being received); `None` while one is in progress.
    fn idle_since_instant(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let since = match self.head_started.load(Ordering::SeqCst) {
            NEVER => self.idle_since.load(Ordering::SeqCst),
            head => head,
        };
        Some(self.start + Duration::from_millis(since))
    }

    fn evict(&self) {
        self.evicted.store(true, Ordering::SeqCst);
        self.changed.notify_one();
    }

    /// After a TLS handshake the connection is idle, as if just accepted: its handshake bytes
    /// did not start a request.
    fn handshake_done(&self) {
        self.idle_since.store(self.now(), Ordering::SeqCst);
        self.head_started.store(NEVER, Ordering::SeqCst);
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_started.store(NEVER, Ordering::SeqCst);
    }

    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle_since.store(self.now(), Ordering::SeqCst);
            self.changed.notify_one();
        }
    }

    /// Resolves with the reason once the connection has broken a limit.
    async fn watchdog(&self, limits: &ConnectionLimits) -> &'static str {
        let ms = |d: Duration| d.as_millis().min(u128::from(NEVER / 2)) as u64;
        loop {
            if self.evicted.load(Ordering::SeqCst) && self.in_flight.load(Ordering::SeqCst) == 0 {
                return "idle, closed to make room for a new connection";
            }
            let (deadline, reason) = if self.in_flight.load(Ordering::SeqCst) == 0 {
                match self.head_started.load(Ordering::SeqCst) {
                    NEVER => (self.idle_since.load(Ordering::SeqCst) + ms(limits.idle_timeout), "idle"),
                    head => (head + ms(limits.header_read_timeout), "request headers too slow"),
                }
            } else {
                match self.write_blocked_since.load(Ordering::SeqCst) {
                    NEVER => (NEVER, ""),
                    blocked => (blocked + ms(limits.write_timeout), "client stopped reading the response"),
                }
            };
            let now = self.now();
            if deadline <= now {
                return reason;
            }
            // Without a deadline, look again now and then: nothing else moves one earlier.
            let wait = if deadline == NEVER { ms(limits.write_timeout).max(1_000) } else { deadline - now };
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                () = self.changed.notified() => {}
            }
        }
    }
}

/// The socket, reporting reads and blocked writes to the connection's [`Activity`].
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            self.activity.read(buf.filled().len() - before);
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.wrote(!result.is_pending());
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(!result.is_pending());
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The app as one connection's service: knows the peer, counts requests in progress.
#[derive(Clone)]
struct ConnService {
    router: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        // HTTP/2 names the host in `:authority` (the URI), not in `Host`; the routes read `Host`.
        if !req.headers().contains_key(header::HOST)
            && let Some(host) = req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(header::HOST, host);
        }
        let in_flight = InFlight::start(self.activity.clone());
        let router = self.router.clone();
        Box::pin(async move {
            let response = router.oneshot(req.map(Body::new)).await?;
            Ok(response.map(|inner| Body::new(TrackedBody { inner, _in_flight: in_flight })))
        })
    }
}

/// A request in progress, until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> InFlight {
        activity.request_started();
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// A response body that keeps its request in progress until it ends or is dropped.
struct TrackedBody {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
