//! Policies the benchmarks decide with, generated so every figure in
//! `docs/benchmarks.md` can be reproduced from the source alone.

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

/// The gate-overhead policy: the `secure` preset behind a first rule that
/// denies a 10,000-CIDR blocklist, so every request pays one lookup that
/// misses, then reaches `secure`'s `authenticate` rule with a Bearer token.
pub fn gate_blocklist() -> String {
    format!(
        "version: 1\nextends: secure\nnetworks:\n  blocklist: {}\nrules:\n  - name: blocklist\n    from: [blocklist]\n    action: deny\n",
        yaml_list(&cidrs(10_000))
    )
}
