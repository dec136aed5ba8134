//! The client IP (SPEC §2.2) and the canonical path (SPEC §2.3).

mod policy_util;

use std::net::IpAddr;

use dashgate::policy::{ForwardHeaders, Reason};
use policy_util::{compile, req, FactsExt};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn xff(lines: &[&str]) -> ForwardHeaders {
    ForwardHeaders {
        x_forwarded_for: lines.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

fn fwd(lines: &[&str]) -> ForwardHeaders {
    ForwardHeaders {
        forwarded: lines.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

const PROXIED: &str = r#"
version: 1
networks:
  proxies: [10.0.0.0/24, "fd00::/64"]
trusted_proxies: [loopback, proxies]
rules:
  - { name: lan, from: [private], action: allow }
  - { action: authenticate }
"#;

#[test]
fn headers_from_an_untrusted_peer_change_nothing() {
    let p = compile(PROXIED);
    let all = ForwardHeaders {
        x_forwarded_for: vec!["192.168.1.5".into(), "garbage,,".into()],
        forwarded: vec!["for=unknown".into()],
        x_forwarded_proto: Some("gopher".into()),
        x_forwarded_host: Some("evil.com".into()),
    };
    let v = p
        .client(ip("203.0.113.9"), &all)
        .expect("never an error from an untrusted peer");
    assert_eq!(v.client, ip("203.0.113.9"));
    assert!(!v.peer_trusted && v.proto.is_none() && v.host.is_none());
    // And so the decision is that of the peer, not of the claimed LAN address.
    let d = p.decide(&req("GET", "/").client("203.0.113.9"));
    assert_eq!(d.verdict, Err(Reason::NoCredential));
}

#[test]
fn walks_right_to_left_through_trusted_proxies() {
    let p = compile(PROXIED);
    let cases: &[(&str, &[&str], &str)] = &[
        // (peer, X-Forwarded-For lines, client)
        ("127.0.0.1", &["203.0.113.9"], "203.0.113.9"),
        (
            "127.0.0.1",
            &["198.51.100.1, 203.0.113.9, 10.0.0.5"],
            "203.0.113.9",
        ),
        (
            "::1",
            &["198.51.100.1", "203.0.113.9", "10.0.0.5, 10.0.0.6"],
            "203.0.113.9",
        ),
        ("::ffff:127.0.0.1", &["1.2.3.4 , 5.6.7.8"], "5.6.7.8"),
        // Every hop trusted: the leftmost.
        ("127.0.0.1", &["10.0.0.9, 10.0.0.5"], "10.0.0.9"),
        ("127.0.0.1", &["[2001:db8::7]:1234, fd00::1"], "2001:db8::7"),
        ("127.0.0.1", &["::ffff:192.0.2.1"], "192.0.2.1"),
    ];
    for (peer, lines, want) in cases {
        let v = p.client(ip(peer), &xff(lines)).unwrap();
        assert_eq!(v.client, ip(want), "{peer} {lines:?}");
        assert!(v.peer_trusted);
    }
    // No forwarding header from a trusted peer: the peer itself.
    assert_eq!(
        p.client(ip("10.0.0.5"), &ForwardHeaders::default())
            .unwrap()
            .client,
        ip("10.0.0.5")
    );
}

#[test]
fn forwarded_header_rfc7239() {
    let p = compile(PROXIED);
    let cases: &[(&[&str], &str)] = &[
        (&[r#"for="[2001:db8::1]:4711""#], "2001:db8::1"),
        (&["for=192.0.2.43:8080"], "192.0.2.43"),
        (
            &[r#"for=192.0.2.43;proto=https;by=10.0.0.1, for="10.0.0.5""#],
            "192.0.2.43",
        ),
        (&["For=198.51.100.7", "for=10.0.0.2"], "198.51.100.7"),
    ];
    for (lines, want) in cases {
        assert_eq!(
            p.client(ip("127.0.0.1"), &fwd(lines)).unwrap().client,
            ip(want),
            "{lines:?}"
        );
    }
    // Both present and naming the same client: fine.
    let agree = ForwardHeaders {
        forwarded: vec!["for=2.2.2.2".into()],
        ..xff(&["2.2.2.2"])
    };
    assert_eq!(
        p.client(ip("127.0.0.1"), &agree).unwrap().client,
        ip("2.2.2.2")
    );
    // Naming different clients: a proxy that writes one header may pass the
    // client's own copy of the other through, so neither can be believed.
    let disagree = ForwardHeaders {
        forwarded: vec!["for=1.1.1.1".into()],
        ..xff(&["2.2.2.2"])
    };
    assert!(p.client(ip("127.0.0.1"), &disagree).is_err());
}

#[test]
fn a_malformed_entry_from_a_trusted_proxy_is_an_error() {
    let p = compile(PROXIED);
    let bad: Vec<ForwardHeaders> = vec![
        xff(&["1.2.3.4,,5.6.7.8"]),
        xff(&[""]),
        xff(&["not-an-ip"]),
        xff(&["1.2.3.4", "999.1.1.1"]),
        fwd(&["for=unknown"]),
        fwd(&["for=_hidden"]),
        fwd(&[r#"for="[2001:db8::1"#]),
        ForwardHeaders {
            x_forwarded_proto: Some("ftp".into()),
            ..Default::default()
        },
        ForwardHeaders {
            x_forwarded_host: Some("".into()),
            ..Default::default()
        },
    ];
    for h in bad {
        assert_eq!(
            p.client(ip("127.0.0.1"), &h),
            Err(Reason::BadForwardingHeader),
            "{h:?}"
        );
        assert!(p.client_detailed(ip("127.0.0.1"), &h).is_err());
        // The same from an untrusted peer is simply ignored.
        assert!(p.client(ip("203.0.113.9"), &h).is_ok(), "{h:?}");
    }
    assert_eq!(Reason::BadForwardingHeader.status(), 400);
}

#[test]
fn proto_and_host_pass_through_from_a_trusted_proxy() {
    let p = compile(PROXIED);
    let h = ForwardHeaders {
        x_forwarded_proto: Some("HTTPS".into()),
        x_forwarded_host: Some("dash.example.com".into()),
        ..xff(&["203.0.113.9"])
    };
    let v = p.client(ip("10.0.0.1"), &h).unwrap();
    assert_eq!(
        (v.proto.as_deref(), v.host.as_deref()),
        (Some("https"), Some("dash.example.com"))
    );
    assert!(p.is_trusted_proxy(ip("::ffff:10.0.0.200")));
    assert!(!p.is_trusted_proxy(ip("10.0.1.1")));
}

#[test]
fn mapped_ipv6_matches_an_ipv4_network() {
    let p =
        compile("version: 1\nrules:\n  - { name: hit, from: [192.168.0.0/16], action: allow }\n");
    let d = p.decide(&req("GET", "/").client("::ffff:192.168.1.5"));
    assert_eq!(d.rule.as_deref(), Some("hit"));
    // And as a peer walked through client().
    let v = p
        .client(ip("::ffff:192.168.1.5"), &ForwardHeaders::default())
        .unwrap();
    assert_eq!(v.client, ip("192.168.1.5"));
}

#[test]
fn non_canonical_paths_are_refused_before_rules() {
    let p = compile("version: 1\nrules:\n  - { action: allow }\n");
    for path in [
        "/a/./b",
        "/.",
        "/a/..",
        "/../etc/passwd",
        "//",
        "/a//b",
        "//a",
        "/a%2Fb",
        "/a%2fb",
        "/a%5Cb",
        "/a%5cb",
        "/a\\b",
        "/a\0b",
        "/a%00b",
        "/%2e%2e/x",
        "/%2E",
        "/a/%2e/b",
        "/%61pi/ws",
        "/a%zz",
        "a",
        "",
        "/a%",
    ] {
        let d = p.decide(&req("GET", path));
        assert_eq!(d.verdict, Err(Reason::NonCanonicalPath), "{path:?}");
        assert_eq!((d.rule, d.action), (None, None), "{path:?}");
    }
    for path in ["/", "/api/", "/a%20b", "/a%2Cb", "/x?y=/../..", "/x#//"] {
        assert!(p.decide(&req("GET", path)).verdict.is_ok(), "{path:?}");
    }
    assert_eq!(Reason::NonCanonicalPath.status(), 400);
}

#[test]
fn the_query_and_the_fragment_never_match_a_rule() {
    let p = compile(
        "version: 1\nrules:\n  - { name: open, paths: [/open, \"/pub/**\"], action: allow }\n  - { name: rest, action: deny }\n",
    );
    let rule = |path: &str| p.decide(&req("GET", path)).rule.map(|r| r.to_string());
    assert_eq!(rule("/open?x=1").as_deref(), Some("open"));
    assert_eq!(rule("/open#frag").as_deref(), Some("open"));
    assert_eq!(rule("/secret?/open").as_deref(), Some("rest"));
    assert_eq!(rule("/secret?next=/pub/x").as_deref(), Some("rest"));
    assert_eq!(rule("/secret#/pub/x").as_deref(), Some("rest"));
    // A glob cannot even name a query.
    let ctx = dashgate::policy::LoadContext::new(ip("127.0.0.1"));
    let e = dashgate::policy::CompiledPolicy::from_str(
        "version: 1\nrules:\n  - { paths: [\"/a?x=1\"], action: allow }\n",
        "q.yaml",
        &ctx,
    )
    .unwrap_err();
    assert_eq!((e.line, e.col), (3, 15), "{e}");
}
