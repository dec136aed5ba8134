//! The policy engine: pure data in, a decision out.
//!
//! Nothing in this module knows about warp, tokio or sockets. The gate
//! (`crate::gate`) turns a request into [`Facts`], calls
//! [`CompiledPolicy::decide`], and turns the [`Decision`] into a reply or a
//! rejection. Keeping it pure is what lets one table of facts test every
//! route, transport and preset, and what keeps `decide` under a microsecond.
//!
//! Submodules:
//! * `file`        – serde types of the YAML (DSL version 1), strict.
//! * `locate`      – a marked YAML tree: where each key path sits (line:col).
//! * `limits`      – the size and depth limits of a file (SPEC §8).
//! * `compile`     – loading, `extends` merging, validation, errors with file:line:col.
//! * `rules`       – the compiled rules and `decide` (pre-rule checks, first match).
//! * `network`     – compiled CIDR sets (merged, sorted, binary-searched).
//! * `glob`        – the canonical-path check and the `paths` globs.
//! * `host`        – the Host and Origin checks.
//! * `credentials` – tokens (SHA-256), users (argon2id), session lifetime.
//! * `client_ip`   – peer + trusted proxies + forwarding headers -> client.
//! * `presets`     – the embedded `secure`, `insecure`, `lan` files.
//! * `explain`     – why each rule matched or missed.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Which protocol a request arrived on. A WebSocket upgrade is a `GET`
/// decided by the same rules; `transport` exists only for the rare rule that
/// must tell the two apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Http,
    Ws,
}

/// Who the gate believes the caller is, once a credential was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Principal {
    /// No credential, allowed by an `allow` rule.
    Anonymous,
    /// The startup token (printed at start or from `DASHGATE_TOKEN`).
    StartupToken,
    /// A token listed in `credentials.tokens`.
    Token { name: String },
    /// A user signed in with a password (through a session cookie).
    User { name: String },
    /// A user named by a trusted proxy's `forward_auth.user_header`, with
    /// the groups of its `groups_header` (if configured).
    Forwarded {
        name: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        groups: Vec<String>,
    },
    /// A chat child publishing to its own session channel from loopback.
    Internal { session: String },
}

impl Principal {
    /// The name rules' `users` match and chat sessions are owned by:
    /// `startup`, a token's, user's or forwarded user's name; `None` for
    /// anonymous and internal callers (no rule names them).
    pub fn name(&self) -> Option<&str> {
        match self {
            Principal::StartupToken => Some("startup"),
            Principal::Token { name } | Principal::User { name } => Some(name),
            Principal::Forwarded { name, .. } => Some(name),
            Principal::Anonymous | Principal::Internal { .. } => None,
        }
    }

    /// The owner name of what this principal starts: its name, or
    /// `anonymous` (SPEC §2.5).
    pub fn owner(&self) -> String {
        match self {
            Principal::Internal { session } => format!("internal:{session}"),
            p => p.name().unwrap_or("anonymous").to_owned(),
        }
    }
}

/// What the gate found in the way of a credential, before the rules ran.
/// Resolving credentials needs server state (cookies, the startup token), so
/// it happens in the gate; the rules only see the outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Nothing was presented.
    None,
    /// Something was presented and it checked out.
    Valid(Principal),
    /// Something was presented and it did not check out.
    Invalid,
}

/// Everything a decision may depend on, as plain owned data so a WebSocket
/// can keep the facts of its upgrade and be decided again after a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The TCP peer (IPv4-mapped IPv6 already folded to IPv4).
    pub peer: IpAddr,
    /// The client after the trusted-proxy walk of SPEC §2.2.
    pub client: IpAddr,
    /// HTTP method, upper case (`GET` for a WebSocket upgrade). Borrowed
    /// for the standard methods: the gate reads every request.
    pub method: Cow<'static, str>,
    /// The raw request path as received (percent-encoding intact), no query.
    pub path: String,
    /// The Host header (or a trusted proxy's `X-Forwarded-Host`).
    pub host: Option<String>,
    /// The Origin header, if any.
    pub origin: Option<String>,
    /// `http` or `https` (directly or per a trusted proxy).
    pub scheme: Cow<'static, str>,
    pub transport: Transport,
    pub credential: Credential,
}

/// What a rule's admission may do (`access:`, SPEC §2.5).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AccessLevel {
    /// Everything the route offers (the default).
    #[default]
    Full,
    /// Read-only: unsafe methods are refused with 403 `read_only`; sockets
    /// receive but do not send.
    Read,
}

impl AccessLevel {
    /// `full` or `read`.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessLevel::Full => "full",
            AccessLevel::Read => "read",
        }
    }
}

/// The action a rule takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Authenticate,
    Deny,
}

/// Why a request was refused; the string form is the `reason` field of every
/// denial body and log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    HostNotAllowed,
    OriginNotAllowed,
    NonCanonicalPath,
    BadForwardingHeader,
    NoCredential,
    BadCredential,
    RuleDeny,
    NoRuleMatched,
    TooManyFailures,
    /// A read-only admission (`access: read`) tried to change something.
    ReadOnly,
}

impl Reason {
    /// Every reason, in declaration order (`ALL[r as usize] == r`).
    pub const ALL: [Reason; 10] = [
        Reason::HostNotAllowed,
        Reason::OriginNotAllowed,
        Reason::NonCanonicalPath,
        Reason::BadForwardingHeader,
        Reason::NoCredential,
        Reason::BadCredential,
        Reason::RuleDeny,
        Reason::NoRuleMatched,
        Reason::TooManyFailures,
        Reason::ReadOnly,
    ];

    /// The wire name (`host_not_allowed`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::HostNotAllowed => "host_not_allowed",
            Reason::OriginNotAllowed => "origin_not_allowed",
            Reason::NonCanonicalPath => "non_canonical_path",
            Reason::BadForwardingHeader => "bad_forwarding_header",
            Reason::NoCredential => "no_credential",
            Reason::BadCredential => "bad_credential",
            Reason::RuleDeny => "rule_deny",
            Reason::NoRuleMatched => "no_rule_matched",
            Reason::TooManyFailures => "too_many_failures",
            Reason::ReadOnly => "read_only",
        }
    }

    /// The HTTP status this reason is answered with (SPEC §2.4).
    pub fn status(self) -> u16 {
        match self {
            Reason::NonCanonicalPath | Reason::BadForwardingHeader => 400,
            Reason::NoCredential | Reason::BadCredential => 401,
            Reason::TooManyFailures => 429,
            _ => 403,
        }
    }
}

/// The outcome of [`CompiledPolicy::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// `Ok(principal)` to let the request through, `Err(reason)` to refuse it.
    pub verdict: Result<Principal, Reason>,
    /// The rule that decided, `None` for pre-rule checks and no match.
    pub rule: Option<Arc<str>>,
    /// The matched rule's action, `None` when no rule decided.
    pub action: Option<Action>,
}

mod client_ip;
mod compile;
mod credentials;
mod explain;
pub mod file;
mod glob;
mod host;
pub mod limits;
/// The names a machine is reached under (for the self-signed certificate).
pub use host::machine_names;
mod locate;
pub mod network;
mod presets;
mod rules;

pub use client_ip::{ClientView, ForwardHeaders};
pub use compile::{CompiledPolicy, LoadContext, PolicyError, PolicySummary};
pub use credentials::{hash_password, split_groups, ForwardAuth, TokenDigest, DEFAULT_SESSION_TTL};
pub use explain::{CheckLine, DecisionLine, Explanation, RequestView, RuleLine, VerdictView};
pub use glob::{non_canonical, strip_query};
/// Where the gate checks `Origin`; the proxy rewrites it exactly there.
pub use host::origin_checked;
pub use host::refusal as host_refusal;
pub use presets::{preset_text, OWN_PREFIX, PRESETS};
