//! Connection limits a client cannot walk around (SPEC §8).
//!
//! Connections are bounded (`--max-connections`, a semaphore in
//! [`super::serve`]), so every way of holding one without using it must end:
//!
//! * a request head must arrive within the request timeout (hyper's
//!   `header_read_timeout`; and until hyper has all of it there is no open
//!   request, so the connection's idle timer closes it too);
//! * a request body must keep moving: [`Body`] fails a read that waited the
//!   request timeout for a byte, and [`Reply`] answers that request 408 and
//!   has its connection closed;
//! * a connection with no open request for the request timeout is closed
//!   ([`Activity`]): an HTTP/2 one is told GOAWAY first (hyper's HTTP/2 has
//!   keep-alive pings but no idle close), an HTTP/1 one is between two
//!   requests and its next head is late;
//! * one peer address holds at most `--max-connections-per-client`
//!   connections ([`PerClient`]), trusted proxies exempt.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode, Version};
use hyper::body::{Body as _, Frame, SizeHint};
use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};

/// Default of `--request-timeout`: how long a request head may take to
/// arrive, a request body may go without a byte, and an HTTP/2 connection
/// may stay open with no stream.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Default of `--max-connections`.
pub const MAX_CONNECTIONS: usize = 4096;

/// Default of `--max-connections-per-client`: well above what a browser
/// opens to one host (6 for HTTP/1, 1 for HTTP/2), well below
/// [`MAX_CONNECTIONS`].
pub const MAX_CONNECTIONS_PER_CLIENT: usize = 64;

/// The limits [`super::serve`] enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most open connections at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// Most open connections from one peer address (not a trusted proxy);
    /// further ones are closed as soon as they are accepted.
    pub max_connections_per_client: usize,
    /// See [`REQUEST_TIMEOUT`].
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: MAX_CONNECTIONS,
            max_connections_per_client: MAX_CONNECTIONS_PER_CLIENT,
            request_timeout: REQUEST_TIMEOUT,
        }
    }
}

/// A request body that fails when it goes the idle time without a byte.
///
/// The timer starts only when a read has to wait (a request without a body,
/// nearly every one, never allocates it) and restarts with every frame: the
/// limit is on silence, not on the length of an upload.
pub struct Body {
    inner: hyper::body::Incoming,
    idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    /// Set when the idle time ran out; `None` for a body that was empty
    /// from the start (nothing to wait for, nothing to share).
    stalled: Option<Arc<AtomicBool>>,
}

impl Body {
    pub fn new(inner: hyper::body::Incoming, idle: Duration) -> Self {
        let stalled = (!inner.is_end_stream()).then(Arc::default);
        Self {
            inner,
            idle,
            timer: None,
            stalled,
        }
    }

    /// The flag a read sets when the body stalled (see [`Reply::new`]).
    pub fn stalled(&self) -> Option<&Arc<AtomicBool>> {
        self.stalled.as_ref()
    }
}

/// The error a stalled [`Body`] fails with.
#[derive(Debug)]
pub struct BodyStalled(Duration);

impl fmt::Display for BodyStalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no byte of the request body for {:?}", self.0)
    }
}

impl StdError for BodyStalled {}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = Box<dyn StdError + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this
            .stalled
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
        {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => {
                let idle = this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                if let Some(s) = &this.stalled {
                    s.store(true, Ordering::Relaxed);
                }
                Poll::Ready(Some(Err(Box::new(BodyStalled(idle)))))
            }
            Poll::Ready(frame) => {
                if let Some(t) = &mut this.timer {
                    t.as_mut().reset(Instant::now() + this.idle);
                }
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A response body on its way out: the handler's, or the 408 that
    /// replaced it when the request body stalled. Holds its connection's
    /// [`Stream`] until hyper has sent it (or given up on it).
    pub struct Reply<B> {
        #[pin]
        inner: B,
        // The 408 body while it is still to be sent.
        timeout: Option<Bytes>,
        // The handler's body is not sent (`inner` is only dropped).
        replaced: bool,
        stream: Stream,
    }
}

/// The JSON of a 408, in the shape of every refusal (`reject.rs`).
const TIMEOUT_BODY: &str =
    r#"{"error":"the request body stopped arriving","reason":"request_timeout","rule":null}"#;

impl<B> Reply<B> {
    /// `res`, unless `stalled` was set while the handler read its request:
    /// then a 408, and the connection is closed: on HTTP/1 by
    /// `Connection: close` (the rest of that body would be read as the
    /// next request), on HTTP/2 by GOAWAY within the request timeout
    /// ([`Activity::stalled`]).
    pub fn new(
        res: http::Response<B>,
        stalled: Option<&AtomicBool>,
        version: Version,
        stream: Stream,
    ) -> http::Response<Self> {
        let (mut parts, inner) = res.into_parts();
        let replaced = stalled.is_some_and(|s| s.load(Ordering::Relaxed));
        if replaced {
            stream.0.stalled.store(true, Ordering::Relaxed);
            parts.status = StatusCode::REQUEST_TIMEOUT;
            parts.headers.clear();
            parts.headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if version <= Version::HTTP_11 {
                parts
                    .headers
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
        }
        let body = Self {
            inner,
            timeout: replaced.then(|| Bytes::from_static(TIMEOUT_BODY.as_bytes())),
            replaced,
            stream,
        };
        http::Response::from_parts(parts, body)
    }
}

impl<B: hyper::body::Body<Data = Bytes>> hyper::body::Body for Reply<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if *this.replaced {
            return Poll::Ready(this.timeout.take().map(|b| Ok(Frame::data(b))));
        }
        this.inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        if self.replaced {
            return self.timeout.is_none();
        }
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.replaced {
            return SizeHint::with_exact(self.timeout.as_ref().map_or(0, |b| b.len() as u64));
        }
        self.inner.size_hint()
    }
}

/// What one connection is doing, for its idle timer in [`super::serve`]:
/// how many of its requests are open (from their head until their response
/// is sent) and when the last one ended.
pub struct Activity {
    /// When the connection was accepted.
    since: Instant,
    open: AtomicUsize,
    /// Milliseconds after `since` when the last request ended (0: none
    /// did, so the first request is awaited from the accept).
    changed_ms: AtomicU64,
    spoke: AtomicBool,
    /// A request body stalled: the connection is to be closed (on HTTP/2,
    /// with GOAWAY, so that its other streams may finish).
    stalled: AtomicBool,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            since: Instant::now(),
            open: AtomicUsize::new(0),
            changed_ms: AtomicU64::new(0),
            spoke: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
        })
    }

    fn touch(&self) {
        let ms = self.since.elapsed().as_millis();
        self.changed_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// A request arrived; it is open until the [`Stream`] is dropped.
    pub fn open(self: &Arc<Self>) -> Stream {
        self.spoke.store(true, Ordering::Relaxed);
        // No clock read here: while a request is open the connection is
        // not idle, and the drop of its `Stream` records when it ended.
        self.open.fetch_add(1, Ordering::Relaxed);
        Stream(self.clone())
    }

    /// Has any request arrived?
    pub fn spoke(&self) -> bool {
        self.spoke.load(Ordering::Relaxed)
    }

    /// Did a request body stall (see [`Reply::new`])?
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    /// When the connection will have been without an open request for
    /// `idle`, or `None` while a request is open.
    pub fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.open.load(Ordering::Acquire) > 0 {
            return None;
        }
        let changed = Duration::from_millis(self.changed_ms.load(Ordering::Relaxed));
        Some(self.since + changed + idle)
    }
}

/// One open request of a connection (see [`Activity::open`]).
pub struct Stream(Arc<Activity>);

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.touch();
        self.0.open.fetch_sub(1, Ordering::Release);
    }
}

/// Open connections per peer address. Bounded: an entry exists only while
/// its address holds a connection, and every connection holds a permit of
/// `--max-connections`.
pub struct PerClient {
    max: usize,
    counts: Mutex<HashMap<IpAddr, Count>>,
}

#[derive(Default)]
struct Count {
    open: usize,
    /// A refusal was logged since the address last went below the limit
    /// (one line per flood, not one per refused socket).
    warned: bool,
}

impl PerClient {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection from `ip`, or `None` when it holds
    /// the most it may.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<ClientSlot> {
        let mut counts = self.counts.lock();
        let c = counts.entry(ip).or_default();
        if c.open >= self.max {
            if !c.warned {
                c.warned = true;
                tracing::warn!(
                    client = %ip,
                    max = self.max,
                    "refusing connections: this address holds --max-connections-per-client"
                );
            }
            return None;
        }
        c.open += 1;
        Some(ClientSlot {
            table: self.clone(),
            ip,
        })
    }

    /// How many addresses hold a connection (for tests).
    pub fn addresses(&self) -> usize {
        self.counts.lock().len()
    }
}

/// One connection's place in [`PerClient`]; given back when dropped.
pub struct ClientSlot {
    table: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.table.counts.lock();
        if let Some(c) = counts.get_mut(&self.ip) {
            c.open -= 1;
            c.warned = false;
            if c.open == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_client_counts_are_bounded_and_removed_at_zero() {
        let t = PerClient::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let s1 = t.admit(a).unwrap();
        let s2 = t.admit(a).unwrap();
        assert!(t.admit(a).is_none(), "a third from one address");
        let s3 = t.admit(b).unwrap();
        assert_eq!(t.addresses(), 2);
        drop(s1);
        let s4 = t.admit(a).unwrap();
        drop((s2, s3, s4));
        assert_eq!(t.addresses(), 0, "entries outlive their connections");
    }

    #[tokio::test]
    async fn idle_deadline_waits_for_open_requests() {
        let idle = Duration::from_secs(10);
        let a = Activity::new();
        assert_eq!(a.idle_deadline(idle), Some(a.since + idle));
        assert!(!a.spoke());
        let s = a.open();
        assert!(a.spoke());
        assert_eq!(a.idle_deadline(idle), None, "idle while a request is open");
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(s);
        let after = a.idle_deadline(idle).unwrap();
        assert!(
            after >= a.since + idle + Duration::from_millis(20),
            "{after:?}"
        );
    }
}
