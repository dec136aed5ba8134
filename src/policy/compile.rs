//! STUB: the policy engine helper replaces this file.
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::{ClientView, Decision, Explanation, Facts, ForwardHeaders, Principal, Reason};

/// What the compiler needs to know about the server: the bind address decides
/// the default `allowed_hosts` (SPEC §2.3).
#[derive(Debug, Clone)]
pub struct LoadContext {
    pub bind: IpAddr,
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

#[derive(Debug)]
pub struct CompiledPolicy {}

impl CompiledPolicy {
    /// # Errors
    /// A [`PolicyError`] naming file:line:col.
    pub fn load_file(_path: &Path, _ctx: &LoadContext) -> Result<Self, PolicyError> {
        todo!()
    }
    /// # Errors
    /// Unknown preset name.
    pub fn preset(_name: &str, _ctx: &LoadContext) -> Result<Self, PolicyError> {
        todo!()
    }
    /// # Errors
    /// A [`PolicyError`] naming `source`:line:col.
    pub fn from_str(_text: &str, _source: &str, _ctx: &LoadContext) -> Result<Self, PolicyError> {
        todo!()
    }
    pub fn decide(&self, _facts: &Facts) -> Decision {
        todo!()
    }
    pub fn explain(&self, _facts: &Facts) -> Explanation {
        todo!()
    }
    /// # Errors
    /// `Reason::BadForwardingHeader` for a malformed entry from a trusted proxy.
    pub fn client(&self, _peer: IpAddr, _fwd: &ForwardHeaders) -> Result<ClientView, Reason> {
        todo!()
    }
    pub fn is_trusted_proxy(&self, _ip: IpAddr) -> bool {
        todo!()
    }
    pub fn verify_token(&self, _token: &str) -> Option<Principal> {
        todo!()
    }
    pub fn verify_password(&self, _user: &str, _password: &str) -> Option<Principal> {
        todo!()
    }
    pub fn startup_token_enabled(&self) -> bool {
        todo!()
    }
    pub fn forward_auth_header(&self) -> Option<&str> {
        todo!()
    }
    pub fn session_ttl(&self) -> Duration {
        todo!()
    }
    pub fn auth_failures_per_minute(&self) -> u32 {
        todo!()
    }
    pub fn can_require_auth(&self) -> bool {
        todo!()
    }
    pub fn summary(&self) -> PolicySummary {
        todo!()
    }
    pub fn effective(&self) -> serde_json::Value {
        todo!()
    }
}
