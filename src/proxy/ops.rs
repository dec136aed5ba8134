//! What dashgate knows about its upstream (SPEC §6): whether it is up, its
//! process when `--upstream-command` supervises it, the last error, and the
//! per-upstream metrics (answers by status class, time to the response
//! head, errors by kind, open relayed sockets, restarts).
//!
//! The proxy reports every outcome here ([`Ops::observe`]); a prober
//! ([`probe_loop`]) connects every [`PROBE_EVERY`] so the state is right
//! with no traffic too; the supervisor (`supervise`) reports its child.
//! The state is shown in `/api/status` (its `upstream` object), on the
//! Access page, and announced as an `upstream.state` event when it changes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use serde_json::json;

use super::Failure;
use crate::events::Hub;
use crate::metrics::UpstreamMetrics;

/// How often the prober connects to the upstream.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// How long one probe's connect may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the upstream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Health {
    /// Being started (supervised), or not probed yet.
    Starting = 0,
    /// It accepts connections (or just answered a request).
    Up = 1,
    /// It does not accept connections (or its process exited).
    Down = 2,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Starting => "starting",
            Health::Up => "up",
            Health::Down => "down",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Health::Up,
            2 => Health::Down,
            _ => Health::Starting,
        }
    }
}

#[derive(Default)]
struct Inner {
    since: Option<SystemTime>,
    /// `Some(program)` when `--upstream-command` runs the upstream.
    supervised: Option<String>,
    /// The child's pid while it runs.
    pid: Option<u32>,
    /// The child is running (spawned and not yet reaped).
    running: bool,
    restarts: u64,
    last_error: Option<(String, SystemTime)>,
}

/// The upstream's state and metrics, shared by the proxy, the prober, the
/// supervisor and the status route.
pub struct Ops {
    pub url: String,
    pub addr: String,
    pub metrics: UpstreamMetrics,
    health: AtomicU8,
    inner: Mutex<Inner>,
    hub: Arc<Hub>,
}

impl std::fmt::Debug for Ops {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ops")
            .field("url", &self.url)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl Ops {
    pub fn new(url: &str, addr: &str, metrics: UpstreamMetrics, hub: Arc<Hub>) -> Self {
        Self {
            url: url.to_owned(),
            addr: addr.to_owned(),
            metrics,
            health: AtomicU8::new(Health::Starting as u8),
            inner: Mutex::new(Inner {
                since: Some(SystemTime::now()),
                ..Inner::default()
            }),
            hub,
        }
    }

    pub fn health(&self) -> Health {
        Health::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Count one proxied request's outcome (sent at `sent`) and learn from
    /// it: an answer means the upstream is up; a refused connection, that
    /// it is down (unless its supervisor knows better: it is starting, or
    /// its process is gone).
    pub fn observe<T>(&self, outcome: &Result<http::Response<T>, Failure>, sent: Instant) {
        match outcome {
            Ok(res) => {
                self.metrics
                    .response(res.status().as_u16(), sent.elapsed().as_secs_f64());
                if self.health() != Health::Up {
                    self.reachable();
                }
            }
            Err(Failure::Unavailable) => {
                self.metrics.unavailable.inc();
                self.unreachable("the upstream refused the connection or closed it".into());
            }
            Err(Failure::Timeout) => {
                self.metrics.timeouts.inc();
                self.note_error("no response head within --upstream-timeout".into());
            }
        }
    }

    /// Mark `--upstream-command` as running the upstream (`program` is its
    /// first word: the status shows it, never the arguments).
    pub fn set_supervised(&self, program: &str) {
        self.inner.lock().supervised = Some(program.to_owned());
    }

    /// For the page a browser gets while the upstream is down: what
    /// dashgate is doing about it, when it runs the upstream (HTML).
    pub fn supervised_hint(&self) -> Option<String> {
        let i = self.inner.lock();
        let program = i.supervised.as_ref()?;
        let program = html_escape(program);
        let doing = if i.running {
            "has started it and waits for it to accept connections"
        } else {
            "starts it again shortly"
        };
        let restarts = match i.restarts {
            0 => String::new(),
            1 => " (restarted once so far)".into(),
            n => format!(" (restarted {n} times so far)"),
        };
        Some(format!(
            "dashgate runs it (<code>{program}</code>) and {doing}{restarts}; reload this page in a moment."
        ))
    }

    pub fn supervised(&self) -> bool {
        self.inner.lock().supervised.is_some()
    }

    /// The supervisor started its child `pid` (`restart`: not the first).
    pub fn child_started(&self, pid: Option<u32>, restart: bool) {
        {
            let mut i = self.inner.lock();
            i.pid = pid;
            i.running = true;
            if restart {
                i.restarts += 1;
                self.metrics.restarts.inc();
            }
        }
        self.set(Health::Starting, None);
    }

    /// The supervisor's child ended: the upstream is down (announced with
    /// the pid that ended).
    pub fn child_exited(&self, why: String) {
        self.inner.lock().running = false;
        self.set(Health::Down, Some(why));
        self.inner.lock().pid = None;
    }

    /// The address accepts connections (a probe, the supervisor's wait, or
    /// an answer).
    pub fn reachable(&self) {
        if self.supervised() && !self.inner.lock().running {
            return;
        }
        self.set(Health::Up, None);
    }

    /// The address does not accept connections.
    pub fn unreachable(&self, why: String) {
        {
            let i = self.inner.lock();
            // The supervisor's states win: a child being started does not
            // accept connections yet, and a gone child is down already.
            if i.supervised.is_some() && (!i.running || self.health() == Health::Starting) {
                return;
            }
        }
        self.set(Health::Down, Some(why));
    }

    /// Remember `why` as the last error without changing the state.
    pub fn note_error(&self, why: String) {
        self.inner.lock().last_error = Some((why, SystemTime::now()));
    }

    /// Change the state (announcing a change), keeping `why` as the last
    /// error.
    pub fn set(&self, to: Health, why: Option<String>) {
        let from = Health::from_u8(self.health.swap(to as u8, Ordering::Relaxed));
        self.metrics.up.set(i64::from(to == Health::Up));
        let (pid, restarts) = {
            let mut i = self.inner.lock();
            if let Some(w) = &why {
                i.last_error = Some((w.clone(), SystemTime::now()));
            }
            if from != to {
                i.since = Some(SystemTime::now());
            }
            (i.pid, i.restarts)
        };
        if from == to {
            return;
        }
        match to {
            Health::Up => tracing::info!(upstream = %self.url, pid, "upstream is up"),
            Health::Down => {
                tracing::warn!(upstream = %self.url, pid, error = why.as_deref().unwrap_or(""), "upstream is down")
            }
            Health::Starting => {
                tracing::info!(upstream = %self.url, pid, restarts, "upstream is starting")
            }
        }
        self.hub.server_event(
            "upstream.state",
            json!({
                "url": self.url,
                "state": to.as_str(),
                "was": from.as_str(),
                "pid": pid,
                "restarts": restarts,
                "error": why,
            }),
        );
    }

    /// The `upstream` object of `/api/status`; `websockets` is the number
    /// of relayed sockets open.
    pub fn status(&self, websockets: usize) -> serde_json::Value {
        let i = self.inner.lock();
        json!({
            "url": self.url,
            "state": self.health().as_str(),
            "since": i.since.map(crate::util::rfc3339),
            "supervised": i.supervised.is_some(),
            "command": i.supervised,
            "pid": i.pid,
            "restarts": i.supervised.as_ref().map(|_| i.restarts),
            "last_error": i.last_error.as_ref().map(|(e, _)| e),
            "last_error_at": i.last_error.as_ref().map(|(_, t)| crate::util::rfc3339(*t)),
            "websockets": websockets,
        })
    }
}

/// Whether something accepts TCP connections at `addr` (`HOST:PORT`),
/// bounded by `timeout`; `Err` says why not.
pub async fn connects(addr: &str, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("connecting to {addr}: {e}")),
        Err(_) => Err(format!(
            "connecting to {addr}: no answer within {timeout:?}"
        )),
    }
}

/// Probe once: connect to the upstream and record what happened.
pub async fn probe(ops: &Ops) {
    match connects(&ops.addr, PROBE_TIMEOUT).await {
        Ok(()) => ops.reachable(),
        Err(e) => ops.unreachable(e),
    }
}

/// Probe the upstream every [`PROBE_EVERY`], for the life of the server.
pub async fn probe_loop(ops: Arc<Ops>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        probe(&ops).await;
    }
}

/// `HOST:PORT` of an upstream authority, for connecting.
pub fn socket_addr_text(authority: &http::uri::Authority) -> String {
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    }
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
