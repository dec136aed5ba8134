//! Every request on a kept-alive connection is decided from its own facts
//! (SPEC §1): the same request again, or one that differs only in a header
//! no rule reads (a new `X-Request-Id`), is refused after a reload revokes
//! its rule, after its session signed out and once the failure limiter
//! holds its address back; and each one is counted as a decision.

mod common;

use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(5);

const OPEN: &str = "version: 1\nrules:\n  - name: open to all\n    action: allow\n";
const CLOSED: &str = "version: 1\nrules:\n  - name: status closed\n    paths: [/api/status]\n    action: deny\n  - name: the rest\n    action: allow\n";

/// A policy with a named token and a low failure limit.
fn with_token(limit: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    let hash = hex::encode(Sha256::digest(b"ci-token-123"));
    policy_file(&format!(
        "version: 1\nextends: secure\ncredentials:\n  tokens:\n    - {{ name: ci, sha256: \"{hash}\" }}\nlimits:\n  auth_failures_per_minute: {limit}\n"
    ))
}

/// Poll `path` from fresh connections until it answers `want`.
async fn until(s: &Server, path: &str, want: u16) {
    let deadline = Instant::now() + T;
    loop {
        let st = http().get(s.url(path)).send().await.unwrap().status();
        if st.as_u16() == want {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never answered {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The headers of request `n` on a kept connection: the same each time,
/// or each with its own `X-Request-Id` (a new head whose facts are the same).
fn nth(numbered: bool, n: usize, more: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = more
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if numbered {
        h.push(("x-request-id".into(), n.to_string()));
    }
    h
}

async fn get(kept: &mut Kept, path: &str, headers: &[(String, String)]) -> (u16, String) {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (&**k, &**v)).collect();
    kept.get(path, &h).await
}

#[tokio::test]
async fn a_reload_decides_the_same_request_anew() {
    for numbered in [false, true] {
        let (_d, path) = policy_file(OPEN);
        let s = launch().policy(&path).start();
        let mut kept = Kept::open("127.0.0.1", s.addr).await;
        for n in 0..3 {
            let (st, _) = get(&mut kept, "/api/status", &nth(numbered, n, &[])).await;
            assert_eq!(st, 200);
        }
        std::fs::write(&path, CLOSED).unwrap();
        s.signal("HUP");
        until(&s, "/api/status", 403).await;
        let (st, body) = get(&mut kept, "/api/status", &nth(numbered, 3, &[])).await;
        assert_eq!(st, 403, "numbered {numbered}: {body}");
        assert!(body.contains("status closed"), "{body}");
    }
}

#[tokio::test]
async fn a_signed_out_session_is_not_let_in_again() {
    for numbered in [false, true] {
        let s = launch().start();
        let token = s.token.clone().unwrap();
        let r = http()
            .post(s.url("/api/login"))
            .json(&serde_json::json!({ "token": token }))
            .send()
            .await
            .unwrap();
        let cookie = session_of(&r);
        let with = [("cookie", cookie.as_str())];
        let mut kept = Kept::open("127.0.0.1", s.addr).await;
        for n in 0..3 {
            let (st, _) = get(&mut kept, "/api/whoami", &nth(numbered, n, &with)).await;
            assert_eq!(st, 200);
        }
        let out = http()
            .post(s.url("/api/logout"))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), 200);
        let (st, body) = get(&mut kept, "/api/whoami", &nth(numbered, 3, &with)).await;
        assert_eq!(st, 401, "numbered {numbered}: {body}");
    }
}

#[tokio::test]
async fn a_held_back_address_is_held_back_on_a_kept_connection() {
    for numbered in [false, true] {
        let (_d, path) = with_token(2);
        let s = launch().policy(&path).start();
        let good = [("authorization", "Bearer ci-token-123")];
        let mut kept = Kept::open("127.0.0.2", s.addr).await;
        for n in 0..3 {
            let (st, _) = get(&mut kept, "/api/status", &nth(numbered, n, &good)).await;
            assert_eq!(st, 200);
        }
        for _ in 0..2 {
            let r = http_from("127.0.0.2")
                .get(s.url("/api/status"))
                .bearer_auth("nope")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
        let (st, body) = get(&mut kept, "/api/status", &nth(numbered, 3, &good)).await;
        assert_eq!(st, 429, "numbered {numbered}: {body}");
        // Another address is not held back, kept connection or not.
        let mut other = Kept::open("127.0.0.3", s.addr).await;
        for n in 0..2 {
            let (st, _) = get(&mut other, "/api/status", &nth(numbered, n, &good)).await;
            assert_eq!(st, 200);
        }
    }
}

/// A bad token let in anonymously by an `allow` rule still counts towards
/// the limit each time.
#[tokio::test]
async fn bad_tokens_are_decided_and_counted_every_time() {
    let (_d, path) = with_token(3);
    let s = launch().policy(&path).start();
    let bad = [("authorization", "Bearer nope")];
    let mut kept = Kept::open("127.0.0.2", s.addr).await;
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(kept.get("/healthz", &bad).await.0);
    }
    assert_eq!(answers, [200, 200, 200, 429]);
}

/// A counter of `/metrics` (0 when absent).
async fn metric(s: &Server, prefix: &str) -> u64 {
    let text = http()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .unwrap_or(0)
}

const ALLOWED: &str =
    "dashgate_decisions_total{rule=\"open to all\",action=\"allow\",outcome=\"allowed\"}";

#[tokio::test]
async fn every_request_on_a_kept_connection_is_a_decision() {
    let (_d, path) = policy_file(OPEN);
    let s = launch().policy(&path).start();
    let before = metric(&s, ALLOWED).await;
    let mut kept = Kept::open("127.0.0.1", s.addr).await;
    for _ in 0..25 {
        assert_eq!(kept.get("/api/status", &[]).await.0, 200);
    }
    // The 25, and the /metrics request that reads the count (each
    // request is counted before it is answered).
    assert_eq!(metric(&s, ALLOWED).await - before, 26);
}
