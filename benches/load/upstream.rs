//! Upstream mode (SPEC §5, §6): dashgate `--upstream` against nginx in
//! front of the same upstream, side by side in one run.
//!
//! The upstream is this program re-executed with
//! `DASHGATE_BENCH_ROLE=upstream-server` (its own process and runtime, not
//! the load generator's): a hyper HTTP/1.1 server on 127.0.0.1:0 answering
//! `GET /page` with a fixed 1 KiB body and echoing WebSocket messages on
//! `/ws`, and, on a second port, the auth service nginx's `auth_request`
//! asks: it answers 204 when `Authorization` is `Bearer <startup token>`,
//! 401 otherwise (the least an auth service can do: no session store, no
//! crypto beyond a string compare).
//!
//! The fronts, all with the same request bytes (every request carries the
//! Bearer token):
//!
//! * `dashgate`     – the release binary, `--upstream`, `secure` preset: the
//!   gate checks the Bearer token on every request (the like of nginx with
//!   `auth_request`, but in-process);
//! * `dashgate-lan` – the same with the `lan` preset: loopback needs no
//!   sign-in, so the gate decides without a credential (an info row);
//! * `nginx`        – Debian's nginx, the plain reverse proxy people copy:
//!   `proxy_pass` to an `upstream {}` with a keep-alive pool,
//!   `proxy_http_version 1.1`, `Upgrade`/`Connection` for WebSockets,
//!   `X-Forwarded-*` set; no authentication at all;
//! * `nginx-auth`   – the same with `auth_request` to the auth service
//!   (also through a keep-alive pool);
//! * `direct`       – the upstream itself, no proxy (an info row).
//!
//! Every loop is bounded by count and by time; every socket is loopback.

use std::convert::Infallible;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::fanout::{connect, local};
use super::http::{get_json, median, paced, quantile, round, Round, Target};
use super::procs::{cpu_ns, measures_other_build, server_bin, settle, Dashgate, Proc, PLAIN_BIN};
use super::rawws::RawWs;
use super::table::{Row, Table};
use super::tls::{free_port, run_nginx, Nginx};
use super::{Plan, TOKEN};

/// Keep-alive connections of the load generator (as the gate bench).
const CONNS: usize = 32;
/// HTTP rounds per front (full run); each of `Plan::requests` requests.
const HTTP_ROUNDS: usize = 12;
/// Open-loop rounds per front (full run), each this long, at this share of
/// nginx's closed-loop throughput (the slower front's carries it too: at
/// 0.8× it runs at 60–65 % of its own).
const PACED_ROUNDS: usize = 6;
const PACED_SECS: f64 = 2.0;
const PACED_SHARE: f64 = 0.5;
/// WebSocket rounds per front (full run).
const WS_ROUNDS: usize = 5;
/// Relay throughput: messages of this size, this many per round.
const BIG: usize = 256 * 1024;
const BIG_COUNT: usize = 512;
/// Echo latency: small messages one at a time, this many per round.
const SMALL: usize = 32;
const SMALL_COUNT: usize = 2_000;
/// Upper bound on any one round.
const LIMIT: Duration = Duration::from_secs(60);
/// The upstream's page.
const PAGE: usize = 1024;
const IDLE_BAR_MB: f64 = 300.0;

// ---------------------------------------------------------------------------
// The upstream (child process).

static PAGE_BODY: [u8; PAGE] = [b'x'; PAGE];

type Res = http::Response<Full<Bytes>>;

fn status(code: u16) -> Res {
    let mut r = http::Response::new(Full::new(Bytes::new()));
    *r.status_mut() = http::StatusCode::from_u16(code).expect("status");
    r
}

fn app(mut req: http::Request<Incoming>) -> Res {
    match req.uri().path() {
        "/page" => {
            let mut r = http::Response::new(Full::new(Bytes::from_static(&PAGE_BODY)));
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        "/ws" => {
            let Some(key) = req.headers().get(http::header::SEC_WEBSOCKET_KEY).cloned() else {
                return status(400);
            };
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = on.await else { return };
                let cfg = WebSocketConfig::default()
                    .read_buffer_size(4096)
                    .max_message_size(Some(64 << 20))
                    .max_frame_size(Some(64 << 20));
                let mut ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, Some(cfg))
                        .await;
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_close() {
                        break;
                    }
                    if (m.is_binary() || m.is_text()) && ws.send(m).await.is_err() {
                        break;
                    }
                }
            });
            let mut r = status(101);
            let h = r.headers_mut();
            h.insert(
                http::header::UPGRADE,
                http::HeaderValue::from_static("websocket"),
            );
            h.insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("upgrade"),
            );
            h.insert(
                http::header::SEC_WEBSOCKET_ACCEPT,
                http::HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64"),
            );
            r
        }
        _ => status(404),
    }
}

fn auth(req: &http::Request<Incoming>) -> Res {
    let want = format!("Bearer {TOKEN}");
    match req.headers().get(http::header::AUTHORIZATION) {
        Some(v) if v.as_bytes() == want.as_bytes() => status(204),
        _ => status(401),
    }
}

async fn serve(l: TcpListener, is_auth: bool) {
    loop {
        let s = match l.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| async move {
                Ok::<_, Infallible>(if is_auth { auth(&req) } else { app(req) })
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// The child: the upstream and the auth service, until stdin closes.
pub fn upstream_server() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let lo = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let app = TcpListener::bind(lo).await.expect("bind");
        let au = TcpListener::bind(lo).await.expect("bind");
        println!(
            "ports app={} auth={}",
            app.local_addr().expect("addr").port(),
            au.local_addr().expect("addr").port()
        );
        tokio::spawn(serve(app, false));
        tokio::spawn(serve(au, true));
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
        })
        .await;
    });
    rt.shutdown_timeout(Duration::from_millis(200));
}

pub struct Upstream {
    proc: Proc,
    pub app: SocketAddr,
    auth: SocketAddr,
}

pub fn start_upstream() -> Upstream {
    let me = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(me);
    cmd.env("DASHGATE_BENCH_ROLE", "upstream-server");
    let mut proc = Proc::spawn(cmd).expect("spawn the upstream");
    let ports = proc
        .wait_line("ports ", Duration::from_secs(30))
        .expect("the upstream printed no ports");
    let port = |name: &str| -> SocketAddr {
        let p: u16 = ports
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|p| p.parse().ok())
            .expect("port");
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p)
    };
    Upstream {
        app: port("app"),
        auth: port("auth"),
        proc,
    }
}

// ---------------------------------------------------------------------------
// The hyper floor.

/// `benches/scripts/hyper-floor`, built by `make bench-floor`: a proxy of
/// hyper and tokio alone on one single-threaded runtime (`CT=1`), no gate,
/// no routing, no header rewriting, no timers. An info front: what a proxy
/// on the libraries dashgate is built on costs without dashgate.
fn start_floor(up: &Upstream) -> Result<(Proc, SocketAddr), String> {
    let target = super::bench_dir()
        .parent()
        .map(|t| t.join("hyper-floor/release/hyper-floor"))
        .ok_or("no target dir")?;
    if !target.exists() {
        return Err(format!("{} not built (make bench-floor)", target.display()));
    }
    let port = free_port()?;
    let mut cmd = Command::new(&target);
    cmd.env("CT", "1")
        .arg(port.to_string())
        .arg(up.app.to_string());
    let proc = Proc::spawn(cmd).map_err(|e| format!("hyper-floor: {e}"))?;
    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        if Instant::now() > end {
            return Err("hyper-floor did not listen".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((proc, addr))
}

// ---------------------------------------------------------------------------
// nginx.

/// A front's processes, its address and one more thing the bench needs of
/// it (nginx: its second server; LemonLDAP::NG: the session cookie), or
/// why it did not start.
type Started<P, X> = Result<(P, SocketAddr, X), String>;

/// Two servers: the plain reverse proxy and the same with `auth_request`.
fn start_nginx(dir: &std::path::Path, up: &Upstream) -> Started<Nginx, SocketAddr> {
    let (plain, gated) = (free_port()?, free_port()?);
    let (app, auth) = (up.app, up.auth);
    let proxy = r#"      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header X-Real-IP $remote_addr;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_read_timeout 3600s;"#;
    let conf = format!(
        r#"  upstream app {{ server {app}; keepalive 64; }}
  upstream auth {{ server {auth}; keepalive 64; }}
  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
  server {{
    listen 127.0.0.1:{plain};
    location / {{
{proxy}
    }}
  }}
  server {{
    listen 127.0.0.1:{gated};
    location = /_auth {{
      internal;
      proxy_pass http://auth;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
    }}
    location / {{
      auth_request /_auth;
{proxy}
    }}
  }}"#
    );
    let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), plain);
    let b = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), gated);
    Ok((run_nginx(dir, &conf, &[a, b])?, a, b))
}

/// The virtual host LemonLDAP::NG protects (benches/scripts/llng.sh).
const LLNG_HOST: &str = "test1.example.com";

/// Debian's LemonLDAP::NG behind an nginx of its own, started and stopped
/// by benches/scripts/llng.sh (`make bench` installs it).
struct Llng {
    script: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Llng {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(self.dir.path())
            .status();
    }
}

/// LemonLDAP::NG's nginx in front of the upstream, and a session cookie of
/// the Demo user, signed in through the real portal.
fn start_llng(up: &Upstream) -> Started<Llng, String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/scripts/llng.sh");
    let llng = Llng {
        script: script.into(),
        dir: tempfile::tempdir().map_err(|e| e.to_string())?,
    };
    let port = free_port()?;
    let out = Command::new("timeout")
        .args(["120", "bash", script, "start"])
        .arg(llng.dir.path())
        .arg(up.app.to_string())
        .arg(port.to_string())
        .output()
        .map_err(|e| format!("llng.sh: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().find_map(|l| l.strip_prefix("COOKIE=")) {
        Some(cookie) if out.status.success() => Ok((
            llng,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
            cookie.to_string(),
        )),
        _ => Err(format!(
            "LemonLDAP::NG did not start: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("llng.sh said nothing")
        )),
    }
}

// ---------------------------------------------------------------------------
// The load.

pub fn bearer() -> Vec<(String, String)> {
    vec![("authorization".to_string(), format!("Bearer {TOKEN}"))]
}

/// Relay throughput: `count` binary messages of `size` bytes pushed through
/// one WebSocket while the echoes are read back; MB/s of payload one way.
pub async fn ws_throughput(addr: SocketAddr, size: usize, count: usize) -> Option<f64> {
    let ws = connect(addr, local(0), "/ws", &bearer()).await.ok()?;
    let (mut tx, mut rx) = ws.split();
    let payload = Bytes::from(vec![0x5a; size]);
    let start = Instant::now();
    let writer = async {
        for _ in 0..count {
            tx.send(Message::Binary(payload.clone())).await.ok()?;
        }
        Some(())
    };
    let reader = async {
        let mut got = 0usize;
        while got < size * count {
            match rx.next().await? {
                Ok(Message::Binary(b)) => got += b.len(),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        Some(got)
    };
    let (w, r) = tokio::time::timeout(LIMIT, async { tokio::join!(writer, reader) })
        .await
        .ok()?;
    let secs = start.elapsed().as_secs_f64();
    w?;
    let got = r?;
    let mut ws = tx.reunite(rx).ok()?;
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    Some(got as f64 / secs / 1e6)
}

/// Echo latency: `count` small messages, one at a time; µs each.
pub async fn ws_echo(addr: SocketAddr, count: usize) -> Option<Vec<u32>> {
    let mut ws = connect(addr, local(1), "/ws", &bearer()).await.ok()?;
    let payload = Bytes::from(vec![0x61; SMALL]);
    let fut = async {
        let mut lat = Vec::with_capacity(count);
        for _ in 0..count {
            let t = Instant::now();
            ws.send(Message::Binary(payload.clone())).await.ok()?;
            loop {
                match ws.next().await? {
                    Ok(Message::Binary(_)) => break,
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
            lat.push(t.elapsed().as_micros() as u32);
        }
        Some(lat)
    };
    let lat = tokio::time::timeout(LIMIT, fut).await.ok()??;
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    Some(lat)
}

struct Front {
    name: &'static str,
    addr: SocketAddr,
    /// What its load sends (every front but LemonLDAP::NG's: the Bearer).
    target: Target,
    /// A front measured in the closed-loop GET rounds only, with a fifth of
    /// the requests: an auth service that carries a few thousand requests a
    /// second cannot carry the open loop's rate, and its WebSocket relay is
    /// nginx's own, measured already.
    closed_only: bool,
    /// A front left out of the WebSocket rounds: one with no relay (the
    /// hyper floor), or a closed-loop-only one.
    no_ws: bool,
    http: Vec<Round>,
    /// Open-loop rounds at one rate for every front.
    paced: Vec<Round>,
    mb_s: Vec<f64>,
    echo_us: Vec<u32>,
    ws_failed: usize,
    /// The proxy's processes (nginx: its workers), for CPU per request.
    pids: Vec<u32>,
    /// CPU (all threads of `pids`) per successful request, ns, each round.
    cpu_per_req: Vec<f64>,
}

impl Front {
    fn new(name: &'static str, addr: SocketAddr) -> Self {
        Front {
            name,
            addr,
            target: Target {
                addr,
                path: "/page".into(),
                headers: bearer(),
                fresh: false,
                host: None,
                any_status: false,
            },
            closed_only: false,
            no_ws: false,
            http: vec![],
            paced: vec![],
            mb_s: vec![],
            echo_us: vec![],
            ws_failed: 0,
            pids: vec![],
            cpu_per_req: vec![],
        }
    }
    /// Send `headers` (instead of the Bearer) with `Host: host`; closed-loop
    /// rounds only.
    fn closed_only(mut self, headers: Vec<(String, String)>, host: &str) -> Self {
        self.target.headers = headers;
        self.target.host = Some(host.to_string());
        self.closed_only = true;
        self.no_ws = true;
        self
    }
    fn without_ws(mut self) -> Self {
        self.no_ws = true;
        self
    }
    /// Requests in one closed-loop round of `n`.
    fn requests(&self, n: usize) -> usize {
        if self.closed_only {
            (n / 5).max(1)
        } else {
            n
        }
    }
    fn with_pids(mut self, pids: Vec<u32>) -> Self {
        self.pids = pids;
        self
    }
    fn rps(&self) -> Vec<f64> {
        self.http.iter().map(Round::rps).collect()
    }
    /// The `q`-quantile of latency over all closed-loop rounds, ms.
    fn p99_ms(&self) -> f64 {
        latency_ms(&self.http, 0.99)
    }
    fn errors(&self) -> usize {
        self.http.iter().chain(&self.paced).map(|r| r.errors).sum()
    }
}

/// Open-loop rounds and seconds per round.
fn paced_shape(plan: Plan) -> (usize, f64) {
    if plan.full {
        (PACED_ROUNDS, PACED_SECS)
    } else {
        (1, 0.2)
    }
}

/// The `q`-quantile of latency over all of `rounds`, ms.
fn latency_ms(rounds: &[Round], q: f64) -> f64 {
    let mut v: Vec<u32> = rounds
        .iter()
        .flat_map(|r| r.lat_us.iter().copied())
        .collect();
    quantile(&mut v, q) / 1000.0
}

/// Round by round (the two fronts' rounds of the same number ran in one
/// shuffled pass, seconds apart): the median of `a`'s p99 ÷ `b`'s, and in
/// how many of the rounds `a`'s was the lower. Beside the p99 over all
/// rounds, it shows whether one slow spell of the machine decided it.
fn paired_p99(a: &[Round], b: &[Round]) -> (f64, usize, usize) {
    let p99 = |r: &Round| latency_ms(std::slice::from_ref(r), 0.99);
    let ratios: Vec<f64> = a.iter().zip(b).map(|(x, y)| p99(x) / p99(y)).collect();
    let lower = ratios.iter().filter(|r| **r < 1.0).count();
    (median(&ratios), lower, ratios.len())
}

fn fmt_rps(v: f64) -> String {
    let v = v.round() as u64;
    if v >= 1000 {
        format!("{},{:03}/s", v / 1000, v % 1000)
    } else {
        format!("{v}/s")
    }
}

/// Median of the per-round ratios `a[i] / b[i]`.
fn ratio(a: &[f64], b: &[f64]) -> f64 {
    let r: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    median(&r)
}

fn shuffle(order: &mut [usize], seed: u64) {
    use rand::{seq::SliceRandom, SeedableRng};
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
}

/// The upstream rows (section 9).
pub async fn run(t: &mut Table, plan: Plan) {
    let up = start_upstream();
    let url = format!("http://{}", up.app);
    let lan = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/lan.yaml");
    let dash = Dashgate::start(&["--upstream", &url]);
    let dash_lan = Dashgate::start(&["--upstream", &url, "--policy", lan]);
    let dir = tempfile::tempdir().expect("temp dir");
    let nginx = start_nginx(dir.path(), &up);
    let mut fronts = vec![
        Front::new("dashgate", dash.addr).with_pids(vec![dash.proc.pid()]),
        Front::new("dashgate-lan", dash_lan.addr).with_pids(vec![dash_lan.proc.pid()]),
        Front::new("direct", up.app),
    ];
    if let Ok((ng, plain, gated)) = &nginx {
        fronts.push(Front::new("nginx", *plain).with_pids(ng.workers()));
        fronts.push(Front::new("nginx-auth", *gated).with_pids(ng.workers()));
    }
    // The plain release build beside the measured one when they differ
    // (`make bench` measures `make release`'s profile-guided build).
    let dash_plain =
        measures_other_build().then(|| Dashgate::start_bin(PLAIN_BIN, &["--upstream", &url], &[]));
    if let Some(p) = &dash_plain {
        fronts.push(
            Front::new("dashgate-plain", p.addr)
                .with_pids(vec![p.proc.pid()])
                .without_ws(),
        );
    }
    let floor = start_floor(&up);
    if let Ok((p, addr)) = &floor {
        fronts.push(
            Front::new("hyper-floor", *addr)
                .with_pids(vec![p.pid()])
                .without_ws(),
        );
    }
    let llng = start_llng(&up);
    if let Ok((_, addr, cookie)) = &llng {
        let cookie = vec![("cookie".to_string(), cookie.clone())];
        fronts.push(Front::new("nginx-llng", *addr).closed_only(cookie, LLNG_HOST));
    }
    let (http_rounds, ws_rounds, big_count, small_count) = if plan.full {
        (HTTP_ROUNDS, WS_ROUNDS, BIG_COUNT, SMALL_COUNT)
    } else {
        (1, 1, 8, 50)
    };
    // Warm up (pools to the upstream, allocators), then A B C D rounds in a
    // new (seeded) order each round.
    for f in &fronts {
        let _ = round(&f.target, CONNS, f.requests(plan.requests) / 5, LIMIT).await;
    }
    let mut order: Vec<usize> = (0..fronts.len()).collect();
    for i in 0..http_rounds {
        shuffle(&mut order, i as u64);
        for &j in &order {
            let f = &mut fronts[j];
            let cpu = |pids: &[u32]| pids.iter().map(|p| cpu_ns(*p)).sum::<u64>();
            let c0 = cpu(&f.pids);
            let r = round(&f.target, CONNS, f.requests(plan.requests), LIMIT).await;
            if !f.pids.is_empty() {
                f.cpu_per_req
                    .push(cpu(&f.pids).saturating_sub(c0) as f64 / r.ok.max(1) as f64);
            }
            println!(
                "  upstream GET round {}/{http_rounds} {:12}: {:>8.0} req/s, {} errors",
                i + 1,
                f.name,
                r.rps(),
                r.errors
            );
            f.http.push(r);
        }
    }
    // One offered rate for every front: half of nginx's throughput (of
    // dashgate's without nginx).
    let base = fronts
        .iter()
        .find(|f| f.name == "nginx")
        .unwrap_or(&fronts[0])
        .rps();
    let rate = (median(&base) * PACED_SHARE).max(100.0);
    let (paced_rounds, paced_secs) = paced_shape(plan);
    for i in 0..paced_rounds {
        shuffle(&mut order, 500 + i as u64);
        for &j in &order {
            let f = &mut fronts[j];
            if f.closed_only {
                continue;
            }
            let r = paced(&f.target, CONNS, rate, paced_secs, LIMIT).await;
            println!(
                "  upstream GET paced {}/{paced_rounds} {:12}: {:>8.0} of {rate:.0} req/s, p99 {:.2} ms, {} errors",
                i + 1,
                f.name,
                r.rps(),
                latency_ms(std::slice::from_ref(&r), 0.99),
                r.errors
            );
            f.paced.push(r);
        }
    }
    for i in 0..ws_rounds {
        shuffle(&mut order, 1000 + i as u64);
        for &j in &order {
            let f = &mut fronts[j];
            if f.no_ws {
                continue;
            }
            match ws_throughput(f.addr, BIG, big_count).await {
                Some(m) => f.mb_s.push(m),
                None => f.ws_failed += 1,
            }
            match ws_echo(f.addr, small_count).await {
                Some(l) => f.echo_us.extend(l),
                None => f.ws_failed += 1,
            }
            println!(
                "  upstream WS round {}/{ws_rounds} {:12}: {:>7.1} MB/s",
                i + 1,
                f.name,
                f.mb_s.last().copied().unwrap_or(f64::NAN)
            );
        }
    }
    rows(
        t,
        &mut fronts,
        (&nginx, &llng),
        (http_rounds, paced_rounds, ws_rounds),
        rate,
        plan,
    );
    drop(llng);
    drop(floor);
    drop(nginx);
    drop(dash);
    drop(dash_lan);
    drop(dash_plain);
    idle(t, &up, plan.idle).await;
    drop(up);
}

fn rows(
    t: &mut Table,
    fronts: &mut [Front],
    (nginx, llng): (&Started<Nginx, SocketAddr>, &Started<Llng, String>),
    (http_rounds, paced_rounds, ws_rounds): (usize, usize, usize),
    rate: f64,
    plan: Plan,
) {
    let by = |fronts: &[Front], n: &str| fronts.iter().position(|f| f.name == n);
    let (d, dl, direct) = (
        by(fronts, "dashgate").expect("front"),
        by(fronts, "dashgate-lan").expect("front"),
        by(fronts, "direct").expect("front"),
    );
    let how = format!(
        "GET /page (1 KiB) from {CONNS} keep-alive connections, {} requests per round, {http_rounds} rounds per front in a new order each round; ratio = median of per-round ratios; p99 over all rounds; every request carries Authorization: Bearer <startup token>; errors: {}",
        plan.requests,
        fronts
            .iter()
            .map(|f| format!("{} {}", f.name, f.errors()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (n, na) = match nginx {
        Ok(_) => (by(fronts, "nginx"), by(fronts, "nginx-auth")),
        Err(e) => {
            for (fig, bar) in [
                (
                    "upstream GET: dashgate ÷ nginx plain proxy",
                    "≥ 0.8× (goal 1.0×)",
                ),
                ("upstream WebSocket relay: dashgate ÷ nginx", "≥ 1.0×"),
            ] {
                t.push(Row::missing(fig, bar, e));
            }
            (None, None)
        }
    };
    let complete =
        |f: &Front| f.http.len() == http_rounds && f.paced.len() == paced_rounds && f.errors() == 0;
    let drps = fronts[d].rps();
    if let (Some(n), Some(na)) = (n, na) {
        let nrps = fronts[n].rps();
        let narps = fronts[na].rps();
        let ok = complete(&fronts[d]) && complete(&fronts[n]) && complete(&fronts[na]);
        let r = ratio(&drps, &nrps);
        t.push(
            Row::new(
                "upstream GET: dashgate (secure + Bearer) ÷ nginx plain proxy",
                r,
                "x",
                format!(
                    "{r:.2}× ({} vs {})",
                    fmt_rps(median(&drps)),
                    fmt_rps(median(&nrps))
                ),
            )
            .bar("≥ 0.8× (goal 1.0×)", ok && r >= 0.8)
            .note(how.clone()),
        );
        let r = ratio(&drps, &narps);
        t.push(
            Row::new(
                "upstream GET: dashgate (secure + Bearer) ÷ nginx auth_request to a string compare",
                r,
                "x",
                format!(
                    "{r:.2}× ({} vs {})",
                    fmt_rps(median(&drps)),
                    fmt_rps(median(&narps))
                ),
            )
            .note("the floor of auth_request: nginx asks the bench's own auth service (a hyper server on loopback comparing the Bearer token, 204/401, no session store) on every request, through a keep-alive pool; no auth service people run costs less, so this is where an in-process gate gains least"),
        );
        let q = |f: &Front, q: f64| latency_ms(&f.paced, q);
        let paced_secs = paced_shape(plan).1;
        let (dp, np) = (q(&fronts[d], 0.99), q(&fronts[n], 0.99));
        let pair = paired_p99(&fronts[d].paced, &fronts[n].paced);
        t.push(
            Row::new(
                "upstream GET p99 at one offered rate: dashgate vs nginx plain proxy",
                dp,
                "ms",
                format!(
                    "{dp:.2} ms vs {np:.2} ms at {} (round by round {:.2}×, lower in {} of {}; p50 {:.2} vs {:.2} ms; nginx auth_request p99 {:.2} ms; dashgate-lan {:.2} ms; {})",
                    fmt_rps(rate),
                    pair.0,
                    pair.1,
                    pair.2,
                    q(&fronts[d], 0.5),
                    q(&fronts[n], 0.5),
                    q(&fronts[na], 0.99),
                    q(&fronts[dl], 0.99),
                    by(fronts, "hyper-floor").map_or("no hyper floor".to_string(), |f| format!(
                        "hyper floor p99 {:.2} ms",
                        q(&fronts[f], 0.99)
                    )),
                ),
            )
            .bar("≤ nginx's", ok && dp <= np)
            .note(format!(
                "open loop: {CONNS} keep-alive connections each send on a fixed schedule, {PACED_SHARE}× nginx's closed-loop median in all, {paced_secs} s per round, {paced_rounds} rounds per front in a new order each round; latency from when each request was sent (see benches/load/http.rs `paced` for why not from when it was due); p50/p99 over all rounds, judged; round by round: the median of the per-round p99 ratios dashgate ÷ nginx and in how many rounds dashgate's p99 was the lower (info)"
            )),
        );
        let (dp, np) = (fronts[d].p99_ms(), fronts[n].p99_ms());
        t.push(
            Row::new(
                "upstream GET p99 saturated (closed loop): dashgate vs nginx plain proxy",
                dp,
                "ms",
                format!(
                    "{dp:.2} ms vs {np:.2} ms (nginx auth_request {:.2} ms)",
                    fronts[na].p99_ms()
                ),
            )
            .note("the closed-loop rounds above: every front saturated, so mean latency is connections ÷ throughput (Little's law) and this row restates the throughput ratio; the bar is judged at one offered rate, the row before"),
        );
        let r = ratio(&fronts[dl].rps(), &nrps);
        t.push(Row::new(
            "upstream GET: dashgate (lan preset, loopback) ÷ nginx plain proxy",
            r,
            "x",
            format!(
                "{r:.2}× ({} vs {}; p99 {:.2} ms)",
                fmt_rps(median(&fronts[dl].rps())),
                fmt_rps(median(&nrps)),
                fronts[dl].p99_ms()
            ),
        ));
    }
    if let (Some(f), Some(n)) = (by(fronts, "hyper-floor"), by(fronts, "nginx")) {
        let r = ratio(&fronts[f].rps(), &fronts[n].rps());
        t.push(
            Row::new(
                "upstream GET: hyper floor (no gate, one thread) ÷ nginx plain proxy",
                r,
                "x",
                format!(
                    "{r:.2}× ({} vs {}; p99 at one offered rate {:.2} vs {:.2} ms)",
                    fmt_rps(median(&fronts[f].rps())),
                    fmt_rps(median(&fronts[n].rps())),
                    latency_ms(&fronts[f].paced, 0.99),
                    latency_ms(&fronts[n].paced, 0.99)
                ),
            )
            .note("benches/scripts/hyper-floor (make bench-floor) with CT=1: a proxy of hyper and tokio alone, no gate, no routing, no header rewriting, no timers; what a proxy on the libraries dashgate is built on does without dashgate"),
        );
    }
    build_row(t, fronts, d);
    llng_row(t, fronts, llng, d, &complete);
    let cpu: Vec<String> = fronts
        .iter()
        .filter(|f| !f.cpu_per_req.is_empty())
        .map(|f| format!("{} {:.1}", f.name, median(&f.cpu_per_req) / 1000.0))
        .collect();
    t.push(
        Row::new(
            "upstream GET: proxy CPU per request (µs)",
            median(&fronts[d].cpu_per_req) / 1000.0,
            "µs",
            cpu.join("; "),
        )
        .note("CPU of the proxy's own processes (dashgate: all threads; nginx: its workers, not the auth service) over each round ÷ requests, median of the rounds (/proc/PID/task/*/schedstat): less moved by the machine's other load than requests/s"),
    );
    t.push(Row::new(
        "upstream GET: the upstream alone (no proxy)",
        median(&fronts[direct].rps()),
        "req/s",
        format!(
            "{} (p99 {:.2} ms)",
            fmt_rps(median(&fronts[direct].rps())),
            fronts[direct].p99_ms()
        ),
    ));
    let ws_how = format!(
        "one tokio-tungstenite client per front pushes {} MiB of {} KiB binary messages through /ws to the upstream's echo and reads them back; MB/s of payload one way, median of {ws_rounds} rounds; failed WS rounds: {}",
        (BIG * if plan.full { BIG_COUNT } else { 8 }) >> 20,
        BIG >> 10,
        fronts
            .iter()
            .filter(|f| !f.no_ws)
            .map(|f| format!("{} {}", f.name, f.ws_failed))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let ws_ok = |f: &Front| f.mb_s.len() == ws_rounds && f.ws_failed == 0;
    let dm = median(&fronts[d].mb_s);
    if let (Some(n), Some(na)) = (n, na) {
        let r = ratio(&fronts[d].mb_s, &fronts[n].mb_s);
        t.push(
            Row::new(
                "upstream WebSocket relay: dashgate ÷ nginx",
                r,
                "x",
                format!(
                    "{r:.2}× ({dm:.1} vs {:.1} MB/s; nginx auth_request {:.1}, upstream alone {:.1} MB/s)",
                    median(&fronts[n].mb_s),
                    median(&fronts[na].mb_s),
                    median(&fronts[direct].mb_s)
                ),
            )
            .bar("≥ 1.0×", ws_ok(&fronts[d]) && ws_ok(&fronts[n]) && r >= 1.0)
            .note(ws_how),
        );
    }
    let mut shown = Vec::new();
    for f in fronts.iter_mut().filter(|f| !f.no_ws) {
        let p50 = quantile(&mut f.echo_us, 0.5) / 1000.0;
        let p99 = quantile(&mut f.echo_us, 0.99) / 1000.0;
        shown.push(format!("{} {p50:.3} / {p99:.3}", f.name));
    }
    let dp99 = quantile(&mut fronts[d].echo_us, 0.99) / 1000.0;
    t.push(
        Row::new(
            "upstream WebSocket echo p50 / p99 (ms)",
            dp99,
            "ms",
            shown.join("; "),
        )
        .note(format!(
            "{} messages of {SMALL} bytes per round, one at a time, {ws_rounds} rounds per front",
            if plan.full { SMALL_COUNT } else { 50 }
        )),
    );
}

/// Which build of dashgate the rows measure, and, when it is the
/// profile-guided one, the plain release build beside it in the same
/// rounds: CPU per request and the p99 at the same offered rate.
fn build_row(t: &mut Table, fronts: &[Front], d: usize) {
    const FIG: &str = "upstream GET: the measured build ÷ the plain release build";
    let Some(p) = fronts.iter().position(|f| f.name == "dashgate-plain") else {
        return t.push(
            Row::new(FIG, 1.0, "x", "1.00× (the plain release build was measured)".into())
                .note(format!("{PLAIN_BIN}; `make bench` measures the profile-guided build of `make release` when benches/scripts/pgo.sh could build it (DASHGATE_BENCH_BIN)")),
        );
    };
    let (m, b) = (&fronts[d], &fronts[p]);
    let r = ratio(&m.cpu_per_req, &b.cpu_per_req);
    let us = |f: &Front| median(&f.cpu_per_req) / 1000.0;
    let nginx = fronts
        .iter()
        .find(|f| f.name == "nginx")
        .map_or("no nginx".to_string(), |n| {
            format!("nginx {:.2} ms", latency_ms(&n.paced, 0.99))
        });
    t.push(
        Row::new(
            FIG,
            r,
            "x",
            format!(
                "{r:.2}× CPU per request ({:.1} vs {:.1} µs); {} vs {}; p99 at one offered rate {:.2} vs {:.2} ms ({nginx})",
                us(m),
                us(b),
                fmt_rps(median(&m.rps())),
                fmt_rps(median(&b.rps())),
                latency_ms(&m.paced, 0.99),
                latency_ms(&b.paced, 0.99),
            ),
        )
        .note(format!(
            "measured: {} (profile-guided, `make release`, trained by `load train`: benches/scripts/pgo.sh); beside it in the same closed and open-loop rounds, secure + Bearer as the measured one: {PLAIN_BIN} (the plain release build, `make run`'s); ratio = median of per-round ratios of CPU per request",
            server_bin()
        )),
    );
}

/// dashgate against nginx with `auth_request` to LemonLDAP::NG: the bar's
/// row, against an auth service people run.
fn llng_row(
    t: &mut Table,
    fronts: &[Front],
    llng: &Started<Llng, String>,
    d: usize,
    complete: &dyn Fn(&Front) -> bool,
) {
    const FIG: &str =
        "upstream GET: dashgate (secure + Bearer) ÷ nginx auth_request to LemonLDAP::NG";
    let l = match (llng, fronts.iter().position(|f| f.name == "nginx-llng")) {
        (Ok(_), Some(l)) => l,
        (Err(e), _) => return t.push(Row::missing(FIG, "≥ 5×", e)),
        (Ok(_), None) => return t.push(Row::missing(FIG, "≥ 5×", "no front")),
    };
    let (drps, lrps) = (fronts[d].rps(), fronts[l].rps());
    let r = ratio(&drps, &lrps);
    let ok = complete(&fronts[d])
        && fronts[l].http.len() == fronts[d].http.len()
        && fronts[l].errors() == 0;
    t.push(
        Row::new(
            FIG,
            r,
            "x",
            format!(
                "{r:.2}× ({} vs {}; p99 {:.2} vs {:.2} ms)",
                fmt_rps(median(&drps)),
                fmt_rps(median(&lrps)),
                fronts[d].p99_ms(),
                fronts[l].p99_ms()
            ),
        )
        .bar("≥ 5×", ok && r >= 5.0)
        .note(format!(
            "Debian's LemonLDAP::NG {}: nginx's auth_request to its FastCGI handler as its documentation configures it, {} perl-fcgi workers (its default), the Demo user signed in through the real portal, sessions in files; every request carries that session cookie; {} requests per round (a fifth of the others'), the same rounds and order as the fronts above (benches/scripts/llng.sh)",
            llng_version(),
            std::env::var("LLNG_NPROC").unwrap_or_else(|_| "7".into()),
            fronts[l].http.first().map_or(0, |r| r.ok + r.errors)
        )),
    );
}

/// The installed LemonLDAP::NG package's version.
fn llng_version() -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", "liblemonldap-ng-handler-perl"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "(version unknown)".into())
}

/// RSS of dashgate holding `want` idle proxied WebSockets (the upstream
/// holds the other ends).
async fn idle(t: &mut Table, up: &Upstream, want: usize) {
    let fig = format!(
        "{} idle proxied WebSockets: dashgate RSS",
        if want == 10_000 {
            "10,000".to_string()
        } else {
            want.to_string()
        }
    );
    // dashgate needs two fds per relayed socket (client and upstream); the
    // hard limit here may be lower than 2 × 10,000 + a few.
    let limit = super::procs::raise_fd_limit() as usize;
    let n = want.min(limit.saturating_sub(64) / 2);
    let url = format!("http://{}", up.app);
    let dash = Dashgate::start_env(&["--upstream", &url], &[]);
    let status = |s: &Dashgate| {
        let addr = s.addr;
        async move {
            get_json(addr, "/.dashgate/api/status", &bearer())
                .await
                .and_then(|v| v["connections"]["websockets"].as_u64())
        }
    };
    let _ = status(&dash).await;
    let _ = round(
        &Target {
            addr: dash.addr,
            path: "/page".into(),
            headers: bearer(),
            fresh: false,
            host: None,
            any_status: false,
        },
        4,
        100,
        LIMIT,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = dash.proc.rss_kib();
    let up_before = up.proc.rss_kib();
    let addr = dash.addr;
    let started = Instant::now();
    let results: Vec<Result<RawWs, String>> = futures_util::stream::iter(0..n)
        .map(|i| async move { RawWs::connect(addr, local(i), "/ws", &bearer()).await })
        .buffer_unordered(64)
        .collect()
        .await;
    let socks = match super::fanout::all_opened(results) {
        Ok(s) => s,
        Err(e) => {
            t.push(Row::missing(&fig, "≤ 300 MB", &e));
            return;
        }
    };
    let open_secs = started.elapsed().as_secs_f64();
    let mut counted = status(&dash).await.unwrap_or(0);
    let _ = settle(Duration::from_secs(5), || {
        super::procs::fd_count(dash.proc.pid()) >= 2 * n
    })
    .await;
    if counted != n as u64 {
        counted = status(&dash).await.unwrap_or(0);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = dash.proc.rss_kib();
    let per_kib = after.saturating_sub(before) as f64 / n.max(1) as f64;
    let mb = |kib: f64| kib * 1024.0 / 1e6;
    // Judged at 10,000: measured, or the measured per-socket cost carried
    // on to 10,000 when the fd limit allows fewer.
    let at_want = before as f64 + per_kib * want as f64;
    let extrapolated = n < want;
    t.push(
        Row::new(
            &fig,
            mb(at_want),
            "MB",
            if extrapolated {
                format!(
                    "{:.1} MB at {want} ({:.1} MB measured with {n}; before {:.1} MB; {per_kib:.1} KiB per socket)",
                    mb(at_want),
                    mb(after as f64),
                    mb(before as f64)
                )
            } else {
                format!(
                    "{:.1} MB (before {:.1} MB; {per_kib:.1} KiB per socket)",
                    mb(after as f64),
                    mb(before as f64)
                )
            },
        )
        .bar("≤ 300 MB", mb(at_want) <= IDLE_BAR_MB && counted == n as u64)
        .note(format!(
            "VmRSS of the dashgate child (secure preset, Bearer); {n} sockets opened in {open_secs:.1} s from 127.0.0.1–127.0.0.50; /.dashgate/api/status counted {counted}; dashgate fds {}; the upstream's RSS {:.1} → {:.1} MB{}",
            dash.proc.fds(),
            mb(up_before as f64),
            mb(up.proc.rss_kib() as f64),
            if extrapolated {
                format!("; the hard fd limit ({limit}) allows dashgate {n} relayed sockets (two fds each), so the figure at {want} is the measured RSS per socket carried on linearly")
            } else {
                String::new()
            }
        )),
    );
    drop(socks);
}
