//! The Host and Origin checks of SPEC §2.3.
//!
//! Host: a DNS-rebinding page reaches the server under its own name, so only
//! listed names are served. Origin: a page the user visits must not be able
//! to drive their terminal, so a browser's cross-site WebSocket upgrade or
//! unsafe request is refused even in the `insecure` preset.

use std::net::{IpAddr, Ipv6Addr};

/// The names a loopback-bound server answers to by default.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// One `allowed_hosts` entry, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPat {
    /// A name or address, lower case, IPv6 as `[canonical]`.
    Exact(String),
    /// `*.ts.net` as `.ts.net`: any name ending so, at any depth.
    Suffix(String),
}

/// The compiled `allowed_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSet {
    /// Any Host, and a missing one (bound to 0.0.0.0 / ::, or `"*"` listed).
    Any,
    /// Only these.
    List(Vec<String>, Vec<String>),
}

impl HostSet {
    /// The default for a server bound to `bind` (SPEC §2.3).
    pub fn default_for(bind: IpAddr) -> HostSet {
        let bind = bind.to_canonical();
        if bind.is_unspecified() {
            return HostSet::Any;
        }
        let mut exact: Vec<String> = LOOPBACK_NAMES.iter().map(|s| s.to_string()).collect();
        let own = ip_host(bind);
        if !exact.contains(&own) {
            exact.push(own);
        }
        HostSet::List(exact, Vec::new())
    }

    /// Compile a listed set; it replaces the default entirely (fail closed:
    /// what is not written is not served).
    ///
    /// # Errors
    /// The index of a malformed entry and what was expected.
    pub fn from_list(entries: &[String]) -> Result<HostSet, (usize, String)> {
        let (mut exact, mut suffix) = (Vec::new(), Vec::new());
        for (i, e) in entries.iter().enumerate() {
            match parse_entry(e).map_err(|m| (i, m))? {
                None => return Ok(HostSet::Any),
                Some(HostPat::Exact(s)) => exact.push(s),
                Some(HostPat::Suffix(s)) => suffix.push(s),
            }
        }
        Ok(HostSet::List(exact, suffix))
    }

    /// Whether a request with this Host header (port ignored) is served.
    pub fn allows(&self, host: Option<&str>) -> bool {
        match self {
            HostSet::Any => true,
            HostSet::List(exact, suffix) => {
                let Some(h) = host.and_then(normalize_host) else {
                    return false;
                };
                exact.iter().any(|e| *e == h) || suffix.iter().any(|s| h.ends_with(s.as_str()))
            }
        }
    }

    /// The entries, for `policy explain` and `/api/policy`.
    pub fn describe(&self) -> String {
        match self {
            HostSet::Any => "any host".to_owned(),
            HostSet::List(exact, suffix) => {
                let all: Vec<String> = exact
                    .iter()
                    .cloned()
                    .chain(suffix.iter().map(|s| format!("*{s}")))
                    .collect();
                all.join(", ")
            }
        }
    }
}

fn ip_host(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    }
}

/// `None` for `*` (any host).
fn parse_entry(e: &str) -> Result<Option<HostPat>, String> {
    let e = e.trim().to_ascii_lowercase();
    if e == "*" {
        return Ok(None);
    }
    if let Some(rest) = e.strip_prefix("*.") {
        if valid_dns(rest) && rest.contains(|c: char| c.is_ascii_alphabetic()) {
            return Ok(Some(HostPat::Suffix(format!(".{rest}"))));
        }
    } else if let Ok(ip) = e
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(Some(HostPat::Exact(ip_host(ip.to_canonical()))));
    } else if valid_dns(&e) {
        return Ok(Some(HostPat::Exact(e)));
    }
    let hint = if e.contains(':') && !e.contains('[') {
        " (ports are ignored: give the name alone)"
    } else {
        ""
    };
    Err(format!(
        "{e:?} is not a host name (expected a name like dash.lan, an address, \"*.suffix\" or \"*\"){hint}"
    ))
}

fn valid_dns(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// A Host header (or the host part of an origin) without its port, lower
/// case, IPv6 as `[canonical]`; `None` when it is not a host at all.
pub fn normalize_host(h: &str) -> Option<String> {
    let h = h.trim();
    if let Some(rest) = h.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !(after.is_empty() || port_ok(after.strip_prefix(':')?)) {
            return None;
        }
        let ip: Ipv6Addr = inner.parse().ok()?;
        return Some(ip_host(IpAddr::V6(ip).to_canonical()));
    }
    let name = match h.split_once(':') {
        Some((name, port)) if port_ok(port) => name,
        Some(_) => return None,
        None => h,
    };
    let name = name.to_ascii_lowercase();
    valid_dns(&name).then_some(name)
}

fn port_ok(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// An origin as `scheme://host[:port]`, lower case, default port dropped.
pub fn normalize_origin(o: &str) -> Option<String> {
    let (scheme, rest) = o.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => "80",
        "https" => "443",
        _ => return None,
    };
    if rest.contains(['/', '?', '#', '@']) {
        return None;
    }
    let host = normalize_host(rest)?;
    let port = match rest.rsplit_once(':') {
        Some((_, p)) if port_ok(p) && !rest.ends_with(']') => p.trim_start_matches('0'),
        _ => default,
    };
    if port == default {
        Some(format!("{scheme}://{host}"))
    } else {
        Some(format!("{scheme}://{host}:{port}"))
    }
}

/// The compiled `allowed_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginSet {
    /// `same-host`: the request's own `scheme://host[:port]`.
    pub same_host: bool,
    /// Listed origins, normalized.
    pub list: Vec<String>,
}

impl Default for OriginSet {
    fn default() -> Self {
        OriginSet {
            same_host: true,
            list: Vec::new(),
        }
    }
}

impl OriginSet {
    /// Compile a list (`same-host` may be one of its entries).
    ///
    /// # Errors
    /// The index of a malformed entry and what was expected.
    pub fn from_list(entries: &[String]) -> Result<OriginSet, (usize, String)> {
        let mut set = OriginSet {
            same_host: false,
            list: Vec::new(),
        };
        for (i, e) in entries.iter().enumerate() {
            if e == "same-host" {
                set.same_host = true;
            } else {
                let o = normalize_origin(e).ok_or_else(|| {
                    (i, format!("{e:?} is not an origin (expected same-host or scheme://host[:port], such as https://dash.example.com)"))
                })?;
                set.list.push(o);
            }
        }
        Ok(set)
    }

    /// Whether `origin` may make this request; `scheme` and `host` are the
    /// request's own. An absent Origin is a non-browser client: fine.
    pub fn allows(&self, origin: Option<&str>, scheme: &str, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        let Some(o) = normalize_origin(origin) else {
            return false; // `null`, or garbage.
        };
        if self.list.contains(&o) {
            return true;
        }
        self.same_host
            && host
                .and_then(|h| normalize_origin(&format!("{scheme}://{h}")))
                .is_some_and(|own| own == o)
    }

    /// The entries, for `policy explain`.
    pub fn describe(&self) -> String {
        let mut v: Vec<&str> = Vec::new();
        if self.same_host {
            v.push("same-host");
        }
        v.extend(self.list.iter().map(String::as_str));
        v.join(", ")
    }
}

/// Whether the Origin is checked for this request: WebSocket upgrades and
/// unsafe methods only.
pub fn origin_checked(ws: bool, method: &str) -> bool {
    ws || matches!(method, "POST" | "PUT" | "PATCH" | "DELETE")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let lo = HostSet::default_for("127.0.0.1".parse().unwrap());
        for ok in [
            "localhost",
            "LOCALHOST:9119",
            "127.0.0.1:80",
            "[::1]:9119",
            "[0:0::1]",
        ] {
            assert!(lo.allows(Some(ok)), "{ok}");
        }
        for bad in [
            "evil.com",
            "localhost.evil.com",
            "192.168.1.2",
            "",
            "[::1",
            "a:b:c",
        ] {
            assert!(!lo.allows(Some(bad)), "{bad}");
        }
        assert!(!lo.allows(None));
        let own = HostSet::default_for("192.168.1.2".parse().unwrap());
        assert!(own.allows(Some("192.168.1.2:9119")) && own.allows(Some("localhost")));
        assert_eq!(HostSet::default_for("::".parse().unwrap()), HostSet::Any);
        let listed = HostSet::from_list(&["dash.lan".into(), "*.ts.net".into()]).unwrap();
        assert!(listed.allows(Some("dash.lan")) && listed.allows(Some("box.tail1.ts.net")));
        assert!(!listed.allows(Some("ts.net")) && !listed.allows(Some("localhost")));
        assert!(HostSet::from_list(&["dash.lan:80".into()]).is_err());
    }

    #[test]
    fn origins() {
        let same = OriginSet::default();
        assert!(same.allows(None, "http", Some("localhost:9119")));
        assert!(same.allows(
            Some("http://LOCALHOST:9119"),
            "http",
            Some("localhost:9119")
        ));
        assert!(same.allows(Some("http://h:80"), "http", Some("h")));
        assert!(same.allows(Some("https://[::1]"), "https", Some("[::1]:443")));
        assert!(!same.allows(Some("null"), "http", Some("localhost")));
        assert!(!same.allows(Some("http://evil.com"), "http", Some("localhost")));
        assert!(!same.allows(Some("https://localhost"), "http", Some("localhost")));
        assert!(!same.allows(Some("http://localhost:9119"), "http", None));
        let list = OriginSet::from_list(&["https://app.example.com".into()]).unwrap();
        assert!(list.allows(Some("https://app.example.com:443"), "http", Some("x")));
        assert!(!list.allows(Some("http://x"), "http", Some("x")));
        assert!(OriginSet::from_list(&["app.example.com".into()]).is_err());
    }
}
