//! Upstream mode over HTTP (SPEC §6): what reaches the upstream, what the
//! client gets back, and that every proxied request went through the gate.

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::time::Duration;

use common::*;
use upstream::{header, headers_named, TestUpstream};

fn fronting(up: &TestUpstream) -> Launch {
    launch().args(["--upstream", &up.url()])
}

fn preset(name: &str) -> String {
    format!("{}/policies/{name}.yaml", env!("CARGO_MANIFEST_DIR"))
}

async fn echo(r: reqwest::RequestBuilder) -> serde_json::Value {
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-upstream"],
        "yes",
        "not the upstream's answer"
    );
    r.json().await.unwrap()
}

/// `GET path` with no credential.
async fn get(s: &Server, path: &str) -> reqwest::Response {
    http().get(s.url(path)).send().await.unwrap()
}

/// `GET path` as a browser navigation.
async fn navigate(s: &Server, path: &str) -> reqwest::Response {
    let r = http().get(s.url(path)).header("accept", "text/html");
    r.send().await.unwrap()
}

/// The `reason` of a JSON refusal.
async fn reason(r: reqwest::Response) -> String {
    let body: serde_json::Value = r.json().await.unwrap();
    body["reason"].as_str().unwrap_or_default().to_string()
}

/// Sign in through dashgate's API with `token`.
async fn sign_in(s: &Server, token: &str) -> reqwest::Response {
    let r = http().post(s.url("/.dashgate/api/login"));
    r.json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_outbound_request_is_built_from_scratch() {
    let up = TestUpstream::start().await;
    let s = fronting(&up).arg("--insecure").start();
    let got = echo(
        http()
            .get(s.url("/some/page?x=1&token=hermes"))
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-forwarded-host", "evil.example")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-prefix", "/evil")
            .header("forwarded", "for=1.2.3.4")
            .header("x-real-ip", "6.6.6.6")
            .header("x-dashgate-user", "mallory")
            .header("x-dashgate-groups", "admins")
            .header("connection", "keep-alive, x-hop")
            .header("x-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-authorization", "Basic eDp5")
            .header("te", "trailers")
            .header("x-custom", "kept")
            .header("x-hermes-session-token", "hermes-token")
            .header("cookie", "theme=dark; dashgate_session=stolen; lang=en"),
    )
    .await;
    assert_eq!(got["method"], "GET");
    assert_eq!(got["path"], "/some/page");
    assert_eq!(got["query"], "x=1&token=hermes");
    let upstream_authority = up.addr.to_string();
    assert_eq!(header(&got, "host"), Some(upstream_authority.as_str()));
    assert_eq!(headers_named(&got, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(headers_named(&got, "x-forwarded-proto"), ["http"]);
    let dashgate_authority = s.addr.to_string();
    assert_eq!(
        headers_named(&got, "x-forwarded-host"),
        [dashgate_authority.as_str()]
    );
    for gone in [
        "x-forwarded-prefix",
        "forwarded",
        "x-real-ip",
        "x-dashgate-user",
        "x-dashgate-groups",
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
    ] {
        assert_eq!(header(&got, gone), None, "{gone} reached the upstream");
    }
    assert_eq!(header(&got, "x-custom"), Some("kept"));
    assert_eq!(header(&got, "x-hermes-session-token"), Some("hermes-token"));
    assert_eq!(headers_named(&got, "cookie"), ["theme=dark; lang=en"]);
}

#[tokio::test]
async fn a_request_body_reaches_the_upstream() {
    let up = TestUpstream::start().await;
    let s = fronting(&up).arg("--insecure").start();
    let got = echo(http().post(s.url("/api/thing")).body("hello upstream")).await;
    assert_eq!(got["method"], "POST");
    assert_eq!(got["body"], "hello upstream");
}

#[tokio::test]
async fn secure_preset_keeps_the_upstream_private() {
    let up = TestUpstream::start().await;
    let s = fronting(&up).start();
    // A browser is sent to dashgate's sign-in page, an API client gets 401;
    // neither sees the upstream's body.
    for path in ["/", "/healthz", "/api/status", "/assets/app.js"] {
        let r = navigate(&s, path).await;
        assert_eq!(r.status(), 303, "{path}");
        let want = format!(
            "/.dashgate/login?next={}",
            path.replace('/', "%2F").replace('.', "%2E")
        );
        assert_eq!(r.headers()["location"], want.as_str(), "{path}");
        assert!(r.headers().get("x-upstream").is_none());
        let r = get(&s, path).await;
        assert_eq!(r.status(), 401, "{path}");
        assert!(r.headers().get("x-upstream").is_none());
        assert_eq!(reason(r).await, "no_credential");
    }
    // dashgate's own public paths are under the prefix.
    let r = get(&s, "/.dashgate/healthz").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok");
    let r = get(&s, "/.dashgate/login").await;
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("token-form"));
    let r = get(&s, "/.dashgate/assets/login.js").await;
    assert_eq!(r.status(), 200);
    // …and the rest of dashgate's is not public either.
    let r = get(&s, "/.dashgate/api/status").await;
    assert_eq!(r.status(), 401);
    // A path under the prefix that dashgate does not route is never proxied.
    let token = s.token.clone().expect("startup token printed");
    let r = http()
        .get(s.url("/.dashgate/nowhere"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.headers().get("x-upstream").is_none());
}

#[tokio::test]
async fn startup_link_and_sign_in_lead_to_the_upstream() {
    let up = TestUpstream::start().await;
    let s = fronting(&up).start();
    assert!(
        s.output().contains("/.dashgate/login?token="),
        "{}",
        s.output()
    );
    let token = s.token.clone().unwrap();
    // The startup link trades the token for a cookie and goes to `/`.
    let r = http()
        .get(s.url(&format!("/.dashgate/login?token={token}")))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
    let session = session_of(&r);
    assert!(session.starts_with("dashgate_session="));
    // With the cookie the upstream answers; the cookie itself is not passed.
    let got = echo(
        http()
            .get(s.url("/"))
            .header("cookie", format!("{session}; theirs=1")),
    )
    .await;
    assert_eq!(headers_named(&got, "cookie"), ["theirs=1"]);
    assert_eq!(header(&got, "x-dashgate-user"), Some("startup"));
    // A dashgate Bearer admits and is stripped; the principal is named.
    let got = echo(http().get(s.url("/api/data")).bearer_auth(&token)).await;
    assert_eq!(header(&got, "authorization"), None);
    assert_eq!(header(&got, "x-dashgate-user"), Some("startup"));
    // Of several Authorization lines only dashgate's token is stripped: the
    // line the gate read, and a later one with the same token written
    // otherwise; the upstream's own passes.
    let got = echo(
        http()
            .get(s.url("/api/data"))
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", "Bearer hermes-bearer")
            .header("authorization", format!("bearer   {token}")),
    )
    .await;
    assert_eq!(
        headers_named(&got, "authorization"),
        ["Bearer hermes-bearer"]
    );
    // Signing in through the API answers with `next`, default `/`.
    let r = sign_in(&s, &token).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["next"], "/");
}

#[tokio::test]
async fn the_upstreams_own_tokens_pass_and_are_never_counted() {
    let up = TestUpstream::start().await;
    let (_dir, policy) = policy_file(
        "version: 1\nextends: secure\nlimits: { auth_failures_per_minute: 3 }\nrules: []\n",
    );
    let s = fronting(&up).policy(&policy).start();
    let token = s.token.clone().unwrap();
    let r = sign_in(&s, &token).await;
    let session = session_of(&r);
    // Far more than the limit: the upstream's token with dashgate's cookie.
    for i in 0..12 {
        let got = echo(
            http()
                .get(s.url(&format!("/api/pty?token=hermes-{i}&channel=c")))
                .header("cookie", &session)
                .header("authorization", "Bearer hermes-bearer")
                .header("x-hermes-session-token", "hermes"),
        )
        .await;
        assert_eq!(got["query"], format!("token=hermes-{i}&channel=c"));
        assert_eq!(header(&got, "authorization"), Some("Bearer hermes-bearer"));
        assert_eq!(header(&got, "x-hermes-session-token"), Some("hermes"));
    }
    // Without a dashgate credential it is no credential (not a bad one).
    for _ in 0..12 {
        let r = get(&s, "/api/pty?token=hermes").await;
        assert_eq!(r.status(), 401);
        assert_eq!(reason(r).await, "no_credential");
    }
    // None of it counted: a sign-in still works, no 429.
    let r = sign_in(&s, &token).await;
    assert_eq!(r.status(), 200);
    // A bad token on dashgate's own paths is still a bad credential.
    let r = http()
        .get(s.url("/.dashgate/api/status"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(reason(r).await, "bad_credential");
}

#[tokio::test]
async fn bodies_are_streamed_not_buffered() {
    let up = TestUpstream::start().await;
    let s = fronting(&up).arg("--insecure").start();
    let mut r = http().get(s.url("/stream")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // The last chunk is only sent once the first has reached the client.
    let first = tokio::time::timeout(Duration::from_secs(5), r.chunk())
        .await
        .expect("first chunk held back: the body was buffered")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first\n");
    up.release();
    let rest = tokio::time::timeout(Duration::from_secs(5), r.text())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, "last\n");
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let up = TestUpstream::start().await;
    let s = fronting(&up)
        .args(["--insecure", "--upstream-timeout", "1"])
        .start();
    let r = get(&s, "/sleep").await;
    assert_eq!(r.status(), 504);
    assert_eq!(reason(r).await, "upstream_timeout");
    up.stop();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = get(&s, "/api/x").await;
    assert_eq!(r.status(), 502);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["reason"], "upstream_unavailable");
    assert!(body["rule"].is_null());
    // A browser gets a page that says what is down.
    let r = navigate(&s, "/").await;
    assert_eq!(r.status(), 502);
    let page = r.text().await.unwrap();
    assert!(page.contains(&up.url()), "{page}");
    assert!(page.contains("upstream_unavailable"), "{page}");
    // dashgate's own routes still answer.
    let r = get(&s, "/.dashgate/healthz").await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn lan_preset_proxies_from_loopback() {
    let up = TestUpstream::start().await;
    let s = fronting(&up).policy(preset("lan")).start();
    for from in ["127.0.0.1", "127.0.0.2"] {
        let got = echo(http_from(from).get(s.url("/"))).await;
        assert_eq!(got["path"], "/");
        assert_eq!(header(&got, "x-dashgate-user"), None);
        assert_eq!(headers_named(&got, "x-forwarded-for"), [from]);
    }
}

#[tokio::test]
async fn bad_upstream_urls_are_refused_at_start() {
    for url in [
        "ftp://127.0.0.1:1",
        "127.0.0.1:9120",
        "http://127.0.0.1:1/base",
    ] {
        let out = launch()
            .args(["--upstream", url])
            .command()
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{url}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--upstream"), "{url}: {err}");
    }
}

#[test]
fn policy_explain_with_upstream_decides_as_the_server_does() {
    let explain = |path: &str, upstream: bool| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dashgate"));
        c.args([
            "policy",
            "explain",
            "secure",
            "--from",
            "127.0.0.1",
            "--path",
            path,
        ]);
        if upstream {
            c.args(["--upstream", "http://127.0.0.1:9120"]);
        }
        let out = c.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().last().unwrap_or("").to_string()
    };
    assert!(explain("/.dashgate/login", true).starts_with("decision: allow"));
    assert!(explain("/login", true).starts_with("decision: authenticate"));
    assert!(explain("/healthz", true).starts_with("decision: authenticate"));
    assert!(explain("/login", false).starts_with("decision: allow"));
}
