//! Shared helpers of the policy tests: compile a policy from text, and build
//! [`Facts`] with sensible defaults (a GET over http from 203.0.113.9 with
//! `Host: localhost`, no Origin, no credential) changed one field at a time.
#![allow(dead_code)] // each test file uses a different part

use dashgate::policy::{
    CompiledPolicy, Credential, Facts, LoadContext, Principal, Reason, Transport,
};

/// Compile `yaml` for a server bound to 127.0.0.1, panicking on an error.
pub fn compile(yaml: &str) -> CompiledPolicy {
    compile_bound(yaml, "127.0.0.1")
}

/// Compile `yaml` for a server bound to `bind`.
pub fn compile_bound(yaml: &str, bind: &str) -> CompiledPolicy {
    let ctx = LoadContext::new(bind.parse().unwrap());
    CompiledPolicy::from_str(yaml, "test.yaml", &ctx).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// A preset for a server bound to 127.0.0.1.
pub fn preset(name: &str) -> CompiledPolicy {
    let ctx = LoadContext::new("127.0.0.1".parse().unwrap());
    CompiledPolicy::preset(name, &ctx).unwrap()
}

/// A request with the defaults above.
pub fn req(method: &str, path: &str) -> Facts {
    let ip = "203.0.113.9".parse().unwrap();
    Facts {
        peer: ip,
        client: ip,
        method: method.to_owned().into(),
        path: path.to_owned(),
        host: Some("localhost:9119".to_owned()),
        origin: None,
        scheme: "http".into(),
        transport: Transport::Http,
        credential: Credential::None,
    }
}

pub fn verdict_of(p: &CompiledPolicy, f: &Facts) -> Result<Principal, Reason> {
    p.decide(f).verdict
}

/// One-field changes to [`Facts`].
pub trait FactsExt {
    fn client(self, ip: &str) -> Self;
    fn ws(self) -> Self;
    fn host(self, host: Option<&str>) -> Self;
    fn origin(self, origin: Option<&str>) -> Self;
    fn cred(self, c: Credential) -> Self;
}

impl FactsExt for Facts {
    fn client(mut self, ip: &str) -> Self {
        self.client = ip.parse().unwrap();
        self.peer = self.client;
        self
    }
    fn ws(mut self) -> Self {
        self.transport = Transport::Ws;
        self
    }
    fn host(mut self, host: Option<&str>) -> Self {
        self.host = host.map(str::to_owned);
        self
    }
    fn origin(mut self, origin: Option<&str>) -> Self {
        self.origin = origin.map(str::to_owned);
        self
    }
    fn cred(mut self, c: Credential) -> Self {
        self.credential = c;
        self
    }
}
