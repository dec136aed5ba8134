//! The one route tree, and the one place the gate meets it.
//!
//! Routes do not see the request before the gate has decided: each route
//! function only *matches* (path, method, query, body) and yields an
//! [`Endpoint`], a deferred handler that receives the gate's [`Access`]. The
//! tree is joined to the gate in `tree`, once for each mode of the server
//! (only the branch of the mode it runs in is on), and served by [`routes`]:
//!
//! ```text
//! authorize_if(!upstream).and(own)            -- dashgate's routes at /
//!   .or(authorize_if(upstream).and(proxied.or(prefixed)))
//!   .then(run).recover(handle_rejection)
//! ```
//!
//! so a route cannot be added that escapes the gate without editing that
//! function, and `tests/routes.rs` lists every route of [`ROUTES`] and every
//! path literal in `src/routes/` to prove each is refused without a
//! credential in the secure preset.
//!
//! In upstream mode (SPEC §6) the same tree of dashgate's own routes sits
//! under `/.dashgate/` and every other path is the proxy's: still one tree
//! behind the one gate, which decides on the path as the client
//! sent it (rules see `/.dashgate/login`, `/api/pty`).

use std::future::{ready, Future, Ready};
use std::pin::Pin;

use futures_util::future::Either;

use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::gate::{authorize_if, Access};
use crate::reject::handle_rejection;
use crate::state::AppState;

pub mod api;
pub mod auth;
pub mod chat;
pub mod events;
pub mod web;

type BoxFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

/// What [`Endpoint::run`] gives: a response, at once or later.
type Answer = Either<Ready<Response>, BoxFuture>;

/// A matched route waiting for the gate's verdict.
pub struct Endpoint(Handler);

/// A synchronous handler is kept apart from an async one so that answering
/// it costs no boxed future: `/api/status` and friends are on the hot path.
enum Handler {
    /// Needs nothing but the server's state: a plain function, nothing to
    /// allocate for it on every request.
    Plain(fn(AppState, Access) -> Response),
    Sync(Box<dyn FnOnce(Access) -> Response + Send>),
    Async(Box<dyn FnOnce(Access) -> BoxFuture + Send>),
}

impl Endpoint {
    /// An endpoint from an async handler of the caller's [`Access`].
    pub fn new<F, Fut, R>(f: F) -> Self
    where
        F: FnOnce(Access) -> Fut + Send + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: Reply,
    {
        Endpoint(Handler::Async(Box::new(move |a| {
            Box::pin(async move { f(a).await.into_response() })
        })))
    }

    /// An endpoint from a function of the server's state and the caller's
    /// [`Access`] (no captures).
    pub fn plain(f: fn(AppState, Access) -> Response) -> Self {
        Endpoint(Handler::Plain(f))
    }

    /// An endpoint from a synchronous handler.
    pub fn sync<F, R>(f: F) -> Self
    where
        F: FnOnce(Access) -> R + Send + 'static,
        R: Reply + 'static,
    {
        Endpoint(Handler::Sync(Box::new(move |a| f(a).into_response())))
    }

    /// Answer the request; a `?token=` visit is answered with the sign-in
    /// redirect instead. A synchronous handler's answer is ready at once: no
    /// async state machine to build, move and poll.
    fn run(self, state: AppState, access: Access) -> Answer {
        if access.token_visit {
            return Either::Left(ready(auth::token_visit(&state, &access)));
        }
        match self.0 {
            Handler::Plain(f) => Either::Left(ready(f(state, access))),
            Handler::Sync(f) => Either::Left(ready(f(access))),
            Handler::Async(f) => Either::Right(f(access)),
        }
    }
}

/// How a route is reached, for the route-listing test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Ws,
}

/// Every route of the tree: method, an example path, kind. The route-listing
/// test requests each one (and a WebSocket upgrade of each) and checks the
/// gate decided it.
pub const ROUTES: &[(&str, &str, Kind)] = &[
    ("GET", "/healthz", Kind::Http),
    ("GET", "/api/status", Kind::Http),
    ("GET", "/api/whoami", Kind::Http),
    ("GET", "/api/policy", Kind::Http),
    ("GET", "/metrics", Kind::Http),
    ("GET", "/api/events", Kind::Ws),
    ("GET", "/api/pub", Kind::Ws),
    ("GET", "/api/ws", Kind::Ws),
    ("GET", "/api/sessions", Kind::Http),
    ("POST", "/api/sessions", Kind::Http),
    ("GET", "/api/sessions/0123456789abcdef", Kind::Http),
    ("DELETE", "/api/sessions/0123456789abcdef", Kind::Http),
    ("POST", "/api/login", Kind::Http),
    ("POST", "/api/logout", Kind::Http),
    ("GET", "/api/nonexistent", Kind::Http),
    ("GET", "/", Kind::Http),
    ("GET", "/login", Kind::Http),
    ("GET", "/chat", Kind::Http),
    ("GET", "/sessions", Kind::Http),
    ("GET", "/events", Kind::Http),
    ("GET", "/access", Kind::Http),
    ("GET", "/assets/app.css", Kind::Http),
    ("GET", "/vendor/xterm/lib/xterm.mjs", Kind::Http),
    // Upstream mode: dashgate's own routes are the ones above under the
    // prefix (the route-listing test requests each so); every other path,
    // such as this one, is proxied.
    ("GET", "/.dashgate/healthz", Kind::Http),
    ("GET", "/.dashgate", Kind::Http),
    ("GET", "/upstream/page", Kind::Http),
];

/// The segment of [`crate::policy::OWN_PREFIX`], for `warp::path`.
const OWN_SEGMENT: &str = ".dashgate";

/// The tree of routes behind the gate. Private: only [`routes`] may use it.
///
/// Without `--upstream`, dashgate's own routes at `/`. With it, the same
/// routes under `/.dashgate/` (the prefix taken off before they match), and
/// the proxy for every path outside it. Each mode's branch begins with the
/// gate, [`authorize_if`] on in the server's mode only: the branch is
/// chosen by the same filter that lets the request in, rather than by one
/// more that every request is polled through.
fn tree(state: AppState) -> impl Filter<Extract = (Access, Endpoint), Error = Rejection> + Clone {
    let upstream = state.config.upstream.is_some();
    let plain = authorize_if(!upstream).and(own(state));
    let prefixed = warp::path(OWN_SEGMENT).and(bare_prefix().or(own(state)).unify());
    let proxied = not_own().and(crate::proxy::route(state));
    // The proxy first: most requests in upstream mode are the upstream's,
    // and one look at the first segment sends the rest to dashgate's own.
    let upstream_tree = authorize_if(upstream)
        .and(proxied.or(prefixed).unify())
        .boxed();
    plain.or(upstream_tree).unify()
}

/// Every path outside `/.dashgate`: those are dashgate's, even unrouted ones.
fn not_own() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path::peek()
        .and_then(|p: warp::path::Peek| {
            let own = p.segments().next() == Some(OWN_SEGMENT);
            ready(if own {
                Err(warp::reject::not_found())
            } else {
                Ok(())
            })
        })
        .untuple_one()
}

/// GET /.dashgate (no slash): a redirect to `/.dashgate/`, where the UI's
/// relative links resolve under the prefix.
fn bare_prefix() -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::get()
        .and(warp::path::full())
        .and_then(|p: warp::path::FullPath| {
            ready(if p.as_str() == crate::policy::OWN_PREFIX {
                Ok(Endpoint::sync(|_| {
                    let mut r = http::StatusCode::PERMANENT_REDIRECT.into_response();
                    r.headers_mut().insert(
                        http::header::LOCATION,
                        http::HeaderValue::from_static("/.dashgate/"),
                    );
                    r
                }))
            } else {
                Err(warp::reject::not_found())
            })
        })
}

/// dashgate's own routes.
///
/// `or` tries left to right whatever the grouping, so the tree is grouped
/// in pairs: each level of nesting is a future every request polls through.
/// The routes polled most come first, one level deep.
fn own(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    let api_auth = api::routes(state).or(auth::routes(state)).unify();
    let channels = events::routes(state).or(chat::routes(state)).unify();
    let rest = api::not_found().or(web::routes(state)).unify();
    // Boxed: the tree's future is as large as its largest route's, and it
    // is built and moved on every request; boxed, the others' futures are
    // one pointer in it, and only their own requests allocate for them.
    let others = api_auth.or(channels).unify().or(rest).unify().boxed();
    api::hot().or(others).unify()
}

/// The whole application: the gate, then the tree, then the one rejection
/// handler. `server::run` serves exactly this (and counts its answers).
pub fn routes(state: AppState) -> impl Filter<Extract = (impl Reply,), Error = Rejection> + Clone {
    tree(state)
        .then(move |access: Access, ep: Endpoint| ep.run(state, access))
        .recover(handle_rejection)
}
