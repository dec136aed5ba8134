//! Upstream mode's WebSocket relay (SPEC §6): the handshake the upstream
//! sees, refusals relayed as they are, frames both ways, close frames, and
//! a reload that no longer admits the socket closing it with 4403.

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use common::*;
use upstream::{header, TestUpstream};

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn the_relay_rewrites_origin_and_passes_subprotocol_and_frames() {
    let up = TestUpstream::start().await;
    let s = launch()
        .args(["--upstream", &up.url(), "--insecure"])
        .start();
    let origin = format!("http://{}", s.addr);
    let (mut ws, resp) = ws_connect_from(
        "127.0.0.1",
        &s.ws_url("/ws/echo?token=hermes&channel=c"),
        &[
            ("origin", &origin),
            ("sec-websocket-protocol", "first, chosen"),
            ("sec-websocket-extensions", "permessage-deflate"),
            ("x-dashgate-user", "mallory"),
        ],
    )
    .await
    .expect("relayed handshake");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chosen");
    let hello: serde_json::Value =
        serde_json::from_str(&next_text(&mut ws, T).await.unwrap()).unwrap();
    assert_eq!(hello["path"], "/ws/echo");
    assert_eq!(hello["query"], "token=hermes&channel=c");
    let upstream_authority = up.addr.to_string();
    assert_eq!(header(&hello, "host"), Some(upstream_authority.as_str()));
    assert_eq!(header(&hello, "origin"), Some(up.url().as_str()));
    assert_eq!(header(&hello, "sec-websocket-extensions"), None);
    assert_eq!(header(&hello, "x-dashgate-user"), None);
    assert_eq!(header(&hello, "x-forwarded-for"), Some("127.0.0.1"));
    send_text(&mut ws, "hello").await;
    assert_eq!(next_text(&mut ws, T).await.as_deref(), Some("hello"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let bin = next_binary(&mut ws, T).await.expect("no binary echo");
    assert_eq!(&bin[..], &[1, 2, 3]);
    // The upstream's close frame reaches the client as it sent it.
    send_text(&mut ws, "close-me").await;
    assert_eq!(
        close_of(&mut ws, T).await,
        Some((4001, "upstream bye".into()))
    );
}

#[tokio::test]
async fn a_refused_handshake_reaches_the_client_as_it_was() {
    let up = TestUpstream::start().await;
    let s = launch()
        .args(["--upstream", &up.url(), "--insecure"])
        .start();
    let got = ws_connect_from("127.0.0.1", &s.ws_url("/ws/refuse"), &[]).await;
    match got {
        Err((status, body)) => {
            assert_eq!(status, 403);
            assert_eq!(body, "refused by upstream");
        }
        Ok(_) => panic!("a refused handshake was answered 101"),
    }
    // The browser's Origin is checked by the gate before anything is sent.
    let got = ws_connect_from(
        "127.0.0.1",
        &s.ws_url("/ws/echo"),
        &[("origin", "http://evil.example")],
    )
    .await;
    match got {
        Err((status, body)) => {
            assert_eq!(status, 403);
            assert!(body.contains("origin_not_allowed"), "{body}");
        }
        Ok(_) => panic!("a cross-site upgrade was relayed"),
    }
    // Upstream down: 502 at the handshake, not a 101 and a close.
    up.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let got = ws_connect_from("127.0.0.1", &s.ws_url("/ws/echo"), &[]).await;
    match got {
        Err((status, body)) => {
            assert_eq!(status, 502);
            assert!(body.contains("upstream_unavailable"), "{body}");
        }
        Ok(_) => panic!("answered 101 with the upstream down"),
    }
}

#[tokio::test]
async fn secure_preset_refuses_an_anonymous_upgrade_before_the_upstream() {
    let up = TestUpstream::start().await;
    let s = launch().args(["--upstream", &up.url()]).start();
    // The upstream's own `?token=` is no dashgate credential: 401, sign in.
    let got = ws_connect_from("127.0.0.1", &s.ws_url("/ws/echo?token=hermes"), &[]).await;
    match got {
        Err((status, body)) => {
            assert_eq!(status, 401);
            assert!(body.contains("no_credential"), "{body}");
        }
        Ok(_) => panic!("an anonymous upgrade was relayed"),
    }
    // With dashgate's token as a Bearer it is relayed, the Bearer stripped.
    let token = s.token.clone().unwrap();
    let auth = format!("Bearer {token}");
    let (mut ws, _) = ws_connect_from(
        "127.0.0.1",
        &s.ws_url("/ws/echo?token=hermes"),
        &[("authorization", &auth)],
    )
    .await
    .expect("relayed");
    let hello: serde_json::Value =
        serde_json::from_str(&next_text(&mut ws, T).await.unwrap()).unwrap();
    assert_eq!(header(&hello, "authorization"), None);
    assert_eq!(header(&hello, "x-dashgate-user"), Some("startup"));
    assert_eq!(hello["query"], "token=hermes");
}

#[tokio::test]
async fn a_reload_that_drops_the_rule_closes_the_relayed_socket_with_4403() {
    let up = TestUpstream::start().await;
    let (_dir, policy) = policy_file(
        "version: 1\nrules:\n  - name: loopback may\n    from: [loopback]\n    action: allow\n",
    );
    let s = launch()
        .args(["--upstream", &up.url()])
        .policy(&policy)
        .start();
    let (mut ws, _) = ws_connect_from("127.0.0.1", &s.ws_url("/ws/echo"), &[])
        .await
        .expect("relayed");
    assert!(next_text(&mut ws, T).await.is_some());
    std::fs::write(
        &policy,
        "version: 1\nrules:\n  - name: nobody now\n    action: deny\n",
    )
    .unwrap();
    s.signal("HUP");
    assert_eq!(
        close_of(&mut ws, Duration::from_secs(10)).await,
        Some((4403, "nobody now".into()))
    );
}

/// Both directions at once: the client keeps pushing while the upstream's
/// echoes come back. A relay that waited on one side's write while not
/// reading the other deadlocked here once the socket buffers filled (the
/// upstream blocked writing its echoes, dashgate blocked writing to it).
#[tokio::test]
async fn the_relay_carries_both_directions_at_once_without_deadlock() {
    const SIZE: usize = 512 * 1024;
    const COUNT: usize = 128; // 64 MiB each way: more than the socket buffers
    let up = TestUpstream::start().await;
    let s = launch()
        .args(["--upstream", &up.url(), "--insecure"])
        .start();
    let (mut ws, _) = ws_connect_from("127.0.0.1", &s.ws_url("/ws/echo"), &[])
        .await
        .expect("relayed handshake");
    next_text(&mut ws, T).await.expect("the upstream's hello");
    let (mut tx, mut rx) = ws.split();
    let writer = async {
        let payload = bytes::Bytes::from(vec![0x5a; SIZE]);
        for _ in 0..COUNT {
            tx.send(Message::Binary(payload.clone())).await.unwrap();
        }
    };
    let reader = async {
        let mut got = 0;
        while got < SIZE * COUNT {
            match rx.next().await {
                Some(Ok(Message::Binary(b))) => got += b.len(),
                Some(Ok(_)) => {}
                other => panic!("relay ended after {got} bytes: {other:?}"),
            }
        }
        got
    };
    let (_, got) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(writer, reader)
    })
    .await
    .expect("the relay stalled: both directions at once deadlocked");
    assert_eq!(got, SIZE * COUNT);
}
