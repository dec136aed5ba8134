//! Server-side sign-in sessions behind the `dashgate_session` cookie.
//!
//! The cookie holds 32 random bytes (base64url); the store keeps only their
//! SHA-256, so neither a log line nor a memory dump of the map yields a usable
//! cookie. Sessions expire after the policy's `session_ttl`; the store is
//! bounded by [`MAX_SESSIONS`] (expired ones are swept first, then the oldest
//! is evicted). A session never holds a chat child's internal principal:
//! [`Holder`] cannot be made from one, and [`Sessions::create`] takes only a
//! `Holder`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::policy::Principal;

/// Name of the session cookie.
pub const COOKIE: &str = "dashgate_session";
/// Sign-in sessions kept at once.
pub const MAX_SESSIONS: usize = 10_000;

type Key = [u8; 32];

fn key(id: &str) -> Key {
    Sha256::digest(id.as_bytes()).into()
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
    created: Instant,
    expires: Instant,
}

/// The store of sign-in sessions.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<Key, Entry>>,
}

impl Sessions {
    /// Start a session for `principal`; returns the cookie value.
    pub fn create(&self, principal: Holder, ttl: Duration) -> String {
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

    #[test]
    fn create_get_remove_expire() {
        let s = Sessions::default();
        let startup = || Holder::new(Principal::StartupToken).unwrap();
        let id = s.create(startup(), Duration::from_secs(60));
        assert_eq!(s.get(&id), Some(Principal::StartupToken));
        assert_eq!(s.get("other"), None);
        assert!(s.remove(&id));
        assert_eq!(s.get(&id), None);
        let id = s.create(startup(), Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.get(&id), None);
        assert_eq!(s.sweep(), 1);
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
