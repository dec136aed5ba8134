//! Server-side sign-in sessions behind the `dashgate_session` cookie.
//!
//! The cookie holds 32 random bytes (base64url); the store keeps only their
//! SHA-256, so neither a log line nor a memory dump of the map yields a usable
//! cookie. Sessions expire after the policy's `session_ttl`; the store is
//! bounded by [`MAX_SESSIONS`] (expired ones are swept first, then the oldest
//! is evicted). A session never holds a chat child's internal principal:
//! [`Holder`] cannot be made from one, and [`Sessions::create`] takes only a
//! `Holder`.
//!
//! Each session remembers the credential that opened it ([`Opener`]), so a
//! reload that removes or changes that credential, or shortens
//! `session_ttl`, ends it ([`Sessions::end_stale`], SPEC §4): a cookie must
//! not outlive the credential it was traded for.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::policy::{Principal, TokenDigest};

/// Name of the session cookie.
pub const COOKIE: &str = "dashgate_session";
/// Sign-in sessions kept at once.
pub const MAX_SESSIONS: usize = 10_000;

type Key = [u8; 32];

fn key(id: &str) -> Key {
    Sha256::digest(id.as_bytes()).into()
}

/// The credential a session was opened with, kept to decide after a reload
/// whether it still opens it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opener {
    /// A bearer token (the startup token or one of `credentials.tokens`),
    /// as its SHA-256: the form the policy stores it in, never the token.
    Token(TokenDigest),
    /// A user's password, checked against the PHC hash whose SHA-256 this
    /// is: a new hash (the password changed) is another credential.
    Password { user: String, hash: [u8; 32] },
}

impl Opener {
    /// A password sign-in of `user` against the PHC string `phc`.
    pub fn password(user: &str, phc: &str) -> Self {
        Opener::Password {
            user: user.to_string(),
            hash: Sha256::digest(phc.as_bytes()).into(),
        }
    }
}

/// Why a session ended early (the close reason its sockets get).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The credential that opened it was removed or changed.
    Revoked,
    /// A shorter `session_ttl` put its end in the past.
    Expired,
}

/// The sessions [`Sessions::end_stale`] ended, by key: to close their
/// sockets (which know the cookie, not its hash).
#[derive(Debug, Default)]
pub struct Ended(HashMap<Key, Ending>);

impl Ended {
    /// Why the session behind cookie `id` ended, if it was one of these.
    pub fn why(&self, id: &str) -> Option<Ending> {
        if self.0.is_empty() {
            return None;
        }
        self.0.get(&key(id)).copied()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A principal a sign-in session may hold: any but
/// [`Principal::Internal`]. A chat child's publish credential is valid only
/// on its own `/api/pub` socket while its session runs (SPEC §3.1); a cookie
/// would outlive the session and work from anywhere, so none can hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder(Principal);

impl Holder {
    /// `None` for [`Principal::Internal`].
    pub fn new(principal: Principal) -> Option<Self> {
        match principal {
            Principal::Internal { .. } => None,
            p => Some(Self(p)),
        }
    }

    pub fn principal(&self) -> &Principal {
        &self.0
    }
}

#[derive(Debug, Clone)]
struct Entry {
    principal: Holder,
    opener: Opener,
    created: Instant,
    expires: Instant,
}

impl Entry {
    /// Judge the entry under a policy with `ttl` whose credentials `holds`
    /// checks: why it must end, or `None` (its end cut to `created + ttl`
    /// when that comes sooner).
    fn judge(
        &mut self,
        now: Instant,
        ttl: Duration,
        holds: &impl Fn(&Principal, &Opener) -> bool,
    ) -> Option<Ending> {
        if !holds(self.principal.principal(), &self.opener) {
            return Some(Ending::Revoked);
        }
        self.expires = self.expires.min(self.created + ttl);
        (self.expires <= now).then_some(Ending::Expired)
    }
}

/// The store of sign-in sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<Key, Entry>>,
}

impl Sessions {
    /// Start a session for `principal`, opened with `opener`; returns the
    /// cookie value.
    pub fn create(&self, principal: Holder, opener: Opener, ttl: Duration) -> String {
        let mut b = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut b);
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let now = Instant::now();
        let mut map = self.map.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, e| e.expires > now);
            if map.len() >= MAX_SESSIONS {
                if let Some(k) = map.iter().min_by_key(|(_, e)| e.created).map(|(k, _)| *k) {
                    map.remove(&k);
                }
            }
        }
        map.insert(
            key(&id),
            Entry {
                principal,
                opener,
                created: now,
                expires: now + ttl,
            },
        );
        id
    }

    /// The principal of a live session (map lookup by hash: the hash of a
    /// guess reveals nothing about stored keys, so no timing leak).
    pub fn get(&self, id: &str) -> Option<Principal> {
        let map = self.map.lock();
        let e = map.get(&key(id))?;
        (e.expires > Instant::now()).then(|| e.principal.0.clone())
    }

    /// End a session (logout). Returns whether it existed.
    pub fn remove(&self, id: &str) -> bool {
        self.map.lock().remove(&key(id)).is_some()
    }

    /// End every session whose opener no longer `holds` under a reloaded
    /// policy, or that is older than its new `ttl`; cut the end of the rest
    /// to `created + ttl` when that is sooner. Returns the ended sessions.
    pub fn end_stale(&self, ttl: Duration, holds: impl Fn(&Principal, &Opener) -> bool) -> Ended {
        let now = Instant::now();
        let mut ended = HashMap::new();
        self.map.lock().retain(|k, e| {
            if e.expires <= now {
                return false; // it had ended already: swept, not counted
            }
            let why = e.judge(now, ttl, &holds);
            if let Some(why) = why {
                ended.insert(*k, why);
            }
            why.is_none()
        });
        Ended(ended)
    }

    /// [`Self::end_stale`] for the one session behind cookie `id` (a session
    /// started while a reload was being applied); whether it lives on.
    pub fn confirm(
        &self,
        id: &str,
        ttl: Duration,
        holds: impl Fn(&Principal, &Opener) -> bool,
    ) -> bool {
        let now = Instant::now();
        let mut map = self.map.lock();
        let k = key(id);
        let Some(e) = map.get_mut(&k) else {
            return false;
        };
        if e.judge(now, ttl, &holds).is_some() {
            map.remove(&k);
            return false;
        }
        true
    }

    /// Drop expired sessions; returns how many went.
    pub fn sweep(&self) -> usize {
        let now = Instant::now();
        let mut map = self.map.lock();
        let before = map.len();
        map.retain(|_, e| e.expires > now);
        before - map.len()
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of the session cookie in a `Cookie` header, if any.
pub fn from_cookie_header(header: &str) -> Option<&str> {
    header.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == COOKIE && !v.is_empty()).then_some(v)
    })
}

/// A `Set-Cookie` value for `id`: HttpOnly, SameSite=Strict, Path=/, and
/// Secure when the request came over https.
pub fn set_cookie(id: &str, ttl: Duration, secure: bool) -> String {
    let mut c = format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        ttl.as_secs()
    );
    if secure {
        c.push_str("; Secure");
    }
    c
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn clear_cookie(secure: bool) -> String {
    let mut c = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    if secure {
        c.push_str("; Secure");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup() -> Opener {
        Opener::Token(TokenDigest::of("t"))
    }

    #[test]
    fn create_get_remove_expire() {
        let s = Sessions::default();
        let startup_holder = || Holder::new(Principal::StartupToken).unwrap();
        let id = s.create(startup_holder(), startup(), Duration::from_secs(60));
        assert_eq!(s.get(&id), Some(Principal::StartupToken));
        assert_eq!(s.get("other"), None);
        assert!(s.remove(&id));
        assert_eq!(s.get(&id), None);
        let id = s.create(startup_holder(), startup(), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.get(&id), None);
        assert_eq!(s.sweep(), 1);
    }

    #[test]
    fn stale_openers_and_shorter_ttls_end_sessions() {
        let s = Sessions::default();
        let hour = Duration::from_secs(3600);
        let alice = Principal::User {
            name: "alice".into(),
        };
        let old = s.create(
            Holder::new(Principal::StartupToken).unwrap(),
            startup(),
            hour,
        );
        std::thread::sleep(Duration::from_millis(30));
        let pw = Opener::password("alice", "$argon2id$one");
        let young = s.create(Holder::new(alice.clone()).unwrap(), pw.clone(), hour);
        // Everything holds and the ttl is as long: nothing ends.
        assert!(s.end_stale(hour, |_, _| true).is_empty());
        // A ttl shorter than the old session's age ends it, not the young one.
        let ended = s.end_stale(Duration::from_millis(20), |_, _| true);
        assert_eq!(ended.len(), 1);
        assert_eq!(ended.why(&old), Some(Ending::Expired));
        assert_eq!(ended.why(&young), None);
        assert_eq!(s.get(&old), None);
        assert_eq!(s.get(&young), Some(alice.clone()));
        // ... and the young one now ends 20 ms after it began.
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(s.get(&young), None);
        // A changed password hash is another opener.
        let young = s.create(Holder::new(alice.clone()).unwrap(), pw.clone(), hour);
        let still = Opener::password("alice", "$argon2id$one");
        let ended = s.end_stale(hour, |_, o| *o == still);
        assert!(ended.is_empty());
        let ended = s.end_stale(hour, |_, o| {
            *o == Opener::password("alice", "$argon2id$two")
        });
        assert_eq!(ended.why(&young), Some(Ending::Revoked));
        assert!(s.is_empty());
        // One session confirmed on its own.
        let id = s.create(Holder::new(alice).unwrap(), pw, hour);
        assert!(s.confirm(&id, hour, |_, _| true));
        assert!(!s.confirm(&id, hour, |_, _| false));
        assert_eq!(s.get(&id), None);
        assert!(!s.confirm("unknown", hour, |_, _| true));
    }

    #[test]
    fn no_session_holds_an_internal_principal() {
        let internal = Principal::Internal {
            session: "0123456789abcdef".into(),
        };
        assert_eq!(Holder::new(internal), None);
        let user = Principal::User { name: "a".into() };
        assert_eq!(Holder::new(user.clone()).map(|h| h.0), Some(user));
    }

    #[test]
    fn cookie_header_parsing() {
        assert_eq!(
            from_cookie_header("a=1; dashgate_session=xyz; b=2"),
            Some("xyz")
        );
        assert_eq!(from_cookie_header("dashgate_session="), None);
        assert_eq!(from_cookie_header("x_dashgate_session=1"), None);
    }

    #[test]
    fn cookie_attributes() {
        let c = set_cookie("v", Duration::from_secs(10), false);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/"));
        assert!(!c.contains("Secure"));
        assert!(set_cookie("v", Duration::from_secs(10), true).ends_with("; Secure"));
    }
}
