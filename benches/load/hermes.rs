//! The dashboard people run today: hermes-agent 0.19.0's `hermes dashboard`,
//! installed by `make bench` into `target/bench/hermes-venv`, started with
//! `HERMES_HOME` in a temp dir on 127.0.0.1, and driven with the same
//! `/api/status` load (in `gate.rs`, alternated with dashgate's rounds) and
//! the same fan-out through its `/api/pub` and `/api/events`.
//!
//! How its clients authenticate (read from `hermes_cli/web_server.py`): on a
//! loopback bind the SPA gets an ephemeral token injected into `index.html`
//! as `window.__HERMES_SESSION_TOKEN__="…"`; REST calls send it as
//! `Authorization: Bearer …` (`/api/status` is public anyway), WebSockets as
//! `?token=…`. We read it from the served page, as the browser does.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use super::fanout::{fmt_count, measure, Fanout};
use super::http::get_json;
use super::procs::Proc;
use super::table::{Row, Table};

/// A running hermes dashboard.
pub struct Hermes {
    pub addr: SocketAddr,
    pub token: String,
    /// Killed when dropped.
    _proc: Proc,
    _home: tempfile::TempDir,
}

pub fn venv() -> std::path::PathBuf {
    super::bench_dir().join("hermes-venv")
}

/// Why the install failed, from the log `make bench` keeps.
fn install_failure() -> String {
    let log = super::bench_dir().join("hermes-install.log");
    let tail = std::fs::read_to_string(&log)
        .map(|s| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty() && !l.starts_with("rc="))
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_else(|_| "no install log".into());
    format!(
        "hermes-agent==0.19.0 is not installed in {} ({tail})",
        venv().display()
    )
}

/// Start `hermes dashboard --no-open --skip-build` on a free loopback port.
pub async fn start() -> Result<Hermes, String> {
    let bin = venv().join("bin/hermes");
    if !bin.exists() {
        return Err(install_failure());
    }
    let home = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bin);
    cmd.args(["dashboard", "--no-open", "--skip-build"])
        .args(["--host", "127.0.0.1", "--port", "0"])
        .env("HERMES_HOME", home.path())
        .env_remove("HERMES_DASHBOARD_SESSION_TOKEN")
        .env_remove("HERMES_DASHBOARD_INSECURE");
    let mut proc = Proc::spawn(cmd).map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let port = proc
        .wait_line("HERMES_DASHBOARD_READY port=", Duration::from_secs(90))
        .ok_or("hermes dashboard printed no HERMES_DASHBOARD_READY line within 90 s")?;
    let addr: SocketAddr = format!("127.0.0.1:{port}")
        .parse()
        .map_err(|e| format!("bad port {port:?}: {e}"))?;
    let token = index_token(addr)
        .await
        .ok_or("no __HERMES_SESSION_TOKEN__ in the served index.html")?;
    // /api/status must answer before the load starts.
    get_json(addr, "/api/status", &[])
        .await
        .ok_or("hermes /api/status did not answer with JSON")?;
    Ok(Hermes {
        addr,
        token,
        _proc: proc,
        _home: home,
    })
}

/// The token the SPA gets, read from `GET /`.
async fn index_token(addr: SocketAddr) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut body))
        .await
        .ok()?
        .ok()?;
    let html = String::from_utf8_lossy(&body);
    let key = "__HERMES_SESSION_TOKEN__=\"";
    let i = html.find(key)? + key.len();
    let end = html[i..].find('"')?;
    Some(html[i..i + end].to_string())
}

/// The fan-out through hermes, as ratios to dashgate's.
pub async fn fanout(t: &mut Table, h: &Result<Hermes, String>, dash: Option<&Fanout>) {
    let h = match h {
        Ok(h) => h,
        Err(why) => {
            t.push(Row::missing("hermes 0.19.0 fan-out vs dashgate", "—", why));
            return;
        }
    };
    let q = format!("channel=bench&token={}", h.token);
    // Fewer messages in the closed-loop phase: it is the same per-message
    // work, and hermes is far slower.
    let r = measure(
        h.addr,
        &format!("/api/events?{q}"),
        &format!("/api/pub?{q}"),
        &[],
        100,
        Some(h._proc.pid()),
        // hermes accepts WebSockets only from the literal 127.0.0.1 (its
        // `_LOOPBACK_HOSTS`), not from the rest of 127.0.0.0/8.
        false,
    )
    .await;
    let f = match r {
        Ok(f) => f,
        Err(e) => {
            t.push(Row::missing("hermes 0.19.0 fan-out vs dashgate", "—", &e));
            return;
        }
    };
    println!("  hermes fan-out: {f:?}");
    let Some(d) = dash else {
        t.push(Row::missing(
            "hermes 0.19.0 fan-out vs dashgate",
            "—",
            "dashgate's own fan-out did not run",
        ));
        return;
    };
    let ratio = d.deliveries_per_s / f.deliveries_per_s;
    t.push(
        Row::new(
            "hermes 0.19.0 fan-out: dashgate deliveries/s ÷ hermes",
            ratio,
            "x",
            format!(
                "{ratio:.1}× (dashgate {}/s vs hermes {}/s)",
                fmt_count(d.deliveries_per_s),
                fmt_count(f.deliveries_per_s)
            ),
        )
        .note(format!(
            "hermes: 100 messages closed loop, {} of {} delivered",
            fmt_count(f.burst_delivered as f64),
            fmt_count(f.burst_expected as f64)
        )),
    );
    t.push(
        Row::new(
            "hermes 0.19.0 fan-out: p99 hermes ÷ dashgate",
            f.p99_ms / d.p99_ms,
            "x",
            format!(
                "{:.1}× (hermes p50 {:.1} ms / p99 {:.1} ms, {} of {} delivered)",
                f.p99_ms / d.p99_ms,
                f.p50_ms,
                f.p99_ms,
                fmt_count(f.rate_delivered as f64),
                fmt_count(f.rate_expected as f64)
            ),
        )
        .note("the same 200 messages/s to 1,000 subscribers as dashgate's latency phase"),
    );
}
