#![allow(dead_code)] // shared by benches/decide.rs and benches/load: each uses a part
//! Policies the benchmarks decide with, generated so every figure in
//! `docs/benchmarks.md` can be reproduced from the source alone.

use std::fmt::Write;

/// `n` distinct IPv4 /24 networks that neither overlap nor touch (the second
/// octet steps by two), so compiling cannot merge them: the set really holds
/// `n` ranges. None of them covers loopback or the private ranges.
pub fn cidrs(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{}.{}.7.0/24", 20 + i / 128, (i % 128) * 2))
        .collect()
}

fn yaml_list(items: &[String]) -> String {
    format!("[{}]", items.join(", "))
}

/// 20 rules where the first 19 each match on `from` and `methods` and miss
/// only on `paths` (the most expensive field, checked last), and the 20th
/// (`authenticate`, no fields) decides. With `big_office` the `office`
/// network holds 10,000 CIDRs besides loopback, so each of the 19 misses
/// also does a lookup in the 10,000-range set.
pub fn twenty_rules(big_office: bool) -> String {
    let mut office = vec!["loopback".to_string(), "192.168.1.0/24".to_string()];
    if big_office {
        office.extend(cidrs(10_000));
    }
    let mut y = String::new();
    writeln!(y, "version: 1").unwrap();
    writeln!(y, "networks:\n  office: {}", yaml_list(&office)).unwrap();
    writeln!(y, "rules:").unwrap();
    for i in 1..20 {
        writeln!(
            y,
            "  - name: area {i}\n    from: [office]\n    methods: [GET, POST]\n    paths: [/area{i}/**, /area{i}]\n    action: allow"
        )
        .unwrap();
    }
    writeln!(y, "  - name: everything else needs a credential\n    action: authenticate").unwrap();
    y
}

/// The worst case for `policy explain`: 20 rules that set every field, and
/// (for the request the bench makes: `GET /api/status` over HTTP from
/// 127.0.0.1) every field of every rule misses, so each rule line lists five
/// reasons and the 10,000-CIDR network is searched twice per rule.
pub fn explain_worst() -> String {
    let mut y = String::new();
    writeln!(y, "version: 1").unwrap();
    writeln!(y, "networks:\n  blocked: {}", yaml_list(&cidrs(10_000))).unwrap();
    writeln!(y, "rules:").unwrap();
    for i in 1..=20 {
        writeln!(
            y,
            "  - name: rule {i} misses everything\n    transport: ws\n    methods: [POST, PUT, DELETE]\n    from: [blocked, 192.168.{i}.0/24]\n    not_from: [loopback]\n    paths: [/area{i}/**, /other{i}/*/x]\n    action: deny"
        )
        .unwrap();
    }
    y
}

/// The gate-overhead policy: the `secure` preset behind a first rule that
/// denies a 10,000-CIDR blocklist, so every request pays one lookup that
/// misses, then reaches `secure`'s `authenticate` rule with a Bearer token.
pub fn gate_blocklist() -> String {
    format!(
        "version: 1\nextends: secure\nnetworks:\n  blocklist: {}\nrules:\n  - name: blocklist\n    from: [blocklist]\n    action: deny\n",
        yaml_list(&cidrs(10_000))
    )
}
