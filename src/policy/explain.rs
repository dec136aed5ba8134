//! `policy explain`: why a request gets the decision it gets.
//!
//! Every pre-rule check and every rule is listed in order, with the fields
//! that missed in words (`from: 203.0.113.9 not in [home, loopback]`), so a
//! person can see which line of their file to change. The verdict comes from
//! [`CompiledPolicy::decide`] itself, never from a second implementation, so
//! the explanation cannot disagree with the gate.
//!
//! The text form ends with `decision: ACTION (rule: NAME)`: ACTION is the
//! deciding rule's action (`allow`, `authenticate`, `deny`), and a refusal
//! before any rule (or no rule matching) prints `decision: deny (rule: none)`
//! with the reason on the `verdict:` line above it.

use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use super::glob::{self, non_canonical};
use super::host::origin_checked;
use super::{Action, CompiledPolicy, Credential, Facts, Principal, Transport};

/// The whole explanation (`--json` prints it as is).
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// The policy's source (file path or `preset:NAME`).
    pub policy: String,
    /// The preset the policy extends (or is).
    pub preset: Option<String>,
    pub request: RequestView,
    /// The pre-rule checks in the order they run: path, host, origin.
    pub checks: Vec<CheckLine>,
    pub rules: Vec<RuleLine>,
    pub verdict: VerdictView,
    pub decision: DecisionLine,
}

/// The facts, as shown.
#[derive(Debug, Clone, Serialize)]
pub struct RequestView {
    pub method: String,
    pub path: String,
    pub transport: Transport,
    pub client: IpAddr,
    pub peer: IpAddr,
    pub host: Option<String>,
    pub origin: Option<String>,
    pub scheme: String,
    /// `none`, `invalid`, or the principal a valid credential stands for.
    pub credential: String,
}

/// One pre-rule check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckLine {
    /// `path`, `host` or `origin`.
    pub check: &'static str,
    /// `pass`, `fail` or `skipped` (an earlier check failed).
    pub outcome: &'static str,
    pub detail: String,
}

/// One rule.
#[derive(Debug, Clone, Serialize)]
pub struct RuleLine {
    /// 1-based place in the merged list.
    pub index: usize,
    pub name: String,
    pub action: Action,
    /// `file` or `preset:NAME`.
    pub origin: String,
    /// `matched`, `missed` or `not reached`.
    pub outcome: &'static str,
    /// Each field that missed, in words.
    pub missed: Vec<String>,
    /// How the caller met the rule's `users` / `groups`, when it names
    /// any and was reached.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// `read` for a read-only rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<&'static str>,
}

/// What the client would see.
#[derive(Debug, Clone, Serialize)]
pub struct VerdictView {
    pub allowed: bool,
    /// The status of a refusal; `None` when allowed (the route's own).
    pub status: Option<u16>,
    pub reason: Option<&'static str>,
    pub principal: Option<Principal>,
    /// The principal's groups, when allowed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// `full` or `read`, when allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<&'static str>,
}

/// The last line: the deciding action and rule.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionLine {
    pub action: Action,
    pub rule: Option<String>,
}

impl CompiledPolicy {
    /// Explain how `facts` are decided, rule by rule.
    pub fn explain(&self, facts: &Facts) -> Explanation {
        let decision = self.decide(facts);
        let checks = self.checks(facts);
        let passed = checks.iter().all(|c| c.outcome != "fail");
        let path = glob::strip_query(&facts.path);
        let mut reached = passed;
        let groups: &[String] = match &facts.credential {
            Credential::Valid(p) => self.groups_of(p),
            _ => &[],
        };
        let rules = self
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut subject = None;
                let (outcome, missed) = if reached {
                    let mut missed = r.misses(facts, path);
                    if missed.is_empty() {
                        subject = r.subject_words(&facts.credential, groups);
                        let named = r.subject(&facts.credential, |_| groups);
                        if named == super::rules::Subject::NotNamed {
                            missed.push(subject.take().unwrap_or_default());
                        }
                    }
                    reached = !missed.is_empty();
                    (
                        if missed.is_empty() {
                            "matched"
                        } else {
                            "missed"
                        },
                        missed,
                    )
                } else {
                    ("not reached", Vec::new())
                };
                RuleLine {
                    index: i + 1,
                    name: r.name.to_string(),
                    action: r.action,
                    origin: r.origin.to_string(),
                    outcome,
                    missed,
                    subject,
                    access: (r.access == super::AccessLevel::Read).then_some("read"),
                }
            })
            .collect();
        let verdict = match &decision.verdict {
            Ok(p) => VerdictView {
                allowed: true,
                status: None,
                reason: None,
                principal: Some(p.clone()),
                groups: groups.to_vec(),
                access: self
                    .decide_indexed(facts)
                    .1
                    .map(|i| self.rules[i].access.as_str()),
            },
            Err(r) => VerdictView {
                allowed: false,
                status: Some(r.status()),
                reason: Some(r.as_str()),
                principal: None,
                groups: Vec::new(),
                access: None,
            },
        };
        Explanation {
            policy: self.summary.source.clone(),
            preset: self.summary.preset.clone(),
            request: RequestView {
                method: facts.method.to_string(),
                path: facts.path.clone(),
                transport: facts.transport,
                client: facts.client,
                peer: facts.peer,
                host: facts.host.clone(),
                origin: facts.origin.clone(),
                scheme: facts.scheme.to_string(),
                credential: match &facts.credential {
                    Credential::None => "none".to_owned(),
                    Credential::Invalid => "invalid".to_owned(),
                    Credential::Valid(p) => principal(p),
                },
            },
            checks,
            rules,
            verdict,
            decision: DecisionLine {
                action: decision.action.unwrap_or(Action::Deny),
                rule: decision.rule.map(|r| r.to_string()),
            },
        }
    }

    fn checks(&self, f: &Facts) -> Vec<CheckLine> {
        let mut out = Vec::new();
        let mut failed = false;
        let mut push = |check, ok: bool, detail: String| {
            let outcome = match (failed, ok) {
                (true, _) => "skipped",
                (false, true) => "pass",
                (false, false) => "fail",
            };
            failed |= !ok;
            out.push(CheckLine {
                check,
                outcome,
                detail,
            });
        };
        let why = non_canonical(&f.path);
        push(
            "path",
            why.is_none(),
            match why {
                None => format!("{} is canonical", glob::strip_query(&f.path)),
                Some(why) => format!("{:?} {why} (non_canonical_path)", f.path),
            },
        );
        let host = f.host.as_deref();
        let ok = self.hosts.allows(host);
        let shown = host.map_or_else(|| "no Host header".to_owned(), |h| format!("Host {h}"));
        let verb = if ok {
            "allowed"
        } else {
            "not allowed (host_not_allowed)"
        };
        push(
            "host",
            ok,
            format!("{shown} {verb}; allowed_hosts: {}", self.hosts.describe()),
        );
        let checked = origin_checked(f.transport == Transport::Ws, &f.method);
        let ok = !checked || self.origins.allows(f.origin.as_deref(), &f.scheme, host);
        let detail = match (&f.origin, checked) {
            (_, false) => format!("not checked for a plain {} request", f.method),
            (None, true) => "no Origin header (not a browser)".to_owned(),
            (Some(o), true) => {
                let verb = if ok {
                    "allowed"
                } else {
                    "not allowed (origin_not_allowed)"
                };
                format!(
                    "Origin {o} {verb}; allowed_origins: {}",
                    self.origins.describe()
                )
            }
        };
        push("origin", ok, detail);
        out
    }
}

fn principal(p: &Principal) -> String {
    match p {
        Principal::Anonymous => "anonymous".to_owned(),
        Principal::StartupToken => "the startup token".to_owned(),
        Principal::Token { name } => format!("token {name}"),
        Principal::User { name } => format!("user {name}"),
        Principal::Forwarded { name, .. } => format!("forwarded user {name}"),
        Principal::Internal { session } => format!("internal (session {session})"),
    }
}

fn action(a: Action) -> &'static str {
    match a {
        Action::Allow => "allow",
        Action::Authenticate => "authenticate",
        Action::Deny => "deny",
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.request;
        let transport = match r.transport {
            Transport::Http => "",
            Transport::Ws => " (WebSocket upgrade)",
        };
        match &self.preset {
            Some(p) if !self.policy.starts_with("preset:") => {
                writeln!(f, "policy: {} (extends {p})", self.policy)?
            }
            _ => writeln!(f, "policy: {}", self.policy)?,
        }
        let host = r.host.as_deref().unwrap_or("(none)");
        let origin = r.origin.as_deref().unwrap_or("(none)");
        writeln!(
            f,
            "request: {} {}{transport} over {}",
            r.method, r.path, r.scheme
        )?;
        writeln!(f, "  Host {host}, Origin {origin}")?;
        writeln!(
            f,
            "  client {} (peer {}), credential: {}",
            r.client, r.peer, r.credential
        )?;
        writeln!(f, "checks:")?;
        for c in &self.checks {
            writeln!(f, "  {:<7} {:<7} {}", c.check, c.outcome, c.detail)?;
        }
        writeln!(f, "rules:")?;
        for l in &self.rules {
            write!(
                f,
                "  {:>2}. {} [{}] ({}): {}",
                l.index,
                l.name,
                action(l.action),
                l.origin,
                l.outcome
            )?;
            if !l.missed.is_empty() {
                write!(f, ": {}", l.missed.join("; "))?;
            }
            if let Some(s) = &l.subject {
                write!(f, ": {s}")?;
            }
            if let Some(a) = l.access {
                write!(f, " (access: {a})")?;
            }
            writeln!(f)?;
        }
        let v = &self.verdict;
        match (&v.principal, v.status, v.reason) {
            (Some(p), _, _) => {
                write!(f, "verdict: allowed as {}", principal(p))?;
                if !v.groups.is_empty() {
                    write!(f, " (groups {})", v.groups.join(", "))?;
                }
                if v.access == Some("read") {
                    write!(f, ", read-only")?;
                }
                writeln!(f)?;
            }
            (None, Some(s), Some(reason)) => writeln!(f, "verdict: refused {s} {reason}")?,
            _ => writeln!(f, "verdict: refused")?,
        }
        let rule = self.decision.rule.as_deref().unwrap_or("none");
        write!(
            f,
            "decision: {} (rule: {rule})",
            action(self.decision.action)
        )
    }
}
