//! The WebSocket relay of upstream mode (SPEC §6).
//!
//! The handshake is sent to the upstream first, with hyper's client. Only
//! when the upstream answers 101 is the client answered 101 (its own
//! `Sec-WebSocket-Accept`, the subprotocol the upstream chose); any other
//! answer is relayed as it is, status, headers and body, so a refusal is
//! never a 101 followed by a close. Then both upgraded connections are
//! driven by tokio-tungstenite and messages are relayed one by one, which
//! is what lets a reload close the socket with 4403 and the rule, and lets
//! dashgate ping the browser (hermes sends no pings; idle proxies drop it).
//! A socket admitted with `access: read` (SPEC §2.5) gets the upstream's
//! messages while its own text and binary messages are dropped
//! ([`ReadOnly`]); a reload that takes write access away closes it with
//! 4403 like any other registered socket (`gate::still_allowed`).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::{
    self, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use warp::reply::Response;
use warp::Reply;

use super::{failure_reply, headers, relay_response, send, OutBody, Upstream};
use crate::gate::Access;
use crate::reject::error_reply;
use crate::server::conns::ConnGuard;
use crate::server::ws::READ_BUFFER;
use crate::state::AppState;

/// Largest message (and frame) relayed either way; a bigger one ends the
/// relay (1009 to the client).
pub const MAX_RELAY_MESSAGE: usize = 16 * 1024 * 1024;

/// How often dashgate pings the browser side of a relayed socket.
pub const PING_EVERY: Duration = Duration::from_secs(30);

/// After one side closed, how long the other has to answer its close.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The route name relayed sockets are registered under.
pub const ROUTE: &str = "upstream";

type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Whether a request is a WebSocket handshake (the checks of RFC 6455
/// §4.2.1 that `server::ws` makes).
pub fn is_upgrade(method: &Method, h: &HeaderMap) -> bool {
    let upgrade_ws = h
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket"));
    let conn_upgrade = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    *method == Method::GET
        && upgrade_ws
        && conn_upgrade
        && h.get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13")
        && h.contains_key(SEC_WEBSOCKET_KEY)
}

fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(MAX_RELAY_MESSAGE))
        .max_frame_size(Some(MAX_RELAY_MESSAGE))
}

/// Relay a WebSocket handshake to the upstream, and on its 101 the socket.
pub async fn relay(
    state: AppState,
    up: std::sync::Arc<Upstream>,
    access: Access,
    handed: super::handover::Inbound,
    on_upgrade: Option<OnUpgrade>,
) -> Response {
    let inbound = &handed.headers;
    let Some(client_key) = inbound.get(SEC_WEBSOCKET_KEY).cloned() else {
        return error_reply(
            StatusCode::BAD_REQUEST,
            "bad_header",
            "no Sec-WebSocket-Key",
        );
    };
    let Some(on_upgrade) = on_upgrade else {
        return error_reply(
            StatusCode::BAD_REQUEST,
            "bad_header",
            "this connection cannot be upgraded",
        );
    };
    let uri = match up.uri(&handed, &access.facts().path, access.query()) {
        Ok(u) => u,
        Err(_) => return error_reply(StatusCode::BAD_REQUEST, "bad_request", "bad request target"),
    };
    let live = state.policy();
    let fa = live.compiled.forward_auth();
    let out = headers::outbound(inbound, &Method::GET, &access, &up, true, fa);
    drop(live);
    let body: OutBody = Empty::new().map_err(|e| match e {}).boxed_unsync();
    let mut req = http::Request::new(body);
    *req.uri_mut() = uri;
    *req.headers_mut() = out;
    let html = super::wants_html(inbound);
    let sent = std::time::Instant::now();
    let outcome = send(&up, req).await;
    if let Some(ops) = &state.upstream_ops {
        ops.observe(&outcome, sent);
    }
    let mut res = match outcome {
        Ok(res) => res,
        Err(f) => return failure_reply(&up, f, html, state.upstream_ops.as_deref()),
    };
    if res.status() != StatusCode::SWITCHING_PROTOCOLS {
        return relay_response(res);
    }
    let expected = derive_accept_key(client_key.as_bytes());
    if res
        .headers()
        .get(SEC_WEBSOCKET_ACCEPT)
        .map(HeaderValue::as_bytes)
        != Some(expected.as_bytes())
    {
        tracing::warn!(upstream = %up.url, "upstream answered 101 with a wrong Sec-WebSocket-Accept");
        return error_reply(
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            "the upstream's WebSocket handshake is not valid",
        );
    }
    let protocol = res.headers().get(SEC_WEBSOCKET_PROTOCOL).cloned();
    let read_only = access.read_only().then(|| ReadOnly {
        principal: headers::principal_name(&access.principal)
            .unwrap_or("anonymous")
            .to_owned(),
        rule: access.rule.as_deref().unwrap_or("-").to_owned(),
        path: access.facts().path.clone(),
        told: false,
    });
    let guard = match crate::routes::events::register(&state, ROUTE, access) {
        Ok(g) => g,
        Err(e) => return e.into_response(),
    };
    let upstream_upgrade = hyper::upgrade::on(&mut res);
    tokio::spawn(async move {
        let (client, upstream) = match tokio::join!(on_upgrade, upstream_upgrade) {
            (Ok(c), Ok(u)) => (c, u),
            (c, u) => {
                tracing::debug!(
                    client = c.is_ok(),
                    upstream = u.is_ok(),
                    "relay upgrade failed"
                );
                return;
            }
        };
        let client =
            WebSocketStream::from_raw_socket(TokioIo::new(client), Role::Server, Some(config()))
                .await;
        let upstream =
            WebSocketStream::from_raw_socket(TokioIo::new(upstream), Role::Client, Some(config()))
                .await;
        pump(client, upstream, guard, read_only).await;
    });
    let mut out = Response::default();
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = out.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&expected).expect("base64 is a valid header value"),
    );
    if let Some(p) = protocol {
        h.insert(SEC_WEBSOCKET_PROTOCOL, p);
    }
    out
}

fn close_msg(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_string().into(),
    }))
}

/// A relayed socket admitted with `access: read` (SPEC §2.5): the client's
/// text and binary messages are dropped, not forwarded. The upstream's
/// protocol is not dashgate's, so nothing is injected into the socket to
/// say so (an unknown frame could break the upstream's page); the drop is
/// logged once per socket at info instead.
struct ReadOnly {
    principal: String,
    rule: String,
    path: String,
    told: bool,
}

impl ReadOnly {
    /// A client message dropped: the first one is logged.
    fn dropped(&mut self) {
        if !self.told {
            self.told = true;
            tracing::info!(
                principal = %self.principal,
                rule = %self.rule,
                path = %self.path,
                "read-only socket: the client's messages are not forwarded to the upstream"
            );
        }
    }
}

/// Why [`pump`] stopped relaying.
enum End {
    /// The registry closed the socket (a reload, a sign-out, shutdown).
    Revoked(crate::server::conns::Close),
    /// dashgate's ping to the client could not be written.
    PingFailed,
    ClientClosed(Option<CloseFrame>),
    /// The client's message could not be read (1002, or 1009: too big).
    ClientFailed(u16),
    ClientGone,
    /// A message from the upstream could not be written to the client.
    ClientWriteFailed,
    UpstreamClosed(Option<CloseFrame>),
    UpstreamLost,
    /// A message from the client could not be written to the upstream.
    UpstreamWriteFailed,
}

/// Relay messages both ways until one side closes, or the registry tells
/// the socket to close (a reload, a sign-out, shutdown). With `read_only`,
/// the client's text and binary messages are dropped (its pings, pongs and
/// close are handled as always).
///
/// The two directions run as two loops, side by side: a loop that waited
/// on one side's write while the other side's messages piled up would
/// deadlock against an upstream that echoes (each end blocked writing to
/// the other, neither reading).
async fn pump(
    client: Socket,
    upstream: Socket,
    mut guard: ConnGuard,
    mut read_only: Option<ReadOnly>,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let (mut client_tx, mut client_rx) = client.split();
    let (mut upstream_tx, mut upstream_rx) = upstream.split();
    // Everything written to the client: the upstream's messages, pings, and
    // the registry's close.
    let down = async {
        loop {
            tokio::select! {
                close = guard.wait() => return End::Revoked(close),
                _ = ping.tick() => {
                    if client_tx.send(Message::Ping(Default::default())).await.is_err() {
                        return End::PingFailed;
                    }
                }
                m = upstream_rx.next() => match m {
                    Some(Ok(Message::Close(f))) => return End::UpstreamClosed(f),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(m)) => {
                        if client_tx.send(m).await.is_err() {
                            return End::ClientWriteFailed;
                        }
                    }
                    Some(Err(_)) | None => return End::UpstreamLost,
                },
            }
        }
    };
    // Everything the client sends, to the upstream.
    let up = async {
        loop {
            match client_rx.next().await {
                Some(Ok(Message::Close(f))) => return End::ClientClosed(f),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(_)) if read_only.is_some() => {
                    if let Some(r) = read_only.as_mut() {
                        r.dropped();
                    }
                }
                Some(Ok(m)) => {
                    if upstream_tx.send(m).await.is_err() {
                        return End::UpstreamWriteFailed;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "relay: client side failed");
                    let too_big = matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_));
                    return End::ClientFailed(if too_big { 1009 } else { 1002 });
                }
                None => return End::ClientGone,
            }
        }
    };
    let end = tokio::select! {
        e = down => e,
        e = up => e,
    };
    let (Ok(mut client), Ok(mut upstream)) = (
        client_tx.reunite(client_rx),
        upstream_tx.reunite(upstream_rx),
    ) else {
        return;
    };
    match end {
        End::Revoked(close) => {
            let _ = client.send(close_msg(close.code, &close.reason)).await;
            let _ = upstream.send(close_msg(1001, "closed by dashgate")).await;
        }
        End::PingFailed => {
            let _ = upstream.close(None).await;
            return;
        }
        End::ClientClosed(f) => {
            let _ = upstream.send(Message::Close(f)).await;
        }
        End::ClientFailed(code) => {
            let _ = client.send(close_msg(code, "message not relayed")).await;
            let _ = upstream.send(close_msg(1001, "client went away")).await;
        }
        End::ClientGone | End::ClientWriteFailed => {
            let _ = upstream.send(close_msg(1001, "client went away")).await;
        }
        End::UpstreamClosed(f) => {
            let _ = client.send(Message::Close(f)).await;
        }
        End::UpstreamLost => {
            let _ = client
                .send(close_msg(1011, "upstream connection lost"))
                .await;
        }
        End::UpstreamWriteFailed => {
            let _ = client
                .send(close_msg(1011, "upstream connection lost"))
                .await;
            return;
        }
    }
    drain(&mut client, &mut upstream).await;
}

/// Read both sides until each has finished its closing handshake (or the
/// grace time is over), so close frames are answered, not cut off.
async fn drain(client: &mut Socket, upstream: &mut Socket) {
    let both = async {
        tokio::join!(
            async { while let Some(Ok(_)) = client.next().await {} },
            async { while let Some(Ok(_)) = upstream.next().await {} },
        )
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, both).await;
}
