//! Loading a policy: parse, merge `extends`, validate every value, compile.
//!
//! Validation fails closed (SPEC §2): whatever is not understood is an error
//! naming the file, line, column, key path and what was expected, and no
//! policy is produced. Positions come from two places: serde_yaml's own for
//! syntax, type and unknown-key errors, and the marked tree of
//! [`super::locate`] for everything found after deserialisation.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::credentials::TokenDigest;
use super::credentials::{self, Credentials, ForwardAuth};
use super::file::{Origins, PolicyFile};
use super::host::{HostSet, OriginSet};
use super::limits;
use super::locate::{Doc, KeyPath, ParseError};
use super::network::{NetSet, Networks};
use super::rules::{compile_rule, Rule};
use super::{presets, ClientView, ForwardHeaders, Principal, Reason};

/// What the compiler needs to know about the server: the bind address and
/// the machine's name decide the default `allowed_hosts`, and the hosts of
/// `--allowed-host` / `DASHGATE_ALLOWED_HOSTS` are added to it (SPEC §2.3);
/// upstream mode moves the presets' paths under [`presets::OWN_PREFIX`]
/// (SPEC §6). Built with [`LoadContext::new`], so the extra hosts are always
/// checked.
#[derive(Debug, Clone)]
pub struct LoadContext {
    pub bind: IpAddr,
    /// The machine's host name (`uname -n`): on a wildcard bind it, and
    /// `NAME.local`, are allowed by default. Passed in, not looked up
    /// here, so the engine stays pure and its tests do not depend on the
    /// machine they run on.
    machine_name: Option<String>,
    /// `--allowed-host` / `DASHGATE_ALLOWED_HOSTS`, compiled.
    extra_hosts: HostSet,
    /// `--upstream` is set: dashgate's own routes are under `/.dashgate/`.
    upstream: bool,
}

impl LoadContext {
    /// A server bound to `bind`, with no machine name, no extra hosts and
    /// no upstream.
    pub fn new(bind: IpAddr) -> Self {
        Self {
            bind,
            machine_name: None,
            extra_hosts: HostSet::empty(),
            upstream: false,
        }
    }

    /// The machine's host name, for the default on a wildcard bind.
    #[must_use]
    pub fn with_machine_name(mut self, name: Option<String>) -> Self {
        self.machine_name = name;
        self
    }

    /// Hosts allowed on top of the policy's `allowed_hosts` (or its default).
    ///
    /// # Errors
    /// A malformed entry, with what was expected (`flag` names where it
    /// came from, e.g. `--allowed-host`).
    pub fn with_allowed_hosts(mut self, hosts: &[String], flag: &str) -> Result<Self, String> {
        let set = HostSet::from_list(hosts).map_err(|(_, m)| format!("{flag}: {m}"))?;
        self.extra_hosts = self.extra_hosts.union(&set);
        Ok(self)
    }

    /// Upstream mode (`--upstream`): the presets' paths are compiled under
    /// [`presets::OWN_PREFIX`].
    #[must_use]
    pub fn with_upstream(mut self, upstream: bool) -> Self {
        self.upstream = upstream;
        self
    }

    /// Whether the presets are compiled for upstream mode.
    pub fn upstream(&self) -> bool {
        self.upstream
    }
}

/// A policy error with the place it was found.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// Facts about the policy in force, for `/api/status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PolicySummary {
    /// File path, or `preset:NAME`.
    pub source: String,
    /// The preset named by `extends`, or the preset itself.
    pub preset: Option<String>,
    pub rules: usize,
    /// SHA-256 hex of the source text.
    pub sha256: String,
}

/// The default `limits.auth_failures_per_minute`.
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 10;

/// How deep `extends` may chain (a preset may extend another preset).
const MAX_EXTENDS_DEPTH: usize = 4;

/// A policy ready to decide: every network, glob and hash compiled once.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub(crate) summary: PolicySummary,
    pub(crate) rules: Vec<Rule>,
    pub(crate) trusted: NetSet,
    pub(crate) hosts: HostSet,
    pub(crate) origins: OriginSet,
    pub(crate) creds: Credentials,
    pub(crate) auth_failures: u32,
    /// `chat.see_all`: groups that see every chat session.
    pub(crate) see_all: Vec<String>,
    /// The merged file with secrets cleared, for `effective()`.
    pub(crate) merged: PolicyFile,
}

/// One file of an `extends` chain: the user's file first, then its preset.
struct Layer {
    file: PolicyFile,
    doc: Doc,
    /// The name errors are reported under (path or `preset:NAME`).
    source: String,
    /// Shown by `policy explain` next to each rule: `file` or `preset:NAME`.
    label: Arc<str>,
    /// A preset: embedded, or a file that is exactly a shipped preset's text
    /// (`--policy policies/secure.yaml`). Its paths name dashgate's own
    /// routes, so upstream mode puts them under the prefix.
    preset: bool,
}

/// An error found after parsing: which layer, which key path, and whether to
/// point at the key itself rather than its value.
pub(crate) struct Located {
    layer: usize,
    path: KeyPath,
    at_key: bool,
    message: String,
}

impl Located {
    pub(crate) fn value(path: KeyPath, message: String) -> Self {
        Located {
            layer: 0,
            path,
            at_key: false,
            message,
        }
    }
    pub(crate) fn key(path: KeyPath, message: String) -> Self {
        Located {
            layer: 0,
            path,
            at_key: true,
            message,
        }
    }
    pub(crate) fn in_layer(mut self, layer: usize) -> Self {
        self.layer = layer;
        self
    }
}

fn error_at(source: &str, (line, col): (usize, usize), message: String) -> PolicyError {
    PolicyError {
        file: source.to_owned(),
        line,
        col,
        message,
    }
}

/// serde_yaml writes " at line L column C" into its messages (once or, for
/// libyaml's errors, twice); the position goes up front instead.
fn strip_position(msg: &str) -> String {
    let mut out = String::new();
    let mut rest = msg;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " at line ".len()..];
        let after = after.trim_start_matches(|c: char| c.is_ascii_digit());
        let after = after.strip_prefix(" column ").unwrap_or(after);
        rest = after.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    out.push_str(rest);
    out
}

/// Parse one file: the located tree first (it catches duplicate and empty
/// keys that serde would accept), then the typed form.
fn parse_layer(text: &str, source: &str) -> Result<(PolicyFile, Doc), PolicyError> {
    let serde_err = |e: serde_yaml::Error| {
        let at = e.location().map_or((1, 1), |l| (l.line(), l.column()));
        error_at(source, at, strip_position(&e.to_string()))
    };
    if text.len() > limits::MAX_FILE_BYTES {
        let at = limits::position(text.as_bytes(), limits::MAX_FILE_BYTES);
        return Err(error_at(
            source,
            at,
            limits::too_big(Some(text.len() as u64)),
        ));
    }
    let doc = match Doc::parse(text) {
        Ok(doc) => doc,
        Err(ParseError::TooDeep(line, col)) => {
            return Err(error_at(source, (line, col), limits::too_deep()));
        }
        Err(ParseError::Syntax(line, col, msg)) => {
            // libyaml's wording is the more familiar one; fall back to ours.
            return Err(match serde_yaml::from_str::<PolicyFile>(text) {
                Err(e) => serde_err(e),
                Ok(_) => error_at(source, (line, col), format!("YAML syntax error: {msg}")),
            });
        }
    };
    if let Err((path, line, col, msg)) = doc.check_keys() {
        return Err(error_at(source, (line, col), format!("{path}: {msg}")));
    }
    let file: PolicyFile = serde_yaml::from_str(text).map_err(serde_err)?;
    if file.version != 1 {
        let at = doc.locate(&KeyPath::root().key("version"));
        let msg = format!("version: unsupported version {} (expected 1)", file.version);
        return Err(error_at(source, at, msg));
    }
    Ok((file, doc))
}

fn load_layers(
    text: &str,
    source: &str,
    label: &str,
    depth: usize,
) -> Result<Vec<Layer>, PolicyError> {
    let (file, doc) = parse_layer(text, source)?;
    if file.rules.is_empty() && file.extends.is_none() {
        let path = KeyPath::root().key("rules");
        let msg = "rules: no rules (expected at least one rule, or `extends:` a preset); \
                   with no rule every request is denied";
        return Err(error_at(source, doc.locate_key(&path), msg.to_owned()));
    }
    let extends = file.extends.clone();
    let mut layers = vec![Layer {
        file,
        doc,
        source: source.to_owned(),
        label: label.into(),
        preset: label.starts_with("preset:") || presets::PRESETS.iter().any(|(_, t)| *t == text),
    }];
    if let Some(name) = extends {
        let at = layers[0].doc.locate(&KeyPath::root().key("extends"));
        let Some(text) = presets::preset_text(&name) else {
            let msg = format!(
                "extends: unknown preset {name:?} (expected one of {})",
                presets::names()
            );
            return Err(error_at(source, at, msg));
        };
        if depth >= MAX_EXTENDS_DEPTH {
            return Err(error_at(
                source,
                at,
                "extends: presets extend each other too deeply".into(),
            ));
        }
        let label = format!("preset:{name}");
        layers.extend(load_layers(text, &label, &label, depth + 1)?);
    }
    Ok(layers)
}

impl CompiledPolicy {
    /// Read and compile a policy file.
    ///
    /// # Errors
    /// A [`PolicyError`] naming file:line:col.
    pub fn load_file(path: &Path, ctx: &LoadContext) -> Result<Self, PolicyError> {
        let source = path.display().to_string();
        let bytes = Self::read_file(path)?;
        Self::from_bytes(&bytes, &source, ctx)
    }

    /// Read a policy file, at most [`limits::MAX_FILE_BYTES`] of it: a
    /// bigger file is refused without being read whole.
    ///
    /// # Errors
    /// A [`PolicyError`] for an unreadable or too big file.
    pub fn read_file(path: &Path) -> Result<Vec<u8>, PolicyError> {
        use std::io::Read;
        let source = path.display().to_string();
        let cannot = |e: std::io::Error| {
            error_at(&source, (1, 1), format!("cannot read the policy file: {e}"))
        };
        let file = std::fs::File::open(path).map_err(cannot)?;
        let len = file.metadata().ok().map(|m| m.len());
        let mut bytes = Vec::new();
        file.take(limits::MAX_FILE_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(cannot)?;
        if bytes.len() > limits::MAX_FILE_BYTES {
            let at = limits::position(&bytes, limits::MAX_FILE_BYTES);
            let len = len.filter(|&n| n > limits::MAX_FILE_BYTES as u64);
            return Err(error_at(&source, at, limits::too_big(len)));
        }
        Ok(bytes)
    }

    /// Compile policy bytes as read by [`Self::read_file`].
    ///
    /// # Errors
    /// A [`PolicyError`] naming `source`:line:col (also for text that is
    /// not UTF-8).
    pub fn from_bytes(bytes: &[u8], source: &str, ctx: &LoadContext) -> Result<Self, PolicyError> {
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let at = limits::position(bytes, e.valid_up_to());
            error_at(source, at, "the policy file is not valid UTF-8".to_owned())
        })?;
        Self::from_str(text, source, ctx)
    }

    /// Compile an embedded preset (`secure`, `insecure`, `lan`).
    ///
    /// # Errors
    /// Unknown preset name.
    pub fn preset(name: &str, ctx: &LoadContext) -> Result<Self, PolicyError> {
        let source = format!("preset:{name}");
        let text = presets::preset_text(name).ok_or_else(|| {
            let msg = format!(
                "unknown preset {name:?} (expected one of {})",
                presets::names()
            );
            error_at(&source, (1, 1), msg)
        })?;
        let mut policy = Self::from_str(text, &source, ctx)?;
        policy.summary.preset = Some(name.to_owned());
        Ok(policy)
    }

    /// Compile policy text; `source` names it in errors and the summary.
    ///
    /// # Errors
    /// A [`PolicyError`] naming `source`:line:col.
    #[allow(clippy::should_implement_trait)] // needs a source name and a context
    pub fn from_str(text: &str, source: &str, ctx: &LoadContext) -> Result<Self, PolicyError> {
        let label = if source.starts_with("preset:") {
            source
        } else {
            "file"
        };
        let layers = load_layers(text, source, label, 0)?;
        let mut policy = compile(&layers, ctx).map_err(|e| {
            let layer = &layers[e.layer];
            let at = if e.at_key {
                layer.doc.locate_key(&e.path)
            } else {
                layer.doc.locate(&e.path)
            };
            let prefix = if e.path.0.is_empty() {
                String::new()
            } else {
                format!("{}: ", e.path)
            };
            error_at(&layer.source, at, format!("{prefix}{}", e.message))
        })?;
        policy.summary = PolicySummary {
            source: source.to_owned(),
            preset: layers[0].file.extends.clone(),
            rules: policy.rules.len(),
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
        };
        Ok(policy)
    }

    /// The client after SPEC §2.2.
    ///
    /// # Errors
    /// `Reason::BadForwardingHeader` for a malformed entry from a trusted proxy.
    pub fn client(&self, peer: IpAddr, fwd: &ForwardHeaders) -> Result<ClientView, Reason> {
        self.client_detailed(peer, fwd)
            .map_err(|_| Reason::BadForwardingHeader)
    }

    /// Like [`Self::client`], with the malformed entry named (for logs and
    /// `policy explain`).
    ///
    /// # Errors
    /// A message naming the malformed header entry.
    pub fn client_detailed(
        &self,
        peer: IpAddr,
        fwd: &ForwardHeaders,
    ) -> Result<ClientView, String> {
        super::client_ip::resolve(&self.trusted, peer, fwd)
    }

    /// Whether `ip` is listed in `trusted_proxies`.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.trusted.contains(ip)
    }
    /// The principal of a token listed under `credentials.tokens`.
    pub fn verify_token(&self, token: &str) -> Option<Principal> {
        self.creds.verify_token(&TokenDigest::of(token))
    }
    /// [`Self::verify_token`] for a token already hashed.
    pub fn verify_token_digest(&self, token: &TokenDigest) -> Option<Principal> {
        self.creds.verify_token(token)
    }
    /// The principal of a user whose password checks out (slow: argon2).
    pub fn verify_password(&self, user: &str, password: &str) -> Option<Principal> {
        self.creds.verify_password(user, password)
    }
    /// The PHC hash `user` signs in against, if the user is listed (kept
    /// by a session, hashed, to end it when the hash changes).
    pub fn password_hash(&self, user: &str) -> Option<&str> {
        let users = &self.creds.users;
        users
            .iter()
            .find(|(n, _)| n == user)
            .map(|(_, h)| h.as_str())
    }
    /// The principal `policy explain --user NAME` stands for: a user, else a
    /// token of that name, else `startup`, else (with forward auth) a
    /// forwarded user in `groups`. Groups are only taken for a forwarded
    /// user: the others' come from `credentials`.
    ///
    /// # Errors
    /// No credential has that name, or groups given for one that has.
    pub fn principal_named(&self, name: &str, groups: &[String]) -> Result<Principal, String> {
        let c = &self.creds;
        let p = if c.users.iter().any(|(n, _)| n == name) {
            Principal::User { name: name.into() }
        } else if c.tokens.iter().any(|(n, _)| n == name) {
            Principal::Token { name: name.into() }
        } else if name == "startup" {
            Principal::StartupToken
        } else if c.forward_auth.is_some() {
            return Ok(Principal::Forwarded {
                name: name.into(),
                groups: groups.to_vec(),
            });
        } else {
            return Err(format!(
                "--user {name}: no user or token of that name in the policy's credentials"
            ));
        };
        if !groups.is_empty() {
            return Err(format!(
                "--group is for forwarded users; {name}'s groups come from the policy's credentials"
            ));
        }
        Ok(p)
    }
    /// Whether the startup token is accepted (`credentials.startup_token`).
    pub fn startup_token_enabled(&self) -> bool {
        self.creds.startup_token
    }
    /// The header a trusted proxy names the user in, if configured.
    pub fn forward_auth_header(&self) -> Option<&str> {
        self.creds.forward_auth.as_ref().map(|f| &*f.user_header)
    }
    /// `credentials.forward_auth`, if configured: its headers and the
    /// check of the proxy's shared secret.
    pub fn forward_auth(&self) -> Option<&ForwardAuth> {
        self.creds.forward_auth.as_ref()
    }
    /// How long a sign-in lasts.
    pub fn session_ttl(&self) -> Duration {
        self.creds.session_ttl
    }
    /// Failed authentications per client IP per minute before 429.
    pub fn auth_failures_per_minute(&self) -> u32 {
        self.auth_failures
    }
    /// Whether any rule can ask for a credential (then the server prints
    /// the `open …?token=` line at start).
    pub fn can_require_auth(&self) -> bool {
        self.rules
            .iter()
            .any(|r| r.action == super::Action::Authenticate)
    }
    /// Source, preset, rule count and hash, for `/api/status`.
    pub fn summary(&self) -> PolicySummary {
        self.summary.clone()
    }
    /// The merged policy (`extends` applied) as JSON, secrets removed:
    /// token and password hashes are dropped, names kept.
    pub fn effective(&self) -> serde_json::Value {
        serde_json::to_value(&self.merged).unwrap_or(serde_json::Value::Null)
    }
}

/// The first layer (the user's file before its presets) that sets a field.
fn first<'a, T>(
    layers: &'a [Layer],
    get: impl Fn(&'a PolicyFile) -> Option<&'a T>,
) -> Option<(usize, &'a T)> {
    layers
        .iter()
        .enumerate()
        .find_map(|(i, l)| get(&l.file).map(|v| (i, v)))
}

fn compile(layers: &[Layer], ctx: &LoadContext) -> Result<CompiledPolicy, Located> {
    let root = KeyPath::root();

    // Networks: the file wins over its presets on a shared name.
    let mut defs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut owner: BTreeMap<String, usize> = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate().rev() {
        for (name, entries) in &layer.file.networks {
            defs.insert(name.clone(), entries.clone());
            owner.insert(name.clone(), i);
        }
    }
    let net_err = |e: super::network::NetError| {
        let (name, idx) = e.at.expect("definition errors name their network");
        let path = root.key("networks").key(&name);
        let layer = owner[&name];
        match idx {
            Some(i) => Located::value(path.index(i), e.message).in_layer(layer),
            None => Located::key(path, e.message).in_layer(layer),
        }
    };
    let mut nets = Networks::new(&defs).map_err(net_err)?;
    // Resolve every definition, used or not: nothing is skipped silently.
    for name in defs.keys() {
        nets.check(name).map_err(net_err)?;
    }

    let trusted = match first(layers, |f| f.trusted_proxies.as_ref()) {
        None => NetSet::default(),
        Some((l, list)) => Arc::unwrap_or_clone(nets.resolve_list(list).map_err(|(i, e)| {
            Located::value(root.key("trusted_proxies").index(i), e.message).in_layer(l)
        })?),
    };

    let hosts = match first(layers, |f| f.allowed_hosts.as_ref()) {
        None => HostSet::default_for(ctx.bind, ctx.machine_name.as_deref()),
        Some((l, list)) if list.is_empty() => {
            let msg = "empty list (expected at least one host; remove the key for the default)";
            return Err(Located::value(root.key("allowed_hosts"), msg.into()).in_layer(l));
        }
        Some((l, list)) => HostSet::from_list(list)
            .map_err(|(i, m)| Located::value(root.key("allowed_hosts").index(i), m).in_layer(l))?,
    }
    .union(&ctx.extra_hosts);

    let origins = match first(layers, |f| f.allowed_origins.as_ref()) {
        None | Some((_, Origins::SameHost)) => OriginSet::default(),
        Some((l, Origins::List(list))) => OriginSet::from_list(list).map_err(|(i, m)| {
            Located::value(root.key("allowed_origins").index(i), m).in_layer(l)
        })?,
    };

    let (creds, merged_creds) =
        credentials::compile(layers.iter().map(|l| l.file.credentials.as_ref()))?;

    let auth_failures = match first(layers, |f| {
        f.limits.as_ref()?.auth_failures_per_minute.as_ref()
    }) {
        None => DEFAULT_AUTH_FAILURES_PER_MINUTE,
        Some((l, &n)) => u32::try_from(n).ok().filter(|&n| n > 0).ok_or_else(|| {
            let path = root.key("limits").key("auth_failures_per_minute");
            Located::value(
                path,
                format!("{n} is not allowed (expected a positive whole number, such as 10)"),
            )
            .in_layer(l)
        })?,
    };

    let mut rules = Vec::new();
    let mut merged_rules = Vec::new();
    for (l, layer) in layers.iter().enumerate() {
        // A preset's paths name dashgate's own routes: in upstream mode
        // those are under the prefix (the user's own rules are as written).
        let prefixed = ctx.upstream && layer.preset;
        for (i, rf) in layer.file.rules.iter().enumerate() {
            let path = root.key("rules").index(i);
            let owned;
            let rf = if prefixed && rf.paths.is_some() {
                let mut r = rf.clone();
                r.paths = r
                    .paths
                    .map(|ps| ps.iter().map(|p| presets::own_path(p)).collect());
                owned = r;
                &owned
            } else {
                rf
            };
            let rule = compile_rule(rf, rules.len() + 1, &layer.label, &mut nets, &path)
                .map_err(|e| e.in_layer(l))?;
            check_subjects(&rule, &creds, &path).map_err(|e| e.in_layer(l))?;
            let mut shown = rf.clone();
            shown.name = Some(rule.name.to_string());
            merged_rules.push(shown);
            rules.push(rule);
        }
    }

    let see_all = match first(layers, |f| f.chat.as_ref()?.see_all.as_ref()) {
        None => Vec::new(),
        Some((l, list)) => {
            let here = root.key("chat").key("see_all");
            for (i, g) in list.iter().enumerate() {
                if !creds.knows_group(g) {
                    return Err(Located::value(here.index(i), unknown_group(g)).in_layer(l));
                }
            }
            list.clone()
        }
    };

    let merged = PolicyFile {
        version: 1,
        extends: layers[0].file.extends.clone(),
        networks: defs.clone(),
        trusted_proxies: first(layers, |f| f.trusted_proxies.as_ref()).map(|(_, v)| v.clone()),
        allowed_hosts: first(layers, |f| f.allowed_hosts.as_ref()).map(|(_, v)| v.clone()),
        allowed_origins: first(layers, |f| f.allowed_origins.as_ref()).map(|(_, v)| v.clone()),
        credentials: Some(merged_creds),
        limits: Some(super::file::LimitsFile {
            auth_failures_per_minute: Some(i64::from(auth_failures)),
        }),
        chat: (!see_all.is_empty()).then(|| super::file::ChatFile {
            see_all: Some(see_all.clone()),
        }),
        rules: merged_rules,
    };
    Ok(CompiledPolicy {
        summary: PolicySummary {
            source: String::new(),
            preset: None,
            rules: rules.len(),
            sha256: String::new(),
        },
        rules,
        trusted,
        hosts,
        origins,
        creds,
        auth_failures,
        see_all,
        merged,
    })
}

fn unknown_group(g: &str) -> String {
    format!(
        "no credential is in group {g:?} (expected a group listed under a token's or user's \
         `groups:` in credentials; a typo would match nobody)"
    )
}

/// A rule's `users` and `groups` must name principals and groups some
/// credential has: a typo would otherwise silently match nobody.
fn check_subjects(rule: &Rule, creds: &Credentials, path: &KeyPath) -> Result<(), Located> {
    for (i, u) in rule.users.iter().flatten().enumerate() {
        if !creds.knows_user(u) {
            let msg = format!(
                "no credential is named {u:?} (expected a token or user name from \
                 credentials, or `startup`; a typo would match nobody)"
            );
            return Err(Located::value(path.key("users").index(i), msg));
        }
    }
    for (i, g) in rule.groups.iter().flatten().enumerate() {
        if !creds.knows_group(g) {
            return Err(Located::value(
                path.key("groups").index(i),
                unknown_group(g),
            ));
        }
    }
    Ok(())
}
