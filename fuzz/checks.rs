//! What each fuzz target runs on one input, and the invariants it asserts.
//!
//! Shared, by `#[path]`, between the cargo-fuzz targets in
//! `fuzz_targets/` (nightly, libFuzzer) and the stable replay test
//! `tests/fuzz_regressions.rs`, which runs every input kept in
//! `fuzz/corpus/regressions/TARGET/` through the same function: a crash
//! found once stays fixed under `make test`. A violated invariant panics.
//!
//! Input formats are plain text where they can be, so a kept input reads
//! as what it is (docs/fuzzing.md):
//! * `policy_load`: the bytes are the policy file.
//! * `gate_read`: byte 0 picks the peer and the policy; then a request
//!   head: `METHOD TARGET` on the first line, `name: value` lines after.
//! * `client_ip`: byte 0 picks the peer; then lines `X:` (an
//!   X-Forwarded-For line), `F:` (Forwarded), `P:` (X-Forwarded-Proto),
//!   `H:` (X-Forwarded-Host).
//! * `chat_control`: the bytes are one text frame of the chat socket.

#![allow(dead_code)] // each fuzz target uses one function

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use dashgate::chat::ChatConfig;
use dashgate::gate::{Head, Intake};
use dashgate::policy::{
    non_canonical, CompiledPolicy, Credential, Facts, ForwardHeaders, LoadContext, Principal,
    Reason, Transport,
};
use dashgate::routes::chat::{control_message, ControlMsg};
use dashgate::state::{AppState, Config, PolicySource, StartupToken, State};

/// The startup token of the `gate_read` servers (`Authorization: Bearer t`).
pub const TOKEN: &str = "t";

fn localhost() -> LoadContext {
    LoadContext::new(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

// ---------------------------------------------------------------- policy_load

/// The policy loader as `dashgate policy check FILE` runs it: text (the
/// file as read: UTF-8 only, `read_to_string` refuses the rest) compiled
/// under a loopback bind. An error names a place in the file; a policy
/// that compiles decides and explains a few requests alike.
pub fn policy_load(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match CompiledPolicy::from_str(text, "fuzz.yaml", &localhost()) {
        Err(e) => {
            assert!(!e.message.is_empty(), "an error without a message: {e:?}");
            assert!(e.line >= 1 && e.col >= 1, "no place: {e:?}");
            if e.file == "fuzz.yaml" {
                // Line numbers count from 1 and may name the line after
                // the last: an error at the end (libyaml's end of a file
                // without a final newline is one line on, so a file that
                // is one comment has `missing field version` at 2:1).
                // YAML breaks lines at `\r\n`, `\n` and a lone `\r` alike.
                let lines = text.replace("\r\n", "\n").matches(['\n', '\r']).count() + 2;
                assert!(e.line <= lines, "line {} of {lines}: {e:?}", e.line);
            } else {
                assert!(e.file.starts_with("preset:"), "an error in {e:?}");
            }
        }
        Ok(policy) => {
            assert!(policy.summary().rules >= 1, "a policy without rules");
            let _ = policy.effective();
            for facts in sample_facts() {
                let decision = policy.decide(&facts);
                let explained = policy.explain(&facts);
                assert_eq!(
                    decision.verdict.is_ok(),
                    explained.verdict.allowed,
                    "decide and explain disagree on {facts:?}"
                );
            }
        }
    }
}

fn sample_facts() -> Vec<Facts> {
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let far = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    let base = Facts {
        peer: local,
        client: local,
        method: "GET".into(),
        path: "/api/status".into(),
        host: Some("127.0.0.1:9119".into()),
        origin: None,
        scheme: "http".into(),
        transport: Transport::Http,
        credential: Credential::None,
    };
    vec![
        base.clone(),
        Facts {
            client: far,
            peer: far,
            method: "POST".into(),
            path: "/api/login".into(),
            credential: Credential::Invalid,
            ..base.clone()
        },
        Facts {
            path: "/api/ws?session=a".into(),
            origin: Some("http://127.0.0.1:9119".into()),
            transport: Transport::Ws,
            credential: Credential::Valid(Principal::StartupToken),
            ..base.clone()
        },
        Facts {
            path: "/assets/a/../b".into(),
            ..base
        },
    ]
}

// ------------------------------------------------------------------ gate_read

/// The policies `gate_read` decides under (byte 0, bits 2–3).
const GATE_POLICIES: [&str; 4] = [
    "preset:secure",
    "preset:insecure",
    "preset:lan",
    // A trusted proxy, so forwarding headers are read and believed.
    "version: 1\n\
     extends: secure\n\
     trusted_proxies: [10.0.0.0/8]\n\
     allowed_hosts: [127.0.0.1, dash.example]\n\
     rules:\n\
     \x20 - name: the proxy's clients from the office\n\
     \x20   from: [192.0.2.0/24]\n\
     \x20   action: allow\n",
];

/// The TCP peers `gate_read` reads requests from (byte 0, bits 0–1).
const GATE_PEERS: [&str; 4] = ["127.0.0.1", "10.0.0.7", "192.0.2.50", "[::ffff:10.1.1.1]"];

fn gate_states() -> &'static [AppState; 4] {
    static STATES: OnceLock<[AppState; 4]> = OnceLock::new();
    STATES.get_or_init(|| {
        GATE_POLICIES.map(|p| {
            let policy = match p.strip_prefix("preset:") {
                Some(name) => CompiledPolicy::preset(name, &localhost()),
                None => CompiledPolicy::from_str(p, "proxy.yaml", &localhost()),
            }
            .expect("the gate_read policies compile");
            State::new(
                Config {
                    bind: "127.0.0.1:9119".parse().unwrap(),
                    static_dir: PathBuf::from("/nonexistent"),
                    policy_source: PolicySource::Preset("secure".into()),
                    policy_context: localhost(),
                    startup_token: Some(StartupToken::new(TOKEN)),
                    auth_window: Duration::from_secs(60),
                    max_sockets: 16,
                    chat: ChatConfig::new(vec!["/bin/true".into()]),
                    upstream: None,
                },
                policy,
            )
        })
    })
}

/// A request head as the server's accept loop hands it to the gate, read
/// and decided by `Intake::check`. What the gate lets in has a canonical
/// path (no `.`/`..` segment, spelled or %-encoded; no `//`, `\`, `%2F`),
/// the target's own path, a client that is the peer unless the peer is a
/// trusted proxy, and the verdict `decide` gives its facts.
pub fn gate_read(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let state = &gate_states()[usize::from(pick >> 2) & 3];
    let peer: SocketAddr = format!("{}:40000", GATE_PEERS[usize::from(pick) & 3])
        .parse()
        .unwrap();
    let mut lines = rest.split(|&b| b == b'\n');
    let Some(first) = lines.next() else {
        return;
    };
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let Some(sp) = first.iter().position(|&b| b == b' ') else {
        return;
    };
    // hyper parses the method and target this way before anyone sees them.
    let Ok(method) = http::Method::from_bytes(&first[..sp]) else {
        return;
    };
    let Ok(uri) = http::Uri::try_from(&first[sp + 1..]) else {
        return;
    };
    let mut req = http::Request::builder().method(method).uri(uri);
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        req = req.header(name, value);
    }
    let Ok(req) = req.body(()) else {
        return;
    };
    let intake = Intake::check(state, Head::of(peer, &req));
    let live = state.policy();
    let policy = &live.compiled;
    match intake.decision() {
        Ok(admission) => {
            let facts = admission.facts();
            let path = req.uri().path();
            assert_eq!(facts.path, path, "the facts' path is the target's");
            assert_canonical(path);
            let peer_ip = peer.ip().to_canonical();
            assert_eq!(facts.peer, peer_ip, "the peer folded to IPv4");
            if !policy.is_trusted_proxy(peer_ip) {
                assert_eq!(facts.client, peer_ip, "an untrusted peer is the client");
            }
            assert_eq!(
                policy.decide(facts).verdict,
                Ok(admission.principal.clone()),
                "the gate let in what decide refuses: {facts:?}"
            );
        }
        Err(denied) => {
            if denied.reason == Reason::NonCanonicalPath {
                assert!(non_canonical(req.uri().path()).is_some());
            }
        }
    }
}

/// A path the gate accepts has one spelling: what the router matches is
/// what the rules matched.
fn assert_canonical(path: &str) {
    assert!(path.starts_with('/'), "{path:?}");
    assert!(!path.contains('\\') && !path.contains("//"), "{path:?}");
    let segments: Vec<&str> = path[1..].split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        assert!(!seg.is_empty() || i == last, "empty segment in {path:?}");
        let decoded = percent_decode(seg.as_bytes())
            .unwrap_or_else(|| panic!("a malformed %-escape accepted in {path:?}"));
        assert!(
            decoded != b"." && decoded != b"..",
            "a dot segment accepted: {path:?}"
        );
        assert!(
            !decoded.contains(&b'/') && !decoded.contains(&b'\\') && !decoded.contains(&0),
            "an encoded separator accepted: {path:?}"
        );
        // An encoded control character other than NUL (`%0A`) is allowed
        // (SPEC §2.3 refuses raw ones): it is one spelling of one segment.
        assert!(
            !seg.bytes().any(|b| b.is_ascii_control()),
            "a raw control character accepted: {path:?}"
        );
    }
}

/// Percent-decode, written here rather than borrowed so the check does not
/// trust the code it checks; `None` for a malformed escape.
fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    Some(out)
}

// ------------------------------------------------------------------ client_ip

/// `client_ip`'s trusted proxies.
const PROXY_POLICY: &str = "version: 1\n\
     trusted_proxies: [loopback, 10.0.0.0/8, 'fd00::/8']\n\
     rules:\n\
     \x20 - action: allow\n";

/// The TCP peers `client_ip` walks from (byte 0, low 3 bits): trusted
/// and not, IPv4, IPv6 and IPv4-mapped.
const CLIENT_PEERS: [&str; 8] = [
    "127.0.0.1",
    "10.1.2.3",
    "192.0.2.1",
    "::1",
    "fd00::5",
    "2001:db8::1",
    "::ffff:10.0.0.1",
    "::ffff:192.0.2.9",
];

fn proxy_policy() -> &'static CompiledPolicy {
    static POLICY: OnceLock<CompiledPolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        CompiledPolicy::from_str(PROXY_POLICY, "proxy.yaml", &localhost())
            .expect("the client_ip policy compiles")
    })
}

/// `CompiledPolicy::client(peer, &ForwardHeaders)` (SPEC §2.2), with the
/// headers as the gate reads them (each line lossy UTF-8; the single-valued
/// ones joined with ", "). The client found is the peer, or an address
/// written in one of the headers; an untrusted peer's headers change
/// nothing; a believed proto is `http`/`https` and a believed host one
/// name.
pub fn client_ip(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let peer: IpAddr = CLIENT_PEERS[usize::from(pick) & 7].parse().unwrap();
    let mut fwd = ForwardHeaders::default();
    let (mut proto, mut host) = (Vec::new(), Vec::new());
    for line in rest.split(|&b| b == b'\n') {
        if line.len() < 2 || line[1] != b':' {
            continue;
        }
        let value = String::from_utf8_lossy(line[2..].trim_ascii()).into_owned();
        match line[0] {
            b'X' => fwd.x_forwarded_for.push(value),
            b'F' => fwd.forwarded.push(value),
            b'P' => proto.push(value),
            b'H' => host.push(value),
            _ => {}
        }
    }
    fwd.x_forwarded_proto = (!proto.is_empty()).then(|| proto.join(", "));
    fwd.x_forwarded_host = (!host.is_empty()).then(|| host.join(", "));

    let policy = proxy_policy();
    let canonical_peer = peer.to_canonical();
    let trusted = policy.is_trusted_proxy(canonical_peer);
    let Ok(view) = policy.client(peer, &fwd) else {
        assert!(trusted, "an untrusted peer's headers refused: {fwd:?}");
        return;
    };
    assert_eq!(view.peer_trusted, trusted);
    if !trusted {
        assert_eq!(view.client, canonical_peer, "{fwd:?}");
        assert_eq!((view.proto, view.host), (None, None));
        return;
    }
    if view.client != canonical_peer {
        let written = fwd.x_forwarded_for.iter().chain(&fwd.forwarded);
        let candidates: Vec<IpAddr> = written.flat_map(|l| addresses_in(l)).collect();
        assert!(
            candidates.contains(&view.client),
            "client {} is neither the peer nor in {fwd:?}",
            view.client
        );
    }
    if fwd.x_forwarded_for.is_empty() && fwd.forwarded.is_empty() {
        assert_eq!(view.client, canonical_peer);
    }
    assert!(view.client.to_canonical() == view.client, "not folded");
    if let Some(p) = &view.proto {
        assert!(p == "http" || p == "https", "proto {p:?}");
    }
    if let Some(h) = &view.host {
        assert!(!h.is_empty() && !h.contains([',', ' ', '/']), "host {h:?}");
    }
}

/// Every IP address written in `line`, found without the parser under
/// test: each run of address characters, whole or without a `:port`.
fn addresses_in(line: &str) -> Vec<IpAddr> {
    let mut out = Vec::new();
    let runs = line.split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.'));
    for run in runs.filter(|r| !r.is_empty()) {
        let mut tries = vec![run];
        if let Some((addr, _port)) = run.rsplit_once(':') {
            tries.push(addr);
        }
        out.extend(
            tries
                .into_iter()
                .filter_map(|t| t.parse::<IpAddr>().ok())
                .map(|ip| ip.to_canonical()),
        );
    }
    out
}

// --------------------------------------------------------------- chat_control

/// One client text frame of the chat socket (`/api/ws`), parsed as its
/// input half does. A resize let through is in range; a refusal is a
/// 1007 close whose reason fits a close frame.
pub fn chat_control(data: &[u8]) {
    match control_message(data) {
        Ok(ControlMsg::Resize { cols, rows }) => {
            assert!((1..=1000).contains(&cols) && (1..=1000).contains(&rows));
        }
        Ok(ControlMsg::Input { data: text }) => {
            // Keystrokes were JSON text, so they are UTF-8 and no longer
            // than the frame that carried them.
            assert!(text.len() <= data.len());
        }
        Err(close) => {
            assert_eq!(close.code, 1007);
            assert!(close.reason.len() <= 123, "{:?}", close.reason);
            assert!(!close.reason.is_empty());
        }
    }
}
