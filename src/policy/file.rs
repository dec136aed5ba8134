//! The policy file as written (DSL version 1): serde types, strict.
//!
//! Every struct refuses unknown keys (`deny_unknown_fields`), so a typo such
//! as `frm:` is an error at its line and column instead of a rule that
//! silently matches everyone. Values are kept as written (strings for
//! networks, globs, methods); `compile` checks them and says where a bad one
//! is. The same types give `dashgate policy schema` its JSON Schema and
//! `/api/policy` its shape.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::{AccessLevel, Action, Transport};

/// A dashgate policy file.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "dashgate policy (DSL version 1)")]
pub struct PolicyFile {
    /// The DSL version; must be 1.
    pub version: u32,
    /// Start from a preset (`secure`, `insecure`, `lan`): its rules come after
    /// this file's, its networks and credentials are merged (this file wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<String>,
    /// Named address sets usable in `from` / `not_from`: CIDRs, single
    /// addresses, built-in or other defined names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub networks: BTreeMap<String, Vec<String>>,
    /// Peers whose forwarding headers are believed (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_proxies: Option<Vec<String>>,
    /// Host header allowlist against DNS rebinding: names, addresses,
    /// `*.suffix`, or `"*"` for any. Replaces the bind-address default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_hosts: Option<Vec<String>>,
    /// Origins allowed on WebSocket upgrades and unsafe methods:
    /// `same-host` (the default) or a list of origins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_origins: Option<Origins>,
    /// How callers prove who they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsFile>,
    /// Rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsFile>,
    /// Who sees whose chat sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat: Option<ChatFile>,
    /// First match wins; no match at all is a deny.
    #[serde(default)]
    pub rules: Vec<RuleFile>,
}

/// One rule. Absent fields match everything; entries inside a field are
/// OR-ed, different fields are AND-ed.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// Shown in logs, denials and `policy explain` (default `rule N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The client address must be in one of these networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<String>>,
    /// The client address must be in none of these networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_from: Option<Vec<String>>,
    /// Path globs: `*` one segment, `**` any depth, otherwise exact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// HTTP methods, upper case (a WebSocket upgrade is `GET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// `http` or `ws`; absent = both. Rarely needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// Principals by name: token names, user names, forward-auth users,
    /// `startup` (the startup token). The rule matches only a valid
    /// credential naming one of them; an anonymous caller reaching it is
    /// asked to sign in (401).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<String>>,
    /// Group names (`groups:` of tokens and users, or the forward-auth
    /// groups header); matched like `users`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// `full` (the default) or `read`: a read-only admission (unsafe
    /// methods 403 `read_only`, sockets that receive but do not send).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessLevel>,
    /// What to do when the rule matches.
    pub action: Action,
}

/// `chat:`: who sees whose chat sessions.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatFile {
    /// Groups whose members see, attach to and end every principal's chat
    /// sessions (everyone else: only their own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub see_all: Option<Vec<String>>,
}

/// `allowed_origins`: the word `same-host`, or a list of origins (which may
/// itself contain `same-host`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    SameHost,
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for Origins {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Origins;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("`same-host` or a list of origins")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Origins, E> {
                if s == "same-host" {
                    Ok(Origins::SameHost)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(s), &self))
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Origins, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    v.push(s);
                }
                Ok(Origins::List(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Origins {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Origins::SameHost => s.serialize_str("same-host"),
            Origins::List(v) => v.serialize(s),
        }
    }
}

impl JsonSchema for Origins {
    fn schema_name() -> Cow<'static, str> {
        "Origins".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`same-host`, or a list of origins (scheme://host[:port]) that may include `same-host`",
            "oneOf": [
                { "const": "same-host" },
                { "type": "array", "items": { "type": "string" } }
            ]
        })
    }
}

/// `credentials:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsFile {
    /// Accept the token minted at start or taken from `DASHGATE_TOKEN`
    /// (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_token: Option<bool>,
    /// Bearer tokens, stored only as SHA-256 hex (`dashgate token` makes one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<TokenFile>>,
    /// Users of the login page, with argon2id PHC hashes
    /// (`dashgate hash-password` makes one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserFile>>,
    /// A header naming the user, believed only from `trusted_proxies`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_auth: Option<ForwardAuthFile>,
    /// How long a sign-in lasts: `30s`, `15m`, `12h`, `7d` (default 12h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_ttl: Option<String>,
}

/// One bearer token.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    pub name: String,
    /// SHA-256 of the token, 64 hex digits. (Dropped from `/api/policy`.)
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// Groups the token's principal is in (rules' `groups`, `chat.see_all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}

/// One user of the login page.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserFile {
    pub name: String,
    /// An argon2id PHC string (`$argon2id$v=19$m=…`). (Dropped from
    /// `/api/policy`.)
    #[serde(skip_serializing_if = "String::is_empty")]
    pub password_hash: String,
    /// Groups the user is in (rules' `groups`, `chat.see_all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}

/// `credentials.forward_auth`. All three keys are required: a proxy on
/// loopback is "trusted" by address alone, and so is every local process,
/// so the proxy must also prove itself with a shared secret (SPEC §2.2).
/// The secret keys are optional here only so that a missing one is
/// reported with its position and what to do, rather than by serde.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuthFile {
    /// The header a trusted proxy sets to the signed-in user's name.
    pub user_header: String,
    /// The header in which the proxy sends the shared secret (such as
    /// `X-Dashgate-Proxy-Secret`); without it the user header is ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub secret_header: Option<String>,
    /// SHA-256 of the shared secret, 64 hex digits (`dashgate token` prints
    /// a secret and its hash). (Dropped from `/api/policy`.)
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(required)]
    pub secret_sha256: Option<String>,
    /// A header in which the proxy names the user's groups, comma-separated
    /// (believed under the same secret as `user_header`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_header: Option<String>,
}

/// `limits:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    /// Failed authentications per client IP per minute before 429 (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_failures_per_minute: Option<i64>,
}
