//! The outbound request's headers, built from scratch (STYLE habit 11).
//!
//! Go's `httputil.ReverseProxy` replaced its `Director` hook (edit the
//! inbound request in place) with `Rewrite` (an inbound and an outbound
//! request) because headers a client sent kept leaking through the edits.
//! Here the outbound map starts empty: the end-to-end headers the upstream
//! should see are copied one by one, and everything dashgate vouches for
//! (`Host`, `X-Forwarded-*`, `X-Dashgate-User`, a rewritten `Origin`) is set
//! by dashgate, never taken from the client.

use http::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, COOKIE, FORWARDED, HOST, ORIGIN,
    PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::HeaderMap;

use crate::auth::sessions::COOKIE as SESSION_COOKIE;
use crate::gate::{Access, Presented};
use crate::policy::{ForwardAuth, Principal, TokenDigest};

use super::Upstream;

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// The principal dashgate admitted (absent for an anonymous caller).
pub const X_DASHGATE_USER: HeaderName = HeaderName::from_static("x-dashgate-user");
/// The principal's groups under the deciding policy, comma-separated
/// (absent when it has none); a client-sent copy is always removed.
pub const X_DASHGATE_GROUPS: HeaderName = HeaderName::from_static("x-dashgate-groups");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Hop-by-hop headers (RFC 9110 §7.6.1), removed in both directions, along
/// with every header a `Connection` header names. A `static`, not a
/// `const`: a `const` array of `HeaderName`s is built and dropped again at
/// every use, and it is used for every header of every proxied request.
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    KEEP_ALIVE,
    PROXY_CONNECTION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    PROXY_AUTHORIZATION,
    PROXY_AUTHENTICATE,
];

/// The names listed by the `Connection` headers of `h` (lower-cased).
fn connection_named(h: &HeaderMap) -> Vec<HeaderName> {
    h.get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// Whether `name` is hop-by-hop here: in the fixed list or named by
/// `Connection`.
fn is_hop(name: &HeaderName, named: &[HeaderName]) -> bool {
    HOP_BY_HOP.contains(name) || named.contains(name)
}

/// Remove hop-by-hop headers from an upstream's response in place. Most
/// responses have none: one pass over them finds that, where removing each
/// of the nine names would look every one up.
pub fn strip_response(h: &mut HeaderMap) {
    if !h.keys().any(|n| HOP_BY_HOP.contains(n)) {
        return;
    }
    for name in connection_named(h) {
        h.remove(name);
    }
    for name in &HOP_BY_HOP {
        h.remove(name);
    }
}

/// What dashgate says about the request, never what the client claimed.
fn is_ours(name: &HeaderName) -> bool {
    let s = name.as_str();
    *name == HOST
        || *name == FORWARDED
        || *name == X_REAL_IP
        || s.starts_with("x-forwarded-")
        || s.starts_with("x-dashgate-")
        || s.starts_with("sec-websocket-")
}

/// The name a principal is passed on as, `None` for an anonymous caller.
pub fn principal_name(p: &Principal) -> Option<&str> {
    match p {
        Principal::Anonymous => None,
        Principal::StartupToken => Some("startup"),
        Principal::Token { name }
        | Principal::User { name }
        | Principal::Forwarded { name, .. } => Some(name),
        Principal::Internal { .. } => None,
    }
}

/// Whether an `Authorization` value is the dashgate credential the gate
/// admitted this request with (then it is dashgate's, and stripped); any
/// other is the upstream's own and passes untouched. `first`: the
/// request's first `Authorization` line, the one the gate read: when the
/// gate's token came from it, it is dashgate's without hashing it again
/// (any other line is hashed and compared).
fn is_dashgate_bearer(value: &HeaderValue, access: &Access, first: bool) -> bool {
    let Presented::Token(admitted) = access.presented() else {
        return false;
    };
    if first && access.bearer_header() {
        return true;
    }
    crate::gate::bearer(value.as_bytes()).is_some_and(|t| TokenDigest::of_bytes(t) == *admitted)
}

/// The inbound headers the outbound ones are made from, found in one pass
/// over the map rather than one hashed lookup each (most are absent).
#[derive(Default)]
struct Inbound<'h> {
    connection: bool,
    cookie: bool,
    origin: Option<&'h HeaderValue>,
    host: Option<&'h HeaderValue>,
}

impl<'h> Inbound<'h> {
    fn scan(h: &'h HeaderMap) -> Self {
        let mut s = Self::default();
        for (name, value) in h {
            if name == CONNECTION {
                s.connection = true;
            } else if name == COOKIE {
                s.cookie = true;
            } else if name == ORIGIN {
                s.origin.get_or_insert(value);
            } else if name == HOST {
                s.host.get_or_insert(value);
            }
        }
        s
    }
}

/// The `Cookie` lines without dashgate's own session cookie, joined into
/// one line (RFC 6265 §5.4); `None` when nothing is left.
fn cookies_without_ours(h: &HeaderMap) -> Option<HeaderValue> {
    let kept: Vec<&str> = h
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|kv| !kv.is_empty())
        .filter(|kv| kv.split('=').next().map(str::trim) != Some(SESSION_COOKIE))
        .collect();
    if kept.is_empty() {
        return None;
    }
    HeaderValue::from_str(&kept.join("; ")).ok()
}

/// The headers of the request sent to the upstream. `ws`: a WebSocket
/// handshake (its `Upgrade`, `Connection` and key are set; extensions such
/// as permessage-deflate are dropped, as each hop frames its own messages).
/// `forward_auth`: the policy's forward auth, whose user, groups and shared
/// secret headers are never passed on (the secret is between the proxy in
/// front and dashgate only; the upstream gets the principal as
/// `X-Dashgate-User` / `X-Dashgate-Groups`).
pub fn outbound(
    inbound: &HeaderMap,
    method: &http::Method,
    access: &Access,
    up: &Upstream,
    ws: bool,
    forward_auth: Option<&ForwardAuth>,
) -> HeaderMap {
    let seen = Inbound::scan(inbound);
    let named = if seen.connection {
        connection_named(inbound)
    } else {
        Vec::new()
    };
    let forward_auth: Vec<HeaderName> = forward_auth
        .into_iter()
        .flat_map(|fa| {
            [
                Some(&fa.user_header),
                Some(&fa.secret_header),
                fa.groups_header.as_ref(),
            ]
        })
        .flatten()
        .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
        .collect();
    let mut out = HeaderMap::with_capacity(inbound.len() + 6);
    let mut first_authorization = true;
    for (name, value) in inbound {
        if *name == AUTHORIZATION {
            let first = std::mem::replace(&mut first_authorization, false);
            if is_dashgate_bearer(value, access, first) {
                continue;
            }
        }
        if is_hop(name, &named)
            || is_ours(name)
            || *name == COOKIE
            || *name == ORIGIN
            || forward_auth.contains(name)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out.insert(HOST, up.host_header.clone());
    if let Some(c) = seen.cookie.then(|| cookies_without_ours(inbound)).flatten() {
        out.insert(COOKIE, c);
    }
    if let Some(o) = seen.origin {
        // Rewritten only where the gate checked it (SPEC §2.3): an unchecked
        // Origin is passed as the browser sent it.
        let o = if crate::policy::origin_checked(ws, method.as_str()) {
            up.origin_header.clone()
        } else {
            o.clone()
        };
        out.insert(ORIGIN, o);
    }
    let facts = access.facts();
    out.insert(X_FORWARDED_FOR, ip_value(facts.client));
    out.insert(
        X_FORWARDED_PROTO,
        match &*facts.scheme {
            "https" => HeaderValue::from_static("https"),
            "http" => HeaderValue::from_static("http"),
            other => HeaderValue::from_str(other).unwrap_or(HeaderValue::from_static("http")),
        },
    );
    if let Some(h) = facts.host.as_deref() {
        // The client's own Host value when the gate's host is it (shared,
        // not copied); otherwise (HTTP/2's authority) made from the host.
        let v = match seen.host {
            Some(v) if v.as_bytes() == h.as_bytes() => Some(v.clone()),
            _ => HeaderValue::from_str(h).ok(),
        };
        if let Some(v) = v {
            out.insert(X_FORWARDED_HOST, v);
        }
    }
    let user = match &access.principal {
        Principal::StartupToken => Some(HeaderValue::from_static("startup")),
        p => principal_name(p).and_then(|n| HeaderValue::from_str(n).ok()),
    };
    if let Some(v) = user {
        out.insert(X_DASHGATE_USER, v);
    }
    if !access.groups.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&access.groups.join(",")) {
            out.insert(X_DASHGATE_GROUPS, v);
        }
    }
    if ws {
        out.insert(UPGRADE, HeaderValue::from_static("websocket"));
        out.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
        for name in [SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION] {
            if let Some(v) = inbound.get(&name) {
                out.insert(name, v.clone());
            }
        }
        for v in inbound.get_all(SEC_WEBSOCKET_PROTOCOL) {
            out.append(SEC_WEBSOCKET_PROTOCOL, v.clone());
        }
        debug_assert!(!out.contains_key(SEC_WEBSOCKET_EXTENSIONS));
    }
    out
}

/// An address as a header value. IPv4, nearly every client, is written
/// digit by digit: `write!` through `core::fmt` cost about 2,000
/// instructions here, as much as the rest of the outbound headers.
fn ip_value(ip: std::net::IpAddr) -> HeaderValue {
    let std::net::IpAddr::V4(v4) = ip.to_canonical() else {
        return HeaderValue::from_str(&ip.to_string()).expect("an address is a valid header value");
    };
    let mut buf = [0u8; 15];
    let mut n = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    HeaderValue::from_bytes(&buf[..n]).expect("digits and dots are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_response(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("content-type"));
    }

    #[test]
    fn addresses_format_as_header_values() {
        for a in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.9.99",
            "100.64.100.1",
            "192.0.2.7",
            "255.255.255.255",
            "fe80::1:2:3:4",
            "::1",
        ] {
            assert_eq!(ip_value(a.parse().unwrap()), a);
        }
        // An IPv4-mapped IPv6 peer is the IPv4 client it is.
        assert_eq!(ip_value("::ffff:192.0.2.9".parse().unwrap()), "192.0.2.9");
    }

    #[test]
    fn only_dashgate_cookie_is_dropped() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; dashgate_session=x"));
        h.append(COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookies_without_ours(&h).unwrap(), "a=1; b=2");
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("dashgate_session=x"));
        assert!(cookies_without_ours(&h).is_none());
    }
}
