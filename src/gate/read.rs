//! Reading a request's facts for the gate (SPEC §1, first arrow).
//!
//! This runs on every request, where the accept loop holds it (see
//! `server::run`), so it borrows: the headers are found in one pass over the
//! map, and only the facts that must outlive the request are copied. What
//! cannot be believed (a trusted proxy's malformed forwarding headers, an
//! ambiguous Host) is refused here, before any rule.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use http::header::{
    AsHeaderName, HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, COOKIE, FORWARDED, HOST, ORIGIN,
    UPGRADE,
};
use http::uri::Authority;
use http::HeaderMap;

use super::{audit_denial, canonical_ip, log_path, query_param, resolve_request, Presented};
use crate::auth::sessions;
use crate::policy::{
    CompiledPolicy, Credential, Facts, ForwardHeaders, Reason, TokenDigest, Transport,
};
use crate::reject::Denied;
use crate::state::AppState;

/// A request as the gate reads it: borrowed from hyper's, so nothing is
/// copied but the facts that must outlive it.
#[derive(Clone, Copy)]
pub struct Head<'a> {
    /// The TCP peer of the connection.
    pub peer: SocketAddr,
    pub method: &'a http::Method,
    pub uri: &'a http::Uri,
    pub headers: &'a HeaderMap,
    /// The request came over a TLS connection (its scheme fact is `https`
    /// unless a trusted proxy says otherwise).
    pub https: bool,
}

/// Marks a request that arrived over TLS (set by the accept loop).
#[derive(Debug, Clone, Copy)]
pub struct OverTls;

impl<'a> Head<'a> {
    pub fn of<B>(peer: SocketAddr, req: &'a http::Request<B>) -> Self {
        Self {
            peer,
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            https: req.extensions().get::<OverTls>().is_some(),
        }
    }
}

/// The facts of one request and what else the decision needs from it.
#[derive(Clone)]
pub struct Read {
    pub(super) facts: Facts,
    pub(super) presented: Presented,
    /// The token presented is the request's first `Authorization` line
    /// (the one [`Seen::scan`] read): the proxy strips that line as
    /// dashgate's without hashing it again.
    pub(super) bearer_header: bool,
    pub(super) query: String,
    /// A browser navigation: answered with a redirect to the login page
    /// instead of a bare 401, and the place a `?token=` visit happens.
    pub(super) html: bool,
}

impl std::fmt::Debug for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Read")
            .field("facts", &self.facts)
            .field("presented", &self.presented)
            .finish_non_exhaustive()
    }
}

/// Read one request's facts (SPEC §1: peer, client, method, path, host,
/// origin, transport, credential) under the live policy into `out`, a
/// [`Read::blank`]. `Err` for what is refused before any rule: forwarding
/// headers that cannot be believed, an ambiguous Host.
pub(super) fn read(
    state: &AppState,
    policy: &CompiledPolicy,
    head: Head<'_>,
    out: &mut Read,
) -> Result<(), Denied> {
    let headers = head.headers;
    let seen = Seen::scan(headers);
    let peer_ip = canonical_ip(head.peer.ip());
    let path = head.uri.path();
    let query = head.uri.query().unwrap_or("");
    let method = method_name(head.method);
    let upgrade = seen.upgrade.and_then(|v| v.to_str().ok());
    let transport = match upgrade {
        Some(v) if v.trim_ascii().eq_ignore_ascii_case("websocket") => Transport::Ws,
        _ => Transport::Http,
    };
    // Only a trusted proxy's forwarding headers are believed, so only
    // theirs are read (SPEC §2.2); anyone else's are ignored.
    let fwd = if policy.is_trusted_proxy(peer_ip) {
        ForwardHeaders {
            x_forwarded_for: header_lines(headers, X_FORWARDED_FOR),
            forwarded: header_lines(headers, FORWARDED),
            x_forwarded_proto: header_joined(headers, X_FORWARDED_PROTO),
            x_forwarded_host: header_joined(headers, X_FORWARDED_HOST),
        }
    } else {
        ForwardHeaders::default()
    };
    let deny = |client: IpAddr, reason: Reason| {
        let d = Denied::new(reason, None);
        audit_denial(state, client, &method, &log_path(path, query), &d);
        d
    };
    let view = match policy.client(peer_ip, &fwd) {
        Ok(v) => v,
        Err(reason) => return Err(deny(peer_ip, reason)),
    };
    let client = canonical_ip(view.client);
    let Ok(host) = seen.host(head.uri.authority()) else {
        let mut d = deny(client, Reason::HostNotAllowed);
        d.detail = Some("the request names its host twice or in two ways (several Host headers, or a Host other than the request line's)".into());
        return Err(d);
    };
    let Ok(forwarded) = forwarded_user(headers, policy, view.peer_trusted) else {
        return Err(deny(client, Reason::BadForwardingHeader));
    };
    let (mut presented, mut bearer_header) =
        presented(&seen, headers, query, forwarded.clone(), true);
    let ws = transport == Transport::Ws;
    let pub_path = super::pub_path(state);
    let internal = internal_allowed(peer_ip, client, path, pub_path, ws, Some(headers));
    let mut credential = resolve_request(state, policy, &presented, internal);
    if credential == Credential::Invalid && super::upstreams_path(state, path) {
        // A token that is not dashgate's, on a path of the upstream, is the
        // upstream's own (hermes sends `?token=` on its WebSockets): no
        // bad credential, not counted, passed on untouched (SPEC §6). The
        // request is decided on dashgate's other credentials, if any.
        (presented, bearer_header) = self::presented(&seen, headers, query, forwarded, false);
        credential = resolve_request(state, policy, &presented, internal);
    }
    let html = transport == Transport::Http
        && method == "GET"
        && seen
            .accept
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"));
    // Written in place, field by field: `out` is the admission's own
    // allocation, and a request's facts are too large to move cheaply.
    let f = &mut out.facts;
    f.peer = peer_ip;
    f.client = client;
    f.method = method;
    f.path.push_str(path);
    f.host = view.host.or_else(|| host.map(str::to_string));
    f.origin = seen.origin(headers).map(Cow::into_owned);
    f.scheme = view
        .proto
        .map_or(if head.https { "https" } else { "http" }.into(), Into::into);
    f.transport = transport;
    f.credential = credential;
    out.presented = presented;
    out.bearer_header = bearer_header;
    out.query.push_str(query);
    out.html = html;
    Ok(())
}

impl Read {
    /// A read of nothing yet, for [`read`] to fill in: no address, no
    /// credential, an empty path (which no policy admits).
    pub(super) fn blank() -> Self {
        let none = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        Read {
            facts: Facts {
                peer: none,
                client: none,
                method: Cow::Borrowed(""),
                path: String::new(),
                host: None,
                origin: None,
                scheme: Cow::Borrowed("http"),
                transport: Transport::Http,
                credential: Credential::None,
            },
            presented: Presented::None,
            bearer_header: false,
            query: String::new(),
            html: false,
        }
    }
}

/// The headers the gate reads on every request, found in one pass over the
/// map: a lookup by name hashes the name, and a request carries few headers.
#[derive(Default)]
struct Seen<'h> {
    host: Option<&'h HeaderValue>,
    hosts: usize,
    authorization: Option<&'h HeaderValue>,
    upgrade: Option<&'h HeaderValue>,
    origin: Option<&'h HeaderValue>,
    origins: usize,
    accept: Option<&'h HeaderValue>,
    cookie: bool,
    fetch_site: Option<&'h HeaderValue>,
}

impl<'h> Seen<'h> {
    fn scan(headers: &'h HeaderMap) -> Self {
        let mut s = Self::default();
        // Each name's first line is the one `HeaderMap::get` would give.
        for (name, value) in headers {
            if name == HOST {
                s.host.get_or_insert(value);
                s.hosts += 1;
            } else if name == AUTHORIZATION {
                s.authorization.get_or_insert(value);
            } else if name == UPGRADE {
                s.upgrade.get_or_insert(value);
            } else if name == ORIGIN {
                s.origin.get_or_insert(value);
                s.origins += 1;
            } else if name == ACCEPT {
                s.accept.get_or_insert(value);
            } else if name == COOKIE {
                s.cookie = true;
            } else if name == SEC_FETCH_SITE {
                s.fetch_site.get_or_insert(value);
            }
        }
        s
    }

    /// The host the request is for (RFC 9112 §3.3): the `Host` header,
    /// else the target URI's authority (an absolute-form request line,
    /// HTTP/2's `:authority`). `Err` when that is ambiguous: several `Host`
    /// lines, a `Host` that is not text, or a `Host` that names another
    /// authority than the request line. A `Host` that is no authority at all
    /// is passed on for the policy to judge.
    fn host(&self, target: Option<&'h Authority>) -> Result<Option<&'h str>, ()> {
        if self.hosts > 1 {
            return Err(());
        }
        let header = match self.host {
            Some(v) => Some(v.to_str().map_err(|_| ())?),
            None => None,
        };
        match (target, header) {
            (None, None) => Ok(None),
            (Some(t), None) => Ok(Some(t.as_str())),
            (None, Some(h)) => Ok(Some(h)),
            (Some(t), Some(h)) => match h.parse::<Authority>() {
                Ok(a) if a != *t => Err(()),
                _ => Ok(Some(h)),
            },
        }
    }

    /// A browser says another site made this request (`Sec-Fetch-Site:
    /// cross-site` or `same-site`, e.g. another port on the same host): a
    /// link or form of a page the user visits, not the user.
    fn cross_site(&self) -> bool {
        self.fetch_site.is_some_and(|v| {
            let v = v.as_bytes().trim_ascii();
            v.eq_ignore_ascii_case(b"cross-site") || v.eq_ignore_ascii_case(b"same-site")
        })
    }

    /// The Origin header. Several Origin headers (only a non-browser client
    /// can send that) are kept joined, which equals no allowed origin:
    /// refused where Origin is checked, rather than deciding on whichever
    /// came first.
    fn origin(&self, headers: &HeaderMap) -> Option<Cow<'h, str>> {
        let first = self.origin?;
        if self.origins == 1 {
            return Some(String::from_utf8_lossy(first.as_bytes()));
        }
        Some(Cow::Owned(
            headers
                .get_all(ORIGIN)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()))
                .collect::<Vec<_>>()
                .join(", "),
        ))
    }
}

// Header names parsed once: looking a header up by `&str` parses and
// lower-cases the name on every request.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const SEC_FETCH_SITE: HeaderName = HeaderName::from_static("sec-fetch-site");

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

/// The token of an `Authorization: Bearer <token>` value (scheme case
/// insensitive, RFC 9110 §11.1); `None` for another scheme or no token.
/// Bytes, not text: the token is only ever hashed, and a token that is not
/// visible ASCII is a bad credential like any other wrong one.
pub(crate) fn bearer(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    if value.len() < 7 || !value[..6].eq_ignore_ascii_case(b"bearer") || value[6] != b' ' {
        return None;
    }
    Some(value[7..].trim_ascii()).filter(|t| !t.is_empty())
}

/// The credential a request presents, strongest first: a bearer header,
/// then `?token=` (both only when `tokens`), then the session cookie, then
/// a trusted proxy's forward-auth user. A token is hashed here, once per
/// request. With it, whether it is the token of the first `Authorization`
/// line (see [`Read::bearer_header`]).
fn presented(
    seen: &Seen<'_>,
    headers: &HeaderMap,
    query: &str,
    forwarded: Option<(&str, Vec<String>)>,
    tokens: bool,
) -> (Presented, bool) {
    if let Some(token) = seen
        .authorization
        .filter(|_| tokens)
        .and_then(|v| bearer(v.as_bytes()))
    {
        return (Presented::Token(TokenDigest::of_bytes(token)), true);
    }
    (
        presented_otherwise(seen, headers, query, forwarded, tokens),
        false,
    )
}

/// [`presented`] after the `Authorization` line: `?token=`, the session
/// cookie, a trusted proxy's forward-auth user.
fn presented_otherwise(
    seen: &Seen<'_>,
    headers: &HeaderMap,
    query: &str,
    forwarded: Option<(&str, Vec<String>)>,
    tokens: bool,
) -> Presented {
    // A cross-site `?token=` is no credential (SPEC §8): any page could
    // sign the browser in as someone else, or lock its address out with
    // guesses. A typed or pasted link is `none`; a script sends no header.
    if let Some(t) = query_param(query, "token").filter(|_| tokens && !seen.cross_site()) {
        return Presented::Token(TokenDigest::of(&t));
    }
    if seen.cookie {
        for line in headers.get_all(COOKIE) {
            if let Some(id) = line.to_str().ok().and_then(sessions::from_cookie_header) {
                return Presented::Cookie(id.to_string());
            }
        }
    }
    if let Some(user) = forwarded {
        return Presented::Forwarded(user.0.to_string(), user.1);
    }
    Presented::None
}

/// The user a trusted proxy names in `forward_auth.user_header`, believed
/// only with the proxy's shared secret in `secret_header` (SPEC §2.2: on a
/// loopback proxy every local process is a trusted peer). Without the
/// secret, or with a wrong one, the header names nobody. From a peer that
/// is not a trusted proxy both headers are ignored, whatever they hold.
/// The user's groups come from `groups_header`, when the policy names one,
/// under the same secret. `Err` when a trusted peer sends any of the
/// headers more than once.
fn forwarded_user<'h>(
    headers: &'h HeaderMap,
    policy: &CompiledPolicy,
    peer_trusted: bool,
) -> Result<Option<(&'h str, Vec<String>)>, ()> {
    let Some(fa) = policy.forward_auth().filter(|_| peer_trusted) else {
        return Ok(None);
    };
    let once = |name: &str| {
        let mut lines = headers.get_all(name).iter();
        let first = lines.next();
        if lines.next().is_some() {
            Err(())
        } else {
            Ok(first)
        }
    };
    let user = once(&fa.user_header)?;
    let secret = once(&fa.secret_header)?;
    let groups = match &fa.groups_header {
        Some(h) => once(h)?,
        None => None,
    };
    let Some(user) = user
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        return Ok(None);
    };
    if !secret.is_some_and(|s| fa.secret_matches(s.as_bytes())) {
        tracing::debug!(
            header = %fa.user_header,
            "forward-auth user ignored: the proxy's secret is missing or wrong"
        );
        return Ok(None);
    }
    let groups = groups
        .and_then(|v| v.to_str().ok())
        .map(crate::policy::split_groups)
        .unwrap_or_default();
    Ok(Some((user, groups)))
}

/// Whether a chat child's internal credential (the token in its
/// `DASHGATE_EVENTS_URL`) may count for this request: only on a WebSocket
/// upgrade of `/api/pub` (`pub_path`: `/.dashgate/api/pub` in upstream
/// mode, where `/api/pub` is the upstream's) (never a page, so never a `?token=` visit that
/// would trade it for a cookie), only with the loopback address that URL names (127.0.0.1 or ::1) as the
/// TCP peer itself, and only without forwarding headers (whether or not the
/// peer is a trusted proxy), so neither a leaked URL nor a local reverse
/// proxy relaying the outside world can use it. `headers` is `None` for an
/// open WebSocket decided again: its upgrade was checked.
pub(super) fn internal_allowed(
    peer: IpAddr,
    client: IpAddr,
    path: &str,
    pub_path: &str,
    ws: bool,
    headers: Option<&HeaderMap>,
) -> bool {
    let named = peer == IpAddr::V4(Ipv4Addr::LOCALHOST) || peer == IpAddr::V6(Ipv6Addr::LOCALHOST);
    let forwarded = |h: &HeaderMap| {
        [
            X_FORWARDED_FOR,
            FORWARDED,
            X_FORWARDED_PROTO,
            X_FORWARDED_HOST,
        ]
        .iter()
        .any(|n| h.contains_key(n))
    };
    path == pub_path && ws && named && client == peer && !headers.is_some_and(forwarded)
}

/// The method as a fact: the standard ones without a copy.
fn method_name(m: &http::Method) -> Cow<'static, str> {
    use http::Method as M;
    match *m {
        M::GET => "GET".into(),
        M::POST => "POST".into(),
        M::PUT => "PUT".into(),
        M::DELETE => "DELETE".into(),
        M::HEAD => "HEAD".into(),
        M::OPTIONS => "OPTIONS".into(),
        M::PATCH => "PATCH".into(),
        _ => m.as_str().to_string().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer   abc  "), Some(&b"abc"[..]));
        assert_eq!(bearer(b" BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Bearer \xffz"), Some(&b"\xffz"[..]));
        for none in [
            &b"Bearer"[..],
            b"Bearer  ",
            b"Bearerabc",
            b"Bearer\tabc",
            b"Basic abc",
            b"",
            "B\u{e9} abc".as_bytes(),
        ] {
            assert_eq!(bearer(none), None, "{none:?}");
        }
    }

    #[test]
    fn headers_seen_in_one_pass() {
        let mut h = HeaderMap::new();
        h.append(HOST, HeaderValue::from_static("a.lan"));
        h.append(ORIGIN, HeaderValue::from_static("http://a.lan"));
        h.append(ORIGIN, HeaderValue::from_static("http://b.lan"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer 1"));
        h.append(AUTHORIZATION, HeaderValue::from_static("Bearer 2"));
        let seen = Seen::scan(&h);
        assert_eq!(seen.host(None), Ok(Some("a.lan")));
        assert_eq!(seen.authorization, h.get(AUTHORIZATION));
        assert_eq!(
            seen.origin(&h).as_deref(),
            Some("http://a.lan, http://b.lan")
        );
        h.append(HOST, HeaderValue::from_static("b.lan"));
        assert_eq!(Seen::scan(&h).host(None), Err(()));
    }
}
