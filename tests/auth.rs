//! Secure mode over a real server: every credential kind on REST and on a
//! WebSocket upgrade, cookies, the ?token= visit, open redirects, forward
//! auth, the failure limit and session expiry.

mod common;

use std::time::Duration;

use common::*;
use sha2::{Digest, Sha256};

const T: Duration = Duration::from_secs(5);

/// The forward-auth proxy's shared secret in `policy_with_credentials`.
const PROXY_SECRET: &str = "proxy-secret-for-tests";

fn policy_with_credentials(limit: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    let ci_hash = hex::encode(Sha256::digest(b"ci-token-123"));
    let proxy_hash = hex::encode(Sha256::digest(PROXY_SECRET.as_bytes()));
    let hash = hash_password("correct horse");
    policy_file(&format!(
        r#"
version: 1
extends: secure
trusted_proxies: [127.0.0.5]
credentials:
  tokens:
    - {{ name: ci, sha256: "{ci_hash}" }}
  users:
    - {{ name: alice, password_hash: "{hash}" }}
  forward_auth: {{ user_header: Remote-User, secret_header: X-Proxy-Secret, secret_sha256: "{proxy_hash}" }}
  session_ttl: 2s
limits:
  auth_failures_per_minute: {limit}
"#
    ))
}

async fn status_with(s: &Server, local: &str, hdrs: &[(&str, &str)]) -> (u16, u16) {
    let mut r = http_from(local).get(s.url("/api/whoami"));
    for (k, v) in hdrs {
        r = r.header(*k, *v);
    }
    let rest = r.send().await.unwrap().status().as_u16();
    let ws = ws_status(local, &s.ws_url("/api/events"), hdrs).await;
    (rest, ws)
}

async fn login_cookie(s: &Server, body: serde_json::Value) -> (u16, Option<String>) {
    let r = http()
        .post(s.url("/api/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    let cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_string());
    (st, cookie)
}

#[tokio::test]
async fn each_credential_kind_on_rest_and_websocket() {
    let (_d, path) = policy_with_credentials(100);
    let s = launch().policy(&path).start();
    let startup = format!("Bearer {}", s.token.clone().unwrap());
    assert_eq!(status_with(&s, "127.0.0.1", &[]).await, (401, 401));
    assert_eq!(
        status_with(&s, "127.0.0.1", &[("authorization", &startup)]).await,
        (200, 101)
    );
    assert_eq!(
        status_with(&s, "127.0.0.1", &[("authorization", "Bearer ci-token-123")]).await,
        (200, 101)
    );
    assert_eq!(
        status_with(&s, "127.0.0.1", &[("authorization", "Bearer ci-token-124")]).await,
        (401, 401)
    );
    // A password sign-in gives a cookie that opens REST and WebSocket alike.
    let (st, cookie) = login_cookie(
        &s,
        serde_json::json!({"username": "alice", "password": "correct horse"}),
    )
    .await;
    assert_eq!(st, 200);
    let c = cookie_pair(&cookie.unwrap());
    assert_eq!(
        status_with(&s, "127.0.0.1", &[("cookie", &c)]).await,
        (200, 101)
    );
    let v: serde_json::Value = http()
        .get(s.url("/api/whoami"))
        .header("cookie", &c)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["principal"]["kind"], "user");
    assert_eq!(v["principal"]["name"], "alice");
    let (st, _) = login_cookie(
        &s,
        serde_json::json!({"username": "alice", "password": "wrong"}),
    )
    .await;
    assert_eq!(st, 401);
    let (st, cookie) = login_cookie(&s, serde_json::json!({"token": "ci-token-123"})).await;
    assert_eq!(st, 200);
    assert!(cookie.is_some());
    // Forward auth: believed from the trusted proxy only.
    assert_eq!(
        status_with(&s, "127.0.0.3", &[("remote-user", "bob")]).await,
        (401, 401)
    );
    assert_eq!(
        status_with(
            &s,
            "127.0.0.3",
            &[("remote-user", "bob"), ("x-proxy-secret", PROXY_SECRET)]
        )
        .await,
        (401, 401)
    );
    assert_eq!(
        status_with(
            &s,
            "127.0.0.5",
            &[("remote-user", "bob"), ("x-proxy-secret", PROXY_SECRET)]
        )
        .await,
        (200, 101)
    );
    let v: serde_json::Value = http_from("127.0.0.5")
        .get(s.url("/api/whoami"))
        .header("remote-user", "bob")
        .header("x-proxy-secret", PROXY_SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["principal"],
        serde_json::json!({"kind": "forwarded", "name": "bob"})
    );
}

#[tokio::test]
async fn cookie_attributes_and_logout() {
    let s = launch().start();
    let token = s.token.clone().unwrap();
    let (st, cookie) = login_cookie(&s, serde_json::json!({"token": token})).await;
    assert_eq!(st, 200);
    let cookie = cookie.unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "{cookie}");
    let c = cookie_pair(&cookie);
    assert!(c.starts_with("dashgate_session="));
    assert_eq!(
        status_with(&s, "127.0.0.1", &[("cookie", &c)]).await,
        (200, 101)
    );
    let mut open = ws_connect(&s.ws_url("/api/events"), &[("cookie", &c)])
        .await
        .unwrap();
    let r = http()
        .post(s.url("/api/logout"))
        .header("cookie", &c)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    assert_eq!(
        status_with(&s, "127.0.0.1", &[("cookie", &c)]).await,
        (401, 401)
    );
    assert_eq!(close_of(&mut open, T).await.map(|c| c.0), Some(4401));
}

#[tokio::test]
async fn secure_flag_follows_trusted_proxy_proto() {
    let (_d, path) = policy_file("version: 1\nextends: secure\ntrusted_proxies: [127.0.0.5]\n");
    let s = launch().policy(&path).start();
    let token = s.token.clone().unwrap();
    let login = |local: &'static str| {
        let url = s.url("/api/login");
        let token = token.clone();
        async move {
            http_from(local)
                .post(url)
                .header("x-forwarded-proto", "https")
                .header("x-forwarded-for", "127.0.0.9")
                .json(&serde_json::json!({ "token": token }))
                .send()
                .await
                .unwrap()
                .headers()["set-cookie"]
                .to_str()
                .unwrap()
                .to_string()
        }
    };
    assert!(login("127.0.0.5").await.ends_with("; Secure"));
    assert!(!login("127.0.0.3").await.contains("Secure"));
}

#[tokio::test]
async fn token_visit_sets_cookie_and_redirects_without_token() {
    let s = launch().start();
    let token = s.token.clone().unwrap();
    let r = http()
        .get(s.url(&format!("/?a=1&token={token}&b=2")))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/?a=1&b=2");
    let c = session_of(&r);
    let r = http()
        .get(s.url("/"))
        .header("accept", "text/html")
        .header("cookie", &c)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A newcomer's navigation goes to the sign-in page.
    let r = http()
        .get(s.url("/sessions?x=1"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=%2Fsessions%3Fx%3D1");
}

#[tokio::test]
async fn login_next_never_leaves_the_site() {
    let s = launch().start();
    let token = s.token.clone().unwrap();
    for (next, want) in [
        ("//evil.example", "/"),
        ("https://evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/chat", "/chat"),
    ] {
        let r = http()
            .post(s.url("/api/login"))
            .form(&[("token", token.as_str()), ("next", next)])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "{next}");
        assert_eq!(r.headers()["location"], want, "{next}");
    }
}

#[tokio::test]
async fn failure_limit_is_per_address_and_recovers() {
    let (_d, path) = policy_with_credentials(3);
    let s = launch()
        .policy(&path)
        .env("DASHGATE_AUTH_WINDOW_SECS", "2")
        .start();
    // Three failures: two over REST, one at a WebSocket upgrade.
    for _ in 0..2 {
        let r = http_from("127.0.0.2")
            .get(s.url("/api/whoami"))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let ws = s.ws_url("/api/events");
    assert_eq!(
        ws_status("127.0.0.2", &ws, &[("authorization", "Bearer nope")]).await,
        401
    );
    let r = http_from("127.0.0.2")
        .get(s.url("/api/whoami"))
        .bearer_auth("ci-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Login attempts from the blocked address are refused too.
    let r = http_from("127.0.0.2")
        .post(s.url("/api/login"))
        .json(&serde_json::json!({"token": "ci-token-123"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // Another address is still served.
    let r = http_from("127.0.0.3")
        .get(s.url("/api/whoami"))
        .bearer_auth("ci-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = http_from("127.0.0.2")
        .get(s.url("/api/whoami"))
        .bearer_auth("ci-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn expired_session_closes_its_websocket_with_4401() {
    let (_d, path) = policy_with_credentials(100);
    let s = launch().policy(&path).start();
    let (st, cookie) = login_cookie(&s, serde_json::json!({"token": "ci-token-123"})).await;
    assert_eq!(st, 200);
    let c = cookie_pair(&cookie.unwrap());
    let mut ws = ws_connect(&s.ws_url("/api/events"), &[("cookie", &c)])
        .await
        .unwrap();
    let mut bearer = ws_connect(
        &s.ws_url("/api/events"),
        &[("authorization", "Bearer ci-token-123")],
    )
    .await
    .unwrap();
    // session_ttl is 2 s.
    let close = close_of(&mut ws, Duration::from_secs(6)).await;
    assert_eq!(close.map(|c| c.0), Some(4401));
    // A socket opened with a token has no session to expire: it is still
    // open and hears the other one leave.
    assert!(wait_text(&mut bearer, "client.disconnected", T)
        .await
        .is_some());
    assert_eq!(
        status_with(&s, "127.0.0.1", &[("cookie", &c)]).await,
        (401, 401)
    );
}

/// A public page answers a valid `?token=` with a 303 and a cookie and a bad
/// one with the page: an oracle, so a bad token counts there too.
#[tokio::test]
async fn bad_tokens_on_public_pages_count_towards_the_limit() {
    let (_d, path) = policy_with_credentials(3);
    let s = launch().policy(&path).start();
    let page = |token: &str| {
        http_from("127.0.0.2")
            .get(s.url(&format!("/login?token={token}")))
            .header("accept", "text/html")
            .send()
    };
    for i in 0..3 {
        let r = page(&format!("guess-{i}")).await.unwrap();
        assert_eq!(r.status(), 200, "the public page is still served");
    }
    let r = page("ci-token-123").await.unwrap();
    assert_eq!(r.status(), 429, "a fourth guess must not be answered");
    assert!(r.headers().get("set-cookie").is_none());
    // Another address is unaffected.
    let r = http_from("127.0.0.3")
        .get(s.url("/login?token=ci-token-123"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
}

/// Password checks are slow (argon2): attempts sent all at once must not
/// all be checked before the first failure is counted.
#[tokio::test]
async fn concurrent_wrong_passwords_cannot_outrun_the_limit() {
    let (_d, path) = policy_with_credentials(3);
    let s = launch().policy(&path).start();
    let c = http_from("127.0.0.2");
    let attempts = (0..12).map(|i| {
        c.post(s.url("/api/login"))
            .json(&serde_json::json!({"username": "alice", "password": format!("guess {i}")}))
            .send()
    });
    let statuses: Vec<u16> = futures_util::future::join_all(attempts)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    let checked = statuses.iter().filter(|&&st| st == 401).count();
    assert!(checked <= 3, "{checked} passwords checked: {statuses:?}");
    assert_eq!(
        checked + statuses.iter().filter(|&&st| st == 429).count(),
        12
    );
    // A right password right after is refused too, then works elsewhere.
    let (st, _) = {
        let r = c
            .post(s.url("/api/login"))
            .json(&serde_json::json!({"username": "alice", "password": "correct horse"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(st, 429);
    let (st, cookie) = login_cookie(
        &s,
        serde_json::json!({"username": "alice", "password": "correct horse"}),
    )
    .await;
    assert_eq!((st, cookie.is_some()), (200, true));
}

/// Any web page the user visits can make their browser request
/// `http://127.0.0.1:PORT/...?token=x` (an <img>, a no-cors fetch): failures
/// from the user's own address. Those must not lock the signed-in browser
/// out; cookies cannot be guessed and are never counted.
#[tokio::test]
async fn failures_from_the_same_address_do_not_lock_out_a_session_cookie() {
    let (_d, path) = policy_with_credentials(3);
    let s = launch().policy(&path).start();
    let (st, cookie) = login_cookie(&s, serde_json::json!({"token": "ci-token-123"})).await;
    assert_eq!(st, 200);
    let c = cookie_pair(&cookie.unwrap());
    for i in 0..5 {
        http()
            .get(s.url(&format!("/api/status?token=cross-site-{i}")))
            .send()
            .await
            .unwrap();
    }
    // Tokens from this address are blocked now...
    let r = http()
        .get(s.url("/api/whoami"))
        .bearer_auth("ci-token-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    // ...but the signed-in browser goes on working, REST and WebSocket.
    assert_eq!(
        status_with(&s, "127.0.0.1", &[("cookie", &c)]).await,
        (200, 101)
    );
}
