//! Forward auth (SPEC §2.2) over the real binary: a trusted proxy's
//! identity header is believed only with the proxy's shared secret, since
//! on a loopback proxy every local process is a "trusted proxy".

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

const SECRET: &str = "proxy-secret-5b0e8a1c9d7f";
const SECRET_HEADER: &str = "X-Dashgate-Proxy-Secret";

fn policy(trusted: &str, rules: &str, limit: u32) -> (tempfile::TempDir, std::path::PathBuf) {
    let sha = hex::encode(Sha256::digest(SECRET.as_bytes()));
    policy_file(&format!(
        r#"
version: 1
trusted_proxies: [{trusted}]
credentials:
  forward_auth:
    user_header: Remote-User
    secret_header: {SECRET_HEADER}
    secret_sha256: "{sha}"
limits:
  auth_failures_per_minute: {limit}
rules:
{rules}
"#
    ))
}

const SECURE: &str = "  - { paths: [/healthz], action: allow }\n  - { action: authenticate }";
const OPEN: &str = "  - { action: allow }";

async fn whoami(s: &Server, local: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut r = http_from(local).get(s.url("/api/whoami"));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A request written by hand, so that a header can be sent twice exactly
/// as given.
async fn raw_whoami(s: &Server, local: &str, headers: &[(&str, &str)]) -> (u16, String) {
    Kept::open(local, s.addr)
        .await
        .get("/api/whoami", headers)
        .await
}

#[tokio::test]
async fn a_local_process_sending_the_user_header_is_anonymous_without_the_secret() {
    for (rules, anonymous) in [(SECURE, 401), (OPEN, 200)] {
        let (_d, path) = policy("loopback", rules, 100);
        let s = launch().policy(&path).start();
        for headers in [
            &[("remote-user", "bob")][..],
            &[("remote-user", "bob"), (SECRET_HEADER, "not-the-secret")],
            &[("remote-user", "bob"), (SECRET_HEADER, "")],
            &[("remote-user", "bob"), ("x-dashgate-proxy-secretx", SECRET)],
        ] {
            let (status, body) = whoami(&s, "127.0.0.1", headers).await;
            assert_eq!(status, anonymous, "{headers:?}: {body}");
            if anonymous == 200 {
                assert_eq!(
                    body["principal"]["kind"], "anonymous",
                    "{headers:?}: {body}"
                );
            }
            let ws = ws_status("127.0.0.1", &s.ws_url("/api/events"), headers).await;
            assert_eq!(ws, if anonymous == 200 { 101 } else { 401 }, "{headers:?}");
        }
        // The proxy, which knows the secret, names the user.
        let proxied = [("remote-user", "bob"), (SECRET_HEADER, SECRET)];
        let (status, body) = whoami(&s, "127.0.0.1", &proxied).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["principal"],
            serde_json::json!({"kind": "forwarded", "name": "bob"})
        );
        assert_eq!(
            ws_status("127.0.0.1", &s.ws_url("/api/events"), &proxied).await,
            101
        );
        // The secret alone names nobody.
        let (status, _) = whoami(&s, "127.0.0.1", &[(SECRET_HEADER, SECRET)]).await;
        assert_eq!(status, anonymous);
        // The effective policy shows the header, never the secret's hash.
        let (_, p) = {
            let r = http()
                .get(s.url("/api/policy"))
                .header("remote-user", "bob")
                .header(SECRET_HEADER, SECRET)
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        };
        assert!(p.contains(SECRET_HEADER), "{p}");
        let sha = hex::encode(Sha256::digest(SECRET.as_bytes()));
        assert!(!p.contains(&sha), "{p}");
    }
}

#[tokio::test]
async fn an_identity_header_sent_twice_by_a_trusted_proxy_is_a_400() {
    let (_d, path) = policy("loopback", SECURE, 100);
    let s = launch().policy(&path).start();
    let once = [("Remote-User", "bob"), (SECRET_HEADER, SECRET)];
    assert_eq!(raw_whoami(&s, "127.0.0.1", &once).await.0, 200);
    for twice in [
        &[
            ("Remote-User", "bob"),
            ("Remote-User", "alice"),
            (SECRET_HEADER, SECRET),
        ][..],
        &[
            ("Remote-User", "bob"),
            ("remote-user", "bob"),
            (SECRET_HEADER, SECRET),
        ],
        &[
            ("Remote-User", "bob"),
            (SECRET_HEADER, SECRET),
            (SECRET_HEADER, SECRET),
        ],
        &[
            ("Remote-User", "bob"),
            (SECRET_HEADER, "wrong"),
            (SECRET_HEADER, SECRET),
        ],
        // Twice without the secret: a malformed forwarding header all the same.
        &[("Remote-User", "bob"), ("Remote-User", "alice")],
    ] {
        let (status, body) = raw_whoami(&s, "127.0.0.1", twice).await;
        assert_eq!(status, 400, "{twice:?}: {body}");
        assert!(body.contains("bad_forwarding_header"), "{twice:?}: {body}");
    }
}

#[tokio::test]
async fn from_an_untrusted_peer_the_headers_are_ignored_not_counted() {
    // Only 127.0.0.5 is the proxy; the limit is 2 failures a minute.
    let (_d, path) = policy("127.0.0.5", SECURE, 2);
    let s = launch().policy(&path).start();
    let token = s.token.clone().unwrap();
    for _ in 0..5 {
        for headers in [
            &[("Remote-User", "bob"), (SECRET_HEADER, SECRET)][..],
            &[
                ("Remote-User", "bob"),
                ("Remote-User", "eve"),
                (SECRET_HEADER, "x"),
            ],
            &[(SECRET_HEADER, SECRET), (SECRET_HEADER, SECRET)],
        ] {
            let (status, body) = raw_whoami(&s, "127.0.0.3", headers).await;
            assert_eq!(status, 401, "{headers:?}: {body}");
            assert!(body.contains("no_credential"), "{headers:?}: {body}");
        }
    }
    // Not one of those counted towards the failure limit.
    let bearer = format!("Bearer {token}");
    let (status, _) = whoami(&s, "127.0.0.3", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200);
    // The proxy itself, with the secret, is believed.
    let (status, body) = whoami(
        &s,
        "127.0.0.5",
        &[("remote-user", "carol"), (SECRET_HEADER, SECRET)],
    )
    .await;
    assert_eq!((status, &body["principal"]["name"]), (200, &"carol".into()));
}

fn check(text: &str) -> (Option<i32>, String, String) {
    let (_d, path) = policy_file(text);
    let out = Command::new(env!("CARGO_BIN_EXE_dashgate"))
        .args(["policy", "check", path.to_str().unwrap()])
        .output()
        .unwrap();
    (
        out.status.code(),
        path.display().to_string(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn forward_auth_without_a_secret_is_a_located_policy_error() {
    let sha = hex::encode(Sha256::digest(SECRET.as_bytes()));
    let cases = [
        // (the forward_auth lines, line:col of the error, words it must say)
        (
            "  forward_auth: { user_header: Remote-User }".to_string(),
            "4:3",
            "secret_header",
        ),
        (
            "  forward_auth:\n    user_header: Remote-User\n    secret_header: X-Proxy-Secret"
                .to_string(),
            "4:3",
            "secret_sha256",
        ),
        (
            format!("  forward_auth:\n    user_header: Remote-User\n    secret_sha256: \"{sha}\""),
            "4:3",
            "secret_header",
        ),
        (
            "  forward_auth:\n    user_header: Remote-User\n    secret_header: X-Proxy-Secret\n    secret_sha256: \"abc\""
                .to_string(),
            "7:20",
            "SHA-256",
        ),
        (
            format!("  forward_auth:\n    user_header: Remote-User\n    secret_header: X Proxy\n    secret_sha256: \"{sha}\""),
            "6:20",
            "header name",
        ),
        (
            format!("  forward_auth:\n    user_header: Remote-User\n    secret_header: remote-user\n    secret_sha256: \"{sha}\""),
            "6:20",
            "user_header",
        ),
    ];
    for (fwd, at, says) in cases {
        let text =
            format!("version: 1\ntrusted_proxies: [loopback]\ncredentials:\n{fwd}\nrules:\n  - action: authenticate\n");
        let (code, path, err) = check(&text);
        assert_eq!(code, Some(2), "{fwd}: {err}");
        assert!(err.starts_with(&format!("{path}:{at}: ")), "{fwd}: {err}");
        assert!(err.contains(says), "{fwd}: {err}");
    }
    // With both, it loads.
    let text = format!(
        "version: 1\ntrusted_proxies: [loopback]\ncredentials:\n  forward_auth:\n    user_header: Remote-User\n    secret_header: X-Proxy-Secret\n    secret_sha256: \"{sha}\"\nrules:\n  - action: authenticate\n"
    );
    let (code, _, err) = check(&text);
    assert_eq!(code, Some(0), "{err}");
    // A server refuses to start on it too (exit 2).
    let (_d, path) = policy_file(
        "version: 1\ncredentials:\n  forward_auth: { user_header: Remote-User }\nrules:\n  - action: authenticate\n",
    );
    let out = launch().policy(&path).command().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    // The schema names both as required.
    let out = Command::new(env!("CARGO_BIN_EXE_dashgate"))
        .args(["policy", "schema"])
        .output()
        .unwrap();
    let schema: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = schema.to_string();
    assert!(text.contains("secret_sha256"), "{text}");
    let fa = find_forward_auth(&schema).expect("forward_auth in the schema");
    let required: Vec<&str> = fa["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for k in ["user_header", "secret_header", "secret_sha256"] {
        assert!(required.contains(&k), "{k} not required: {fa}");
    }
}

/// The schema object whose properties include `secret_header`.
fn find_forward_auth(v: &Value) -> Option<&Value> {
    match v {
        Value::Object(m) => {
            if m.get("properties")
                .is_some_and(|p| p.get("secret_header").is_some())
            {
                return Some(v);
            }
            m.values().find_map(find_forward_auth)
        }
        Value::Array(a) => a.iter().find_map(find_forward_auth),
        _ => None,
    }
}
