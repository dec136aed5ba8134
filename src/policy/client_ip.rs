//! Who the client is (SPEC §2.2): the TCP peer, unless the peer is a trusted
//! proxy, in which case its forwarding headers are believed.
//!
//! Why right to left: each proxy appends the address it received the request
//! from, so the rightmost entries were written by our own proxies and the
//! leftmost by whoever sent the request, who can write anything. Walking from
//! the right and stopping at the first address that is not one of our proxies
//! finds the last hop we can vouch for.

use std::net::IpAddr;

use super::network::NetSet;

/// The forwarding headers of one request, every line of each kept in order.
#[derive(Debug, Clone, Default)]
pub struct ForwardHeaders {
    pub x_forwarded_for: Vec<String>,
    pub forwarded: Vec<String>,
    pub x_forwarded_proto: Option<String>,
    pub x_forwarded_host: Option<String>,
}

/// The client as the policy sees it after SPEC §2.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientView {
    pub client: IpAddr,
    /// Whether the TCP peer is a trusted proxy (its headers were believed).
    pub peer_trusted: bool,
    /// `X-Forwarded-Proto` from a trusted proxy.
    pub proto: Option<String>,
    /// `X-Forwarded-Host` from a trusted proxy.
    pub host: Option<String>,
}

/// Find the client; the error says which header entry is malformed.
pub(crate) fn resolve(
    trusted: &NetSet,
    peer: IpAddr,
    fwd: &ForwardHeaders,
) -> Result<ClientView, String> {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        // Headers from anyone else are ignored entirely, never an error.
        return Ok(ClientView {
            client: peer,
            peer_trusted: false,
            proto: None,
            host: None,
        });
    }
    let xff = match fwd.x_forwarded_for.is_empty() {
        true => Vec::new(),
        false => parse_xff(&fwd.x_forwarded_for)?,
    };
    let forwarded = match fwd.forwarded.is_empty() {
        true => Vec::new(),
        false => parse_forwarded(&fwd.forwarded)?,
    };
    let walk = |hops: &[IpAddr]| {
        hops.iter()
            .rev()
            .find(|ip| !trusted.contains(**ip))
            .or(hops.first())
            .copied()
    };
    // When both headers are present they must agree: a proxy that writes one
    // may pass the client's own copy of the other straight through.
    let client = match (walk(&xff), walk(&forwarded)) {
        (Some(a), Some(b)) if a != b => {
            return Err(format!(
                "X-Forwarded-For names client {a} but Forwarded names {b}"
            ))
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => peer,
    };
    let proto = match fwd.x_forwarded_proto.as_deref().map(str::trim) {
        None => None,
        Some(p) if p.eq_ignore_ascii_case("http") || p.eq_ignore_ascii_case("https") => {
            Some(p.to_ascii_lowercase())
        }
        Some(p) => return Err(format!("X-Forwarded-Proto {p:?} (expected http or https)")),
    };
    let host = match fwd.x_forwarded_host.as_deref().map(str::trim) {
        None => None,
        Some(h) if !h.is_empty() && !h.contains([',', ' ', '/']) => Some(h.to_owned()),
        Some(h) => return Err(format!("X-Forwarded-Host {h:?} (expected one host[:port])")),
    };
    Ok(ClientView {
        client,
        peer_trusted: true,
        proto,
        host,
    })
}

/// All `X-Forwarded-For` lines joined with commas, left to right.
fn parse_xff(lines: &[String]) -> Result<Vec<IpAddr>, String> {
    let joined = lines.join(",");
    joined
        .split(',')
        .map(|e| {
            let e = e.trim();
            parse_node(e)
                .ok_or_else(|| format!("X-Forwarded-For entry {e:?} (expected an IP address)"))
        })
        .collect()
}

/// The `for=` of every element of every `Forwarded` line (RFC 7239).
fn parse_forwarded(lines: &[String]) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for line in lines {
        for element in split_outside_quotes(line, ',') {
            for pair in split_outside_quotes(element, ';') {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let Some((k, v)) = pair.split_once('=') else {
                    return Err(format!("Forwarded pair {pair:?} (expected key=value)"));
                };
                if !k.trim().eq_ignore_ascii_case("for") {
                    continue;
                }
                let v = v.trim();
                let v = match v.strip_prefix('"') {
                    Some(q) => q
                        .strip_suffix('"')
                        .ok_or_else(|| format!("Forwarded for={v} (unterminated quote)"))?,
                    None => v,
                };
                let ip = parse_node(v).ok_or_else(|| {
                    format!("Forwarded for={v:?} (expected an IP address; unknown and obfuscated identifiers are not accepted from a trusted proxy)")
                })?;
                out.push(ip);
            }
        }
    }
    Ok(out)
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let (mut out, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:8080`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !after.is_empty() && !port_ok(after.strip_prefix(':')?) {
            return None;
        }
        return inner
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|a| IpAddr::V6(a).to_canonical());
    }
    let (addr, port) = s.split_once(':')?;
    port_ok(port).then(|| addr.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4))?
}

fn port_ok(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes() {
        assert_eq!(parse_node("192.0.2.43:8080"), "192.0.2.43".parse().ok());
        assert_eq!(parse_node("[2001:db8::1]:4711"), "2001:db8::1".parse().ok());
        assert_eq!(parse_node("::ffff:10.0.0.1"), "10.0.0.1".parse().ok());
        for bad in [
            "",
            "unknown",
            "_hidden",
            "1.2.3.4:",
            "[::1]x",
            "1.2.3",
            "1.2.3.4:99999x",
        ] {
            assert_eq!(parse_node(bad), None, "{bad}");
        }
    }

    #[test]
    fn forwarded_pairs() {
        let v =
            parse_forwarded(&[r#"for="[2001:db8::1]:4711";proto=https, for=192.0.2.43"#.into()])
                .unwrap();
        assert_eq!(v.len(), 2);
        assert!(parse_forwarded(&["for=unknown".into()]).is_err());
        assert!(parse_forwarded(&["for=_x".into()]).is_err());
        assert!(parse_forwarded(&["for".into()]).is_err());
        assert!(parse_forwarded(&["proto=https".into()]).unwrap().is_empty());
    }
}
