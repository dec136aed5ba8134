//! Who may do what with chat sessions, over the real binary (SPEC §2.5):
//! sessions belong to their principal, `chat.see_all` groups see every one,
//! an `access: read` viewer watches a live terminal without typing into
//! it, and a reload re-decides open sockets by their groups and access.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);

const ANA: &str = "ana-token-0123456789";
const BEN: &str = "ben-token-0123456789";
const VIC: &str = "vic-token-0123456789";

fn h(t: &str) -> String {
    hex::encode(Sha256::digest(t.as_bytes()))
}

/// ana (ops) and ben (devs) have full access to their own sessions; vic
/// (viewers) watches everyone's, read-only. The groups are arguments so
/// that a reload can move them.
fn team(ana_groups: &str, ben_groups: &str, vic_groups: &str) -> String {
    format!(
        r#"version: 1
credentials:
  startup_token: false
  tokens:
    - {{ name: ana, sha256: "{}", groups: {ana_groups} }}
    - {{ name: ben, sha256: "{}", groups: {ben_groups} }}
    - {{ name: vic, sha256: "{}", groups: {vic_groups} }}
chat:
  see_all: [viewers]
rules:
  - {{ name: health, paths: [/healthz], action: allow }}
  - {{ name: viewers watch, groups: [viewers], access: read, action: authenticate }}
  - {{ name: team works, groups: [ops, devs], action: authenticate }}
  - {{ name: nobody else, action: deny }}
"#,
        h(ANA),
        h(BEN),
        h(VIC)
    )
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

async fn call(s: &Server, method: &str, path: &str, token: &str) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let r = http()
        .request(m, s.url(path))
        .header("authorization", bearer(token))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn open_ws(s: &Server, query: &str, token: &str) -> Result<(Ws, Value), (u16, String)> {
    let auth = bearer(token);
    let mut ws = ws_connect(
        &s.ws_url(&format!("/api/ws?{query}")),
        &[("authorization", &auth)],
    )
    .await?;
    let hello = next_text(&mut ws, T).await.expect("a session frame");
    Ok((ws, serde_json::from_str(&hello).unwrap()))
}

async fn send_keys(ws: &mut Ws, keys: &str) {
    ws.send(Message::binary(keys.as_bytes().to_vec()))
        .await
        .unwrap();
}

/// Binary output until it contains `needle`, bounded.
async fn output_until(ws: &mut Ws, needle: &str) -> String {
    let mut seen = String::new();
    let end = tokio::time::Instant::now() + T;
    while !seen.contains(needle) {
        match tokio::time::timeout_at(end, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(_))) => {}
            other => panic!("waiting for {needle:?}: {other:?}; output so far: {seen:?}"),
        }
    }
    seen
}

async fn wait_file(p: &Path) -> bool {
    let end = tokio::time::Instant::now() + T;
    while tokio::time::Instant::now() < end {
        if p.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

fn server(policy: &Path) -> Server {
    launch()
        .policy(policy)
        .args(["--chat-command", "/bin/sh"])
        .start()
}

#[tokio::test]
async fn a_principal_outside_see_all_neither_sees_attaches_to_nor_ends_anothers_session() {
    let (_d, path) = policy_file(&team("[ops]", "[devs]", "[viewers]"));
    let s = server(&path);
    let auth = bearer(ANA);
    let mut feed = ws_connect(&s.ws_url("/api/events"), &[("authorization", &auth)])
        .await
        .unwrap();
    assert!(wait_text(&mut feed, "client.connected", T).await.is_some());

    let (status, created) = call(&s, "POST", "/api/sessions", ANA).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["owner"], "ana", "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let ev = wait_text(&mut feed, "session.created", T).await.unwrap();
    assert!(ev.contains(r#""owner":"ana""#), "{ev}");

    // ana sees it; ben does not, in the list or by id.
    let (_, mine) = call(&s, "GET", "/api/sessions", ANA).await;
    assert_eq!(mine.as_array().unwrap().len(), 1, "{mine}");
    let (status, bens) = call(&s, "GET", "/api/sessions", BEN).await;
    assert_eq!(status, 200);
    assert_eq!(bens, json!([]), "ben lists ana's session");
    let one = format!("/api/sessions/{id}");
    let (status, body) = call(&s, "GET", &one, BEN).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["reason"], "session_not_found", "{body}");
    // ben can neither attach nor end it: the same 404 as an unknown id.
    let refused = open_ws(&s, &format!("session={id}"), BEN).await.err();
    assert_eq!(refused.map(|(s, _)| s), Some(404));
    let (status, body) = call(&s, "DELETE", &one, BEN).await;
    assert_eq!(status, 404, "{body}");
    let (status, info) = call(&s, "GET", &one, ANA).await;
    assert_eq!(
        (status, &info["status"]),
        (200, &json!("running")),
        "{info}"
    );

    // ben's own session is his, and ana does not see it either.
    let (ws, hello) = open_ws(&s, "cols=80&rows=24", BEN).await.unwrap();
    assert_eq!(hello["owner"], "ben", "{hello}");
    let (_, anas) = call(&s, "GET", "/api/sessions", ANA).await;
    assert_eq!(anas.as_array().unwrap().len(), 1, "{anas}");
    let ev = wait_text(&mut feed, r#""principal_name":"ben""#, T).await;
    assert!(
        ev.is_some_and(|e| e.contains("client.")),
        "ben's socket is announced by name"
    );
    // vic (viewers, named in chat.see_all) sees both.
    let (_, vics) = call(&s, "GET", "/api/sessions", VIC).await;
    let owners: Vec<&str> = vics
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["owner"].as_str().unwrap())
        .collect();
    assert_eq!(owners.len(), 2, "{vics}");
    assert!(owners.contains(&"ana") && owners.contains(&"ben"), "{vics}");
    drop(ws);

    // ana ends her own.
    let (status, _) = call(&s, "DELETE", &one, ANA).await;
    assert_eq!(status, 202);
}

#[tokio::test]
async fn a_read_only_viewer_watches_live_but_never_types_and_a_reload_closes_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_d, path) = policy_file(&team("[ops]", "[devs]", "[viewers]"));
    let s = server(&path);

    let (mut owner, hello) = open_ws(&s, "cols=80&rows=24", ANA).await.unwrap();
    let id = hello["id"].as_str().unwrap().to_owned();
    send_keys(&mut owner, "echo ready-$((6*7))\n").await;
    output_until(&mut owner, "ready-42").await;

    let (mut viewer, vhello) = open_ws(&s, &format!("session={id}"), VIC).await.unwrap();
    assert_eq!(vhello["owner"], "ana", "{vhello}");
    // Told once that it is read-only, before any output.
    let note = next_text(&mut viewer, T).await.expect("a read_only frame");
    let note: Value = serde_json::from_str(&note).unwrap();
    assert_eq!(note["type"], "read_only", "{note}");

    // The owner's typing reaches the viewer live.
    send_keys(&mut owner, "echo live-$((7*6))-typed\n").await;
    output_until(&mut viewer, "live-42-typed").await;

    // The viewer's keys and control messages never reach the shell.
    let vmark = dir.path().join("viewer-was-here");
    let vmark2 = dir.path().join("viewer-input-was-here");
    send_keys(&mut viewer, &format!("touch {}\n", vmark.display())).await;
    let input = json!({ "type": "input", "data": format!("touch {}\n", vmark2.display()) });
    send_text(&mut viewer, &input.to_string()).await;
    send_text(&mut viewer, r#"{"type":"resize","cols":33,"rows":11}"#).await;
    // The owner's same keys, after the viewer's, do run.
    let amark = dir.path().join("owner-was-here");
    send_keys(&mut owner, &format!("touch {}\n", amark.display())).await;
    assert!(
        wait_file(&amark).await,
        "the owner's keys create the marker"
    );
    send_keys(&mut owner, "echo after-$((5*5))\n").await;
    output_until(&mut owner, "after-25").await;
    assert!(!vmark.exists(), "the viewer's keystrokes reached the shell");
    assert!(
        !vmark2.exists(),
        "the viewer's input message reached the shell"
    );
    let (_, info) = call(&s, "GET", &format!("/api/sessions/{id}"), ANA).await;
    assert_eq!(info["cols"], 80, "the viewer's resize was applied: {info}");
    // The owner's Sessions page data: who watches, read-only.
    let watchers = info["watchers"].as_array().unwrap();
    assert!(
        watchers.contains(&json!({ "principal": "vic", "read_only": true })),
        "{info}"
    );
    assert!(
        watchers.contains(&json!({ "principal": "ana", "read_only": false })),
        "{info}"
    );

    // Every refusal below is audited on the server channel.
    let ana = bearer(ANA);
    let mut audit = ws_connect(&s.ws_url("/api/events"), &[("authorization", &ana)])
        .await
        .unwrap();
    // REST that changes something: 403 read_only, naming the rule.
    for (method, p) in [
        ("POST", "/api/sessions".to_owned()),
        ("DELETE", format!("/api/sessions/{id}")),
    ] {
        let (status, body) = call(&s, method, &p, VIC).await;
        assert_eq!(status, 403, "{method} {p}: {body}");
        assert_eq!(body["reason"], "read_only", "{body}");
        assert_eq!(body["rule"], "viewers watch", "{body}");
    }
    // Nor may it start a shell of its own, or publish.
    let refused = open_ws(&s, "cols=80&rows=24", VIC).await.err().unwrap();
    assert_eq!(refused.0, 403);
    assert!(refused.1.contains("read_only"), "{}", refused.1);
    let auth = bearer(VIC);
    let Err(pubd) = ws_connect(
        &s.ws_url("/api/pub?channel=notes"),
        &[("authorization", &auth)],
    )
    .await
    else {
        panic!("a read-only publish was let through");
    };
    assert_eq!(pubd.0, 403);
    assert!(pubd.1.contains("read_only"), "{}", pubd.1);
    // The two refused upgrades (a GET, which the gate lets a read-only
    // admission make; the route refuses) are audited as the gate's are.
    let mut refused_upgrades = vec![];
    while refused_upgrades.len() < 2 {
        let ev = wait_text(&mut audit, "access.denied", T)
            .await
            .expect("an access.denied event per refused upgrade");
        let ev: Value = serde_json::from_str(&ev).unwrap();
        if ev["data"]["method"] == "GET" {
            assert_eq!(ev["data"]["reason"], "read_only", "{ev}");
            assert_eq!(ev["data"]["rule"], "viewers watch", "{ev}");
            refused_upgrades.push(ev["data"]["path"].as_str().unwrap().to_owned());
        }
    }
    refused_upgrades.sort();
    assert_eq!(
        refused_upgrades,
        ["/api/pub?[redacted]", "/api/ws?[redacted]"],
        "the query is redacted in the audit"
    );
    let (_, me) = call(&s, "GET", "/api/whoami", VIC).await;
    assert_eq!(me["groups"], json!(["viewers"]), "{me}");
    assert_eq!(me["access"], "read", "{me}");
    let (_, me) = call(&s, "GET", "/api/whoami", ANA).await;
    assert_eq!(
        (&me["groups"], &me["access"]),
        (&json!(["ops"]), &json!("full"))
    );

    // A reload that takes vic's group away closes its socket with 4403 and
    // the rule; one that leaves ana read-only closes hers too, to reconnect
    // as read-only rather than keep typing.
    std::fs::write(&path, team("[viewers]", "[devs, ops]", "[]")).unwrap();
    s.signal("HUP");
    let (code, reason) = close_of(&mut viewer, T).await.expect("viewer closed");
    assert_eq!((code, reason.as_str()), (4403, "nobody else"));
    let (code, reason) = close_of(&mut owner, T).await.expect("owner closed");
    assert_eq!(code, 4403);
    assert_eq!(reason, "read-only now (rule: viewers watch)");
    // ana reconnects: read-only now, still her own session.
    let (mut again, _) = open_ws(&s, &format!("session={id}"), ANA).await.unwrap();
    let note = next_text(&mut again, T).await.unwrap();
    assert!(note.contains("read_only"), "{note}");
}

#[tokio::test]
async fn a_proxy_names_groups_under_its_secret_and_a_rule_matches_them() {
    const SECRET: &str = "proxy-secret-for-groups-1234";
    let (_d, path) = policy_file(&format!(
        r#"version: 1
trusted_proxies: [loopback]
credentials:
  startup_token: false
  forward_auth:
    user_header: Remote-User
    secret_header: X-Proxy-Secret
    secret_sha256: "{}"
    groups_header: Remote-Groups
rules:
  - {{ name: health, paths: [/healthz], action: allow }}
  - {{ name: reviewers watch, groups: [reviewers], access: read, action: authenticate }}
  - {{ name: dev works, groups: [dev], action: authenticate }}
  - {{ name: nobody else, action: deny }}
"#,
        h(SECRET)
    ));
    let s = launch().policy(&path).start();
    let who = |groups: Option<&'static str>, secret: &'static str| {
        let mut r = http()
            .get(s.url("/api/whoami"))
            .header("remote-user", "erin")
            .header("x-proxy-secret", secret);
        if let Some(g) = groups {
            r = r.header("remote-groups", g);
        }
        r.send()
    };
    let r = who(Some("staff, reviewers"), SECRET).await.unwrap();
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["groups"], json!(["staff", "reviewers"]), "{me}");
    assert_eq!(
        (&me["rule"], &me["access"]),
        (&json!("reviewers watch"), &json!("read"))
    );
    let r = who(Some("dev"), SECRET).await.unwrap();
    let me: Value = r.json().await.unwrap();
    assert_eq!(
        (&me["rule"], &me["access"]),
        (&json!("dev works"), &json!("full"))
    );
    // No groups: a signed-in non-member falls through to the deny rule.
    let r = who(None, SECRET).await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["rule"], "nobody else", "{body}");
    // Without the secret neither the user nor its groups are believed: an
    // anonymous caller at a group rule is asked to sign in.
    let r = who(Some("dev"), "wrong").await.unwrap();
    assert_eq!(r.status(), 401);
    // A read-only admission's POST: 403 read_only, naming the rule.
    let r = http()
        .post(s.url("/api/sessions"))
        .header("remote-user", "erin")
        .header("x-proxy-secret", SECRET)
        .header("remote-groups", "reviewers")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (&body["reason"], &body["rule"]),
        (&json!("read_only"), &json!("reviewers watch"))
    );
}
