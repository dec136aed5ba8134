//! Compiled address sets: every `from`, `not_from` and `trusted_proxies` list
//! becomes one [`NetSet`] of sorted, merged ranges, searched in O(log n).
//!
//! Why ranges rather than a list of CIDRs: a rule that names ten thousand
//! networks must still decide in about a microsecond (SPEC §5), and merging
//! makes overlapping or adjacent entries cost nothing.
//!
//! IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is IPv4 on both sides: a mapped
//! address is folded before the lookup, and a configured IPv6 range that
//! covers mapped addresses also adds the IPv4 addresses it covers.
//!
//! Named networks (`networks:`) may name other networks, built-in or
//! defined; a cycle is an error.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// The built-in network names, in the order documentation lists them.
pub const BUILTINS: [&str; 5] = ["loopback", "private", "link-local", "cgnat", "any"];

/// What an entry may be, for error messages.
pub(crate) const ENTRY_EXPECTED: &str = "expected a CIDR, an address, a built-in network \
     loopback|private|link-local|cgnat|any, or one defined under networks:";

/// `::ffff:0:0/96`, where IPv4-mapped addresses live.
const MAPPED_LO: u128 = 0xffff_u128 << 32;
const MAPPED_HI: u128 = MAPPED_LO | 0xffff_ffff;

/// A set of addresses as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl NetSet {
    /// Whether `ip` (IPv4-mapped folded to IPv4) is in the set.
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    /// Whether the set holds no address at all.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Number of merged ranges (for tests and benchmarks).
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    /// Add every address of `other`.
    pub fn extend(&mut self, other: &NetSet) {
        self.append(other);
        self.normalize();
    }

    /// Add `other`'s ranges unmerged: a list of many entries is merged
    /// once, after its last one (`normalize`), not once per entry, which
    /// sorted the growing set again for each of 30,000 entries.
    fn append(&mut self, other: &NetSet) {
        self.v4.extend_from_slice(&other.v4);
        self.v6.extend_from_slice(&other.v6);
    }

    fn push_v6(&mut self, lo: u128, hi: u128) {
        self.v6.push((lo, hi));
        // The part of the range inside ::ffff:0:0/96 is also IPv4.
        let (mlo, mhi) = (lo.max(MAPPED_LO), hi.min(MAPPED_HI));
        if mlo <= mhi {
            self.v4
                .push(((mlo - MAPPED_LO) as u32, (mhi - MAPPED_LO) as u32));
        }
    }

    fn normalize(&mut self) {
        merge(&mut self.v4);
        merge(&mut self.v6);
    }
}

#[inline]
fn find<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // The first range whose end is >= x is the only one that can hold x.
    let i = ranges.partition_point(|&(_, hi)| hi < x);
    ranges.get(i).is_some_and(|&(lo, _)| lo <= x)
}

/// Sort and merge overlapping or adjacent ranges in place.
fn merge<T: Ord + Copy + Bump>(ranges: &mut Vec<(T, T)>) {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for &(lo, hi) in ranges.iter() {
        match out.last_mut() {
            Some(last) if lo <= last.1.saturating_next() => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    *ranges = out;
}

trait Bump {
    fn saturating_next(self) -> Self;
}
impl Bump for u32 {
    fn saturating_next(self) -> Self {
        self.saturating_add(1)
    }
}
impl Bump for u128 {
    fn saturating_next(self) -> Self {
        self.saturating_add(1)
    }
}

/// The set a built-in name stands for.
pub fn builtin(name: &str) -> Option<NetSet> {
    let cidrs: &[&str] = match name {
        "loopback" => &["127.0.0.0/8", "::1/128"],
        "private" => &["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"],
        "link-local" => &["169.254.0.0/16", "fe80::/10"],
        "cgnat" => &["100.64.0.0/10"],
        "any" => &["0.0.0.0/0", "::/0"],
        _ => return None,
    };
    let mut set = NetSet::default();
    for c in cidrs {
        set.extend(&parse_cidr(c).expect("built-in CIDRs are valid"));
    }
    Some(set)
}

/// Whether `s` looks like an address or CIDR rather than a network name.
fn looks_like_address(s: &str) -> bool {
    s.contains(['/', ':', '.']) || s.starts_with(|c: char| c.is_ascii_digit())
}

/// Parse one address (`10.0.0.7`, `"::1"`) or CIDR (`192.168.1.0/24`).
///
/// # Errors
/// A message saying what is wrong and, for host bits, what was meant.
pub fn parse_cidr(s: &str) -> Result<NetSet, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| format!("{s:?} is not a valid address or CIDR ({ENTRY_EXPECTED})"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len: u32 = match len {
        None => max,
        Some(l) => l
            .parse()
            .ok()
            .filter(|&n| n <= max && !l.starts_with('+'))
            .ok_or_else(|| {
                format!("{s:?}: invalid prefix length {l:?} (expected 0-{max} for this address)")
            })?,
    };
    let mut set = NetSet::default();
    match ip {
        IpAddr::V4(a) => {
            let base = u32::from(a);
            let host = if len == 32 { 0 } else { u32::MAX >> len };
            if base & host != 0 {
                let net = Ipv4Addr::from(base & !host);
                return Err(host_bits(s, &format!("{net}/{len}"), &format!("{a}/32")));
            }
            set.v4.push((base, base | host));
        }
        IpAddr::V6(a) => {
            let base = u128::from(a);
            let host = if len == 128 { 0 } else { u128::MAX >> len };
            if base & host != 0 {
                let net = Ipv6Addr::from(base & !host);
                return Err(host_bits(s, &format!("{net}/{len}"), &format!("{a}/128")));
            }
            set.push_v6(base, base | host);
        }
    }
    set.normalize();
    Ok(set)
}

fn host_bits(s: &str, net: &str, host: &str) -> String {
    format!(
        "{s:?} has host bits set (did you mean the network {net} or the single address {host}?)"
    )
}

/// Whether `name` may name a network: a letter, then letters, digits, `-`, `_`.
pub fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Where a network error was found: the defining name and entry index, or
/// the entry being resolved (`None` name: the caller knows its own path).
#[derive(Debug)]
pub(crate) struct NetError {
    /// The network definition at fault, if the error is inside one.
    pub at: Option<(String, Option<usize>)>,
    pub message: String,
}

/// Named networks, resolved on demand with memoisation and cycle detection.
pub(crate) struct Networks<'a> {
    defs: &'a BTreeMap<String, Vec<String>>,
    /// Resolved definitions, shared: a network named by many others is
    /// not copied into each.
    done: HashMap<String, Arc<NetSet>>,
}

/// How deep networks may refer to networks: resolving recurses once per
/// level, and a chain of 40,000 overflowed the stack.
const MAX_REFERENCE_DEPTH: usize = super::limits::MAX_DEPTH;

impl<'a> Networks<'a> {
    /// Networks defined by `defs` (already merged across `extends`).
    ///
    /// # Errors
    /// A definition whose name is not a valid name or shadows a built-in.
    pub fn new(defs: &'a BTreeMap<String, Vec<String>>) -> Result<Self, NetError> {
        for (name, entries) in defs {
            let at = Some((name.clone(), None));
            if BUILTINS.contains(&name.as_str()) {
                let message = format!("network {name:?} shadows the built-in network of that name (choose another name)");
                return Err(NetError { at, message });
            }
            if !valid_name(name) {
                let message = format!("invalid network name {name:?} (expected a letter, then letters, digits, '-' or '_')");
                return Err(NetError { at, message });
            }
            if entries.is_empty() {
                let message = "empty list (expected at least one entry)".to_owned();
                return Err(NetError { at, message });
            }
        }
        Ok(Networks {
            defs,
            done: HashMap::new(),
        })
    }

    /// Resolve a list of entries (from a rule or `trusted_proxies`) into one set.
    ///
    /// # Errors
    /// The index of the bad entry and the message.
    /// A list of one name shares that network's set: 20,000 rules naming
    /// one network of 15,000 addresses are not 20,000 copies of it.
    pub fn resolve_list(&mut self, entries: &[String]) -> Result<Arc<NetSet>, (usize, NetError)> {
        let mut set = NetSet::default();
        for (i, e) in entries.iter().enumerate() {
            let one = self
                .resolve_entry(e, &mut Vec::new())
                .map_err(|err| (i, err))?;
            if entries.len() == 1 {
                return Ok(one);
            }
            set.append(&one);
        }
        set.normalize();
        Ok(Arc::new(set))
    }

    /// Resolve the definition `name` (to check it) without copying its set.
    ///
    /// # Errors
    /// The first bad entry, as [`Self::resolve_list`] reports it.
    pub fn check(&mut self, name: &str) -> Result<(), NetError> {
        self.resolve_entry(name, &mut Vec::new()).map(drop)
    }

    fn resolve_entry(
        &mut self,
        entry: &str,
        stack: &mut Vec<String>,
    ) -> Result<Arc<NetSet>, NetError> {
        let entry = entry.trim();
        if looks_like_address(entry) {
            return parse_cidr(entry)
                .map(Arc::new)
                .map_err(|message| NetError { at: None, message });
        }
        if let Some(set) = builtin(entry) {
            return Ok(Arc::new(set));
        }
        if let Some(set) = self.done.get(entry) {
            return Ok(set.clone());
        }
        let Some(entries) = self.defs.get(entry) else {
            let mut message = format!("unknown network {entry:?} ({ENTRY_EXPECTED})");
            if let Some(near) = self.nearest(entry) {
                message.push_str(&format!("; did you mean {near:?}?"));
            }
            return Err(NetError { at: None, message });
        };
        if let Some(start) = stack.iter().position(|n| n == entry) {
            let cycle = stack[start..].join(" -> ");
            let message = format!("networks refer to each other in a cycle: {cycle} -> {entry}");
            return Err(NetError {
                at: Some((stack[stack.len() - 1].clone(), None)),
                message,
            });
        }
        if stack.len() >= MAX_REFERENCE_DEPTH {
            let message = format!(
                "networks refer to networks more than {MAX_REFERENCE_DEPTH} levels deep \
                 (list the addresses, or fewer levels)"
            );
            return Err(NetError {
                at: Some((stack[stack.len() - 1].clone(), None)),
                message,
            });
        }
        stack.push(entry.to_owned());
        let mut set = NetSet::default();
        let mut only = None;
        for (i, e) in entries.iter().enumerate() {
            let one = self.resolve_entry(e, stack).map_err(|err| match err.at {
                Some(_) => err,
                None => NetError {
                    at: Some((entry.to_owned(), Some(i))),
                    message: err.message,
                },
            })?;
            if entries.len() == 1 {
                only = Some(one);
            } else {
                set.append(&one);
            }
        }
        stack.pop();
        let set = only.unwrap_or_else(|| {
            set.normalize();
            Arc::new(set)
        });
        self.done.insert(entry.to_owned(), set.clone());
        Ok(set)
    }

    /// A known name within edit distance 2 of `name`, for "did you mean".
    fn nearest(&self, name: &str) -> Option<String> {
        BUILTINS
            .iter()
            .map(|s| s.to_string())
            .chain(self.defs.keys().cloned())
            .map(|k| (edit_distance(name, &k), k))
            .filter(|(d, _)| *d <= 2)
            .min()
            .map(|(_, k)| k)
    }
}

/// Levenshtein distance, for suggestions only.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn merges_and_searches() {
        let mut set = parse_cidr("10.0.0.0/24").unwrap();
        set.extend(&parse_cidr("10.0.1.0/24").unwrap());
        set.extend(&parse_cidr("10.0.0.7").unwrap());
        assert_eq!(set.ranges(), 1);
        assert!(set.contains(ip("10.0.1.255")));
        assert!(!set.contains(ip("10.0.2.0")));
        assert!(!set.contains(ip("9.255.255.255")));
    }

    #[test]
    fn folds_mapped_addresses_on_both_sides() {
        let set = parse_cidr("::ffff:10.0.0.0/104").unwrap();
        assert!(set.contains(ip("10.1.2.3")));
        assert!(set.contains(ip("::ffff:10.1.2.3")));
        assert!(!set.contains(ip("11.0.0.1")));
        let any6 = parse_cidr("::/0").unwrap();
        assert!(any6.contains(ip("1.2.3.4")));
        assert!(parse_cidr("192.168.0.0/16")
            .unwrap()
            .contains(ip("::ffff:192.168.1.5")));
    }

    #[test]
    fn refuses_bad_entries() {
        assert!(parse_cidr("10.0.0.0/33")
            .unwrap_err()
            .contains("prefix length"));
        let e = parse_cidr("192.168.1.5/24").unwrap_err();
        assert!(
            e.contains("192.168.1.0/24") && e.contains("192.168.1.5/32"),
            "{e}"
        );
        assert!(parse_cidr("10.0.0.256").is_err());
        assert!(parse_cidr("fe80::1%eth0").is_err());
    }

    #[test]
    fn resolves_names_and_detects_cycles() {
        let mut defs = BTreeMap::new();
        defs.insert("home".to_owned(), vec!["192.168.1.0/24".to_owned()]);
        defs.insert(
            "all".to_owned(),
            vec!["home".to_owned(), "cgnat".to_owned()],
        );
        let mut nets = Networks::new(&defs).unwrap();
        let set = nets.resolve_list(&["all".to_owned()]).unwrap();
        assert!(set.contains(ip("100.64.0.1")) && set.contains(ip("192.168.1.9")));
        let (i, err) = nets
            .resolve_list(&["loopback".into(), "hme".into()])
            .unwrap_err();
        assert_eq!(i, 1);
        assert!(
            err.message.contains("did you mean \"home\""),
            "{}",
            err.message
        );

        defs.insert("a".to_owned(), vec!["b".to_owned()]);
        defs.insert("b".to_owned(), vec!["a".to_owned()]);
        let mut nets = Networks::new(&defs).unwrap();
        let (_, err) = nets.resolve_list(&["a".to_owned()]).unwrap_err();
        assert!(
            err.message.contains("cycle: a -> b -> a"),
            "{}",
            err.message
        );
    }
}
