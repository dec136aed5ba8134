//! No leak (SPEC §5): connect/disconnect cycles of events and chat sockets
//! leave the server's open file descriptors at their baseline, and killed
//! chat children leave no zombie. `make bench` runs the same with 1,000
//! cycles and also watches RSS; this is the CI-sized version.
#![cfg(target_os = "linux")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const CYCLES: usize = 200;
const CHAT_CYCLES: usize = 40;
const WARM_UP: usize = 10;
const T: Duration = Duration::from_secs(10);

fn fds(s: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", s.child.id()))
        .expect("the server's /proc entry")
        .count()
}

/// Zombie children of the server.
fn zombies(s: &Server) -> Vec<String> {
    let ppid = s.child.id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|st| {
            let rest = st.rsplit_once(')').map_or("", |(_, r)| r);
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.first() == Some(&"Z") && f.get(1) == Some(&ppid.as_str())
        })
        .collect()
}

/// Wait (bounded) for the fd count to come back to `baseline`; the last count.
async fn settle(s: &Server, baseline: usize) -> usize {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let n = fds(s);
        if n == baseline || Instant::now() > end {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Subscribe, prove the server task runs (ping/pong), close.
async fn events_cycle(s: &Server) {
    let mut ws = ws_connect(&s.ws_url("/api/events?channel=leak"), &[])
        .await
        .expect("upgrade");
    ws.send(Message::Ping(vec![1].into())).await.unwrap();
    let pong = tokio::time::timeout(T, async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_pong() {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(pong, Ok(true), "no pong");
    ws.close(None).await.unwrap();
    let _ = tokio::time::timeout(T, async { while let Some(Ok(_)) = ws.next().await {} }).await;
}

/// Start a PTY session over /api/ws, kill it, read the socket to its end.
async fn chat_cycle(s: &Server) {
    let mut ws = ws_connect(&s.ws_url("/api/ws?cols=80&rows=24"), &[])
        .await
        .expect("upgrade");
    let hello = wait_text(&mut ws, "\"session\"", T)
        .await
        .expect("session frame");
    let v: serde_json::Value = serde_json::from_str(&hello).unwrap();
    let id = v["id"].as_str().expect("session id");
    let r = http()
        .delete(s.url(&format!("/api/sessions/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    assert!(
        wait_text(&mut ws, "\"exit\"", T).await.is_some(),
        "no exit frame"
    );
    let _ = tokio::time::timeout(T, async { while let Some(Ok(_)) = ws.next().await {} }).await;
}

#[tokio::test]
async fn events_sockets_leave_fds_at_baseline() {
    let s = launch().arg("--insecure").start();
    for _ in 0..WARM_UP {
        events_cycle(&s).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = fds(&s);
    for _ in 0..CYCLES {
        events_cycle(&s).await;
    }
    let after = settle(&s, baseline).await;
    assert_eq!(after, baseline, "fds after {CYCLES} events cycles");
}

#[tokio::test]
async fn chat_sockets_leave_fds_at_baseline_and_no_zombie() {
    let s = launch()
        .args(["--insecure", "--chat-command", "/bin/sh"])
        .start();
    for _ in 0..WARM_UP {
        chat_cycle(&s).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = fds(&s);
    for _ in 0..CHAT_CYCLES {
        chat_cycle(&s).await;
    }
    let after = settle(&s, baseline).await;
    assert_eq!(after, baseline, "fds after {CHAT_CYCLES} chat cycles");
    assert_eq!(zombies(&s), Vec::<String>::new(), "zombie children");
}
