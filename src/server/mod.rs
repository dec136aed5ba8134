//! Serving: an accept loop over a bound listener (mini-redis `server::run`).
//!
//! We run our own loop instead of `warp::serve` for three reasons: the number
//! of open connections is bounded by a semaphore (SPEC "bounded everything"),
//! the gate decides each request here, where the request is at hand by
//! reference with its TCP peer, and shutdown can close WebSockets with
//! 1001 before the HTTP side drains.

pub mod conns;
pub mod limits;
pub mod reload;
pub(crate) mod signals;
pub mod tls;
pub mod workers;
pub mod ws;

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::Either;
use futures_util::FutureExt;
use http_body_util::Either as HttpEither;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;

use crate::gate::{Head, Intake, OverTls};
use crate::metrics::route_index;
use crate::proxy::handover::{streamed, Inbound};
use crate::routes::routes;
use crate::server::conns::Close;
use crate::server::limits::{Activity, Body, Limits, PerClient, Reply};
use crate::state::AppState;

/// How long shutdown waits for WebSockets to say goodbye and HTTP requests to
/// finish before it stops waiting (SPEC: exit within 2 s).
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(1200);

/// Serve `state` on `listener` until `shutdown` resolves, then close every
/// WebSocket with 1001, end chat children and drain HTTP connections.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let gated = Gated::new(state, warp::service(routes(state)));
    let handler = move |peer, req| gated.call(peer, req);
    serve(listener, state, handler, limits, shutdown).await;
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
        mut req: Request,
    ) -> impl Future<Output = Result<ProxiedResponse<B>, Infallible>> {
        let intake = Intake::check(&self.state, Head::of(peer, &req));
        let route = route_index(req.uri().path());
        let state = self.state;
        // A stalled body is answered 408 by `serve`, whatever the route
        // made of the failed read: count what the client sees.
        let stalled = req.body().stalled().cloned();
        // Not boxed: the tree boxes its less used routes (`routes::tree`),
        // so its future is small enough to move.
        // Upstream mode: the request's headers handed to the proxy route
        // and its reply's streamed body put in place (`proxy::handover`).
        // Without an upstream there is nothing to hand over.
        let answer = if state.config.upstream.is_some() {
            let inbound = Inbound::take(&state, &intake, &mut req);
            Either::Left(streamed(inbound, self.svc.call(req)))
        } else {
            Either::Right(
                self.svc
                    .call(req)
                    .map(|r| r.map(|res| res.map(HttpEither::Left))),
            )
        };
        intake.serve(answer, move |answer| {
            if let Ok(res) = answer {
                let status = match stalled {
                    Some(s) if s.load(Ordering::Relaxed) => 408,
                    _ => res.status().as_u16(),
                };
                state.metrics.request(route, status);
            }
        })
    }
}

/// A response of the tree, whose body may be an upstream's, streamed.
type ProxiedResponse<B> = http::Response<http_body_util::Either<B, crate::proxy::pool::UpBody>>;

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

/// A request as hyper hands it over, its body bound by the request timeout.
pub type Request = http::Request<Body>;

/// The accept loop of [`run`] over any handler of (TCP peer, request).
/// Public so the gate-overhead benchmark (`benches/load`) can mount a
/// handler *without* the gate on exactly this loop and compare like with
/// like; the server itself only ever serves [`routes`] through [`run`].
pub async fn serve<H, F, B>(
    listener: TcpListener,
    state: AppState,
    handler: H,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) where
    H: Fn(SocketAddr, Request) -> F + Clone + Send + 'static,
    F: Future<Output = Result<http::Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let idle = limits.request_timeout;
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(idle);
    // TLS connections speak HTTP/1.1 only, as their ALPN says (see `tls`).
    let tls = state.tls.get().cloned();
    let builder = Arc::new(if tls.is_some() {
        builder.http1_only()
    } else {
        builder
    });
    // Every connection task holds a receiver; shutdown sends `true` and
    // waits (bounded) for all of them to be dropped.
    let (stop, stopped) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let per_client = PerClient::new(limits.max_connections_per_client);
    let workers = workers::Workers::start(workers::default_count())
        .expect("cannot start the connection workers");
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
        // One address holds at most so many connections; one more is
        // closed here, before it costs a task or a byte of parsing. A
        // trusted proxy carries many clients, so it is not counted.
        let ip = peer.ip().to_canonical();
        let slot = if state.policy().compiled.is_trusted_proxy(ip) {
            None
        } else {
            match per_client.admit(ip) {
                Some(slot) => Some(slot),
                None => continue,
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let builder = builder.clone();
        let tls = tls.clone();
        let mut stopped = stopped.clone();
        workers.spawn(stream, move |stream| async move {
            // On a TLS port: the handshake (or a plain request's redirect),
            // bounded by the idle time, in the connection's own task.
            let io = match &tls {
                None => tls::Stream::Plain(stream),
                Some(tls) => tokio::select! {
                    s = tls::accept(stream, state, tls, idle) => match s {
                        Some(s) => s,
                        None => return,
                    },
                    _ = stopped.changed() => return,
                },
            };
            let https = matches!(io, tls::Stream::Tls(_));
            let activity = Activity::new();
            let here = activity.clone();
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let version = req.version();
                    let open = here.open();
                    let mut req = req.map(|b| Body::new(b, idle));
                    if https {
                        req.extensions_mut().insert(OverTls);
                    }
                    let stalled = req.body().stalled().cloned();
                    handler(peer, req).map(move |answer| {
                        answer.map(|res| Reply::new(res, stalled.as_deref(), version, open))
                    })
                });
            let conn = builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
                .into_owned();
            tokio::pin!(conn);
            let mut stopping = false;
            // When an idle connection was told to go: it is dropped if
            // still there one more idle time later (a peer that never
            // reads cannot hold it open by not taking the goodbye).
            let mut goodbye: Option<Instant> = None;
            loop {
                let wake = goodbye
                    .or_else(|| activity.idle_deadline(idle))
                    .unwrap_or_else(|| Instant::now() + idle);
                tokio::select! {
                    _ = &mut conn => break,
                    _ = stopped.changed(), if !stopping => {
                        stopping = true;
                        if goodbye.is_none() {
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                    () = tokio::time::sleep_until(wake) => {
                        if goodbye.is_some() {
                            break;
                        }
                        let idle_now = activity
                            .idle_deadline(idle)
                            .is_some_and(|d| d <= Instant::now());
                        if idle_now && !activity.spoke() {
                            // No first request in time (a silent socket,
                            // a bare HTTP/2 preface): drop it.
                            break;
                        }
                        // No open request for the idle time, or a body
                        // that stalled: an HTTP/2 connection gets GOAWAY
                        // (its open streams may finish), an idle HTTP/1
                        // keep-alive one is closed.
                        if idle_now || activity.stalled() {
                            if !stopping {
                                conn.as_mut().graceful_shutdown();
                            }
                            goodbye = Some(Instant::now() + idle);
                        }
                    }
                }
            }
            drop(slot);
            drop(permit);
        });
    }
    drop(listener);
    drop(stopped);
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
    let _ = stop.send(true);
    let _ = tokio::time::timeout_at(deadline, stop.closed()).await;
    drop(workers);
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
