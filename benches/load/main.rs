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

use table::{Row, Table};

/// Where results and the hermes virtualenv live.
pub fn bench_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target")));
    target.join("bench")
}

/// The token every dashgate child is started with (`DASHGATE_TOKEN`).
pub const TOKEN: &str = "bench-token-0123456789abcdef0123456789abcdef";

fn main() {
    if std::env::var("DASHGATE_BENCH_ROLE").as_deref() == Ok("ab-server") {
        gate::ab_server();
        return;
    }
    procs::raise_fd_limit();
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let run = |part: &str| wanted.is_empty() || wanted.iter().any(|w| w == part);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut t = Table::default();
    if run("decide") {
        table::decide_rows(&mut t);
    }
    rt.block_on(async {
        let hermes = if run("hermes") {
            Some(hermes::start().await)
        } else {
            None
        };
        if let Some(Err(e)) = &hermes {
            println!("hermes: {e}");
        }
        if run("gate") || hermes.is_some() {
            gate::run(&mut t, run("gate"), hermes.as_ref()).await;
        }
        let mut dash_fanout = None;
        if run("fanout") || hermes.is_some() {
            dash_fanout = fanout::dashgate(&mut t).await;
        }
        if let Some(h) = &hermes {
            hermes::fanout(&mut t, h, dash_fanout.as_ref()).await;
        }
        drop(hermes);
        if run("idle") {
            churn::idle(&mut t).await;
        }
        if run("churn") {
            churn::churn(&mut t).await;
        }
    });
    if run("chat") {
        t.push(Row::missing(
            "chat: PTY output to a WebSocket client",
            "≥ 50 MB/s",
            "not measured: chat has not been merged into main yet",
        ));
        t.push(Row::missing(
            "chat: keystroke echo p99",
            "≤ 5 ms",
            "not measured: chat has not been merged into main yet",
        ));
    }
    rt.shutdown_timeout(Duration::from_secs(2));
    t.print();
    let path = bench_dir().join("results.json");
    match t.write_json(&path) {
        Ok(()) => println!("\nwritten to {}", path.display()),
        Err(e) => eprintln!("cannot write {}: {e}", path.display()),
    }
}
