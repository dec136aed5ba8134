//! A connection's last admitted request, let in again without being read
//! and decided anew when the next one is the same, byte for byte.
//!
//! Why: a keep-alive client (a script polling `/api/status`, the UI's own
//! polling, a monitoring probe) sends the same request head again and
//! again, and reading it, hashing its token and running the rules is most
//! of what the gate costs (SPEC §5 bounds it at 5 % of a request).
//!
//! Why this is the same decision: a decision depends on the TCP peer, the
//! request head and the policy, and on state that changes with time: the
//! failure limiter (tokens) and the session store (cookies). The key is the
//! whole head (method, target, every header line in order) and the peer;
//! the policy must be the very one (its generation); and a hit still asks
//! the limiter and the session store, as [`super::decide`] would. Only
//! admissions are remembered: every refusal is decided, logged and
//! announced afresh. Neither a bad credential (it must count towards the
//! limiter) nor a chat child's internal one (valid only while its session
//! runs) is remembered. Decisions of a hit are counted in the metrics like
//! any other.
//!
//! The key holds the request's token, so it is compared in time that
//! depends on lengths only, and is bounded ([`MAX_KEY`]) so a connection
//! keeps at most a few KiB for it.
//!
//! A request that is not a repeat still finds its token's digest here when
//! the connection presented the same token before ([`Repeat::digest`]):
//! SHA-256 of the token is the largest single cost of deciding anew.

use std::cell::RefCell;
use std::net::SocketAddr;

use super::{Access, Head, Presented};
use crate::policy::{Credential, Principal, TokenDigest};
use crate::state::{AppState, LivePolicy};

/// The longest request head remembered (the key's bytes); longer ones are
/// decided every time, and the buffers shrink back.
pub const MAX_KEY: usize = 4096;

/// One connection's memory of its last admitted request. Not shared: each
/// connection's handler has its own (see `server::Gated`), and cloning
/// gives an empty one.
#[derive(Default)]
pub struct Repeat(RefCell<Inner>);

impl Clone for Repeat {
    fn clone(&self) -> Self {
        Self::default()
    }
}

#[derive(Default)]
struct Inner {
    /// The head being checked: built by [`Repeat::recall`], kept by
    /// [`Repeat::remember`].
    scratch: Vec<u8>,
    /// Whether `scratch` holds the current request's key (not too long).
    ready: bool,
    /// Requests in a row that were not a repeat.
    misses: u32,
    last: Option<Last>,
    /// The last token the connection presented, and its digest.
    token: Option<(Vec<u8>, TokenDigest)>,
}

/// The longest token whose digest is kept (longer ones are hashed each time).
const MAX_TOKEN: usize = 1024;

/// After this many requests in a row that were not a repeat (a client that
/// numbers its requests), only every [`SAMPLE`]th is keyed: a key costs
/// about a sixth of deciding, and such a connection would pay it for
/// nothing. A connection that starts repeating is found again within
/// `2 × SAMPLE` requests.
const STREAK: u32 = 4;
const SAMPLE: u32 = 16;

struct Last {
    key: Vec<u8>,
    generation: u64,
    access: Access,
}

impl Repeat {
    /// The admission of the last request again, if `head` is the same
    /// request under the same policy and the credential still holds.
    pub fn recall(&self, state: &AppState, live: &LivePolicy, head: &Head<'_>) -> Option<Access> {
        let mut inner = self.0.borrow_mut();
        let inner = &mut *inner;
        let misses = inner.misses;
        inner.misses = misses.wrapping_add(1);
        inner.ready =
            (misses < STREAK || misses.is_multiple_of(SAMPLE)) && key(&mut inner.scratch, head);
        let last = inner.last.as_ref()?;
        if !(inner.ready
            && last.generation == live.generation
            && same(&last.key, &inner.scratch)
            && still_holds(state, live, &last.access))
        {
            return None;
        }
        inner.ready = false;
        inner.misses = 0;
        let a = &last.access;
        state
            .metrics
            .decision(&live.counters, &live.compiled, a.index, Ok(()));
        state.metrics.gate_repeats.inc();
        Some(a.clone())
    }

    /// The digest of `token`, hashed once for as long as the connection
    /// presents the same token: a client that numbers its requests sends a
    /// new head every time, but seldom a new token. The token was in the
    /// remembered head already; it is compared in constant time as well.
    pub fn digest(&self, token: &[u8]) -> TokenDigest {
        let mut inner = self.0.borrow_mut();
        match &inner.token {
            Some((t, digest)) if same(t, token) => *digest,
            _ => {
                let digest = TokenDigest::of_bytes(token);
                inner.token = (token.len() <= MAX_TOKEN).then(|| (token.to_vec(), digest));
                digest
            }
        }
    }

    /// Remember `access`, the decision on the head [`Self::recall`] was
    /// last asked about, if it may be repeated.
    pub fn remember(&self, live: &LivePolicy, access: &Access) {
        let mut inner = self.0.borrow_mut();
        let inner = &mut *inner;
        if !inner.ready || !repeatable(access) {
            return;
        }
        let key = match inner.last.take() {
            Some(last) => std::mem::replace(&mut inner.scratch, last.key),
            None => std::mem::take(&mut inner.scratch),
        };
        inner.ready = false;
        inner.last = Some(Last {
            key,
            generation: live.generation,
            access: access.clone(),
        });
    }
}

/// Whether an admission may be repeated for the same head: not on a bad
/// credential (each one counts towards the limiter) nor on a chat child's
/// internal one (it lapses when its session ends, with no policy change).
fn repeatable(a: &Access) -> bool {
    match &a.facts().credential {
        Credential::Invalid => false,
        Credential::Valid(Principal::Internal { .. }) => false,
        Credential::Valid(_) | Credential::None => true,
    }
}

/// What [`super::decide`] would ask of the server's state again: a token's
/// client not held back by the failure limiter, a cookie's session still
/// signed in as the same user.
fn still_holds(state: &AppState, live: &LivePolicy, a: &Access) -> bool {
    match a.presented() {
        Presented::Token(_) => state
            .limiter
            .blocked(a.facts().client, live.compiled.auth_failures_per_minute())
            .is_none(),
        Presented::Cookie(id) => match &a.facts().credential {
            Credential::Valid(p) => state.sessions.get(id).as_ref() == Some(p),
            _ => state.sessions.get(id).is_none(),
        },
        Presented::None | Presented::Forwarded(_) => true,
    }
}

/// Visit the fields of the key of `head`: the peer, then method, target
/// and every header line in order. Keys are the fields as a length and its
/// bytes each, so no two heads share a key.
fn fields(head: &Head<'_>, mut visit: impl FnMut(&[u8])) {
    match head.peer {
        SocketAddr::V4(a) => visit(&a.ip().octets()),
        SocketAddr::V6(a) => visit(&a.ip().octets()),
    }
    visit(&head.peer.port().to_ne_bytes());
    visit(head.method.as_str().as_bytes());
    let uri = head.uri;
    visit(uri.scheme_str().map_or(&b"\xff"[..], str::as_bytes));
    visit(
        uri.authority()
            .map_or(&b"\xff"[..], |a| a.as_str().as_bytes()),
    );
    visit(
        uri.path_and_query()
            .map_or(&b""[..], |p| p.as_str().as_bytes()),
    );
    for (name, value) in head.headers {
        visit(name.as_str().as_bytes());
        visit(value.as_bytes());
    }
}

/// Write the key of `head` into `out`; `false` (and `out` empty) when it
/// would be longer than [`MAX_KEY`].
fn key(out: &mut Vec<u8>, head: &Head<'_>) -> bool {
    out.clear();
    let mut fits = true;
    fields(head, |b| {
        fits = fits && out.len() + 2 + b.len() <= MAX_KEY;
        if fits {
            // Fits in a `u16`: MAX_KEY does.
            out.extend_from_slice(&(b.len() as u16).to_ne_bytes());
            out.extend_from_slice(b);
        }
    });
    if !fits {
        out.clear();
        out.shrink_to(MAX_KEY);
    }
    fits
}

/// Whether two keys are equal, in time that depends on their lengths only:
/// a key holds a token, and a proxy may carry several users' requests on
/// one connection.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && std::hint::black_box(difference(a, b)) == 0
}

/// Zero when the equally long `a` and `b` are equal; the bytes are all
/// read whatever they hold (constant time for a given length).
fn difference(a: &[u8], b: &[u8]) -> u64 {
    debug_assert_eq!(a.len(), b.len());
    let mut diff = 0u64;
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in a8.remainder().iter().zip(b8.remainder()) {
        diff |= u64::from(x ^ y);
    }
    for (x, y) in a8.zip(b8) {
        let word = |c: &[u8]| u64::from_ne_bytes(c.try_into().expect("8 bytes"));
        diff |= word(x) ^ word(y);
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_as_bytes_do() {
        let long: Vec<u8> = (0..=255).collect();
        for (a, b) in [
            (&b""[..], &b""[..]),
            (b"abcdefgh", b"abcdefgh"),
            (b"abcdefgh", b"abcdefgx"),
            (b"abcdefghi", b"abcdefghj"),
            (b"xbcdefghi", b"abcdefghi"),
            (b"abc", b"abcd"),
            (&long[..], &long[..]),
        ] {
            assert_eq!(same(a, b), a == b, "{a:?} {b:?}");
        }
        let mut other = long.clone();
        for i in 0..other.len() {
            other[i] ^= 1;
            assert!(!same(&long, &other), "byte {i}");
            other[i] ^= 1;
        }
    }

    fn head_key(req: &http::Request<()>, peer: &str) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        key(&mut out, &Head::of(peer.parse().unwrap(), req)).then_some(out)
    }

    #[test]
    fn every_part_of_the_head_is_in_the_key() {
        let req = |f: &dyn Fn(http::request::Builder) -> http::request::Builder| {
            f(http::Request::builder()
                .uri("/api/status?x=1")
                .header("host", "a.lan")
                .header("authorization", "Bearer t"))
            .body(())
            .unwrap()
        };
        let base = head_key(&req(&|b| b), "127.0.0.1:5000").unwrap();
        assert_eq!(
            Some(&base),
            head_key(&req(&|b| b), "127.0.0.1:5000").as_ref()
        );
        let differ: Vec<Option<Vec<u8>>> = vec![
            head_key(&req(&|b| b), "127.0.0.2:5000"),
            head_key(&req(&|b| b), "127.0.0.1:5001"),
            head_key(&req(&|b| b.method("HEAD")), "127.0.0.1:5000"),
            head_key(&req(&|b| b.uri("/api/status?x=2")), "127.0.0.1:5000"),
            head_key(
                &req(&|b| b.uri("http://a.lan/api/status?x=1")),
                "127.0.0.1:5000",
            ),
            head_key(
                &req(&|b| b.header("authorization", "Bearer u")),
                "127.0.0.1:5000",
            ),
            head_key(
                &req(&|b| b.header("x-forwarded-for", "10.0.0.1")),
                "127.0.0.1:5000",
            ),
        ];
        for (i, k) in differ.iter().enumerate() {
            assert_ne!(k.as_ref(), Some(&base), "variant {i}");
        }
    }

    /// A small head: few choices per part, so equal heads come up often.
    #[derive(Debug, Clone, PartialEq)]
    struct Small {
        peer: String,
        method: &'static str,
        target: String,
        headers: Vec<(&'static str, String)>,
    }

    fn small() -> impl proptest::strategy::Strategy<Value = Small> {
        use proptest::prelude::*;
        let peer = prop::sample::select(vec!["127.0.0.1:1", "[::1]:1"]);
        let method = prop::sample::select(vec!["GET", "POST"]);
        let target = prop::sample::select(vec!["/a", "/a?", "http://h/a"]);
        // Names that run into values ("x-a" + "b" against "x-ab" + ""):
        // only a key that keeps fields apart tells those heads apart.
        let header = (prop::sample::select(vec!["x-a", "x-ab"]), "[ab]{0,2}");
        (peer, method, target, prop::collection::vec(header, 0..3)).prop_map(
            |(peer, method, target, headers)| Small {
                peer: peer.into(),
                method,
                target: target.into(),
                headers,
            },
        )
    }

    fn small_key(h: &Small) -> Vec<u8> {
        let mut b = http::Request::builder().method(h.method).uri(&h.target);
        for (k, v) in &h.headers {
            b = b.header(*k, v);
        }
        head_key(&b.body(()).unwrap(), &h.peer).unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        /// Two heads share a key exactly when they are the same head: the
        /// same peer, method, target and header lines in the same order.
        #[test]
        fn keys_are_equal_exactly_for_equal_heads(a in small(), b in small()) {
            proptest::prop_assert_eq!(small_key(&a) == small_key(&b), a == b);
        }
    }

    #[test]
    fn a_token_is_hashed_again_when_it_changes() {
        let r = Repeat::default();
        for t in [
            &b"one"[..],
            b"one",
            b"two",
            b"one",
            b"",
            &[b'x'; MAX_TOKEN + 1],
        ] {
            assert!(r.digest(t) == TokenDigest::of_bytes(t), "{t:?}");
        }
    }

    #[test]
    fn long_heads_are_not_remembered() {
        let big = "x".repeat(MAX_KEY);
        let req = http::Request::builder()
            .uri("/api/status")
            .header("x-big", big)
            .body(())
            .unwrap();
        assert_eq!(head_key(&req, "127.0.0.1:1"), None);
        let fits = http::Request::builder()
            .uri("/api/status")
            .header("x-big", "x".repeat(MAX_KEY - 64))
            .body(())
            .unwrap();
        let key = head_key(&fits, "127.0.0.1:1").expect("a head under the bound is kept");
        assert!(key.len() <= MAX_KEY);
    }
}
