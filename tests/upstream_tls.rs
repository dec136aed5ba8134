//! Upstream mode and TLS (SPEC §6, §7): an `https://` upstream, its
//! certificate checked against `--upstream-ca` (or the system's roots,
//! which do not know a test certificate: 502 and the TLS error in the log);
//! and dashgate's own TLS on the client side in front of a plain upstream.

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use common::*;
use upstream::{header, TestUpstream};

const T: Duration = Duration::from_secs(10);

/// `pem` written to a file in a temp dir.
fn ca_file(pem: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upstream-ca.pem");
    std::fs::write(&path, pem).unwrap();
    let path = path.to_str().unwrap().to_string();
    (dir, path)
}

async fn get_json(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = c.get(url).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn an_https_upstream_trusted_by_upstream_ca_proxies_get_and_websocket() {
    let up = TestUpstream::start_tls().await;
    let (_d, ca) = ca_file(up.ca_pem());
    let s = launch()
        .args(["--upstream", &up.url(), "--upstream-ca", &ca, "--insecure"])
        .start();
    assert!(
        s.output()
            .contains(&format!("proxying to https://{}", up.addr)),
        "{}",
        s.output()
    );
    let (status, echo) = get_json(&http(), &s.url("/api/data?x=1")).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["path"], "/api/data");
    assert_eq!(echo["query"], "x=1");
    let authority = up.addr.to_string();
    assert_eq!(header(&echo, "host"), Some(authority.as_str()));

    // The WebSocket relay to it: wss on the upstream side.
    let origin = format!("http://{}", s.addr);
    let (mut ws, _) = ws_connect_from("127.0.0.1", &s.ws_url("/ws/echo"), &[("origin", &origin)])
        .await
        .expect("relayed to the https upstream");
    let hello: Value = serde_json::from_str(&next_text(&mut ws, T).await.unwrap()).unwrap();
    let up_origin = format!("https://{}", up.addr);
    assert_eq!(header(&hello, "origin"), Some(up_origin.as_str()));
    send_text(&mut ws, "over tls").await;
    assert_eq!(next_text(&mut ws, T).await.as_deref(), Some("over tls"));
    ws.send(Message::binary(vec![9u8; 3])).await.unwrap();
    let bin = next_binary(&mut ws, T).await.expect("no binary echo");
    assert_eq!(&bin[..], &[9, 9, 9]);
}

#[tokio::test]
async fn the_ca_can_come_from_the_environment() {
    let up = TestUpstream::start_tls().await;
    let (_d, ca) = ca_file(up.ca_pem());
    let s = launch()
        .args(["--upstream", &up.url(), "--insecure"])
        .env("DASHGATE_UPSTREAM_CA", &ca)
        .start();
    let (status, echo) = get_json(&http(), &s.url("/from-env")).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["path"], "/from-env");
}

#[tokio::test]
async fn an_upstream_certificate_that_does_not_verify_is_502_and_logged() {
    let up = TestUpstream::start_tls().await;
    // The system's roots (the default) do not know the test certificate.
    let s = launch()
        .args(["--upstream", &up.url(), "--insecure"])
        .start();
    let (status, body) = get_json(&http(), &s.url("/api/data")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["reason"], "upstream_unavailable", "{body}");
    let got = ws_connect_from("127.0.0.1", &s.ws_url("/ws/echo"), &[]).await;
    match got {
        Err((status, body)) => {
            assert_eq!(status, 502);
            assert!(body.contains("upstream_unavailable"), "{body}");
        }
        Ok(_) => panic!("a socket to an unverified upstream was answered 101"),
    }
    assert!(
        s.wait_output("invalid peer certificate: UnknownIssuer", T),
        "the log names the TLS error: {}",
        s.output()
    );
    // A browser gets a page that says what may be wrong.
    let page = http()
        .get(s.url("/"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 502);
    assert!(page.text().await.unwrap().contains("TLS certificate"));
    // Nothing got through to the upstream's HTTP.
    assert!(up.requests().is_empty(), "{:?}", up.requests());

    // Another CA than the upstream's: the same.
    let other = TestUpstream::start_tls().await;
    let (_d, ca) = ca_file(other.ca_pem());
    let s = launch()
        .args(["--upstream", &up.url(), "--upstream-ca", &ca, "--insecure"])
        .start();
    let (status, body) = get_json(&http(), &s.url("/api/data")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        s.wait_output("invalid peer certificate", T),
        "{}",
        s.output()
    );
    assert!(up.requests().is_empty());
}

#[test]
fn a_bad_upstream_ca_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let missing = dir.path().join("missing.pem");
    let cases = [
        (
            "https://127.0.0.1:1",
            empty.to_str().unwrap(),
            "no certificate",
        ),
        (
            "https://127.0.0.1:1",
            missing.to_str().unwrap(),
            "missing.pem",
        ),
        ("http://127.0.0.1:1", empty.to_str().unwrap(), "https://"),
    ];
    for (url, ca, says) in cases {
        let out = launch()
            .args(["--upstream", url, "--upstream-ca", ca])
            .command()
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url} {ca}: {err}");
        assert!(err.contains("--upstream"), "{err}");
        assert!(err.contains(says), "{says}: {err}");
    }
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

fn tls_config(pem: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    Arc::new(cfg)
}

/// A wss handshake to `addr` trusting `pem`, with `headers`.
async fn wss_connect(addr: SocketAddr, pem: &[u8], path: &str, headers: &[(&str, &str)]) -> Wss {
    let mut req = format!("wss://{addr}{path}").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let stream = tokio::time::timeout(
        T,
        tokio_rustls::TlsConnector::from(tls_config(pem)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("TLS handshake");
    let (ws, _) = tokio::time::timeout(T, tokio_tungstenite::client_async(req, stream))
        .await
        .expect("upgrade in time")
        .expect("relayed over wss");
    ws
}

#[tokio::test]
async fn dashgate_over_tls_in_front_of_a_plain_upstream() {
    let up = TestUpstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let s = launch()
        .args([
            "--tls",
            "self-signed",
            "--upstream",
            &up.url(),
            "--state-dir",
        ])
        .arg(state.to_str().unwrap())
        .start();
    assert!(s.https, "{}", s.output());
    let token = s.token.clone().expect("a startup token");
    // The startup link is https, to dashgate's own sign-in.
    let link = format!("open https://{}/.dashgate/login?token={token}", s.addr);
    assert!(s.output().contains(&link), "{}", s.output());
    let pem = std::fs::read(state.join("tls-cert.pem")).unwrap();
    let c = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(T)
        .build()
        .unwrap();
    let base = format!("https://{}", s.addr);

    // The page: the startup link signs the browser in (a Secure cookie),
    // and with it the upstream's page is proxied.
    let r = c
        .get(format!("{base}/.dashgate/login?token={token}"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let session = cookie_pair(&cookie);
    let r = c
        .get(format!("{base}/"))
        .header("accept", "text/html")
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream"], "yes");
    let page: Value = r.json().await.unwrap();
    assert_eq!(header(&page, "x-forwarded-proto"), Some("https"));
    assert_eq!(header(&page, "x-dashgate-user"), Some("startup"));
    assert_eq!(header(&page, "cookie"), None);

    // REST with the Bearer token.
    let r = c
        .post(format!("{base}/api/items"))
        .bearer_auth(&token)
        .body("posted over tls")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["body"], "posted over tls");
    assert_eq!(header(&echo, "authorization"), None);

    // The relay over wss, from the page's origin with its cookie.
    let mut ws = wss_connect(
        s.addr,
        &pem,
        "/ws/echo",
        &[("origin", &base), ("cookie", &session)],
    )
    .await;
    let hello = tokio::time::timeout(T, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return t.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("no hello: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    let hello: Value = serde_json::from_str(&hello).unwrap();
    assert_eq!(header(&hello, "origin"), Some(up.url().as_str()));
    assert_eq!(header(&hello, "x-forwarded-proto"), Some("https"));
    ws.send(Message::text("over wss")).await.unwrap();
    let echoed = tokio::time::timeout(T, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return t.to_string(),
                Some(Ok(_)) => continue,
                other => panic!("no echo: {other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(echoed, "over wss");
}
