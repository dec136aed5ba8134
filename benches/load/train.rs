//! `load train`: the workload `make release` trains its profile-guided
//! build on (benches/scripts/pgo.sh, docs/benchmarks.md "Eleventh pass").
//!
//! An instrumented dashgate counts which branches and calls each run
//! takes while it serves this; the release build is then compiled with
//! those counts, so the code a server runs most is laid out together and
//! its likely branches fall through. The workload is what a server does,
//! not only what the benchmarks measure: dashgate's own pages, REST calls,
//! refusals, static files, event sockets and chat sessions in its own mode;
//! proxied pages, refusals, 404s, its own routes under the prefix and the
//! WebSocket relay in upstream mode, with the `secure` and `lan` presets.
//! Each server is then told to stop (SIGTERM), because an instrumented
//! process writes its counts only when it exits; one that does not exit
//! in time fails the run.
//!
//! Only run when named (`load train`), never as part of `make bench`'s
//! measurements or of the smoke run.

use std::time::Duration;

use super::churn::{chat_cycle, cycle};
use super::http::{round, Target};
use super::procs::Dashgate;
use super::upstream::{bearer, start_upstream, ws_echo, ws_throughput};

const CONNS: usize = 16;
const LIMIT: Duration = Duration::from_secs(60);

/// `(path, credential, fresh heads, requests)`.
type Load = (&'static str, bool, bool, usize);

/// dashgate's own routes, as a browser and a poller use them.
const OWN: &[Load] = &[
    ("/api/status", true, false, 30_000),
    ("/api/status", true, true, 10_000),
    ("/healthz", false, false, 5_000),
    ("/api/whoami", true, false, 5_000),
    ("/api/sessions", true, false, 3_000),
    ("/assets/app.css", true, false, 5_000),
    ("/", true, false, 3_000),
    ("/login", false, false, 2_000),
    ("/api/status", false, false, 5_000),
    ("/api/nonexistent", true, false, 2_000),
];

/// Upstream mode: the upstream's pages, and dashgate's under the prefix.
const PROXIED: &[Load] = &[
    ("/page", true, false, 60_000),
    ("/page", true, true, 10_000),
    ("/page", false, false, 5_000),
    ("/missing", true, false, 5_000),
    ("/.dashgate/api/status", true, false, 5_000),
    ("/.dashgate/login", false, false, 1_000),
];

async fn drive(s: &Dashgate, loads: &[Load]) {
    for &(path, cred, fresh, n) in loads {
        let t = Target {
            addr: s.addr,
            path: path.to_string(),
            headers: if cred { bearer() } else { vec![] },
            fresh,
            host: None,
            any_status: true,
        };
        let r = round(&t, CONNS, n, LIMIT).await;
        println!(
            "  train {path:28} credential {cred:5} fresh {fresh:5}: {} of {n} answered, {:.0} req/s",
            r.ok,
            r.rps()
        );
    }
}

/// Stop each server so it writes its profile; whether all exited.
fn stop_all(servers: Vec<(&str, Dashgate)>) -> bool {
    let mut all = true;
    for (name, mut s) in servers {
        let ok = s.proc.stop(Duration::from_secs(20));
        println!(
            "  train: {name} {}",
            if ok { "exited" } else { "did NOT exit" }
        );
        all &= ok;
    }
    all
}

/// The training run; `false` if a server did not exit on its own.
pub async fn run() -> bool {
    let own = Dashgate::start(&[]);
    drive(&own, OWN).await;
    let events = futures_util::future::join_all(
        (0..200).map(|i| cycle(own.addr, i % 50, "/api/events?channel=train")),
    )
    .await;
    let mut chats = 0;
    for i in 0..20 {
        chats += usize::from(chat_cycle(own.addr, i).await);
    }
    println!(
        "  train: {} of 200 event sockets, {chats} of 20 chat sessions",
        events.iter().filter(|e| **e).count()
    );

    let up = start_upstream();
    let url = format!("http://{}", up.app);
    let lan = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/lan.yaml");
    let proxy = Dashgate::start(&["--upstream", &url]);
    let proxy_lan = Dashgate::start(&["--upstream", &url, "--policy", lan]);
    drive(&proxy, PROXIED).await;
    drive(&proxy_lan, &PROXIED[..2]).await;
    for s in [&proxy, &proxy_lan] {
        let relay = ws_throughput(s.addr, 64 * 1024, 256).await;
        let echo = ws_echo(s.addr, 2_000).await.map(|v| v.len());
        println!("  train: relay {relay:?} MB/s, {echo:?} echoes");
    }
    let done = stop_all(vec![
        ("own", own),
        ("upstream", proxy),
        ("upstream-lan", proxy_lan),
    ]);
    drop(up);
    done
}
