//! `Policy::decide` and `policy explain` (SPEC §5: decide ≤ 1 µs median with
//! 20 rules, ≤ 2 µs with 10,000 CIDRs in one network).
//!
//! Criterion writes `target/criterion/<group>/<id>/new/estimates.json`;
//! `benches/load.rs` reads the medians from there into the one table of
//! `make bench`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use criterion::{criterion_group, criterion_main, Criterion};
use dashgate::policy::{CompiledPolicy, Credential, Facts, LoadContext, Principal, Transport};

#[path = "support/policies.rs"]
mod policies;

fn compile(text: &str) -> CompiledPolicy {
    let ctx = LoadContext {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    CompiledPolicy::from_str(text, "bench.yaml", &ctx).expect("bench policy compiles")
}

/// `GET /api/status` over HTTP from 127.0.0.1 with the startup token: the
/// request every dashboard poll makes.
fn facts() -> Facts {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    Facts {
        peer: ip,
        client: ip,
        method: "GET".into(),
        path: "/api/status".into(),
        host: Some(SocketAddr::new(ip, 9119).to_string()),
        origin: None,
        scheme: "http".into(),
        transport: Transport::Http,
        credential: Credential::Valid(Principal::StartupToken),
    }
}

fn decide(c: &mut Criterion) {
    let f = facts();
    let mut g = c.benchmark_group("decide");
    for (id, big) in [("20_rules", false), ("10k_cidrs", true)] {
        let p = compile(&policies::twenty_rules(big));
        let d = p.decide(&f);
        assert_eq!(
            d.rule.as_deref(),
            Some("everything else needs a credential"),
            "the bench request must walk all 20 rules"
        );
        g.bench_function(id, |b| b.iter(|| black_box(p.decide(black_box(&f)))));
    }
    g.finish();
}

fn explain(c: &mut Criterion) {
    let f = facts();
    let p = compile(&policies::explain_worst());
    let e = p.explain(&f);
    assert!(
        e.rules.iter().all(|r| r.missed.len() == 5),
        "every field of every rule must miss"
    );
    let mut g = c.benchmark_group("explain");
    g.bench_function("worst_case", |b| {
        b.iter(|| black_box(p.explain(black_box(&f))))
    });
    g.finish();
}

criterion_group!(benches, decide, explain);
criterion_main!(benches);
