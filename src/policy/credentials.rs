//! `credentials:` compiled: bearer tokens (as SHA-256), users (argon2id),
//! forward auth, session lifetime, and the checks the gate calls before
//! `decide`.
//!
//! Why SHA-256 for tokens and argon2id for passwords: tokens are 32 random
//! bytes, so a fast hash cannot be brute-forced and keeps every request
//! cheap; passwords are chosen by people, so they get a slow, salted hash and
//! are only checked at sign-in.

use std::collections::HashMap;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::compile::Located;
use super::file::{CredentialsFile, ForwardAuthFile, TokenFile, UserFile};
use super::locate::KeyPath;
use super::Principal;

/// A presented bearer token as it is checked and kept: its SHA-256.
///
/// Hashed once per request, then compared (in constant time) with every
/// stored hash it may match: the startup token, `credentials.tokens`, a chat
/// child's internal token. An open WebSocket keeps this to be decided again
/// after a reload, never the token itself.
#[derive(Clone, Copy)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &str) -> Self {
        Self::of_bytes(token.as_bytes())
    }

    pub fn of_bytes(token: &[u8]) -> Self {
        Self(Sha256::digest(token).into())
    }

    /// Constant-time comparison with a stored SHA-256 (as four words:
    /// `subtle` fences each element, and this runs on every request).
    pub fn matches(&self, sha256: &[u8; 32]) -> bool {
        words(&self.0).ct_eq(&words(sha256)).into()
    }
}

fn words(b: &[u8; 32]) -> [u64; 4] {
    std::array::from_fn(|i| {
        let mut w = [0; 8];
        w.copy_from_slice(&b[i * 8..i * 8 + 8]);
        u64::from_ne_bytes(w)
    })
}

impl PartialEq for TokenDigest {
    fn eq(&self, other: &Self) -> bool {
        self.matches(&other.0)
    }
}

impl Eq for TokenDigest {}

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(<redacted>)")
    }
}

/// The default `session_ttl`.
pub const DEFAULT_SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The compiled credentials.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub startup_token: bool,
    pub tokens: Vec<(String, [u8; 32])>,
    /// (name, PHC string), checked to parse as argon2id at load.
    pub users: Vec<(String, String)>,
    pub forward_auth: Option<ForwardAuth>,
    pub session_ttl: Duration,
    /// `groups:` of each token, by token name (absent: none).
    pub token_groups: HashMap<String, Vec<String>>,
    /// `groups:` of each user, by user name (absent: none).
    pub user_groups: HashMap<String, Vec<String>>,
}

/// `credentials.forward_auth` compiled: the user header is believed only
/// from a trusted proxy that also sends the shared secret (SPEC §2.2).
#[derive(Clone)]
pub struct ForwardAuth {
    /// The header naming the signed-in user.
    pub user_header: String,
    /// The header carrying the proxy's shared secret.
    pub secret_header: String,
    /// The header naming the user's groups, comma-separated, if any.
    pub groups_header: Option<String>,
    secret_sha256: [u8; 32],
}

impl ForwardAuth {
    /// Whether `value` (the secret header's value) is the shared secret:
    /// hashed, then compared in constant time.
    pub fn secret_matches(&self, value: &[u8]) -> bool {
        TokenDigest::of_bytes(value).matches(&self.secret_sha256)
    }
}

impl std::fmt::Debug for ForwardAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardAuth")
            .field("user_header", &self.user_header)
            .field("secret_header", &self.secret_header)
            .field("groups_header", &self.groups_header)
            .finish_non_exhaustive()
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            startup_token: true,
            tokens: Vec::new(),
            users: Vec::new(),
            forward_auth: None,
            session_ttl: DEFAULT_SESSION_TTL,
            token_groups: HashMap::new(),
            user_groups: HashMap::new(),
        }
    }
}

impl Credentials {
    /// The groups `credentials` gives a principal (a forwarded user's come
    /// from its proxy's header and travel with it).
    pub fn groups_of<'a>(&'a self, p: &'a super::Principal) -> &'a [String] {
        use super::Principal as P;
        let found = match p {
            P::Token { name } => self.token_groups.get(name),
            P::User { name } => self.user_groups.get(name),
            P::Forwarded { groups, .. } => return groups,
            _ => None,
        };
        found.map_or(&[], Vec::as_slice)
    }

    /// Whether some credential can carry `group`: listed under a token or a
    /// user, or any group when a proxy names groups (they are not known in
    /// advance).
    pub fn knows_group(&self, group: &str) -> bool {
        self.forward_auth
            .as_ref()
            .is_some_and(|f| f.groups_header.is_some())
            || self
                .token_groups
                .values()
                .chain(self.user_groups.values())
                .any(|gs| gs.iter().any(|g| g == group))
    }

    /// Whether some credential can be the principal `name`: `startup`, a
    /// token, a user, or anyone when forward auth is configured (a proxy's
    /// users are not known in advance).
    pub fn knows_user(&self, name: &str) -> bool {
        name == "startup"
            || self.forward_auth.is_some()
            || self.tokens.iter().any(|(n, _)| n == name)
            || self.users.iter().any(|(n, _)| n == name)
    }

    /// The principal of a bearer token listed under `tokens`. Every stored
    /// hash is compared, in constant time, so timing tells nothing about
    /// which one (or whether one) matched.
    pub fn verify_token(&self, token: &TokenDigest) -> Option<Principal> {
        let mut found = None;
        for (name, hash) in &self.tokens {
            if token.matches(hash) && found.is_none() {
                found = Some(name);
            }
        }
        found.map(|name| Principal::Token { name: name.clone() })
    }

    /// The principal of a user whose password checks out. An unknown user
    /// still costs one argon2 verification, so response times do not tell
    /// which user names exist.
    pub fn verify_password(&self, user: &str, password: &str) -> Option<Principal> {
        let (name, phc, known) = match self.users.iter().find(|(n, _)| n == user) {
            Some((n, h)) => (n, h, true),
            None => {
                let (n, h) = self.users.first()?;
                (n, h, false)
            }
        };
        let hash = PasswordHash::new(phc).ok()?;
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok();
        (ok && known).then(|| Principal::User { name: name.clone() })
    }
}

/// Merge and check `credentials` of an `extends` chain, the user's file
/// first: a scalar is taken from the first layer that sets it, tokens and
/// users are united with the earlier layer winning on a shared name. Also
/// returns the merged section with every hash cleared, for `/api/policy`.
///
/// # Errors
/// The first bad value, located in its layer.
pub(crate) fn compile<'a>(
    layers: impl Iterator<Item = Option<&'a CredentialsFile>>,
) -> Result<(Credentials, CredentialsFile), Located> {
    let base = KeyPath::root().key("credentials");
    let mut creds = Credentials::default();
    let mut shown = CredentialsFile::default();
    let (mut startup, mut fwd, mut ttl) = (None, None, None);
    for (l, c) in layers.enumerate() {
        let Some(c) = c else { continue };
        startup = startup.or(c.startup_token);
        if let (None, Some(f)) = (&fwd, &c.forward_auth) {
            fwd = Some((
                compile_forward_auth(f).map_err(|e| e.in_layer(l))?,
                f.clone(),
            ));
        }
        if let (None, Some(t)) = (&ttl, &c.session_ttl) {
            let d =
                parse_ttl(t).map_err(|m| Located::value(base.key("session_ttl"), m).in_layer(l))?;
            ttl = Some((t.clone(), d));
        }
        let mut seen = Vec::new();
        for (i, t) in c.tokens.iter().flatten().enumerate() {
            let path = base.key("tokens").index(i);
            check_name(&t.name, &mut seen, &path, "token").map_err(|e| e.in_layer(l))?;
            let hash = parse_sha256(&t.sha256)
                .map_err(|m| Located::value(path.key("sha256"), m).in_layer(l))?;
            let groups = check_groups(t.groups.as_ref(), &path).map_err(|e| e.in_layer(l))?;
            if !creds.tokens.iter().any(|(n, _)| *n == t.name) {
                creds.tokens.push((t.name.clone(), hash));
                if let Some(g) = groups {
                    creds.token_groups.insert(t.name.clone(), g);
                }
                let entry = TokenFile {
                    name: t.name.clone(),
                    sha256: String::new(),
                    groups: t.groups.clone(),
                };
                shown.tokens.get_or_insert_with(Vec::new).push(entry);
            }
        }
        let mut seen = Vec::new();
        for (i, u) in c.users.iter().flatten().enumerate() {
            let path = base.key("users").index(i);
            check_name(&u.name, &mut seen, &path, "user").map_err(|e| e.in_layer(l))?;
            check_password_hash(&u.password_hash)
                .map_err(|m| Located::value(path.key("password_hash"), m).in_layer(l))?;
            let groups = check_groups(u.groups.as_ref(), &path).map_err(|e| e.in_layer(l))?;
            if !creds.users.iter().any(|(n, _)| *n == u.name) {
                creds.users.push((u.name.clone(), u.password_hash.clone()));
                if let Some(g) = groups {
                    creds.user_groups.insert(u.name.clone(), g);
                }
                let entry = UserFile {
                    name: u.name.clone(),
                    password_hash: String::new(),
                    groups: u.groups.clone(),
                };
                shown.users.get_or_insert_with(Vec::new).push(entry);
            }
        }
    }
    creds.startup_token = startup.unwrap_or(true);
    let (forward_auth, fwd_shown) = fwd.unzip();
    creds.forward_auth = forward_auth;
    creds.session_ttl = ttl.as_ref().map_or(DEFAULT_SESSION_TTL, |(_, d)| *d);
    shown.startup_token = Some(creds.startup_token);
    shown.forward_auth = fwd_shown.map(|f| ForwardAuthFile {
        secret_sha256: None,
        ..f
    });
    shown.session_ttl = Some(ttl.map_or_else(|| "12h".to_owned(), |(t, _)| t));
    Ok((creds, shown))
}

/// Check `credentials.forward_auth`: three header names and a hash, the
/// secret required (fail closed: without one, every local process could
/// sign in as anyone through a proxy trusted as `loopback`).
fn compile_forward_auth(f: &ForwardAuthFile) -> Result<ForwardAuth, Located> {
    let path = KeyPath::root().key("credentials").key("forward_auth");
    let header = |key: &str, name: &str, example: &str| {
        if valid_header_name(name) {
            Ok(())
        } else {
            let msg = format!("{name:?} is not a header name (expected a name such as {example})");
            Err(Located::value(path.key(key), msg))
        }
    };
    header("user_header", &f.user_header, "Remote-User")?;
    let (Some(secret_header), Some(secret_sha256)) = (&f.secret_header, &f.secret_sha256) else {
        let missing = match (&f.secret_header, &f.secret_sha256) {
            (None, None) => "secret_header and secret_sha256",
            (None, Some(_)) => "secret_header",
            _ => "secret_sha256",
        };
        let msg = format!(
            "needs {missing}: the proxy must prove itself with a shared secret, \
             or any local process could send {} and sign in as anyone (expected \
             secret_header: X-Dashgate-Proxy-Secret and secret_sha256: the hash \
             `dashgate token` prints for a new secret; see docs/policy.md, forward auth)",
            f.user_header
        );
        return Err(Located::key(path, msg));
    };
    header("secret_header", secret_header, "X-Dashgate-Proxy-Secret")?;
    if secret_header.eq_ignore_ascii_case(&f.user_header) {
        let msg = format!("{secret_header:?} is also the user_header (expected another header)");
        return Err(Located::value(path.key("secret_header"), msg));
    }
    let secret_sha256 =
        parse_sha256(secret_sha256).map_err(|m| Located::value(path.key("secret_sha256"), m))?;
    if let Some(g) = &f.groups_header {
        header("groups_header", g, "Remote-Groups")?;
        if g.eq_ignore_ascii_case(&f.user_header) || g.eq_ignore_ascii_case(secret_header) {
            let msg =
                format!("{g:?} is also the user_header or secret_header (expected another header)");
            return Err(Located::value(path.key("groups_header"), msg));
        }
    }
    Ok(ForwardAuth {
        user_header: f.user_header.clone(),
        secret_header: secret_header.clone(),
        groups_header: f.groups_header.clone(),
        secret_sha256,
    })
}

/// Check a credential's `groups:`: names without commas (a proxy's groups
/// header is split on them) or surrounding space, each once.
fn check_groups(
    groups: Option<&Vec<String>>,
    path: &KeyPath,
) -> Result<Option<Vec<String>>, Located> {
    let Some(groups) = groups else {
        return Ok(None);
    };
    let here = path.key("groups");
    let mut out: Vec<String> = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        if !valid_group(g) {
            let msg = format!(
                "{g:?} is not a group name (expected a name without commas or surrounding spaces)"
            );
            return Err(Located::value(here.index(i), msg));
        }
        if out.contains(g) {
            return Err(Located::value(
                here.index(i),
                format!("duplicate group {g:?}"),
            ));
        }
        out.push(g.clone());
    }
    Ok(Some(out))
}

/// Whether `g` can be a group name: not empty, no comma, no surrounding space.
pub(crate) fn valid_group(g: &str) -> bool {
    !g.is_empty() && !g.contains(',') && g.trim() == g
}

/// The groups of a proxy's groups header: split on commas, trimmed, empty
/// entries dropped.
pub fn split_groups(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

fn check_name(
    name: &str,
    seen: &mut Vec<String>,
    path: &KeyPath,
    what: &str,
) -> Result<(), Located> {
    if name.trim().is_empty() {
        return Err(Located::value(
            path.key("name"),
            format!("empty {what} name (expected a name)"),
        ));
    }
    // `startup` names the startup token in rules' `users`, and `anonymous`
    // owns the chat sessions of callers without a credential: a token or
    // user of either name would be mistaken for them.
    if name == "startup" || name == "anonymous" {
        return Err(Located::value(
            path.key("name"),
            format!("{what} name {name:?} is reserved (`startup` is the startup token, `anonymous` a caller without a credential; expected another name)"),
        ));
    }
    if seen.iter().any(|n| n == name) {
        return Err(Located::value(
            path.key("name"),
            format!("duplicate {what} name {name:?} (each name may be given once)"),
        ));
    }
    seen.push(name.to_owned());
    Ok(())
}

/// Parse a token's `sha256`: 64 hex digits, either case.
///
/// # Errors
/// What was expected.
pub fn parse_sha256(s: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
        return Err(format!(
            "{s:?} is not a SHA-256 (expected 64 hex digits; `dashgate token` prints a ready line)"
        ));
    }
    Ok(out)
}

/// Check that `s` is an argon2id PHC string with valid parameters.
///
/// # Errors
/// What was expected.
pub fn check_password_hash(s: &str) -> Result<(), String> {
    let expected = "expected an argon2id PHC string such as $argon2id$v=19$m=19456,t=2,p=1$…; \
                    `dashgate hash-password` prints one";
    let hash =
        PasswordHash::new(s).map_err(|e| format!("malformed password hash: {e} ({expected})"))?;
    if hash.algorithm != argon2::ARGON2ID_IDENT {
        return Err(format!(
            "password hash uses {} ({expected})",
            hash.algorithm
        ));
    }
    if hash.hash.is_none() || hash.salt.is_none() {
        return Err(format!("password hash has no salt or no hash ({expected})"));
    }
    argon2::Params::try_from(&hash)
        .map_err(|e| format!("bad argon2 parameters: {e} ({expected})"))?;
    Ok(())
}

/// Hash a password with argon2id and a fresh random salt.
///
/// # Errors
/// Only if argon2 refuses its own default parameters (it does not).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Parse a duration like `30s`, `15m`, `12h`, `7d`.
///
/// # Errors
/// What was expected.
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let err = || {
        format!("{s:?} is not a duration (expected a positive number and a unit s, m, h or d, such as 12h)")
    };
    let s = s.trim();
    let unit = match s.chars().last().ok_or_else(err)? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86400,
        _ => return Err(err()),
    };
    let n: u64 = s[..s.len() - 1].parse().map_err(|_| err())?;
    if n == 0 || s.starts_with('+') {
        return Err(err());
    }
    n.checked_mul(unit).map(Duration::from_secs).ok_or_else(err)
}

/// Whether `s` is a valid HTTP header name (RFC 9110 token).
pub fn valid_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl() {
        assert_eq!(parse_ttl("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(7 * 86400)));
        for bad in ["", "12", "h", "0h", "-1h", "1.5h", "12 hours", "+3h"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokens_and_passwords() {
        let hex = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; // "test"
        let creds = Credentials {
            tokens: vec![("ci".into(), parse_sha256(hex).unwrap())],
            users: vec![("alice".into(), hash_password("s3cret").unwrap())],
            ..Credentials::default()
        };
        assert_eq!(
            creds.verify_token(&TokenDigest::of("test")),
            Some(Principal::Token { name: "ci".into() })
        );
        assert_eq!(creds.verify_token(&TokenDigest::of("tesT")), None);
        assert!(parse_sha256(&hex.to_uppercase()).is_ok());
        assert!(parse_sha256(&hex[1..]).is_err());
        let phc = &creds.users[0].1;
        check_password_hash(phc).unwrap();
        assert!(creds.verify_password("alice", "s3cret").is_some());
        assert!(creds.verify_password("alice", "wrong").is_none());
        assert!(creds.verify_password("bob", "s3cret").is_none());
        assert!(check_password_hash("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaA").is_err());
        assert!(check_password_hash("hunter2").is_err());
    }
}
