//! STUB: the policy engine helper replaces this file.
use std::net::IpAddr;

/// The forwarding headers of one request, every line of each kept in order.
#[derive(Debug, Clone, Default)]
pub struct ForwardHeaders {
    pub x_forwarded_for: Vec<String>,
    pub forwarded: Vec<String>,
    pub x_forwarded_proto: Option<String>,
    pub x_forwarded_host: Option<String>,
}

/// The client as the policy sees it after SPEC §2.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientView {
    pub client: IpAddr,
    /// Whether the TCP peer is a trusted proxy (its headers were believed).
    pub peer_trusted: bool,
    /// `X-Forwarded-Proto` from a trusted proxy.
    pub proto: Option<String>,
    /// `X-Forwarded-Host` from a trusted proxy.
    pub host: Option<String>,
}
