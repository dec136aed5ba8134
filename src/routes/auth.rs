//! Sign-in: `POST /api/login`, `POST /api/logout`, and the `?token=` page
//! visit that trades a token in the address bar for a session cookie; and
//! the end of sessions whose credential a reload removed or changed.

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use serde::Deserialize;
use serde_json::json;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::Endpoint;
use crate::auth::sessions::{clear_cookie, set_cookie, Ending, Holder, Opener};
use crate::gate::{query_param, resolve, Access, Presented};
use crate::policy::{CompiledPolicy, Credential, Principal, Reason, TokenDigest};
use crate::reject::{denied_reply, Denied};
use crate::server::conns::Close;
use crate::state::{with_state, AppState};

/// Largest login body.
const MAX_LOGIN_BODY: u64 = 16 * 1024;

pub fn routes(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    login(state).or(logout(state)).unify()
}

/// A sign-in request, as JSON or as a form.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    token: Option<String>,
    username: Option<String>,
    password: Option<String>,
    next: Option<String>,
}

/// `next` if it is a local path, else `/` (no open redirect: no scheme, no
/// `//host`, no backslash tricks, no control characters).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(char::is_control)
                && !n.to_ascii_lowercase().contains("%5c") =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

fn is_https(a: &Access) -> bool {
    a.facts().scheme.eq_ignore_ascii_case("https")
}

/// POST /api/login
pub fn login(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("api" / "login")
        .and(warp::post())
        .and(warp::header::optional::<String>("content-type"))
        .and(warp::body::content_length_limit(MAX_LOGIN_BODY))
        .and(warp::body::bytes())
        .and(with_state(state))
        .map(|ctype: Option<String>, body: Bytes, state: AppState| {
            Endpoint::new(move |access| do_login(state, access, ctype, body))
        })
}

async fn do_login(state: AppState, access: Access, ctype: Option<String>, body: Bytes) -> Response {
    let form = ctype
        .as_deref()
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    let req: Result<LoginRequest, String> = if form {
        serde_urlencoded::from_bytes(&body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    };
    let req = match req {
        Ok(r) => r,
        Err(e) => {
            let body = json!({"error": format!("bad sign-in request: {e}"), "reason": "bad_body", "rule": null});
            return warp::reply::with_status(warp::reply::json(&body), StatusCode::BAD_REQUEST)
                .into_response();
        }
    };
    let client = access.facts().client;
    let live = state.policy_arc();
    let policy = &live.compiled;
    // The attempt counts as a failure from here on (forgiven if it succeeds),
    // so many sent at once cannot all reach the slow password check.
    if let Err(retry) = state
        .limiter
        .begin_attempt(client, policy.auth_failures_per_minute())
    {
        let mut d = Denied::new(Reason::TooManyFailures, None);
        d.retry_after = Some(retry.as_secs());
        audit_login(&state, &access, None, "too_many_failures");
        return denied_reply(&d);
    }
    let signed_in = match (&req.token, &req.username, &req.password) {
        (Some(t), None, None) => {
            let digest = TokenDigest::of(t);
            match resolve(&state, policy, &Presented::Token(digest)) {
                Credential::Valid(p) => Some((p, Opener::Token(digest))),
                _ => None,
            }
        }
        (None, Some(u), Some(p)) => {
            let (u, p, live) = (u.clone(), p.clone(), live.clone());
            // argon2 is deliberately slow: keep it off the async workers.
            tokio::task::spawn_blocking(move || {
                let principal = live.compiled.verify_password(&u, &p)?;
                let phc = live.compiled.password_hash(&u)?;
                Some((principal, Opener::password(&u, phc)))
            })
            .await
            .ok()
            .flatten()
        }
        _ => {
            state.limiter.forgive(client);
            let body = json!({"error": "send either token, or username and password", "reason": "bad_body", "rule": null});
            return warp::reply::with_status(warp::reply::json(&body), StatusCode::BAD_REQUEST)
                .into_response();
        }
    };
    // A reload may have removed the credential since it was checked; only
    // a principal a cookie may hold signs in (never a chat child's internal
    // one, which `resolve` does not yield anyway).
    let session = signed_in.and_then(|(p, opener)| Some((start_session(&state, &p, opener)?, p)));
    let Some(((id, ttl), principal)) = session else {
        audit_login(&state, &access, req.username.as_deref(), "bad_credential");
        return denied_reply(&Denied::new(Reason::BadCredential, None));
    };
    state.limiter.forgive(client);
    audit_login(&state, &access, req.username.as_deref(), "ok");
    let cookie = set_cookie(&id, ttl, is_https(&access));
    let next = safe_next(req.next.as_deref());
    let mut r = if form {
        let mut r = StatusCode::SEE_OTHER.into_response();
        r.headers_mut().insert(
            header::LOCATION,
            HeaderValue::from_str(&next).expect("local path"),
        );
        r
    } else {
        warp::reply::json(&json!({"ok": true, "principal": principal, "next": next}))
            .into_response()
    };
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("cookie"),
    );
    r
}

/// One structured line per sign-in attempt; failures are also an
/// `access.denied` event. Never the token or password.
fn audit_login(state: &AppState, access: &Access, user: Option<&str>, outcome: &str) {
    let client = access.facts().client.to_string();
    if outcome == "ok" {
        tracing::info!(client = %client, user, outcome, "sign-in");
    } else {
        tracing::warn!(client = %client, user, outcome, "sign-in failed");
        state.hub.server_event(
            "access.denied",
            json!({"client": client, "method": "POST", "path": "/api/login", "rule": null, "reason": outcome}),
        );
    }
}

/// POST /api/logout
pub fn logout(state: AppState) -> impl Filter<Extract = (Endpoint,), Error = Rejection> + Clone {
    warp::path!("api" / "logout")
        .and(warp::post())
        .and(with_state(state))
        .map(|state: AppState| {
            Endpoint::sync(move |access: Access| {
                if let Presented::Cookie(id) = access.presented() {
                    state.sessions.remove(id);
                    end_session_sockets(&state, id, "signed out");
                }
                let mut r = warp::reply::json(&json!({"ok": true})).into_response();
                r.headers_mut().insert(
                    header::SET_COOKIE,
                    HeaderValue::from_str(&clear_cookie(is_https(&access))).expect("cookie"),
                );
                r
            })
        })
}

/// Close (4401) every WebSocket opened with session cookie `id`.
pub fn end_session_sockets(state: &AppState, id: &str, why: &str) -> usize {
    state.conns.recheck(|a| match a.presented() {
        Presented::Cookie(c) if c == id => Some(Close::new(4401, why)),
        _ => None,
    })
}

/// Close (4401) every WebSocket whose cookie session has expired.
pub fn expire_sockets(state: &AppState) -> usize {
    state.conns.recheck(|a| match a.presented() {
        Presented::Cookie(c) if state.sessions.get(c).is_none() => {
            Some(Close::new(4401, "session expired"))
        }
        _ => None,
    })
}

/// Whether `opener` still signs in as `principal` under `policy`: the token
/// resolves to the same principal (the startup token while
/// `startup_token` is on; a named token while its name has that hash), or
/// the user is listed with the same password hash.
pub fn opener_holds(
    state: &AppState,
    policy: &CompiledPolicy,
    principal: &Principal,
    opener: &Opener,
) -> bool {
    match opener {
        Opener::Token(t) => {
            resolve(state, policy, &Presented::Token(*t)) == Credential::Valid(principal.clone())
        }
        Opener::Password { user, .. } => {
            matches!(principal, Principal::User { name } if name == user)
                && policy
                    .password_hash(user)
                    .is_some_and(|phc| Opener::password(user, phc) == *opener)
        }
    }
}

/// Start a sign-in session for `principal`, opened with `opener`: its
/// cookie value and lifetime, or `None` when a reload took the credential
/// away meanwhile. The session is checked against the policy in force
/// after it is stored, so a reload either came before that check or sees
/// the session in its own [`end_stale_sessions`].
/// A principal no cookie may hold ([`Holder`]) gets none.
fn start_session(
    state: &AppState,
    principal: &Principal,
    opener: Opener,
) -> Option<(String, std::time::Duration)> {
    let holder = Holder::new(principal.clone())?;
    let ttl = state.policy().compiled.session_ttl();
    let id = state.sessions.create(holder, opener, ttl);
    let live = state.policy();
    let policy = &live.compiled;
    let ok = state.sessions.confirm(&id, policy.session_ttl(), |p, o| {
        opener_holds(state, policy, p, o)
    });
    ok.then(|| (id, ttl.min(policy.session_ttl())))
}

/// After a reload to `policy`: end every session whose credential it
/// removed or changed, or that is older than its `session_ttl`, and close
/// their WebSockets with 4401. Returns how many sessions ended and how many
/// sockets closed.
pub fn end_stale_sessions(state: &AppState, policy: &CompiledPolicy) -> (usize, usize) {
    let ended = state.sessions.end_stale(policy.session_ttl(), |p, o| {
        opener_holds(state, policy, p, o)
    });
    if ended.is_empty() {
        return (0, 0);
    }
    let closed = state.conns.recheck(|a| match a.presented() {
        Presented::Cookie(c) => ended.why(c).map(|why| match why {
            Ending::Revoked => Close::new(4401, "credential revoked"),
            Ending::Expired => Close::new(4401, "session expired"),
        }),
        _ => None,
    });
    (ended.len(), closed)
}

/// The reply to a `?token=` page visit: a session cookie and a 303 to the
/// same address without the token. A principal no cookie may hold (the
/// gate never admits one to a visit) is refused as a bad credential.
pub fn token_visit(state: &AppState, access: &Access) -> Response {
    let session = match access.presented() {
        Presented::Token(t) => start_session(state, &access.principal, Opener::Token(*t)),
        _ => None,
    };
    let Some((id, ttl)) = session else {
        return denied_reply(&Denied::new(Reason::BadCredential, None));
    };
    let rest: Vec<&str> = access
        .query()
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some("token"))
        .collect();
    let path = &access.facts().path;
    let mut to = path.clone();
    if !rest.is_empty() {
        to.push('?');
        to.push_str(&rest.join("&"));
    }
    // Upstream mode: the startup link opens dashgate's sign-in page (or its
    // root); signed in, the user goes on to `next`, by default the
    // upstream's own page.
    if state.config.upstream.is_some()
        && ["/.dashgate", "/.dashgate/", "/.dashgate/login"].contains(&path.as_str())
    {
        to = safe_next(query_param(access.query(), "next").as_deref());
    }
    let mut r = StatusCode::SEE_OTHER.into_response();
    let h = r.headers_mut();
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&to).unwrap_or(HeaderValue::from_static("/")),
    );
    h.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&set_cookie(&id, ttl, is_https(access))).expect("cookie"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_local() {
        assert_eq!(safe_next(Some("/chat?x=1")), "/chat?x=1");
        for evil in [
            "//evil.example",
            "https://evil.example",
            "/\\evil.example",
            "/%5Cevil.example",
            "evil",
            "/\nx",
        ] {
            assert_eq!(safe_next(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
