//! Live policy: reloads on SIGHUP and on file change, revocation of open
//! sockets, metrics and the audit trail, over the real binary.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(5);

const OPEN: &str = "version: 1\nrules:\n  - name: open to all\n    action: allow\n";
const CLOSED: &str = "version: 1\nrules:\n  - name: status closed\n    paths: [/api/status]\n    action: deny\n  - name: the rest\n    action: allow\n";
const BROKEN: &str =
    "version: 1\nrules:\n  - name: oops\n    action: allow\n    form: [loopback]\n";

/// Replace `path` the way editors do: write a temp file, rename it over.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn status(s: &Server, local: &str) -> u16 {
    http_from(local)
        .get(s.url("/api/status"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn server_feed(s: &Server) -> Ws {
    let mut ws = ws_connect(&s.ws_url("/api/events"), &[]).await.unwrap();
    assert!(wait_text(&mut ws, "client.connected", T).await.is_some());
    ws
}

#[tokio::test]
async fn broken_file_on_sighup_keeps_the_old_policy() {
    let (_d, path) = policy_file(OPEN);
    let s = launch().policy(&path).start();
    let mut feed = server_feed(&s).await;
    std::fs::write(&path, BROKEN).unwrap();
    s.signal("HUP");
    let ev = wait_text(&mut feed, "policy.reload_failed", T)
        .await
        .expect("reload_failed event");
    assert!(ev.contains("policy.yaml:5:"), "{ev}");
    assert!(s.wait_output("policy reload failed", T));
    assert_eq!(
        status(&s, "127.0.0.1").await,
        200,
        "old policy must keep serving"
    );
    std::fs::write(&path, CLOSED).unwrap();
    s.signal("HUP");
    assert!(wait_text(&mut feed, "policy.reloaded", T).await.is_some());
    let deadline = Instant::now() + T;
    while status(&s, "127.0.0.1").await != 403 {
        assert!(Instant::now() < deadline, "fixed policy never applied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn editor_style_replace_is_picked_up_without_sighup() {
    let (_d, path) = policy_file(OPEN);
    let s = launch().policy(&path).start();
    assert_eq!(status(&s, "127.0.0.1").await, 200);
    let before: serde_json::Value = http()
        .get(s.url("/api/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    replace(&path, CLOSED);
    let deadline = Instant::now() + T;
    while status(&s, "127.0.0.1").await != 403 {
        assert!(Instant::now() < deadline, "replaced file never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.wait_output("file changed", T));
    // Back to open: /api/status shows the new hash and load time.
    replace(&path, OPEN.replace("open to all", "open again").as_str());
    let deadline = Instant::now() + T;
    while status(&s, "127.0.0.1").await != 200 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after: serde_json::Value = http()
        .get(s.url("/api/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(before["policy"]["sha256"], after["policy"]["sha256"]);
    assert_ne!(before["policy"]["loaded_at"], after["policy"]["loaded_at"]);
    assert_eq!(after["policy"]["source"], path.to_str().unwrap());
}

#[tokio::test]
async fn reload_closes_refused_sockets_with_4403_and_keeps_the_rest() {
    let two = "version: 1\nrules:\n  - name: two boxes\n    from: [127.0.0.2, 127.0.0.3]\n    action: allow\n  - name: nobody else\n    action: deny\n";
    let one = "version: 1\nrules:\n  - name: one box\n    from: [127.0.0.2]\n    action: allow\n  - name: laptop left the office\n    action: deny\n";
    let (_d, path) = policy_file(two);
    let s = launch().policy(&path).start();
    let url = s.ws_url("/api/events");
    let (mut stays, _) = ws_connect_from("127.0.0.2", &url, &[]).await.unwrap();
    let (mut goes, _) = ws_connect_from("127.0.0.3", &url, &[]).await.unwrap();
    assert!(wait_text(&mut goes, "client.connected", T).await.is_some());
    std::fs::write(&path, one).unwrap();
    let t0 = Instant::now();
    s.signal("HUP");
    let close = close_of(&mut goes, T).await.expect("closed");
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "closed after {:?}",
        t0.elapsed()
    );
    assert_eq!(close, (4403, "laptop left the office".to_string()));
    // The allowed socket stays and hears about the reload and about the
    // other socket leaving (the two events come from different tasks, in
    // either order).
    assert!(wait_texts(&mut stays, &["policy.reloaded", "client.disconnected"], T).await);
}

#[tokio::test]
async fn metrics_parse_and_move_with_requests() {
    let s = launch().arg("--insecure").start();
    let scrape = || async {
        let r = http().get(s.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        let lines = text.lines().map(|l| Ok(l.to_string()));
        prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text")
    };
    let value =
        |scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>| -> f64 {
            scrape
                .samples
                .iter()
                .filter(|s| s.metric == name)
                .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
                .map(|s| match s.value {
                    prometheus_parse::Value::Counter(v)
                    | prometheus_parse::Value::Gauge(v)
                    | prometheus_parse::Value::Untyped(v) => v,
                    _ => 0.0,
                })
                .sum()
        };
    let before = scrape().await;
    for _ in 0..7 {
        http().get(s.url("/api/status")).send().await.unwrap();
    }
    let (_held, _) = ws_connect_from("127.0.0.1", &s.ws_url("/api/events"), &[])
        .await
        .unwrap();
    let after = scrape().await;
    let reqs = "dashgate_http_requests_total";
    let st = Some(("route", "/api/status"));
    assert_eq!(value(&after, reqs, st) - value(&before, reqs, st), 7.0);
    let dec = "dashgate_decisions_total";
    assert!(
        value(&after, dec, Some(("rule", "everything is allowed"))) >= 7.0
            || value(&after, dec, Some(("outcome", "allowed"))) >= 8.0
    );
    assert_eq!(
        value(
            &after,
            "dashgate_websockets_open",
            Some(("route", "/api/events"))
        ),
        1.0
    );
    assert!(value(&after, "dashgate_event_publishes_total", None) >= 1.0);
}

#[tokio::test]
async fn no_request_errs_during_fifty_reloads() {
    let a = "version: 1\nrules:\n  - name: open\n    from: [127.0.0.2]\n    action: allow\n  - name: rest\n    action: authenticate\n";
    let b = "version: 1\nrules:\n  - name: locked\n    action: authenticate\n";
    let (_d, path) = policy_file(a);
    let s = Arc::new(launch().policy(&path).start());
    let done = Arc::new(AtomicBool::new(false));
    let (ok, unauth, errors) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut loops = vec![];
    for _ in 0..4 {
        let (s, done, ok, unauth, errors) = (
            s.clone(),
            done.clone(),
            ok.clone(),
            unauth.clone(),
            errors.clone(),
        );
        loops.push(tokio::spawn(async move {
            let c = http_from("127.0.0.2");
            let end = Instant::now() + Duration::from_secs(60);
            while !done.load(Ordering::Relaxed) && Instant::now() < end {
                match c
                    .get(s.url("/api/whoami"))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                {
                    Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(401) => unauth.fetch_add(1, Ordering::Relaxed),
                    _ => errors.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    for i in 0..50 {
        replace(&path, if i % 2 == 0 { b } else { a });
        s.signal("HUP");
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    done.store(true, Ordering::Relaxed);
    for l in loops {
        l.await.unwrap();
    }
    let (ok, unauth, errors) = (
        ok.load(Ordering::Relaxed),
        unauth.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    assert_eq!(
        errors,
        0,
        "requests that saw something other than a policy decision; server said:\n{}",
        s.output()
    );
    assert!(
        ok > 0 && unauth > 0,
        "both policies took effect: {ok} allowed, {unauth} refused"
    );
    let reloads: serde_json::Value = http()
        .get(s.url("/api/status"))
        .bearer_auth(s.token.as_deref().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        reloads["policy"]["rules"], 2,
        "the last policy written (open, two rules) is in force"
    );
}

#[tokio::test]
async fn json_audit_lines_for_denials_and_sign_ins() {
    let s = launch().arg("--log-format").arg("json").start();
    let token = s.token.clone().unwrap();
    http().get(s.url("/api/policy")).send().await.unwrap();
    http()
        .post(s.url("/api/login"))
        .json(&serde_json::json!({"token": "wrong"}))
        .send()
        .await
        .unwrap();
    http()
        .post(s.url("/api/login"))
        .json(&serde_json::json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert!(s.wait_output("\"sign-in\"", T));
    let out = s.output();
    let json: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let denial = json
        .iter()
        .find(|v| v["message"] == "access denied")
        .expect("denial line");
    assert_eq!(denial["reason"], "no_credential");
    assert_eq!(denial["path"], "/api/policy");
    assert_eq!(denial["client"], "127.0.0.1");
    assert_eq!(denial["rule"], "everything else needs a credential");
    assert!(json
        .iter()
        .any(|v| v["message"] == "sign-in failed" && v["outcome"] == "bad_credential"));
    assert!(json
        .iter()
        .any(|v| v["message"] == "sign-in" && v["outcome"] == "ok"));
    assert_eq!(out.matches(&token).count(), 1);
}
