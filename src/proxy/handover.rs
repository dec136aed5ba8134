//! What crosses warp's route tree beside a proxied request, without being
//! copied or allocated for: the request's own headers and target on the
//! way in, the upstream's streamed body on the way out.
//!
//! warp's filters cannot borrow the request, so a route that needs its
//! headers clones the map (two allocations, and every value's count
//! bumped), and warp's reply type cannot carry a body it did not make. The
//! accept loop (`server::run`) owns the request before warp and the reply
//! after it, and in upstream mode polls the tree's future through
//! [`streamed`] (without an upstream there is nothing to hand over): around each
//! poll it opens a slot of its thread, holding on the first poll the
//! admitted request's headers ([`Inbound`]), which the proxy route takes
//! ([`inbound`]), and receiving the upstream's body when the proxy makes
//! its reply ([`carry`]). The reply and its body are made in the same poll
//! (nothing is awaited between), so when the poll returns the reply, the
//! slot holds exactly its body; the slot is emptied and closed whenever a
//! poll returns.

use std::cell::RefCell;
use std::convert::Infallible;
use std::future::{ready, Future};
use std::pin::Pin;
use std::task::{Context, Poll};

use http::uri::PathAndQuery;
use http::HeaderMap;
use http_body_util::Either;
use warp::Filter;

use super::pool::UpBody;
use crate::gate::Intake;
use crate::state::AppState;

/// An admitted request's own headers and target, moved from it for the
/// proxy route.
pub struct Inbound {
    pub headers: HeaderMap,
    /// The request target as the client sent it (`/path?query`), sharing
    /// its bytes; `None` where the proxy must build it.
    pub target: Option<PathAndQuery>,
}

impl Inbound {
    /// The headers and target of `req` if it is for the upstream (upstream
    /// mode, a path outside `/.dashgate`) and the gate admitted it: only
    /// the proxy route reads it then. Anything else keeps its headers.
    pub fn take<B>(state: &AppState, intake: &Intake, req: &mut http::Request<B>) -> Option<Self> {
        let upstreams = crate::gate::upstreams_path(state, req.uri().path());
        (upstreams && intake.decision().is_ok()).then(|| Inbound {
            headers: std::mem::take(req.headers_mut()),
            target: req.uri().path_and_query().cloned(),
        })
    }
}

/// The slot of one thread (see the module docs): open only during a poll
/// of [`streamed`].
struct Slot {
    open: bool,
    inbound: Option<Inbound>,
    body: Option<UpBody>,
}

impl Slot {
    /// Closed and empty: between two polls.
    const CLOSED: Slot = Slot {
        open: false,
        inbound: None,
        body: None,
    };
}

thread_local! {
    static SLOT: RefCell<Slot> = const { RefCell::new(Slot::CLOSED) };
}

/// The proxy route's [`Inbound`]: the one handed over, or else (a request
/// the accept loop did not hand over, which it does for every admitted one
/// of the upstream) the headers cloned, as any warp route would.
pub fn inbound() -> impl Filter<Extract = (Inbound,), Error = Infallible> + Clone {
    let handed = warp::any().and_then(|| {
        let taken = SLOT.with(|s| s.borrow_mut().inbound.take());
        ready(taken.ok_or_else(warp::reject::not_found))
    });
    let cloned = warp::header::headers_cloned().map(|headers| Inbound {
        headers,
        target: None,
    });
    handed.or(cloned).unify()
}

/// Put `body` beside the reply being made, in the open slot.
pub fn carry(body: UpBody) {
    SLOT.with(|s| {
        let mut s = s.borrow_mut();
        // Only `server::run` serves the tree, always through `streamed`.
        if !s.open {
            debug_assert!(false, "a proxied reply outside `streamed`");
            tracing::error!("a proxied reply outside the accept loop: its body is dropped");
            return;
        }
        // One reply per poll; a second must not pass the first's on.
        debug_assert!(s.body.is_none(), "two streamed replies in one poll");
        s.body = Some(body);
    });
}

pin_project_lite::pin_project! {
    /// The future of [`streamed`].
    pub struct StreamedReply<F> {
        inbound: Option<Inbound>,
        #[pin]
        inner: F,
    }
}

/// The route tree's answer `inner`, polled with `inbound` handed to the
/// proxy route, and each proxied reply with its streamed body in place of
/// warp's empty one; every other reply as it is.
pub fn streamed<F>(inbound: Option<Inbound>, inner: F) -> StreamedReply<F> {
    StreamedReply { inbound, inner }
}

impl<F, B, E> Future for StreamedReply<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<Either<B, UpBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        /// Closes the slot when the poll returns (or unwinds), dropping
        /// what was not taken.
        struct Close;
        impl Drop for Close {
            fn drop(&mut self) {
                let left = SLOT.with(|s| std::mem::replace(&mut *s.borrow_mut(), Slot::CLOSED));
                drop(left);
            }
        }
        let this = self.project();
        let open = Slot {
            open: true,
            inbound: this.inbound.take(),
            body: None,
        };
        let before = SLOT.with(|s| std::mem::replace(&mut *s.borrow_mut(), open));
        debug_assert!(!before.open, "streamed polls nest");
        let close = Close;
        let out = std::task::ready!(this.inner.poll(cx));
        let body = SLOT.with(|s| s.borrow_mut().body.take());
        drop(close);
        Poll::Ready(out.map(|res| match body {
            Some(body) => res.map(|_| Either::Right(body)),
            None => res.map(Either::Left),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::{Arc, Mutex};

    use http::HeaderValue;

    /// The value of `x-from` in the headers the proxy route's filter got,
    /// for a request that itself carries `x-from: request`.
    async fn route_sees() -> String {
        let got = warp::test::request()
            .header("x-from", "request")
            .filter(&inbound())
            .await
            .unwrap_or_else(|e| match e {});
        let v = got.headers.get("x-from").cloned();
        v.map_or_else(String::new, |v| v.to_str().unwrap().to_string())
    }

    fn handed() -> Inbound {
        let mut headers = HeaderMap::new();
        headers.insert("x-from", HeaderValue::from_static("handed"));
        Inbound {
            headers,
            target: None,
        }
    }

    /// `streamed` around `f`: what the route saw, through the reply.
    async fn under_streamed<F>(inbound: Option<Inbound>, f: F) -> String
    where
        F: Future<Output = String>,
    {
        let seen = Arc::new(Mutex::new(String::new()));
        let s = seen.clone();
        let answer = streamed(inbound, async move {
            *s.lock().unwrap() = f.await;
            Ok::<_, Infallible>(http::Response::new(()))
        })
        .await;
        assert!(matches!(answer.unwrap().into_body(), Either::Left(())));
        let out = seen.lock().unwrap().clone();
        out
    }

    #[tokio::test]
    async fn the_route_takes_the_handed_headers_once() {
        // Handed over: the route gets those, not a clone of the request's.
        assert_eq!(under_streamed(Some(handed()), route_sees()).await, "handed");
        // Nothing handed over, or outside `streamed`: the request's own.
        assert_eq!(under_streamed(None, route_sees()).await, "request");
        assert_eq!(route_sees().await, "request");
        // Taken once: a second look in the same poll finds none.
        let twice = async {
            let first = route_sees().await;
            let second = route_sees().await;
            format!("{first} {second}")
        };
        assert_eq!(
            under_streamed(Some(handed()), twice).await,
            "handed request"
        );
    }

    #[tokio::test]
    async fn the_slot_is_closed_when_a_poll_returns() {
        // A first poll that returns Pending without taking the headers:
        // they are dropped with the slot, so nothing polled between two
        // polls (another request, on the same thread) can find them.
        let seen = Arc::new(Mutex::new(String::new()));
        let s = seen.clone();
        let mut later = Box::pin(streamed(Some(handed()), async move {
            tokio::task::yield_now().await;
            *s.lock().unwrap() = route_sees().await;
            Ok::<_, Infallible>(http::Response::new(()))
        }));
        assert!(futures_util::poll!(later.as_mut()).is_pending());
        assert!(SLOT.with(|s| {
            let s = s.borrow();
            !s.open && s.inbound.is_none() && s.body.is_none()
        }));
        assert_eq!(route_sees().await, "request", "between two polls");
        // The next poll's route sees the request's own, and the slot is
        // closed again after the reply.
        assert!(later.await.is_ok());
        assert_eq!(*seen.lock().unwrap(), "request");
        assert!(SLOT.with(|s| {
            let s = s.borrow();
            !s.open && s.inbound.is_none() && s.body.is_none()
        }));
    }
}
