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
use std::sync::Arc;

use super::{Access, Head, Presented, ReadRef};
use crate::metrics::Count;
use crate::policy::{Credential, Facts, Principal, TokenDigest};
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
    /// Where [`Repeat::remember`] writes a key before keeping it.
    scratch: Key,
    /// Whether [`Repeat::recall`] looked at the current request, so
    /// [`Repeat::remember`] may key it (see [`STREAK`]).
    keyed: bool,
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
    key: Key,
    generation: u64,
    access: Access,
    /// The decision's counter in the metrics, bumped again on a repeat.
    counted: Count,
    /// The policy's failure limit, for [`still_holds`].
    limit: u32,
}

impl Repeat {
    /// The admission of the last request again, if `head` is the same
    /// request under the same policy and the credential still holds.
    pub fn recall(&self, state: &AppState, head: &Head<'_>) -> Option<Access> {
        let mut inner = self.0.borrow_mut();
        let inner = &mut *inner;
        let misses = inner.misses;
        inner.misses = misses.wrapping_add(1);
        inner.keyed = misses < STREAK || misses.is_multiple_of(SAMPLE);
        let last = inner.last.as_ref()?;
        if !(inner.keyed
            && last.generation == state.generation()
            && last.key.is_of(head)
            && still_holds(state, last))
        {
            return None;
        }
        inner.keyed = false;
        inner.misses = 0;
        last.counted.inc();
        state.metrics.gate_repeats.inc();
        Some(last.access.clone())
    }

    /// The admission of the last request again, if `read` (a request read
    /// anew: a new head) reads exactly as it did, under the same policy,
    /// and a token is not held back. What changes with time is in the read
    /// (the credential was resolved afresh: a signed-out session, a revoked
    /// token read differently) or asked here (the failure limiter), as
    /// [`super::decide`] would. Counted as a decision, not as a repeat.
    pub fn reread(
        &self,
        state: &AppState,
        live: &LivePolicy,
        read: &ReadRef<'_>,
    ) -> Option<Access> {
        let inner = self.0.borrow();
        let last = inner.last.as_ref()?;
        if !(last.generation == live.generation
            && read.is(&last.access.read)
            && !held_back(state, last))
        {
            return None;
        }
        last.counted.inc();
        Some(last.access.clone())
    }

    /// The policy's verdict on `facts` (the principal, the deciding rule's
    /// index and name), if the connection's last admission was decided on
    /// the very same facts under the policy of `generation`: a request
    /// whose head differs (a trace id, a cache-busting query) is read
    /// anew, but the rules need not run again on what reads the same. What
    /// changes with time (the limiter, the sessions) is in the facts or
    /// asked by [`super::decide`] around this, as for any request.
    pub fn verdict(
        &self,
        generation: u64,
        facts: &Facts,
    ) -> Option<(Principal, Option<usize>, Option<Arc<str>>)> {
        let inner = self.0.borrow();
        let last = inner.last.as_ref()?;
        let a = &last.access;
        (last.generation == generation && a.facts() == facts)
            .then(|| (a.principal.clone(), a.index, a.rule.clone()))
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

    /// Remember `access`, the decision on `head`, the head [`Self::recall`]
    /// was last asked about, if it may be repeated. The key is written only
    /// here: a repeat is compared with the kept key in place.
    pub fn remember(&self, state: &AppState, live: &LivePolicy, head: &Head<'_>, access: &Access) {
        let mut inner = self.0.borrow_mut();
        let inner = &mut *inner;
        if !std::mem::take(&mut inner.keyed) || !repeatable(access) || !inner.scratch.write(head) {
            return;
        }
        let key = match inner.last.take() {
            Some(last) => std::mem::replace(&mut inner.scratch, last.key),
            None => std::mem::take(&mut inner.scratch),
        };
        let policy = &live.compiled;
        let counted = state
            .metrics
            .decision_counter(&live.counters, policy, access.index, Ok(()));
        inner.last = Some(Last {
            key,
            generation: live.generation,
            access: access.clone(),
            counted: counted.clone(),
            limit: policy.auth_failures_per_minute(),
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
fn still_holds(state: &AppState, last: &Last) -> bool {
    let a = &last.access;
    match a.presented() {
        Presented::Token(_) => !held_back(state, last),
        Presented::Cookie(id) => match &a.facts().credential {
            Credential::Valid(p) => state.sessions.get(id).as_ref() == Some(p),
            _ => state.sessions.get(id).is_none(),
        },
        Presented::None | Presented::Forwarded(_) => true,
    }
}

/// Whether the last admission's token is held back by the failure limiter
/// now. All a reread must ask: its credential was resolved afresh.
fn held_back(state: &AppState, last: &Last) -> bool {
    let a = &last.access;
    matches!(a.presented(), Presented::Token(_))
        && state
            .limiter
            .blocked(a.facts().client, last.limit)
            .is_some()
}

/// The key of a request head: the TCP peer, and the method, target and
/// every header line in order as one string of fields, each a length and
/// its bytes, so no two heads share a key. Each connection has its own
/// [`Repeat`], so the peer is the same for all its requests: compared
/// plainly, apart from the bytes (which hold the token).
#[derive(Default, PartialEq)]
#[cfg_attr(test, derive(Debug))]
struct Key {
    peer: Option<SocketAddr>,
    bytes: Vec<u8>,
}

impl Key {
    /// Make this the key of `head`; `false` (and the bytes empty) when it
    /// would be longer than [`MAX_KEY`].
    fn write(&mut self, head: &Head<'_>) -> bool {
        self.peer = Some(head.peer);
        let out = &mut self.bytes;
        out.clear();
        let mut w = Write { out, fits: true };
        fields(head, &mut w);
        let fits = w.fits;
        if !fits {
            out.clear();
            out.shrink_to(MAX_KEY);
        }
        fits
    }

    /// Whether this is the key of `head`, compared where it lies without
    /// writing the head's key out; the bytes in time that depends on the
    /// lengths only, as [`same`].
    fn is_of(&self, head: &Head<'_>) -> bool {
        let mut c = Compare {
            key: &self.bytes,
            at: 0,
            diff: 0,
        };
        fields(head, &mut c);
        self.peer == Some(head.peer)
            && c.at == self.bytes.len()
            && std::hint::black_box(c.diff) == 0
    }
}

/// What [`fields`] hands each field of a head to.
trait Visit {
    fn field(&mut self, bytes: &[u8]);
    /// A header line: its name (which holds no `:`), a `:`, its value.
    fn line(&mut self, name: &[u8], value: &[u8]);
}

/// Visit the fields of the key of `head` but the peer: method, target
/// and every header line in order.
#[inline(always)]
fn fields(head: &Head<'_>, v: &mut impl Visit) {
    v.field(head.method.as_str().as_bytes());
    let uri = head.uri;
    v.field(uri.scheme_str().map_or(&b"\xff"[..], str::as_bytes));
    v.field(
        uri.authority()
            .map_or(&b"\xff"[..], |a| a.as_str().as_bytes()),
    );
    v.field(
        uri.path_and_query()
            .map_or(&b""[..], |p| p.as_str().as_bytes()),
    );
    for (name, value) in head.headers {
        v.line(name.as_str().as_bytes(), value.as_bytes());
    }
}

/// Writes a key, or stops once it cannot fit in [`MAX_KEY`].
struct Write<'o> {
    out: &'o mut Vec<u8>,
    fits: bool,
}

impl Write<'_> {
    /// Whether `len` more bytes and their length fit.
    #[inline(always)]
    fn room(&mut self, len: usize) -> bool {
        self.fits = self.fits && self.out.len() + 2 + len <= MAX_KEY;
        if self.fits {
            // Fits in a `u16`: MAX_KEY does.
            self.out.extend_from_slice(&(len as u16).to_ne_bytes());
        }
        self.fits
    }
}

impl Visit for Write<'_> {
    #[inline(always)]
    fn field(&mut self, b: &[u8]) {
        if self.room(b.len()) {
            self.out.extend_from_slice(b);
        }
    }

    #[inline(always)]
    fn line(&mut self, name: &[u8], value: &[u8]) {
        if self.room(name.len() + 1 + value.len()) {
            self.out.extend_from_slice(name);
            self.out.push(b':');
            self.out.extend_from_slice(value);
        }
    }
}

/// Compares a head's fields with a kept key where it lies: `at` is where
/// the next field's length is, past the key's end once a length differs.
struct Compare<'k> {
    key: &'k [u8],
    at: usize,
    diff: u64,
}

impl Compare<'_> {
    /// The kept field of length `len` next, if its length is `len`.
    #[inline(always)]
    fn next(&mut self, len: usize) -> Option<&[u8]> {
        let end = self.at.saturating_add(2 + len);
        match self.key.get(self.at..end) {
            Some(&[l0, l1, ref kept @ ..]) if usize::from(u16::from_ne_bytes([l0, l1])) == len => {
                self.at = end;
                Some(kept)
            }
            _ => {
                self.at = usize::MAX;
                None
            }
        }
    }
}

impl Visit for Compare<'_> {
    #[inline(always)]
    fn field(&mut self, b: &[u8]) {
        if let Some(kept) = self.next(b.len()) {
            self.diff |= difference(kept, b);
        }
    }

    #[inline(always)]
    fn line(&mut self, name: &[u8], value: &[u8]) {
        if let Some(kept) = self.next(name.len() + 1 + value.len()) {
            let (n, v) = kept.split_at(name.len());
            let (colon, v) = v.split_at(1);
            // The `:` is compared too: a kept name longer than this one
            // has a name byte there (`ab: x` against `a: :x`).
            self.diff |= difference(n, name) | u64::from(colon[0] ^ b':') | difference(v, value);
        }
    }
}

/// Whether two keys are equal, in time that depends on their lengths only:
/// a key holds a token, and a proxy may carry several users' requests on
/// one connection.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && std::hint::black_box(difference(a, b)) == 0
}

/// Zero when the equally long `a` and `b` are equal; the bytes are all
/// read whatever they hold (constant time for a given length). Words at a
/// time, the last one overlapping the one before it: most fields of a head
/// are a few bytes long, and a byte loop over their tails is most of the
/// cost of comparing them.
#[inline(always)]
fn difference(a: &[u8], b: &[u8]) -> u64 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    if n >= 8 {
        let word = |s: &[u8]| u64::from_ne_bytes(s.try_into().expect("8 bytes"));
        let mut diff = word(&a[n - 8..]) ^ word(&b[n - 8..]);
        for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
            diff |= word(x) ^ word(y);
        }
        diff
    } else if n >= 4 {
        let word = |s: &[u8]| u32::from_ne_bytes(s.try_into().expect("4 bytes"));
        u64::from((word(&a[..4]) ^ word(&b[..4])) | (word(&a[n - 4..]) ^ word(&b[n - 4..])))
    } else {
        let mut diff = 0u8;
        for (x, y) in a.iter().zip(b) {
            diff |= x ^ y;
        }
        u64::from(diff)
    }
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
        // Every byte of every length is looked at (the word loads overlap
        // differently for each length).
        for n in 0..=long.len() {
            let a = &long[..n];
            let mut other = a.to_vec();
            assert!(same(a, &other), "length {n}");
            for i in 0..n {
                other[i] ^= 0x80;
                assert!(!same(a, &other), "length {n}, byte {i}");
                other[i] ^= 0x80;
            }
        }
    }

    fn head_key(req: &http::Request<()>, peer: &str) -> Option<Key> {
        let mut key = Key::default();
        key.write(&Head::of(peer.parse().unwrap(), req))
            .then_some(key)
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
        let differ: Vec<Option<Key>> = vec![
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
        // Names that run into values ("x-a" + "b" against "x-ab" + "",
        // "x-ab" + "" against "x-a" + ":"): only a key that keeps fields
        // apart tells those heads apart.
        let header = (prop::sample::select(vec!["x-a", "x-ab"]), "[ab:]{0,2}");
        (peer, method, target, prop::collection::vec(header, 0..3)).prop_map(
            |(peer, method, target, headers)| Small {
                peer: peer.into(),
                method,
                target: target.into(),
                headers,
            },
        )
    }

    fn small_request(h: &Small) -> http::Request<()> {
        let mut b = http::Request::builder().method(h.method).uri(&h.target);
        for (k, v) in &h.headers {
            b = b.header(*k, v);
        }
        b.body(()).unwrap()
    }

    fn small_key(h: &Small) -> Key {
        head_key(&small_request(h), &h.peer).unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]
        /// Two heads share a key exactly when they are the same head: the
        /// same peer, method, target and header lines in the same order.
        #[test]
        fn keys_are_equal_exactly_for_equal_heads(a in small(), b in small()) {
            proptest::prop_assert_eq!(small_key(&a) == small_key(&b), a == b);
        }

        /// The in-place comparison agrees: a kept key is the key of a head
        /// exactly when it is the same head.
        #[test]
        fn a_key_is_found_in_place_exactly_for_its_head(a in small(), b in small()) {
            let req = small_request(&b);
            let head = Head::of(b.peer.parse().unwrap(), &req);
            proptest::prop_assert_eq!(small_key(&a).is_of(&head), a == b);
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
        assert!(key.bytes.len() <= MAX_KEY);
    }
}
