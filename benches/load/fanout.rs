//! Events fan-out: one publisher to 1,000 subscribers over real WebSockets
//! (SPEC §5: ≥ 200,000 deliveries/s, p99 publish-to-receive ≤ 25 ms).
//!
//! Every published frame carries its send time (`"t"`, ns since this process
//! started), so each subscriber measures publish-to-receive on one clock.
//!
//! 1. *ready*: probes until every subscriber has received one (a server may
//!    register a subscriber just after the handshake).
//! 2. *throughput*: `BURST` messages, closed loop — the publisher stays at
//!    most `WINDOW` messages per subscriber ahead of what has been received,
//!    so the figure is what the server sustains, not what queues can absorb.
//! 3. *latency*: messages at a fixed rate (`RATE`/s × 1,000 subscribers = the
//!    bar's 200,000 deliveries/s offered); p50 and p99 over every delivery.
//! 4. *latency at a quarter of the rate*: the same at 50,000 deliveries/s,
//!    which tells a CPU-starved machine from a slow server.
//!
//! The subscribers are [`RawWs`] readers (cheap: they share the cores with
//! the server); the publisher is a tokio-tungstenite client.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::http::quantile;
use super::procs::{cpu_ns, user_system_ticks, Dashgate};
use super::rawws::{RawWs, OP_CLOSE, OP_TEXT};
use super::table::{Row, Table};
use super::TOKEN;

pub type Ws = WebSocketStream<TcpStream>;

pub const SUBSCRIBERS: usize = 1_000;
const BURST: usize = 1_000;
const WINDOW: u64 = 64;
/// Messages per second in the latency phase, and for how long.
pub const RATE: u64 = 200;
const RATE_SECS: u64 = 3;
/// Longest any phase may take.
const PHASE_LIMIT: Duration = Duration::from_secs(60);
/// A phase ends early when nothing arrives for this long.
const STALL: Duration = Duration::from_secs(3);

fn epoch() -> Instant {
    static E: OnceLock<Instant> = OnceLock::new();
    *E.get_or_init(Instant::now)
}

fn nanos() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Open a WebSocket to `addr` from the loopback address `local`.
pub async fn connect(
    addr: SocketAddr,
    local: IpAddr,
    path: &str,
    headers: &[(String, String)],
) -> Result<Ws, String> {
    let mut req = format!("ws://{addr}{path}")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    for (k, v) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
            HeaderValue::from_str(v).map_err(|e| e.to_string())?,
        );
    }
    let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    sock.bind(SocketAddr::new(local, 0))
        .map_err(|e| e.to_string())?;
    let fut = async {
        let stream = sock.connect(addr).await.map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        tokio_tungstenite::client_async(req, stream)
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| e.to_string())
    };
    tokio::time::timeout(Duration::from_secs(15), fut)
        .await
        .map_err(|_| "handshake timed out".to_string())?
}

/// The `i`-th client address: 127.0.0.1 … 127.0.0.50, so ten thousand
/// sockets never run one source address out of ports.
pub fn local(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % 50) as u8))
}

/// Open `n` WebSockets, 64 handshakes at a time.
pub async fn connect_many(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    n: usize,
) -> Result<Vec<Ws>, String> {
    let results: Vec<Result<Ws, String>> = futures_util::stream::iter(0..n)
        .map(|i| connect(addr, local(i), path, headers))
        .buffer_unordered(64)
        .collect()
        .await;
    all_opened(results)
}

/// Every socket of `results`, or how many of them failed and the first
/// error.
pub fn all_opened<T>(results: Vec<Result<T, String>>) -> Result<Vec<T>, String> {
    let n = results.len();
    let mut socks = Vec::with_capacity(n);
    let mut first_err = None;
    for r in results {
        match r {
            Ok(s) => socks.push(s),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        None => Ok(socks),
        Some(e) => Err(format!(
            "{} of {n} WebSockets failed to open: {e}",
            n - socks.len()
        )),
    }
}

/// What the fan-out gave.
#[derive(Debug, Clone, Default)]
pub struct Fanout {
    pub deliveries_per_s: f64,
    pub burst_delivered: u64,
    pub burst_expected: u64,
    pub rate_delivered: u64,
    pub rate_expected: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Phase 4: a quarter of the rate.
    pub quarter_delivered: u64,
    pub quarter_expected: u64,
    pub quarter_p50_ms: f64,
    pub quarter_p99_ms: f64,
    pub lagged: u64,
    /// CPU per delivery in the latency phase, µs: the server's (when it is
    /// our child) and this process's (the 1,000 clients and the publisher).
    pub server_us: Option<f64>,
    pub client_us: f64,
}

/// Per phase: 0 throughput, 1 latency at `RATE`, 2 probes, 3 latency at
/// `RATE / 4`.
#[derive(Default)]
struct Counters {
    recv: [AtomicU64; 4],
    lagged: AtomicU64,
}

fn field(s: &[u8], key: &[u8]) -> Option<u64> {
    let i = s.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = &s[i..];
    let end = digits
        .iter()
        .position(|c| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

/// Read frames until told to stop; the latencies (µs) of phases 1 and 3.
async fn subscriber(
    mut ws: RawWs,
    c: Arc<Counters>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> [Vec<u32>; 2] {
    let mut lat = [
        Vec::with_capacity((RATE * RATE_SECS) as usize),
        Vec::with_capacity((RATE / 4 * RATE_SECS) as usize),
    ];
    let mut probed = false;
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            f = ws.next() => match f {
                Some((OP_TEXT, s)) => {
                    let now = nanos();
                    match field(s, b"\"p\":") {
                        Some(2) => {
                            if !probed {
                                probed = true;
                                c.recv[2].fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Some(p @ (0 | 1 | 3)) => {
                            c.recv[p as usize].fetch_add(1, Ordering::Relaxed);
                            if p != 0 {
                                let sent = field(s, b"\"t\":").unwrap_or(now);
                                let us = (now.saturating_sub(sent) / 1000) as u32;
                                lat[usize::from(p == 3)].push(us);
                            }
                        }
                        _ => {
                            if s.windows(8).any(|w| w == b"\"lagged\"") {
                                let n = field(s, b"\"dropped\":").unwrap_or(0);
                                c.lagged.fetch_add(n, Ordering::Relaxed);
                            }
                        }
                    }
                }
                Some((OP_CLOSE, _)) | None => break,
                Some(_) => {}
            }
        }
    }
    lat
}

/// Wait until `counter` reaches `goal`, nothing arrives for [`STALL`], or
/// [`PHASE_LIMIT`] passes; the count and when the last progress was seen.
async fn drain(counter: &AtomicU64, goal: u64, since: Instant) -> (u64, Instant) {
    let mut last = counter.load(Ordering::Relaxed);
    let mut last_at = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let now = counter.load(Ordering::Relaxed);
        if now != last {
            last = now;
            last_at = Instant::now();
        }
        if now >= goal || last_at.elapsed() > STALL || since.elapsed() > PHASE_LIMIT {
            return (now, last_at);
        }
    }
}

/// Run the three phases against one server.
pub async fn measure(
    addr: SocketAddr,
    sub_path: &str,
    pub_path: &str,
    headers: &[(String, String)],
    burst: usize,
    server_pid: Option<u32>,
    spread: bool,
) -> Result<Fanout, String> {
    epoch();
    let subs: Vec<Result<RawWs, String>> = futures_util::stream::iter(0..SUBSCRIBERS)
        .map(|i| {
            let from = if spread { local(i) } else { local(0) };
            RawWs::connect(addr, from, sub_path, headers)
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let failed = subs.iter().filter(|s| s.is_err()).count();
    if let Some(Err(e)) = subs.iter().find(|s| s.is_err()) {
        return Err(format!(
            "{failed} of {SUBSCRIBERS} subscribers failed to connect: {e}"
        ));
    }
    let subs = subs.into_iter().map_while(Result::ok);
    let mut publisher = connect(addr, local(SUBSCRIBERS), pub_path, headers).await?;
    let c = Arc::new(Counters::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = subs
        .map(|ws| tokio::spawn(subscriber(ws, c.clone(), stop_rx.clone())))
        .collect();
    let n = SUBSCRIBERS as u64;
    let send = |p: u8, i: u64| Message::text(format!(r#"{{"p":{p},"i":{i},"t":{}}}"#, nanos()));

    // 1. ready
    let start = Instant::now();
    let mut i = 0;
    while c.recv[2].load(Ordering::Relaxed) < n {
        if start.elapsed() > Duration::from_secs(20) {
            let _ = stop_tx.send(true);
            return Err(format!(
                "only {} of {n} subscribers received a probe within 20 s",
                c.recv[2].load(Ordering::Relaxed)
            ));
        }
        publisher
            .send(send(2, i))
            .await
            .map_err(|e| e.to_string())?;
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 2. throughput, closed loop
    let t0 = Instant::now();
    for i in 0..burst as u64 {
        while i * n
            > c.recv[0].load(Ordering::Relaxed) + c.lagged.load(Ordering::Relaxed) + WINDOW * n
        {
            if t0.elapsed() > PHASE_LIMIT {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        publisher
            .send(send(0, i))
            .await
            .map_err(|e| e.to_string())?;
    }
    let burst_expected = burst as u64 * n;
    let (burst_delivered, last) = drain(&c.recv[0], burst_expected, t0).await;
    let deliveries_per_s = burst_delivered as f64 / (last - t0).as_secs_f64().max(1e-9);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 3. latency at a fixed rate
    println!("  fan-out: latency phase, {RATE} messages/s for {RATE_SECS} s");
    let count = RATE * RATE_SECS;
    let step = Duration::from_nanos(1_000_000_000 / RATE);
    let cpu0 = (server_pid.map(cpu_ns), cpu_ns(std::process::id()));
    let us0 = server_pid.map(user_system_ticks);
    let t1 = tokio::time::Instant::now();
    for i in 0..count {
        tokio::time::sleep_until(t1 + step * i as u32).await;
        publisher
            .send(send(1, i))
            .await
            .map_err(|e| e.to_string())?;
    }
    let rate_expected = count * n;
    let (rate_delivered, _) = drain(&c.recv[1], rate_expected, t1.into_std()).await;
    let per = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / 1000.0 / rate_delivered.max(1) as f64;
    let server_us = server_pid.zip(cpu0.0).map(|(p, c0)| per(c0, cpu_ns(p)));
    let client_us = per(cpu0.1, cpu_ns(std::process::id()));
    if let (Some(p), Some((u0, s0))) = (server_pid, us0) {
        let (u1, s1) = user_system_ticks(p);
        println!(
            "  server CPU in the latency phase: user {} ticks, system {} ticks",
            u1 - u0,
            s1 - s0
        );
    }

    tokio::time::sleep(Duration::from_millis(500)).await;

    // 4. the same at a quarter of the rate
    let quarter = RATE / 4;
    let count4 = quarter * RATE_SECS;
    let step4 = Duration::from_nanos(1_000_000_000 / quarter);
    let t2 = tokio::time::Instant::now();
    for i in 0..count4 {
        tokio::time::sleep_until(t2 + step4 * i as u32).await;
        publisher
            .send(send(3, i))
            .await
            .map_err(|e| e.to_string())?;
    }
    let quarter_expected = count4 * n;
    let (quarter_delivered, _) = drain(&c.recv[3], quarter_expected, t2.into_std()).await;

    let _ = stop_tx.send(true);
    let _ = publisher.close(None).await;
    let mut lat = Vec::with_capacity(rate_expected as usize);
    let mut lat4 = Vec::with_capacity(quarter_expected as usize);
    for t in tasks {
        if let Ok(Ok([a, b])) = tokio::time::timeout(Duration::from_secs(10), t).await {
            lat.extend(a);
            lat4.extend(b);
        }
    }
    Ok(Fanout {
        deliveries_per_s,
        burst_delivered,
        burst_expected,
        rate_delivered,
        rate_expected,
        p50_ms: quantile(&mut lat, 0.50) / 1000.0,
        p99_ms: quantile(&mut lat, 0.99) / 1000.0,
        quarter_delivered,
        quarter_expected,
        quarter_p50_ms: quantile(&mut lat4, 0.50) / 1000.0,
        quarter_p99_ms: quantile(&mut lat4, 0.99) / 1000.0,
        lagged: c.lagged.load(Ordering::Relaxed),
        server_us,
        client_us,
    })
}

pub fn fmt_count(v: f64) -> String {
    let v = v.round() as u64;
    match v {
        0..=999 => v.to_string(),
        1000..=999_999 => format!("{},{:03}", v / 1000, v % 1000),
        _ => format!("{},{:03},{:03}", v / 1_000_000, v / 1000 % 1000, v % 1000),
    }
}

/// Fan-out through dashgate (the real binary, `secure` preset, Bearer).
pub async fn dashgate(t: &mut Table) -> Option<Fanout> {
    let server = Dashgate::start(&[]);
    let auth = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
    let r = measure(
        server.addr,
        "/api/events?channel=bench",
        "/api/pub?channel=bench",
        &auth,
        BURST,
        Some(server.proc.pid()),
        true,
    )
    .await;
    drop(server);
    let f = match r {
        Ok(f) => f,
        Err(e) => {
            t.push(Row::missing(
                "events fan-out 1 → 1,000",
                "≥ 200,000/s; p99 ≤ 25 ms",
                &e,
            ));
            return None;
        }
    };
    println!("  fan-out: {f:?}");
    t.push(
        Row::new(
            "events fan-out 1 → 1,000: deliveries/s",
            f.deliveries_per_s,
            "1/s",
            format!(
                "{}/s ({} of {} delivered)",
                fmt_count(f.deliveries_per_s),
                fmt_count(f.burst_delivered as f64),
                fmt_count(f.burst_expected as f64)
            ),
        )
        .bar("≥ 200,000/s", f.deliveries_per_s >= 200_000.0)
        .note(format!(
            "{BURST} messages to {SUBSCRIBERS} subscribers on /api/events, closed loop (publisher ≤ {WINDOW} messages ahead); {} dropped as lagged in the whole run",
            f.lagged
        )),
    );
    let all = f.rate_delivered == f.rate_expected;
    t.push(
        Row::new(
            "events fan-out: publish-to-receive p50 / p99",
            f.p99_ms,
            "ms",
            format!(
                "{:.2} ms / {:.2} ms ({} of {} delivered)",
                f.p50_ms,
                f.p99_ms,
                fmt_count(f.rate_delivered as f64),
                fmt_count(f.rate_expected as f64)
            ),
        )
        .bar("p99 ≤ 25 ms", all && f.p99_ms <= 25.0)
        .note(format!(
            "{RATE} messages/s for {RATE_SECS} s = {} deliveries/s offered; a lost delivery fails the row; CPU per delivery: server {:.2} µs, clients {:.2} µs",
            fmt_count((RATE * SUBSCRIBERS as u64) as f64),
            f.server_us.unwrap_or(f64::NAN),
            f.client_us
        )),
    );
    t.push(
        Row::new(
            "events fan-out: p50 / p99 at 50,000 deliveries/s",
            f.quarter_p99_ms,
            "ms",
            format!(
                "{:.2} ms / {:.2} ms ({} of {} delivered)",
                f.quarter_p50_ms,
                f.quarter_p99_ms,
                fmt_count(f.quarter_delivered as f64),
                fmt_count(f.quarter_expected as f64)
            ),
        )
        .note("a quarter of the bar's rate: what the latency is when the machine has CPU to spare"),
    );
    Some(f)
}
