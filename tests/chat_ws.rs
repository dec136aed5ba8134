//! The chat terminal end to end: the real `dashgate` binary, a real PTY
//! running `/bin/sh`, real WebSocket and HTTP clients (SPEC §3.1).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);

fn sh_server() -> Server {
    launch()
        .args(["--insecure", "--chat-command", "/bin/sh"])
        .start()
}

/// Open `/api/ws?query`; returns the socket and its `session` frame.
async fn open(s: &Server, query: &str, headers: &[(&str, &str)]) -> (Ws, Value) {
    let mut ws = ws_connect(&s.ws_url(&format!("/api/ws?{query}")), headers)
        .await
        .unwrap_or_else(|e| panic!("upgrade refused: {e:?}"));
    let hello = next_text(&mut ws, T).await.expect("a session frame");
    let hello: Value = serde_json::from_str(&hello).unwrap();
    assert_eq!(hello["type"], "session", "{hello}");
    (ws, hello)
}

async fn send_keys(ws: &mut Ws, keys: &str) {
    ws.send(Message::binary(keys.as_bytes().to_vec()))
        .await
        .unwrap();
}

/// Binary output until it contains `needle`; panics on anything else.
async fn output_until(ws: &mut Ws, needle: &str) -> String {
    let mut seen = String::new();
    let end = tokio::time::Instant::now() + T;
    while !seen.contains(needle) {
        match tokio::time::timeout_at(end, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            other => panic!("waiting for {needle:?}: {other:?}; output so far: {seen:?}"),
        }
    }
    seen
}

/// Skip output; the exit frame and the close frame that must follow it.
async fn exit_and_close(ws: &mut Ws) -> (Value, (u16, String)) {
    let end = tokio::time::Instant::now() + T;
    let exit = loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Ok(Some(Ok(Message::Binary(_) | Message::Ping(_)))) => {}
            Ok(Some(Ok(Message::Text(t)))) => break serde_json::from_str::<Value>(&t).unwrap(),
            other => panic!("expected an exit frame, got {other:?}"),
        }
    };
    let close = close_of(ws, T)
        .await
        .expect("a close frame after the exit frame");
    (exit, close)
}

async fn info(s: &Server, id: &str) -> (u16, Value) {
    let r = http()
        .get(s.url(&format!("/api/sessions/{id}")))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn proc_state(pid: u64) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The upgrade as the reporter's curl sends it, over a raw socket: the
/// status line of the answer.
fn curl_upgrade(addr: SocketAddr, path: &str, extra: &str) -> u16 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: SGVsbG8sIHdvcmxkIQ==\r\n{extra}\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
        head.push(b[0]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_reported_upgrade_is_101_insecure_on_0_0_0_0_and_gated_when_secure() {
    let open = launch()
        .host("0.0.0.0")
        .args(["--insecure", "--chat-command", "/bin/sh"])
        .start();
    let addr = SocketAddr::from(([127, 0, 0, 1], open.addr.port()));
    assert_eq!(curl_upgrade(addr, "/api/ws", ""), 101);
    assert_eq!(
        ws_status("127.0.0.1", &open.ws_url("/api/ws"), UPGRADE_HEADERS).await,
        101
    );

    let secure = launch().args(["--chat-command", "/bin/sh"]).start();
    let token = secure
        .token
        .clone()
        .expect("the secure preset prints a token");
    assert_eq!(curl_upgrade(secure.addr, "/api/ws", ""), 401);
    let bearer = format!("Authorization: Bearer {token}\r\n");
    assert_eq!(curl_upgrade(secure.addr, "/api/ws", &bearer), 101);
    assert_eq!(
        curl_upgrade(secure.addr, "/api/ws", "Authorization: Bearer nope\r\n"),
        401
    );
    let r = http()
        .get(secure.url("/api/sessions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the REST side is gated alike");
    // A plain GET on the WebSocket route is told to upgrade.
    let r = http().get(open.url("/api/ws")).send().await.unwrap();
    assert_eq!(r.status(), 426);
}

#[tokio::test]
async fn typed_command_is_echoed_and_run() {
    let s = sh_server();
    let (mut ws, hello) = open(&s, "cols=80&rows=24", &[]).await;
    assert_eq!(hello["command"], json!(["/bin/sh"]));
    assert_eq!(hello["id"].as_str().unwrap().len(), 16);
    send_keys(&mut ws, "echo hi-$((6*7))\r").await;
    output_until(&mut ws, "hi-42").await;
    // The same through a control message.
    send_text(&mut ws, r#"{"type":"input","data":"echo via-$((2*5))\r"}"#).await;
    output_until(&mut ws, "via-10").await;
}

#[tokio::test]
async fn resize_reaches_the_program() {
    let s = sh_server();
    let (mut ws, hello) = open(&s, "cols=80&rows=24", &[]).await;
    send_text(&mut ws, r#"{"type":"resize","cols":101,"rows":33}"#).await;
    send_keys(&mut ws, "stty size\r").await;
    output_until(&mut ws, "33 101").await;
    let (status, body) = info(&s, hello["id"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["cols"].as_u64(), body["rows"].as_u64()),
        (Some(101), Some(33))
    );
}

#[tokio::test]
async fn reattach_replays_the_scrollback_and_two_viewers_share_the_terminal() {
    let s = sh_server();
    let (mut first, hello) = open(&s, "", &[]).await;
    let id = hello["id"].as_str().unwrap().to_string();
    send_keys(&mut first, "echo first-$((1+1))\r").await;
    output_until(&mut first, "first-2").await;
    first.close(None).await.unwrap();
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, body) = info(&s, &id).await;
    assert_eq!(
        (body["status"].as_str(), body["viewers"].as_u64()),
        (Some("running"), Some(0))
    );

    let (mut a, hello_a) = open(&s, &format!("session={id}"), &[]).await;
    assert_eq!(hello_a["id"], id.as_str());
    output_until(&mut a, "first-2").await; // the scrollback
    let (mut b, _) = open(&s, &format!("session={id}"), &[]).await;
    output_until(&mut b, "first-2").await;
    send_keys(&mut b, "echo shared-$((3*3))\r").await;
    output_until(&mut a, "shared-9").await;
    output_until(&mut b, "shared-9").await;
    assert_eq!(info(&s, &id).await.1["viewers"], 2);

    let unknown = ws_connect(&s.ws_url("/api/ws?session=ffffffffffffffff"), &[]).await;
    let (status, body) = unknown.expect_err("unknown session refused");
    assert_eq!(status, 404);
    assert!(body.contains("session_not_found"), "{body}");
}

#[tokio::test]
async fn a_child_killed_with_sigkill_sends_exit_publishes_session_exited_and_is_reaped() {
    let s = sh_server();
    let mut events = ws_connect(&s.ws_url("/api/events?channel=server"), &[])
        .await
        .unwrap();
    events.send(Message::Ping(vec![1].into())).await.unwrap();
    let (mut ws, hello) = open(&s, "", &[]).await;
    let id = hello["id"].as_str().unwrap().to_string();
    let pid = info(&s, &id).await.1["pid"].as_u64().unwrap();
    assert!(proc_state(pid).is_some_and(|c| c != 'Z'));

    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (exit, close) = exit_and_close(&mut ws).await;
    assert_eq!(exit, json!({"type": "exit", "code": 137, "signal": 9}));
    assert_eq!(close.0, 1000);

    let ev = wait_text(&mut events, "session.exited", T)
        .await
        .expect("session.exited");
    let ev: Value = serde_json::from_str(&ev).unwrap();
    assert_eq!(ev["data"]["id"], id.as_str());
    assert_eq!(ev["data"]["signal"], 9);
    assert_eq!(proc_state(pid), None, "no zombie left in /proc");
    let (_, body) = info(&s, &id).await;
    assert_eq!(
        (body["status"].as_str(), body["exit_signal"].as_i64()),
        (Some("exited"), Some(9))
    );
}

#[tokio::test]
async fn a_program_that_exits_sends_its_code() {
    let s = sh_server();
    let (mut ws, _) = open(&s, "", &[]).await;
    send_keys(&mut ws, "exit 3\r").await;
    let (exit, close) = exit_and_close(&mut ws).await;
    assert_eq!(exit["code"], 3);
    assert_eq!(close.0, 1000);
}

#[tokio::test]
async fn max_sessions_refuses_one_more_with_503() {
    let s = launch()
        .args([
            "--insecure",
            "--chat-command",
            "/bin/sh",
            "--max-sessions",
            "1",
        ])
        .start();
    let (_ws, _) = open(&s, "", &[]).await;
    let r = http()
        .post(s.url("/api/sessions"))
        .json(&json!({"cols": 80, "rows": 24}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["reason"], "too_many_sessions");
    let (status, body) = ws_connect(&s.ws_url("/api/ws"), &[]).await.err().unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("too_many_sessions"), "{body}");
    let status: Value = http()
        .get(s.url("/api/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["sessions"], json!({"running": 1, "max": 1}));
}

#[tokio::test]
async fn sessions_are_created_listed_and_deleted_over_rest() {
    let s = sh_server();
    let r = http()
        .post(s.url("/api/sessions"))
        .json(&json!({"cols": 100, "rows": 30}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let created: Value = r.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(
        (created["cols"].as_u64(), created["rows"].as_u64()),
        (Some(100), Some(30))
    );
    assert_eq!(created["status"], "running");
    assert_eq!(created["command"], json!(["/bin/sh"]));
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let list: Value = http()
        .get(s.url("/api/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|v| v["id"] == id.as_str()),
        "{list}"
    );

    let (mut ws, _) = open(&s, &format!("session={id}"), &[]).await;
    let r = http()
        .delete(s.url(&format!("/api/sessions/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (exit, close) = exit_and_close(&mut ws).await;
    assert_eq!(exit["signal"], 1, "SIGHUP ends a shell: {exit}");
    assert_eq!(close.0, 1000);
    let end = Instant::now() + T;
    while info(&s, &id).await.0 != 404 {
        assert!(
            Instant::now() < end,
            "a deleted session is forgotten once it exited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = http()
        .delete(s.url(&format!("/api/sessions/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["reason"], "session_not_found");

    // Without a body a default 80x24 session is made; a bad body is a 400.
    let r = http().post(s.url("/api/sessions")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let r = http()
        .post(s.url("/api/sessions"))
        .body("{\"cols\": 0, \"rows\": 5}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = http()
        .post(s.url("/api/sessions"))
        .body("{\"colz\": 5}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn protocol_violations_close_with_1007_and_1009() {
    let s = sh_server();
    let (mut ws, _) = open(&s, "", &[]).await;
    send_text(&mut ws, r#"{"type":"resize","cols":"wide"}"#).await;
    assert_eq!(close_of(&mut ws, T).await.map(|c| c.0), Some(1007));

    let (mut ws, _) = open(&s, "", &[]).await;
    send_text(&mut ws, "not json at all").await;
    assert_eq!(close_of(&mut ws, T).await.map(|c| c.0), Some(1007));

    let (mut ws, _) = open(&s, "", &[]).await;
    send_text(&mut ws, r#"{"type":"resize","cols":0,"rows":10}"#).await;
    assert_eq!(close_of(&mut ws, T).await.map(|c| c.0), Some(1007));

    let (mut ws, _) = open(&s, "", &[]).await;
    ws.send(Message::binary(vec![b'x'; 64 * 1024 + 1]))
        .await
        .unwrap();
    assert_eq!(close_of(&mut ws, T).await.map(|c| c.0), Some(1009));

    // Exactly 64 KiB is fine (line-kill characters, then a command).
    let (mut ws, _) = open(&s, "", &[]).await;
    let cmd = b"echo ok-$((7*6))\r";
    let mut keys = vec![0x15; 64 * 1024 - cmd.len()];
    keys.extend_from_slice(cmd);
    ws.send(Message::binary(keys)).await.unwrap();
    output_until(&mut ws, "ok-42").await;
}

#[tokio::test]
async fn a_viewer_that_stops_reading_is_closed_with_1013_and_the_others_continue() {
    let s = sh_server();
    let (mut slow, hello) = open(&s, "", &[]).await;
    let id = hello["id"].as_str().unwrap().to_string();
    let (mut fast, _) = open(&s, &format!("session={id}"), &[]).await;
    send_keys(
        &mut fast,
        "head -c 50000000 /dev/zero; echo flood-$((50+50))\r",
    )
    .await;
    // The fast viewer reads everything; the slow one reads nothing meanwhile.
    let mut total = 0usize;
    let mut tail = String::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(60);
    while !tail.contains("flood-100") {
        match tokio::time::timeout_at(end, fast.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => {
                total += b.len();
                tail.push_str(&String::from_utf8_lossy(&b[b.len().saturating_sub(64)..]));
                tail.drain(..tail.len().saturating_sub(64));
            }
            other => panic!("fast viewer: {other:?} after {total} bytes"),
        }
    }
    assert!(
        total >= 50_000_000,
        "the fast viewer got everything: {total}"
    );
    // The slow one was dropped: after what the socket buffers held, 1013.
    assert_eq!(
        close_of(&mut slow, Duration::from_secs(30))
            .await
            .map(|c| c.0),
        Some(1013)
    );
    send_keys(&mut fast, "echo after-$((1+2))\r").await;
    output_until(&mut fast, "after-3").await;
}

#[tokio::test]
async fn a_chat_child_publishes_to_its_channel_and_its_url_works_from_nowhere_else() {
    // Secure preset on 0.0.0.0: nothing but a credential opens anything.
    // Test traffic stays on loopback: 127.0.0.2 stands for "not this host".
    let s = launch()
        .host("0.0.0.0")
        .args(["--chat-command", "/bin/sh"])
        .start();
    let token = s.token.clone().unwrap();
    let bearer = format!("Bearer {token}");
    let auth = [("authorization", bearer.as_str())];
    let (mut ws, hello) = open(&s, "", &auth).await;
    let id = hello["id"].as_str().unwrap().to_string();
    let channel = format!("session.{id}");
    let mut sub = ws_connect(&s.ws_url(&format!("/api/events?channel={channel}")), &auth)
        .await
        .unwrap();
    sub.send(Message::Ping(vec![1].into())).await.unwrap();

    let publish = env!("CARGO_BIN_EXE_dashgate-publish");
    send_keys(
        &mut ws,
        &format!("{publish} '{{\"type\":\"note\",\"n\":42}}' && echo published-ok\r"),
    )
    .await;
    output_until(&mut ws, "published-ok").await;
    assert_eq!(
        next_text(&mut sub, T).await.as_deref(),
        Some(r#"{"type":"note","n":42}"#)
    );

    // The child's URL, used by anyone but the child's own loopback socket.
    send_keys(&mut ws, "echo \"url=$DASHGATE_EVENTS_URL=\"\r").await;
    // (The echoed command line ends in `="`, the printed URL in `=`.)
    let out = output_until(&mut ws, "=\r\n").await;
    let url = out
        .split("url=")
        .filter_map(|p| p.split_once("=\r\n").map(|(u, _)| u.to_string()))
        .find(|u| u.starts_with("ws://"))
        .unwrap_or_else(|| panic!("no URL in {out:?}"));
    let port = s.addr.port();
    assert!(
        url.starts_with(&format!(
            "ws://127.0.0.1:{port}/api/pub?channel={channel}&token="
        )),
        "{url}"
    );
    let (_, body) = ws_connect_from("127.0.0.2", &url, &[])
        .await
        .expect_err("refused from 127.0.0.2");
    assert!(body.contains("bad_credential"), "{body}");
    // Through a (pretend) proxy on loopback, or for another channel, or on
    // another route, the credential is no good either.
    let (status, _) = ws_connect(&url, &[("x-forwarded-for", "203.0.113.9")])
        .await
        .err()
        .unwrap();
    assert_eq!(status, 401);
    let other = url.replace(&channel, "session.ffffffffffffffff");
    let (status, body) = ws_connect(&other, &[]).await.err().unwrap();
    assert_eq!(
        (status, body.contains("wrong_channel")),
        (403, true),
        "{body}"
    );
    let internal = url.split("&token=").nth(1).unwrap();
    let r = http()
        .get(s.url("/api/sessions"))
        .bearer_auth(internal)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "the internal credential opens /api/pub only"
    );
    // And from the child's own address it still works.
    assert!(ws_connect(&url, &[]).await.is_ok());
}

#[tokio::test]
async fn a_session_without_viewers_is_killed_after_the_idle_timeout() {
    let s = launch()
        .args([
            "--insecure",
            "--chat-command",
            "/bin/sh",
            "--idle-timeout",
            "1",
        ])
        .start();
    let idle: Value = http()
        .post(s.url("/api/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (mut ws, watched) = open(&s, "", &[]).await;
    let idle_id = idle["id"].as_str().unwrap();
    let end = Instant::now() + T;
    loop {
        let (_, body) = info(&s, idle_id).await;
        if body["status"] == "exited" {
            assert_eq!(body["exit_signal"], 1, "ended by SIGHUP: {body}");
            break;
        }
        assert!(Instant::now() < end, "the idle session still runs: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = info(&s, watched["id"].as_str().unwrap()).await;
    assert_eq!(body["status"], "running", "a watched session is not idle");
    send_keys(&mut ws, "echo alive-$((1+1))\r").await;
    output_until(&mut ws, "alive-2").await;
}

#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_ends_children_that_ignore_hup() {
    let mut s = sh_server();
    let (mut ws, hello) = open(&s, "", &[]).await;
    let pid = info(&s, hello["id"].as_str().unwrap()).await.1["pid"]
        .as_u64()
        .unwrap();
    send_keys(&mut ws, "trap '' HUP; echo armed-$((2*2))\r").await;
    output_until(&mut ws, "armed-4").await;

    let started = Instant::now();
    s.signal("TERM");
    assert_eq!(close_of(&mut ws, T).await.map(|c| c.0), Some(1001));
    let status = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(proc_state(pid), None, "the chat child was ended and reaped");
}
