//! Reading and parsing the policy (SPEC §8): a broken file is reported once
//! per change, never in a loop; a file deeper than 64 levels or larger than
//! 1 MiB is refused at once, naming the limit and the line, by `policy check`
//! and by the server alike; the server keeps serving while a reload parses.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(10);

const OPEN: &str = "version: 1\nrules:\n  - name: open to all\n    action: allow\n";
const BROKEN: &str =
    "version: 1\nrules:\n  - name: oops\n    action: allow\n    form: [loopback]\n";
const BROKEN_AGAIN: &str =
    "version: 1\nrules:\n  - name: oops\n    action: allow\n    fro: [loopback]\n";

/// Every `policy.reload_failed` frame on `feed` for `window`.
async fn count_failures(feed: &mut Ws, window: Duration) -> usize {
    let end = Instant::now() + window;
    let mut n = 0;
    while let Some(t) = next_text(feed, end.saturating_duration_since(Instant::now())).await {
        if t.contains("policy.reload_failed") {
            n += 1;
        }
    }
    n
}

async fn server_feed(s: &Server) -> Ws {
    let mut ws = ws_connect(&s.ws_url("/api/events"), &[]).await.unwrap();
    assert!(wait_text(&mut ws, "client.connected", T).await.is_some());
    ws
}

fn log_lines(s: &Server, needle: &str) -> usize {
    s.output().lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test]
async fn a_broken_file_saved_once_is_reported_once() {
    let (_d, path) = policy_file(OPEN);
    let s = launch().policy(&path).start();
    let mut feed = server_feed(&s).await;
    std::fs::write(&path, BROKEN).unwrap();
    let first = wait_text(&mut feed, "policy.reload_failed", T)
        .await
        .expect("the broken file is reported");
    assert!(first.contains("policy.yaml:5:"), "{first}");
    // Anything more in the next few seconds would be the reload's own read
    // of the file waking the watcher again.
    let more = count_failures(&mut feed, Duration::from_secs(3)).await;
    assert_eq!(more, 0, "reported again without a change:\n{}", s.output());
    assert_eq!(log_lines(&s, "policy reload failed"), 1, "{}", s.output());

    // A new change of the file is a new report (once).
    std::fs::write(&path, BROKEN_AGAIN).unwrap();
    let second = wait_text(&mut feed, "policy.reload_failed", T)
        .await
        .expect("the second broken version is reported");
    assert!(second.contains("fro"), "{second}");
    let more = count_failures(&mut feed, Duration::from_secs(2)).await;
    assert_eq!(more, 0, "reported again without a change:\n{}", s.output());
    assert_eq!(log_lines(&s, "policy reload failed"), 2);

    // Writing the first broken version again is a change too.
    std::fs::write(&path, BROKEN).unwrap();
    assert!(wait_text(&mut feed, "policy.reload_failed", T)
        .await
        .is_some());
    // The old policy serves throughout.
    let r = http().get(s.url("/api/status")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn a_good_file_is_reloaded_once_per_change() {
    let (_d, path) = policy_file(OPEN);
    let s = launch().policy(&path).start();
    let mut feed = server_feed(&s).await;
    std::fs::write(&path, OPEN.replace("open to all", "open again")).unwrap();
    assert!(wait_text(&mut feed, "policy.reloaded", T).await.is_some());
    let end = Instant::now() + Duration::from_secs(2);
    let mut again = 0;
    while let Some(t) = next_text(&mut feed, end.saturating_duration_since(Instant::now())).await {
        again += usize::from(t.contains("policy.reload"));
    }
    assert_eq!(again, 0, "{}", s.output());
}

/// `dashgate policy check FILE`, bounded in time (a hang is a failure, not
/// a measurement).
fn check(path: &Path) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dashgate"))
        .args(["policy", "check"])
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(&mut child, Duration::from_secs(300))
}

/// The server started on `path`: it must exit by itself.
fn serve(path: &Path) -> Output {
    let mut child = launch()
        .policy(path)
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(&mut child, Duration::from_secs(300))
}

fn wait_bounded(child: &mut std::process::Child, limit: Duration) -> Output {
    let end = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut out = String::new();
    let mut err = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    Output {
        status: child.wait().unwrap(),
        stdout: out.into_bytes(),
        stderr: err.into_bytes(),
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `x:` on line 4 holding `depth` nested flow sequences on that one line.
fn deep_flow(depth: usize) -> String {
    format!(
        "version: 1\nrules:\n  - action: allow\nx: {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

#[test]
fn a_deep_flow_file_is_refused_with_the_limit_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.yaml");
    // 200 KB of brackets.
    std::fs::write(&path, deep_flow(100_000)).unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("deep.yaml:4:"), "{err}");
    assert!(err.contains("64 levels"), "{err}");

    let out = serve(&path);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("deep.yaml:4:"), "{err}");
    assert!(err.contains("64 levels"), "{err}");
}

#[test]
fn a_deep_block_file_is_refused_at_the_line_of_the_level_too_deep() {
    // `a:` nested one level per line, indented by one space per level: the
    // root mapping is level 1, so the key on line 64 opens level 65.
    let mut text = String::from("version: 1\nrules:\n  - action: allow\nx:\n");
    for level in 0..80 {
        text.push_str(&" ".repeat(level + 1));
        text.push_str("a:\n");
    }
    text.push_str(&" ".repeat(82));
    text.push_str("1\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("deep.yaml");
    std::fs::write(&path, &text).unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    // The root mapping is level 1 and the one under `x` (line 5) level 2,
    // so level 65 is the mapping that starts on line 68.
    assert!(err.contains("deep.yaml:68:"), "{err}");
    assert!(err.contains("64 levels"), "{err}");

    // 64 levels exactly pass the depth check (and fail for what they hold).
    std::fs::write(&path, deep_flow(63)).unwrap();
    let out = check(&path);
    let err = stderr(&out);
    assert!(!err.contains("64 levels"), "{err}");
    assert!(err.contains("unknown field `x`"), "{err}");
}

#[test]
fn a_file_over_one_mib_is_refused_naming_the_size_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    let mut text = String::from("version: 1\nrules:\n  - action: allow\n");
    let pad = format!("# {}\n", "x".repeat(1000));
    while text.len() <= 1024 * 1024 {
        text.push_str(&pad);
    }
    std::fs::write(&path, &text).unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("big.yaml:"), "{err}");
    assert!(err.contains("1 MiB"), "{err}");
    let out = serve(&path);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("1 MiB"), "{}", stderr(&out));

    // Just under the limit, the same file is fine.
    text.truncate(1024 * 1024 - 10);
    let cut = text.rfind('\n').unwrap();
    text.truncate(cut + 1);
    std::fs::write(&path, &text).unwrap();
    let out = check(&path);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[tokio::test]
async fn a_big_file_over_sighup_is_refused_once_and_the_old_policy_stays() {
    let (_d, path) = policy_file(OPEN);
    let s = launch().policy(&path).start();
    let mut feed = server_feed(&s).await;
    std::fs::write(&path, deep_flow(100_000)).unwrap();
    let ev = wait_text(&mut feed, "policy.reload_failed", Duration::from_secs(60))
        .await
        .expect("the deep file is refused");
    assert!(ev.contains("64 levels"), "{ev}");
    assert!(ev.contains("policy.yaml:4:"), "{ev}");
    let r = http().get(s.url("/api/status")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// A policy that is large but within the limits: many networks, each used.
fn big_valid_policy() -> String {
    let mut text = String::from("version: 1\nnetworks:\n");
    let mut i = 0;
    while text.len() < 900 * 1024 {
        text.push_str(&format!(
            "  n{i}: [10.{}.{}.0/24]\n",
            (i / 256) % 256,
            i % 256
        ));
        i += 1;
    }
    text.push_str("rules:\n  - name: big\n    from: [n0, n1]\n    action: allow\n");
    text.push_str("  - name: rest\n    action: allow\n");
    text
}

#[tokio::test]
async fn the_server_answers_while_a_big_reload_is_parsed() {
    let (_d, path) = policy_file(OPEN);
    // One worker thread: a parse on it would stop every request.
    let s = launch()
        .policy(&path)
        .env("TOKIO_WORKER_THREADS", "1")
        .env("RUST_LOG", "info,dashgate::server::reload=debug")
        .start();
    let mut feed = server_feed(&s).await;
    std::fs::write(&path, big_valid_policy()).unwrap();
    assert!(s.wait_output("reading the policy", T), "{}", s.output());
    // Best effort: a parse of 900 KB outlasts a /healthz round trip by far,
    // so at least the first answer comes while it runs.
    let c = http();
    let mut answered_during = 0;
    for _ in 0..1000 {
        let r = c.get(s.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        if s.output().contains("policy reloaded") {
            break;
        }
        answered_during += 1;
    }
    assert!(
        answered_during > 0,
        "no /healthz answered while the reload parsed:\n{}",
        s.output()
    );
    let ev = wait_text(&mut feed, "policy.reload", Duration::from_secs(120))
        .await
        .expect("the reload finishes");
    assert!(ev.contains("policy.reloaded"), "{ev}");
}

#[test]
fn a_long_chain_of_networks_is_refused_not_a_crash() {
    // n1: [n0], n2: [n1], … resolving recursed once per link, and 40,000
    // links overflowed the stack (at start, or killing the server on a
    // reload).
    let mut text =
        String::from("version: 1\nrules:\n  - action: allow\nnetworks:\n  n0: [10.0.0.0/8]\n");
    for i in 1..40_000 {
        text.push_str(&format!("  n{i}: [n{}]\n", i - 1));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chain.yaml");
    std::fs::write(&path, &text).unwrap();
    let out = check(&path);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("chain.yaml:") && err.contains("64 levels"),
        "{err}"
    );
}
