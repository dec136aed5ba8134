//! Properties over arbitrary policies and requests:
//! * a WebSocket upgrade and a plain GET of the same path get the same
//!   decision unless a rule names `transport` (the bug class dashgate exists
//!   to rule out: "REST works, the chat WebSocket returns 403");
//! * the one intended pre-rule difference: an Origin the policy refuses is
//!   checked on the upgrade (SPEC §2.3) and not on a GET;
//! * `explain` reports the very decision `decide` makes.

mod policy_util;

use dashgate::policy::{CompiledPolicy, Credential, Facts, Principal, Reason, Transport};
use policy_util::{compile, req, FactsExt};
use proptest::prelude::*;

const NETS: &[&str] = &[
    "loopback",
    "private",
    "cgnat",
    "link-local",
    "any",
    "home",
    "203.0.113.0/24",
    "\"2001:db8::/32\"",
];
const GLOBS: &[&str] = &[
    "/api/**",
    "/api/*",
    "/api/ws",
    "/login",
    "/assets/*.js",
    "/**",
    "/x/*/y",
    "/",
];
const METHODS: &[&str] = &["GET", "HEAD", "POST", "DELETE"];
const ACTIONS: &[&str] = &["allow", "authenticate", "deny"];
const CLIENTS: &[&str] = &[
    "127.0.0.1",
    "::1",
    "192.168.1.20",
    "10.1.2.3",
    "100.64.9.9",
    "203.0.113.9",
    "2001:db8::1",
    "fe80::1",
    "8.8.8.8",
];
const SEGS: &[&str] = &[
    "api", "ws", "x", "y", "login", "assets", "a.js", "", "..", "%2e", "%20", "A",
];
const HOSTS: &[Option<&str>] = &[
    Some("localhost:9119"),
    Some("127.0.0.1"),
    Some("evil.example"),
    None,
];

/// One rule: optional from / not_from / paths / methods, an action.
fn rule() -> impl Strategy<Value = String> {
    let list = |pool: &'static [&'static str]| {
        proptest::option::of(proptest::sample::subsequence(pool, 1..=3))
    };
    (
        list(NETS),
        list(NETS),
        list(GLOBS),
        list(METHODS),
        proptest::sample::select(ACTIONS),
    )
        .prop_map(|(from, not_from, paths, methods, action)| {
            let mut r = format!("  - action: {action}\n");
            for (key, v) in [
                ("from", from),
                ("not_from", not_from),
                ("paths", paths),
                ("methods", methods),
            ] {
                if let Some(v) = v {
                    r.push_str(&format!("    {key}: [{}]\n", v.join(", ")));
                }
            }
            r
        })
}

fn policy() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec(rule(), 0..8),
        proptest::option::of(proptest::sample::select(&["secure", "lan", "insecure"][..])),
    )
        .prop_map(|(rules, extends)| {
            let mut y =
                String::from("version: 1\nnetworks:\n  home: [192.168.1.0/24, \"fd12::/16\"]\n");
            match extends {
                Some(p) => y.push_str(&format!("extends: {p}\n")),
                None if rules.is_empty() => y.push_str("extends: secure\n"),
                None => {}
            }
            if !rules.is_empty() {
                y.push_str("rules:\n");
                y.extend(rules);
            }
            y
        })
}

/// A GET with arbitrary client, path, host and credential.
fn get() -> impl Strategy<Value = Facts> {
    (
        proptest::sample::select(CLIENTS),
        proptest::collection::vec(proptest::sample::select(SEGS), 1..5),
        proptest::sample::select(HOSTS),
        0..3u8,
        proptest::option::of("[?#][a-z=/.]{0,6}"),
    )
        .prop_map(|(client, segs, host, cred, query)| {
            let path = format!("/{}{}", segs.join("/"), query.unwrap_or_default());
            let cred = match cred {
                0 => Credential::None,
                1 => Credential::Invalid,
                _ => Credential::Valid(Principal::Token { name: "ci".into() }),
            };
            req("GET", &path).client(client).host(host).cred(cred)
        })
}

fn as_ws(f: &Facts) -> Facts {
    f.clone().ws()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn ws_upgrade_and_get_are_decided_alike(yaml in policy(), facts in get(), same_host_origin in any::<bool>()) {
        let p = compile(&yaml);
        // An absent Origin, or the page's own: both pass the Origin check.
        let facts = if same_host_origin {
            let own = facts.host.as_ref().map(|h| format!("http://{h}"));
            facts.clone().origin(own.as_deref())
        } else {
            facts
        };
        let http = p.decide(&facts);
        let ws = p.decide(&as_ws(&facts));
        prop_assert_eq!(&http, &ws, "policy:\n{}\nfacts: {:?}", yaml, facts);
    }

    #[test]
    fn a_foreign_origin_only_refuses_the_upgrade(yaml in policy(), facts in get()) {
        let p = compile(&yaml);
        let facts = facts.origin(Some("https://evil.example"));
        let http = p.decide(&facts);
        let ws = p.decide(&as_ws(&facts));
        let earlier = matches!(http.verdict, Err(Reason::NonCanonicalPath | Reason::HostNotAllowed));
        if earlier {
            prop_assert_eq!(&http, &ws);
        } else {
            prop_assert_eq!(ws.verdict, Err(Reason::OriginNotAllowed));
            prop_assert_ne!(http.verdict, Err(Reason::OriginNotAllowed));
        }
    }

    #[test]
    fn explain_agrees_with_decide(yaml in policy(), facts in get(), ws in any::<bool>()) {
        let p = compile(&yaml);
        let facts = if ws { as_ws(&facts) } else { facts };
        check_explain(&p, &facts)?;
    }
}

fn check_explain(p: &CompiledPolicy, facts: &Facts) -> Result<(), TestCaseError> {
    let d = p.decide(facts);
    let e = p.explain(facts);
    prop_assert_eq!(e.decision.rule.as_deref(), d.rule.as_deref());
    prop_assert_eq!(e.verdict.allowed, d.verdict.is_ok());
    let matched: Vec<&str> = e
        .rules
        .iter()
        .filter(|r| r.outcome == "matched")
        .map(|r| r.name.as_str())
        .collect();
    prop_assert!(matched.len() <= 1);
    prop_assert_eq!(matched.first().copied(), d.rule.as_deref());
    prop_assert!(e
        .to_string()
        .lines()
        .last()
        .unwrap()
        .starts_with("decision: "));
    Ok(())
}

#[test]
fn a_rule_that_names_transport_does_tell_them_apart() {
    // The control case: without it the property above could pass vacuously.
    let p = compile("version: 1\nrules:\n  - { transport: ws, paths: [/api/ws], action: deny }\n  - { action: allow }\n");
    let get = req("GET", "/api/ws");
    assert_eq!(p.decide(&get).verdict, Ok(Principal::Anonymous));
    assert_eq!(p.decide(&as_ws(&get)).verdict, Err(Reason::RuleDeny));
    assert_eq!(as_ws(&get).transport, Transport::Ws);
}
