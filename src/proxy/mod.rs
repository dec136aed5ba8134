//! Upstream mode (SPEC §6): the gate in front of an existing dashboard.
//!
//! `--upstream http://HOST:PORT` (or `https://`) moves dashgate's own routes under
//! [`OWN_PREFIX`] and sends every other path here, after the same
//! `authorize()` as everything else (`routes::tree`). A request is proxied
//! with an outbound request built from scratch ([`headers::outbound`]) on
//! hyper's pooled client, its bodies streamed both ways; a WebSocket
//! upgrade is relayed frame by frame by [`ws`], so a reload can close it.
//!
//! The request and the reply cross warp's route tree beside it, in the
//! hand-over of [`handover`]: the inbound headers are moved to the route
//! rather than cloned, and the upstream's body, which warp's reply type
//! cannot carry, is put in place of warp's empty one on the way out. The
//! route still answers, behind the gate, and nothing is buffered.
//!
//! An `https://` upstream is reached through hyper-rustls (ring, HTTP/1.1
//! only), its certificate checked against the system's roots or against
//! `--upstream-ca FILE` alone ([`UpstreamTls`]); one that does not verify
//! is a 502 with the TLS error in the log, never a connection made anyway.

pub mod handover;
pub mod headers;
pub mod ops;
pub mod pool;
pub mod supervise;
pub mod ws;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::{Stream, TryStreamExt};
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::connect::HttpConnector;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

pub use crate::policy::OWN_PREFIX;

use crate::gate::Access;
use crate::reject::error_reply;
use crate::routes::Endpoint;
use crate::state::{with_state, AppState};

/// How long the upstream has to send a response head (or answer a
/// WebSocket handshake) before the client gets 504 `upstream_timeout`.
/// `--upstream-timeout` sets it (tests use a short one).
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(30);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a request sent to the upstream.
pub type OutBody = UnsyncBoxBody<Bytes, BoxError>;

/// What an `https://` upstream's certificate is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamTls {
    /// The system's roots (rustls-native-certs: `/etc/ssl/certs`, or
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR` when set).
    SystemRoots,
    /// Only the certificates of this PEM file (`--upstream-ca`).
    Ca(PathBuf),
}

/// The upstream dashgate fronts: where it is and the pooled client to it.
pub struct Upstream {
    /// `http://HOST:PORT` or `https://HOST:PORT`, as given (normalised).
    pub url: String,
    pub authority: Authority,
    /// Over TLS (`https://`).
    pub https: bool,
    /// `Host` of every outbound request: the upstream's own authority.
    host_header: HeaderValue,
    /// The upstream's own origin, `http(s)://HOST:PORT`: the `Origin` a
    /// checked browser request is rewritten to.
    origin_header: HeaderValue,
    pool: Arc<pool::Pool>,
    pub timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Parse `--upstream URL`: `http://HOST[:PORT]` with no path beyond `/`,
    /// or `https://…`, checked against the system's roots.
    ///
    /// # Errors
    /// A message saying what is wrong with the URL.
    pub fn parse(url: &str, timeout: Duration) -> Result<Self, String> {
        Self::parse_with(url, timeout, None)
    }

    /// [`Self::parse`], with `--upstream-ca FILE` (only for `https://`).
    ///
    /// # Errors
    /// What is wrong with the URL, or with the CA file, or that the system
    /// has no roots to check an https upstream against.
    pub fn parse_with(url: &str, timeout: Duration, ca: Option<&Path>) -> Result<Self, String> {
        let bad = |why: &str| format!("--upstream {url:?}: {why}");
        let uri: http::Uri = url
            .parse()
            .map_err(|_| bad("not a URL (expected http://HOST:PORT)"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(bad("expected http://HOST:PORT or https://HOST:PORT")),
        };
        if ca.is_some() && !https {
            return Err(bad(
                "--upstream-ca is for an https:// upstream (this one is plain http)",
            ));
        }
        let Some(auth) = uri.authority() else {
            return Err(bad("no host (expected http://HOST:PORT)"));
        };
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad(
                "a path or query is not supported (expected http://HOST:PORT)",
            ));
        }
        if auth.as_str().contains('@') {
            return Err(bad("user info is not supported"));
        }
        let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority: Authority = format!("{}:{port}", auth.host())
            .parse()
            .map_err(|_| bad("bad host"))?;
        let scheme = if https { "https" } else { "http" };
        let origin = format!("{scheme}://{authority}");
        let tls = if https {
            let trust = ca.map_or(UpstreamTls::SystemRoots, |p| UpstreamTls::Ca(p.to_owned()));
            client_tls(&trust)?
        } else {
            // Never used: an http:// upstream's URIs are all http.
            client_config(rustls::RootCertStore::empty())?
        };
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let target: http::Uri = format!("{origin}/").parse().map_err(|_| bad("bad host"))?;
        Ok(Self {
            host_header: HeaderValue::from_str(authority.as_str()).map_err(|_| bad("bad host"))?,
            origin_header: HeaderValue::from_str(&origin).map_err(|_| bad("bad host"))?,
            url: origin,
            authority,
            https,
            pool: pool::Pool::new(connector, target),
            timeout,
        })
    }

    /// The outbound request target, in origin form (`/path?query`): the
    /// connection already goes to the upstream, and `Host` names it. The
    /// client's own target where the accept loop handed it over (no copy:
    /// it shares the request's bytes), else built from `path` and `query`
    /// as the client sent them.
    fn uri(
        &self,
        inbound: &handover::Inbound,
        path: &str,
        query: &str,
    ) -> Result<http::Uri, http::Error> {
        if let Some(pq) = &inbound.target {
            return Ok(http::Uri::from(pq.clone()));
        }
        let pq = if query.is_empty() {
            http::uri::PathAndQuery::try_from(path)?
        } else {
            http::uri::PathAndQuery::try_from(format!("{path}?{query}"))?
        };
        Ok(http::Uri::from(pq))
    }
}

/// The client's TLS config for an https upstream: ring, the roots of
/// `trust`.
fn client_tls(trust: &UpstreamTls) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match trust {
        UpstreamTls::Ca(path) => {
            use rustls_pki_types::pem::PemObject;
            let shown = path.display();
            let pem = std::fs::read(path).map_err(|e| format!("--upstream-ca {shown}: {e}"))?;
            let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("--upstream-ca {shown}: not PEM certificates ({e})"))?;
            if certs.is_empty() {
                return Err(format!(
                    "--upstream-ca {shown}: no certificate in it (expected PEM, BEGIN CERTIFICATE)"
                ));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("--upstream-ca {shown}: {e}"))?;
            }
            tracing::info!(ca = %shown, roots = roots.len(), "https upstream: certificate checked against --upstream-ca only");
        }
        UpstreamTls::SystemRoots => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "https upstream: a system root store could not be read");
            }
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "--upstream https://…: the system has no root certificates to check the \
                     upstream against (/etc/ssl/certs, SSL_CERT_FILE); give its CA with \
                     --upstream-ca FILE"
                        .to_string(),
                );
            }
            tracing::info!(
                roots = added,
                ignored,
                "https upstream: certificate checked against the system roots"
            );
        }
    }
    client_config(roots)
}

fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("upstream TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An error and its sources, `outer: inner: innermost` (hyper's client
/// error says only "client error (Connect)"; the TLS reason is inside).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(inner) = next {
        let s = inner.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        next = inner.source();
    }
    out
}

/// `* /**` (every path not under [`OWN_PREFIX`], in upstream mode): the
/// request proxied to the upstream, a WebSocket upgrade relayed.
pub fn route(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::method()
        .and(handover::inbound())
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .and(warp::body::stream())
        .and(with_state(state))
        .map(
            |method: Method,
             inbound: handover::Inbound,
             on_upgrade: Option<hyper::upgrade::OnUpgrade>,
             body,
             state: AppState| {
                let body = out_body(&inbound.headers, body);
                Endpoint::new(move |access: Access| async move {
                    let Some(up) = state.config.upstream.clone() else {
                        return not_upstream();
                    };
                    if ws::is_upgrade(&method, &inbound.headers) {
                        return ws::relay(state, up, access, inbound, on_upgrade).await;
                    }
                    forward(state, &up, &access, method, &inbound, body).await
                })
            },
        )
}

fn not_upstream() -> Response {
    error_reply(StatusCode::NOT_FOUND, "not_found", "no such route")
}

/// The inbound body as the outbound one, streamed: empty when the request
/// says it has none (so a `GET` is not sent with a chunked body).
fn out_body<S, B>(headers: &HeaderMap, body: S) -> OutBody
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf + Send + 'static,
{
    let has_body = headers.contains_key(http::header::TRANSFER_ENCODING)
        || headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if !has_body {
        return Empty::new().map_err(|e| match e {}).boxed_unsync();
    }
    let frames = body
        .map_ok(|mut b| Frame::data(b.copy_to_bytes(b.remaining())))
        .map_err(|e| Box::new(e) as BoxError);
    StreamBody::new(frames).boxed_unsync()
}

/// What went wrong talking to the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Refused, unreachable, or the connection failed before a response.
    Unavailable,
    /// No response head within the timeout.
    Timeout,
}

/// Send `req` and wait for the response head, bounded by the timeout.
async fn send(
    up: &Upstream,
    req: http::Request<OutBody>,
) -> Result<http::Response<pool::UpBody>, Failure> {
    match tokio::time::timeout(up.timeout, up.pool.send(req)).await {
        Err(_) => Err(Failure::Timeout),
        Ok(Err(e)) => {
            let error = e.to_string();
            tracing::warn!(upstream = %up.url, error = %error, connect = e.is_connect(), "upstream request failed");
            Err(Failure::Unavailable)
        }
        Ok(Ok(res)) => Ok(res),
    }
}

/// Proxy one HTTP request.
async fn forward(
    state: AppState,
    up: &Upstream,
    access: &Access,
    method: Method,
    inbound: &handover::Inbound,
    body: OutBody,
) -> Response {
    let uri = match up.uri(inbound, &access.facts().path, access.query()) {
        Ok(u) => u,
        Err(_) => return error_reply(StatusCode::BAD_REQUEST, "bad_request", "bad request target"),
    };
    let live = state.policy();
    let fa = live.compiled.forward_auth();
    let inbound = &inbound.headers;
    let headers = headers::outbound(inbound, &method, access, up, false, fa);
    drop(live);
    let mut req = http::Request::new(body);
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    let html = wants_html(inbound);
    let sent = std::time::Instant::now();
    let outcome = send(up, req).await;
    if let Some(ops) = &state.upstream_ops {
        ops.observe(&outcome, sent);
    }
    match outcome {
        Ok(res) => relay_response(res),
        Err(f) => failure_reply(up, f, html, state.upstream_ops.as_deref()),
    }
}

/// The upstream's response for the client: status and end-to-end headers,
/// the body streamed beside warp's reply.
pub(crate) fn relay_response(res: http::Response<pool::UpBody>) -> Response {
    let (mut parts, body) = res.into_parts();
    headers::strip_response(&mut parts.headers);
    let mut out = Response::default();
    *out.status_mut() = parts.status;
    *out.headers_mut() = parts.headers;
    handover::carry(body);
    out
}

/// A browser navigation (it gets a page, not JSON, when the upstream is down).
pub(crate) fn wants_html(h: &HeaderMap) -> bool {
    h.get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// 502 `upstream_unavailable` or 504 `upstream_timeout`: JSON like the
/// gate's denials, or a short page saying what is down for a browser.
pub(crate) fn failure_reply(
    up: &Upstream,
    f: Failure,
    html: bool,
    ops: Option<&ops::Ops>,
) -> Response {
    let (status, reason, error) = match f {
        Failure::Unavailable => (
            StatusCode::BAD_GATEWAY,
            "upstream_unavailable",
            "the upstream dashboard is not reachable",
        ),
        Failure::Timeout => (
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "the upstream dashboard did not answer in time",
        ),
    };
    if !html {
        return error_reply(status, reason, error);
    }
    let what = match f {
        Failure::Unavailable if up.https => {
            "is not reachable: nothing accepts connections there, it closed the connection, \
             or its TLS certificate did not verify (dashgate's log says which)"
        }
        Failure::Unavailable => {
            "is not reachable: nothing accepts connections there, or it closed the connection"
        }
        Failure::Timeout => "did not answer in time",
    };
    let secs = up.timeout.as_secs_f64();
    let port = up.authority.port_u16().unwrap_or(80);
    let start = ops.and_then(ops::Ops::supervised_hint).unwrap_or_else(|| {
        format!(
            "Start it (for hermes: <code>hermes dashboard --no-open --skip-build --host 127.0.0.1 --port {port}</code>) \
and reload this page."
        )
    });
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{status} · dashgate</title>\
<style>body{{font:16px/1.5 system-ui,sans-serif;background:#111;color:#ddd;max-width:40rem;margin:4rem auto;padding:0 1rem}}code{{color:#fc6}}</style>\
</head><body><h1>The dashboard behind dashgate is down</h1>\
<p>dashgate let you in, but the upstream dashboard at <code>{url}</code> {what}.</p>\
<p>{start} dashgate waits {secs} s for an answer.</p>\
<p><code>{code} {reason}</code> · <a href=\"{OWN_PREFIX}/\" style=\"color:#8cf\">dashgate's own pages</a></p>\
</body></html>",
        status = status.as_u16(),
        url = up.url,
        code = status.as_u16(),
    );
    warp::reply::with_status(warp::reply::html(page), status).into_response()
}
