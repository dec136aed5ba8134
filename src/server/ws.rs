//! WebSocket upgrades with buffers sized for thousands of idle sockets.
//!
//! This is `warp::ws` with one difference that matters: the read buffer.
//! tungstenite 0.29 gives every socket a 128 KiB read buffer and zero-fills
//! all of it at the first read, so each open socket holds 128 KiB of RSS
//! even when nothing is ever sent on it: 10,000 idle dashboards measured
//! 1.38 GB (SPEC §5 allows 150 MB). warp 0.4's `Ws` cannot set the size, so
//! the handshake is done here, with the same checks as `warp::ws()` (RFC 6455
//! §4.2.1), and the upgraded connection is handed to tokio-tungstenite with
//! [`READ_BUFFER`]. Larger frames are still read whole: the buffer grows for
//! them and tungstenite assembles a frame across reads.
//!
//! [`Message`] and [`WebSocket`] mirror warp's types, so routes read the
//! same; [`Message::text`] also takes a shared [`Utf8Bytes`], which lets the
//! event hub hand one message to a thousand subscribers without a copy each.

use std::borrow::Cow;
use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_util::{FutureExt, Sink, Stream};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{self, CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use warp::reply::Response;
use warp::{Filter, Reply};

pub use tokio_tungstenite::tungstenite::{Error, Utf8Bytes};

/// Bytes read from a socket at a time (tungstenite's default is 128 KiB,
/// allocated and zeroed per socket). 4 KiB holds any control message and a
/// typical event; bigger frames take more reads, not more memory at rest.
pub const READ_BUFFER: usize = 4 * 1024;

/// A plain request to a WebSocket route is `None`; a valid upgrade request
/// (GET, `Connection: upgrade`, `Upgrade: websocket`, version 13, a key) is
/// `Some`. Never rejects: the route decides what to answer.
pub fn upgrade() -> impl Filter<Extract = (Option<Ws>,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<OnUpgrade>())
        .map(
            |method: Method, headers: HeaderMap, on: Option<OnUpgrade>| {
                Ws::from_request(&method, &headers, on)
            },
        )
}

/// A WebSocket handshake waiting to be accepted with [`Ws::on_upgrade`].
pub struct Ws {
    key: HeaderValue,
    on_upgrade: Option<OnUpgrade>,
    config: WebSocketConfig,
}

impl fmt::Debug for Ws {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ws").finish_non_exhaustive()
    }
}

/// Whether some `Connection` header lists the `upgrade` token.
fn connection_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

impl Ws {
    fn from_request(method: &Method, headers: &HeaderMap, on: Option<OnUpgrade>) -> Option<Ws> {
        let upgrade_ws = headers
            .get(header::UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
        let version_13 = headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13");
        if method != Method::GET || !connection_upgrade(headers) || !upgrade_ws || !version_13 {
            return None;
        }
        let key = headers.get(header::SEC_WEBSOCKET_KEY)?.clone();
        Some(Ws {
            key,
            on_upgrade: on,
            config: WebSocketConfig::default().read_buffer_size(READ_BUFFER),
        })
    }

    /// The largest message accepted (a bigger one ends the stream with an
    /// error).
    pub fn max_message_size(mut self, max: usize) -> Self {
        self.config = self.config.max_message_size(Some(max));
        self
    }

    /// The largest frame accepted.
    pub fn max_frame_size(mut self, max: usize) -> Self {
        self.config = self.config.max_frame_size(Some(max));
        self
    }

    /// Accept: answer 101 and run `func` on the socket once hyper hands the
    /// connection over.
    pub fn on_upgrade<F, U>(self, func: F) -> impl Reply
    where
        F: FnOnce(WebSocket) -> U + Send + 'static,
        U: Future<Output = ()> + Send + 'static,
    {
        WsReply { ws: self, func }
    }
}

struct WsReply<F> {
    ws: Ws,
    func: F,
}

impl<F, U> Reply for WsReply<F>
where
    F: FnOnce(WebSocket) -> U + Send + 'static,
    U: Future<Output = ()> + Send + 'static,
{
    fn into_response(self) -> Response {
        let Ws {
            key,
            on_upgrade,
            config,
        } = self.ws;
        match on_upgrade {
            Some(on) => {
                let func = self.func;
                tokio::spawn(async move {
                    match on.await {
                        Ok(upgraded) => func(WebSocket::new(upgraded, config).await).await,
                        Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
                    }
                });
            }
            None => tracing::debug!("no upgrade state on this connection"),
        }
        let mut res = Response::default();
        *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let h = res.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        let accept = derive_accept_key(key.as_bytes());
        h.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
        );
        res
    }
}

/// An accepted WebSocket: a `Stream` of [`Message`]s and a `Sink` for them.
/// Pings are answered by tungstenite while the stream is read.
pub struct WebSocket {
    inner: WebSocketStream<TokioIo<Upgraded>>,
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket").finish_non_exhaustive()
    }
}

impl WebSocket {
    async fn new(upgraded: Upgraded, config: WebSocketConfig) -> Self {
        let io = TokioIo::new(upgraded);
        WebSocketStream::from_raw_socket(io, Role::Server, Some(config))
            .map(|inner| WebSocket { inner })
            .await
    }
}

impl Stream for WebSocket {
    type Item = Result<Message, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
            Some(Ok(inner)) => Poll::Ready(Some(Ok(Message { inner }))),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "websocket read failed");
                Poll::Ready(Some(Err(e)))
            }
            None => Poll::Ready(None),
        }
    }
}

impl Sink<Message> for WebSocket {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.inner).poll_ready(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Error> {
        Pin::new(&mut self.inner).start_send(item.inner)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// A WebSocket message (the API of `warp::ws::Message`).
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    inner: protocol::Message,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl Message {
    /// A text message; a [`Utf8Bytes`] is shared, not copied.
    pub fn text<S: Into<Utf8Bytes>>(s: S) -> Message {
        Message {
            inner: protocol::Message::Text(s.into()),
        }
    }

    pub fn binary<B: Into<Bytes>>(b: B) -> Message {
        Message {
            inner: protocol::Message::Binary(b.into()),
        }
    }

    pub fn ping<B: Into<Bytes>>(b: B) -> Message {
        Message {
            inner: protocol::Message::Ping(b.into()),
        }
    }

    pub fn pong<B: Into<Bytes>>(b: B) -> Message {
        Message {
            inner: protocol::Message::Pong(b.into()),
        }
    }

    /// A close frame without a code.
    pub fn close() -> Message {
        Message {
            inner: protocol::Message::Close(None),
        }
    }

    /// A close frame with a code and a reason.
    pub fn close_with(code: impl Into<u16>, reason: impl Into<Cow<'static, str>>) -> Message {
        let reason: Utf8Bytes = match reason.into() {
            Cow::Borrowed(s) => Utf8Bytes::from_static(s),
            Cow::Owned(s) => s.into(),
        };
        Message {
            inner: protocol::Message::Close(Some(CloseFrame {
                code: CloseCode::from(code.into()),
                reason,
            })),
        }
    }

    pub fn is_text(&self) -> bool {
        self.inner.is_text()
    }

    pub fn is_binary(&self) -> bool {
        self.inner.is_binary()
    }

    pub fn is_close(&self) -> bool {
        self.inner.is_close()
    }

    pub fn is_ping(&self) -> bool {
        self.inner.is_ping()
    }

    pub fn is_pong(&self) -> bool {
        self.inner.is_pong()
    }

    /// The code and reason of a close frame.
    pub fn close_frame(&self) -> Option<(u16, &str)> {
        match &self.inner {
            protocol::Message::Close(Some(f)) => Some((f.code.into(), f.reason.as_str())),
            _ => None,
        }
    }

    /// The text of a text message.
    #[allow(clippy::result_unit_err)] // the shape of warp's `Message::to_str`
    pub fn to_str(&self) -> Result<&str, ()> {
        match &self.inner {
            protocol::Message::Text(s) => Ok(s.as_str()),
            _ => Err(()),
        }
    }

    /// The payload (empty for a close frame).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.inner {
            protocol::Message::Text(s) => s.as_bytes(),
            protocol::Message::Binary(b)
            | protocol::Message::Ping(b)
            | protocol::Message::Pong(b) => b,
            protocol::Message::Close(_) => &[],
            protocol::Message::Frame(f) => f.payload(),
        }
    }

    /// The payload, without a copy.
    pub fn into_bytes(self) -> Bytes {
        self.inner.into_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upgrade_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("WebSocket"));
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        h
    }

    #[test]
    fn handshake_checks_match_warp() {
        let ok = upgrade_headers();
        assert!(Ws::from_request(&Method::GET, &ok, None).is_some());
        assert!(Ws::from_request(&Method::POST, &ok, None).is_none());
        for (name, bad) in [
            (header::CONNECTION, "keep-alive"),
            (header::UPGRADE, "h2c"),
            (header::SEC_WEBSOCKET_VERSION, "8"),
        ] {
            let mut h = upgrade_headers();
            h.insert(name.clone(), HeaderValue::from_static(bad));
            assert!(
                Ws::from_request(&Method::GET, &h, None).is_none(),
                "{name}: {bad}"
            );
        }
        let mut h = upgrade_headers();
        h.remove(header::SEC_WEBSOCKET_KEY);
        assert!(Ws::from_request(&Method::GET, &h, None).is_none());
    }

    #[test]
    fn accept_key_and_buffer() {
        let ws = Ws::from_request(&Method::GET, &upgrade_headers(), None).unwrap();
        assert_eq!(ws.config.read_buffer_size, READ_BUFFER);
        let res = ws.on_upgrade(|_| async {}).into_response();
        assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
        // RFC 6455 §1.3's example key and answer.
        assert_eq!(
            res.headers()[header::SEC_WEBSOCKET_ACCEPT],
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn messages_read_like_warps() {
        let m = Message::close_with(4403_u16, "rule x");
        assert!(m.is_close());
        assert_eq!(m.close_frame(), Some((4403, "rule x")));
        assert!(m.as_bytes().is_empty());
        let shared = Utf8Bytes::from_static(r#"{"a":1}"#);
        let t = Message::text(shared.clone());
        assert_eq!(t.to_str(), Ok(r#"{"a":1}"#));
        assert_eq!(t.into_bytes(), Bytes::from_static(br#"{"a":1}"#));
        assert!(Message::binary(vec![1, 2]).is_binary());
    }
}
