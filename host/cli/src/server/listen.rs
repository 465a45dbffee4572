//! The accept loop of `storage-host serve`: HTTP/1 connections served by
//! hyper, held to limits an abusive or broken client cannot get around.
//!
//! - **Idle timeout** (`idle_timeout`): a connection with no request in
//!   progress (a fresh one before its first byte, a keep-alive one between
//!   requests) is closed when it has been idle that long.
//! - **Header timeout** (`header_timeout`): once the first byte of a request
//!   has arrived, its headers must be complete within this time, or the
//!   server answers `408` with the API's JSON error and closes.
//! - **Body timeout** (`body_timeout`, tower-http's `RequestBodyTimeoutLayer`
//!   in `routes`): a body that stops arriving is answered `408`.
//! - **Send timeout** (`send_timeout`): a client that stops reading its
//!   answer (the socket accepts no more bytes for that long) loses the
//!   connection.
//! - **Connection limit** (`max_connections`, lowered to fit the process's
//!   descriptor limit): at the limit, the connection idle the longest (no
//!   request in progress) is closed to make room, so idle sockets cannot
//!   lock real clients out; when every connection is busy, new ones wait in
//!   the listen queue.
//! - **Out of descriptors** (`EMFILE`/`ENFILE` from `accept`): the loop
//!   closes the longest-idle connection, then retries as soon as any
//!   connection closes, or after a back-off (10 ms doubling to 1 s); it never
//!   stops accepting for good.
//! - **Graceful shutdown**: the listening socket is closed at once;
//!   connections with no request in progress (idle, or headers only
//!   half-sent) are closed at once; requests in progress finish (their body
//!   may still be arriving), then their connections close. What is still
//!   running after `shutdown_timeout` is dropped.
//!
//! hyper's own `header_read_timeout` is not used: its timer also runs while a
//! keep-alive connection waits for the next request (so the idle timeout
//! could not be longer than the header timeout), and it closes the connection
//! without an answer.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tower_service::Service;

use super::error::{ApiError, ErrorCode};

/// Descriptors kept free for everything but client connections (plugin
/// libraries, durable stores, backends' own connections, the runtime).
pub const RESERVED_DESCRIPTORS: usize = 64;

/// hyper's parser limits, set above the API's own (`routes::MAX_HEADERS`,
/// `MAX_HEADER_BYTES`, `MAX_URI_BYTES`) so that a request over those gets the
/// API's JSON 431/414; only one past these gets hyper's bare answer.
const PARSER_MAX_HEADERS: usize = 256;
const PARSER_MAX_BUF: usize = 64 * 1024;

/// How long the 408 answer to a request whose headers never finished may
/// take to write.
const ANSWER_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The limits the accept loop enforces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) header_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// `max_connections`, lowered so that connections leave
/// [`RESERVED_DESCRIPTORS`] of the process's descriptor limit free.
pub(crate) fn connection_limit(configured: usize) -> (usize, Option<u64>) {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    match soft {
        Some(soft) => {
            let fit = (soft as usize).saturating_sub(RESERVED_DESCRIPTORS).max(8);
            (configured.min(fit), Some(soft))
        }
        None => (configured, None),
    }
}

/// A time as nanoseconds since the server's start, in an atomic.
const NONE: u64 = u64::MAX;

/// What the accept loop, the connection's task and its I/O share about one
/// connection.
struct ConnState {
    epoch: Instant,
    /// Requests whose head has arrived and whose answer is not fully
    /// written yet.
    in_flight: AtomicUsize,
    /// When the connection last had no request in progress.
    idle_since: AtomicU64,
    /// When the first byte of the next request's head arrived (`NONE`: not yet).
    head_started: AtomicU64,
    /// Since when the socket has taken none of the bytes written to it
    /// (`NONE`: it is not full).
    write_blocked: AtomicU64,
    /// Asked to close by the accept loop to make room.
    evict: AtomicBool,
    /// Something above changed: the connection's task re-arms its timer.
    changed: Notify,
}

impl ConnState {
    fn new(epoch: Instant) -> Self {
        ConnState {
            epoch,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(nanos(epoch)),
            head_started: AtomicU64::new(NONE),
            write_blocked: AtomicU64::new(NONE),
            evict: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::SeqCst) > 0
    }

    /// No request in progress and no answer waiting to be written: closing
    /// the connection loses nothing. (Seen from the connection's own task,
    /// between polls of hyper, an answer is either fully handed to the
    /// socket or blocked on it.)
    fn quiet(&self) -> bool {
        !self.busy() && self.write_blocked.load(Ordering::SeqCst) == NONE
    }

    /// Bytes of a request arrived.
    fn on_read(&self) {
        if !self.busy()
            && self
                .head_started
                .compare_exchange(NONE, nanos(self.epoch), Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.changed.notify_one();
        }
    }

    /// A write found the socket full, or made progress.
    fn on_write<T>(&self, r: &Poll<io::Result<T>>) {
        match r {
            Poll::Pending => {
                if self
                    .write_blocked
                    .compare_exchange(NONE, nanos(self.epoch), Ordering::SeqCst, Ordering::SeqCst)
                    .is_ok()
                {
                    self.changed.notify_one();
                }
            }
            Poll::Ready(_) => self.write_blocked.store(NONE, Ordering::SeqCst),
        }
    }

    /// A request's head is complete: it is in flight until its answer is written.
    fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.head_started.store(NONE, Ordering::SeqCst);
        self.changed.notify_one();
        InFlight(Arc::clone(self))
    }

    /// When the connection's current wait ends, and which timeout that is.
    fn deadline(&self, limits: &Limits) -> Option<(Instant, Expiry)> {
        let at = |n: u64| self.epoch + Duration::from_nanos(n);
        match self.write_blocked.load(Ordering::SeqCst) {
            NONE => {}
            since => return Some((at(since) + limits.send_timeout, Expiry::Send)),
        }
        if self.busy() {
            return None;
        }
        match self.head_started.load(Ordering::SeqCst) {
            NONE => Some((
                at(self.idle_since.load(Ordering::SeqCst)) + limits.idle_timeout,
                Expiry::Idle,
            )),
            started => Some((at(started) + limits.header_timeout, Expiry::Header)),
        }
    }
}

fn nanos(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expiry {
    Idle,
    Header,
    Send,
}

/// Held from a request's head until its answer is written (or dropped).
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let s = &self.0;
        if s.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            s.idle_since.store(nanos(s.epoch), Ordering::SeqCst);
            s.changed.notify_one();
        }
    }
}

/// A TCP stream that tells its [`ConnState`] when request bytes arrive.
struct Tracked {
    stream: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.state.on_read();
        }
        r
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.state.on_write(&r);
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.state.on_write(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The live connections, for eviction.
#[derive(Default)]
struct Registry {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
}

impl Registry {
    fn insert(&self, state: Arc<ConnState>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, state);
        id
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the connection that has had no request in progress for the
    /// longest to close. `false` when every connection is busy.
    fn evict_longest_idle(&self) -> bool {
        let conns = self.lock();
        let victim = conns
            .values()
            .filter(|s| s.quiet() && !s.evict.load(Ordering::SeqCst))
            .min_by_key(|s| s.idle_since.load(Ordering::SeqCst));
        match victim {
            Some(s) => {
                s.evict.store(true, Ordering::SeqCst);
                s.changed.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Removes a connection from the registry when its task ends, however it ends.
struct Registered<'a>(&'a Registry, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        rustix::io::Errno::from_io_error(e),
        Some(
            rustix::io::Errno::MFILE
                | rustix::io::Errno::NFILE
                | rustix::io::Errno::NOBUFS
                | rustix::io::Errno::NOMEM
        )
    )
}

/// Serves `app` on `listener` until `shutdown` resolves, then shuts down
/// gracefully, giving requests in progress up to `grace`.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) {
    let epoch = Instant::now();
    let registry = Arc::new(Registry::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .header_read_timeout(None)
        .max_headers(PARSER_MAX_HEADERS)
        .max_buf_size(PARSER_MAX_BUF);
    let builder = Arc::new(builder);
    let mut conns: JoinSet<()> = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = BACKOFF_START;
    let mut starved_since: Option<Instant> = None;
    let mut last_warned: Option<Instant> = None;
    let mut suppressed = 0u64;
    let mut warned = false;

    'accept: loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if out_of_descriptors(&e) => {
                // Once per episode, and at most every WARN_EVERY under a
                // flood that runs out again and again.
                if starved_since.is_none() {
                    starved_since = Some(Instant::now());
                    if last_warned.is_none_or(|t: Instant| t.elapsed() >= WARN_EVERY) {
                        tracing::warn!(
                            error = %e,
                            connections = conns.len(),
                            times_since_last_warning = suppressed,
                            "cannot accept connections: out of file descriptors (or socket memory); closing idle connections and retrying as descriptors free up (raise `ulimit -n` or lower max_connections)"
                        );
                        last_warned = Some(Instant::now());
                        suppressed = 0;
                        warned = true;
                    } else {
                        suppressed += 1;
                    }
                }
                registry.evict_longest_idle();
                // Retry as soon as a connection closes, or after the back-off.
                tokio::select! {
                    biased;
                    _ = &mut shutdown => break,
                    _ = conns.join_next(), if !conns.is_empty() => {}
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            Err(e) => {
                // A connection that failed before it was accepted (reset,
                // aborted): nothing to do for it.
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        backoff = BACKOFF_START;
        if let Some(since) = starved_since.take()
            && std::mem::take(&mut warned)
        {
            tracing::info!(
                after_ms = since.elapsed().as_millis() as u64,
                "accepting connections again"
            );
        }
        // At the limit: make room by closing the longest-idle connection, or
        // wait for a busy one to finish.
        while conns.len() >= limits.max_connections {
            if conns.try_join_next().is_some() {
                continue;
            }
            let evicted = registry.evict_longest_idle();
            tokio::select! {
                biased;
                _ = &mut shutdown => break 'accept,
                _ = conns.join_next() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)), if evicted => {}
            }
        }
        let _ = stream.set_nodelay(true);
        let state = Arc::new(ConnState::new(epoch));
        let id = registry.insert(Arc::clone(&state));
        let registry = Arc::clone(&registry);
        let builder = Arc::clone(&builder);
        let app = app.clone();
        let stop = stop_rx.clone();
        conns.spawn(async move {
            let _registered = Registered(&registry, id);
            serve_connection(stream, peer, app, &builder, state, limits, stop).await;
        });
    }

    // Stop accepting at once: the listening socket closes here.
    drop(listener);
    let _ = stop_tx.send(true);
    let open = conns.len();
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            ?grace,
            open,
            still_open = conns.len(),
            "requests still in flight after shutdown_timeout; closing their connections"
        );
        conns.shutdown().await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    builder: &hyper::server::conn::http1::Builder,
    state: Arc<ConnState>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let io = TokioIo::new(Tracked {
        stream,
        state: Arc::clone(&state),
    });
    let service_state = Arc::clone(&state);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let guard = service_state.enter();
        let mut app = app.clone();
        async move {
            let response = match app.call(request.map(Body::new)).await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            // The request stays in flight until hyper has written (and
            // dropped) the body of its answer.
            Ok::<_, Infallible>(response.map(|body| {
                Body::new(body.map_frame(move |frame| {
                    let _in_flight = &guard;
                    frame
                }))
            }))
        }
    });
    let mut conn = builder.serve_connection(io, service);
    let mut stopping = *stop.borrow();
    if stopping {
        return;
    }
    loop {
        let deadline = state.deadline(&limits);
        let sleep = async {
            match deadline {
                Some((at, _)) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            r = Pin::new(&mut conn) => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = state.changed.notified() => {
                if state.evict.load(Ordering::SeqCst) {
                    if state.quiet() {
                        tracing::debug!(%peer, "idle connection closed to make room for a new one");
                        return;
                    }
                    state.evict.store(false, Ordering::SeqCst);
                }
            }
            _ = sleep => {
                match state.deadline(&limits) {
                    Some((at, Expiry::Idle)) if at <= Instant::now() => {
                        tracing::debug!(%peer, "idle connection closed (idle_timeout)");
                        return;
                    }
                    Some((at, Expiry::Send)) if at <= Instant::now() => {
                        tracing::debug!(%peer, "the client stopped reading its answer (send_timeout); connection closed");
                        return;
                    }
                    Some((at, Expiry::Header)) if at <= Instant::now() => {
                        tracing::debug!(%peer, "request headers incomplete after header_timeout; answering 408");
                        let stream = conn.into_parts().io.into_inner().stream;
                        answer_header_timeout(stream, limits.header_timeout).await;
                        return;
                    }
                    _ => {}
                }
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                Pin::new(&mut conn).graceful_shutdown();
                // Let hyper take what has already arrived: a complete head
                // starts its request, which then finishes.
                if futures_util::poll!(Pin::new(&mut conn)).is_ready() {
                    return;
                }
                if state.quiet() {
                    // Idle, or headers half-sent: nothing to finish.
                    return;
                }
            }
        }
    }
}

/// Answers a request whose headers did not arrive within `header_timeout`
/// with the API's JSON 408, then closes the connection.
async fn answer_header_timeout(mut stream: TcpStream, header_timeout: Duration) {
    let body = ApiError::new(
        ErrorCode::RequestTimeout,
        format!(
            "the request headers did not arrive within {} ms (header_timeout in the config)",
            header_timeout.as_millis()
        ),
    )
    .body_bytes();
    let mut answer = format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    let _ = tokio::time::timeout(ANSWER_WRITE_TIMEOUT, async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
}
