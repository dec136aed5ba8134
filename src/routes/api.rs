//! The REST API: health, status, whoami, the policy in force.

use serde_json::json;
use warp::{Filter, Rejection, Reply};

use super::Endpoint;
use crate::gate::{query_param, Access};
use crate::policy::Transport;
use crate::reject::error_reply;
use crate::state::{with_state, AppState};

/// The routes polled most (dashboards and probes poll status and health),
/// which the tree tries first.
pub fn hot() -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    status().or(healthz()).unify()
}

/// The other REST routes of this file.
pub fn routes(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    whoami(state).or(policy()).unify().or(metrics()).unify()
}

/// GET /healthz
pub fn healthz() -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("healthz")
        .and(warp::get().or(warp::head()).unify())
        .map(|| Endpoint::sync(|_| "ok"))
}

/// GET /api/status
pub fn status() -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("api" / "status")
        .and(warp::get())
        .map(|| Endpoint::plain(|state, _| warp::reply::json(&status_body(&state)).into_response()))
}

/// The body of `/api/status`; also used by the benchmark's bare handler.
pub fn status_body(state: &AppState) -> serde_json::Value {
    let live = state.policy();
    let summary = live.compiled.summary();
    let by_route = state.conns.by_route();
    let relayed = relayed_sockets(&by_route);
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
            "by_route": by_route.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        },
        "channels": state.hub.channel_count(),
        "sessions": {
            "running": state.chat.running(),
            "max": state.chat.config().max_sessions,
        },
        "tls": state.tls.get().map(|t| t.status()),
        "upstream": state.upstream_ops.as_ref().map(|o| o.status(relayed)),
    })
}

/// Open WebSockets relayed to the upstream, from `Conns::by_route`.
fn relayed_sockets(by_route: &[(&'static str, usize)]) -> usize {
    by_route
        .iter()
        .find(|(r, _)| *r == crate::proxy::ws::ROUTE)
        .map_or(0, |(_, n)| *n)
}

/// GET /api/whoami, or GET /api/whoami?path=P&transport=ws|http
///
/// With `path`, the answer also says how the gate would decide the caller's
/// `GET P` over that transport (same address, Host and credential; for `ws`
/// the Origin a same-host page sends). A browser cannot read the status or
/// body of a refused WebSocket handshake, so the UI asks here why its socket
/// was refused. Nothing is logged or announced for the hypothetical request.
pub fn whoami(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("api" / "whoami")
        .and(warp::get())
        .and(with_state(state))
        .map(|state: AppState| {
            Endpoint::sync(move |a| {
                let mut body = json!({
                    "principal": a.principal,
                    "name": a.principal.name(),
                    "groups": a.groups,
                    "access": a.access,
                    "client_ip": a.facts().client.to_string(),
                    "peer_ip": a.facts().peer.to_string(),
                    "rule": a.rule.as_deref(),
                    "transport": a.facts().transport,
                });
                if let Some(path) = query_param(a.query(), "path") {
                    let transport = match query_param(a.query(), "transport").as_deref() {
                        None | Some("http") => Transport::Http,
                        Some("ws") => Transport::Ws,
                        Some(_) => {
                            return error_reply(
                                http::StatusCode::BAD_REQUEST,
                                "bad_query",
                                "transport is http or ws",
                            )
                        }
                    };
                    body["check"] = probe(&state, &a, path, transport);
                }
                warp::reply::json(&body).into_response()
            })
        })
}

/// How the live policy would decide the caller's `GET path` over `transport`.
fn probe(state: &AppState, a: &Access, path: String, transport: Transport) -> serde_json::Value {
    let mut facts = a.facts().clone();
    facts.method = "GET".into();
    facts.transport = transport;
    if transport == Transport::Ws && facts.origin.is_none() {
        // A same-origin fetch carries no Origin; the page's WebSocket would.
        facts.origin = facts
            .host
            .as_ref()
            .map(|h| format!("{}://{h}", facts.scheme));
    }
    facts.path = path;
    let d = state.policy().compiled.decide(&facts);
    json!({
        "path": facts.path,
        "transport": transport,
        "allowed": d.verdict.is_ok(),
        "status": d.verdict.as_ref().map_or_else(|r| r.status(), |_| 200),
        "reason": d.verdict.as_ref().err().map(|r| r.as_str()),
        "rule": d.rule.as_deref(),
    })
}

/// GET /api/policy
pub fn policy() -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("api" / "policy").and(warp::get()).map(|| {
        Endpoint::plain(|state, _| {
            warp::reply::json(&state.policy().compiled.effective()).into_response()
        })
    })
}

/// GET /metrics
pub fn metrics() -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("metrics").and(warp::get()).map(|| {
        Endpoint::plain(|state, _| {
            let m = &state.metrics;
            m.websockets.clear();
            let by_route = state.conns.by_route();
            if let Some(ops) = &state.upstream_ops {
                ops.metrics
                    .websockets
                    .set(relayed_sockets(&by_route) as i64);
            }
            for (route, n) in by_route {
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
            .into_response()
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
