//! The gate over a real server: the reported bug, presets, source addresses,
//! Host, Origin, canonical paths, logs and shutdown.

mod common;

use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(5);

/// The reporter's check: a plain WebSocket handshake on /api/events (and
/// /api/status alongside), decided the same way in every preset.
#[tokio::test]
async fn reported_request_insecure_on_all_interfaces_is_101() {
    let s = launch().host("0.0.0.0").arg("--insecure").start();
    assert_eq!(
        ws_status("127.0.0.1", &s.ws_url("/api/events"), &[]).await,
        101
    );
    let r = http().get(s.url("/api/status")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn reported_request_secure_without_credential_is_refused_handshake() {
    let s = launch().start();
    match ws_connect_from("127.0.0.1", &s.ws_url("/api/events"), &[]).await {
        Ok(_) => panic!("handshake accepted without a credential"),
        Err((status, body)) => {
            assert_eq!(status, 401);
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["reason"], "no_credential");
            assert!(v["rule"].is_string(), "{v}");
        }
    }
    let r = http().get(s.url("/api/status")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"dashgate\"");
}

#[tokio::test]
async fn reported_request_secure_with_token_is_101() {
    let s = launch().start();
    let token = s.token.clone().expect("open line with token");
    let bearer = format!("Bearer {token}");
    assert_eq!(
        ws_status(
            "127.0.0.1",
            &s.ws_url("/api/events"),
            &[("authorization", &bearer)]
        )
        .await,
        101
    );
    let q = s.ws_url(&format!("/api/events?token={token}"));
    assert_eq!(ws_status("127.0.0.1", &q, &[]).await, 101);
    let r = http()
        .get(s.url("/api/status"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http()
        .get(s.url(&format!("/api/status?token={token}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bad = http()
        .get(s.url("/api/status"))
        .bearer_auth("not-the-token")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    let v: serde_json::Value = bad.json().await.unwrap();
    assert_eq!(v["reason"], "bad_credential");
}

const LAN_POLICY: &str = r#"
version: 1
trusted_proxies: [127.0.0.5]
rules:
  - name: the lan box
    from: [127.0.0.2/32]
    action: allow
  - name: nobody else
    action: deny
"#;

#[tokio::test]
async fn lan_by_source_address() {
    let (_d, path) = policy_file(LAN_POLICY);
    let s = launch().policy(&path).start();
    let status = |local: &'static str, hdrs: Vec<(&'static str, &'static str)>| {
        let url = s.url("/api/whoami");
        async move {
            let mut r = http_from(local).get(url);
            for (k, v) in hdrs {
                r = r.header(k, v);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(status("127.0.0.2", vec![]).await, 200);
    assert_eq!(status("127.0.0.3", vec![]).await, 403);
    // A spoofed header from an untrusted peer changes nothing.
    assert_eq!(
        status("127.0.0.3", vec![("x-forwarded-for", "127.0.0.2")]).await,
        403
    );
    assert_eq!(
        status("127.0.0.2", vec![("x-forwarded-for", "127.0.0.3")]).await,
        200
    );
    // Through the trusted proxy the forwarded client decides.
    assert_eq!(
        status("127.0.0.5", vec![("x-forwarded-for", "127.0.0.2")]).await,
        200
    );
    assert_eq!(
        status("127.0.0.5", vec![("x-forwarded-for", "127.0.0.3")]).await,
        403
    );
    assert_eq!(status("127.0.0.5", vec![]).await, 403);
    assert_eq!(
        status("127.0.0.5", vec![("x-forwarded-for", "not-an-ip")]).await,
        400
    );
    // The WebSocket upgrade is decided the same way.
    let ws = s.ws_url("/api/events");
    assert_eq!(ws_status("127.0.0.2", &ws, &[]).await, 101);
    assert_eq!(ws_status("127.0.0.3", &ws, &[]).await, 403);
    assert_eq!(
        ws_status("127.0.0.3", &ws, &[("x-forwarded-for", "127.0.0.2")]).await,
        403
    );
    assert_eq!(
        ws_status("127.0.0.5", &ws, &[("x-forwarded-for", "127.0.0.2")]).await,
        101
    );
    // whoami says who decided.
    let v: serde_json::Value = http_from("127.0.0.5")
        .get(s.url("/api/whoami"))
        .header("x-forwarded-for", "127.0.0.2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["client_ip"], "127.0.0.2");
    assert_eq!(v["peer_ip"], "127.0.0.5");
    assert_eq!(v["rule"], "the lan box");
    let r = http_from("127.0.0.3")
        .get(s.url("/api/status"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["reason"], "rule_deny");
    assert_eq!(v["rule"], "nobody else");
}

#[tokio::test]
async fn foreign_origin_is_refused_in_every_preset() {
    let lan = launch().policy(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/lan.yaml"));
    for (name, s) in [
        (
            "insecure",
            launch().host("0.0.0.0").arg("--insecure").start(),
        ),
        ("secure", launch().start()),
        ("lan", lan.start()),
    ] {
        let token = s.token.clone().unwrap_or_default();
        let bearer = format!("Bearer {token}");
        let auth: Vec<(&str, &str)> = if s.token.is_some() {
            vec![("authorization", bearer.as_str())]
        } else {
            vec![]
        };
        let url = s.ws_url("/api/events");
        let mut evil = auth.clone();
        evil.push(("origin", "http://evil.example"));
        match ws_connect_from("127.0.0.1", &url, &evil).await {
            Ok(_) => panic!("{name}: foreign origin accepted"),
            Err((st, body)) => {
                assert_eq!(st, 403, "{name}");
                assert!(body.contains("origin_not_allowed"), "{name}: {body}");
            }
        }
        let mut null = auth.clone();
        null.push(("origin", "null"));
        assert_eq!(ws_status("127.0.0.1", &url, &null).await, 403, "{name}");
        let same = format!("http://{}", s.addr);
        let mut own = auth.clone();
        own.push(("origin", same.as_str()));
        assert_eq!(ws_status("127.0.0.1", &url, &own).await, 101, "{name}");
        assert_eq!(ws_status("127.0.0.1", &url, &auth).await, 101, "{name}");
    }
}

#[tokio::test]
async fn two_origin_headers_are_refused() {
    let s = launch().arg("--insecure").start();
    let own = format!("http://{}", s.addr);
    let raw = format!(
        "POST /api/logout HTTP/1.1\r\nHost: {}\r\nOrigin: {own}\r\nOrigin: http://evil.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        s.addr
    );
    let (st, body) = raw_request(s.addr, &raw);
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("origin_not_allowed"), "{body}");
    let one = format!(
        "POST /api/logout HTTP/1.1\r\nHost: {}\r\nOrigin: {own}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        s.addr
    );
    assert_eq!(raw_request(s.addr, &one).0, 200);
}

#[tokio::test]
async fn foreign_host_is_refused_when_bound_to_loopback() {
    let s = launch().arg("--insecure").start();
    let (st, body) = raw_request(
        s.addr,
        "GET /api/status HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(st, 403);
    assert!(body.contains("host_not_allowed"), "{body}");
    let (st, _) = raw_get(s.addr, "/api/status");
    assert_eq!(st, 200);
}

#[tokio::test]
async fn non_canonical_paths_are_400() {
    let s = launch().arg("--insecure").start();
    for p in [
        "/api/../api/events",
        "//api/events",
        "/api%2Fevents",
        "/api/./status",
        "/api/%2e%2e/status",
        "/api%5cstatus",
    ] {
        let (st, body) = raw_get(s.addr, p);
        assert_eq!(st, 400, "{p}");
        assert!(body.contains("non_canonical_path"), "{p}: {body}");
    }
}

#[tokio::test]
async fn unknown_api_path_is_json_404_after_the_gate() {
    let s = launch().arg("--insecure").start();
    let r = http().get(s.url("/api/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["reason"], "not_found");
    // In the secure preset the gate answers first: nothing leaks about routes.
    let s = launch().start();
    let r = http().get(s.url("/api/nope")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn tokens_never_reach_the_log() {
    let s = launch().env("RUST_LOG", "trace").start();
    let token = s.token.clone().unwrap();
    let bad = "wrong-token-Zq8xP3";
    let c = http();
    c.get(s.url(&format!("/api/status?token={token}")))
        .send()
        .await
        .unwrap();
    c.get(s.url(&format!("/api/status?token={bad}")))
        .send()
        .await
        .unwrap();
    c.get(s.url("/api/status"))
        .bearer_auth(bad)
        .send()
        .await
        .unwrap();
    let _ = ws_status(
        "127.0.0.1",
        &s.ws_url(&format!("/api/events?token={bad}")),
        &[],
    )
    .await;
    assert!(s.wait_output("access denied", T));
    std::thread::sleep(Duration::from_millis(200));
    let out = s.output();
    assert_eq!(
        out.matches(&token).count(),
        1,
        "token outside the open line:\n{out}"
    );
    assert!(out
        .lines()
        .any(|l| l.starts_with("open http://") && l.contains(&token)));
    assert!(!out.contains(bad), "a presented token was logged:\n{out}");
    assert!(out.contains("?[redacted]"), "{out}");
}

#[tokio::test]
async fn denial_is_logged_once_with_rule_and_reason() {
    let s = launch().start();
    http().get(s.url("/api/policy")).send().await.unwrap();
    assert!(s.wait_output("access denied", T));
    std::thread::sleep(Duration::from_millis(100));
    let out = s.output();
    let lines: Vec<_> = out
        .lines()
        .filter(|l| l.contains("access denied"))
        .collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        lines[0].contains("reason=\"no_credential\"") || lines[0].contains("reason=no_credential"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("/api/policy"));
    assert!(lines[0].contains("127.0.0.1"));
}

#[tokio::test]
async fn sigterm_closes_websockets_with_1001_and_exits_fast() {
    let mut s = launch().arg("--insecure").start();
    let mut ws = ws_connect(&s.ws_url("/api/events"), &[]).await.unwrap();
    // Wait until the socket is registered (its own client.connected event).
    assert!(wait_text(&mut ws, "client.connected", T).await.is_some());
    let t0 = Instant::now();
    s.signal("TERM");
    let close = close_of(&mut ws, T).await;
    assert_eq!(close.map(|c| c.0), Some(1001));
    loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            assert!(st.success(), "{st}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "still running after 2 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn insecure_and_policy_together_exit_2() {
    let out = launch()
        .arg("--insecure")
        .policy("x.yaml")
        .command()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));
}

#[test]
fn broken_policy_exits_2_with_location() {
    let (_d, path) = policy_file("version: 1\nrules:\n  - action: alow\n");
    let out = launch().policy(&path).command().output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("policy.yaml:3:"), "{err}");
}

#[tokio::test]
async fn hermes_aliases_select_insecure_and_token() {
    let s = launch().env("HERMES_DASHBOARD_INSECURE", "1").start();
    assert!(s.token.is_none(), "insecure prints no token line");
    assert_eq!(
        ws_status("127.0.0.1", &s.ws_url("/api/events"), &[]).await,
        101
    );
    let s = launch()
        .env("HERMES_DASHBOARD_SESSION_TOKEN", "kept-across-restarts")
        .start();
    assert_eq!(s.token.as_deref(), Some("kept-across-restarts"));
    let r = http()
        .get(s.url("/api/status"))
        .bearer_auth("kept-across-restarts")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["policy"]["preset"], "secure");
}

/// warp serves `/api/policy/` as `/api/policy`; the rules must decide it as
/// that route too, or a trailing slash walks past a `deny`.
const DENY_SOME_ROUTES: &str = r#"
version: 1
rules:
  - name: no policy dump
    paths: [/api/policy, /metrics]
    action: deny
  - name: no event socket
    paths: [/api/events]
    transport: ws
    action: deny
  - name: the rest
    action: allow
"#;

#[tokio::test]
async fn a_trailing_slash_is_decided_as_the_route_it_reaches() {
    let (_d, path) = policy_file(DENY_SOME_ROUTES);
    let s = launch().policy(&path).start();
    for p in ["/api/policy", "/api/policy/", "/metrics/"] {
        let (st, body) = raw_get(s.addr, p);
        assert_eq!(st, 403, "{p}: {body}");
        assert!(body.contains("no policy dump"), "{p}: {body}");
    }
    for p in ["/api/events", "/api/events/"] {
        assert_eq!(ws_status("127.0.0.1", &s.ws_url(p), &[]).await, 403, "{p}");
    }
    // The slash itself is no reason to refuse a route the rules allow.
    assert_eq!(raw_get(s.addr, "/api/status/").0, 200);
}

/// The host a request is for is its target URI's authority (an absolute-form
/// request line, HTTP/2's `:authority`), else its one `Host` header.
#[tokio::test]
async fn the_host_is_the_target_authority_and_there_is_one() {
    let s = launch().arg("--insecure").start();
    let a = s.addr;
    for (what, raw) in [
        (
            "absolute-form target for another host",
            format!("GET http://evil.example/api/status HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n"),
        ),
        (
            "Host disagreeing with the absolute-form target",
            format!("GET http://{a}/api/status HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
        ),
        (
            "a second Host header",
            format!("GET /api/status HTTP/1.1\r\nHost: {a}\r\nHost: evil.example\r\nConnection: close\r\n\r\n"),
        ),
    ] {
        let (st, body) = raw_request(a, &raw);
        assert_eq!(st, 403, "{what}: {body}");
        assert!(body.contains("host_not_allowed"), "{what}: {body}");
    }
    let (st, body) = raw_request(
        a,
        &format!("GET http://{a}/api/status HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(st, 200, "absolute-form target for this host: {body}");
    // HTTP/2 carries the host as `:authority`, with no Host header at all.
    let reply = h2c_get(a, "/api/status");
    assert!(reply.contains(r#""name":"dashgate""#), "h2c: {reply:?}");
}

/// A bare HTTP/2 (prior knowledge) `GET path` carrying `:authority` and no
/// `host` header, as curl --http2-prior-knowledge sends it; returns what the
/// server wrote (bodies travel uncompressed in DATA frames).
fn h2c_get(addr: std::net::SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let authority = addr.to_string();
    // HPACK: :method GET (static 2), :scheme http (static 6), then :path
    // (name 4) and :authority (name 1) as literals without indexing.
    let mut block = vec![0x82, 0x86, 0x04, path.len() as u8];
    block.extend(path.bytes());
    block.extend([0x01, authority.len() as u8]);
    block.extend(authority.bytes());
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend([0, 0, 0, 0x4, 0, 0, 0, 0, 0]); // SETTINGS, empty
    let len = block.len();
    // HEADERS, END_STREAM | END_HEADERS, stream 1
    out.extend([
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        0x1,
        0x5,
        0,
        0,
        0,
        1,
    ]);
    out.extend(block);
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s.write_all(&out).unwrap();
    let (mut got, mut buf, end) = (Vec::new(), [0u8; 4096], Instant::now() + T);
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) if got.ends_with(b"}") => break,
            Err(_) => {}
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Connections are bounded (`--max-connections`), so a connection must not
/// hold its place forever without sending a request: silent sockets, a
/// request head that never ends, an HTTP/2 preface and then nothing.
#[tokio::test]
async fn idle_connections_cannot_hold_every_connection_slot() {
    use std::io::Write;
    let s = launch()
        .arg("--insecure")
        .args(["--max-connections", "3"])
        .start();
    // An upgraded WebSocket has left the connection pool: it may idle.
    let mut ws = ws_connect(&s.ws_url("/api/events"), &[]).await.unwrap();
    let mut idle = Vec::new();
    for start in [
        "",
        "GET /healthz HTTP/1.1\r\nHost: x\r\n",
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ] {
        let mut c = std::net::TcpStream::connect(s.addr).unwrap();
        c.write_all(start.as_bytes()).unwrap();
        idle.push(c);
    }
    let patient = reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let r = patient.get(s.url("/healthz")).send().await;
    assert!(
        matches!(&r, Ok(r) if r.status() == 200),
        "not served after {:?}: {r:?}",
        t0.elapsed()
    );
    drop(idle);
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::Ping(
        vec![7].into(),
    ))
    .await
    .unwrap();
    let pong = tokio::time::timeout(T, async {
        while let Some(Ok(m)) = ws.next().await {
            if m.is_pong() {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(pong, Ok(true), "the idle WebSocket was closed");
}

/// `X-Forwarded-Proto: https, http` is refused as malformed; the same two
/// values on two lines must not quietly mean the first one (a proxy that
/// appends its line after the client's would let the client pick).
#[tokio::test]
async fn repeated_forwarding_headers_from_a_trusted_proxy_are_400() {
    let (_d, path) = policy_file(LAN_POLICY);
    let s = launch().policy(&path).start();
    for (name, first, second) in [
        ("x-forwarded-proto", "https", "http"),
        ("x-forwarded-host", "evil.example", "localhost"),
    ] {
        let one = http_from("127.0.0.5")
            .get(s.url("/api/whoami"))
            .header("x-forwarded-for", "127.0.0.2")
            .header(name, format!("{first}, {second}"))
            .send()
            .await
            .unwrap();
        assert_eq!(one.status(), 400, "{name}: one line");
        let two = http_from("127.0.0.5")
            .get(s.url("/api/whoami"))
            .header("x-forwarded-for", "127.0.0.2")
            .header(name, first)
            .header(name, second)
            .send()
            .await
            .unwrap();
        assert_eq!(two.status(), 400, "{name}: two lines");
        let body: serde_json::Value = two.json().await.unwrap();
        assert_eq!(body["reason"], "bad_forwarding_header");
    }
}

/// A browser cannot read why its WebSocket handshake was refused, so the UI
/// asks `/api/whoami?path=…&transport=ws`: the answer must be the gate's own
/// decision for that upgrade (rule and reason), and differ from plain HTTP.
#[tokio::test]
async fn whoami_probe_tells_why_a_websocket_would_be_refused() {
    let (_d, file) = policy_file(
        "version: 1\nextends: insecure\nrules:\n  - name: no live feed over websockets\n    paths: [/api/events]\n    transport: ws\n    action: deny\n",
    );
    let s = launch().policy(&file).start();
    let get = |q: &'static str| {
        let url = s.url(&format!("/api/whoami{q}"));
        async move {
            let r = http().get(url).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (st, v) = get("?path=/api/events&transport=ws").await;
    assert_eq!(st, 200);
    assert_eq!(v["check"]["allowed"], false, "{v}");
    assert_eq!(v["check"]["status"], 403);
    assert_eq!(v["check"]["reason"], "rule_deny");
    assert_eq!(v["check"]["rule"], "no live feed over websockets");
    let (_, v) = get("?path=/api/events&transport=http").await;
    assert_eq!(v["check"]["allowed"], true, "{v}");
    assert_eq!(v["check"]["rule"], "everything is allowed");
    let (_, v) = get("").await;
    assert!(v.get("check").is_none(), "{v}");
    let (st, v) = get("?path=/api/events&transport=smoke").await;
    assert_eq!((st, v["reason"].as_str()), (400, Some("bad_query")));
    // The probe agrees with the real handshake.
    assert_eq!(
        ws_status("127.0.0.1", &s.ws_url("/api/events"), &[]).await,
        403
    );
    // and a hypothetical request is not an event or a log line: the one
    // denial logged is the real handshake's (wait for it to be read).
    assert!(s.wait_output("access denied", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.output().matches("access denied").count(), 1);
}
