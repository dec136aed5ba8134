//! `make bench`'s load figures, and the one table (SPEC §5, issue 8).
//!
//! A plain tokio program (`harness = false`). It launches servers as child
//! processes on loopback, drives them from this process, reads their RSS and
//! open fds from `/proc`, folds in the criterion medians of `benches/decide.rs`
//! and prints one table (figure, value, bar, pass/fail), also written as JSON
//! to `target/bench/results.json`.
//!
//! * `gate`    – `/api/status` with and without the gate, A B A B.
//! * `fanout`  – one publisher to 1,000 subscribers over real WebSockets.
//! * `idle`    – 10,000 idle WebSockets: server RSS before and after.
//! * `churn`   – 1,000 connect/disconnect cycles: fds and RSS at baseline.
//! * `hermes`  – the same `/api/status` load and fan-out against the hermes
//!   agent's own dashboard, as ratios.
//! * `tls`     – `/api/status` over TLS with keep-alive and new TLS
//!   connections per second, dashgate vs nginx (same certificate).
//! * `upstream` – `--upstream` in front of a bench upstream against nginx's
//!   plain reverse proxy and nginx with `auth_request`: proxied GET, the
//!   WebSocket relay, 10,000 idle proxied WebSockets.
//!
//! * `train`   – not a measurement: the workload the profile-guided build
//!   of `make release` is trained on (benches/scripts/pgo.sh); run only
//!   when named.
//!
//! `cargo bench --bench load -- gate fanout` runs only the named parts.
//! Every loop is bounded in count and in time, and every socket is loopback.

use std::path::PathBuf;
use std::time::Duration;

mod churn;
mod fanout;
mod gate;
mod hermes;
mod http;
mod policies;
mod procs;
mod rawws;
mod table;
mod tls;
mod train;
mod upstream;

use table::Table;

/// Where results and the hermes virtualenv live.
pub fn bench_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target")));
    target.join("bench")
}

/// The token every dashgate child is started with (`DASHGATE_TOKEN`).
pub const TOKEN: &str = "bench-token-0123456789abcdef0123456789abcdef";

/// How much to measure. `cargo bench` passes `--bench`; without it (cargo
/// running the bench as a test, `cargo test --all-targets`) a smoke run
/// checks that every part still works, in seconds, and writes no results.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub full: bool,
    /// Gate rounds per variant and requests per round.
    pub rounds: usize,
    pub requests: usize,
    pub idle: usize,
    pub cycles: usize,
}

/// 80 gate rounds: the per-round ratios spread over ±6 % on this shared
/// machine, and the median of 40 still moved by a few points from run to
/// run (the A/A row); twice the rounds narrow that by √2.
const FULL: Plan = Plan {
    full: true,
    rounds: 80,
    requests: 20_000,
    idle: 10_000,
    cycles: 1_000,
};

const SMOKE: Plan = Plan {
    full: false,
    rounds: 1,
    requests: 200,
    idle: 200,
    cycles: 20,
};

fn main() {
    if std::env::var("DASHGATE_BENCH_ROLE").as_deref() == Ok("ab-server") {
        gate::ab_server();
        return;
    }
    if std::env::var("DASHGATE_BENCH_ROLE").as_deref() == Ok("upstream-server") {
        upstream::upstream_server();
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut plan = if args.iter().any(|a| a == "--bench") {
        FULL
    } else {
        SMOKE
    };
    if let Some(r) = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        plan.rounds = r;
    }
    let wanted: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let run = |part: &str| wanted.is_empty() || wanted.iter().any(|w| *w == part);
    if wanted.iter().any(|w| *w == "train") {
        let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
        let done = rt.block_on(train::run());
        rt.shutdown_timeout(Duration::from_secs(2));
        if !done {
            eprintln!("load train: a server did not exit, so its profile is missing");
            std::process::exit(1);
        }
        return;
    }
    let fd_limit = procs::raise_fd_limit();
    println!("load bench: {plan:?}, fd limit {fd_limit}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut t = Table::default();
    if run("decide") && plan.full {
        t.section(1);
        table::decide_rows(&mut t);
    }
    if run("chat") && plan.full {
        t.section(4);
        table::chat_rows(&mut t);
    }
    rt.block_on(async {
        let hermes = if run("hermes") && plan.full {
            Some(hermes::start().await)
        } else {
            None
        };
        if let Some(Err(e)) = &hermes {
            println!("hermes: {e}");
        }
        if run("gate") || hermes.is_some() {
            t.section(2);
            gate::run(&mut t, plan, run("gate"), hermes.as_ref()).await;
        }
        let mut dash_fanout = None;
        if (run("fanout") || hermes.is_some()) && plan.full {
            t.section(3);
            dash_fanout = fanout::dashgate(&mut t).await;
        }
        if let Some(h) = &hermes {
            t.section(7);
            hermes::fanout(&mut t, h, dash_fanout.as_ref()).await;
        }
        drop(hermes);
        if run("idle") {
            t.section(5);
            churn::idle(&mut t, plan.idle).await;
        }
        if run("churn") {
            t.section(6);
            churn::churn(&mut t, plan.cycles).await;
        }
        if run("tls") {
            t.section(8);
            tls::run(&mut t, plan).await;
        }
        if run("upstream") {
            t.section(9);
            upstream::run(&mut t, plan).await;
        }
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    t.print();
    if !plan.full {
        println!(
            "
(smoke run: `cargo bench --bench load` measures; nothing written)"
        );
        return;
    }
    let path = bench_dir().join("results.json");
    match t.write_json(&path) {
        Ok(()) => println!("\nwritten to {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}

/// The allocator of the `dashgate` binary (src/main.rs), so the gate
/// bench's in-process servers allocate as the real one does.
#[global_allocator]
static ALLOCATOR: dashgate::alloc::Allocator = dashgate::alloc::Allocator;
