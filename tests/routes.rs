//! The route-listing test (Lighthouse's habit): every route of the tree,
//! over HTTP and as a WebSocket upgrade, is decided by the gate exactly as
//! the pure policy engine decides it; and every path literal in
//! `src/routes/` is a listed route, so a route added outside the gate (or
//! left out of the list) makes this fail.

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::collections::BTreeSet;
use std::net::IpAddr;

use common::*;
use dashgate::policy::{CompiledPolicy, Credential, Facts, LoadContext, Transport};
use dashgate::routes::{Kind, ROUTES};

const GATE_REASONS: &[&str] = &[
    "host_not_allowed",
    "origin_not_allowed",
    "non_canonical_path",
    "bad_forwarding_header",
    "no_credential",
    "bad_credential",
    "rule_deny",
    "no_rule_matched",
    "too_many_failures",
];

fn facts(path: &str, transport: Transport, credential: Credential) -> Facts {
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    Facts {
        peer: ip,
        client: ip,
        method: "GET".into(),
        path: path.into(),
        host: Some("127.0.0.1".into()),
        origin: None,
        scheme: "http".into(),
        transport,
        credential,
    }
}

/// What the gate decided about a response: `Some(reason)` for a gate denial.
fn gate_reason(status: u16, body: &str) -> Option<String> {
    if ![400, 401, 403, 429].contains(&status) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let r = v["reason"].as_str()?.to_string();
    GATE_REASONS.contains(&r.as_str()).then_some(r)
}

async fn observe(s: &Server, path: &str, ws: bool, token: Option<&str>) -> Option<String> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut hdrs = vec![];
    if let Some(b) = &bearer {
        hdrs.push(("authorization", b.as_str()));
    }
    if ws {
        match ws_connect_from("127.0.0.1", &s.ws_url(path), &hdrs).await {
            Ok(_) => None,
            Err((st, body)) => gate_reason(st, &body),
        }
    } else {
        let mut r = http().get(s.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        let r = r.send().await.unwrap();
        let st = r.status().as_u16();
        gate_reason(st, &r.text().await.unwrap())
    }
}

/// Every listed route, both transports, with and without a credential, in
/// the secure and insecure presets: the server's answer is the engine's.
#[tokio::test]
async fn every_route_is_decided_by_the_gate_on_both_transports() {
    let ctx = LoadContext::new("127.0.0.1".parse().unwrap());
    for preset in ["secure", "insecure", "lan"] {
        let policy = CompiledPolicy::preset(preset, &ctx).unwrap();
        let s = if preset == "insecure" {
            launch().arg("--insecure").start()
        } else {
            launch()
                .policy(format!(
                    "{}/policies/{preset}.yaml",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .start()
        };
        let token = s.token.clone();
        for &(_, path, kind) in ROUTES {
            for ws in [false, true] {
                for cred in [None, token.as_deref()] {
                    let credential = match cred {
                        Some(_) => Credential::Valid(dashgate::policy::Principal::StartupToken),
                        None => Credential::None,
                    };
                    let transport = if ws { Transport::Ws } else { Transport::Http };
                    let want = policy
                        .decide(&facts(path, transport, credential))
                        .verdict
                        .err()
                        .map(|r| r.as_str().to_string());
                    let got = observe(&s, path, ws, cred).await;
                    assert_eq!(got, want, "{preset} {path} ws={ws} cred={}", cred.is_some());
                    if ws {
                        let http_got = observe(&s, path, false, cred).await;
                        assert_eq!(got, http_got, "{preset} {path}: upgrade and GET differ");
                    }
                }
            }
            let _ = kind;
        }
    }
}

/// The same in upstream mode: every listed route under `/.dashgate`, and
/// every listed path outside it (then the proxy's), over both transports,
/// with and without a credential, is decided as the engine decides it with
/// the presets compiled for upstream mode.
#[tokio::test]
async fn in_upstream_mode_every_route_and_proxied_path_is_decided_by_the_gate() {
    let up = upstream::TestUpstream::start().await;
    let ctx = LoadContext::new("127.0.0.1".parse().unwrap()).with_upstream(true);
    let mut paths = BTreeSet::new();
    for &(_, path, _) in ROUTES {
        paths.insert(path.to_string());
        if !path.starts_with("/.dashgate") {
            paths.insert(format!("/.dashgate{path}"));
        }
    }
    for preset in ["secure", "insecure", "lan"] {
        let policy = CompiledPolicy::preset(preset, &ctx).unwrap();
        let l = launch().args(["--upstream", &up.url()]);
        let s = if preset == "insecure" {
            l.arg("--insecure").start()
        } else {
            l.policy(format!(
                "{}/policies/{preset}.yaml",
                env!("CARGO_MANIFEST_DIR")
            ))
            .start()
        };
        let token = s.token.clone();
        for path in &paths {
            for ws in [false, true] {
                for cred in [None, token.as_deref()] {
                    let credential = match cred {
                        Some(_) => Credential::Valid(dashgate::policy::Principal::StartupToken),
                        None => Credential::None,
                    };
                    let transport = if ws { Transport::Ws } else { Transport::Http };
                    let want = policy
                        .decide(&facts(path, transport, credential))
                        .verdict
                        .err()
                        .map(|r| r.as_str().to_string());
                    let got = observe(&s, path, ws, cred).await;
                    assert_eq!(
                        got,
                        want,
                        "upstream {preset} {path} ws={ws} cred={}",
                        cred.is_some()
                    );
                }
            }
        }
    }
}

/// Without a credential in the secure preset every non-public route is 401,
/// including paths nobody routes.
#[tokio::test]
async fn secure_refuses_every_route_and_unknown_paths() {
    let s = launch().start();
    for &(_, path, kind) in ROUTES {
        if ["/healthz", "/login"].contains(&path) || path.starts_with("/assets/") {
            continue;
        }
        let got = observe(&s, path, kind == Kind::Ws, None).await;
        assert_eq!(got.as_deref(), Some("no_credential"), "{path}");
    }
    for path in ["/nowhere", "/api/x/y", "/vendor/xterm.js", "/chat"] {
        assert_eq!(
            observe(&s, path, false, None).await.as_deref(),
            Some("no_credential"),
            "{path}"
        );
    }
}

/// Path literals of every warp path filter in `src/` (`path!("a" / "b")`
/// and `path("a")`), as the first segment(s) they match.
fn path_literals() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for (i, _) in text.match_indices("path!(") {
                let rest = &text[i + 6..];
                let inner = &rest[..rest.find(')').unwrap()];
                let segs: Vec<&str> = inner
                    .split('/')
                    .map(str::trim)
                    .take_while(|s| s.starts_with('"'))
                    .map(|s| s.trim_matches('"'))
                    .collect();
                if !segs.is_empty() {
                    out.insert(format!("/{}", segs.join("/")));
                }
            }
            for (i, _) in text.match_indices("path(\"") {
                let rest = &text[i + 6..];
                let lit = &rest[..rest.find('"').unwrap()];
                out.insert(format!("/{lit}"));
            }
        }
    }
    out
}

#[test]
fn every_path_in_the_source_is_a_listed_route() {
    let lits = path_literals();
    assert!(lits.len() >= 6, "scanner found too little: {lits:?}");
    for lit in &lits {
        assert!(
            ROUTES
                .iter()
                .any(|(_, p, _)| p == lit || p.starts_with(&format!("{lit}/"))),
            "{lit} is routed in src/ but not listed in routes::ROUTES"
        );
    }
}

/// The same literals against a live secure server: each is refused without
/// a credential unless the engine says the preset allows it. A route added
/// beside the gate (`.or(...)` outside `routes()`) answers here and fails.
#[tokio::test]
async fn every_path_in_the_source_is_gated() {
    let ctx = LoadContext::new("127.0.0.1".parse().unwrap());
    let policy = CompiledPolicy::preset("secure", &ctx).unwrap();
    let s = launch().start();
    for lit in path_literals() {
        for ws in [false, true] {
            let t = if ws { Transport::Ws } else { Transport::Http };
            let want = policy
                .decide(&facts(&lit, t, Credential::None))
                .verdict
                .err()
                .map(|r| r.as_str().to_string());
            assert_eq!(observe(&s, &lit, ws, None).await, want, "{lit} ws={ws}");
        }
    }
}

/// The tree served any other way than by `server::run` (which decides each
/// request before the tree sees it) lets nothing through: every route, with
/// the credential the insecure preset would not even ask for, is refused.
#[tokio::test]
async fn the_tree_without_the_gates_decision_fails_closed() {
    use dashgate::chat::ChatConfig;
    use dashgate::state::{Config, PolicySource, StartupToken, State};
    let ctx = LoadContext::new(IpAddr::from([127, 0, 0, 1]));
    let state = State::new(
        Config {
            bind: "127.0.0.1:9".parse().unwrap(),
            static_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/static").into(),
            policy_source: PolicySource::Preset("insecure".into()),
            policy_context: LoadContext::new(IpAddr::from([127, 0, 0, 1])),
            startup_token: Some(StartupToken::new("t")),
            auth_window: std::time::Duration::from_secs(60),
            max_sockets: 16,
            chat: ChatConfig::new(vec!["/bin/sh".into()]),
            upstream: None,
        },
        CompiledPolicy::preset("insecure", &ctx).unwrap(),
    );
    let app = dashgate::routes::routes(state);
    for (method, path, _) in ROUTES {
        let res = warp::test::request()
            .method(method)
            .path(path)
            .header("host", "127.0.0.1:9")
            .header("authorization", "Bearer t")
            .reply(&app)
            .await;
        assert_eq!(res.status(), 500, "{method} {path}");
        let body = String::from_utf8_lossy(res.body());
        assert!(
            body.contains("\"reason\":\"not_decided\""),
            "{method} {path}: {body}"
        );
    }
}
