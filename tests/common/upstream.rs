//! A test upstream for upstream mode: a hyper server on 127.0.0.1:0.
//!
//! * any path: 200 JSON of what it got (`method`, `path`, `query`,
//!   `headers` as `[name, value]` pairs, `body`).
//! * `/stream`: a chunked body whose first chunk is sent at once and whose
//!   last waits for [`TestUpstream::release`] (bounded: 10 s).
//! * `/sleep`: answers after 3 s.
//! * `/ws/echo`: a WebSocket that picks the last subprotocol offered, sends
//!   the handshake it got (as the JSON above) as its first text frame, then
//!   echoes; the text `close-me` makes it close with 4001 `upstream bye`.
//! * `/ws/refuse`: refuses the handshake with 403 and `refused by upstream`.
//! * `/ws/tick`: a WebSocket that sends `tick N` every 50 ms and never
//!   echoes (what it receives is recorded like the echo's).
//!
//! Every request's method and path is recorded ([`TestUpstream::requests`]),
//! and every text or binary message a socket received
//! ([`TestUpstream::frames`]), so a test can say what never reached it.
//! [`TestUpstream::start_tls`] serves the same over TLS with a fresh rcgen
//! certificate for `127.0.0.1` and `localhost` ([`TestUpstream::ca_pem`]).
//! [`TestUpstream::stop`] closes the listener and every open connection.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Body = BoxBody<Bytes, Infallible>;

pub struct TestUpstream {
    pub addr: SocketAddr,
    release: Arc<Notify>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    record: Arc<Record>,
    /// The certificate it serves (PEM), when over TLS.
    ca_pem: Option<String>,
}

/// What the upstream got.
#[derive(Default)]
struct Record {
    /// `METHOD /path` of every request, WebSocket handshakes included.
    requests: Mutex<Vec<String>>,
    /// Every text message a socket received, and binary ones as `bin:N`
    /// (N bytes).
    frames: Mutex<Vec<String>>,
}

#[derive(Clone)]
struct Shared {
    release: Arc<Notify>,
    record: Arc<Record>,
}

impl TestUpstream {
    pub async fn start() -> TestUpstream {
        Self::start_with(None, "127.0.0.1:0").await
    }

    /// [`TestUpstream::start`] on a given address (`127.0.0.1:PORT`).
    pub async fn start_at(addr: &str) -> TestUpstream {
        Self::start_with(None, addr).await
    }

    /// The same upstream over TLS, with a fresh self-signed certificate
    /// for `127.0.0.1` and `localhost` (trust it with [`Self::ca_pem`]).
    pub async fn start_tls() -> TestUpstream {
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = rustls::pki_types::CertificateDer::from(cert.der().to_vec());
        let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key_der)
        .unwrap();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        let mut up = Self::start_with(
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))),
            "127.0.0.1:0",
        )
        .await;
        up.ca_pem = Some(cert.pem());
        up
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>, addr: &str) -> TestUpstream {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let release = Arc::new(Notify::new());
        let record = Arc::<Record>::default();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let shared = Shared {
            release: release.clone(),
            record: record.clone(),
        };
        let ts = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                let tls = tls.clone();
                let svc = hyper::service::service_fn(move |req| handle(req, shared.clone()));
                let conn = tokio::spawn(async move {
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http
                                .serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades()
                                .await;
                        }
                        Some(tls) => {
                            let hs =
                                tokio::time::timeout(Duration::from_secs(10), tls.accept(stream));
                            if let Ok(Ok(stream)) = hs.await {
                                let _ = http
                                    .serve_connection(TokioIo::new(stream), svc)
                                    .with_upgrades()
                                    .await;
                            }
                        }
                    }
                });
                ts.lock().unwrap().push(conn);
            }
        });
        tasks.lock().unwrap().push(accept);
        TestUpstream {
            addr,
            release,
            tasks,
            record,
            ca_pem: None,
        }
    }

    /// `http://127.0.0.1:PORT` (`https://` over TLS).
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The PEM certificate a TLS upstream serves (it is its own CA).
    pub fn ca_pem(&self) -> &str {
        self.ca_pem.as_deref().expect("a TLS upstream")
    }

    /// `METHOD /path` of every request so far.
    pub fn requests(&self) -> Vec<String> {
        self.record.requests.lock().unwrap().clone()
    }

    /// Every message its sockets received so far (`bin:N` for binary).
    pub fn frames(&self) -> Vec<String> {
        self.record.frames.lock().unwrap().clone()
    }

    /// Let `/stream` send its last chunk.
    pub fn release(&self) {
        self.release.notify_one();
    }

    /// Stop listening and drop every connection (WebSockets included).
    pub fn stop(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

impl Drop for TestUpstream {
    fn drop(&mut self) {
        self.stop();
    }
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r
}

/// What a request looked like, as JSON.
fn seen(req: &Request<Incoming>, body: &str) -> serde_json::Value {
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
        .collect();
    serde_json::json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "headers": headers,
        "body": body,
    })
}

async fn handle(req: Request<Incoming>, shared: Shared) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    shared
        .record
        .requests
        .lock()
        .unwrap()
        .push(format!("{} {path}", req.method()));
    let release = shared.release.clone();
    Ok(match path.as_str() {
        "/ws/refuse" => full(StatusCode::FORBIDDEN, "refused by upstream"),
        "/ws/echo" => ws_echo(req, shared.record.clone(), false),
        "/ws/tick" => ws_echo(req, shared.record.clone(), true),
        "/sleep" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            full(StatusCode::OK, "slept")
        }
        "/stream" => {
            let chunks = futures_util::stream::unfold(0u8, move |n| {
                let release = release.clone();
                async move {
                    match n {
                        0 => Some((Ok::<_, Infallible>(Frame::data(Bytes::from("first\n"))), 1)),
                        1 => {
                            let _ =
                                tokio::time::timeout(Duration::from_secs(10), release.notified())
                                    .await;
                            Some((Ok(Frame::data(Bytes::from("last\n"))), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::new(BodyExt::boxed(StreamBody::new(chunks)))
        }
        _ => {
            let json_head = seen(&req, "");
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut v = json_head;
            v["body"] = String::from_utf8_lossy(&body).into_owned().into();
            let mut r = full(StatusCode::OK, v.to_string());
            r.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            r.headers_mut().insert("x-upstream", "yes".parse().unwrap());
            r
        }
    })
}

/// Record a message a socket received.
fn record_frame(record: &Record, m: &Message) {
    let seen = match m {
        Message::Text(t) => t.as_str().to_string(),
        Message::Binary(b) => format!("bin:{}", b.len()),
        _ => return,
    };
    record.frames.lock().unwrap().push(seen);
}

/// `/ws/echo`, or with `tick` `/ws/tick` (see the module docs).
fn ws_echo(mut req: Request<Incoming>, record: Arc<Record>, tick: bool) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return full(StatusCode::BAD_REQUEST, "not a websocket handshake");
    };
    let hello = seen(&req, "").to_string();
    let protocol = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .next_back();
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await;
        let _ = ws.send(Message::text(hello)).await;
        if tick {
            let mut every = tokio::time::interval(Duration::from_millis(50));
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        n += 1;
                        if ws.send(Message::text(format!("tick {n}"))).await.is_err() {
                            return;
                        }
                    }
                    m = ws.next() => match m {
                        Some(Ok(m)) => record_frame(&record, &m),
                        _ => return,
                    },
                }
            }
        }
        while let Some(Ok(m)) = ws.next().await {
            record_frame(&record, &m);
            match m {
                Message::Text(t) if t.as_str() == "close-me" => {
                    let _ = ws
                        .send(Message::Close(Some(CloseFrame {
                            code: CloseCode::from(4001),
                            reason: "upstream bye".into(),
                        })))
                        .await;
                }
                Message::Text(_) | Message::Binary(_) => {
                    let sent = ws.send(m).await;
                    if sent.is_err() {
                        break;
                    }
                }
                _ => {}
            }
        }
    });
    let mut r = full(StatusCode::SWITCHING_PROTOCOLS, "");
    let h = r.headers_mut();
    h.insert("connection", "upgrade".parse().unwrap());
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert(
        "sec-websocket-accept",
        derive_accept_key(key.as_bytes()).parse().unwrap(),
    );
    if let Some(p) = protocol {
        h.insert("sec-websocket-protocol", p.parse().unwrap());
    }
    r
}

/// The value of header `name` in an echo's JSON (`None` when absent).
pub fn header<'a>(echo: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    echo["headers"]
        .as_array()?
        .iter()
        .find(|p| p[0].as_str() == Some(name))
        .and_then(|p| p[1].as_str())
}

/// Every value of header `name` in an echo's JSON.
pub fn headers_named<'a>(echo: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    echo["headers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p[0].as_str() == Some(name))
                .filter_map(|p| p[1].as_str())
                .collect()
        })
        .unwrap_or_default()
}
