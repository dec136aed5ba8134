//! A `?token=` on a cross-site request is no credential (SPEC §8): a web
//! page the user visits can neither lock the user's address out of token
//! sign-in with guesses nor sign the browser in as someone else, while the
//! printed link (typed or pasted: `Sec-Fetch-Site: none`) still signs in and
//! a script's guesses (no such header) still meet the limiter.

mod common;

use common::*;
use sha2::{Digest, Sha256};

/// A secure policy with a named token and a low failure limit.
fn start() -> (tempfile::TempDir, Server) {
    let ci = hex::encode(Sha256::digest(b"ci-token"));
    let (dir, path) = policy_file(&format!(
        "version: 1\nextends: secure\ncredentials:\n  tokens: [{{ name: ci, sha256: \"{ci}\" }}]\nlimits:\n  auth_failures_per_minute: 3\n"
    ));
    (dir, launch().policy(&path).start())
}

/// A page navigation from `local` to `path` with `Sec-Fetch-Site: site`
/// (none for no header).
async fn visit(s: &Server, local: &str, path: &str, site: Option<&str>) -> reqwest::Response {
    let mut r = http_from(local)
        .get(s.url(path))
        .header("accept", "text/html,application/xhtml+xml");
    if let Some(site) = site {
        r = r
            .header("sec-fetch-site", site)
            .header("sec-fetch-mode", "navigate");
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn cross_site_guesses_neither_count_nor_lock_out_the_valid_token() {
    let (_d, s) = start();
    let token = s.token.clone().unwrap();
    for i in 0..10 {
        for site in ["cross-site", "same-site"] {
            let r = visit(&s, "127.0.0.2", &format!("/?token=guess{i}"), Some(site)).await;
            // Answered as an anonymous visitor: sent to sign in, not a 401
            // for a bad credential, never a 429.
            assert_eq!(r.status(), 303, "guess {i} {site}");
            assert!(r.headers().get("set-cookie").is_none());
            let to = r.headers()["location"].to_str().unwrap();
            assert!(to.starts_with("/login?next="), "{to}");
            assert!(!to.contains("guess"), "the token is not kept in next: {to}");
        }
    }
    // No `Sec-Fetch-Site` on a fetch() either.
    let r = http_from("127.0.0.2")
        .get(s.url("/api/whoami?token=guess"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["reason"], "no_credential", "{body}");
    // The printed link, typed or pasted, still signs in from that address.
    let r = visit(&s, "127.0.0.2", &format!("/?token={token}"), Some("none")).await;
    assert_eq!(r.status(), 303, "locked out by cross-site guesses");
    assert_eq!(r.headers()["location"], "/");
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .starts_with("dashgate_session="));
    let r = http_from("127.0.0.2")
        .get(s.url("/api/whoami"))
        .bearer_auth("ci-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_cross_site_valid_token_signs_nobody_in() {
    let (_d, s) = start();
    for (site, token) in [
        ("cross-site", s.token.clone().unwrap()),
        ("same-site", s.token.clone().unwrap()),
        ("cross-site", "ci-token".to_string()),
    ] {
        let r = visit(&s, "127.0.0.1", &format!("/chat?token={token}"), Some(site)).await;
        assert!(
            r.headers().get("set-cookie").is_none(),
            "{site} ?token= set a cookie"
        );
        assert_eq!(r.status(), 303);
        let to = r.headers()["location"].to_str().unwrap();
        assert_eq!(to, "/login?next=%2Fchat", "{site}");
    }
    // Same-origin and absent headers are still a credential.
    let token = s.token.clone().unwrap();
    for site in [Some("none"), Some("same-origin"), None] {
        let r = visit(&s, "127.0.0.1", &format!("/chat?token={token}"), site).await;
        assert_eq!(r.status(), 303, "{site:?}");
        assert_eq!(r.headers()["location"], "/chat", "{site:?}");
        assert!(r.headers().get("set-cookie").is_some(), "{site:?}");
    }
}

#[tokio::test]
async fn non_browser_guesses_still_meet_the_limit() {
    let (_d, s) = start();
    for i in 0..3 {
        let r = http_from("127.0.0.3")
            .get(s.url(&format!("/api/whoami?token=guess{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "guess {i}");
    }
    let r = http_from("127.0.0.3")
        .get(s.url("/api/whoami?token=ci-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // A cross-site header does not get a blocked address past the limit
    // with its valid token either (it is simply no credential).
    let r = http_from("127.0.0.3")
        .get(s.url("/api/whoami?token=ci-token"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}
