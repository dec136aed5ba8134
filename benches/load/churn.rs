//! Sockets and memory: 10,000 idle WebSockets (SPEC §5: ≤ 150 MB RSS), and
//! 1,000 connect/disconnect cycles after which open fds and RSS are back at
//! their baseline (no leak). Both against the real binary as a child, read
//! from `/proc/PID/status` and `/proc/PID/fd`.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use super::fanout::{connect, connect_many, local};
use super::http::get_json;
use super::procs::{settle, Dashgate};
use super::table::{Row, Table};
use super::TOKEN;

pub const IDLE: usize = 10_000;
const IDLE_BAR_BYTES: f64 = 150e6;
pub const CYCLES: usize = 1_000;
/// RSS may end this far above its baseline (allocator caches, not a leak:
/// a leak of even 1 KiB per cycle would show as 1,000 KiB).
const RSS_TOLERANCE_KIB: u64 = 512;

fn auth() -> Vec<(String, String)> {
    vec![("authorization".to_string(), format!("Bearer {TOKEN}"))]
}

fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// Open sockets as `/api/status` counts them.
async fn open_sockets(s: &Dashgate) -> Option<u64> {
    get_json(s.addr, "/api/status", &auth()).await?["connections"]["websockets"].as_u64()
}

/// 10,000 idle WebSockets on `/api/events`.
pub async fn idle(t: &mut Table) {
    let s = Dashgate::start(&[]);
    let _ = open_sockets(&s).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = s.proc.rss_kib();
    let socks = match connect_many(s.addr, "/api/events?channel=idle", &auth(), IDLE).await {
        Ok(v) => v,
        Err(e) => {
            t.push(Row::missing(
                "10,000 idle WebSockets: server RSS",
                "≤ 150 MB",
                &e,
            ));
            return;
        }
    };
    let counted = open_sockets(&s).await.unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = s.proc.rss_kib();
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / IDLE as f64;
    t.push(
        Row::new(
            "10,000 idle WebSockets: server RSS",
            mb(after),
            "MB",
            format!(
                "{:.1} MB (before {:.1} MB; {:.1} KiB per socket)",
                mb(after),
                mb(before),
                per / 1024.0
            ),
        )
        .bar(
            "≤ 150 MB",
            after as f64 * 1024.0 <= IDLE_BAR_BYTES && counted == IDLE as u64,
        )
        .note(format!(
            "VmRSS of the server child; /api/status counted {counted} open sockets; fds {}",
            s.proc.fds()
        )),
    );
    drop(socks);
}

/// One connect / ping / close cycle; whether it completed.
async fn cycle(s: &Dashgate, i: usize, path: &str) -> bool {
    let Ok(mut ws) = connect(s.addr, local(i), path, &auth()).await else {
        return false;
    };
    let fut = async {
        ws.send(Message::Ping(vec![7].into())).await.ok()?;
        loop {
            match ws.next().await? {
                Ok(Message::Pong(_)) => break,
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        ws.close(None).await.ok()?;
        while let Some(Ok(_)) = ws.next().await {}
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// 1,000 connect/disconnect cycles of events sockets.
pub async fn churn(t: &mut Table) {
    let s = Dashgate::start(&[]);
    let path = "/api/events?channel=churn";
    for i in 0..50 {
        cycle(&s, i, path).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (fd0, rss0) = (s.proc.fds(), s.proc.rss_kib());
    let start = Instant::now();
    let mut ok = 0;
    for i in 0..CYCLES {
        if start.elapsed() > Duration::from_secs(120) {
            break;
        }
        ok += usize::from(cycle(&s, i, path).await);
    }
    let secs = start.elapsed().as_secs_f64();
    let fds_back = settle(Duration::from_secs(5), || s.proc.fds() == fd0).await;
    let open = open_sockets(&s).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (fd1, rss1) = (s.proc.fds(), s.proc.rss_kib());
    t.push(
        Row::new(
            "churn 1,000 events sockets: open fds before / after",
            fd1 as f64 - fd0 as f64,
            "fds",
            format!("{fd0} / {fd1} ({ok} cycles completed in {secs:.1} s)"),
        )
        .bar("= baseline", fds_back && fd1 == fd0 && ok == CYCLES && open == Some(0))
        .note(format!(
            "connect, ping/pong, close; fds from /proc/PID/fd after a 5 s settle; /api/status open sockets after: {open:?}"
        )),
    );
    t.push(
        Row::new(
            "churn 1,000 events sockets: RSS before / after",
            rss1 as f64 - rss0 as f64,
            "KiB",
            format!(
                "{:.2} MB / {:.2} MB ({:+} KiB)",
                mb(rss0),
                mb(rss1),
                rss1 as i64 - rss0 as i64
            ),
        )
        .bar(
            &format!("≤ baseline + {RSS_TOLERANCE_KIB} KiB"),
            rss1 <= rss0 + RSS_TOLERANCE_KIB,
        )
        .note("baseline taken after 50 warm-up cycles"),
    );
}
