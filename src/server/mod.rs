//! Serving: an accept loop over a bound listener (mini-redis `server::run`).
//!
//! We run our own loop instead of `warp::serve` for three reasons: the number
//! of open connections is bounded by a semaphore (SPEC "bounded everything"),
//! the gate decides each request here, where the request is at hand by
//! reference with its TCP peer, and shutdown can close WebSockets with
//! 1001 before the HTTP side drains.

pub mod conns;
pub mod reload;
pub(crate) mod signals;
pub mod ws;

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::gate::{Head, Intake};
use crate::metrics::route_index;
use crate::routes::routes;
use crate::server::conns::Close;
use crate::state::AppState;

/// How long shutdown waits for WebSockets to say goodbye and HTTP requests to
/// finish before it stops waiting (SPEC: exit within 2 s).
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1200);

/// How long a connection may take to send a request head: the first one
/// after it is accepted (whatever the protocol), and each next one on an
/// HTTP/1 keep-alive connection. Connections are bounded by a semaphore, so
/// without this a peer opening `max_connections` silent sockets — whatever
/// the policy thinks of it, as nothing reaches the gate — stops the server
/// for everyone. An upgraded WebSocket has left the connection: not bound.
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `state` on `listener` until `shutdown` resolves, then close every
/// WebSocket with 1001, end chat children and drain HTTP connections.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send,
) {
    let gated = Gated::new(state, warp::service(routes(state)));
    let handler = move |peer, req| gated.call(peer, req);
    serve(listener, state, handler, max_connections, shutdown).await;
}

/// One connection's handler for [`run`]: has the gate decide each request
/// (reading it in place, where it is at hand), hands request and decision
/// to the route tree, whose `authorize()` lets it in or refuses it, and
/// counts the answer.
#[derive(Clone)]
struct Gated<S> {
    state: AppState,
    svc: PerConnection<S>,
}

impl<S, B> Gated<S>
where
    S: tower_service::Service<Request, Response = http::Response<B>, Error = Infallible>,
{
    fn new(state: AppState, svc: S) -> Self {
        Self {
            state,
            svc: PerConnection::new(svc),
        }
    }

    fn call(
        &self,
        peer: SocketAddr,
        req: Request,
    ) -> impl Future<Output = Result<ProxiedResponse<B>, Infallible>> {
        let intake = Intake::check(&self.state, Head::of(peer, &req));
        let route = route_index(req.uri().path());
        let state = self.state;
        // Not boxed: the tree boxes its less used routes (`routes::tree`),
        // so its future is small enough to move.
        // Upstream mode: a proxied reply's streamed body put in place.
        let answer = self
            .svc
            .call(req)
            .map(|r| r.map(crate::proxy::with_streamed_body));
        intake.serve(answer, move |answer| {
            if let Ok(res) = answer {
                state.metrics.request(route, res.status().as_u16());
            }
        })
    }
}

/// A response of the tree, whose body may be an upstream's, streamed.
type ProxiedResponse<B> = http::Response<http_body_util::Either<B, hyper::body::Incoming>>;

/// A service called by reference, once per request, without cloning it.
///
/// Calling a tower service takes `&mut self`, and cloning a warp service
/// copies its whole route tree, bumping every `Arc` inside it (a boxed
/// route group, `warp::fs`'s paths) on counts that every core shares.
/// [`serve`] clones its handler once per connection; this lets that copy be
/// called for each request of the connection as it is.
pub struct PerConnection<S>(RefCell<S>);

impl<S: Clone> Clone for PerConnection<S> {
    fn clone(&self) -> Self {
        Self(RefCell::new(self.0.borrow().clone()))
    }
}

impl<S> PerConnection<S> {
    pub fn new(svc: S) -> Self {
        Self(RefCell::new(svc))
    }

    /// Call the service (tower's `poll_ready` is not needed: warp's and
    /// hyper's services are always ready).
    pub fn call<R>(&self, req: R) -> S::Future
    where
        S: tower_service::Service<R>,
    {
        self.0.borrow_mut().call(req)
    }
}

/// A request as hyper hands it over.
pub type Request = http::Request<hyper::body::Incoming>;

/// The accept loop of [`run`] over any handler of (TCP peer, request).
/// Public so the gate-overhead benchmark (`benches/load`) can mount a
/// handler *without* the gate on exactly this loop and compare like with
/// like; the server itself only ever serves [`routes`] through [`run`].
pub async fn serve<H, F, B>(
    listener: TcpListener,
    state: AppState,
    handler: H,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send,
) where
    H: Fn(SocketAddr, Request) -> F + Clone + Send + 'static,
    F: Future<Output = Result<http::Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(REQUEST_HEAD_TIMEOUT);
    let graceful = GracefulShutdown::new();
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let housekeeping = tokio::spawn(housekeeping(state));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = permits.clone().acquire_owned() => p.expect("semaphore never closed"),
        };
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let spoke = Arc::new(AtomicBool::new(false));
        let spoke_here = spoke.clone();
        let service = hyper::service::service_fn(move |req| {
            spoke_here.store(true, Ordering::Relaxed);
            handler(peer, req)
        });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            tokio::pin!(conn);
            tokio::select! {
                _ = &mut conn => {}
                () = tokio::time::sleep(REQUEST_HEAD_TIMEOUT) => {
                    // No first request in time (a silent socket, a bare
                    // HTTP/2 preface): drop it, and with it its permit.
                    if spoke.load(Ordering::Relaxed) {
                        let _ = conn.await;
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    housekeeping.abort();
    tracing::info!("shutting down");
    state
        .conns
        .close_all(Close::new(1001, "server shutting down"));
    let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
    // Chat children get SIGHUP now and SIGKILL soon after, while the sockets
    // say goodbye.
    let children = tokio::time::timeout_at(deadline, state.chat.shutdown());
    let sockets = async {
        while !state.conns.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let _ = tokio::join!(children, sockets);
    let _ = tokio::time::timeout_at(deadline, graceful.shutdown()).await;
}

/// How often expired sign-in sessions are swept and their sockets closed.
pub const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Periodic upkeep: expire sign-in sessions and close their WebSockets (4401).
async fn housekeeping(state: AppState) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if state.sessions.sweep() > 0 || !state.conns.is_empty() {
            crate::routes::auth::expire_sockets(&state);
        }
    }
}
