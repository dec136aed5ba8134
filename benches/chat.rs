//! Chat benchmark (SPEC §5: ≥ 50 MB/s of PTY output to a client on loopback,
//! keystroke echo p99 ≤ 5 ms). A plain tokio program, not criterion: it
//! serves the real route tree on 127.0.0.1:0 (insecure preset, so the gate
//! runs but asks for nothing), talks to it with a real WebSocket client and
//! prints the figures.
//!
//! * throughput: the session runs `head -c N` of zeros and of text lines;
//!   time from the command's Enter to the end marker, bytes counted at the
//!   client (MB = 10^6 bytes).
//! * echo latency: the session runs `stty raw -echo; cat`, so each key goes
//!   client → WebSocket → PTY → cat → PTY → WebSocket → client; one key at a
//!   time, bounded in count and time.
//!
//! `cargo bench --bench chat` (or `make bench`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use dashgate::chat::{ChatConfig, Registry, ViewerEvent};
use dashgate::policy::{CompiledPolicy, LoadContext};
use dashgate::state::{Config, PolicySource, State};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// How much to measure.
#[derive(Clone, Copy)]
struct Plan {
    /// Output bytes per throughput run.
    bytes: u64,
    runs: usize,
    /// Keystrokes timed one by one.
    keys: usize,
}

/// `cargo bench`: the figures.
const FULL: Plan = Plan {
    bytes: 200_000_000,
    runs: 3,
    keys: 3000,
};
/// `cargo test --all-targets` (no `--bench` argument): a quick run that
/// keeps the benchmark from rotting without slowing the test suite.
const SMOKE: Plan = Plan {
    bytes: 2_000_000,
    runs: 1,
    keys: 50,
};
const KEYS_TIME_LIMIT: Duration = Duration::from_secs(30);
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let full = std::env::args().any(|a| a == "--bench");
    let plan = if full { FULL } else { SMOKE };
    rt.block_on(bench(plan, full));
}

async fn serve() -> SocketAddr {
    let bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let bind = listener.local_addr().unwrap();
    let policy = CompiledPolicy::preset("insecure", &LoadContext::new(bind.ip())).unwrap();
    let config = Config {
        bind,
        static_dir: std::env::temp_dir(),
        policy_source: PolicySource::Preset("insecure".into()),
        policy_context: LoadContext::new(bind.ip()),
        startup_token: None,
        auth_window: Duration::from_secs(60),
        max_sockets: 100,
        chat: ChatConfig::new(vec!["/bin/sh".into()]),
        upstream: None,
    };
    let state = State::new(config, policy);
    tokio::spawn(dashgate::server::run(
        listener,
        state,
        dashgate::server::limits::Limits {
            max_connections: 100,
            ..Default::default()
        },
        std::future::pending(),
    ));
    bind
}

async fn open(addr: SocketAddr) -> Ws {
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/api/ws?cols=200&rows=50"))
            .await
            .expect("upgrade");
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.contains("\"session\"") => {}
        other => panic!("expected the session frame, got {other:?}"),
    }
    ws
}

async fn type_keys(ws: &mut Ws, keys: &str) {
    ws.send(Message::binary(keys.as_bytes().to_vec()))
        .await
        .unwrap();
}

/// Read output until `marker` (which may straddle frames); returns the
/// bytes and frames read.
async fn until(ws: &mut Ws, marker: &[u8]) -> (u64, u64) {
    let mut total = 0u64;
    let mut frames = 0u64;
    let mut tail: Vec<u8> = Vec::new();
    let end = tokio::time::Instant::now() + STEP_TIMEOUT;
    loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => {
                total += b.len() as u64;
                frames += 1;
                tail.extend_from_slice(&b[b.len().saturating_sub(marker.len() + 64)..]);
                if tail.windows(marker.len()).any(|w| w == marker) {
                    return (total, frames);
                }
                let keep = tail.len().saturating_sub(marker.len() + 64);
                tail.drain(..keep);
            }
            Ok(Some(Ok(_))) => {}
            other => panic!(
                "waiting for {:?}: {other:?}",
                String::from_utf8_lossy(marker)
            ),
        }
    }
}

async fn throughput(addr: SocketAddr, plan: Plan, label: &str, producer: &str) -> Vec<f64> {
    let mut rates = Vec::new();
    for run in 1..=plan.runs {
        let mut ws = open(addr).await;
        // Echo off, so the marker below appears only once the output is done.
        type_keys(&mut ws, "stty -echo; echo READY-$((1+1))\r").await;
        until(&mut ws, b"READY-2").await;
        let started = Instant::now();
        type_keys(
            &mut ws,
            &format!(
                "{producer} | head -c {}; echo; echo DONE-$((2+2))\r",
                plan.bytes
            ),
        )
        .await;
        let (bytes, frames) = until(&mut ws, b"DONE-4").await;
        let secs = started.elapsed().as_secs_f64();
        let rate = bytes as f64 / secs / 1e6;
        println!(
            "chat throughput [{label}] run {run}: {bytes} bytes in {frames} frames ({} B/frame) in {secs:.3} s = {rate:.1} MB/s",
            bytes / frames.max(1)
        );
        rates.push(rate);
        ws.close(None).await.ok();
    }
    rates
}

/// The same output read straight from the chat library (a viewer, no
/// WebSocket): the ceiling the PTY itself allows on this machine right now.
async fn pty_baseline(plan: Plan, label: &str, producer: &str) -> f64 {
    let script = format!("stty -echo; read go; {producer} | head -c {}", plan.bytes);
    let reg = Registry::new(
        ChatConfig::new(vec!["/bin/sh".into(), "-c".into(), script]),
        std::sync::Arc::new(|_: &str, _| {}),
    );
    let s = reg.create(200, 50).unwrap();
    let mut v = s.attach().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    s.write(b"go\r").await.unwrap();
    let mut bytes = 0u64;
    while let Some(ViewerEvent::Output(b)) = v.recv().await {
        bytes += b.len() as u64;
    }
    let rate = bytes as f64 / started.elapsed().as_secs_f64() / 1e6;
    println!(
        "chat throughput [{label}, library viewer, no WebSocket]: {bytes} bytes = {rate:.1} MB/s"
    );
    rate
}

async fn echo_latency(addr: SocketAddr, plan: Plan) -> Vec<Duration> {
    let mut ws = open(addr).await;
    type_keys(&mut ws, "stty raw -echo; echo READY-$((3+3)); cat\r").await;
    until(&mut ws, b"READY-6").await;
    // One round trip to make sure cat is reading.
    type_keys(&mut ws, "S").await;
    until(&mut ws, b"S").await;
    let mut samples = Vec::with_capacity(plan.keys);
    let started = Instant::now();
    for i in 0..plan.keys {
        if started.elapsed() > KEYS_TIME_LIMIT {
            break;
        }
        let key = [b'a' + (i % 26) as u8];
        let t = Instant::now();
        ws.send(Message::binary(key.to_vec())).await.unwrap();
        until(&mut ws, &key).await;
        samples.push(t.elapsed());
    }
    samples
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn bench(plan: Plan, full: bool) {
    let addr = serve().await;
    println!("chat bench: server on {addr}, chat command /bin/sh");
    const ZEROS: &str = "cat /dev/zero";
    const TEXT: &str = "yes 'the quick brown fox jumps over the lazy dog 0123456789'";
    let base_zeros = pty_baseline(plan, "zeros", ZEROS).await;
    let mut zeros = throughput(addr, plan, "zeros", ZEROS).await;
    let base_text = pty_baseline(plan, "text lines", TEXT).await;
    let mut text = throughput(addr, plan, "text lines", TEXT).await;

    let mut lat = echo_latency(addr, plan).await;
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;

    println!();
    println!("| chat figure | value | target |");
    println!("|---|---|---|");
    println!(
        "| PTY → WebSocket throughput, zeros (median of {}) | {:.1} MB/s | ≥ 50 MB/s |",
        plan.runs,
        median(&mut zeros)
    );
    println!(
        "| PTY → WebSocket throughput, text lines (median of {}) | {:.1} MB/s | ≥ 50 MB/s |",
        plan.runs,
        median(&mut text)
    );
    println!("| same output read from the library, no WebSocket (the PTY's ceiling now): zeros / text | {base_zeros:.1} / {base_text:.1} MB/s | |");
    println!(
        "| keystroke echo p50 ({} keys) | {:.3} ms | |",
        lat.len(),
        ms(pct(0.50))
    );
    println!("| keystroke echo p99 | {:.3} ms | ≤ 5 ms |", ms(pct(0.99)));
    println!("| keystroke echo max | {:.3} ms | |", ms(pct(1.0)));
    if full {
        // For the one table of `make bench` (benches/load reads it).
        let doc = serde_json::json!({
            "runs": plan.runs,
            "bytes": plan.bytes,
            "keys": lat.len(),
            "zeros_mb_s": median(&mut zeros),
            "text_mb_s": median(&mut text),
            "pty_zeros_mb_s": base_zeros,
            "pty_text_mb_s": base_text,
            "echo_p50_ms": ms(pct(0.50)),
            "echo_p99_ms": ms(pct(0.99)),
            "echo_max_ms": ms(pct(1.0)),
        });
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("chat.json"), doc.to_string()));
        if let Err(e) = written {
            eprintln!("cannot write {}/chat.json: {e}", dir.display());
        }
    }
}
