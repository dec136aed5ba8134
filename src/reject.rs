//! One rejection type and one handler (warp's `rejections` example).
//!
//! The gate rejects with [`Denied`]; `handle_rejection` checks for it first,
//! then for warp's own rejections it knows how to explain, and passes anything
//! else through unchanged rather than inventing a 500. Every body is
//! `{"error", "reason", "rule"}` so a client — or a person reading the
//! browser console — sees which rule decided and why.

use std::sync::Arc;

use http::{header, StatusCode};
use serde::Serialize;
use warp::reply::Response;
use warp::{Rejection, Reply};

use crate::policy::Reason;

/// The gate's refusal.
#[derive(Debug, Clone)]
pub struct Denied {
    pub reason: Reason,
    pub rule: Option<Arc<str>>,
    /// For a browser navigation without a credential: where to sign in.
    pub login_redirect: Option<String>,
    /// Seconds, for 429.
    pub retry_after: Option<u64>,
    /// Words for this one refusal in place of the reason's own (a refused
    /// Host names the host and how to allow it).
    pub detail: Option<Box<str>>,
    /// A request the gate did not read (a filter tree served other than by
    /// `server::run`): refused, never let through.
    unread: bool,
}

impl warp::reject::Reject for Denied {}

impl Denied {
    pub fn new(reason: Reason, rule: Option<Arc<str>>) -> Self {
        Self {
            reason,
            rule,
            login_redirect: None,
            retry_after: None,
            detail: None,
            unread: false,
        }
    }

    pub(crate) fn unread() -> Self {
        Self {
            unread: true,
            ..Self::new(Reason::BadForwardingHeader, None)
        }
    }

    /// The refusal of a Host: names it and says how to allow it.
    pub fn host_not_allowed(host: Option<&str>) -> Self {
        Self {
            detail: Some(crate::policy::host_refusal(host).into()),
            ..Self::new(Reason::HostNotAllowed, None)
        }
    }

    fn message(&self) -> &str {
        if self.unread {
            return "the gate did not decide this request (it was served without server::run)";
        }
        if let Some(d) = &self.detail {
            return d;
        }
        match self.reason {
            Reason::HostNotAllowed => "the Host header is not an allowed host",
            Reason::OriginNotAllowed => "the Origin of this request is not allowed",
            Reason::NonCanonicalPath => "the path is not canonical",
            Reason::BadForwardingHeader => "a trusted proxy sent a malformed forwarding header",
            Reason::NoCredential => "authentication required",
            Reason::BadCredential => "the credential is not valid",
            Reason::RuleDeny => "denied by policy",
            Reason::NoRuleMatched => "no policy rule matched this request",
            Reason::TooManyFailures => "too many failed credentials from this address",
            Reason::ReadOnly => "read-only access: this request would change something",
        }
    }
}

/// The JSON body of every refusal and error.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    pub error: &'a str,
    pub reason: &'a str,
    pub rule: Option<&'a str>,
}

/// An application error a handler answers with (not a rejection: the route
/// did match). Small, so `Result<T, ApiError>` stays cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub reason: &'static str,
    pub error: &'static str,
}

impl ApiError {
    pub const fn new(status: StatusCode, reason: &'static str, error: &'static str) -> Self {
        Self {
            status,
            reason,
            error,
        }
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        error_reply(self.status, self.reason, self.error)
    }
}

/// A JSON error reply: `{"error", "reason", "rule": null}` with `status`.
pub fn error_reply(status: StatusCode, reason: &str, error: &str) -> Response {
    let body = ErrorBody {
        error,
        reason,
        rule: None,
    };
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

/// The reply for a [`Denied`].
pub fn denied_reply(d: &Denied) -> Response {
    if let Some(to) = &d.login_redirect {
        let mut r = StatusCode::SEE_OTHER.into_response();
        r.headers_mut()
            .insert(header::LOCATION, to.parse().expect("encoded location"));
        return r;
    }
    // A request the gate never decided is the server's fault, not the
    // client's: 500, and never let through.
    let (status, reason) = if d.unread {
        (StatusCode::INTERNAL_SERVER_ERROR, "not_decided")
    } else {
        let status = StatusCode::from_u16(d.reason.status()).expect("valid status");
        (status, d.reason.as_str())
    };
    let body = ErrorBody {
        error: d.message(),
        reason,
        rule: d.rule.as_deref(),
    };
    let mut r = warp::reply::with_status(warp::reply::json(&body), status).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"dashgate\""),
        );
    }
    if let Some(secs) = d.retry_after {
        r.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from(secs.max(1)));
    }
    r
}

/// The one rejection handler.
///
/// # Errors
/// Rejections it does not know are passed on unchanged.
pub async fn handle_rejection(err: Rejection) -> Result<Response, Rejection> {
    if let Some(d) = err.find::<Denied>() {
        return Ok(denied_reply(d));
    }
    if err.is_not_found() {
        return Ok(error_reply(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route",
        ));
    }
    if err.find::<warp::reject::MethodNotAllowed>().is_some() {
        return Ok(error_reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this route",
        ));
    }
    if let Some(e) = err.find::<warp::filters::body::BodyDeserializeError>() {
        let msg = e.to_string();
        return Ok(error_reply(StatusCode::BAD_REQUEST, "bad_body", &msg));
    }
    if err.find::<warp::reject::PayloadTooLarge>().is_some() {
        return Ok(error_reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "request body too large",
        ));
    }
    if err.find::<warp::reject::UnsupportedMediaType>().is_some() {
        return Ok(error_reply(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "unsupported content type",
        ));
    }
    if err.find::<warp::reject::InvalidQuery>().is_some() {
        return Ok(error_reply(
            StatusCode::BAD_REQUEST,
            "bad_query",
            "invalid query string",
        ));
    }
    if err.find::<warp::reject::MissingHeader>().is_some()
        || err.find::<warp::reject::InvalidHeader>().is_some()
    {
        return Ok(error_reply(
            StatusCode::BAD_REQUEST,
            "bad_header",
            "a required header is missing or invalid (a WebSocket route needs an upgrade)",
        ));
    }
    Err(err)
}
