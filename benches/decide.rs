//! Criterion benchmarks of the policy engine (SPEC §5):
//! * `decide/20_rules`: a 20-rule policy, the request matching the last rule
//!   (every earlier rule is tried and missed), target ≤ 1 µs;
//! * `decide/10k_cidrs`: one network of 10,000 distinct, non-adjacent CIDRs,
//!   the client near the end of the range, target ≤ 2 µs;
//! * `explain/worst_case`: the 20-rule policy explained, every rule missed.
//!
//! Run: `cargo bench --bench decide -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use dashgate::policy::{CompiledPolicy, Credential, Facts, LoadContext, Principal, Transport};

fn ctx() -> LoadContext {
    LoadContext::new("127.0.0.1".parse().unwrap())
}

fn facts(client: &str, path: &str) -> Facts {
    let ip = client.parse().unwrap();
    Facts {
        peer: ip,
        client: ip,
        method: "GET".into(),
        path: path.into(),
        host: Some("localhost:9119".into()),
        origin: Some("http://localhost:9119".into()),
        scheme: "http".into(),
        transport: Transport::Ws,
        credential: Credential::Valid(Principal::Token { name: "ci".into() }),
    }
}

/// 19 rules that each miss the benchmark request in a different field, then
/// a catch-all `authenticate`.
fn twenty_rules() -> String {
    let mut y = String::from("version: 1\nnetworks:\n  home: [192.168.1.0/24, \"fd12:3456::/48\", 10.0.0.7]\n  office: [172.20.0.0/16, home]\nrules:\n");
    for i in 0..19 {
        let rule = match i % 5 {
            0 => format!("  - {{ name: r{i}, paths: [/healthz, \"/static{i}/**\"], methods: [GET, HEAD], action: allow }}\n"),
            1 => format!("  - {{ name: r{i}, from: [home, loopback, cgnat], action: allow }}\n"),
            2 => format!("  - {{ name: r{i}, paths: [\"/api/x{i}/*\", \"/api/**/deep{i}\"], action: deny }}\n"),
            3 => format!("  - {{ name: r{i}, methods: [POST, PUT, DELETE], from: [office], action: deny }}\n"),
            _ => format!("  - {{ name: r{i}, transport: http, paths: [\"/api/**\"], action: allow }}\n"),
        };
        y.push_str(&rule);
    }
    y.push_str("  - { name: everyone else, action: authenticate }\n");
    y
}

/// One network of 10,000 /32s two addresses apart (none merge), inside
/// 10.0.0.0/8, and a rule using it last.
fn ten_thousand_cidrs() -> String {
    let mut y = String::from("version: 1\nnetworks:\n  big:\n");
    for i in 0..10_000u32 {
        let a = (10u32 << 24) + 2 * i;
        y.push_str(&format!(
            "    - {}.{}.{}.{}/32\n",
            a >> 24,
            (a >> 16) & 255,
            (a >> 8) & 255,
            a & 255
        ));
    }
    y.push_str("rules:\n  - { name: big, from: [big], action: allow }\n  - { action: deny }\n");
    y
}

fn benches(c: &mut Criterion) {
    let twenty = CompiledPolicy::from_str(&twenty_rules(), "20.yaml", &ctx()).unwrap();
    let f = facts("203.0.113.9", "/api/sessions/abc/ws");
    assert_eq!(twenty.decide(&f).rule.as_deref(), Some("everyone else"));
    c.bench_function("decide/20_rules", |b| {
        b.iter(|| twenty.decide(black_box(&f)))
    });

    let big = CompiledPolicy::from_str(&ten_thousand_cidrs(), "10k.yaml", &ctx()).unwrap();
    // 10.0.78.30 = the 9,999th entry (10.0.0.0 + 2 * 9,999).
    let f = facts("10.0.78.30", "/api/status");
    assert_eq!(big.decide(&f).rule.as_deref(), Some("big"));
    c.bench_function("decide/10k_cidrs", |b| b.iter(|| big.decide(black_box(&f))));

    let f = facts("203.0.113.9", "/api/sessions/abc/ws");
    c.bench_function("explain/worst_case", |b| {
        b.iter(|| twenty.explain(black_box(&f)))
    });
}

criterion_group!(decide, benches);
criterion_main!(decide);
