//! The chat child's internal publish credential (SPEC §3.1), over the real
//! binary: the token in `DASHGATE_EVENTS_URL` publishes to its own session
//! channel from the loopback peer while its session runs, and is nothing
//! anywhere else — no token visit, no cookie, no sign-in, no other route,
//! no other channel, and nothing once the session has ended.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

/// A server whose chat child prints its `DASHGATE_EVENTS_URL`.
fn server(extra: &[&str]) -> Server {
    launch()
        .args([
            "--chat-command",
            "sh -c 'echo URL=$DASHGATE_EVENTS_URL; sleep 30'",
        ])
        .args(extra.iter().copied())
        .start()
}

/// Start a chat session over `/api/ws` (signed in with the startup token
/// when the server printed one): its id, its events URL (token included)
/// and the socket, kept open so the session stays watched.
async fn session(s: &Server) -> (String, String, Ws) {
    let bearer = s.token.as_ref().map(|t| format!("Bearer {t}"));
    let auth: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    let mut ws = ws_connect(&s.ws_url("/api/ws?cols=200&rows=20"), &auth)
        .await
        .unwrap_or_else(|e| panic!("upgrade refused: {e:?}"));
    let hello: Value = serde_json::from_str(&next_text(&mut ws, T).await.unwrap()).unwrap();
    assert_eq!(hello["type"], "session", "{hello}");
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
    assert!(
        url.starts_with(&format!(
            "ws://127.0.0.1:{}/api/pub?channel=session.{id}&token=",
            s.addr.port()
        )),
        "{url}"
    );
    (id, url, ws)
}

fn token_of(url: &str) -> String {
    url.split("&token=").nth(1).unwrap().to_string()
}

/// What a browser sends when it opens an address typed into its bar.
const NAVIGATION: &[(&str, &str)] = &[
    ("accept", "text/html,application/xhtml+xml,*/*;q=0.8"),
    ("sec-fetch-site", "none"),
    ("sec-fetch-mode", "navigate"),
    ("sec-fetch-dest", "document"),
];

async fn visit(s: &Server, local: &str, path_and_query: &str) -> reqwest::Response {
    let mut r = http_from(local).get(s.url(path_and_query));
    for (k, v) in NAVIGATION {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn a_page_visit_with_the_internal_token_gets_no_cookie() {
    for extra in [&[][..], &["--insecure"][..]] {
        let s = server(extra);
        let (_id, url, _ws) = session(&s).await;
        let token = token_of(&url);
        // The events URL itself, as a page (http:// instead of ws://), and
        // the other pages, from the child's own address.
        let pub_page = url
            .trim_start_matches(&format!("ws://{}", s.addr))
            .to_string();
        assert!(pub_page.starts_with("/api/pub?"), "{pub_page}");
        for path in [
            pub_page.clone(),
            format!("/?token={token}"),
            format!("/api/whoami?token={token}"),
        ] {
            let r = visit(&s, "127.0.0.1", &path).await;
            let status = r.status().as_u16();
            assert!(
                r.headers().get("set-cookie").is_none(),
                "{extra:?} {path}: a cookie for the internal credential ({status})"
            );
            assert_ne!(status, 303, "{extra:?} {path}: a token visit");
        }
        // Nor is the caller that principal anywhere but on a socket of /api/pub.
        let r = http()
            .get(s.url(&format!("/api/whoami?token={token}")))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body = r.text().await.unwrap();
        assert!(!body.contains("internal"), "{extra:?}: {status} {body}");
        if extra.is_empty() {
            assert_eq!(status, 401, "{body}");
        }
    }
}

#[tokio::test]
async fn the_internal_token_signs_nobody_in() {
    let s = server(&[]);
    let (_id, url, _ws) = session(&s).await;
    let token = token_of(&url);
    let r = http()
        .post(s.url("/api/login"))
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = http()
        .post(s.url("/api/login"))
        .form(&[("token", token.as_str()), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    for path in ["/api/sessions", "/api/whoami", "/api/status", "/api/pub"] {
        let r = http()
            .get(s.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
    let r = http()
        .post(s.url("/api/sessions"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"cols": 80, "rows": 24}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // A new terminal over /api/ws with it: refused.
    let bearer = format!("Bearer {token}");
    let st = ws_status(
        "127.0.0.1",
        &s.ws_url("/api/ws"),
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(st, 401);
}

#[tokio::test]
async fn it_publishes_to_its_own_channel_from_loopback_while_the_session_runs() {
    let s = server(&[]);
    let startup = format!("Bearer {}", s.token.clone().unwrap());
    let auth = [("authorization", startup.as_str())];
    let (id, url, _ws) = session(&s).await;
    let channel = format!("session.{id}");

    // Its own channel, from 127.0.0.1: published and delivered.
    let mut sub = ws_connect(&s.ws_url(&format!("/api/events?channel={channel}")), &auth)
        .await
        .unwrap();
    sub.send(Message::Ping(vec![1].into())).await.unwrap();
    let mut publisher = ws_connect(&url, &[])
        .await
        .expect("own channel from loopback");
    send_text(&mut publisher, r#"{"type":"note","n":7}"#).await;
    assert_eq!(
        next_text(&mut sub, T).await.as_deref(),
        Some(r#"{"type":"note","n":7}"#)
    );

    // Another channel, or the server's: refused.
    for other in ["session.ffffffffffffffff", "elsewhere", "server"] {
        let u = url.replace(&format!("channel={channel}"), &format!("channel={other}"));
        let (status, body) = ws_connect(&u, &[]).await.err().unwrap();
        assert_eq!(status, 403, "{other}: {body}");
    }
    // From another loopback address: no credential at all.
    let (status, _) = ws_connect_from("127.0.0.2", &url, &[]).await.err().unwrap();
    assert_eq!(status, 401);

    // The session ends: the credential ends with it, and so does the
    // publisher that holds it.
    let r = http()
        .delete(s.url(&format!("/api/sessions/{id}")))
        .bearer_auth(s.token.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let close = close_of(&mut publisher, T).await;
    assert_eq!(
        close.map(|c| c.0),
        Some(4401),
        "the publisher outlived its session"
    );
    let end = tokio::time::Instant::now() + T;
    let status = loop {
        let status = match ws_connect(&url, &[]).await {
            Ok(_) => 101,
            Err((st, _)) => st,
        };
        if status != 101 || tokio::time::Instant::now() > end {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 401, "the credential outlived its session");
}
