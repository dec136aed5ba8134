//! `/metrics`: Prometheus (OpenMetrics) text, served through the gate like
//! every other route.
//!
//! Counters are bumped where things happen (the gate counts decisions, the
//! request log counts statuses, the hub counts deliveries and drops, reload
//! counts reloads); gauges that mirror live state (open WebSockets, chat
//! sessions) are set when scraped, so nothing has to keep them in step.
//! Label values are bounded: routes are mapped to their templates
//! ([`ROUTES`], by [`route_index`]) and rules are the policy's own names.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Atomic;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::policy::{Action, CompiledPolicy, Reason};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub rule: RuleName,
    pub action: &'static str,
    /// `allowed`, or the denial reason.
    pub outcome: &'static str,
}

/// A rule's name as a label value: the compiled policy's own `Arc<str>`, so
/// counting a decision (every request) copies no string.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RuleName(pub Arc<str>);

impl EncodeLabelValue for RuleName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        EncodeLabelValue::encode(&&*self.0, encoder)
    }
}

/// The label of a decision no rule made (pre-rule checks, no match).
fn no_rule() -> Arc<str> {
    static NONE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("-"));
    NONE.clone()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

/// The upstream a metric is about (SPEC §6): its URL.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub upstream: String,
}

/// A proxied request's answer by status class (`1xx` … `5xx`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamClassLabels {
    pub upstream: String,
    pub class: &'static str,
}

/// A proxied request that got no answer: `unavailable` or `timeout`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub upstream: String,
    pub kind: &'static str,
}

/// Buckets of the upstream latency histogram, in seconds (1 ms to 30 s,
/// the default `--upstream-timeout`).
pub const UPSTREAM_LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

fn upstream_histogram() -> Histogram {
    Histogram::new(UPSTREAM_LATENCY_BUCKETS)
}

/// The per-upstream metrics, found once (at start) and kept: counting a
/// proxied request hashes no labels.
#[derive(Clone)]
pub struct UpstreamMetrics {
    /// By status class: `1xx`, `2xx`, `3xx`, `4xx`, `5xx`.
    pub responses: [Count; 5],
    pub latency: Histogram,
    pub unavailable: Count,
    pub timeouts: Count,
    pub websockets: Gauge,
    pub restarts: Counter,
    pub up: Gauge,
}

impl UpstreamMetrics {
    /// Count one answer with `status`, its head after `secs`.
    pub fn response(&self, status: u16, secs: f64) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.responses[class].inc();
        self.latency.observe(secs);
    }
}

/// A counter bumped on every request, from every core.
pub type Count = Counter<u64, Sharded>;

/// The value of a [`Count`]: one slot per core (each on its own cache
/// line), summed when scraped. A plain `AtomicU64` bumped by two cores at
/// once moves its cache line between them on every request.
#[derive(Debug, Default)]
pub struct Sharded([Slot; SHARDS]);

pub(crate) const SHARDS: usize = 8;

#[derive(Debug, Default)]
#[repr(align(128))]
struct Slot(AtomicU64);

/// This thread's slot: threads take slots in turn as they first count.
pub(crate) fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static MINE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS);
    MINE.with(|i| *i)
}

impl Atomic<u64> for Sharded {
    fn inc(&self) -> u64 {
        self.inc_by(1)
    }

    fn inc_by(&self, v: u64) -> u64 {
        self.0[shard()].0.fetch_add(v, Ordering::Relaxed)
    }

    fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// The statuses whose request counters are looked up without hashing; any
/// other status is found in the family by its labels.
const STATUSES: [u16; 16] = [
    200, 101, 204, 301, 303, 304, 400, 401, 403, 404, 405, 409, 413, 426, 429, 503,
];

/// Counters found once and kept where each request finds them again by
/// index, with no lock and no hashing.
struct Found<const N: usize>(Vec<[OnceLock<Count>; N]>);

impl<const N: usize> Found<N> {
    fn new(rows: usize) -> Self {
        Self(
            (0..rows)
                .map(|_| std::array::from_fn(|_| OnceLock::new()))
                .collect(),
        )
    }

    fn inc(&self, row: usize, col: usize, find: impl FnOnce() -> Count) {
        self.get(row, col, find).inc();
    }

    fn get(&self, row: usize, col: usize, find: impl FnOnce() -> Count) -> &Count {
        self.0[row][col].get_or_init(find)
    }
}

/// The decision counters of one policy, by rule (and one row for "no
/// rule") and outcome: kept with the policy, so a reload starts afresh.
pub struct DecisionCounters(Found<OUTCOMES>);

/// `allowed`, and each denial reason.
const OUTCOMES: usize = 1 + Reason::ALL.len();

impl DecisionCounters {
    pub fn new(policy: &CompiledPolicy) -> Self {
        Self(Found::new(policy.rule_count() + 1))
    }
}

/// All metrics of one server.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Count>,
    pub decisions: Family<DecisionLabels, Count>,
    pub websockets: Family<RouteLabels, Gauge>,
    pub chat_sessions: Gauge,
    pub reloads: Counter,
    pub reload_failures: Counter,
    pub event_deliveries: Counter,
    pub event_drops: Counter,
    pub event_publishes: Counter,
    pub upstream_requests: Family<UpstreamClassLabels, Count>,
    pub upstream_latency: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    pub upstream_errors: Family<UpstreamErrorLabels, Count>,
    pub upstream_websockets: Family<UpstreamLabels, Gauge>,
    pub upstream_restarts: Family<UpstreamLabels, Counter>,
    pub upstream_up: Family<UpstreamLabels, Gauge>,
    request_counters: Found<{ STATUSES.len() }>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dashgate");
        let m = Self {
            requests: Family::default(),
            decisions: Family::default(),
            websockets: Family::default(),
            chat_sessions: Gauge::default(),
            reloads: Counter::default(),
            reload_failures: Counter::default(),
            event_deliveries: Counter::default(),
            event_drops: Counter::default(),
            event_publishes: Counter::default(),
            upstream_requests: Family::default(),
            upstream_latency: Family::new_with_constructor(upstream_histogram),
            upstream_errors: Family::default(),
            upstream_websockets: Family::default(),
            upstream_restarts: Family::default(),
            upstream_up: Family::default(),
            request_counters: Found::new(ROUTES.len()),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "Requests answered, by route template and status",
            m.requests.clone(),
        );
        registry.register(
            "decisions",
            "Gate decisions, by rule, its action and the outcome",
            m.decisions.clone(),
        );
        registry.register(
            "websockets_open",
            "Open WebSockets, by route",
            m.websockets.clone(),
        );
        registry.register(
            "chat_sessions",
            "Chat sessions running",
            m.chat_sessions.clone(),
        );
        registry.register(
            "policy_reloads",
            "Successful policy reloads",
            m.reloads.clone(),
        );
        registry.register(
            "policy_reload_failures",
            "Policy reloads refused (the old policy stayed)",
            m.reload_failures.clone(),
        );
        registry.register(
            "event_deliveries",
            "Event messages queued to subscribers",
            m.event_deliveries.clone(),
        );
        registry.register(
            "event_drops",
            "Event messages dropped for a subscriber whose queue was full",
            m.event_drops.clone(),
        );
        registry.register(
            "event_publishes",
            "Event messages published",
            m.event_publishes.clone(),
        );
        registry.register(
            "upstream_requests",
            "Proxied requests the upstream answered, by status class of its answer",
            m.upstream_requests.clone(),
        );
        registry.register(
            "upstream_response_seconds",
            "Time from sending a proxied request to the upstream's response head",
            m.upstream_latency.clone(),
        );
        registry.register(
            "upstream_errors",
            "Proxied requests the upstream did not answer: unavailable (502) or timeout (504)",
            m.upstream_errors.clone(),
        );
        registry.register(
            "upstream_websockets_open",
            "Open WebSockets relayed to the upstream",
            m.upstream_websockets.clone(),
        );
        registry.register(
            "upstream_restarts",
            "Restarts of the upstream by --upstream-command's supervisor",
            m.upstream_restarts.clone(),
        );
        registry.register(
            "upstream_up",
            "1 when the upstream accepts connections, else 0",
            m.upstream_up.clone(),
        );
        Self { registry, ..m }
    }
}

impl Metrics {
    /// Count one answered request to `route` (an index into [`ROUTES`],
    /// from [`route_index`]).
    pub fn request(&self, route: usize, status: u16) {
        let labels = || RequestLabels {
            route: ROUTES[route],
            status,
        };
        match STATUSES.iter().position(|s| *s == status) {
            Some(col) => self.request_counters.inc(route, col, || {
                self.requests.get_or_create(&labels()).clone()
            }),
            None => {
                self.requests.get_or_create(&labels()).inc();
            }
        }
    }

    /// Count one gate decision of `policy` (whose `counters` these are):
    /// the rule at `rule` decided, `verdict` is what it said.
    pub fn decision(
        &self,
        counters: &DecisionCounters,
        policy: &CompiledPolicy,
        rule: Option<usize>,
        verdict: Result<(), Reason>,
    ) {
        let (row, name, action) = match rule {
            Some(i) => {
                let (name, action) = policy.rule_name(i);
                (i + 1, Some(name), action_name(action))
            }
            None => (0, None, "none"),
        };
        let (col, outcome) = match verdict {
            Ok(()) => (0, "allowed"),
            Err(r) => (1 + r as usize, r.as_str()),
        };
        counters
            .0
            .get(row, col, || {
                self.decisions
                    .get_or_create(&DecisionLabels {
                        rule: RuleName(name.cloned().unwrap_or_else(no_rule)),
                        action,
                        outcome,
                    })
                    .clone()
            })
            .inc();
    }

    /// The metrics of the upstream at `url`, created (at 0) so a scrape
    /// shows them before the first request.
    pub fn upstream(&self, url: &str) -> UpstreamMetrics {
        let one = || UpstreamLabels {
            upstream: url.to_owned(),
        };
        let class = |class| {
            self.upstream_requests
                .get_or_create(&UpstreamClassLabels {
                    upstream: url.to_owned(),
                    class,
                })
                .clone()
        };
        let error = |kind| {
            self.upstream_errors
                .get_or_create(&UpstreamErrorLabels {
                    upstream: url.to_owned(),
                    kind,
                })
                .clone()
        };
        UpstreamMetrics {
            responses: ["1xx", "2xx", "3xx", "4xx", "5xx"].map(class),
            latency: self.upstream_latency.get_or_create(&one()).clone(),
            unavailable: error("unavailable"),
            timeouts: error("timeout"),
            websockets: self.upstream_websockets.get_or_create(&one()).clone(),
            restarts: self.upstream_restarts.get_or_create(&one()).clone(),
            up: self.upstream_up.get_or_create(&one()).clone(),
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// The route templates requests are counted by (bounded label values).
pub const ROUTES: [&str; 22] = [
    "/",
    "/healthz",
    "/metrics",
    "/login",
    "/chat",
    "/sessions",
    "/events",
    "/access",
    "/api/status",
    "/api/whoami",
    "/api/policy",
    "/api/login",
    "/api/logout",
    "/api/events",
    "/api/pub",
    "/api/ws",
    "/api/sessions",
    "/api/sessions/{id}",
    "/assets/**",
    "/vendor/**",
    "/api/other",
    "other",
];

/// The index in [`ROUTES`] of the template `path` belongs to (a `match`:
/// compiled to a switch on the length, then one comparison).
pub fn route_index(path: &str) -> usize {
    match path {
        "/" => 0,
        "/healthz" => 1,
        "/metrics" => 2,
        "/login" => 3,
        "/chat" => 4,
        "/sessions" => 5,
        "/events" => 6,
        "/access" => 7,
        "/api/status" => 8,
        "/api/whoami" => 9,
        "/api/policy" => 10,
        "/api/login" => 11,
        "/api/logout" => 12,
        "/api/events" => 13,
        "/api/pub" => 14,
        "/api/ws" => 15,
        "/api/sessions" => 16,
        p if p.starts_with("/api/sessions/") => 17,
        p if p.starts_with("/assets/") => 18,
        p if p.starts_with("/vendor/") => 19,
        p if p.starts_with("/api/") => 20,
        _ => 21,
    }
}

/// A rule's action as a label value.
pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Authenticate => "authenticate",
        Action::Deny => "deny",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exact_template_is_its_own_route() {
        for (i, r) in ROUTES.iter().enumerate().take(17) {
            assert_eq!(route_index(r), i, "{r}");
        }
    }

    #[test]
    fn labels_are_bounded_templates() {
        let label = |p| ROUTES[route_index(p)];
        assert_eq!(label("/api/sessions/abc"), "/api/sessions/{id}");
        assert_eq!(label("/api/status"), "/api/status");
        assert_eq!(label("/x/y/z"), "other");
        assert_eq!(label("/api/zzz"), "/api/other");
    }

    #[test]
    fn encodes_counters() {
        let m = Metrics::default();
        let status = route_index("/api/status");
        // Counted from several threads (several slots), summed when scraped.
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..25 {
                        m.request(status, 200);
                    }
                });
            }
        });
        m.request(status, 418);
        let ctx = crate::policy::LoadContext::new("127.0.0.1".parse().unwrap());
        let policy = CompiledPolicy::preset("secure", &ctx).unwrap();
        let counters = DecisionCounters::new(&policy);
        m.decision(&counters, &policy, Some(0), Ok(()));
        m.decision(&counters, &policy, Some(0), Ok(()));
        m.decision(&counters, &policy, None, Err(Reason::HostNotAllowed));
        m.reloads.inc();
        let text = m.encode();
        for line in [
            "dashgate_http_requests_total{route=\"/api/status\",status=\"200\"} 100",
            "dashgate_http_requests_total{route=\"/api/status\",status=\"418\"} 1",
            "dashgate_decisions_total{rule=\"health check is public\",action=\"allow\",outcome=\"allowed\"} 2",
            "dashgate_decisions_total{rule=\"-\",action=\"none\",outcome=\"host_not_allowed\"} 1",
            "dashgate_policy_reloads_total 1",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[test]
    fn reasons_are_listed_in_order() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
    }
}
