//! The one gate: `authorize()`.
//!
//! Every request — REST, WebSocket upgrade, static file — passes through this
//! filter before any route sees it (`routes::routes` wraps the whole tree
//! once). It builds [`Facts`] from the request, resolves the credential,
//! asks the live policy for a [`Decision`](crate::policy::Decision) and either
//! yields an [`Access`] for the route or rejects with a
//! [`Denied`](crate::reject::Denied) that `reject::handle_rejection` turns
//! into the JSON of SPEC §2.4. There is no second path for WebSockets: an
//! upgrade is a `GET` with `transport: ws` in its facts, nothing more.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http::header::{
    AsHeaderName, HeaderName, ACCEPT, AUTHORIZATION, COOKIE, FORWARDED, HOST, ORIGIN, UPGRADE,
};
use http::HeaderMap;
use warp::{Filter, Rejection};

use crate::policy::{
    CompiledPolicy, Credential, Facts, ForwardHeaders, Principal, Reason, Transport,
};
use crate::reject::Denied;
use crate::sessions;
use crate::state::AppState;

/// The TCP peer of a connection, put into each request by `server::run`.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The credential a request presented, kept so an open WebSocket can be
/// decided again after a reload (a revoked token must close its sockets).
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Presented {
    #[default]
    None,
    /// A bearer token (`Authorization: Bearer` or `?token=`).
    Token(String),
    /// A user named by a trusted proxy's forward-auth header.
    Forwarded(String),
    /// The `dashgate_session` cookie of a signed-in browser.
    Cookie(String),
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::None => f.write_str("None"),
            Presented::Token(_) => f.write_str("Token(<redacted>)"),
            Presented::Forwarded(u) => write!(f, "Forwarded({u:?})"),
            Presented::Cookie(_) => f.write_str("Cookie(<redacted>)"),
        }
    }
}

/// What the gate hands to a route: who the caller is and why it got in.
#[derive(Debug, Clone)]
pub struct Access {
    pub principal: Principal,
    /// The rule that allowed the request.
    pub rule: Option<Arc<str>>,
    /// The facts the decision was made on (kept by WebSockets for re-checks).
    pub facts: Facts,
    pub presented: Presented,
    /// The raw query string (may carry a token: never log it).
    pub query: String,
    /// A browser opened a page with a valid `?token=`: the route is replaced
    /// by a redirect that sets the session cookie and drops the token.
    pub token_visit: bool,
}

/// The `authorize()` filter: yields [`Access`] or rejects with [`Denied`].
///
/// The decision is synchronous, so it is made inside the last filter and
/// handed back as a ready future: the state is borrowed, not cloned, for
/// each request (every request passes here; SPEC §5 bounds what it costs).
pub fn authorize(state: AppState) -> impl Filter<Extract = (Access,), Error = Rejection> + Clone {
    warp::ext::optional::<Peer>()
        .and(warp::addr::remote())
        .and(warp::method())
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(target_host())
        .and(warp::header::headers_cloned())
        .and_then(
            move |ours: Option<Peer>,
                  theirs: Option<SocketAddr>,
                  method: http::Method,
                  path: warp::path::FullPath,
                  query: String,
                  target: TargetHost,
                  headers: HeaderMap| {
                // The peer: ours from `server::run`, else warp's own (warp::serve).
                let decided = match ours.map(|p| p.0).or(theirs) {
                    None => Err(warp::reject::custom(Denied::no_peer())),
                    Some(peer) => check(
                        &state,
                        peer,
                        method.as_str(),
                        path.as_str(),
                        query,
                        target,
                        &headers,
                    )
                    .map_err(warp::reject::custom),
                };
                std::future::ready(decided)
            },
        )
}

/// What warp makes of the request's authority: the target URI's (an
/// absolute-form request line, HTTP/2's `:authority`), else the `Host`
/// header's. `Refused` when the two disagree or `Host` is no authority.
#[derive(Debug, Clone)]
enum TargetHost {
    /// Kept parsed: it becomes a string only when no `Host` header wins.
    Found(Option<warp::host::Authority>),
    Refused,
}

fn target_host() -> impl Filter<Extract = (TargetHost,), Error = std::convert::Infallible> + Clone {
    warp::host::optional()
        .map(TargetHost::Found)
        .or(warp::any().map(|| TargetHost::Refused))
        .unify()
}

/// The host the request is for (RFC 9112 §3.3): the target URI's authority
/// when it has one, else the one `Host` header. `Err` when that is
/// ambiguous: several `Host` lines, or a `Host` that names another
/// authority than the request line. A `Host` that is no authority at all is
/// passed on for the policy to judge.
fn request_host(target: TargetHost, headers: &HeaderMap) -> Result<Option<String>, ()> {
    let mut lines = headers.get_all(HOST).iter();
    let (first, more) = (lines.next(), lines.next().is_some());
    if more {
        return Err(());
    }
    let header = first.and_then(|v| v.to_str().ok());
    match (target, header) {
        (TargetHost::Found(_), Some(h)) => Ok(Some(h.to_string())),
        (TargetHost::Found(uri), None) => Ok(uri.map(|a| a.to_string())),
        (TargetHost::Refused, Some(h)) if h.parse::<warp::host::Authority>().is_err() => {
            Ok(Some(h.to_string()))
        }
        (TargetHost::Refused, _) => Err(()),
    }
}

/// Fold `::ffff:a.b.c.d` to `a.b.c.d` (SPEC §2.2).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

// Header names parsed once: looking a header up by `&str` parses and
// lower-cases the name on every request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

fn header_str<K: AsHeaderName>(headers: &HeaderMap, name: K) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn header_lines<K: AsHeaderName>(headers: &HeaderMap, name: K) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect()
}

/// Every line of `name` as one comma-separated list (RFC 9110 §5.3), so
/// that two lines of a single-valued header are as malformed as one line
/// with two values, rather than quietly the first.
fn header_joined<K: AsHeaderName>(headers: &HeaderMap, name: K) -> Option<String> {
    let lines = header_lines(headers, name);
    (!lines.is_empty()).then(|| lines.join(", "))
}

/// The Origin header. Several Origin headers (only a non-browser client can
/// send that) are kept joined, which equals no allowed origin: refused where
/// Origin is checked, rather than deciding on whichever came first.
fn origin(headers: &HeaderMap) -> Option<String> {
    let mut all = headers.get_all(ORIGIN).iter();
    let first = String::from_utf8_lossy(all.next()?.as_bytes()).into_owned();
    Some(all.fold(first, |acc, v| {
        format!("{acc}, {}", String::from_utf8_lossy(v.as_bytes()))
    }))
}

/// Whether the request is a WebSocket upgrade.
fn is_upgrade(headers: &HeaderMap) -> bool {
    header_str(headers, UPGRADE).is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// The first value of `name` in a query string, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            let v = v.replace('+', " ");
            percent_encoding::percent_decode_str(&v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// The credential a request presents, strongest first: a bearer header,
/// then `?token=`, then the session cookie, then a trusted proxy's
/// forward-auth user.
fn presented(
    headers: &HeaderMap,
    query: &str,
    policy: &CompiledPolicy,
    peer_trusted: bool,
) -> Presented {
    if let Some(auth) = header_str(headers, AUTHORIZATION) {
        let mut parts = auth.trim().splitn(2, ' ');
        if parts
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
        {
            if let Some(t) = parts.next() {
                return Presented::Token(t.trim().to_string());
            }
        }
    }
    if let Some(t) = query_param(query, "token") {
        return Presented::Token(t);
    }
    for line in headers.get_all(COOKIE) {
        if let Some(id) = line.to_str().ok().and_then(sessions::from_cookie_header) {
            return Presented::Cookie(id.to_string());
        }
    }
    if peer_trusted {
        if let Some(h) = policy.forward_auth_header() {
            if let Some(user) = header_str(headers, h)
                .map(str::trim)
                .filter(|u| !u.is_empty())
            {
                return Presented::Forwarded(user.to_string());
            }
        }
    }
    Presented::None
}

/// Check a presented credential against the server and the policy.
pub fn resolve(state: &AppState, policy: &CompiledPolicy, p: &Presented) -> Credential {
    match p {
        Presented::None => Credential::None,
        Presented::Forwarded(name) => {
            Credential::Valid(Principal::Forwarded { name: name.clone() })
        }
        // An unknown or expired cookie is no credential (a stale browser is
        // sent to sign in, not counted as an attack: ids are 256-bit random).
        Presented::Cookie(id) => state
            .sessions
            .get(id)
            .map_or(Credential::None, Credential::Valid),
        Presented::Token(t) => {
            if policy.startup_token_enabled()
                && state
                    .config
                    .startup_token
                    .as_ref()
                    .is_some_and(|s| s.matches(t))
            {
                return Credential::Valid(Principal::StartupToken);
            }
            match policy.verify_token(t) {
                Some(p) => Credential::Valid(p),
                // A chat child's internal token is no credential here: it
                // counts only where `resolve_request` allows it.
                None => Credential::Invalid,
            }
        }
    }
}

/// Whether a chat child's internal credential (the token in its
/// `DASHGATE_EVENTS_URL`) may count for this request: only on `/api/pub`,
/// only with the loopback address that URL names (127.0.0.1 or ::1) as the
/// TCP peer itself, and only without forwarding headers, so neither a leaked
/// URL nor a local reverse proxy relaying the outside world can use it.
fn internal_allowed(peer: IpAddr, client: IpAddr, path: &str, forwarded: bool) -> bool {
    let named = peer == IpAddr::V4(Ipv4Addr::LOCALHOST) || peer == IpAddr::V6(Ipv6Addr::LOCALHOST);
    path == "/api/pub" && named && client == peer && !forwarded
}

/// [`resolve`], plus a chat child's internal credential where
/// [`internal_allowed`] (the publish route then holds it to its own channel).
fn resolve_request(
    state: &AppState,
    policy: &CompiledPolicy,
    p: &Presented,
    internal: bool,
) -> Credential {
    let credential = resolve(state, policy, p);
    if let (Credential::Invalid, true, Presented::Token(t)) = (&credential, internal, p) {
        if let Some(session) = state.chat.verify_internal(t) {
            return Credential::Valid(Principal::Internal { session });
        }
    }
    credential
}

/// The path with any query redacted, for logs.
pub fn log_path(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?[redacted]")
    }
}

/// Decide one request. Pure apart from the limiter, logging and the
/// `access.denied` event.
fn check(
    state: &AppState,
    peer: SocketAddr,
    method: &str,
    path: &str,
    query: String,
    target: TargetHost,
    headers: &HeaderMap,
) -> Result<Access, Denied> {
    let live = state.policy();
    let policy = &live.compiled;
    let peer_ip = canonical_ip(peer.ip());
    let transport = if is_upgrade(headers) {
        Transport::Ws
    } else {
        Transport::Http
    };
    let fwd = ForwardHeaders {
        x_forwarded_for: header_lines(headers, X_FORWARDED_FOR),
        forwarded: header_lines(headers, FORWARDED),
        x_forwarded_proto: header_joined(headers, X_FORWARDED_PROTO),
        x_forwarded_host: header_joined(headers, X_FORWARDED_HOST),
    };
    let deny = |client: IpAddr, reason: Reason, rule: Option<Arc<str>>| {
        let d = Denied::new(reason, rule);
        audit_denial(state, client, method, &log_path(path, &query), &d);
        d
    };
    let view = match policy.client(peer_ip, &fwd) {
        Ok(v) => v,
        Err(reason) => return Err(deny(peer_ip, reason, None)),
    };
    let Ok(host) = request_host(target, headers) else {
        return Err(deny(view.client, Reason::HostNotAllowed, None));
    };
    let presented = presented(headers, &query, policy, view.peer_trusted);
    let forwarded = !fwd.x_forwarded_for.is_empty()
        || !fwd.forwarded.is_empty()
        || fwd.x_forwarded_proto.is_some()
        || fwd.x_forwarded_host.is_some();
    let internal = internal_allowed(peer_ip, canonical_ip(view.client), path, forwarded);
    let credential = resolve_request(state, policy, &presented, internal);
    let facts = Facts {
        peer: peer_ip,
        client: canonical_ip(view.client),
        method: method.to_string(),
        path: path.to_string(),
        host: view.host.clone().or(host),
        origin: origin(headers),
        scheme: view.proto.clone().unwrap_or_else(|| "http".to_string()),
        transport,
        credential,
    };
    let limit = policy.auth_failures_per_minute();
    // Only tokens are guessed here, so only tokens are held back. A session
    // cookie (256 random bits, never counted) or a proxy's forward-auth user
    // is not: any web page can make the user's browser send bad `?token=`s
    // from the user's own address, and must not lock their session out.
    if matches!(presented, Presented::Token(_)) {
        if let Some(retry) = state.limiter.blocked(facts.client, limit) {
            let mut d = deny(facts.client, Reason::TooManyFailures, None);
            d.retry_after = Some(retry.as_secs());
            return Err(d);
        }
    }
    let decision = policy.decide(&facts);
    state.metrics.decision(
        decision.rule.as_ref(),
        action_name(decision.action),
        match decision.verdict {
            Ok(_) => "allowed",
            Err(r) => r.as_str(),
        },
    );
    // Every bad credential counts, also where an `allow` rule lets the
    // request through anonymously: there a valid `?token=` still answers
    // differently (a 303 with a cookie), so guesses must be limited too.
    if facts.credential == Credential::Invalid {
        state.limiter.record_failure(facts.client);
    }
    match decision.verdict {
        Ok(principal) => Ok(Access {
            token_visit: matches!(facts.credential, Credential::Valid(_))
                && matches!(presented, Presented::Token(_))
                && query_param(&query, "token").is_some()
                && wants_html(headers, method, transport),
            principal,
            rule: decision.rule,
            facts,
            presented,
            query,
        }),
        Err(reason) => {
            let mut d = deny(facts.client, reason, decision.rule);
            if reason == Reason::NoCredential && wants_html(headers, method, transport) {
                d.login_redirect = Some(login_url(path, &query));
            }
            Err(d)
        }
    }
}

fn action_name(a: Option<crate::policy::Action>) -> &'static str {
    use crate::policy::Action;
    match a {
        Some(Action::Allow) => "allow",
        Some(Action::Authenticate) => "authenticate",
        Some(Action::Deny) => "deny",
        None => "none",
    }
}

/// A browser navigation (not an API call): answered with a redirect to the
/// login page instead of a bare 401.
fn wants_html(headers: &HeaderMap, method: &str, transport: Transport) -> bool {
    transport == Transport::Http
        && method == "GET"
        && header_str(headers, ACCEPT).is_some_and(|a| a.contains("text/html"))
}

/// `/login?next=<path?query>`; `next` is always a local path.
fn login_url(path: &str, query: &str) -> String {
    let next = if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    };
    let enc = percent_encoding::utf8_percent_encode(&next, percent_encoding::NON_ALPHANUMERIC);
    format!("/login?next={enc}")
}

/// One `warn` line and one `access.denied` event per denial.
fn audit_denial(state: &AppState, client: IpAddr, method: &str, path: &str, d: &Denied) {
    let rule = d.rule.as_deref().unwrap_or("-");
    tracing::warn!(
        client = %client,
        method,
        path,
        rule,
        reason = d.reason.as_str(),
        status = d.reason.status(),
        "access denied"
    );
    state.hub.server_event(
        "access.denied",
        serde_json::json!({
            "client": client.to_string(),
            "method": method,
            "path": path,
            "rule": d.rule.as_deref(),
            "reason": d.reason.as_str(),
        }),
    );
}

/// Decide an open WebSocket again under `policy` with the facts of its
/// upgrade (credential re-resolved: a revoked token no longer counts).
pub fn redecide(
    state: &AppState,
    policy: &CompiledPolicy,
    access: &Access,
) -> crate::policy::Decision {
    let mut facts = access.facts.clone();
    let internal = internal_allowed(facts.peer, facts.client, &facts.path, false);
    facts.credential = resolve_request(state, policy, &access.presented, internal);
    policy.decide(&facts)
}
