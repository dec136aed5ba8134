//! The registry: every chat session by id, and the rules that span sessions.
//!
//! * at most `max_sessions` children run at once; creation is serialised so
//!   the check and the spawn cannot race (and so no PTY master opened for
//!   one session leaks into another's concurrently forked child);
//! * an idle sweeper kills sessions that have had no viewer for
//!   `idle_timeout` and forgets exited ones after [`EXITED_RETENTION`];
//! * each session gets a fresh internal credential for its
//!   `DASHGATE_EVENTS_URL`; only its SHA-256 is kept, and
//!   [`Registry::verify_internal`] compares in constant time. The gate accepts
//!   it only from loopback peers, only on `/api/pub` for `session.{id}`.
//!
//! Server events (`session.created`, `session.exited`) go out through the
//! `on_event` callback the server passes in, so this module knows nothing of
//! the events hub.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use base64::Engine as _;
use parking_lot::{Mutex, RwLock};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::info::SessionInfo;
use super::session::{Session, SpawnSpec};
use super::{check_size, ChatConfig, ChatError, EXITED_RETENTION, KILL_GRACE, SHUTDOWN_GRACE};
use crate::policy::TokenDigest;

/// Publishes a server event: `(type, data)`, e.g.
/// `("session.exited", {"id":…,"code":…,"signal":…})`.
pub type EventSink = Arc<dyn Fn(&str, serde_json::Value) + Send + Sync>;

/// How long [`Registry::shutdown`] waits for children after SIGKILL.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(1500);

/// All chat sessions of one server.
pub struct Registry {
    cfg: ChatConfig,
    on_event: EventSink,
    sessions: RwLock<HashMap<String, Arc<Session>>>,
    /// Held across "count, spawn, insert" so `max_sessions` is exact.
    spawn_lock: Mutex<()>,
    /// Set by [`Registry::shutdown`]: no new session after that.
    closing: AtomicBool,
    sweeper_started: AtomicBool,
    me: Weak<Registry>,
}

impl Registry {
    /// A registry running `cfg.command`; `on_event` receives
    /// `session.created` and `session.exited`.
    pub fn new(cfg: ChatConfig, on_event: EventSink) -> Arc<Registry> {
        Arc::new_cyclic(|me| Registry {
            cfg,
            on_event,
            sessions: RwLock::new(HashMap::new()),
            spawn_lock: Mutex::new(()),
            closing: AtomicBool::new(false),
            sweeper_started: AtomicBool::new(false),
            me: me.clone(),
        })
    }

    /// The configuration sessions are started with.
    pub fn config(&self) -> &ChatConfig {
        &self.cfg
    }

    /// Start a session of `cols` x `rows` running the chat command. Must be
    /// called inside a tokio runtime.
    ///
    /// # Errors
    /// [`ChatError::TooManySessions`], [`ChatError::BadSize`],
    /// [`ChatError::ShuttingDown`], [`ChatError::Spawn`] (the command could not
    /// be started, e.g. not found).
    pub fn create(&self, cols: u16, rows: u16) -> Result<Arc<Session>, ChatError> {
        self.create_owned(cols, rows, "anonymous")
    }

    /// [`Self::create`] for the principal `owner` (SPEC §2.5: it, and
    /// `chat.see_all` groups, see the session).
    ///
    /// # Errors
    /// As [`Self::create`].
    pub fn create_owned(
        &self,
        cols: u16,
        rows: u16,
        owner: &str,
    ) -> Result<Arc<Session>, ChatError> {
        check_size(cols, rows)?;
        if self.cfg.command.is_empty() {
            return Err(ChatError::Spawn("the chat command is empty".into()));
        }
        let _serial = self.spawn_lock.lock();
        if self.closing.load(Ordering::Acquire) {
            return Err(ChatError::ShuttingDown);
        }
        if self.running() >= self.cfg.max_sessions {
            return Err(ChatError::TooManySessions {
                max: self.cfg.max_sessions,
            });
        }

        let id = hex::encode(random::<8>());
        let mut env = vec![("DASHGATE_SESSION_ID", id.clone())];
        let mut token_sha256 = None;
        if let Some(base) = &self.cfg.events_url {
            let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>());
            token_sha256 = Some(sha256(&token));
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}channel=session.{id}&token={token}");
            env.push(("DASHGATE_EVENTS_URL", url));
        }
        let me = self.me.clone();
        let session = Session::spawn(
            SpawnSpec {
                id: id.clone(),
                command: &self.cfg.command,
                cwd: self.cfg.cwd.as_deref(),
                env,
                cols,
                rows,
                token_sha256,
                owner: owner.to_owned(),
            },
            self.on_event.clone(),
            Box::new(move |s: &Arc<Session>| {
                if s.state.lock().forget_on_exit {
                    if let Some(reg) = me.upgrade() {
                        reg.sessions.write().remove(s.id());
                    }
                }
            }),
        )?;
        self.sessions.write().insert(id.clone(), session.clone());
        self.start_sweeper();

        tracing::info!(session = %id, pid = session.pid(), owner, command = ?self.cfg.command, "chat session started");
        (self.on_event)(
            "session.created",
            serde_json::json!({
                "id": id,
                "command": self.cfg.command,
                "pid": session.pid(),
                "owner": owner,
            }),
        );
        Ok(session)
    }

    /// The session with this id, running or recently exited.
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.read().get(id).cloned()
    }

    /// Every known session, oldest first.
    pub fn list(&self) -> Vec<SessionInfo> {
        let mut all: Vec<SessionInfo> = self.sessions.read().values().map(|s| s.info()).collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        all
    }

    /// Children running now (what `max_sessions` bounds).
    pub fn running(&self) -> usize {
        self.sessions
            .read()
            .values()
            .filter(|s| s.is_running())
            .count()
    }

    /// Kill a session: SIGHUP to its process group, SIGKILL after
    /// [`KILL_GRACE`]. It is forgotten once it has exited; an already exited
    /// session is forgotten now. Returns `false` for an unknown id.
    pub fn kill(&self, id: &str) -> bool {
        let Some(session) = self.get(id) else {
            return false;
        };
        let exited = {
            let mut st = session.state.lock();
            st.forget_on_exit = true;
            st.exit.is_some()
        };
        if exited {
            // Its exit hook may have run before the flag was set: forget it
            // here (otherwise the hook will).
            self.sessions.write().remove(id);
        } else {
            session.terminate(KILL_GRACE);
        }
        tracing::info!(session = %id, "chat session killed on request");
        true
    }

    /// The session whose internal credential this is, if it still runs.
    /// Constant-time in the token.
    pub fn verify_internal(&self, token: &str) -> Option<String> {
        self.verify_internal_digest(&TokenDigest::of(token))
    }

    /// [`Self::verify_internal`] for a token already hashed.
    pub fn verify_internal_digest(&self, token: &TokenDigest) -> Option<String> {
        let mut found = None;
        for s in self.sessions.read().values() {
            if let Some(h) = &s.token_sha256 {
                if token.matches(h) && s.is_running() {
                    found = Some(s.id().to_string());
                }
            }
        }
        found
    }

    /// End every child for server shutdown: SIGHUP now, SIGKILL after
    /// [`SHUTDOWN_GRACE`], and wait (at most ~1.5 s more) until they are
    /// reaped. No session can be created afterwards.
    pub async fn shutdown(&self) {
        {
            let _serial = self.spawn_lock.lock();
            self.closing.store(true, Ordering::Release);
        }
        let running: Vec<Arc<Session>> = self
            .sessions
            .read()
            .values()
            .filter(|s| s.is_running())
            .cloned()
            .collect();
        for s in &running {
            s.terminate(SHUTDOWN_GRACE);
        }
        let all = futures_util::future::join_all(running.iter().map(|s| s.wait_exit()));
        if tokio::time::timeout(SHUTDOWN_GRACE + SHUTDOWN_WAIT, all)
            .await
            .is_err()
        {
            tracing::warn!("some chat children had not exited at shutdown");
        }
    }

    /// Start the sweeper once, on the first session (inside the runtime).
    fn start_sweeper(&self) {
        if self.sweeper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        // Ticks a few times per idle period so a kill is at most ~25 % late,
        // but never busier than 10 ms nor lazier than 15 s.
        let tick =
            (self.cfg.idle_timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(15));
        let me = self.me.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                // The sweeper ends with the registry.
                let Some(reg) = me.upgrade() else { break };
                reg.sweep();
            }
        });
    }

    /// One sweep: kill idle sessions, forget long-exited ones.
    fn sweep(&self) {
        let sessions: Vec<Arc<Session>> = self.sessions.read().values().cloned().collect();
        for s in sessions {
            if let Some(idle) = s.idle_for() {
                if idle >= self.cfg.idle_timeout && !s.terminating.load(Ordering::Relaxed) {
                    tracing::info!(session = %s.id(), idle_secs = idle.as_secs(), "chat session idle: killing it");
                    s.terminate(KILL_GRACE);
                }
            } else if s.exited_for().is_some_and(|t| t >= EXITED_RETENTION) {
                self.sessions.write().remove(s.id());
            }
        }
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

fn sha256(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}
