//! `--upstream-command` (SPEC §6): dashgate starts the upstream, proxies to
//! it once it accepts connections, restarts it when it dies (502
//! meanwhile) and ends it on SIGTERM; the upstream's state in
//! `/.dashgate/api/status` and its metrics in `/.dashgate/metrics`; and the
//! hermes Docker image's dashboard run script (`contrib/docker/dashboard-run`)
//! run as it is, with a fake `hermes` on `PATH`.

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use upstream::TestUpstream;

/// A port nothing listens on right now (on 127.0.0.1).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Not a test of its own: the test upstream as a process, which
/// `supervised_test_upstream_*` gives dashgate as its `--upstream-command`
/// (this test binary, run with `--ignored --exact child_upstream`).
#[tokio::test]
#[ignore = "run by dashgate as its --upstream-command"]
async fn child_upstream() {
    let Ok(port) = std::env::var("TEST_UPSTREAM_PORT") else {
        return;
    };
    let _up = TestUpstream::start_at(&format!("127.0.0.1:{port}")).await;
    // Bounded: dashgate ends it long before.
    tokio::time::sleep(Duration::from_secs(120)).await;
}

fn child_command() -> String {
    let exe = std::env::current_exe().unwrap();
    shell_words::join([
        exe.to_str().unwrap(),
        "child_upstream",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
}

async fn status(s: &Server) -> serde_json::Value {
    let r = http()
        .get(s.url("/.dashgate/api/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Poll `GET path` until it answers `want` (bounded); every other answer
/// on the way must be 502 `upstream_unavailable` (nothing else is right
/// while the upstream starts). Returns the body.
async fn until_status(s: &Server, path: &str, want: u16, within: Duration) -> String {
    let end = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < end {
        if let Ok(r) = http().get(s.url(path)).send().await {
            let st = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            if st == want {
                return body;
            }
            assert!(
                st == 502 && body.contains("upstream_unavailable"),
                "{path}: {st} {body} while waiting for {want}"
            );
            last = format!("{st} {body}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "{path} did not answer {want} within {within:?}: last {last}\n{}",
        s.output()
    );
}

/// Wait (bounded) until `/api/status` says the upstream is `state`.
async fn until_state(s: &Server, state: &str, within: Duration) -> serde_json::Value {
    let end = Instant::now() + within;
    loop {
        let st = status(s).await;
        if st["upstream"]["state"] == state {
            return st["upstream"].clone();
        }
        assert!(
            Instant::now() < end,
            "upstream never {state}: {}\n{}",
            st["upstream"],
            s.output()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Poll `GET path` until it answers 502 `upstream_unavailable` (bounded);
/// it answers 200 until then.
async fn until_502(s: &Server, path: &str) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let r = http().get(s.url(path)).send().await.unwrap();
        let st = r.status().as_u16();
        let body = r.text().await.unwrap();
        if st == 502 {
            assert!(body.contains("upstream_unavailable"), "{body}");
            return;
        }
        assert_eq!(st, 200, "{body}");
        assert!(
            Instant::now() < end,
            "never 502 after the upstream was killed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait (bounded) until `/api/status` shows the supervised child's pid.
async fn until_spawned(s: &Server) -> u32 {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let st = status(s).await;
        if let Some(pid) = st["upstream"]["pid"].as_u64() {
            return pid as u32;
        }
        assert!(Instant::now() < end, "no pid: {}", st["upstream"]);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn pid_of(upstream: &serde_json::Value) -> u32 {
    upstream["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("no pid: {upstream}")) as u32
}

fn alive(pid: u32) -> bool {
    // A zombie has a /proc entry too: alive means not reaped and not Z.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// `(ppid, pgrp)` of a live process.
fn parent_and_group(pid: u32) -> (u32, u32) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    (rest[1].parse().unwrap(), rest[2].parse().unwrap())
}

fn environ(pid: u32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    raw.split(|b| *b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

fn kill(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

/// SIGTERM to dashgate; it must exit 0 within 3 s.
fn terminate(s: &mut Server) {
    s.signal("TERM");
    let end = Instant::now() + Duration::from_secs(3);
    loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            assert!(st.success(), "dashgate exited with {st}: {}", s.output());
            return;
        }
        assert!(
            Instant::now() < end,
            "dashgate still running 3 s after SIGTERM: {}",
            s.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn until_gone(pid: u32, within: Duration) {
    let end = Instant::now() + within;
    while alive(pid) {
        assert!(Instant::now() < end, "process {pid} is still running");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn supervised_test_upstream_is_started_proxied_restarted_and_stopped() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut s = launch()
        .args(["--insecure", "--upstream", &url])
        .args(["--upstream-command", &child_command()])
        .env("TEST_UPSTREAM_PORT", &port.to_string())
        .env("DASHGATE_TOKEN", "the-startup-token-of-dashgate")
        .env("HERMES_DASHBOARD_SESSION_TOKEN", "the-alias-token")
        .start();

    // Proxied once it accepts connections (502 until then).
    let body = until_status(&s, "/some/page?x=1", 200, Duration::from_secs(20)).await;
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["path"], "/some/page");
    assert!(
        s.wait_output("the upstream accepts connections", Duration::from_secs(5)),
        "no log line for the upstream being ready: {}",
        s.output()
    );

    let up = until_state(&s, "up", Duration::from_secs(5)).await;
    assert_eq!(up["url"], url);
    assert_eq!(up["supervised"], true);
    assert_eq!(up["restarts"], 0);
    let exe = std::env::current_exe().unwrap();
    assert_eq!(up["command"], exe.to_str().unwrap());
    let pid = pid_of(&up);
    // dashgate's child, in a process group of its own, without the startup
    // token (nor its hermes alias) in its environment.
    assert_eq!(parent_and_group(pid), (s.child.id(), pid));
    let env = environ(pid);
    assert!(env
        .iter()
        .any(|v| v == &format!("TEST_UPSTREAM_PORT={port}")));
    for secret in ["DASHGATE_TOKEN=", "HERMES_DASHBOARD_SESSION_TOKEN="] {
        assert!(
            !env.iter().any(|v| v.starts_with(secret)),
            "{secret} reached the upstream: {env:?}"
        );
    }

    // A relayed WebSocket works through the supervised upstream.
    let mut ws = ws_connect(&s.ws_url("/ws/echo"), &[]).await.unwrap();
    assert!(next_text(&mut ws, Duration::from_secs(5)).await.is_some());
    send_text(&mut ws, "hello").await;
    assert_eq!(
        next_text(&mut ws, Duration::from_secs(5)).await.as_deref(),
        Some("hello")
    );
    drop(ws);

    // Killed: 502 while it is down, then it is started again.
    kill(pid, "KILL");
    until_502(&s, "/after-kill").await;
    let down = status(&s).await["upstream"].clone();
    assert!(
        matches!(down["state"].as_str(), Some("down" | "starting")),
        "{down}"
    );
    until_status(&s, "/after-restart", 200, Duration::from_secs(20)).await;
    let up = until_state(&s, "up", Duration::from_secs(5)).await;
    assert_eq!(up["restarts"], 1, "{up}");
    let last = up["last_error"].as_str().unwrap_or_default();
    assert!(last.contains("exited") && last.contains("SIGKILL"), "{up}");
    let pid2 = pid_of(&up);
    assert_ne!(pid2, pid);
    assert!(!alive(pid), "the killed child was not reaped");

    // SIGTERM: dashgate ends its upstream and exits; nothing is left.
    terminate(&mut s);
    until_gone(pid2, Duration::from_secs(2));
    assert!(
        s.wait_output("stopped the upstream", Duration::from_secs(1)),
        "{}",
        s.output()
    );
}

#[tokio::test]
async fn an_upstream_that_ignores_sigterm_is_killed_and_dashgate_exits_in_time() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let cmd =
        format!("sh -c 'trap \"\" TERM; exec python3 -m http.server --bind 127.0.0.1 {port}'");
    let mut s = launch()
        .args(["--insecure", "--upstream", &url, "--upstream-command", &cmd])
        .start();
    let pid = pid_of(&until_state(&s, "up", Duration::from_secs(20)).await);
    let sent = Instant::now();
    terminate(&mut s);
    assert!(
        sent.elapsed() < Duration::from_millis(2500),
        "dashgate took {:?} to exit",
        sent.elapsed()
    );
    until_gone(pid, Duration::from_secs(1));
    assert!(
        s.output().contains("did not exit on SIGTERM: SIGKILL"),
        "{}",
        s.output()
    );
}

#[tokio::test]
async fn while_the_upstream_starts_a_browser_is_told_dashgate_is_starting_it() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    // Never listens: the upstream stays `starting`.
    let mut s = launch()
        .args([
            "--insecure",
            "--upstream",
            &url,
            "--upstream-command",
            "sleep 30",
        ])
        .start();
    // `starting` from the first moment; its pid once the child is spawned.
    let st = until_state(&s, "starting", Duration::from_secs(5)).await;
    assert_eq!(st["command"], "sleep");
    let pid = until_spawned(&s).await;
    let r = http()
        .get(s.url("/"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("dashgate runs it (<code>sleep</code>) and has started it"),
        "{page}"
    );
    assert!(!page.contains("Start it"), "{page}");
    let r = http().get(s.url("/api/x")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("upstream_unavailable"));
    terminate(&mut s);
    until_gone(pid, Duration::from_secs(1));
}

#[test]
fn upstream_command_needs_upstream() {
    let out = launch()
        .args(["--insecure", "--upstream-command", "sleep 5"])
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--upstream <URL>"), "{err}");
}

#[test]
fn a_bad_upstream_command_is_an_error() {
    let out = launch()
        .args(["--insecure", "--upstream", "http://127.0.0.1:9"])
        .args(["--upstream-command", "hermes 'dashboard"])
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--upstream-command") && err.contains("shell words"),
        "{err}"
    );
}

/// The value of the sample `series` (name and labels, exactly as
/// exposed) in a metrics text.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

async fn metrics(s: &Server) -> String {
    let r = http()
        .get(s.url("/.dashgate/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

#[tokio::test]
async fn upstream_metrics_and_state_follow_what_the_proxy_sees() {
    let up = TestUpstream::start().await;
    let url = up.url();
    let s = launch()
        .args(["--insecure", "--upstream", &url, "--upstream-timeout", "1"])
        .start();
    let l = format!("{{upstream=\"{url}\"}}");
    let class =
        |c: &str| format!("dashgate_upstream_requests_total{{upstream=\"{url}\",class=\"{c}\"}}");
    let error =
        |k: &str| format!("dashgate_upstream_errors_total{{upstream=\"{url}\",kind=\"{k}\"}}");

    // Probed at start: up, and not supervised.
    let st = status(&s).await["upstream"].clone();
    assert_eq!(st["url"], url);
    assert_eq!(st["state"], "up", "{st}");
    assert_eq!(st["supervised"], false);
    assert!(st["pid"].is_null() && st["restarts"].is_null(), "{st}");
    let m = metrics(&s).await;
    assert_eq!(sample(&m, &class("2xx")), 0.0);
    assert_eq!(sample(&m, &format!("dashgate_upstream_up{l}")), 1.0);

    for _ in 0..3 {
        let r = http().get(s.url("/page")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    // The upstream's refusal of a handshake is a 4xx answer; a handshake
    // it accepts a 1xx one, and an open relayed socket.
    assert_eq!(
        ws_status("127.0.0.1", &s.ws_url("/ws/refuse"), &[]).await,
        403
    );
    let mut ws = ws_connect(&s.ws_url("/ws/echo"), &[]).await.unwrap();
    assert!(next_text(&mut ws, Duration::from_secs(5)).await.is_some());
    // No head within --upstream-timeout: 504, a timeout.
    let r = http().get(s.url("/sleep")).send().await.unwrap();
    assert_eq!(r.status(), 504);

    let m = metrics(&s).await;
    assert_eq!(sample(&m, &class("2xx")), 3.0);
    assert_eq!(sample(&m, &class("4xx")), 1.0);
    assert_eq!(sample(&m, &class("1xx")), 1.0);
    assert_eq!(sample(&m, &class("5xx")), 0.0);
    assert_eq!(sample(&m, &error("timeout")), 1.0);
    assert_eq!(sample(&m, &error("unavailable")), 0.0);
    assert_eq!(
        sample(&m, &format!("dashgate_upstream_response_seconds_count{l}")),
        5.0
    );
    let under_30s =
        format!("dashgate_upstream_response_seconds_bucket{{le=\"30.0\",upstream=\"{url}\"}}");
    assert_eq!(sample(&m, &under_30s), 5.0);
    assert_eq!(
        sample(&m, &format!("dashgate_upstream_websockets_open{l}")),
        1.0
    );
    assert_eq!(
        sample(&m, &format!("dashgate_upstream_restarts_total{l}")),
        0.0
    );
    let st = status(&s).await["upstream"].clone();
    assert_eq!(st["websockets"], 1, "{st}");
    assert_eq!(st["state"], "up", "{st}");
    assert!(
        st["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("upstream-timeout"),
        "{st}"
    );
    drop(ws);

    // The upstream goes away: 502, counted, and the state says so.
    up.stop();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let r = http().get(s.url("/gone")).send().await.unwrap();
        if r.status() == 502 {
            break;
        }
        assert!(
            Instant::now() < end,
            "still {} after the upstream stopped",
            r.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = until_state(&s, "down", Duration::from_secs(5)).await;
    assert!(st["last_error"].is_string(), "{st}");
    let m = metrics(&s).await;
    assert!(sample(&m, &error("unavailable")) >= 1.0);
    assert_eq!(sample(&m, &format!("dashgate_upstream_up{l}")), 0.0);
    assert_eq!(
        sample(&m, &format!("dashgate_upstream_websockets_open{l}")),
        0.0
    );
}

#[tokio::test]
async fn no_upstream_object_without_upstream_mode() {
    let s = launch().arg("--insecure").start();
    let r = http().get(s.url("/api/status")).send().await.unwrap();
    let st: serde_json::Value = r.json().await.unwrap();
    assert!(st["upstream"].is_null(), "{st}");
    assert!(!metrics_plain(&s).await.contains("dashgate_upstream_up{"));
}

async fn metrics_plain(s: &Server) -> String {
    http()
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

// ---- The Docker image's dashboard run script, run as it is -------------

const FAKE_HERMES: &str = r#"#!/bin/sh
# A fake `hermes dashboard ... --host H --port P`: a small HTTP server.
printf '%s\n' "$*" >"$FAKE_HERMES_ARGS"
host=127.0.0.1
port=
while [ $# -gt 0 ]; do
    case "$1" in
        --host) host=$2; shift ;;
        --port) port=$2; shift ;;
    esac
    shift
done
cd "$FAKE_HERMES_WWW"
exec python3 -m http.server --bind "$host" "$port"
"#;

struct Fake {
    dir: tempfile::TempDir,
}

impl Fake {
    fn new() -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let hermes = bin.join("hermes");
        std::fs::write(&hermes, FAKE_HERMES).unwrap();
        std::fs::set_permissions(&hermes, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_dashgate"), bin.join("dashgate")).unwrap();
        let www = dir.path().join("www");
        std::fs::create_dir(&www).unwrap();
        std::fs::write(www.join("hello.txt"), "hello from the fake hermes\n").unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        Fake { dir }
    }

    /// `sh contrib/docker/dashboard-run` with the image's variables, the
    /// fake `hermes` and `dashgate` first on `PATH`.
    fn run_script(&self, inner_port: u16, envs: &[(&str, &str)]) -> Server {
        let p = self.dir.path();
        let path = format!(
            "{}:{}",
            p.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new("sh");
        c.arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contrib/docker/dashboard-run"
        ))
        .env_clear()
        .env("PATH", path)
        .env("HOME", p)
        .env("TMPDIR", p.join("tmp"))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env("HERMES_DASHBOARD_HOST", "127.0.0.1")
        .env("HERMES_DASHBOARD_PORT", "0")
        .env("HERMES_DASHBOARD_LOOPBACK_PORT", inner_port.to_string())
        .env("FAKE_HERMES_ARGS", p.join("args"))
        .env("FAKE_HERMES_WWW", p.join("www"));
        for (k, v) in envs {
            c.env(k, v);
        }
        spawn(c)
    }

    fn args(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("args")).unwrap_or_default()
    }
}

/// Processes whose command line holds `needle` (from /proc).
fn processes_with(needle: &str) -> Vec<u32> {
    let mut found = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if cmd.contains(needle) && alive(pid) {
            found.push(pid);
        }
    }
    found
}

#[tokio::test]
async fn the_docker_run_script_runs_hermes_behind_dashgate() {
    let fake = Fake::new();
    let inner = free_port();
    let mut s = fake.run_script(
        inner,
        &[("HERMES_DASHBOARD_SESSION_TOKEN", "docker-startup-token")],
    );

    // dashgate proxies to the hermes it started on loopback.
    let body = until_status(&s, "/hello.txt", 200, Duration::from_secs(20)).await;
    assert_eq!(body, "hello from the fake hermes\n");
    assert_eq!(
        fake.args().trim(),
        format!("dashboard --no-open --skip-build --host 127.0.0.1 --port {inner}")
    );
    let st = status(&s).await;
    // Not insecure: the `lan` preset (loopback is on the LAN).
    assert_eq!(st["policy"]["preset"], "lan", "{}", st["policy"]);
    let up = until_state(&s, "up", Duration::from_secs(5)).await;
    assert_eq!(up["url"], format!("http://127.0.0.1:{inner}"));
    assert_eq!(up["command"], "hermes");
    let pid = pid_of(&up);
    assert!(
        !environ(pid)
            .iter()
            .any(|v| v.starts_with("HERMES_DASHBOARD_SESSION_TOKEN=")),
        "hermes got dashgate's startup token"
    );
    // Its log lines are dashgate's.
    assert!(
        s.wait_output("GET /hello.txt", Duration::from_secs(5)),
        "{}",
        s.output()
    );

    // Killed: 502 meanwhile, then 200 again from a new hermes.
    kill(pid, "KILL");
    until_502(&s, "/hello.txt").await;
    until_status(&s, "/hello.txt", 200, Duration::from_secs(20)).await;
    let pid2 = pid_of(&until_state(&s, "up", Duration::from_secs(5)).await);
    assert_ne!(pid, pid2);

    // SIGTERM (what s6 sends): dashgate stops hermes, nothing is left.
    terminate(&mut s);
    until_gone(pid2, Duration::from_secs(2));
    let needle = format!("http.server --bind 127.0.0.1 {inner}");
    assert_eq!(processes_with(&needle), Vec::<u32>::new());
}

/// The lines of a shell script that are code (no comments, no blanks).
fn code_lines(script: &str) -> Vec<&str> {
    script
        .lines()
        .filter(|l| {
            (!l.trim().is_empty() && !l.trim_start().starts_with('#')) || l.starts_with("#!")
        })
        .collect()
}

#[test]
fn the_readme_shows_the_script_that_is_tested() {
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/docker/dashboard-run"
    ))
    .unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```sh\n#!/bin/sh\n")
        .expect("the run script in README.md")
        + "```sh\n".len();
    let len = readme[start..].find("```").unwrap();
    assert_eq!(code_lines(&readme[start..start + len]), code_lines(&file));
}

#[tokio::test]
async fn the_docker_run_script_honours_hermes_dashboard_insecure() {
    let fake = Fake::new();
    let inner = free_port();
    let mut s = fake.run_script(inner, &[("HERMES_DASHBOARD_INSECURE", "1")]);
    until_status(&s, "/hello.txt", 200, Duration::from_secs(20)).await;
    let st = status(&s).await;
    assert_eq!(
        st["policy"]["source"], "preset:insecure",
        "{}",
        st["policy"]
    );
    let pid = pid_of(&st["upstream"]);
    terminate(&mut s);
    until_gone(pid, Duration::from_secs(2));
}
