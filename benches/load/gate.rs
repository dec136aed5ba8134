//! Gate overhead: `GET /api/status` served with the gate and without it,
//! from one process on the same accept loop (`dashgate::server::serve`),
//! driven A B A B by one load generator (SPEC §5: the gate, deciding every
//! request from scratch, costs ≤ 10 %).
//!
//! The server side runs as a child process (this program re-executed with
//! `DASHGATE_BENCH_ROLE=ab-server`) so the load generator does not share a
//! runtime with it. It binds four listeners:
//!
//! * `bare`      – `status_body` mounted alone: no gate, no rejection handler;
//! * `secure`    – the whole route tree behind the gate, `secure` preset;
//! * `blocklist` – the same with a policy whose first rule denies a
//!   10,000-CIDR network (every request pays a lookup that misses);
//! * `bare2`     – `bare` again, for the A/A row: the method's own noise.
//!
//! Every request carries `Authorization: Bearer <startup token>`, the bare
//! one too, so the bytes on the wire are the same. `bare` and `secure` are
//! driven twice: with the same head again on each connection and with a new
//! head on every request (`X-Request-Id: <n>`). The gate remembers nothing
//! between requests, so both read and decide every request in full; the
//! second shows that a header no rule reads costs nothing extra.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use dashgate::chat::ChatConfig;
use dashgate::policy::{CompiledPolicy, LoadContext};
use dashgate::routes::api::status_body;
use dashgate::server::PerConnection;
use dashgate::state::{AppState, Config, PolicySource, StartupToken, State};
use tokio::net::TcpListener;
use warp::Filter;

use super::hermes::Hermes;
use super::http::{median, quantile, round, Round, Target};
use super::procs::{cpu_ns, Proc};
use super::table::{Row, Table};
use super::{Plan, TOKEN};

/// Connections the load generator keeps open.
const CONNS: usize = 32;
/// Requests per hermes round (dashgate's are `Plan::requests`): hermes is
/// far slower. Rounds are short and many: the machine is shared, and a
/// burst of someone else's work should spoil one round, not a variant.
const HERMES_REQUESTS: usize = 400;
/// Upper bound on one round.
const ROUND_LIMIT: Duration = Duration::from_secs(30);

fn state(bind: SocketAddr, policy: CompiledPolicy, source: PolicySource) -> AppState {
    State::new(
        Config {
            bind,
            static_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/static")),
            policy_source: source,
            policy_context: LoadContext::new(bind.ip()),
            startup_token: Some(StartupToken::new(TOKEN)),
            auth_window: Duration::from_secs(60),
            max_sockets: 20_000,
            chat: ChatConfig::new(vec!["/bin/sh".into()]),
            upstream: None,
        },
        policy,
    )
}

/// The child: three listeners, until stdin closes.
pub fn ab_server() {
    let filter = tracing_subscriber::EnvFilter::new("warn");
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            let _ = tx.send(true);
        });
        let stop = move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.changed().await;
            }
        };
        let ctx = LoadContext::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
        let mut ports = Vec::new();
        let mut tasks = Vec::new();
        for name in ["bare", "secure", "blocklist", "bare2"] {
            let listener = TcpListener::bind(loopback).await.expect("bind");
            let bind = listener.local_addr().expect("addr");
            ports.push(format!("{name}={}", bind.port()));
            let (policy, source) = match name {
                "blocklist" => (
                    CompiledPolicy::from_str(
                        &super::policies::gate_blocklist(),
                        "blocklist.yaml",
                        &ctx,
                    )
                    .expect("blocklist policy"),
                    PolicySource::File("blocklist.yaml".into()),
                ),
                _ => (
                    CompiledPolicy::preset("secure", &ctx).expect("secure preset"),
                    PolicySource::Preset("secure".into()),
                ),
            };
            let st = state(bind, policy, source);
            let shutdown = stop();
            tasks.push(if name.starts_with("bare") {
                let s = st;
                let bare = warp::path!("api" / "status")
                    .and(warp::get())
                    .map(move || warp::reply::json(&status_body(&s)));
                let svc = PerConnection::new(warp::service(bare));
                let handler = move |_, req| svc.call(req);
                tokio::spawn(dashgate::server::serve(
                    listener,
                    st,
                    handler,
                    limits(),
                    shutdown,
                ))
            } else {
                tokio::spawn(dashgate::server::run(listener, st, limits(), shutdown))
            });
        }
        println!("ports {}", ports.join(" "));
        for t in tasks {
            let _ = t.await;
        }
    });
}

/// The server's limits, with room for the load generator's connections
/// (all from one address).
fn limits() -> dashgate::server::limits::Limits {
    dashgate::server::limits::Limits {
        max_connections: 20_000,
        max_connections_per_client: 20_000,
        ..Default::default()
    }
}

struct Variant {
    name: &'static str,
    target: Target,
    requests: usize,
    rounds: Vec<Round>,
    /// Server CPU (all threads) spent in each round, ns; `None` for a
    /// server that is not ours to read.
    cpu_ns: Vec<u64>,
}

impl Variant {
    fn rps(&self) -> Vec<f64> {
        self.rounds.iter().map(Round::rps).collect()
    }
    fn all_lat(&self) -> Vec<u32> {
        self.rounds
            .iter()
            .flat_map(|r| r.lat_us.iter().copied())
            .collect()
    }
    fn errors(&self) -> usize {
        self.rounds.iter().map(|r| r.errors).sum()
    }
    /// Server CPU per successful request in each round, ns.
    fn cpu_per_request(&self) -> Vec<f64> {
        self.cpu_ns
            .iter()
            .zip(&self.rounds)
            .map(|(c, r)| *c as f64 / r.ok.max(1) as f64)
            .collect()
    }
}

/// Summary for the hermes rows.
fn fmt_rps(v: f64) -> String {
    let v = v.round() as u64;
    if v >= 1000 {
        format!("{},{:03}/s", v / 1000, v % 1000)
    } else {
        format!("{v}/s")
    }
}

/// Run the rounds and add the gate (and hermes `/api/status`) rows.
pub async fn run(
    t: &mut Table,
    plan: Plan,
    gate_rows: bool,
    hermes: Option<&Result<Hermes, String>>,
) {
    #[allow(non_snake_case)]
    let REQUESTS = plan.requests;
    let me = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(me);
    cmd.env("DASHGATE_BENCH_ROLE", "ab-server")
        .env("RUST_LOG", "warn");
    let mut child = Proc::spawn(cmd).expect("spawn the ab server");
    let ports = child
        .wait_line("ports ", Duration::from_secs(30))
        .expect("the ab server printed no ports");
    let port = |name: &str| -> u16 {
        ports
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .and_then(|p| p.parse().ok())
            .expect("port")
    };
    let auth = vec![("authorization".to_string(), format!("Bearer {TOKEN}"))];
    let target = |name: &str, fresh: bool| Target {
        addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port(name)),
        path: "/api/status".into(),
        headers: auth.clone(),
        fresh,
        host: None,
        any_status: false,
    };
    let variant = |name: &'static str, listener: &str, fresh: bool| Variant {
        name,
        target: target(listener, fresh),
        requests: REQUESTS,
        rounds: vec![],
        cpu_ns: vec![],
    };
    let mut vs = vec![
        variant("bare", "bare", false),
        variant("secure", "secure", false),
        variant("blocklist", "blocklist", false),
        variant("bare-new", "bare", true),
        variant("secure-new", "secure", true),
        variant("bare-again", "bare2", false),
    ];
    if let Some(Ok(h)) = hermes {
        vs.push(Variant {
            name: "hermes",
            target: Target {
                addr: h.addr,
                path: "/api/status".into(),
                headers: vec![("authorization".into(), format!("Bearer {}", h.token))],
                fresh: false,
                host: None,
                any_status: false,
            },
            requests: HERMES_REQUESTS,
            rounds: vec![],
            cpu_ns: vec![],
        });
    }
    // Warm up every variant (connections, allocator, caches), then measure.
    for v in &vs {
        let _ = round(&v.target, CONNS, v.requests / 5, ROUND_LIMIT).await;
    }
    let n = plan.rounds;
    let mut order: Vec<usize> = (0..vs.len()).collect();
    for i in 0..n {
        // A new order each round (seeded, so runs are alike): a rotation
        // kept the cycle, so each variant always followed the same one —
        // `bare` followed hermes, whose rounds leave the machine busy, and
        // read 2–7 % slow against `bare2` in `make bench` (the A/A row).
        {
            use rand::{seq::SliceRandom, SeedableRng};
            order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(i as u64));
        }
        for &j in &order {
            let v = &mut vs[j];
            let pid = if v.name == "hermes" {
                None
            } else {
                Some(child.pid())
            };
            let cpu0 = pid.map(cpu_ns);
            let r = round(&v.target, CONNS, v.requests, ROUND_LIMIT).await;
            if let (Some(pid), Some(c0)) = (pid, cpu0) {
                v.cpu_ns.push(cpu_ns(pid).saturating_sub(c0));
            }
            println!(
                "  gate round {}/{n} {:9}: {:>8.0} req/s, {} errors",
                i + 1,
                v.name,
                r.rps(),
                r.errors
            );
            v.rounds.push(r);
        }
    }
    drop(child);

    let bare = vs[0].rps();
    let mut p99 = Vec::new();
    for v in &mut vs {
        let mut lat = v.all_lat();
        p99.push(quantile(&mut lat, 0.99) / 1000.0);
    }
    let errors: usize = vs.iter().map(Variant::errors).sum();
    if gate_rows {
        for (idx, base, figure) in [
            (1, 0, "gate cost on /api/status: secure preset + Bearer"),
            (
                2,
                0,
                "gate cost on /api/status: 10,000-CIDR policy + Bearer",
            ),
            (
                4,
                3,
                "gate cost on /api/status: secure + Bearer, every request a new head",
            ),
        ] {
            let ratios: Vec<f64> = vs[idx]
                .rps()
                .iter()
                .zip(vs[base].rps())
                .map(|(g, b)| g / b)
                .collect();
            let mut ratios = ratios;
            ratios.sort_by(|a, b| a.total_cmp(b));
            let (g, b) = (vs[idx].cpu_per_request(), vs[base].cpu_per_request());
            let mut cpu: Vec<f64> = g.iter().zip(&b).map(|(g, b)| g / b).collect();
            cpu.sort_by(|a, b| a.total_cmp(b));
            let quartiles = |v: &[f64], sign: f64| {
                let at =
                    |p: f64| (v[((v.len() - 1) as f64 * p).round() as usize] - 1.0) * sign * 100.0;
                let (a, b) = (at(0.25), at(0.75));
                (a.min(b), a.max(b))
            };
            // The bar is on throughput: cost = 1 − gated ÷ bare requests/s.
            let cost = (1.0 - median(&ratios)) * 100.0;
            let (t25, t75) = quartiles(&ratios, -1.0);
            let cpu_cost = (median(&cpu) - 1.0) * 100.0;
            let (c25, c75) = quartiles(&cpu, 1.0);
            t.push(
                Row::new(
                    figure,
                    cost,
                    "%",
                    format!(
                        "{cost:.1} % throughput (quartiles {t25:.1}…{t75:.1}); {cpu_cost:.1} % server CPU/request ({c25:.1}…{c75:.1}; {:.1} vs {:.1} µs); p99 {:.2} vs {:.2} ms",
                        median(&g) / 1000.0,
                        median(&b) / 1000.0,
                        p99[idx],
                        p99[base]
                    ),
                )
                .bar("≤ 10 %", cost <= 10.0)
                .note(format!(
                    "{n} rounds per variant of {REQUESTS} requests over {CONNS} keep-alive connections, order shuffled each round; cost = 1 − median of the per-round ratios gated ÷ bare requests/s; beside it the median per-round ratio of server CPU per request (all threads, /proc/PID/task/*/schedstat); {errors} errors in all{}",
                    if base == 3 {
                        "; each request carries X-Request-Id: <n>, bare's too, so no connection sends the same head twice; the gate reads and decides each one from scratch"
                    } else {
                        "; the same head again on each connection; the gate reads and decides each one from scratch (it remembers nothing between requests)"
                    }
                )),
            );
        }
        // A/A: the bare handler against itself on a second listener, so
        // the table shows how far this method reads apart two things that
        // cost the same.
        let aa: Vec<f64> = vs[5].rps().iter().zip(&bare).map(|(a, b)| a / b).collect();
        let aa_cost = (1.0 - median(&aa)) * 100.0;
        t.push(
            Row::new(
                "the method's own noise: bare vs the same bare handler (A/A)",
                aa_cost,
                "%",
                format!("{aa_cost:.1} % throughput"),
            )
            .note("the bare handler on a second listener of the same process, measured and computed as the rows above; a method that read no difference would give 0"),
        );
        t.push(Row::new(
            "/api/status throughput: bare / secure / 10k-CIDR",
            median(&vs[1].rps()),
            "req/s",
            format!(
                "{} / {} / {}",
                fmt_rps(median(&bare)),
                fmt_rps(median(&vs[1].rps())),
                fmt_rps(median(&vs[2].rps()))
            ),
        ));
    }
    t.section(7);
    match hermes {
        Some(Ok(_)) => {
            let h = &vs[6];
            let ratios: Vec<f64> = vs[1]
                .rps()
                .iter()
                .zip(h.rps())
                .map(|(d, h)| d / h)
                .collect();
            let ratio = median(&ratios);
            t.push(
                Row::new(
                    "hermes 0.19.0 /api/status: dashgate throughput ÷ hermes",
                    ratio,
                    "x",
                    format!(
                        "{ratio:.1}× (dashgate secure+Bearer {} vs hermes {})",
                        fmt_rps(median(&vs[1].rps())),
                        fmt_rps(median(&h.rps()))
                    ),
                )
                .note(format!(
                    "same generator, alternated with the dashgate rounds; hermes rounds of {HERMES_REQUESTS} requests; hermes errors: {}",
                    h.errors()
                )),
            );
            t.push(Row::new(
                "hermes 0.19.0 /api/status: p99 hermes ÷ dashgate",
                p99[6] / p99[1],
                "x",
                format!(
                    "{:.1}× (hermes {:.2} ms vs dashgate {:.2} ms)",
                    p99[6] / p99[1],
                    p99[6],
                    p99[1]
                ),
            ));
        }
        Some(Err(why)) => t.push(Row::missing(
            "hermes 0.19.0 /api/status vs dashgate",
            "—",
            why,
        )),
        None => {}
    }
}
