//! The live event feed: `WS /api/events` (subscribe) and `WS /api/pub`
//! (publish), over the bounded hub of `crate::events`.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::Endpoint;
use crate::events::{valid_channel, Subscription, MAX_MESSAGE, SERVER_CHANNEL};
use crate::gate::{query_param, Access};
use crate::policy::Principal;
use crate::reject::{error_reply, ApiError};
use crate::server::conns::{Close, ConnGuard};
use crate::server::ws::{Message, Utf8Bytes, WebSocket, Ws};
use crate::state::{with_state, AppState};

/// Most queued messages written to a socket before one flush.
const WRITE_BATCH: usize = 64;
/// Frames above this are refused by the WebSocket layer itself; frames
/// between [`MAX_MESSAGE`] and this get a clean close 1009 from us.
const HARD_FRAME_LIMIT: usize = 4 * MAX_MESSAGE;

pub fn routes(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    subscribe(state).or(publish(state)).unify()
}

/// A WebSocket upgrade, or `None` for a plain request to a WebSocket route
/// (answered 426 by [`ws_required`] rather than falling through to a 404).
pub fn ws_upgrade() -> impl Filter<Extract = (Option<Ws>,), Error = std::convert::Infallible> + Clone
{
    crate::server::ws::upgrade()
}

/// The reply to a plain HTTP request on a WebSocket route.
pub fn ws_required() -> Response {
    WS_REQUIRED.into_response()
}

const WS_REQUIRED: ApiError = ApiError::new(
    StatusCode::UPGRADE_REQUIRED,
    "websocket_required",
    "this route takes a WebSocket upgrade",
);

/// Register an upgraded socket with the connection tracker, or the 503 reply.
pub fn register(
    state: &AppState,
    route: &'static str,
    access: Access,
) -> Result<ConnGuard, ApiError> {
    state.conns.register(route, Arc::new(access)).map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_sockets",
            "too many open WebSockets",
        )
    })
}

/// The upgrade and the `channel` of a request to a channel route: 426 for a
/// plain request, 400 for a bad channel id.
fn open_channel(ws: Option<Ws>, access: &Access) -> Result<(Ws, String), ApiError> {
    let ws = ws.ok_or(WS_REQUIRED)?;
    Ok((ws, channel_of(access)?))
}

/// The `channel` query parameter (default `server`), validated.
fn channel_of(access: &Access) -> Result<String, ApiError> {
    let channel = query_param(access.query(), "channel").unwrap_or_else(|| SERVER_CHANNEL.into());
    if valid_channel(&channel) {
        Ok(channel)
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_channel",
            "channel ids match ^[A-Za-z0-9._-]{1,128}$",
        ))
    }
}

/// WS /api/events?channel=C
pub fn subscribe(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("api" / "events")
        .and(warp::get())
        .and(ws_upgrade())
        .and(with_state(state))
        .map(|ws: Option<Ws>, state: AppState| {
            Endpoint::sync(move |access| {
                let (ws, channel) = match open_channel(ws, &access) {
                    Ok(open) => open,
                    Err(e) => return e.into_response(),
                };
                let Ok(sub) = state.hub.subscribe(&channel) else {
                    return error_reply(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too_many_channels",
                        "too many channels",
                    );
                };
                let guard = match register(&state, "/api/events", access) {
                    Ok(g) => g,
                    Err(r) => return r.into_response(),
                };
                // A subscriber only listens; its frames are bounded all the
                // same (the library's default is 64 MiB per message).
                ws.max_message_size(HARD_FRAME_LIMIT)
                    .max_frame_size(HARD_FRAME_LIMIT)
                    .on_upgrade(move |socket| run_subscriber(socket, sub, guard))
                    .into_response()
            })
        })
}

fn lagged(n: u64) -> Message {
    Message::text(format!(r#"{{"type":"lagged","dropped":{n}}}"#))
}

/// The hub's message as a text frame: shared with every other subscriber.
fn text(b: Utf8Bytes) -> Message {
    Message::text(b)
}

async fn run_subscriber(socket: WebSocket, mut sub: Subscription, mut guard: ConnGuard) {
    let (mut tx, mut rx) = socket.split();
    // One close watch for the socket's life, not a new one per message.
    let closed = guard.wait();
    tokio::pin!(closed);
    loop {
        tokio::select! {
            close = &mut closed => {
                let _ = tx.send(Message::close_with(close.code, close.reason)).await;
                break;
            }
            msg = sub.rx.recv() => {
                let Some(msg) = msg else { break };
                let dropped = sub.take_dropped();
                if dropped > 0 && tx.feed(lagged(dropped)).await.is_err() {
                    break;
                }
                if tx.feed(text(msg)).await.is_err() {
                    break;
                }
                let mut n = 1;
                while n < WRITE_BATCH {
                    let Ok(m) = sub.rx.try_recv() else { break };
                    if tx.feed(text(m)).await.is_err() {
                        return;
                    }
                    n += 1;
                }
                if tx.flush().await.is_err() {
                    break;
                }
            }
            incoming = rx.next() => match incoming {
                None => break,
                Some(Err(_)) => {
                    let _ = tx.send(Message::close_with(1009u16, "message too big")).await;
                    break;
                }
                Some(Ok(m)) if m.is_close() => break,
                Some(Ok(_)) => {}
            }
        }
    }
}

/// WS /api/pub?channel=C
pub fn publish(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("api" / "pub")
        .and(warp::get())
        .and(ws_upgrade())
        .and(with_state(state))
        .map(|ws: Option<Ws>, state: AppState| {
            Endpoint::sync(move |access| {
                let (ws, channel) = match open_channel(ws, &access) {
                    Ok(open) => open,
                    Err(e) => return e.into_response(),
                };
                // SPEC §2.5: a read-only admission receives, never publishes.
                if access.read_only() {
                    return crate::gate::refuse_read_only(&state, &access);
                }
                if channel == SERVER_CHANNEL {
                    return error_reply(
                        StatusCode::FORBIDDEN,
                        "server_channel_read_only",
                        "only the server publishes to the server channel",
                    );
                }
                if let Principal::Internal { session } = &access.principal {
                    if channel != format!("session.{session}") {
                        return error_reply(
                            StatusCode::FORBIDDEN,
                            "wrong_channel",
                            "a session's credential publishes only to its own channel",
                        );
                    }
                }
                let guard = match register(&state, "/api/pub", access) {
                    Ok(g) => g,
                    Err(r) => return r.into_response(),
                };
                ws.max_message_size(HARD_FRAME_LIMIT)
                    .max_frame_size(HARD_FRAME_LIMIT)
                    .on_upgrade(move |socket| run_publisher(socket, channel, guard, state))
                    .into_response()
            })
        })
}

async fn run_publisher(socket: WebSocket, channel: String, mut guard: ConnGuard, state: AppState) {
    let (mut tx, mut rx) = socket.split();
    let close = loop {
        tokio::select! {
            close = guard.wait() => break Some(close),
            incoming = rx.next() => match incoming {
                None => break None,
                Some(Err(_)) => break Some(Close::new(1009, "message too big")),
                Some(Ok(m)) if m.is_close() => break None,
                Some(Ok(m)) if m.is_text() => {
                    if m.as_bytes().len() > MAX_MESSAGE {
                        break Some(Close::new(1009, "message over 64 KiB"));
                    }
                    if !is_json_object(m.as_bytes()) {
                        break Some(Close::new(1007, "frames must be JSON objects"));
                    }
                    state.hub.publish(&channel, m.into_bytes());
                }
                Some(Ok(m)) if m.is_binary() => {
                    break Some(Close::new(1003, "text frames only"));
                }
                Some(Ok(_)) => {}
            }
        }
    };
    if let Some(c) = close {
        let _ = tx.send(Message::close_with(c.code, c.reason)).await;
        let _ = tx.close().await;
    }
}

/// Whether `b` is one JSON object.
fn is_json_object(b: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(b).is_ok()
}
