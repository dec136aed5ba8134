//! The server's shared state: the live policy and the hubs every route uses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;

use sha2::{Digest, Sha256};

use crate::auth::limiter::FailureLimiter;
use crate::auth::sessions::Sessions;
use crate::chat::{ChatConfig, EventSink, Registry};
use crate::events::Hub;
use crate::events::HubStats;
use crate::metrics::{DecisionCounters, Metrics};
use crate::policy::TokenDigest;
use crate::policy::{CompiledPolicy, LoadContext, Principal};
use crate::server::conns::{Close, Conns};

/// Where the policy in force came from, so a reload knows what to read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    Preset(String),
    File(PathBuf),
}

/// The startup token, kept only as its SHA-256 so a memory dump or a debug
/// print cannot leak it.
#[derive(Clone)]
pub struct StartupToken {
    sha256: [u8; 32],
}

impl std::fmt::Debug for StartupToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StartupToken(<redacted>)")
    }
}

impl StartupToken {
    pub fn new(token: &str) -> Self {
        Self {
            sha256: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Constant-time comparison of `candidate` with the token.
    pub fn matches(&self, candidate: &TokenDigest) -> bool {
        candidate.matches(&self.sha256)
    }
}

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// The address actually bound (port 0 resolved).
    pub bind: SocketAddr,
    pub static_dir: PathBuf,
    pub policy_source: PolicySource,
    /// What the policy is compiled against (bind address, machine name,
    /// `--allowed-host`, upstream mode), kept so a reload compiles the same
    /// way (in upstream mode, the presets' paths stay under `/.dashgate`).
    pub policy_context: LoadContext,
    pub startup_token: Option<StartupToken>,
    /// Length of the failed-credential window (a minute; shorter in tests).
    pub auth_window: std::time::Duration,
    /// Most WebSockets open at once.
    pub max_sockets: usize,
    /// Chat sessions: command, limits. `events_url` is filled in from
    /// `bind` by [`State::new`] when left `None`.
    pub chat: ChatConfig,
    /// Upstream mode (SPEC §6): the dashboard every path but
    /// `/.dashgate/...` is proxied to. `None`: dashgate serves its own.
    pub upstream: Option<Arc<crate::proxy::Upstream>>,
}

impl Config {
    /// The path of one of dashgate's own routes as a client requests it:
    /// under `/.dashgate` in upstream mode.
    pub fn own_route(&self, path: &str) -> String {
        match self.upstream {
            Some(_) => format!("{}{path}", crate::policy::OWN_PREFIX),
            None => path.to_string(),
        }
    }
}

/// A compiled policy and when it took effect.
pub struct LivePolicy {
    pub compiled: CompiledPolicy,
    pub loaded_at: SystemTime,
    /// Its decisions counted (see [`crate::metrics::Metrics::decision`]).
    pub counters: DecisionCounters,
    /// Its rule names, for admissions and refusals.
    names: RuleNames,
}

/// A policy's rule names, one copy for each shard of threads (as
/// [`crate::metrics::Sharded`] counts): the gate names the deciding rule in
/// every admission, and sharing one `Arc` per name would bump a count that
/// every core's requests bump, where copying it would allocate.
struct RuleNames([Vec<Arc<str>>; crate::metrics::SHARDS]);

impl RuleNames {
    fn new(policy: &CompiledPolicy) -> Self {
        Self(std::array::from_fn(|_| {
            (0..policy.rule_count())
                .map(|i| Arc::from(&**policy.rule_name(i).0))
                .collect()
        }))
    }
}

impl LivePolicy {
    /// The name of the rule at `index` (of `decide_indexed`), this thread's
    /// copy of it.
    pub fn rule_name(&self, index: usize) -> Arc<str> {
        self.names.0[crate::metrics::shard()][index].clone()
    }

    pub fn new(compiled: CompiledPolicy) -> Self {
        Self {
            counters: DecisionCounters::new(&compiled),
            names: RuleNames::new(&compiled),
            compiled,
            loaded_at: SystemTime::now(),
        }
    }
}

/// Everything the routes share; cheap to clone as [`AppState`].
pub struct State {
    pub config: Config,
    /// Read on every request: `ArcSwap` reads touch no memory another
    /// core writes (an `RwLock` read takes a shared lock word every core
    /// bounces), and a reload still swaps the whole policy at once.
    live: ArcSwap<LivePolicy>,
    pub hub: Arc<Hub>,
    pub conns: Arc<Conns>,
    pub limiter: FailureLimiter,
    /// Sign-in sessions behind the cookie.
    pub sessions: Sessions,
    pub metrics: Metrics,
    pub started: Instant,
    /// Chat sessions (PTYs) behind `/api/ws` and `/api/sessions`.
    pub chat: Arc<Registry>,
    /// The TLS pair in force, when the server speaks https (SPEC §7); set
    /// once at start, before the first connection is accepted.
    pub tls: std::sync::OnceLock<Arc<crate::server::tls::Tls>>,
    /// The upstream's state and metrics (upstream mode, SPEC §6).
    pub upstream_ops: Option<Arc<crate::proxy::ops::Ops>>,
}

/// The server's state as routes and tasks hold it: for the life of the
/// process (a server has one; see [`State::new`]). A reference rather than
/// an `Arc`: warp's combinators clone what a route captures on every request
/// (`And`, `Or` and `Then` clone their second half), and each clone of one
/// `Arc` is an atomic increment, and a decrement after, on a count that
/// every core's requests share.
pub type AppState = &'static State;

impl State {
    /// The state of one server, kept until the process ends (leaked: it is
    /// the server's for as long as the process serves, and a process serves
    /// once; a test that builds several keeps a few kilobytes each).
    pub fn new(config: Config, policy: CompiledPolicy) -> AppState {
        let metrics = Metrics::default();
        let hub = Hub::with_stats(HubStats {
            delivered: metrics.event_deliveries.clone(),
            dropped: metrics.event_drops.clone(),
            published: metrics.event_publishes.clone(),
        });
        let mut chat = config.chat.clone();
        if chat.events_url.is_none() {
            chat.events_url = events_base(config.bind, &config.own_route("/api/pub"));
        }
        let sink = hub.clone();
        let conns = Conns::new(config.max_sockets, hub.clone());
        let publishers = conns.clone();
        let on_event: EventSink = Arc::new(move |kind, data| {
            // A session's internal credential ends with it (SPEC §3.1): so
            // do the publishers it opened.
            if kind == "session.exited" {
                if let Some(id) = data["id"].as_str() {
                    end_internal_sockets(&publishers, id);
                }
            }
            sink.server_event(kind, data)
        });
        let chat = Registry::new(chat, on_event);
        let upstream_ops = config.upstream.as_ref().map(|u| {
            Arc::new(crate::proxy::ops::Ops::new(
                &u.url,
                &crate::proxy::ops::socket_addr_text(&u.authority),
                metrics.upstream(&u.url),
                hub.clone(),
            ))
        });
        let live = LivePolicy::new(policy);
        Box::leak(Box::new(Self {
            chat,
            metrics,
            limiter: FailureLimiter::new(config.auth_window),
            sessions: Sessions::default(),
            conns,
            hub,
            config,
            live: ArcSwap::from_pointee(live),
            started: Instant::now(),
            tls: std::sync::OnceLock::new(),
            upstream_ops,
        }))
    }

    /// The policy in force. Callers hold it for the whole decision, so a
    /// reload in the middle never changes a decision half-way (the guard is
    /// for short use; across an `.await`, take [`Self::policy_arc`]).
    pub fn policy(&self) -> arc_swap::Guard<Arc<LivePolicy>> {
        self.live.load()
    }

    /// [`Self::policy`] to keep across an `.await`.
    pub fn policy_arc(&self) -> Arc<LivePolicy> {
        self.live.load_full()
    }

    /// Put `policy` in force atomically.
    pub fn swap_policy(&self, policy: CompiledPolicy) {
        self.live.store(Arc::new(LivePolicy::new(policy)));
    }
}

/// The base of chat children's `DASHGATE_EVENTS_URL`: a loopback `/api/pub`
/// URL of this server. `None` when bound to a specific non-loopback address,
/// where no loopback listener exists (and a child's connection to the bound
/// address would not come from loopback, so the gate would refuse it).
fn events_base(bind: SocketAddr, path: &str) -> Option<String> {
    let ip = bind.ip();
    let host = if ip.is_loopback() {
        ip
    } else if ip.is_unspecified() && ip.is_ipv4() {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else if ip.is_unspecified() {
        std::net::Ipv6Addr::LOCALHOST.into()
    } else {
        return None;
    };
    Some(format!("ws://{}{path}", SocketAddr::new(host, bind.port())))
}

/// A filter handing a clone of the state to a route (warp's `todos` pattern).
pub fn with_state(
    state: AppState,
) -> impl warp::Filter<Extract = (AppState,), Error = std::convert::Infallible> + Clone {
    use warp::Filter;
    warp::any().map(move || state)
}

/// Close (4401) every socket opened with chat session `id`'s internal
/// credential.
fn end_internal_sockets(conns: &Conns, id: &str) -> usize {
    conns.recheck(|a| match &a.principal {
        Principal::Internal { session } if session == id => {
            Some(Close::new(4401, "chat session ended"))
        }
        _ => None,
    })
}
