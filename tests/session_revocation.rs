//! A sign-in session lives only as long as the credential that opened it
//! (SPEC §4): a reload that removes or changes that credential, turns the
//! startup token off, or shortens `session_ttl` past a session's age ends
//! the session, its cookie gets 401 and its sockets close with 4401, while
//! other sessions are untouched. Over the real binary, reloading on SIGHUP.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(5);

/// The sha256 line of a token, for a policy file.
fn sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A secure policy with these `credentials:` lines (indented two spaces).
fn policy(credentials: &[String]) -> String {
    let mut p = String::from("version: 1\nextends: secure\ncredentials:\n");
    for line in credentials {
        p.push_str("  ");
        p.push_str(line);
        p.push('\n');
    }
    p
}

fn tokens(named: &[(&str, &str)]) -> String {
    let list: Vec<String> = named
        .iter()
        .map(|(n, t)| format!("{{ name: {n}, sha256: \"{}\" }}", sha(t)))
        .collect();
    format!("tokens: [{}]", list.join(", "))
}

/// Rewrite the policy, SIGHUP, and wait for `policy.reloaded` on `feed`;
/// returns the event.
async fn reload(s: &Server, path: &Path, text: &str, feed: &mut Ws) -> serde_json::Value {
    std::fs::write(path, text).unwrap();
    s.signal("HUP");
    let ev = wait_text(feed, "policy.reloaded", T)
        .await
        .unwrap_or_else(|| panic!("no policy.reloaded; server said:\n{}", s.output()));
    serde_json::from_str(&ev).unwrap()
}

/// Sign in with `body` on POST /api/login; the `name=value` cookie pair.
async fn sign_in(s: &Server, body: serde_json::Value) -> String {
    let r = http()
        .post(s.url("/api/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "sign-in with {body}");
    session_of(&r)
}

/// The status of GET /api/whoami with this cookie.
async fn whoami(s: &Server, cookie: &str) -> u16 {
    http()
        .get(s.url("/api/whoami"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// An open `/api/events` socket signed in with this cookie.
async fn events_with(s: &Server, cookie: &str) -> Ws {
    let mut ws = ws_connect(&s.ws_url("/api/events"), &[("cookie", cookie)])
        .await
        .unwrap_or_else(|e| panic!("cookie socket refused: {e:?}"));
    assert!(wait_text(&mut ws, "client.connected", T).await.is_some());
    ws
}

/// A server event feed that no reload here ends: opened with a bearer
/// token (no session), the `feed` token every policy below keeps.
async fn feed(s: &Server) -> Ws {
    let mut ws = ws_connect(
        &s.ws_url("/api/events"),
        &[("authorization", "Bearer feed-token")],
    )
    .await
    .unwrap();
    assert!(wait_text(&mut ws, "client.connected", T).await.is_some());
    ws
}

fn start(text: &str) -> (tempfile::TempDir, PathBuf, Server) {
    let (dir, path) = policy_file(text);
    let s = launch().policy(&path).start();
    (dir, path, s)
}

#[tokio::test]
async fn a_removed_token_ends_its_sessions_and_closes_their_sockets() {
    let both = policy(&[tokens(&[
        ("feed", "feed-token"),
        ("ci", "ci-token"),
        ("ops", "ops-token"),
    ])]);
    let (_d, path, s) = start(&both);
    let mut feed = feed(&s).await;
    let ci = sign_in(&s, serde_json::json!({"token": "ci-token"})).await;
    let ci2 = sign_in(&s, serde_json::json!({"token": "ci-token"})).await;
    let ops = sign_in(&s, serde_json::json!({"token": "ops-token"})).await;
    let startup = sign_in(&s, serde_json::json!({"token": s.token.clone().unwrap()})).await;
    for c in [&ci, &ci2, &ops, &startup] {
        assert_eq!(whoami(&s, c).await, 200);
    }
    let mut ci_ws = events_with(&s, &ci).await;
    let mut ops_ws = events_with(&s, &ops).await;

    let without_ci = policy(&[tokens(&[("feed", "feed-token"), ("ops", "ops-token")])]);
    let t0 = Instant::now();
    let ev = reload(&s, &path, &without_ci, &mut feed).await;
    assert_eq!(ev["data"]["sessions_ended"], 2, "{ev}");
    let close = close_of(&mut ci_ws, T).await.expect("the ci socket closed");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert_eq!(close.0, 4401, "{close:?}");
    assert_eq!(close.1, "credential revoked");
    assert_eq!(whoami(&s, &ci).await, 401);
    assert_eq!(whoami(&s, &ci2).await, 401);
    // The sessions another credential opened are untouched.
    assert_eq!(whoami(&s, &ops).await, 200);
    assert_eq!(whoami(&s, &startup).await, 200);
    assert!(wait_text(&mut ops_ws, "client.disconnected", T)
        .await
        .is_some());
    // The token itself is refused too, and no new session is had with it.
    let r = http()
        .post(s.url("/api/login"))
        .json(&serde_json::json!({"token": "ci-token"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_changed_token_hash_ends_the_sessions_it_opened() {
    let (_d, path, s) = start(&policy(&[tokens(&[
        ("feed", "feed-token"),
        ("ci", "ci-token-old"),
    ])]));
    let mut feed = feed(&s).await;
    let old = sign_in(&s, serde_json::json!({"token": "ci-token-old"})).await;
    let mut ws = events_with(&s, &old).await;
    let rotated = policy(&[tokens(&[("feed", "feed-token"), ("ci", "ci-token-new")])]);
    let ev = reload(&s, &path, &rotated, &mut feed).await;
    assert_eq!(ev["data"]["sessions_ended"], 1, "{ev}");
    assert_eq!(close_of(&mut ws, T).await.map(|c| c.0), Some(4401));
    assert_eq!(whoami(&s, &old).await, 401);
    let new = sign_in(&s, serde_json::json!({"token": "ci-token-new"})).await;
    assert_eq!(whoami(&s, &new).await, 200);
    // A reload that leaves the token as it is ends nothing.
    let same = format!("{rotated}# a comment\n");
    let ev = reload(&s, &path, &same, &mut feed).await;
    assert_eq!(ev["data"]["sessions_ended"], 0, "{ev}");
    assert_eq!(whoami(&s, &new).await, 200);
}

#[tokio::test]
async fn a_changed_or_removed_user_ends_their_sessions() {
    let (a1, a2, b) = (
        hash_password("alice one"),
        hash_password("alice two"),
        hash_password("bob"),
    );
    let users = |alice: &str, bob: bool| {
        let mut list = vec![format!("{{ name: alice, password_hash: \"{alice}\" }}")];
        if bob {
            list.push(format!("{{ name: bob, password_hash: \"{b}\" }}"));
        }
        format!("users: [{}]", list.join(", "))
    };
    let feed_token = tokens(&[("feed", "feed-token")]);
    let (_d, path, s) = start(&policy(&[feed_token.clone(), users(&a1, true)]));
    let mut feed = feed(&s).await;
    let alice = sign_in(
        &s,
        serde_json::json!({"username": "alice", "password": "alice one"}),
    )
    .await;
    let bob = sign_in(
        &s,
        serde_json::json!({"username": "bob", "password": "bob"}),
    )
    .await;
    let mut alice_ws = events_with(&s, &alice).await;
    let mut bob_ws = events_with(&s, &bob).await;

    // Alice's password changes: her session ends, Bob's stays.
    let ev = reload(
        &s,
        &path,
        &policy(&[feed_token.clone(), users(&a2, true)]),
        &mut feed,
    )
    .await;
    assert_eq!(ev["data"]["sessions_ended"], 1, "{ev}");
    assert_eq!(close_of(&mut alice_ws, T).await.map(|c| c.0), Some(4401));
    assert_eq!(whoami(&s, &alice).await, 401);
    assert_eq!(whoami(&s, &bob).await, 200);

    // Bob is removed: his session ends too.
    let ev = reload(
        &s,
        &path,
        &policy(&[feed_token, users(&a2, false)]),
        &mut feed,
    )
    .await;
    assert_eq!(ev["data"]["sessions_ended"], 1, "{ev}");
    assert_eq!(close_of(&mut bob_ws, T).await.map(|c| c.0), Some(4401));
    assert_eq!(whoami(&s, &bob).await, 401);
}

#[tokio::test]
async fn startup_token_false_ends_startup_token_sessions() {
    let named = tokens(&[("feed", "feed-token"), ("ops", "ops-token")]);
    let (_d, path, s) = start(&policy(std::slice::from_ref(&named)));
    let mut feed = feed(&s).await;
    let token = s.token.clone().unwrap();
    let by_link = {
        // The printed link: a page visit with ?token= that sets the cookie.
        let r = http()
            .get(s.url(&format!("/?token={token}")))
            .header("accept", "text/html")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303);
        session_of(&r)
    };
    let by_login = sign_in(&s, serde_json::json!({ "token": token })).await;
    let ops = sign_in(&s, serde_json::json!({"token": "ops-token"})).await;
    let mut ws = events_with(&s, &by_link).await;
    let off = policy(&["startup_token: false".to_string(), named]);
    let ev = reload(&s, &path, &off, &mut feed).await;
    assert_eq!(ev["data"]["sessions_ended"], 2, "{ev}");
    assert_eq!(close_of(&mut ws, T).await.map(|c| c.0), Some(4401));
    assert_eq!(whoami(&s, &by_link).await, 401);
    assert_eq!(whoami(&s, &by_login).await, 401);
    assert_eq!(whoami(&s, &ops).await, 200);
}

#[tokio::test]
async fn a_shorter_session_ttl_ends_older_sessions_and_cuts_the_rest() {
    let named = tokens(&[("feed", "feed-token"), ("ops", "ops-token")]);
    let (_d, path, s) = start(&policy(&[named.clone(), "session_ttl: 1h".into()]));
    let mut feed = feed(&s).await;
    let old = sign_in(&s, serde_json::json!({"token": "ops-token"})).await;
    let mut old_ws = events_with(&s, &old).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let young = sign_in(&s, serde_json::json!({"token": "ops-token"})).await;
    let born = Instant::now();
    let ev = reload(
        &s,
        &path,
        &policy(&[named, "session_ttl: 3s".into()]),
        &mut feed,
    )
    .await;
    assert_eq!(ev["data"]["sessions_ended"], 1, "{ev}");
    let close = close_of(&mut old_ws, T)
        .await
        .expect("the old socket closed");
    assert_eq!(close, (4401, "session expired".to_string()));
    assert_eq!(whoami(&s, &old).await, 401);
    if born.elapsed() < Duration::from_millis(2500) {
        assert_eq!(whoami(&s, &young).await, 200);
    }
    // The young one now ends 3 s after it began, not an hour after.
    let deadline = born + Duration::from_secs(8);
    while whoami(&s, &young).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the young session outlived the new ttl"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
