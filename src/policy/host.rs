//! The Host and Origin checks of SPEC §2.3.
//!
//! Host: a DNS-rebinding page reaches the server under its own name, so only
//! listed names are served. Origin: a page the user visits must not be able
//! to drive their terminal, so a browser's cross-site WebSocket upgrade or
//! unsafe request is refused even in the `insecure` preset.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The names a loopback-bound server answers to by default.
const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// A host as found in a Host header or an origin, borrowed: `decide` runs on
/// every request, so comparing never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostRef<'a> {
    /// A DNS name, in whatever case it came.
    Name(&'a str),
    /// An address (`[::ffff:a.b.c.d]` folded to IPv4).
    Ip(IpAddr),
}

/// A host kept in a compiled set: names lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    Name(String),
    Ip(IpAddr),
}

/// Two borrowed hosts are the same (names case-insensitively).
fn same(a: HostRef<'_>, b: HostRef<'_>) -> bool {
    match (a, b) {
        (HostRef::Name(a), HostRef::Name(b)) => a.eq_ignore_ascii_case(b),
        (HostRef::Ip(a), HostRef::Ip(b)) => a == b,
        _ => false,
    }
}

impl Host {
    fn is(&self, other: HostRef<'_>) -> bool {
        match (self, other) {
            (Host::Name(a), HostRef::Name(b)) => a.eq_ignore_ascii_case(b),
            (Host::Ip(a), HostRef::Ip(b)) => *a == b,
            _ => false,
        }
    }
    fn owned(h: HostRef<'_>) -> Host {
        match h {
            HostRef::Name(n) => Host::Name(n.to_ascii_lowercase()),
            HostRef::Ip(ip) => Host::Ip(ip),
        }
    }
}

impl std::fmt::Display for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
        }
    }
}

/// Split `host[:port]` / `[v6][:port]`; `None` when it is not a host at all.
fn parse_host(h: &str) -> Option<(HostRef<'_>, Option<u16>)> {
    let (host, port) = if let Some(rest) = h.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let ip: Ipv6Addr = inner.parse().ok()?;
        (HostRef::Ip(IpAddr::V6(ip).to_canonical()), after)
    } else {
        let (name, after) = match h.bytes().position(|b| b == b':') {
            Some(i) => (&h[..i], &h[i..]),
            None => (h, ""),
        };
        match name.parse::<Ipv4Addr>() {
            Ok(ip) => (HostRef::Ip(IpAddr::V4(ip)), after),
            Err(_) if valid_dns(name) => (HostRef::Name(name), after),
            Err(_) => return None,
        }
    };
    match port {
        "" => Some((host, None)),
        p => Some((host, Some(parse_port(p.strip_prefix(':')?)?))),
    }
}

/// One to five digits, at most 65535: a port, checked without parsing it.
fn valid_port(p: &[u8]) -> bool {
    (1..=5).contains(&p.len())
        && p.iter().all(u8::is_ascii_digit)
        && (p.len() < 5 || p <= b"65535".as_slice())
}

fn parse_port(p: &str) -> Option<u16> {
    valid_port(p.as_bytes()).then(|| p.parse().ok()).flatten()
}

/// Dot-separated labels of letters, digits, `-`, `_`; no empty label, none
/// starting with `-`. (A byte loop: this runs on every request.)
fn valid_dns(s: &str) -> bool {
    let mut label_start = true;
    for c in s.bytes() {
        match c {
            b'.' if !label_start => label_start = true,
            b'-' if label_start => return false,
            c if c.is_ascii_alphanumeric() || c == b'-' || c == b'_' => label_start = false,
            _ => return false,
        }
    }
    !label_start
}

/// The compiled `allowed_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostSet {
    /// Any Host, and a missing one (`"*"` listed).
    Any,
    /// Only these.
    List(Listed),
}

/// The hosts of a [`HostSet::List`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Listed {
    /// Exact hosts: names (lower case) and addresses.
    exact: Vec<Host>,
    /// `*.suffix` entries, kept as `.suffix`.
    suffix: Vec<String>,
    /// Any IP literal (the default on a wildcard bind): a page the user
    /// visits reaches the server by rebinding a *name* it controls to the
    /// server's address; under an address its origin is the server's own.
    any_ip: bool,
    /// `exact` as Host headers spell them.
    spelled: Spelled,
}

impl Listed {
    fn new(exact: Vec<Host>, suffix: Vec<String>, any_ip: bool) -> Self {
        let spelled = Spelled::of(&exact);
        Self {
            exact,
            suffix,
            any_ip,
            spelled,
        }
    }
}

/// The exact hosts as a Host header spells them (lower case, IPv6 in
/// brackets): what nearly every request sends, recognised without parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Spelled(Vec<String>);

impl Spelled {
    fn of(exact: &[Host]) -> Self {
        Self(exact.iter().map(Host::to_string).collect())
    }

    /// Whether `host[:port]` names an entry as spelled, with a valid port.
    /// `false` says nothing: the caller parses.
    fn has(&self, h: &str) -> bool {
        let b = h.as_bytes();
        // The port is what follows the last ':' (none after a `]`).
        let colon = match b.last() {
            Some(b']') | None => None,
            _ => b.iter().rposition(|c| *c == b':'),
        };
        let (name, port) = match colon {
            Some(i) => (&b[..i], Some(&b[i + 1..])),
            None => (b, None),
        };
        // Entries are lower case, as nearly every Host header is: a plain
        // compare first (one `memcmp`), byte-wise case folding only if not.
        port.is_none_or(valid_port)
            && self
                .0
                .iter()
                .any(|s| s.as_bytes() == name || s.as_bytes().eq_ignore_ascii_case(name))
    }
}

impl HostSet {
    /// No host at all (what `--allowed-host` adds when not given).
    pub fn empty() -> HostSet {
        HostSet::List(Listed::new(Vec::new(), Vec::new(), false))
    }

    /// The default for a server bound to `bind` (SPEC §2.3): loopback names
    /// always; the bound address when it is a specific one; on a wildcard
    /// bind (`0.0.0.0` / `::`) any IP literal and the machine's own names
    /// (`machine`, see [`machine_names`]) — never an arbitrary DNS name.
    pub fn default_for(bind: IpAddr, machine: Option<&str>) -> HostSet {
        let bind = bind.to_canonical();
        let mut exact: Vec<Host> = LOOPBACK_NAMES
            .iter()
            .filter_map(|n| parse_host(n).map(|(h, _)| Host::owned(h)))
            .collect();
        let any_ip = bind.is_unspecified();
        if any_ip {
            for name in machine.map(machine_names).unwrap_or_default() {
                push_new(&mut exact, Host::Name(name));
            }
        } else {
            push_new(&mut exact, Host::Ip(bind));
        }
        HostSet::List(Listed::new(exact, Vec::new(), any_ip))
    }

    /// Compile a listed set; it replaces the default entirely (fail closed:
    /// what is not written is not served).
    ///
    /// # Errors
    /// The index of a malformed entry and what was expected.
    pub fn from_list(entries: &[String]) -> Result<HostSet, (usize, String)> {
        let (mut exact, mut suffix) = (Vec::new(), Vec::new());
        for (i, e) in entries.iter().enumerate() {
            let e = e.trim();
            if e == "*" {
                return Ok(HostSet::Any);
            }
            if let Some(rest) = e.strip_prefix("*.") {
                if valid_dns(rest) && rest.contains(|c: char| c.is_ascii_alphabetic()) {
                    suffix.push(format!(".{}", rest.to_ascii_lowercase()));
                    continue;
                }
            } else if let Ok(ip) = e.parse::<IpAddr>() {
                exact.push(Host::Ip(ip.to_canonical()));
                continue;
            } else if let Some((h, None)) = parse_host(e) {
                exact.push(Host::owned(h));
                continue;
            }
            let hint = if parse_host(e).is_some_and(|(_, p)| p.is_some()) {
                " (ports are ignored: give the name alone)"
            } else {
                ""
            };
            let msg = format!("{e:?} is not a host name (expected a name like dash.lan, an address, \"*.suffix\" or \"*\"){hint}");
            return Err((i, msg));
        }
        Ok(HostSet::List(Listed::new(exact, suffix, false)))
    }

    /// `self` and `more` together (`--allowed-host` on top of the policy's
    /// set or its default).
    pub fn union(self, more: &HostSet) -> HostSet {
        match (self, more) {
            (HostSet::Any, _) | (_, HostSet::Any) => HostSet::Any,
            (HostSet::List(mut a), HostSet::List(b)) => {
                for h in &b.exact {
                    push_new(&mut a.exact, h.clone());
                }
                for s in &b.suffix {
                    if !a.suffix.contains(s) {
                        a.suffix.push(s.clone());
                    }
                }
                HostSet::List(Listed::new(a.exact, a.suffix, a.any_ip || b.any_ip))
            }
        }
    }

    /// Whether a request with this Host header (port ignored) is served.
    pub fn allows(&self, host: Option<&str>) -> bool {
        match self {
            HostSet::Any => true,
            HostSet::List(l) => {
                let host = host.map(str::trim_ascii);
                host.is_some_and(|h| l.spelled.has(h)) || self.allows_parsed(host)
            }
        }
    }

    /// [`Self::allows`] without the spelled-out shortcut.
    fn allows_parsed(&self, host: Option<&str>) -> bool {
        let HostSet::List(l) = self else {
            return true;
        };
        let Some((h, _)) = host.and_then(parse_host) else {
            return false;
        };
        match h {
            HostRef::Ip(_) if l.any_ip => true,
            HostRef::Name(n) if l.suffix.iter().any(|s| ends_with_ci(n, s)) => true,
            _ => l.exact.iter().any(|e| e.is(h)),
        }
    }

    /// The entries, for `policy explain`.
    pub fn describe(&self) -> String {
        match self {
            HostSet::Any => "any host".to_owned(),
            HostSet::List(l) => {
                let all: Vec<String> = l
                    .any_ip
                    .then(|| "any IP address".to_owned())
                    .into_iter()
                    .chain(l.exact.iter().map(Host::to_string))
                    .chain(l.suffix.iter().map(|s| format!("*{s}")))
                    .collect();
                all.join(", ")
            }
        }
    }
}

fn push_new(v: &mut Vec<Host>, h: Host) {
    if !v.contains(&h) {
        v.push(h);
    }
}

/// The names a machine called `name` (its kernel host name) is reached
/// under: the name, its first label when it has several, and `LABEL.local`
/// (mDNS). Lower case; nothing for a name that is not a DNS name or is
/// `localhost` (the loopback names are there anyway).
pub fn machine_names(name: &str) -> Vec<String> {
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    if !valid_dns(&name) || name.parse::<Ipv4Addr>().is_ok() || name == "localhost" {
        return Vec::new();
    }
    let short = name.split('.').next().unwrap_or(&name).to_owned();
    let mut out = vec![name.clone()];
    if short != name {
        out.push(short.clone());
    }
    let local = format!("{short}.local");
    if !out.contains(&local) {
        out.push(local);
    }
    out
}

/// The `error` of a `host_not_allowed` refusal: the host refused and how
/// to allow it. Only a well-formed host (a DNS name or an address) is
/// echoed, so nothing but `[A-Za-z0-9._:-]` and brackets comes back.
pub fn refusal(host: Option<&str>) -> String {
    let Some(h) = host else {
        return "the request names no host (no Host header); send the name or address you connect to".to_owned();
    };
    match parse_host(h.trim_ascii()) {
        Some((h, _)) => {
            let h = Host::owned(h);
            format!("Host '{h}' is not allowed: add it with --allowed-host {h}, DASHGATE_ALLOWED_HOSTS or allowed_hosts in the policy")
        }
        None => "the Host header is not a host name (expected a DNS name or an address, with an optional port)".to_owned(),
    }
}

/// `name` ends with `suffix` (ASCII, case-insensitive) and is longer.
fn ends_with_ci(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len()
        && name.as_bytes()[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// An origin's parts: https?, host, port (default filled in).
fn parse_origin(o: &str) -> Option<(bool, HostRef<'_>, u16)> {
    let (scheme, rest) = o.trim().split_once("://")?;
    let https = if scheme.eq_ignore_ascii_case("https") {
        true
    } else if scheme.eq_ignore_ascii_case("http") {
        false
    } else {
        return None;
    };
    let (host, port) = parse_host(rest)?;
    Some((https, host, port.unwrap_or(if https { 443 } else { 80 })))
}

/// The compiled `allowed_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OriginSet {
    /// `same-host`: the request's own `scheme://host[:port]`.
    pub same_host: bool,
    /// Listed origins: https?, host, port.
    list: Vec<(bool, Host, u16)>,
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
                continue;
            }
            let (https, host, port) = parse_origin(e).ok_or_else(|| {
                (i, format!("{e:?} is not an origin (expected same-host or scheme://host[:port], such as https://dash.example.com)"))
            })?;
            set.list.push((https, Host::owned(host), port));
        }
        Ok(set)
    }

    /// Whether `origin` may make this request; `scheme` and `host` are the
    /// request's own. An absent Origin is a non-browser client: fine;
    /// `null` or garbage is refused.
    pub fn allows(&self, origin: Option<&str>, scheme: &str, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        let Some((https, oh, oport)) = parse_origin(origin) else {
            return false;
        };
        if self
            .list
            .iter()
            .any(|(s, h, p)| *s == https && *p == oport && h.is(oh))
        {
            return true;
        }
        if !self.same_host {
            return false;
        }
        let own_https = scheme.eq_ignore_ascii_case("https");
        let Some((rh, rport)) = host.and_then(|h| parse_host(h.trim_ascii())) else {
            return false;
        };
        let rport = rport.unwrap_or(if own_https { 443 } else { 80 });
        own_https == https && rport == oport && same(rh, oh)
    }

    /// The entries, for `policy explain`.
    pub fn describe(&self) -> String {
        let mut v: Vec<String> = Vec::new();
        if self.same_host {
            v.push("same-host".to_owned());
        }
        for (https, host, port) in &self.list {
            let scheme = if *https { "https" } else { "http" };
            v.push(format!("{scheme}://{host}:{port}"));
        }
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
    fn valid_ports_are_the_digit_strings_a_u16_parses() {
        for p in [
            "", "0", "1", "80", "65535", "65536", "99999", "123456", "+1", "08", "1a", "00000",
        ] {
            let digits = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
            let parses = digits && p.parse::<u16>().is_ok();
            assert_eq!(valid_port(p.as_bytes()), parses, "{p:?}");
            assert_eq!(parse_port(p), parses.then(|| p.parse().unwrap()), "{p:?}");
        }
    }

    /// The shortcut for hosts spelled as listed never admits a Host the
    /// parser would refuse, and misses none it would admit.
    #[test]
    fn spelled_shortcut_agrees_with_parsing() {
        let lists = [
            HostSet::default_for("127.0.0.1".parse().unwrap(), None),
            HostSet::default_for("::1".parse().unwrap(), None),
            HostSet::from_list(&["dash.lan".into(), "10.0.0.7".into(), "[fd00::7]".into()])
                .unwrap(),
            HostSet::default_for("0.0.0.0".parse().unwrap(), Some("dash.lan")),
        ];
        for set in &lists {
            for host in [
                "localhost",
                "LocalHost:1",
                "localhost:",
                "localhost:99999",
                "localhost:+1",
                "localhost:1:2",
                "127.0.0.1",
                "127.0.0.1:9119",
                "127.0.0.01",
                "[::1]",
                "[::1]:80",
                "[::1]:",
                "::1",
                "[0::1]",
                "dash.lan",
                "DASH.LAN:443",
                "x.dash.lan",
                "10.0.0.7",
                "10.0.0.7:",
                "[fd00::7]:8",
                "[FD00::7]",
                "fd00::7",
                "",
                " localhost ",
            ] {
                let h = Some(host.trim_ascii());
                assert_eq!(set.allows(h), set.allows_parsed(h), "{host} in {set:?}");
            }
        }
    }

    #[test]
    fn hosts() {
        let lo = HostSet::default_for("127.0.0.1".parse().unwrap(), None);
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
        let own = HostSet::default_for("192.168.1.2".parse().unwrap(), None);
        assert!(own.allows(Some("192.168.1.2:9119")) && own.allows(Some("localhost")));
        let listed = HostSet::from_list(&["dash.lan".into(), "*.ts.net".into()]).unwrap();
        assert!(listed.allows(Some("dash.lan")) && listed.allows(Some("box.tail1.ts.net")));
        assert!(!listed.allows(Some("ts.net")) && !listed.allows(Some("localhost")));
        assert!(HostSet::from_list(&["dash.lan:80".into()]).is_err());
    }

    /// The default on each kind of bind (SPEC §2.3), including the names a
    /// DNS-rebinding page arrives under, which only a listed name admits.
    #[test]
    fn default_sets_by_bind() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let loopback = ["localhost", "LOCALHOST:9119", "127.0.0.1:80", "[::1]:9119"];
        let rebinding = [
            "evil.example",
            "evil.example:9119",
            "rebind.test",
            "localhost.evil.example",
            "nas.lan",
            "127.0.0.1.nip.io",
            "2130706433",
        ];
        // Loopback bind: loopback names only.
        for bind in ["127.0.0.1", "::1"] {
            let set = HostSet::default_for(ip(bind), Some("box"));
            for ok in loopback {
                assert!(set.allows(Some(ok)), "{bind}: {ok}");
            }
            for bad in rebinding
                .iter()
                .chain(&["192.168.1.2", "127.0.0.2", "box", "box.local"])
            {
                assert!(!set.allows(Some(bad)), "{bind}: {bad}");
            }
            assert!(!set.allows(None), "{bind}: no Host");
        }
        // A specific address: it, plus loopback names.
        let own = HostSet::default_for(ip("192.168.1.2"), Some("box"));
        for ok in loopback.iter().chain(&["192.168.1.2", "192.168.1.2:9119"]) {
            assert!(own.allows(Some(ok)), "{ok}");
        }
        for bad in rebinding.iter().chain(&["192.168.1.3", "box", "[fd00::1]"]) {
            assert!(!own.allows(Some(bad)), "{bad}");
        }
        // Wildcard: any IP literal, loopback names, the machine's names.
        for bind in ["0.0.0.0", "::", "::ffff:0.0.0.0"] {
            let any = HostSet::default_for(ip(bind), Some("Box.example.com"));
            for ok in loopback.iter().chain(&[
                "127.0.0.2:8080",
                "192.168.1.2",
                "10.0.0.7:9119",
                "[fd00::7]:9119",
                "[::ffff:192.168.1.2]",
                "box.example.com",
                "BOX:9119",
                "box.local:9119",
            ]) {
                assert!(any.allows(Some(ok)), "{bind}: {ok}");
            }
            for bad in rebinding.iter().chain(&[
                "other.example.com",
                "example.com",
                "box.evil.example",
                "xbox",
                "fd00::7",
                "",
            ]) {
                assert!(!any.allows(Some(bad)), "{bind}: {bad}");
            }
            assert!(!any.allows(None), "{bind}: no Host");
            assert_ne!(any, HostSet::Any);
        }
        // No machine name known: still no DNS name but loopback's.
        let anon = HostSet::default_for(ip("0.0.0.0"), None);
        assert!(anon.allows(Some("10.1.2.3")) && !anon.allows(Some("box.local")));
        assert_eq!(
            anon.describe(),
            "any IP address, localhost, 127.0.0.1, [::1]"
        );
    }

    #[test]
    fn the_machine_is_reached_under_its_names() {
        assert_eq!(machine_names("nas"), ["nas", "nas.local"]);
        assert_eq!(machine_names("NAS.local\n"), ["nas.local", "nas"]);
        assert_eq!(
            machine_names("box.example.com."),
            ["box.example.com", "box", "box.local"]
        );
        for none in ["", "localhost", "(none)", "a b", "10.0.0.7", "-x"] {
            assert!(machine_names(none).is_empty(), "{none:?}");
        }
    }

    /// `--allowed-host` adds to the policy's set or its default.
    #[test]
    fn flags_add_to_the_set() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let extra = HostSet::from_list(&["nas.lan".into(), "*.ts.net".into()]).unwrap();
        let any = HostSet::default_for(ip("0.0.0.0"), None).union(&extra);
        for ok in [
            "nas.lan:9119",
            "mybox.tail1234.ts.net",
            "10.0.0.7",
            "localhost",
        ] {
            assert!(any.allows(Some(ok)), "{ok}");
        }
        assert!(!any.allows(Some("evil.example")) && !any.allows(Some("ts.net")));
        let lo = HostSet::default_for(ip("127.0.0.1"), None).union(&extra);
        assert!(lo.allows(Some("nas.lan")) && !lo.allows(Some("10.0.0.7")));
        let star = HostSet::from_list(&["*".into()]).unwrap();
        assert_eq!(lo.clone().union(&star), HostSet::Any);
        assert_eq!(HostSet::Any.union(&extra), HostSet::Any);
    }

    #[test]
    fn refusals_name_the_host_and_the_way_to_allow_it() {
        assert_eq!(
            refusal(Some("NAS.lan:9119")),
            "Host 'nas.lan' is not allowed: add it with --allowed-host nas.lan, DASHGATE_ALLOWED_HOSTS or allowed_hosts in the policy"
        );
        assert!(refusal(Some("[FD00::7]:80")).starts_with("Host '[fd00::7]' is not allowed"));
        for odd in [Some("<script>"), Some("a b"), Some("")] {
            let m = refusal(odd);
            assert!(!m.contains('<') && m.contains("not a host name"), "{m}");
        }
        assert!(refusal(None).contains("no Host header"));
    }

    #[test]
    fn dns_names() {
        for ok in ["a", "dash.lan", "my-box_1.ts.net", "A.B"] {
            assert!(valid_dns(ok), "{ok}");
        }
        for bad in ["", ".", "a..b", ".a", "a.", "-a", "a.-b", "a b", "a/b", "é"] {
            assert!(!valid_dns(bad), "{bad}");
        }
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
