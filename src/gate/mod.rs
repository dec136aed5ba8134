//! The one gate: `authorize()`.
//!
//! Every request — REST, WebSocket upgrade, static file — passes through this
//! filter before any route sees it (`routes::routes` wraps the whole tree
//! once). [`Intake::check`] builds [`Facts`] from the request where the
//! accept loop holds it (`read.rs`), resolves the credential and asks the
//! live policy for a decision; `authorize()` then either yields an
//! [`Access`] for the route or rejects with a
//! [`Denied`](crate::reject::Denied) that `reject::handle_rejection` turns
//! into the JSON of SPEC §2.4. There is no second path for WebSockets: an
//! upgrade is a `GET` with `transport: ws` in its facts, nothing more.
//!
//! Why decide before warp's tree rather than in a chain of warp extractors:
//! an extractor cannot borrow the request, so every header the gate reads
//! would be copied on every request (SPEC §5 bounds what the gate costs).

use std::cell::RefCell;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use warp::{Filter, Rejection};

use crate::policy::{
    AccessLevel, CompiledPolicy, Credential, Facts, Principal, Reason, TokenDigest, Transport,
};
use crate::reject::Denied;
use crate::state::{AppState, LivePolicy};

mod read;

/// The proxy reads a bearer token exactly as the gate did, so it strips
/// precisely the credential the gate admitted.
pub(crate) use read::bearer;
use read::{internal_allowed, read};
pub use read::{Head, OverTls, Read};

/// The credential a request presented, kept so an open WebSocket can be
/// decided again after a reload (a revoked token must close its sockets).
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Presented {
    #[default]
    None,
    /// A bearer token (`Authorization: Bearer` or `?token=`), hashed.
    Token(TokenDigest),
    /// A user named by a trusted proxy's forward-auth header, with the
    /// groups of its groups header.
    Forwarded(String, Vec<String>),
    /// The `dashgate_session` cookie of a signed-in browser.
    Cookie(String),
}

impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::None => f.write_str("None"),
            Presented::Token(_) => f.write_str("Token(<redacted>)"),
            Presented::Forwarded(u, g) => write!(f, "Forwarded({u:?}, {g:?})"),
            Presented::Cookie(_) => f.write_str("Cookie(<redacted>)"),
        }
    }
}

/// What the gate hands to a route: who the caller is and why it got in.
///
/// Shared rather than copied: an `Access` is moved through every future of
/// the route tree (small moves are cheap ones) and kept by every WebSocket
/// it opens. The fields are the [`Admission`]'s.
#[derive(Debug, Clone)]
pub struct Access(Arc<Admission>);

/// The gate's admission of one request (see [`Access`]).
#[derive(Debug)]
pub struct Admission {
    pub principal: Principal,
    /// The principal's groups under the policy that decided (its
    /// credential's `groups:`, or a forwarded user's header).
    pub groups: Vec<String>,
    /// What the deciding rule's `access:` lets it do (SPEC §2.5): a `read`
    /// admission's sockets receive but do not send. (Unsafe methods under
    /// it never get here: `decide` refuses them with `read_only`.)
    pub access: AccessLevel,
    /// The rule that allowed the request.
    pub rule: Option<Arc<str>>,
    /// A browser opened a page with a valid `?token=`: the route is replaced
    /// by a redirect that sets the session cookie and drops the token.
    pub token_visit: bool,
    /// What the decision was made on.
    read: Read,
}

impl std::ops::Deref for Access {
    type Target = Admission;

    fn deref(&self) -> &Admission {
        &self.0
    }
}

impl Admission {
    /// An admission of nobody to nothing, for [`Intake::check`] to fill in
    /// (it is handed out only once a decision admitted the request).
    fn blank() -> Self {
        Self {
            principal: Principal::Anonymous,
            groups: Vec::new(),
            access: AccessLevel::Read,
            rule: None,
            token_visit: false,
            read: Read::blank(),
        }
    }

    /// Whether the admitting rule made this request read-only.
    pub fn read_only(&self) -> bool {
        self.access == AccessLevel::Read
    }

    /// The name the caller's chat sessions are owned by (`anonymous` for
    /// an `allow` rule's anonymous caller).
    pub fn owner(&self) -> String {
        self.principal.owner()
    }

    /// The facts the decision was made on (kept by WebSockets for re-checks).
    pub fn facts(&self) -> &Facts {
        &self.read.facts
    }

    /// The credential the request presented.
    pub fn presented(&self) -> &Presented {
        &self.read.presented
    }

    /// Whether the credential presented is a bearer token in the request's
    /// first `Authorization` line (not `?token=`, not a cookie).
    pub fn bearer_header(&self) -> bool {
        self.read.bearer_header
    }

    /// The raw query string (may carry a token: never log it).
    pub fn query(&self) -> &str {
        &self.read.query
    }
}

/// The `authorize()` filter: lets a request into the route tree with its
/// [`Access`], or rejects it with the [`Denied`] that says why.
///
/// The decision was made on the request by [`Intake::check`], where the
/// accept loop holds it (`server::run`) and its headers can be read in
/// place, and handed here by [`Intake::serve`]. A request that reaches the
/// tree without one is refused: there is no way in that skips the gate,
/// only one that fails closed.
pub fn authorize() -> impl Filter<Extract = (Access,), Error = Rejection> + Clone {
    authorize_if(true)
}

/// [`authorize`] for a tree whose branches are chosen once, at start
/// (`routes::routes`: with an upstream or without): where `on` is false
/// the branch is "no such route", and the decision is left to the one
/// branch that is on. One filter for both, so choosing the branch adds no
/// layer that every request is polled through.
pub fn authorize_if(on: bool) -> impl Filter<Extract = (Access,), Error = Rejection> + Clone {
    warp::any().and_then(move || {
        if !on {
            return std::future::ready(Err(warp::reject::not_found()));
        }
        let decided = DECIDED
            .with(|d| d.borrow_mut().take())
            .unwrap_or_else(|| Err(Box::new(Denied::unread())));
        std::future::ready(decided.map_err(|d| warp::reject::custom(*d)))
    })
}

thread_local! {
    /// The gate's decision on the request being polled on this thread, from
    /// [`Served`] to [`authorize`], for the length of one poll. A
    /// thread-local set around the first poll only rather than a tokio
    /// task-local (which moves its value in and out on every poll) or a
    /// request extension (three allocations and a hash map insert).
    static DECIDED: RefCell<Option<Decided>> = const { RefCell::new(None) };
}

/// The gate's decision on one request. Two words: it is moved from the
/// accept loop to the route tree on every request, and a refusal is boxed
/// on its way into warp's rejection anyway.
type Decided = Result<Access, Box<Denied>>;

/// The gate's decision on one request, on its way to [`authorize`].
pub struct Intake(Decided);

impl Intake {
    /// Read the facts of `head` and decide them under the live policy.
    /// Every request, every time: nothing is remembered between two
    /// requests (SPEC §1).
    pub fn check(state: &AppState, head: Head<'_>) -> Self {
        let live = state.policy();
        // The admission is allocated first and the request read into it in
        // place: its facts are too large to move cheaply (a refusal drops
        // it unused).
        let mut access = Arc::new(Admission::blank());
        let a = Arc::get_mut(&mut access).expect("a new Arc is not shared");
        if let Err(denied) = read(state, &live.compiled, head, &mut a.read) {
            return Self(Err(Box::new(denied)));
        }
        match verdict(state, &live, &a.read) {
            Ok(v) => {
                a.groups = live.compiled.groups_of(&v.principal).to_vec();
                a.principal = v.principal;
                a.access = v.access;
                a.rule = v.rule;
                a.token_visit = v.token_visit;
                Self(Ok(Access(access)))
            }
            Err(denied) => Self(Err(Box::new(denied))),
        }
    }

    /// The decision [`Self::check`] made: the admission, or the refusal.
    /// It exists for the fuzz targets (`fuzz/`) and tests, which check
    /// what the gate let in without serving the route tree.
    pub fn decision(&self) -> Result<&Admission, &Denied> {
        match &self.0 {
            Ok(access) => Ok(access),
            Err(denied) => Err(denied),
        }
    }

    /// Answer the request with `answer`, the route tree's future for it,
    /// whose first poll finds this decision where [`authorize`] looks;
    /// `done` sees the answer (the server counts it), in the same future
    /// rather than one more around it.
    pub fn serve<F: Future, D: FnOnce(&F::Output)>(self, answer: F, done: D) -> Served<F, D> {
        Served {
            decided: Some(self.0),
            answer,
            done: Some(done),
        }
    }
}

pin_project_lite::pin_project! {
    /// The route tree's future for one request, with the gate's decision
    /// for its first poll: warp runs every filter of the tree, `authorize()`
    /// first, when the tree's future is first polled. A decision that
    /// `authorize()` did not take then is dropped, so a later look finds
    /// none and refuses (fails closed).
    pub struct Served<F, D> {
        decided: Option<Decided>,
        #[pin]
        answer: F,
        done: Option<D>,
    }
}

impl<F: Future, D: FnOnce(&F::Output)> Future for Served<F, D> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let answer = match this.decided.take() {
            None => this.answer.poll(cx),
            Some(decided) => {
                /// Puts back what the thread-local held, also if the poll
                /// panics.
                struct Restore(Option<Decided>);
                impl Drop for Restore {
                    fn drop(&mut self) {
                        let before = self.0.take();
                        DECIDED.with(|d| *d.borrow_mut() = before);
                    }
                }
                let _restore = Restore(DECIDED.with(|d| d.borrow_mut().replace(decided)));
                this.answer.poll(cx)
            }
        };
        if let Poll::Ready(out) = &answer {
            if let Some(done) = this.done.take() {
                done(out);
            }
        }
        answer
    }
}

/// Fold `::ffff:a.b.c.d` to `a.b.c.d` (SPEC §2.2).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// The first value of `name` in a query string, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    if query.is_empty() {
        return None;
    }
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            let v = v.replace('+', " ");
            percent_encoding::percent_decode_str(&v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Check a presented credential against the server and the policy.
pub fn resolve(state: &AppState, policy: &CompiledPolicy, p: &Presented) -> Credential {
    match p {
        Presented::None => Credential::None,
        Presented::Forwarded(name, groups) => Credential::Valid(Principal::Forwarded {
            name: name.clone(),
            groups: groups.clone(),
        }),
        // An unknown or expired cookie is no credential (a stale browser is
        // sent to sign in, not counted as an attack: ids are 256-bit random).
        Presented::Cookie(id) => state
            .sessions
            .get(id)
            .map_or(Credential::None, Credential::Valid),
        Presented::Token(t) => {
            if policy.startup_token_enabled()
                && state
                    .config
                    .startup_token
                    .as_ref()
                    .is_some_and(|s| s.matches(t))
            {
                return Credential::Valid(Principal::StartupToken);
            }
            match policy.verify_token_digest(t) {
                Some(p) => Credential::Valid(p),
                // A chat child's internal token is no credential here: it
                // counts only where `resolve_request` allows it.
                None => Credential::Invalid,
            }
        }
    }
}

/// [`resolve`], plus a chat child's internal credential where
/// [`internal_allowed`] (the publish route then holds it to its own channel).
pub(super) fn resolve_request(
    state: &AppState,
    policy: &CompiledPolicy,
    p: &Presented,
    internal: bool,
) -> Credential {
    let credential = resolve(state, policy, p);
    if let (Credential::Invalid, true, Presented::Token(t)) = (&credential, internal, p) {
        if let Some(session) = state.chat.verify_internal_digest(t) {
            return Credential::Valid(Principal::Internal { session });
        }
    }
    credential
}

/// The path with any query redacted, for logs.
pub fn log_path(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?[redacted]")
    }
}

/// What [`verdict`] admits a request with (the [`Admission`] but its facts).
struct Admitted {
    principal: Principal,
    access: AccessLevel,
    rule: Option<Arc<str>>,
    token_visit: bool,
}

/// Decide one request on the facts [`read`] found, where they lie. Pure
/// apart from the limiter, metrics, logging and the `access.denied` event.
fn verdict(state: &AppState, live: &LivePolicy, r: &Read) -> Result<Admitted, Denied> {
    let policy = &live.compiled;
    let facts = &r.facts;
    let deny = |reason: Reason, rule: Option<Arc<str>>| {
        let d = Denied::new(reason, rule);
        let path = log_path(&facts.path, &r.query);
        audit_denial(state, facts.client, &facts.method, &path, &d);
        d
    };
    let token = matches!(r.presented, Presented::Token(_));
    // Only tokens are guessed here, so only tokens are held back. A session
    // cookie (256 random bits, never counted) or a proxy's forward-auth user
    // is not: any web page can make the user's browser send bad `?token=`s
    // from the user's own address, and must not lock their session out.
    if token {
        let limit = policy.auth_failures_per_minute();
        if let Some(retry) = state.limiter.blocked(facts.client, limit) {
            let mut d = deny(Reason::TooManyFailures, None);
            d.retry_after = Some(retry.as_secs());
            return Err(d);
        }
    }
    let (verdict, index) = policy.decide_indexed(facts);
    let rule = index.map(|i| live.rule_name(i));
    let outcome = verdict.as_ref().map(|_| ()).map_err(|r| *r);
    state
        .metrics
        .decision(&live.counters, policy, index, outcome);
    // Every bad credential counts, also where an `allow` rule lets the
    // request through anonymously: there a valid `?token=` still answers
    // differently (a 303 with a cookie), so guesses must be limited too.
    if facts.credential == Credential::Invalid {
        state.limiter.record_failure(facts.client);
    }
    match verdict {
        Ok(principal) => Ok(Admitted {
            access: index.map_or(AccessLevel::Full, |i| policy.rule_access(i)),
            token_visit: r.html
                && token
                && matches!(facts.credential, Credential::Valid(_))
                && query_param(&r.query, "token").is_some(),
            principal,
            rule,
        }),
        Err(reason) => {
            let mut d = deny(reason, rule);
            if reason == Reason::HostNotAllowed {
                d.detail = Denied::host_not_allowed(facts.host.as_deref()).detail;
            }
            if reason == Reason::NoCredential && r.html {
                d.login_redirect = Some(login_url(state, &facts.path, &r.query));
            }
            Err(d)
        }
    }
}

/// The path of `/api/pub`, where a chat child's internal credential counts
/// (under `/.dashgate` in upstream mode: `/api/pub` is then the upstream's).
pub(super) fn pub_path(state: &AppState) -> &'static str {
    if state.config.upstream.is_some() {
        "/.dashgate/api/pub"
    } else {
        "/api/pub"
    }
}

/// Whether `path` is the upstream's (upstream mode, outside `/.dashgate`).
pub fn upstreams_path(state: &AppState, path: &str) -> bool {
    state.config.upstream.is_some() && !is_own_path(path)
}

/// Whether `path` is under [`crate::policy::OWN_PREFIX`].
pub fn is_own_path(path: &str) -> bool {
    path.strip_prefix(crate::policy::OWN_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `/login?next=<path?query>` (`/.dashgate/login?…` in upstream mode);
/// `next` is always a local path, and never keeps a `?token=` (a cross-site
/// one, ignored here, would otherwise be visited from the site itself once
/// the user has signed in).
fn login_url(state: &AppState, path: &str, query: &str) -> String {
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some("token"))
        .collect();
    let next = if rest.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", rest.join("&"))
    };
    let enc = percent_encoding::utf8_percent_encode(&next, percent_encoding::NON_ALPHANUMERIC);
    let login = if state.config.upstream.is_some() {
        "/.dashgate/login"
    } else {
        "/login"
    };
    format!("{login}?next={enc}")
}

/// A route's 403 `read_only` for a read-only admission that the request's
/// method did not give away (a publish socket, a chat shell opened by a
/// `GET` upgrade), logged and published as every denial the gate makes is:
/// whoever watches `access.denied` sees all refusals, not only the gate's.
pub fn refuse_read_only(state: &AppState, access: &Access) -> warp::reply::Response {
    let d = Denied::new(Reason::ReadOnly, access.rule.clone());
    let facts = access.facts();
    let path = log_path(&facts.path, access.query());
    audit_denial(state, facts.client, &facts.method, &path, &d);
    crate::reject::denied_reply(&d)
}

/// One `warn` line and one `access.denied` event per denial.
pub(super) fn audit_denial(state: &AppState, client: IpAddr, method: &str, path: &str, d: &Denied) {
    let rule = d.rule.as_deref().unwrap_or("-");
    tracing::warn!(
        client = %client,
        method,
        path,
        rule,
        reason = d.reason.as_str(),
        status = d.reason.status(),
        "access denied"
    );
    state.hub.server_event(
        "access.denied",
        serde_json::json!({
            "client": client.to_string(),
            "method": method,
            "path": path,
            "rule": d.rule.as_deref(),
            "reason": d.reason.as_str(),
        }),
    );
}

/// Decide an open WebSocket again under `policy` with the facts of its
/// upgrade (credential re-resolved: a revoked token no longer counts).
pub fn redecide(
    state: &AppState,
    policy: &CompiledPolicy,
    access: &Access,
) -> crate::policy::Decision {
    policy.decide(&facts_now(state, policy, access))
}

/// The facts of an open socket's upgrade with its credential resolved
/// again under `policy`, for [`redecide`] and [`still_allowed`].
fn facts_now(state: &AppState, policy: &CompiledPolicy, access: &Access) -> Facts {
    let mut facts = access.facts().clone();
    let ws = facts.transport == Transport::Ws;
    let internal = internal_allowed(
        facts.peer,
        facts.client,
        &facts.path,
        pub_path(state),
        ws,
        None,
    );
    facts.credential = resolve_request(state, policy, access.presented(), internal);
    facts
}

/// What an open socket is allowed under `policy` now, decided again like
/// [`redecide`]: `Err` with the close frame's reason when it must go (the
/// rule that refuses it, or `read-only now (rule …)` when it was admitted
/// with full access and the new policy gives it read access only: a socket
/// is closed so it reconnects read-only, never downgraded silently).
/// `Ok` carries the principal's groups now.
pub fn still_allowed(
    state: &AppState,
    policy: &CompiledPolicy,
    access: &Access,
) -> Result<Vec<String>, String> {
    let facts = facts_now(state, policy, access);
    let (verdict, index) = policy.decide_indexed(&facts);
    let rule = index.map(|i| policy.rule_name(i).0.to_string());
    match verdict {
        Err(reason) => Err(rule.unwrap_or_else(|| reason.as_str().to_owned())),
        Ok(p) => {
            let now = index.map_or(AccessLevel::Full, |i| policy.rule_access(i));
            if now == AccessLevel::Read && access.access == AccessLevel::Full {
                let rule = rule.as_deref().unwrap_or("-");
                return Err(format!("read-only now (rule: {rule})"));
            }
            Ok(policy.groups_of(&p).to_vec())
        }
    }
}
