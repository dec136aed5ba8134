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
use super::{AccessLevel, Action, Credential, Decision, Facts, Principal, Reason, Transport};

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
    /// Principals by name (`users:`).
    pub users: Option<Vec<String>>,
    /// Group names (`groups:`).
    pub groups: Option<Vec<String>>,
    /// `access:` (default full).
    pub access: AccessLevel,
    pub action: Action,
}

/// How a rule's `users` / `groups` meet a request's credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subject {
    /// No subject fields, or the principal is named by them.
    Matches,
    /// A signed-in principal the rule does not name: try the next rule.
    NotNamed,
    /// No valid credential: the rule cannot be decided, sign in (401).
    Unknown,
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

    let users = non_empty(&rf.users, &path.key("users"), "user")?.map(<[String]>::to_vec);
    let groups = non_empty(&rf.groups, &path.key("groups"), "group")?.map(<[String]>::to_vec);
    let access = rf.access.unwrap_or_default();
    if access == AccessLevel::Read && rf.action == Action::Deny {
        let msg = "access: read on a deny rule admits nobody (expected allow or authenticate)";
        return Err(Located::value(path.key("access"), msg.into()));
    }

    Ok(Rule {
        name,
        origin: origin.clone(),
        from,
        not_from,
        paths,
        methods,
        transport: rf.transport,
        users,
        groups,
        access,
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
            let segs: Vec<&str> = glob::segments(path).collect();
            let hit = globs.iter().any(|g| g.matches(&segs));
            if !hit {
                out.push(format!("paths: {path} not in [{}]", list.join(", ")));
            }
        }
        out
    }

    /// Whether the rule names users or groups.
    pub fn has_subject(&self) -> bool {
        self.users.is_some() || self.groups.is_some()
    }

    /// How `users` and `groups` meet the credential; `groups` gives a
    /// principal's groups. Both fields present: both must name it (fields
    /// are AND-ed, SPEC §2).
    pub fn subject<'a>(
        &self,
        credential: &'a Credential,
        groups: impl FnOnce(&'a Principal) -> &'a [String],
    ) -> Subject {
        if !self.has_subject() {
            return Subject::Matches;
        }
        let Credential::Valid(p) = credential else {
            return Subject::Unknown;
        };
        let Some(name) = p.name() else {
            return Subject::NotNamed;
        };
        if let Some(users) = &self.users {
            if !users.iter().any(|u| u == name) {
                return Subject::NotNamed;
            }
        }
        if let Some(wanted) = &self.groups {
            let has = groups(p);
            if !wanted.iter().any(|g| has.contains(g)) {
                return Subject::NotNamed;
            }
        }
        Subject::Matches
    }

    /// The subject fields in words for `explain`: how the principal met
    /// them (`None`: the rule names no subject).
    pub fn subject_words(&self, credential: &Credential, groups: &[String]) -> Option<String> {
        if !self.has_subject() {
            return None;
        }
        let mut want = Vec::new();
        if let Some(u) = &self.users {
            want.push(format!("users [{}]", u.join(", ")));
        }
        if let Some(g) = &self.groups {
            want.push(format!("groups [{}]", g.join(", ")));
        }
        let want = want.join(" and ");
        Some(match credential {
            Credential::None => format!("{want}: no credential (anonymous: sign in, 401)"),
            Credential::Invalid => format!("{want}: invalid credential (sign in, 401)"),
            Credential::Valid(p) => {
                let who = p.name().unwrap_or("anonymous");
                let shown = if groups.is_empty() {
                    "no groups".to_owned()
                } else {
                    format!("groups [{}]", groups.join(", "))
                };
                let verdict = match self.subject(credential, |_| groups) {
                    Subject::Matches => "named",
                    _ => "not named",
                };
                format!("{want}: {who} ({shown}) {verdict}")
            }
        })
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

/// What a read-only admission may not send: POST, PUT, PATCH, DELETE (bits
/// 2..=5 of [`METHODS`]), CONNECT (bit 7: not a safe method, RFC 9110
/// §9.2.1; a tunnel writes), and any method no rule can name (bit 0: fail
/// closed). GET, HEAD, OPTIONS and TRACE are safe.
fn unsafe_method(bit: u16) -> bool {
    const UNSAFE: u16 = 0b1011_1100;
    debug_assert_eq!(method_bit("POST") | method_bit("DELETE"), 0b10_0100);
    debug_assert_eq!(method_bit("CONNECT"), 0b1000_0000);
    bit == 0 || bit & UNSAFE != 0
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

    /// The groups a principal is in under this policy: its credential's
    /// `groups:` (or a forwarded user's header).
    pub fn groups_of<'a>(&'a self, p: &'a Principal) -> &'a [String] {
        self.creds.groups_of(p)
    }

    /// The `access:` of the rule at `index` (of [`Self::decide_indexed`]).
    pub fn rule_access(&self, index: usize) -> AccessLevel {
        self.rules[index].access
    }

    /// Whether a principal in `groups` sees every chat session
    /// (`chat.see_all`).
    pub fn sees_all_sessions(&self, groups: &[String]) -> bool {
        self.see_all.iter().any(|g| groups.contains(g))
    }

    /// [`Self::decide`] naming the deciding rule by its index (see
    /// [`Self::rule_name`]): the gate decides every request, and cloning
    /// the name's `Arc` would bump a count that every core shares.
    pub fn decide_indexed(&self, facts: &Facts) -> (Result<Principal, Reason>, Option<usize>) {
        // The path is checked and split in one pass; Host and Origin are
        // checked after it (SPEC §2.3's order), before any rule.
        glob::canonical_segments(&facts.path, |segs| match self.host_and_origin(facts) {
            Ok(()) => self.first_rule(facts, segs),
            Err(reason) => (Err(reason), None),
        })
        .unwrap_or((Err(Reason::NonCanonicalPath), None))
    }

    /// The rules on a request that passed the pre-rule checks, first match
    /// wins; `segs` are its path's.
    fn first_rule(
        &self,
        facts: &Facts,
        segs: &[&str],
    ) -> (Result<Principal, Reason>, Option<usize>) {
        let method = method_bit(&facts.method);
        let cred = &facts.credential;
        let rule = self.rules.iter().enumerate().find_map(|(i, r)| {
            if !r.matches(facts, segs, method) {
                return None;
            }
            match r.subject(cred, |p| self.creds.groups_of(p)) {
                Subject::Matches => Some((i, None)),
                Subject::NotNamed => None,
                // SPEC §2: the rule cannot be decided for an anonymous
                // caller; it is asked to sign in.
                Subject::Unknown => Some((
                    i,
                    Some(match cred {
                        Credential::Invalid => Reason::BadCredential,
                        _ => Reason::NoCredential,
                    }),
                )),
            }
        });
        match rule {
            Some((i, Some(reason))) => (Err(reason), Some(i)),
            Some((i, None)) => {
                let r = &self.rules[i];
                let verdict = r.verdict(cred);
                if verdict.is_ok() && r.access == AccessLevel::Read && unsafe_method(method) {
                    return (Err(Reason::ReadOnly), Some(i));
                }
                (verdict, Some(i))
            }
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

    /// SPEC §2.3's Host and Origin checks (the path is checked first, as
    /// [`Self::decide_indexed`] splits it).
    fn host_and_origin(&self, f: &Facts) -> Result<(), Reason> {
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
        Ok(())
    }
}
