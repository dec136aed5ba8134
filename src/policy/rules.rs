//! Compiled rules and [`CompiledPolicy::decide`]: the pre-rule checks of
//! SPEC §2.3 (path, then Host, then Origin), then the rules, first match
//! wins, no match denies.
//!
//! `decide` runs on every request, so everything here is compiled once and
//! allocation-free: CIDR sets are binary-searched, methods are a bit mask,
//! globs walk the path's segments in place.

use std::sync::Arc;

use super::compile::{CompiledPolicy, Located};
use super::file::RuleFile;
use super::glob::{self, method_bit, PathGlob, METHODS};
use super::host::origin_checked;
use super::locate::KeyPath;
use super::network::{NetSet, Networks};
use super::{Action, Credential, Decision, Facts, Principal, Reason, Transport};

/// A `from` / `not_from` field: the compiled set (shared with the network
/// it names, when it names one) and the entries as written.
pub(crate) type FromNets = (Arc<NetSet>, Vec<String>);

/// A compiled rule. Each field keeps its source entries for `explain`.
#[derive(Debug)]
pub(crate) struct Rule {
    pub name: Arc<str>,
    /// `file` or `preset:NAME`: where the rule was written.
    pub origin: Arc<str>,
    pub from: Option<FromNets>,
    pub not_from: Option<FromNets>,
    pub paths: Option<(Vec<PathGlob>, Vec<String>)>,
    pub methods: Option<(u16, Vec<String>)>,
    pub transport: Option<Transport>,
    pub action: Action,
}

fn non_empty<'a>(
    list: &'a Option<Vec<String>>,
    path: &KeyPath,
    what: &str,
) -> Result<Option<&'a [String]>, Located> {
    match list {
        Some(v) if v.is_empty() => Err(Located::value(
            path.clone(),
            format!("empty list (expected at least one {what}; remove the key to match any)"),
        )),
        Some(v) => Ok(Some(v)),
        None => Ok(None),
    }
}

/// Compile one rule; `number` is its 1-based place in the merged list.
pub(crate) fn compile_rule(
    rf: &RuleFile,
    number: usize,
    origin: &Arc<str>,
    nets: &mut Networks<'_>,
    path: &KeyPath,
) -> Result<Rule, Located> {
    let name: Arc<str> = match &rf.name {
        Some(n) if n.trim().is_empty() => {
            return Err(Located::value(
                path.key("name"),
                "empty name (expected some text, or no name: key)".into(),
            ))
        }
        Some(n) => n.as_str().into(),
        None => format!("rule {number}").into(),
    };
    let mut nets_of =
        |key: &str, list: &Option<Vec<String>>| -> Result<Option<FromNets>, Located> {
            let here = path.key(key);
            let Some(list) = non_empty(list, &here, "network")? else {
                return Ok(None);
            };
            let set = nets
                .resolve_list(list)
                .map_err(|(i, e)| Located::value(here.index(i), e.message))?;
            Ok(Some((set, list.to_vec())))
        };
    let from = nets_of("from", &rf.from)?;
    let not_from = nets_of("not_from", &rf.not_from)?;

    let here = path.key("paths");
    let paths = match non_empty(&rf.paths, &here, "path")? {
        None => None,
        Some(list) => {
            let globs = list
                .iter()
                .enumerate()
                .map(|(i, g)| PathGlob::parse(g).map_err(|m| Located::value(here.index(i), m)))
                .collect::<Result<Vec<_>, _>>()?;
            Some((globs, list.to_vec()))
        }
    };

    let here = path.key("methods");
    let methods = match non_empty(&rf.methods, &here, "method")? {
        None => None,
        Some(list) => {
            let mut mask = 0;
            for (i, m) in list.iter().enumerate() {
                let bit = method_bit(m);
                if bit == 0 {
                    let hint = if method_bit(&m.to_ascii_uppercase()) != 0 {
                        "; methods are upper case"
                    } else {
                        ""
                    };
                    let msg = format!(
                        "unknown method {m:?} (expected one of {}{hint})",
                        METHODS.join(", ")
                    );
                    return Err(Located::value(here.index(i), msg));
                }
                mask |= bit;
            }
            Some((mask, list.to_vec()))
        }
    };

    Ok(Rule {
        name,
        origin: origin.clone(),
        from,
        not_from,
        paths,
        methods,
        transport: rf.transport,
        action: rf.action,
    })
}

impl Rule {
    /// Whether every field of the rule matches (cheapest fields first);
    /// `method` is the request method's bit, computed once per request.
    #[inline]
    pub fn matches(&self, f: &Facts, segs: &[&str], method: u16) -> bool {
        if self.transport.is_some_and(|t| t != f.transport) {
            return false;
        }
        if let Some((mask, _)) = &self.methods {
            if mask & method == 0 {
                return false;
            }
        }
        if let Some((set, _)) = &self.from {
            if !set.contains(f.client) {
                return false;
            }
        }
        if let Some((set, _)) = &self.not_from {
            if set.contains(f.client) {
                return false;
            }
        }
        if let Some((globs, _)) = &self.paths {
            if !globs.iter().any(|g| g.matches(segs)) {
                return false;
            }
        }
        true
    }

    /// Every field that does not match, in words (empty: the rule matches).
    pub fn misses(&self, f: &Facts, path: &str) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(t) = self.transport.filter(|&t| t != f.transport) {
            out.push(format!(
                "transport: {} is not {}",
                name(f.transport),
                name(t)
            ));
        }
        if let Some((mask, list)) = &self.methods {
            if mask & method_bit(&f.method) == 0 {
                out.push(format!(
                    "methods: {} not in [{}]",
                    f.method,
                    list.join(", ")
                ));
            }
        }
        if let Some((set, list)) = &self.from {
            if !set.contains(f.client) {
                out.push(format!("from: {} not in [{}]", f.client, list.join(", ")));
            }
        }
        if let Some((set, list)) = &self.not_from {
            if set.contains(f.client) {
                out.push(format!(
                    "not_from: {} is in [{}]",
                    f.client,
                    list.join(", ")
                ));
            }
        }
        if let Some((globs, list)) = &self.paths {
            let hit = glob::with_segments(path, |segs| globs.iter().any(|g| g.matches(segs)));
            if !hit {
                out.push(format!("paths: {path} not in [{}]", list.join(", ")));
            }
        }
        out
    }

    /// The verdict of this rule for the presented credential.
    pub fn verdict(&self, credential: &Credential) -> Result<Principal, Reason> {
        match (self.action, credential) {
            (Action::Deny, _) => Err(Reason::RuleDeny),
            (_, Credential::Valid(p)) => Ok(p.clone()),
            (Action::Allow, _) => Ok(Principal::Anonymous),
            (Action::Authenticate, Credential::None) => Err(Reason::NoCredential),
            (Action::Authenticate, Credential::Invalid) => Err(Reason::BadCredential),
        }
    }
}

fn name(t: Transport) -> &'static str {
    match t {
        Transport::Http => "http",
        Transport::Ws => "ws",
    }
}

impl CompiledPolicy {
    /// Decide a request: the pre-rule checks, then the first matching rule.
    pub fn decide(&self, facts: &Facts) -> Decision {
        let (verdict, rule) = self.decide_indexed(facts);
        let rule = rule.map(|i| &self.rules[i]);
        Decision {
            verdict,
            rule: rule.map(|r| r.name.clone()),
            action: rule.map(|r| r.action),
        }
    }

    /// [`Self::decide`] naming the deciding rule by its index (see
    /// [`Self::rule_name`]): the gate decides every request, and cloning
    /// the name's `Arc` would bump a count that every core shares.
    pub fn decide_indexed(&self, facts: &Facts) -> (Result<Principal, Reason>, Option<usize>) {
        let path = match self.pre_check(facts) {
            Ok(p) => p,
            Err(reason) => return (Err(reason), None),
        };
        let method = method_bit(&facts.method);
        let rule = glob::with_segments(path, |segs| {
            self.rules
                .iter()
                .position(|r| r.matches(facts, segs, method))
        });
        match rule {
            Some(i) => (self.rules[i].verdict(&facts.credential), Some(i)),
            None => (Err(Reason::NoRuleMatched), None),
        }
    }

    /// The name and action of the rule at `index` (of [`Self::decide_indexed`]).
    pub fn rule_name(&self, index: usize) -> (&Arc<str>, Action) {
        let r = &self.rules[index];
        (&r.name, r.action)
    }

    /// How many rules there are (indices run below this).
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// SPEC §2.3 in order path, Host, Origin; the path without its query.
    pub(crate) fn pre_check<'f>(&self, f: &'f Facts) -> Result<&'f str, Reason> {
        if glob::non_canonical(&f.path).is_some() {
            return Err(Reason::NonCanonicalPath);
        }
        if !self.hosts.allows(f.host.as_deref()) {
            return Err(Reason::HostNotAllowed);
        }
        if origin_checked(f.transport == Transport::Ws, &f.method)
            && !self
                .origins
                .allows(f.origin.as_deref(), &f.scheme, f.host.as_deref())
        {
            return Err(Reason::OriginNotAllowed);
        }
        Ok(glob::strip_query(&f.path))
    }
}
