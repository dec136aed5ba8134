//! The event hub over real WebSockets: fan-out, lagged subscribers, channel
//! rules and frame limits.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);

async fn subscribed(s: &Server, channel: &str) -> Ws {
    let mut ws = ws_connect(&s.ws_url(&format!("/api/events?channel={channel}")), &[])
        .await
        .unwrap();
    // The hub is joined before the upgrade completes; a ping round trip
    // makes sure the server task is running.
    ws.send(Message::Ping(vec![1].into())).await.unwrap();
    ws
}

#[tokio::test]
async fn three_subscribers_get_the_frame_verbatim() {
    let s = launch().arg("--insecure").start();
    let mut subs = vec![];
    for _ in 0..3 {
        subs.push(subscribed(&s, "room.1").await);
    }
    let mut publisher = ws_connect(&s.ws_url("/api/pub?channel=room.1"), &[])
        .await
        .unwrap();
    let frame = r#"{ "type" : "note", "n": [1, 2.50, "x"] }"#;
    send_text(&mut publisher, frame).await;
    for ws in &mut subs {
        assert_eq!(next_text(ws, T).await.as_deref(), Some(frame));
    }
}

#[tokio::test]
async fn a_subscriber_that_never_reads_stalls_nobody_and_gets_lagged() {
    let s = launch().arg("--insecure").start();
    let mut slow = subscribed(&s, "busy").await;
    let fast1 = subscribed(&s, "busy").await;
    let fast2 = subscribed(&s, "busy").await;
    let mut publisher = ws_connect(&s.ws_url("/api/pub?channel=busy"), &[])
        .await
        .unwrap();
    let pad = "x".repeat(32 * 1024);
    // Each fast subscriber reads on its own task, as a browser tab would.
    let read_to_end = |mut ws: Ws| {
        tokio::spawn(async move {
            while let Some(t) = next_text(&mut ws, T).await {
                if t.contains("\"end\"") {
                    return true;
                }
            }
            false
        })
    };
    let readers = (read_to_end(fast1), read_to_end(fast2));
    // 1,500 frames of 32 KiB (48 MiB): far past what socket buffers and the
    // slow subscriber's queue can hold.
    for i in 0..1500 {
        send_text(&mut publisher, &format!(r#"{{"i":{i},"pad":"{pad}"}}"#)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_text(&mut publisher, r#"{"end":true}"#).await;
    let both = async { (readers.0.await.unwrap(), readers.1.await.unwrap()) };
    let seen = tokio::time::timeout(Duration::from_secs(30), both)
        .await
        .expect("fast subscribers stalled");
    assert_eq!(seen, (true, true), "fast subscribers missed the end marker");
    // Now the slow one reads: somewhere in its stream is a lagged notice.
    let lagged = wait_text(&mut slow, "\"lagged\"", Duration::from_secs(20)).await;
    let v: serde_json::Value = serde_json::from_str(&lagged.expect("no lagged notice")).unwrap();
    assert!(v["dropped"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn bad_channel_id_is_400() {
    let s = launch().arg("--insecure").start();
    for url in [
        "/api/events?channel=a/b",
        "/api/events?channel=",
        "/api/pub?channel=a%20b",
    ] {
        match ws_connect(&s.ws_url(url), &[]).await {
            Ok(_) => panic!("{url} accepted"),
            Err((st, body)) => {
                assert_eq!(st, 400, "{url}");
                assert!(body.contains("bad_channel"), "{body}");
            }
        }
    }
}

#[tokio::test]
async fn publishing_to_server_is_refused() {
    let s = launch().arg("--insecure").start();
    match ws_connect(&s.ws_url("/api/pub?channel=server"), &[]).await {
        Ok(_) => panic!("publishing to server accepted"),
        Err((st, body)) => {
            assert_eq!(st, 403);
            assert!(body.contains("server_channel_read_only"), "{body}");
        }
    }
}

#[tokio::test]
async fn non_json_frame_closes_1007_and_big_frame_1009() {
    let s = launch().arg("--insecure").start();
    let mut p = ws_connect(&s.ws_url("/api/pub?channel=c"), &[])
        .await
        .unwrap();
    send_text(&mut p, "not json").await;
    assert_eq!(close_of(&mut p, T).await.map(|c| c.0), Some(1007));
    let mut p = ws_connect(&s.ws_url("/api/pub?channel=c"), &[])
        .await
        .unwrap();
    send_text(&mut p, "[1,2]").await;
    assert_eq!(close_of(&mut p, T).await.map(|c| c.0), Some(1007));
    let mut p = ws_connect(&s.ws_url("/api/pub?channel=c"), &[])
        .await
        .unwrap();
    let big = format!(r#"{{"pad":"{}"}}"#, "y".repeat(70 * 1024));
    send_text(&mut p, &big).await;
    assert_eq!(close_of(&mut p, T).await.map(|c| c.0), Some(1009));
}

#[tokio::test]
async fn server_channel_carries_connect_and_denial_events() {
    let s = launch().start();
    let token = s.token.clone().unwrap();
    let mut ws = ws_connect(&s.ws_url(&format!("/api/events?token={token}")), &[])
        .await
        .unwrap();
    let ev = wait_text(&mut ws, "client.connected", T).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&ev).unwrap();
    assert!(
        v["ts"].is_string() && v["data"]["route"] == "/api/events",
        "{v}"
    );
    http().get(s.url("/api/status")).send().await.unwrap();
    let ev = wait_text(&mut ws, "access.denied", T).await.unwrap();
    assert!(ev.contains("no_credential"), "{ev}");
    assert!(!ev.contains(&token));
    let other = ws_connect(
        &s.ws_url(&format!("/api/events?channel=x&token={token}")),
        &[],
    )
    .await
    .unwrap();
    drop(other);
    assert!(wait_text(&mut ws, "client.disconnected", T).await.is_some());
}

#[tokio::test]
async fn plain_get_on_websocket_route_is_426() {
    let s = launch().arg("--insecure").start();
    let r = http().get(s.url("/api/events")).send().await.unwrap();
    assert_eq!(r.status(), 426);
}

/// A subscriber only listens: what it sends is bounded like a publisher's
/// frames, not by the WebSocket library's 64 MiB default.
#[tokio::test]
async fn a_subscriber_sending_a_huge_frame_is_closed_1009() {
    let s = launch().arg("--insecure").start();
    let mut ws = subscribed(&s, "quiet").await;
    let _ = ws.send(Message::binary(vec![0u8; 1024 * 1024])).await;
    assert_eq!(close_of(&mut ws, T).await.map(|c| c.0), Some(1009));
}
