//! `access: read` and groups in upstream mode (SPEC §2.5, §6), against the
//! test upstream, which records every request and every message it got: a
//! read-only principal's unsafe methods are 403 `read_only` and never reach
//! the upstream; its relayed socket receives the upstream's messages but
//! its own are not forwarded; the upstream is told the principal's groups
//! in `X-Dashgate-Groups`, never a client's copy; a reload that leaves a
//! full-access socket read-only closes it with 4403.

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;

use common::*;
use upstream::{header, TestUpstream};

const T: Duration = Duration::from_secs(10);

const ANA: &str = "ana-token-0123456789";
const VIC: &str = "vic-token-0123456789";
const SOLO: &str = "solo-token-0123456789";

fn h(t: &str) -> String {
    hex::encode(Sha256::digest(t.as_bytes()))
}

/// ana (ops, devs) has full access, vic (viewers) read access, solo (no
/// groups) full access by its name. `ana_rule_access` is ana's rule's
/// `access:`, so a reload can make her read-only.
fn team(ana_rule_access: &str) -> String {
    format!(
        r#"version: 1
credentials:
  startup_token: false
  tokens:
    - {{ name: ana, sha256: "{}", groups: [ops, devs] }}
    - {{ name: vic, sha256: "{}", groups: [viewers] }}
    - {{ name: solo, sha256: "{}" }}
rules:
  - {{ name: viewers watch, groups: [viewers], access: read, action: authenticate }}
  - {{ name: team works, groups: [ops], access: {ana_rule_access}, action: authenticate }}
  - {{ name: solo works, users: [solo], action: authenticate }}
  - {{ name: nobody else, action: deny }}
"#,
        h(ANA),
        h(VIC),
        h(SOLO)
    )
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

async fn call(
    s: &Server,
    method: &str,
    path: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut r = http()
        .request(m, s.url(path))
        .header("authorization", bearer(token));
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    let r = r.body("payload").send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn relay(s: &Server, path: &str, token: &str) -> Ws {
    let auth = bearer(token);
    let (ws, _) = ws_connect_from("127.0.0.1", &s.ws_url(path), &[("authorization", &auth)])
        .await
        .unwrap_or_else(|e| panic!("relayed {path}: {e:?}"));
    ws
}

fn start(
    up: &TestUpstream,
    ana_rule_access: &str,
) -> (tempfile::TempDir, std::path::PathBuf, Server) {
    let (dir, path) = policy_file(&team(ana_rule_access));
    let s = launch()
        .args(["--upstream", &up.url()])
        .policy(&path)
        .start();
    (dir, path, s)
}

#[tokio::test]
async fn a_read_only_principals_unsafe_methods_are_403_and_never_reach_the_upstream() {
    let up = TestUpstream::start().await;
    let (_d, _p, s) = start(&up, "full");
    for method in ["POST", "PUT", "PATCH", "DELETE", "PROPFIND"] {
        let (status, body) = call(&s, method, "/api/things/1", VIC, &[]).await;
        assert_eq!(status, 403, "{method}: {body}");
        assert_eq!(body["reason"], "read_only", "{body}");
        assert_eq!(body["rule"], "viewers watch", "{body}");
    }
    // CONNECT is not a safe method either (RFC 9110 §9.2.1). (In authority
    // form, `CONNECT host:port`, the gate refuses it for its host already.)
    let (status, body) = raw_request(
        s.addr,
        &format!(
            "CONNECT /api/things/1 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {VIC}\r\nConnection: close\r\n\r\n",
            s.addr
        ),
    );
    assert_eq!(status, 403, "CONNECT: {body}");
    assert!(body.contains("read_only"), "CONNECT: {body}");
    // Reading is proxied.
    let (status, echo) = call(&s, "GET", "/api/things/1", VIC, &[]).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["method"], "GET");
    // A full-access principal's POST does reach it, body and all.
    let (status, echo) = call(&s, "POST", "/api/things/1", ANA, &[]).await;
    assert_eq!(status, 200, "{echo}");
    assert_eq!(echo["body"], "payload");
    let got = up.requests();
    assert_eq!(
        got,
        vec!["GET /api/things/1".to_string(), "POST /api/things/1".into()],
        "the upstream saw only the read and ana's POST"
    );
}

#[tokio::test]
async fn the_upstream_is_told_the_principals_groups_never_a_clients_copy() {
    let up = TestUpstream::start().await;
    let (_d, _p, s) = start(&up, "full");
    let forged = [("x-dashgate-groups", "admins"), ("x-dashgate-user", "root")];
    let (_, echo) = call(&s, "GET", "/whoami", ANA, &forged).await;
    assert_eq!(
        header(&echo, "x-dashgate-groups"),
        Some("ops,devs"),
        "{echo}"
    );
    assert_eq!(header(&echo, "x-dashgate-user"), Some("ana"));
    let (_, echo) = call(&s, "GET", "/whoami", VIC, &forged).await;
    assert_eq!(header(&echo, "x-dashgate-groups"), Some("viewers"));
    // No groups: no header at all, and the client's copy is gone.
    let (_, echo) = call(&s, "GET", "/whoami", SOLO, &forged).await;
    assert_eq!(header(&echo, "x-dashgate-groups"), None, "{echo}");
    assert_eq!(header(&echo, "x-dashgate-user"), Some("solo"));
    // The same on a WebSocket handshake.
    let auth = bearer(ANA);
    let (mut ws, _) = ws_connect_from(
        "127.0.0.1",
        &s.ws_url("/ws/echo"),
        &[("authorization", &auth), ("x-dashgate-groups", "admins")],
    )
    .await
    .expect("relayed");
    let hello: Value = serde_json::from_str(&next_text(&mut ws, T).await.unwrap()).unwrap();
    assert_eq!(header(&hello, "x-dashgate-groups"), Some("ops,devs"));
}

#[tokio::test]
async fn a_read_only_socket_receives_the_upstreams_frames_but_its_own_are_not_forwarded() {
    let up = TestUpstream::start().await;
    let (_d, _p, s) = start(&up, "full");

    // Full access: the echo upstream echoes.
    let mut ana = relay(&s, "/ws/echo", ANA).await;
    assert!(next_text(&mut ana, T).await.is_some(), "the echo's hello");
    send_text(&mut ana, "from ana").await;
    assert_eq!(next_text(&mut ana, T).await.as_deref(), Some("from ana"));

    // Read-only: the hello (the upstream's frame) arrives; text and binary
    // sent are never forwarded, so nothing is echoed.
    let mut vic = relay(&s, "/ws/echo", VIC).await;
    let hello: Value = serde_json::from_str(&next_text(&mut vic, T).await.unwrap()).unwrap();
    assert_eq!(header(&hello, "x-dashgate-user"), Some("vic"));
    send_text(&mut vic, "from vic").await;
    vic.send(Message::binary(vec![7u8; 5])).await.unwrap();
    // A ping from the viewer is still answered (by dashgate's side).
    vic.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(T, async {
        loop {
            match vic.next().await {
                Some(Ok(Message::Pong(p))) => return p,
                Some(Ok(Message::Ping(_))) => continue,
                other => panic!("expected a pong, got {other:?}"),
            }
        }
    })
    .await
    .expect("a pong in time");
    assert_eq!(&pong[..], b"are you there");
    // The pong came after dashgate had read the text and binary before it:
    // had they been forwarded, their echoes would be on the way.
    assert!(
        next_text(&mut vic, Duration::from_millis(300))
            .await
            .is_none(),
        "nothing was echoed to the viewer"
    );
    assert_eq!(up.frames(), vec!["from ana".to_string()]);
    assert!(
        s.wait_output(
            "read-only socket: the client's messages are not forwarded",
            T
        ),
        "{}",
        s.output()
    );
    // The viewer's close is still a clean close.
    vic.close(None).await.unwrap();
    let closed =
        tokio::time::timeout(T, async { while let Some(Ok(_)) = vic.next().await {} }).await;
    assert!(closed.is_ok(), "the close was answered");

    // An upstream that sends on its own reaches the viewer, live.
    let mut tick = relay(&s, "/ws/tick", VIC).await;
    assert!(next_text(&mut tick, T).await.is_some(), "the hello");
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let t = next_text(&mut tick, T).await.expect("a tick in time");
        seen.push(t);
    }
    assert!(seen.iter().all(|t| t.starts_with("tick ")), "{seen:?}");
    send_text(&mut tick, "typed at the ticker").await;
    // Still ticking after the viewer typed, and the ticker never got it.
    for _ in 0..3 {
        let t = next_text(&mut tick, T).await.expect("ticks go on");
        assert!(t.starts_with("tick "), "{t}");
    }
    assert!(
        !up.frames().iter().any(|f| f.contains("typed")),
        "{:?}",
        up.frames()
    );
    // A full-access principal on the ticker is forwarded.
    let mut ana_tick = relay(&s, "/ws/tick", ANA).await;
    send_text(&mut ana_tick, "ana at the ticker").await;
    let end = Instant::now() + T;
    while !up.frames().iter().any(|f| f == "ana at the ticker") {
        assert!(Instant::now() < end, "ana's message reached the ticker");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_reload_that_makes_a_relayed_socket_read_only_closes_it_with_4403() {
    let up = TestUpstream::start().await;
    let (_d, path, s) = start(&up, "full");
    let mut ana = relay(&s, "/ws/echo", ANA).await;
    assert!(next_text(&mut ana, T).await.is_some());
    let mut vic = relay(&s, "/ws/tick", VIC).await;
    assert!(next_text(&mut vic, T).await.is_some());
    std::fs::write(&path, team("read")).unwrap();
    s.signal("HUP");
    assert_eq!(
        close_of(&mut ana, T).await,
        Some((4403, "read-only now (rule: team works)".into()))
    );
    // The viewer was read-only already: it stays open, still ticking.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..3 {
        let t = next_text(&mut vic, T).await;
        assert!(
            t.as_deref().is_some_and(|t| t.starts_with("tick ")),
            "{t:?}"
        );
    }
    // ana reconnects, read-only now: her messages are no longer echoed.
    let mut again = relay(&s, "/ws/echo", ANA).await;
    assert!(next_text(&mut again, T).await.is_some());
    send_text(&mut again, "after the reload").await;
    assert!(next_text(&mut again, Duration::from_millis(300))
        .await
        .is_none());
    assert!(!up.frames().iter().any(|f| f == "after the reload"));
}
