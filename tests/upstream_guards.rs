//! Upstream mode (SPEC §6) keeps the guards of issue 15: the Host allowlist
//! on proxied paths, forward auth only with the proxy's shared secret (and
//! neither header passed on), a cross-site `?token=` ignored, and the chat
//! child's internal credential held to a WebSocket of `/.dashgate/api/pub`.

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;
use upstream::{header, TestUpstream};

const T: Duration = Duration::from_secs(5);
const SECRET: &str = "proxy-secret-5b0e8a1c9d7f";
const SECRET_HEADER: &str = "X-Dashgate-Proxy-Secret";

fn fronting(up: &TestUpstream) -> Launch {
    launch().args(["--upstream", &up.url()])
}

fn from_upstream(r: &reqwest::Response) -> bool {
    r.headers().get("x-upstream").is_some()
}

#[tokio::test]
async fn a_proxied_path_is_refused_under_a_host_not_allowed() {
    let up = TestUpstream::start().await;
    let s = fronting(&up).host("0.0.0.0").arg("--insecure").start();
    let host = format!("rebind.test:{}", s.addr.port());
    let r = http()
        .get(s.url("/some/page"))
        .header("host", &host)
        .header("origin", format!("http://{host}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(!from_upstream(&r), "the upstream answered under {host}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["reason"], "host_not_allowed", "{v}");
    // The upstream's WebSocket too.
    let headers = [("host", host.as_str())];
    let st = ws_status("127.0.0.1", &s.ws_url("/ws/echo"), &headers).await;
    assert_eq!(st, 403);
    // An IP literal is served, and reaches the upstream.
    let r = http().get(s.url("/some/page")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(from_upstream(&r));
}

#[tokio::test]
async fn forward_auth_needs_the_secret_and_neither_header_reaches_the_upstream() {
    let up = TestUpstream::start().await;
    let sha = hex::encode(Sha256::digest(SECRET.as_bytes()));
    let (_d, path) = policy_file(&format!(
        r#"
version: 1
trusted_proxies: [loopback]
credentials:
  forward_auth:
    user_header: Remote-User
    secret_header: {SECRET_HEADER}
    secret_sha256: "{sha}"
rules:
  - {{ action: authenticate }}
"#
    ));
    let s = fronting(&up).policy(&path).start();
    // Without the secret the user header names nobody.
    let r = http()
        .get(s.url("/some/page"))
        .header("remote-user", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!from_upstream(&r));
    // With it, bob is passed on as dashgate's own header, and neither the
    // proxy's user header nor its secret reaches the upstream.
    let r = http()
        .get(s.url("/some/page"))
        .header("remote-user", "bob")
        .header(SECRET_HEADER, SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(from_upstream(&r));
    let got: Value = r.json().await.unwrap();
    assert_eq!(header(&got, "x-dashgate-user"), Some("bob"));
    assert_eq!(header(&got, "remote-user"), None);
    assert_eq!(header(&got, "x-dashgate-proxy-secret"), None, "{got}");
}

#[tokio::test]
async fn a_cross_site_token_on_a_proxied_path_is_no_credential() {
    let up = TestUpstream::start().await;
    let s = fronting(&up).start();
    let token = s.token.clone().expect("startup token printed");
    for site in ["cross-site", "same-site"] {
        let r = http()
            .get(s.url(&format!("/some/page?token={token}")))
            .header("sec-fetch-site", site)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{site}");
        assert!(!from_upstream(&r), "{site}");
        assert!(r.headers().get("set-cookie").is_none(), "{site}");
    }
    // Typed into the address bar, the same link admits.
    let r = http()
        .get(s.url(&format!("/some/page?token={token}")))
        .header("sec-fetch-site", "none")
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 401);
}

#[tokio::test]
async fn the_internal_credential_holds_only_on_a_socket_of_the_prefixed_pub() {
    let up = TestUpstream::start().await;
    let s = fronting(&up)
        .args([
            "--chat-command",
            "sh -c 'echo URL=$DASHGATE_EVENTS_URL; sleep 30'",
        ])
        .start();
    let bearer = format!("Bearer {}", s.token.clone().unwrap());
    let mut ws = ws_connect(
        &s.ws_url("/.dashgate/api/ws?cols=200&rows=20"),
        &[("authorization", bearer.as_str())],
    )
    .await
    .unwrap_or_else(|e| panic!("upgrade refused: {e:?}"));
    let hello: Value = serde_json::from_str(&next_text(&mut ws, T).await.unwrap()).unwrap();
    let id = hello["id"].as_str().unwrap().to_string();
    let mut seen = String::new();
    let end = tokio::time::Instant::now() + T;
    let url = loop {
        if let Some(rest) = seen.split("URL=").nth(1) {
            if let Some((url, _)) = rest.split_once("\r\n") {
                break url.to_string();
            }
        }
        match tokio::time::timeout_at(end, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("waiting for the URL: {other:?}; output so far: {seen:?}"),
        }
    };
    let prefix = format!(
        "ws://127.0.0.1:{}/.dashgate/api/pub?channel=session.{id}&token=",
        s.addr.port()
    );
    assert!(url.starts_with(&prefix), "{url}");
    let token = url.split("&token=").nth(1).unwrap().to_string();
    // The socket it names opens from the loopback peer.
    assert_eq!(ws_status("127.0.0.1", &url, &[]).await, 101);
    // Not as a page of the same path, nor on the upstream's `/api/pub`.
    let page = url.replacen("ws://", "http://", 1);
    let r = http().get(&page).send().await.unwrap();
    assert_eq!(r.status(), 401, "GET {page}");
    assert!(r.headers().get("set-cookie").is_none());
    let upstreams = url.replacen("/.dashgate/api/pub", "/api/pub", 1);
    let st = ws_status("127.0.0.1", &upstreams, &[]).await;
    assert_ne!(st, 101, "{upstreams}");
    let r = http()
        .get(s.url("/some/page"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(
        !from_upstream(&r),
        "the internal token reached the upstream"
    );
    drop(ws);
}
