//! Open WebSockets, each with the facts of its upgrade.
//!
//! A WebSocket outlives the request that opened it, so a decision made at the
//! upgrade can go stale: the policy is reloaded, a token is revoked, a cookie
//! session expires, the server shuts down. Every socket registers here with
//! its [`Access`] and watches a close signal; [`Conns::recheck`] decides each
//! again and signals the ones that must go, with the close code and reason the
//! client will see (4403 + rule, 4401, 1001).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use crate::events::Hub;
use crate::gate::Access;

/// Most WebSockets open at once; one more is refused with 503 at the upgrade.
pub const MAX_SOCKETS: usize = 20_000;

/// A close frame to send: code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub code: u16,
    pub reason: String,
}

impl Close {
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        // A close reason must fit in a control frame (123 bytes of UTF-8).
        while reason.len() > 123 {
            reason.pop();
        }
        Self { code, reason }
    }
}

struct Entry {
    route: &'static str,
    access: Arc<Access>,
    tx: watch::Sender<Option<Close>>,
    /// The owner of the chat session this socket watches, if any: a reload
    /// decides again whether the caller still sees it (`chat.see_all`).
    watching: Option<String>,
}

/// The registry of open WebSockets.
pub struct Conns {
    map: Mutex<HashMap<u64, Entry>>,
    /// Where `client.connected` / `client.disconnected` are announced.
    hub: Arc<Hub>,
    next: AtomicU64,
    max: usize,
}

/// Why a socket could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManySockets;

/// A registered socket; dropping it unregisters. `closed` turns `Some` when
/// the socket must be closed with that frame.
pub struct ConnGuard {
    conns: Arc<Conns>,
    id: u64,
    pub closed: watch::Receiver<Option<Close>>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let entry = self.conns.map.lock().remove(&self.id);
        if let Some(e) = entry {
            self.conns
                .hub
                .server_event("client.disconnected", client_event(self.id, &e));
        }
    }
}

fn client_event(id: u64, e: &Entry) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "route": e.route,
        "client": e.access.facts().client.to_string(),
        "principal": e.access.principal,
        "principal_name": e.access.owner(),
        "access": e.access.access,
    })
}

impl ConnGuard {
    /// Note that this socket watches a chat session owned by `owner`
    /// (announced as `client.watching` with the session id).
    pub fn watching(&self, owner: &str, session: &str) {
        let mut map = self.conns.map.lock();
        if let Some(e) = map.get_mut(&self.id) {
            e.watching = Some(owner.to_owned());
            let mut ev = client_event(self.id, e);
            ev["session"] = session.into();
            ev["owner"] = owner.into();
            self.conns.hub.server_event("client.watching", ev);
        }
    }

    /// Resolves with the close frame once the socket is told to close.
    pub async fn wait(&mut self) -> Close {
        loop {
            if let Some(c) = self.closed.borrow_and_update().clone() {
                return c;
            }
            if self.closed.changed().await.is_err() {
                return Close::new(1001, "server shutting down");
            }
        }
    }
}

impl Conns {
    pub fn new(max: usize, hub: Arc<Hub>) -> Arc<Self> {
        Arc::new(Self {
            map: Mutex::new(HashMap::new()),
            hub,
            next: AtomicU64::new(1),
            max,
        })
    }

    /// Register a socket opened on `route` with the gate's `access`.
    ///
    /// # Errors
    /// [`TooManySockets`] when [`MAX_SOCKETS`] (or the configured max) are open.
    pub fn register(
        self: &Arc<Self>,
        route: &'static str,
        access: Arc<Access>,
    ) -> Result<ConnGuard, TooManySockets> {
        let mut map = self.map.lock();
        if map.len() >= self.max {
            return Err(TooManySockets);
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        let entry = Entry {
            route,
            access,
            tx,
            watching: None,
        };
        self.hub
            .server_event("client.connected", client_event(id, &entry));
        map.insert(id, entry);
        drop(map);
        Ok(ConnGuard {
            conns: self.clone(),
            id,
            closed: rx,
        })
    }

    /// Decide every open socket again; each for which `verdict` returns a
    /// close frame is told to close. Returns how many were closed.
    pub fn recheck(&self, verdict: impl Fn(&Access) -> Option<Close>) -> usize {
        self.recheck_watching(|a, _| verdict(a))
    }

    /// [`Self::recheck`], also told the owner of the chat session a socket
    /// watches (see [`ConnGuard::watching`]).
    pub fn recheck_watching(
        &self,
        verdict: impl Fn(&Access, Option<&str>) -> Option<Close>,
    ) -> usize {
        let map = self.map.lock();
        let mut n = 0;
        for e in map.values() {
            if e.tx.borrow().is_some() {
                continue;
            }
            if let Some(close) = verdict(&e.access, e.watching.as_deref()) {
                let _ = e.tx.send(Some(close));
                n += 1;
            }
        }
        n
    }

    /// Tell every socket to close with `close` (shutdown).
    pub fn close_all(&self, close: Close) {
        for e in self.map.lock().values() {
            let _ = e.tx.send(Some(close.clone()));
        }
    }

    /// Open sockets in total.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Open sockets per route, for `/api/status` and `/metrics`.
    pub fn by_route(&self) -> Vec<(&'static str, usize)> {
        let mut counts: HashMap<&'static str, usize> = HashMap::new();
        for e in self.map.lock().values() {
            *counts.entry(e.route).or_default() += 1;
        }
        let mut v: Vec<_> = counts.into_iter().collect();
        v.sort();
        v
    }
}
