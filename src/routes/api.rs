//! The REST API: health, status, whoami, the policy in force.

use serde_json::json;
use warp::{Filter, Rejection};

use super::Endpoint;
use crate::reject::error_reply;
use crate::state::{with_state, AppState};

/// All REST routes of this file, plus the JSON 404 for other `/api/…` paths.
pub fn routes(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    healthz()
        .or(status(state.clone()))
        .unify()
        .or(whoami())
        .unify()
        .or(policy(state.clone()))
        .unify()
        .or(metrics(state))
        .unify()
        .boxed()
}

/// GET /healthz
pub fn healthz() -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("healthz")
        .and(warp::get().or(warp::head()).unify())
        .map(|| Endpoint::sync(|_| "ok"))
}

/// GET /api/status
pub fn status(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("api" / "status")
        .and(warp::get())
        .and(with_state(state))
        .map(|state: AppState| Endpoint::sync(move |_| warp::reply::json(&status_body(&state))))
}

/// The body of `/api/status`; also used by the benchmark's bare handler.
pub fn status_body(state: &AppState) -> serde_json::Value {
    let live = state.policy();
    let summary = live.compiled.summary();
    json!({
        "name": "dashgate",
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": state.started.elapsed().as_secs(),
        "bind": state.config.bind.to_string(),
        "policy": {
            "source": summary.source,
            "preset": summary.preset,
            "rules": summary.rules,
            "sha256": summary.sha256,
            "loaded_at": crate::util::rfc3339(live.loaded_at),
        },
        "connections": {
            "websockets": state.conns.len(),
            "by_route": state.conns.by_route().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        },
        "channels": state.hub.channel_count(),
        "sessions": {
            "running": state.chat.running(),
            "max": state.chat.config().max_sessions,
        },
    })
}

/// GET /api/whoami
pub fn whoami() -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("api" / "whoami").and(warp::get()).map(|| {
        Endpoint::sync(|a| {
            warp::reply::json(&json!({
                "principal": a.principal,
                "client_ip": a.facts.client.to_string(),
                "peer_ip": a.facts.peer.to_string(),
                "rule": a.rule.as_deref(),
                "transport": a.facts.transport,
            }))
        })
    })
}

/// GET /api/policy
pub fn policy(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("api" / "policy")
        .and(warp::get())
        .and(with_state(state))
        .map(|state: AppState| {
            Endpoint::sync(move |_| warp::reply::json(&state.policy().compiled.effective()))
        })
}

/// GET /metrics
pub fn metrics(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_state(state))
        .map(|state: AppState| {
            Endpoint::sync(move |_| {
                let m = &state.metrics;
                m.websockets.clear();
                for (route, n) in state.conns.by_route() {
                    m.websockets
                        .get_or_create(&crate::metrics::RouteLabels { route })
                        .set(n as i64);
                }
                m.chat_sessions.set(state.chat.running() as i64);
                let body = m.encode();
                warp::reply::with_header(
                    body,
                    "content-type",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            })
        })
}

/// Any other `/api/…` path the gate let through: a JSON 404.
pub fn not_found() -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path("api").map(|| {
        Endpoint::sync(|_| {
            error_reply(
                http::StatusCode::NOT_FOUND,
                "not_found",
                "no such API route",
            )
        })
    })
}
