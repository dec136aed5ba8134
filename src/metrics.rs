//! `/metrics`: Prometheus (OpenMetrics) text, served through the gate like
//! every other route.
//!
//! Counters are bumped where things happen (the gate counts decisions, the
//! request log counts statuses, the hub counts deliveries and drops, reload
//! counts reloads); gauges that mirror live state (open WebSockets, chat
//! sessions) are set when scraped, so nothing has to keep them in step.
//! Label values are bounded: routes are mapped to their templates
//! ([`route_label`]) and rules are the policy's own names.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub rule: String,
    pub action: &'static str,
    /// `allowed`, or the denial reason.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

/// All metrics of one server.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub websockets: Family<RouteLabels, Gauge>,
    pub chat_sessions: Gauge,
    pub reloads: Counter,
    pub reload_failures: Counter,
    pub event_deliveries: Counter,
    pub event_drops: Counter,
    pub event_publishes: Counter,
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
        Self { registry, ..m }
    }
}

impl Metrics {
    /// Count one answered request.
    pub fn request(&self, path: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route_label(path),
                status,
            })
            .inc();
    }

    /// Count one gate decision.
    pub fn decision(&self, rule: Option<&str>, action: &'static str, outcome: &'static str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                rule: rule.unwrap_or("-").to_string(),
                action,
                outcome,
            })
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// The route template a path belongs to (bounded label values).
pub fn route_label(path: &str) -> &'static str {
    const EXACT: &[&str] = &[
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
    ];
    if let Some(e) = EXACT.iter().find(|e| **e == path) {
        return e;
    }
    if path.starts_with("/api/sessions/") {
        "/api/sessions/{id}"
    } else if path.starts_with("/assets/") {
        "/assets/**"
    } else if path.starts_with("/vendor/") {
        "/vendor/**"
    } else if path.starts_with("/api/") {
        "/api/other"
    } else {
        "other"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_bounded_templates() {
        assert_eq!(route_label("/api/sessions/abc"), "/api/sessions/{id}");
        assert_eq!(route_label("/api/status"), "/api/status");
        assert_eq!(route_label("/x/y/z"), "other");
        assert_eq!(route_label("/api/zzz"), "/api/other");
    }

    #[test]
    fn encodes_counters() {
        let m = Metrics::default();
        m.request("/api/status", 200);
        m.decision(Some("r"), "allow", "allowed");
        m.reloads.inc();
        let text = m.encode();
        assert!(
            text.contains("dashgate_http_requests_total{route=\"/api/status\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("dashgate_policy_reloads_total 1"), "{text}");
    }
}
