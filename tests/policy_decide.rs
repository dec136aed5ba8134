//! Table tests of `decide`: for every rule field a matching and a missing
//! case, first-match order, default deny, `extends` order, every built-in
//! network (IPv4 and IPv6), and the credential outcomes of each action.

mod policy_util;

use dashgate::policy::{Action, Credential, Principal, Reason, Transport};
use policy_util::{compile, req, verdict_of, FactsExt};

#[test]
fn every_rule_field_matches_and_misses() {
    let p = compile(
        r#"
version: 1
networks:
  home: [192.168.1.0/24]
rules:
  - { name: from,      from: [home],           paths: [/t/from],      action: allow }
  - { name: not_from,  not_from: [home],       paths: [/t/not_from],  action: allow }
  - { name: paths,     paths: ["/t/p/*", /t/exact], action: allow }
  - { name: methods,   methods: [POST, PUT],   paths: [/t/methods],   action: allow }
  - { name: transport, transport: ws,          paths: [/t/transport], action: allow }
  - { paths: [/t/unnamed], action: allow }
  - { name: catch-all, action: deny }
"#,
    );
    let home = "192.168.1.20";
    let away = "203.0.113.9";
    // (case, facts, expected rule)
    let cases = [
        ("from matches", req("GET", "/t/from").client(home), "from"),
        (
            "from misses",
            req("GET", "/t/from").client(away),
            "catch-all",
        ),
        (
            "not_from matches",
            req("GET", "/t/not_from").client(away),
            "not_from",
        ),
        (
            "not_from misses",
            req("GET", "/t/not_from").client(home),
            "catch-all",
        ),
        ("paths * matches", req("GET", "/t/p/x"), "paths"),
        (
            "paths * one segment only",
            req("GET", "/t/p/x/y"),
            "catch-all",
        ),
        ("paths exact matches", req("GET", "/t/exact"), "paths"),
        ("paths exact misses", req("GET", "/t/exact2"), "catch-all"),
        ("methods matches", req("PUT", "/t/methods"), "methods"),
        ("methods misses", req("GET", "/t/methods"), "catch-all"),
        (
            "transport matches",
            req("GET", "/t/transport").ws(),
            "transport",
        ),
        ("transport misses", req("GET", "/t/transport"), "catch-all"),
        (
            "name defaults to rule N",
            req("GET", "/t/unnamed"),
            "rule 6",
        ),
    ];
    for (case, facts, rule) in cases {
        let d = p.decide(&facts);
        assert_eq!(d.rule.as_deref(), Some(rule), "{case}: {d:?}");
    }
}

#[test]
fn actions_and_credentials() {
    let p = compile(
        "version: 1\nrules:\n  - { paths: [/open], action: allow }\n  - { paths: [/shut], action: deny }\n  - { action: authenticate }\n",
    );
    let alice = Principal::User {
        name: "alice".into(),
    };
    let valid = Credential::Valid(alice.clone());
    let cases = [
        (
            "/open",
            Credential::None,
            Ok(Principal::Anonymous),
            Action::Allow,
        ),
        (
            "/open",
            Credential::Invalid,
            Ok(Principal::Anonymous),
            Action::Allow,
        ),
        ("/open", valid.clone(), Ok(alice.clone()), Action::Allow),
        ("/shut", valid.clone(), Err(Reason::RuleDeny), Action::Deny),
        (
            "/shut",
            Credential::None,
            Err(Reason::RuleDeny),
            Action::Deny,
        ),
        (
            "/x",
            Credential::None,
            Err(Reason::NoCredential),
            Action::Authenticate,
        ),
        (
            "/x",
            Credential::Invalid,
            Err(Reason::BadCredential),
            Action::Authenticate,
        ),
        ("/x", valid, Ok(alice), Action::Authenticate),
    ];
    for (path, cred, verdict, action) in cases {
        let d = p.decide(&req("GET", path).cred(cred.clone()));
        assert_eq!(d.verdict, verdict, "{path} {cred:?}");
        assert_eq!(d.action, Some(action), "{path} {cred:?}");
    }
    assert_eq!(Reason::NoCredential.status(), 401);
    assert_eq!(Reason::RuleDeny.status(), 403);
}

#[test]
fn first_match_wins_and_no_match_denies() {
    let p = compile(
        "version: 1\nrules:\n  - { name: a, paths: [/x], action: deny }\n  - { name: b, paths: [/x, /y], action: allow }\n",
    );
    assert_eq!(p.decide(&req("GET", "/x")).rule.as_deref(), Some("a"));
    assert_eq!(p.decide(&req("GET", "/y")).rule.as_deref(), Some("b"));
    let d = p.decide(&req("GET", "/z"));
    assert_eq!(
        (d.verdict, d.rule, d.action),
        (Err(Reason::NoRuleMatched), None, None)
    );
}

#[test]
fn extends_puts_the_preset_rules_after_the_files() {
    let p = compile(
        "version: 1\nextends: secure\nrules:\n  - { name: mine, paths: [/healthz], action: deny }\n",
    );
    // The file's own rule shadows the preset's public health check.
    assert_eq!(
        p.decide(&req("GET", "/healthz")).rule.as_deref(),
        Some("mine")
    );
    // The preset's rules follow, in their order.
    let d = p.decide(&req("GET", "/login"));
    assert_eq!(d.rule.as_deref(), Some("sign-in page is public"));
    let d = p.decide(&req("GET", "/api/status"));
    assert_eq!(
        d.rule.as_deref(),
        Some("everything else needs a credential")
    );
    let names: Vec<String> = p
        .explain(&req("GET", "/"))
        .rules
        .iter()
        .map(|r| r.name.clone())
        .collect();
    assert_eq!(names[0], "mine");
    assert_eq!(names.len(), 1 + 4);
    let summary = p.summary();
    assert_eq!(
        (summary.rules, summary.preset.as_deref()),
        (5, Some("secure"))
    );
    // A preset that extends a preset: lan = its rule, then secure's.
    let lan = compile("version: 1\nextends: lan\nrules:\n  - { paths: [/x], action: deny }\n");
    assert_eq!(lan.summary().rules, 1 + 1 + 4);
}

#[test]
fn every_builtin_network_ipv4_and_ipv6() {
    let cases: &[(&str, &[&str], &[&str])] = &[
        (
            "loopback",
            &["127.0.0.1", "127.255.255.254", "::1", "::ffff:127.0.0.1"],
            &["128.0.0.1", "::2", "10.0.0.1"],
        ),
        (
            "private",
            &[
                "10.0.0.1",
                "172.16.0.1",
                "172.31.255.255",
                "192.168.1.5",
                "fc00::1",
                "fd12:3456::1",
                "::ffff:192.168.1.5",
            ],
            &[
                "172.32.0.1",
                "11.0.0.1",
                "192.169.0.1",
                "fe00::1",
                "2001:db8::1",
            ],
        ),
        (
            "link-local",
            &["169.254.1.1", "fe80::1", "febf::1"],
            &["169.255.0.1", "fec0::1"],
        ),
        (
            "cgnat",
            &["100.64.0.1", "100.127.255.255"],
            &["100.128.0.1", "100.63.255.255", "fd7a:115c:a1e0::1"],
        ),
        ("any", &["0.0.0.0", "8.8.8.8", "::", "2001:db8::1"], &[]),
    ];
    for (net, inside, outside) in cases {
        let p = compile(&format!(
            "version: 1\nrules:\n  - {{ name: hit, from: [{net}], action: allow }}\n"
        ));
        for ip in *inside {
            assert_eq!(
                p.decide(&req("GET", "/").client(ip)).rule.as_deref(),
                Some("hit"),
                "{ip} in {net}"
            );
        }
        for ip in *outside {
            assert_eq!(
                p.decide(&req("GET", "/").client(ip)).rule,
                None,
                "{ip} not in {net}"
            );
        }
    }
}

#[test]
fn named_networks_cidrs_and_mapped_addresses() {
    let p = compile(
        r#"
version: 1
networks:
  home: [192.168.1.0/24, "fd12:3456::/48", 10.0.0.7]
  mapped: ["::ffff:172.20.0.0/112"]
  both: [home, mapped]
rules:
  - { name: hit, from: [both, "2001:db8::/32"], action: allow }
"#,
    );
    for ip in [
        "192.168.1.200",
        "fd12:3456::9",
        "10.0.0.7",
        "172.20.3.4",
        "::ffff:172.20.3.4",
        "2001:db8::5",
    ] {
        assert_eq!(
            p.decide(&req("GET", "/").client(ip)).rule.as_deref(),
            Some("hit"),
            "{ip}"
        );
    }
    for ip in ["192.168.2.1", "10.0.0.8", "172.21.0.1", "fd12:3457::1"] {
        assert_eq!(p.decide(&req("GET", "/").client(ip)).rule, None, "{ip}");
    }
}

#[test]
fn pre_rule_checks_run_in_order_for_every_transport() {
    let p = compile("version: 1\nrules:\n  - { action: allow }\n");
    let evil = Some("http://evil.example");
    let cases = [
        (
            "bad path beats bad host",
            req("GET", "/a/../b").host(Some("evil.com")),
            Err(Reason::NonCanonicalPath),
        ),
        (
            "bad host beats bad origin",
            req("POST", "/a").host(Some("evil.com")).origin(evil),
            Err(Reason::HostNotAllowed),
        ),
        (
            "missing host",
            req("GET", "/a").host(None),
            Err(Reason::HostNotAllowed),
        ),
        (
            "foreign origin on POST",
            req("POST", "/a").origin(evil),
            Err(Reason::OriginNotAllowed),
        ),
        (
            "foreign origin on ws",
            req("GET", "/a").ws().origin(evil),
            Err(Reason::OriginNotAllowed),
        ),
        (
            "null origin on DELETE",
            req("DELETE", "/a").origin(Some("null")),
            Err(Reason::OriginNotAllowed),
        ),
        (
            "foreign origin on GET is not checked",
            req("GET", "/a").origin(evil),
            Ok(Principal::Anonymous),
        ),
        (
            "same-host origin on ws",
            req("GET", "/a").ws().origin(Some("http://localhost:9119")),
            Ok(Principal::Anonymous),
        ),
        (
            "absent origin on PUT",
            req("PUT", "/a"),
            Ok(Principal::Anonymous),
        ),
    ];
    for (case, facts, want) in cases {
        let d = p.decide(&facts);
        assert_eq!(d.verdict, want, "{case}");
        if d.verdict.is_err() {
            assert_eq!((d.rule, d.action), (None, None), "{case}");
        }
    }
    // The insecure preset allows everything, but not past Host and Origin.
    let insecure = policy_util::preset("insecure");
    let d = insecure.decide(&req("GET", "/api/ws").ws().origin(evil));
    assert_eq!(d.verdict, Err(Reason::OriginNotAllowed));
    assert_eq!(
        insecure
            .decide(&req("GET", "/").host(Some("rebind.evil.com")))
            .verdict,
        Err(Reason::HostNotAllowed)
    );
}

#[test]
fn allowed_hosts_and_origins_from_the_file() {
    let p = compile(
        "version: 1\nallowed_hosts: [dash.lan, \"*.ts.net\"]\nallowed_origins: [same-host, \"https://app.example.com\"]\nrules:\n  - { action: allow }\n",
    );
    let ok = |f| p.decide(&f).verdict.is_ok();
    assert!(ok(req("GET", "/").host(Some("DASH.lan:9119"))));
    assert!(ok(req("GET", "/").host(Some("box.tail.ts.net"))));
    // A listed set replaces the default entirely: no loopback names.
    assert!(!ok(req("GET", "/").host(Some("localhost"))));
    let ws = || req("GET", "/api/ws").ws().host(Some("dash.lan"));
    assert!(ok(ws().origin(Some("https://app.example.com"))));
    assert!(ok(ws().origin(Some("http://dash.lan:80"))));
    assert!(!ok(ws().origin(Some("https://dash.lan"))));
    // Bound to 0.0.0.0 without a list: any IP literal and the loopback
    // names, never a DNS name (DNS rebinding) nor a missing Host.
    let any = policy_util::compile_bound("version: 1\nrules:\n  - { action: allow }\n", "0.0.0.0");
    for ok in ["192.168.1.2:9119", "[fd00::7]", "localhost:9119"] {
        assert!(
            any.decide(&req("GET", "/").host(Some(ok))).verdict.is_ok(),
            "{ok}"
        );
    }
    assert_eq!(
        any.decide(&req("GET", "/").host(Some("whatever.example")))
            .verdict,
        Err(Reason::HostNotAllowed)
    );
    assert!(any.decide(&req("GET", "/").host(None)).verdict.is_err());
    let own =
        policy_util::compile_bound("version: 1\nrules:\n  - { action: allow }\n", "192.168.1.2");
    assert!(own
        .decide(&req("GET", "/").host(Some("192.168.1.2:9119")))
        .verdict
        .is_ok());
    assert!(own
        .decide(&req("GET", "/").host(Some("127.0.0.1")))
        .verdict
        .is_ok());
    assert!(own
        .decide(&req("GET", "/").host(Some("192.168.1.3")))
        .verdict
        .is_err());
}

#[test]
fn presets_decide_as_documented() {
    let secure = policy_util::preset("secure");
    let lan = policy_util::preset("lan");
    let away = "203.0.113.9";
    let cases = [
        (
            &secure,
            req("GET", "/healthz").client(away),
            Ok(Principal::Anonymous),
        ),
        (
            &secure,
            req("GET", "/assets/app.js").client(away),
            Ok(Principal::Anonymous),
        ),
        (
            &secure,
            req("POST", "/api/login").client(away),
            Ok(Principal::Anonymous),
        ),
        (
            &secure,
            req("GET", "/api/ws").ws().client("127.0.0.1"),
            Err(Reason::NoCredential),
        ),
        (
            &secure,
            req("POST", "/healthz").client(away),
            Err(Reason::NoCredential),
        ),
        (
            &lan,
            req("GET", "/api/ws").ws().client("192.168.1.20"),
            Ok(Principal::Anonymous),
        ),
        (
            &lan,
            req("GET", "/api/ws").ws().client("fe80::1"),
            Ok(Principal::Anonymous),
        ),
        (
            &lan,
            req("GET", "/api/ws").ws().client(away),
            Err(Reason::NoCredential),
        ),
        (
            &lan,
            req("GET", "/login").client(away),
            Ok(Principal::Anonymous),
        ),
    ];
    for (p, facts, want) in cases {
        assert_eq!(
            verdict_of(p, &facts),
            want,
            "{} {} from {}",
            facts.method,
            facts.path,
            facts.client
        );
    }
    assert!(secure.can_require_auth() && lan.can_require_auth());
    assert!(!policy_util::preset("insecure").can_require_auth());
    assert_eq!(secure.summary().source, "preset:secure");
}

#[test]
fn the_transport_field_is_the_only_way_to_tell_ws_from_http() {
    let p = compile(
        "version: 1\nrules:\n  - { transport: http, action: deny }\n  - { action: allow }\n",
    );
    assert_eq!(p.decide(&req("GET", "/x")).verdict, Err(Reason::RuleDeny));
    assert_eq!(
        p.decide(&req("GET", "/x").ws()).verdict,
        Ok(Principal::Anonymous)
    );
    assert_eq!(req("GET", "/x").ws().transport, Transport::Ws);
}
