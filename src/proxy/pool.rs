//! The connections to the upstream: HTTP/1.1, kept alive, reused.
//!
//! dashgate fronts exactly one upstream, so its pool is a stack of idle
//! connections behind one lock, not a map keyed by scheme and authority.
//! hyper-util's general-purpose client hashed the authority byte by byte
//! and moved its large futures several times on every request; on a
//! proxied `GET` that was about a tenth of dashgate's own instructions
//! (docs/benchmarks.md). What is left is hyper's own connection
//! ([`hyper::client::conn::http1`]) and what a pool must do:
//!
//! * a connection goes back on the stack when its response body has been
//!   read to the end, never while it is still streaming; one whose body was
//!   dropped half-read is closed (hyper cannot reuse it either);
//! * on checkout a connection the upstream has closed, or one idle longer
//!   than [`POOL_IDLE`], is dropped; at most [`MAX_IDLE`] are kept;
//! * a request the upstream never saw because a reused connection turned
//!   out closed is sent once more on a new connection (hyper hands the
//!   request back exactly when it was not written);
//! * a `101 Switching Protocols` response keeps its connection: it becomes
//!   the relayed WebSocket ([`super::ws`]).
//!
//! Connections are made by hyper-rustls's connector (plain TCP with
//! `TCP_NODELAY` and a connect timeout, or TLS checked as
//! [`super::UpstreamTls`] says), and each is driven by its own task.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Uri;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use parking_lot::Mutex;
use tower_service::Service;

use super::{BoxError, OutBody};

/// How long an idle connection to the upstream is kept.
pub const POOL_IDLE: Duration = Duration::from_secs(90);

/// At most this many idle connections are kept per worker; more are closed.
pub const MAX_IDLE: usize = 256;

/// Why a request got no response from the upstream.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (refused, unreachable, TLS).
    Connect(BoxError),
    /// The connection failed before a response head arrived.
    Request(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {}", super::error_chain(e.as_ref())),
            SendError::Request(e) => write!(f, "{}", super::error_chain(e)),
        }
    }
}

impl SendError {
    /// No connection was made at all.
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

struct Idle {
    tx: SendRequest<OutBody>,
    since: Instant,
}

/// The upstream's connections (see the module docs).
///
/// One stack of idle connections per connection worker
/// ([`crate::server::workers`]), and one for everything else: a connection
/// is driven by a task on the worker that opened it, so a request reuses
/// one of its own worker's and never waits on another thread.
pub struct Pool {
    connector: HttpsConnector<HttpConnector>,
    /// `http(s)://HOST:PORT/`: what the connector is asked to reach.
    target: Uri,
    idle: Vec<Mutex<Vec<Idle>>>,
}

impl Pool {
    pub fn new(connector: HttpsConnector<HttpConnector>, target: Uri) -> Arc<Self> {
        // Workers are numbered from 0; the last stack is for other threads.
        let stacks = crate::server::workers::MAX_WORKERS + 1;
        Arc::new(Pool {
            connector,
            target,
            idle: (0..stacks).map(|_| Mutex::new(Vec::new())).collect(),
        })
    }

    /// The calling thread's stack.
    fn stack(&self) -> &Mutex<Vec<Idle>> {
        let last = self.idle.len() - 1;
        &self.idle[crate::server::workers::current().map_or(last, |i| i.min(last))]
    }

    /// Send `req` (its URI in origin form, `/path?query`) and wait for the
    /// response head. Its body, read to the end, gives the connection back.
    pub async fn send(
        self: &Arc<Self>,
        req: http::Request<OutBody>,
    ) -> Result<http::Response<UpBody>, SendError> {
        // Connecting is boxed: its future (TLS included) is large, and
        // inline it would be built and moved on every request, most of
        // which reuse a connection.
        let (mut tx, reused) = match self.checkout() {
            Some(tx) => (tx, true),
            None => (Box::pin(self.connect()).await?, false),
        };
        let res = match tx.try_send_request(req).await {
            Ok(res) => res,
            Err(mut e) => match e.take_message() {
                // Never written: a reused connection the upstream had
                // closed. Once more, on a new one.
                Some(req) if reused => {
                    tx = Box::pin(self.connect()).await?;
                    tx.send_request(req).await.map_err(SendError::Request)?
                }
                _ => return Err(SendError::Request(e.into_error())),
            },
        };
        let back = (res.status() != http::StatusCode::SWITCHING_PROTOCOLS).then(|| Back {
            tx,
            pool: Arc::clone(self),
        });
        Ok(res.map(|inner| UpBody { inner, back }))
    }

    /// The most recently used idle connection that is still open and ready.
    fn checkout(&self) -> Option<SendRequest<OutBody>> {
        let mut idle = self.stack().lock();
        if idle.is_empty() {
            return None;
        }
        let now = Instant::now();
        let mut cx = Context::from_waker(Waker::noop());
        // From the top, so `swap_remove` only moves a connection already
        // looked at.
        for i in (0..idle.len()).rev() {
            let c = &mut idle[i];
            let fresh = !c.tx.is_closed() && now.duration_since(c.since) <= POOL_IDLE;
            // Given back at the end of its body, a connection may not have
            // seen its own end yet (`Pending`): skip it, keep it.
            match fresh.then(|| c.tx.poll_ready(&mut cx)) {
                Some(Poll::Ready(Ok(()))) => return Some(idle.swap_remove(i).tx),
                Some(Poll::Pending) => {}
                None | Some(Poll::Ready(Err(_))) => {
                    idle.swap_remove(i);
                }
            }
        }
        None
    }

    fn give_back(&self, tx: SendRequest<OutBody>) {
        if tx.is_closed() {
            return;
        }
        let mut idle = self.stack().lock();
        if idle.len() < MAX_IDLE {
            idle.push(Idle {
                tx,
                since: Instant::now(),
            });
        }
    }

    /// A new connection, driven by a task of its own.
    async fn connect(&self) -> Result<SendRequest<OutBody>, SendError> {
        let io = self
            .connector
            .clone()
            .call(self.target.clone())
            .await
            .map_err(SendError::Connect)?;
        let (tx, conn) = http1::Builder::new()
            .handshake(io)
            .await
            .map_err(SendError::Request)?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(tx)
    }
}

struct Back {
    tx: SendRequest<OutBody>,
    pool: Arc<Pool>,
}

/// The upstream's response body; read to its end, it gives its connection
/// back to the pool.
pub struct UpBody {
    inner: Incoming,
    back: Option<Back>,
}

impl UpBody {
    fn give_back(&mut self) {
        if let Some(b) = self.back.take() {
            b.pool.give_back(b.tx);
        }
    }
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        match &frame {
            None => this.give_back(),
            Some(Err(_)) => this.back = None,
            Some(Ok(_)) if this.inner.is_end_stream() => this.give_back(),
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpBody {
    fn drop(&mut self) {
        // A body nobody read (an empty one, or a HEAD's) is at its end too;
        // one dropped half-read leaves a connection hyper will close.
        if self.inner.is_end_stream() {
            self.give_back();
        }
    }
}
