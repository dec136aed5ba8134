//! The chat library against a real PTY and real children (`/bin/sh`), no
//! server: what a viewer sees, how sessions end, and the limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashgate::chat::{
    ChatConfig, ChatError, EventSink, Registry, SessionStatus, Viewer, ViewerEvent,
};
use parking_lot::Mutex;
use serde_json::Value;

type Events = Arc<Mutex<Vec<(String, Value)>>>;

fn registry_with(cfg: ChatConfig) -> (Arc<Registry>, Events) {
    let events: Events = Arc::default();
    let sink = events.clone();
    let on_event: EventSink = Arc::new(move |kind: &str, data: Value| {
        sink.lock().push((kind.to_string(), data));
    });
    (Registry::new(cfg, on_event), events)
}

fn cmd(words: &[&str]) -> ChatConfig {
    ChatConfig::new(words.iter().map(|s| s.to_string()).collect())
}

fn sh_c(script: &str) -> ChatConfig {
    cmd(&["/bin/sh", "-c", script])
}

/// Collect output until `needle` appears; panics with what came on timeout.
async fn read_until(viewer: &mut Viewer, needle: &str, within: Duration) -> String {
    let mut seen = String::from_utf8_lossy(&viewer.scrollback).into_owned();
    let deadline = tokio::time::Instant::now() + within;
    while !seen.contains(needle) {
        match tokio::time::timeout_at(deadline, viewer.recv()).await {
            Ok(Some(ViewerEvent::Output(b))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(other) => panic!("waiting for {needle:?}, got {other:?}; output so far: {seen:?}"),
            Err(_) => panic!("no {needle:?} within {within:?}; output so far: {seen:?}"),
        }
    }
    seen
}

/// Skip output; return the first non-output event.
async fn next_end(viewer: &mut Viewer, within: Duration) -> Option<ViewerEvent> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, viewer.recv()).await {
            Ok(Some(ViewerEvent::Output(_))) => continue,
            Ok(other) => return other,
            Err(_) => panic!("the viewer saw no end within {within:?}"),
        }
    }
}

/// The state letter in `/proc/PID/stat`, or `None` when the pid is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The events of `kind` once there is at least one (they are published just
/// after viewers learn of the exit), or none after a while.
async fn wait_events(events: &Events, kind: &str) -> Vec<Value> {
    for _ in 0..200 {
        let got = events_of(events, kind);
        if !got.is_empty() {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Vec::new()
}

fn events_of(events: &Events, kind: &str) -> Vec<Value> {
    let all = events.lock();
    all.iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, v)| v.clone())
        .collect()
}

const T: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_command_is_echoed_and_run() {
    let (reg, events) = registry_with(cmd(&["/bin/sh"]));
    let s = reg.create(80, 24).unwrap();
    let mut v = s.attach().unwrap();
    s.write(b"echo hi-$((6*7))\r").await.unwrap();
    let out = read_until(&mut v, "hi-42", T).await;
    assert!(
        out.contains("echo hi-$((6*7))"),
        "the PTY echoes typing: {out:?}"
    );

    let created = events_of(&events, "session.created");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["id"], s.id());
    assert_eq!(created[0]["pid"], s.pid());
    assert_eq!(created[0]["command"], serde_json::json!(["/bin/sh"]));
    assert_eq!(s.id().len(), 16);
    assert!(s.id().bytes().all(|b| b.is_ascii_hexdigit()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resize_reaches_the_program() {
    let (reg, _) = registry_with(cmd(&["/bin/sh"]));
    let s = reg.create(80, 24).unwrap();
    let mut v = s.attach().unwrap();
    s.resize(101, 33).unwrap();
    s.write(b"stty size\r").await.unwrap();
    read_until(&mut v, "33 101", T).await;
    let info = s.info();
    assert_eq!((info.cols, info.rows), (101, 33));

    assert_eq!(
        s.resize(0, 10),
        Err(ChatError::BadSize { cols: 0, rows: 10 })
    );
    assert!(matches!(s.resize(80, 1001), Err(ChatError::BadSize { .. })));
    assert!(matches!(
        reg.create(1001, 24),
        Err(ChatError::BadSize { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reattach_replays_the_scrollback_then_live_output_without_repeats() {
    let (reg, _) = registry_with(cmd(&["/bin/sh"]));
    let s = reg.create(80, 24).unwrap();
    let mut first = s.attach().unwrap();
    s.write(b"echo first-$((1+1))\r").await.unwrap();
    read_until(&mut first, "first-2", T).await;
    drop(first);
    assert_eq!(s.info().viewers, 0, "dropping the viewer detaches it");

    let mut again = reg.get(s.id()).unwrap().attach().unwrap();
    let scrollback = String::from_utf8_lossy(&again.scrollback).into_owned();
    assert!(scrollback.contains("first-2"), "{scrollback:?}");
    assert_eq!(s.info().viewers, 1);
    s.write(b"echo second-$((2+1))\r").await.unwrap();
    let all = read_until(&mut again, "second-3", T).await;
    assert_eq!(all.matches("first-2").count(), 1, "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_viewers_see_the_same_output_and_both_may_type() {
    let (reg, _) = registry_with(cmd(&["/bin/sh"]));
    let s = reg.create(80, 24).unwrap();
    let mut a = s.attach().unwrap();
    let mut b = s.attach().unwrap();
    assert_eq!(s.info().viewers, 2);
    a.session().write(b"echo from-a-$((3*3))\r").await.unwrap();
    read_until(&mut a, "from-a-9", T).await;
    read_until(&mut b, "from-a-9", T).await;
    b.session().write(b"echo from-b-$((4*4))\r").await.unwrap();
    read_until(&mut a, "from-b-16", T).await;
    read_until(&mut b, "from-b-16", T).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_never_reads_is_dropped_while_the_others_get_everything() {
    const N: usize = 24 * 1024 * 1024;
    // Waits for a line so both viewers are attached before the flood; echo
    // is off so the output is exactly the flood and the final line.
    let script = format!("stty -echo; echo ready; read go; head -c {N} /dev/zero; echo flood-done");
    let (reg, _) = registry_with(sh_c(&script));
    let s = reg.create(80, 24).unwrap();
    let mut stuck = s.attach().unwrap();
    let mut fast = s.attach().unwrap();
    read_until(&mut fast, "ready\r\n", T).await;
    let started = Instant::now();
    s.write(b"go\r").await.unwrap();

    let mut total = 0;
    let mut tail = Vec::new();
    let mut viewers_midway = None;
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(30), fast.recv()).await {
            Ok(Some(ViewerEvent::Output(b))) => {
                total += b.len();
                if viewers_midway.is_none() && total > N / 2 {
                    viewers_midway = Some(s.info().viewers);
                }
                tail.extend_from_slice(&b[b.len().saturating_sub(16)..]);
                tail.drain(..tail.len().saturating_sub(16));
            }
            Ok(other) => break other,
            Err(_) => panic!("the fast viewer stalled after {total} bytes"),
        }
    };
    let took = started.elapsed();
    assert_eq!(
        end,
        Some(ViewerEvent::Exit {
            code: Some(0),
            signal: None
        }),
        "after {total} bytes"
    );
    assert_eq!(
        total,
        N + "flood-done\r\n".len(),
        "the fast viewer got every byte"
    );
    assert!(tail.ends_with(b"\0flood-done\r\n"), "{tail:?}");
    assert_eq!(stuck.recv().await, Some(ViewerEvent::Lagged));
    assert_eq!(stuck.recv().await, None);
    assert_eq!(
        viewers_midway,
        Some(1),
        "the lagged viewer was detached mid-flood"
    );
    eprintln!("{N} bytes through the PTY in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_killed_from_outside_is_reaped_and_reported() {
    let (reg, events) = registry_with(sh_c("echo ready; exec sleep 600"));
    let s = reg.create(80, 24).unwrap();
    let mut v = s.attach().unwrap();
    read_until(&mut v, "ready", T).await;
    let pid = s.pid();
    assert_eq!(
        proc_state(pid).map(|c| c != 'Z'),
        Some(true),
        "running before"
    );

    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let end = next_end(&mut v, T).await;
    assert_eq!(
        end,
        Some(ViewerEvent::Exit {
            code: None,
            signal: Some(9)
        })
    );
    assert_eq!(
        proc_state(pid),
        None,
        "reaped: no /proc/{pid} left (no zombie)"
    );
    let exited = wait_events(&events, "session.exited").await;
    assert_eq!(exited.len(), 1);
    assert_eq!(exited[0]["id"], s.id());
    assert_eq!(exited[0]["signal"], 9);
    assert_eq!(exited[0]["code"], Value::Null);

    // Exited sessions stay listed with how they ended, and accept no input.
    let info = reg.list().into_iter().find(|i| i.id == s.id()).unwrap();
    assert_eq!(info.status, SessionStatus::Exited);
    assert_eq!(info.exit_signal, Some(9));
    assert_eq!(s.write(b"x").await, Err(ChatError::Exited));
    assert_eq!(s.resize(80, 24), Err(ChatError::Exited));
    assert_eq!(reg.running(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_exit_reports_the_code_and_late_viewers_get_scrollback_then_exit() {
    let (reg, _) = registry_with(sh_c("echo last-words; exit 3"));
    let s = reg.create(80, 24).unwrap();
    let exit = tokio::time::timeout(T, s.wait_exit()).await.unwrap();
    assert_eq!((exit.code, exit.signal), (Some(3), None));
    let info = s.info();
    assert_eq!(
        (info.status, info.exit_code),
        (SessionStatus::Exited, Some(3))
    );

    let mut late = s.attach().unwrap();
    assert!(String::from_utf8_lossy(&late.scrollback).contains("last-words"));
    assert_eq!(
        late.recv().await,
        Some(ViewerEvent::Exit {
            code: Some(3),
            signal: None
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_session_is_killed_but_a_watched_one_is_not() {
    let mut cfg = cmd(&["/bin/sh"]);
    cfg.idle_timeout = Duration::from_millis(300);
    let (reg, events) = registry_with(cfg);
    let idle = reg.create(80, 24).unwrap();
    let watched = reg.create(80, 24).unwrap();
    let mut v = watched.attach().unwrap();

    let exit = tokio::time::timeout(T, idle.wait_exit())
        .await
        .expect("idle session killed");
    assert_eq!(exit.signal, Some(1), "ended by SIGHUP");
    assert_eq!(events_of(&events, "session.exited")[0]["id"], idle.id());

    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(watched.is_running(), "a session with a viewer is not idle");
    watched.write(b"echo still-$((5+5))\r").await.unwrap();
    read_until(&mut v, "still-10", T).await;

    // Once its viewer leaves, the clock starts.
    drop(v);
    tokio::time::timeout(T, watched.wait_exit())
        .await
        .expect("killed once unwatched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_sessions_refuses_one_more_until_one_ends() {
    let mut cfg = cmd(&["/bin/sh"]);
    cfg.max_sessions = 2;
    let (reg, _) = registry_with(cfg);
    let a = reg.create(80, 24).unwrap();
    let _b = reg.create(80, 24).unwrap();
    assert_eq!(
        reg.create(80, 24).err(),
        Some(ChatError::TooManySessions { max: 2 })
    );
    assert_eq!(
        ChatError::TooManySessions { max: 2 }.code(),
        "too_many_sessions"
    );
    assert_eq!(reg.list().len(), 2);

    assert!(reg.kill(a.id()));
    tokio::time::timeout(T, a.wait_exit()).await.unwrap();
    reg.create(80, 24).expect("room again after one ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_hangs_up_and_a_killed_session_is_forgotten() {
    let (reg, events) = registry_with(cmd(&["/bin/sh"]));
    let s = reg.create(80, 24).unwrap();
    let mut v = s.attach().unwrap();
    let started = Instant::now();
    assert!(reg.kill(s.id()));
    let end = next_end(&mut v, T).await;
    assert_eq!(
        end,
        Some(ViewerEvent::Exit {
            code: None,
            signal: Some(1)
        })
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "SIGHUP alone ended it"
    );
    tokio::time::timeout(T, s.wait_exit()).await.unwrap();
    assert!(
        reg.get(s.id()).is_none(),
        "a killed session is forgotten at exit"
    );
    assert!(!reg.kill(s.id()), "unknown now");
    assert_eq!(wait_events(&events, "session.exited").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_falls_back_to_sigkill_when_hup_is_ignored() {
    let (reg, _) = registry_with(sh_c("trap '' HUP; echo armed; while :; do sleep 1; done"));
    let s = reg.create(80, 24).unwrap();
    let mut v = s.attach().unwrap();
    read_until(&mut v, "armed", T).await;
    let pid = s.pid();
    let started = Instant::now();
    assert!(reg.kill(s.id()));

    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(s.is_running(), "HUP is ignored: still running after 1.2 s");
    let end = next_end(&mut v, T).await;
    let took = started.elapsed();
    assert_eq!(
        end,
        Some(ViewerEvent::Exit {
            code: None,
            signal: Some(9)
        })
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "SIGKILL after the 2 s grace, took {took:?}"
    );
    assert_eq!(proc_state(pid), None, "reaped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_child_environment_carries_the_session_and_a_verifiable_events_url() {
    let mut cfg = sh_c(
        r#"printf 'url=%s\nsid=%s\nterm=%s\nsecret=%s\nend\n' "$DASHGATE_EVENTS_URL" "$DASHGATE_SESSION_ID" "$TERM" "${DASHGATE_TOKEN:-none}"; sleep 600"#,
    );
    cfg.events_url = Some("ws://127.0.0.1:9119/api/pub".into());
    let (reg, _) = registry_with(cfg);
    let s = reg.create(80, 24).unwrap();
    let other = reg.create(80, 24).unwrap();
    let mut v = s.attach().unwrap();
    let out = read_until(&mut v, "end\r\n", T).await;
    let field = |name: &str| {
        out.lines()
            .find_map(|l| {
                l.trim_end_matches('\r')
                    .strip_prefix(name)
                    .map(str::to_string)
            })
            .unwrap_or_else(|| panic!("no {name} in {out:?}"))
    };
    assert_eq!(field("sid="), s.id());
    assert_eq!(field("term="), "xterm-256color");
    assert_eq!(
        field("secret="),
        "none",
        "the server's token is not passed on"
    );

    let url = field("url=");
    let prefix = format!(
        "ws://127.0.0.1:9119/api/pub?channel=session.{}&token=",
        s.id()
    );
    let token = url.strip_prefix(&prefix).unwrap_or_else(|| panic!("{url}"));
    assert!(token.len() >= 43, "32 random bytes: {token}");
    assert_eq!(reg.verify_internal(token), Some(s.id().to_string()));
    assert_eq!(reg.verify_internal("not-the-token"), None);
    let mut almost = token.to_string();
    almost.pop();
    assert_eq!(reg.verify_internal(&almost), None);
    assert_ne!(other.id(), s.id());

    // The credential dies with its session.
    assert!(reg.kill(s.id()));
    tokio::time::timeout(T, s.wait_exit()).await.unwrap();
    assert_eq!(reg.verify_internal(token), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_events_base_no_url_is_set() {
    let (reg, _) = registry_with(sh_c(r#"echo "url=[${DASHGATE_EVENTS_URL-unset}]""#));
    let s = reg.create(80, 24).unwrap();
    tokio::time::timeout(T, s.wait_exit()).await.unwrap();
    let v = s.attach().unwrap();
    assert!(String::from_utf8_lossy(&v.scrollback).contains("url=[unset]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_cannot_start_is_a_spawn_error() {
    let (reg, events) = registry_with(cmd(&["/nonexistent/agent", "--x"]));
    let err = reg.create(80, 24).unwrap_err();
    assert!(
        matches!(&err, ChatError::Spawn(m) if m.contains("/nonexistent/agent")),
        "{err}"
    );
    assert_eq!(reg.list().len(), 0);
    assert!(events.lock().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_every_child_within_about_a_second() {
    let (reg, _) = registry_with(sh_c("trap '' HUP; while :; do sleep 1; done"));
    let a = reg.create(80, 24).unwrap();
    let b = reg.create(80, 24).unwrap();
    let started = Instant::now();
    reg.shutdown().await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    assert!(!a.is_running() && !b.is_running());
    assert_eq!(proc_state(a.pid()), None);
    assert_eq!(reg.create(80, 24).err(), Some(ChatError::ShuttingDown));
}

/// A 64 KiB paste the program never `read()`s (line-kill characters eaten by
/// the line discipline) still goes in whole: a writer that waited for the
/// PTY to signal writability hung here until the write timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_paste_is_written_whole() {
    let (reg, _) = registry_with(cmd(&["/bin/sh"]));
    let s = reg.create(80, 24).unwrap();
    let mut v = s.attach().unwrap();
    let command = b"echo ok-$((7*6))\r";
    let mut keys = vec![0x15u8; 64 * 1024 - command.len()];
    keys.extend_from_slice(command);
    tokio::time::timeout(Duration::from_secs(3), s.write(&keys))
        .await
        .expect("the paste went in within 3 s")
        .unwrap();
    read_until(&mut v, "ok-42", T).await;
}
