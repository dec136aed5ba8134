//! `--token-file FILE` / `DASHGATE_TOKEN_FILE` (SPEC §4): the startup token
//! read from a file, so it is in no process environment; the chat child
//! gets neither the token nor the file's path.

mod common;

use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(10);
const TOKEN: &str = "tok-from-a-file-7f3a9c";

fn token_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dashgate-token");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Run the server with `launch`; it must exit by itself, quickly.
fn exit_of(l: Launch) -> Output {
    let mut child = l
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + T;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the server did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

async fn status_with(s: &Server, bearer: Option<&str>) -> u16 {
    let mut r = http().get(s.url("/api/status"));
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn the_token_from_the_file_signs_in() {
    let (_d, path) = token_file(&format!("{TOKEN}\n"));
    let s = launch()
        .args(["--token-file", path.to_str().unwrap()])
        .start();
    assert_eq!(s.token.as_deref(), Some(TOKEN), "{}", s.output());
    assert_eq!(status_with(&s, None).await, 401);
    assert_eq!(status_with(&s, Some(TOKEN)).await, 200);
    // A visit with the printed link sets the cookie.
    let r = http()
        .get(s.url(&format!("/?token={TOKEN}")))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "{:?}", r.headers());
    assert!(r.headers().get("set-cookie").is_some());
}

#[tokio::test]
async fn the_variable_names_the_file_too() {
    let (_d, path) = token_file(&format!("{TOKEN}\r\n"));
    let s = launch()
        .env("DASHGATE_TOKEN_FILE", path.to_str().unwrap())
        .start();
    assert_eq!(s.token.as_deref(), Some(TOKEN), "{}", s.output());
    assert_eq!(status_with(&s, Some(TOKEN)).await, 200);
}

#[test]
fn an_empty_or_missing_file_is_an_error_naming_it() {
    for (text, what) in [("", "is empty"), ("\n", "is empty")] {
        let (_d, path) = token_file(text);
        let p = path.to_str().unwrap();
        for l in [
            launch().args(["--token-file", p]),
            launch().env("DASHGATE_TOKEN_FILE", p),
        ] {
            let out = exit_of(l);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{err}");
            assert!(err.contains(p) && err.contains(what), "{err}");
        }
    }
    let missing = "/nonexistent/dashgate-token";
    let out = exit_of(launch().args(["--token-file", missing]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(missing) && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn a_file_and_a_token_variable_together_are_an_error() {
    let (_d, path) = token_file(TOKEN);
    for var in ["DASHGATE_TOKEN", "HERMES_DASHBOARD_SESSION_TOKEN"] {
        let out = exit_of(
            launch()
                .args(["--token-file", path.to_str().unwrap()])
                .env(var, "another"),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("--token-file") && err.contains(var), "{err}");
    }
}

/// Everything a chat session running `env` prints, until it exits.
async fn chat_env(s: &Server) -> String {
    let token = s.token.clone().expect("a token");
    let auth = format!("Bearer {token}");
    let mut ws = ws_connect(
        &s.ws_url("/api/ws?cols=200&rows=50"),
        &[("authorization", auth.as_str())],
    )
    .await
    .unwrap_or_else(|e| panic!("upgrade refused: {e:?}"));
    let mut seen = String::new();
    let end = tokio::time::Instant::now() + T;
    loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"exit\"") => break,
            Ok(Some(Ok(_))) => {}
            other => panic!("waiting for the exit: {other:?}; output so far: {seen:?}"),
        }
    }
    seen
}

#[tokio::test]
async fn the_chat_child_gets_neither_the_token_nor_the_file() {
    let (_d, path) = token_file(&format!("{TOKEN}\n"));
    let p = path.to_str().unwrap();
    let s = launch()
        .args(["--chat-command", "env"])
        .env("DASHGATE_TOKEN_FILE", p)
        .start();
    let env = chat_env(&s).await;
    assert!(env.contains("TERM=xterm-256color"), "{env}");
    for needle in [
        TOKEN,
        p,
        "dashgate-token",
        "DASHGATE_TOKEN=",
        "DASHGATE_TOKEN_FILE",
        "HERMES_DASHBOARD_SESSION_TOKEN",
    ] {
        assert!(
            !env.contains(needle),
            "{needle:?} in the child's env:\n{env}"
        );
    }
}
