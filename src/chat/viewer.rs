//! Viewers: the clients attached to a session, and the fan-out to them.
//!
//! Each viewer has a bounded queue of output chunks (`Bytes`, so a chunk is
//! shared, not copied, between viewers). The reader offers every chunk with
//! `try_send`; a viewer more than [`VIEWER_QUEUE_BYTES`] (or
//! [`VIEWER_QUEUE_CHUNKS`]) behind is unhooked on the spot and learns it on
//! its next [`Viewer::recv`] as [`ViewerEvent::Lagged`]. The exit is not sent
//! through the queue (which may be full): the queue is closed at exit and the
//! viewer reads the exit from the session once it has drained what is queued,
//! so the exit always arrives, and always after the last output.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::session::Session;
use super::{ChatError, MAX_VIEWERS_PER_SESSION, VIEWER_QUEUE_BYTES, VIEWER_QUEUE_CHUNKS};

/// What a viewer receives, in order: output, then at most one of the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewerEvent {
    /// Program output, raw bytes for the terminal emulator.
    Output(Bytes),
    /// The program ended; nothing follows.
    Exit {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// This viewer fell too far behind and was detached; nothing follows.
    /// Reattaching replays the scrollback.
    Lagged,
}

/// The session's side of one viewer.
pub(crate) struct ViewerSlot {
    id: u64,
    tx: mpsc::Sender<Bytes>,
    shared: Arc<Shared>,
    /// Who is watching, for the Sessions page.
    who: String,
    read_only: bool,
}

impl ViewerSlot {
    pub(crate) fn watcher(&self) -> super::info::Watcher {
        super::info::Watcher {
            principal: self.who.clone(),
            read_only: self.read_only,
        }
    }
}

/// Shared between the reader (which adds) and the viewer (which takes).
#[derive(Default)]
struct Shared {
    /// Bytes sent and not yet received: the queue's real bound.
    queued: AtomicUsize,
    /// Set by the reader when it unhooks this viewer for falling behind.
    lagged: AtomicBool,
}

/// One attached client. Dropping it detaches.
pub struct Viewer {
    /// The session's scrollback at the moment of attaching; live output
    /// continues exactly where it ends (no byte lost or repeated).
    pub scrollback: Bytes,
    rx: mpsc::Receiver<Bytes>,
    shared: Arc<Shared>,
    session: Arc<Session>,
    id: u64,
    /// Exit or Lagged has been returned; only `None` follows.
    done: bool,
}

impl Viewer {
    /// The session this viewer watches (to write keystrokes, resize, …).
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// The next event, or `None` after [`ViewerEvent::Exit`] or
    /// [`ViewerEvent::Lagged`] has been returned.
    ///
    /// Cancel safe: usable as a `tokio::select!` branch without losing output.
    pub async fn recv(&mut self) -> Option<ViewerEvent> {
        if self.done {
            return None;
        }
        // A lagged viewer is told at once, not after draining a backlog that
        // the route would throw away when it closes the socket.
        if self.shared.lagged.load(Ordering::Acquire) {
            self.done = true;
            return Some(ViewerEvent::Lagged);
        }
        if let Some(chunk) = self.rx.recv().await {
            self.shared.queued.fetch_sub(chunk.len(), Ordering::Relaxed);
            return Some(ViewerEvent::Output(chunk));
        }
        // The queue was closed by the session: lagged, or the program exited.
        self.done = true;
        if self.shared.lagged.load(Ordering::Acquire) {
            return Some(ViewerEvent::Lagged);
        }
        self.session.exit_info().map(|e| ViewerEvent::Exit {
            code: e.code,
            signal: e.signal,
        })
    }
}

impl Viewer {
    /// Output already queued, without waiting; `None` when nothing is, or
    /// when [`Viewer::recv`] has something else to say. Lets a writer batch
    /// a backlog into one flush.
    pub fn try_recv_output(&mut self) -> Option<Bytes> {
        if self.done || self.shared.lagged.load(Ordering::Acquire) {
            return None;
        }
        let chunk = self.rx.try_recv().ok()?;
        self.shared.queued.fetch_sub(chunk.len(), Ordering::Relaxed);
        Some(chunk)
    }
}

impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Viewer")
            .field("session", &self.session.id())
            .field("id", &self.id)
            .field("scrollback_len", &self.scrollback.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.session.detach(self.id);
    }
}

impl Session {
    /// Attach a viewer: the scrollback snapshot and the live queue are taken
    /// under one lock, so the live output starts right after the snapshot.
    /// Attaching to an exited session yields its scrollback, then the exit.
    ///
    /// # Errors
    /// [`ChatError::TooManyViewers`] past [`MAX_VIEWERS_PER_SESSION`].
    pub fn attach(self: &Arc<Self>) -> Result<Viewer, ChatError> {
        self.attach_as("anonymous", false)
    }

    /// [`Self::attach`] for the principal `who`, shown among the session's
    /// watchers (with `read_only` when it may not type).
    ///
    /// # Errors
    /// [`ChatError::TooManyViewers`] past [`MAX_VIEWERS_PER_SESSION`].
    pub fn attach_as(self: &Arc<Self>, who: &str, read_only: bool) -> Result<Viewer, ChatError> {
        let (tx, rx) = mpsc::channel(VIEWER_QUEUE_CHUNKS);
        let shared = Arc::new(Shared::default());
        let mut st = self.state.lock();
        let id = st.next_viewer;
        st.next_viewer += 1;
        if st.exit.is_none() {
            if st.viewers.len() >= MAX_VIEWERS_PER_SESSION {
                return Err(ChatError::TooManyViewers {
                    max: MAX_VIEWERS_PER_SESSION,
                });
            }
            st.viewers.push(ViewerSlot {
                id,
                tx,
                shared: shared.clone(),
                who: who.to_owned(),
                read_only,
            });
            st.idle_since = None;
        }
        // (When exited, `tx` is dropped here: the viewer gets the exit at once.)
        Ok(Viewer {
            scrollback: st.ring.snapshot(),
            rx,
            shared,
            session: self.clone(),
            id,
            done: false,
        })
    }

    /// Remove a viewer; the last one out starts the idle clock.
    fn detach(&self, id: u64) {
        let mut st = self.state.lock();
        st.viewers.retain(|v| v.id != id);
        if st.viewers.is_empty() && st.exit.is_none() && st.idle_since.is_none() {
            st.idle_since = Some(Instant::now());
        }
    }

    /// Keep `chunk` in the scrollback and offer it to every viewer, never
    /// waiting: a viewer whose queue is full is unhooked as lagged.
    pub(crate) fn broadcast(&self, chunk: Bytes) {
        let mut st = self.state.lock();
        st.ring.push(&chunk);
        let before = st.viewers.len();
        st.viewers.retain(|v| {
            let queued = v.shared.queued.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len();
            if queued <= VIEWER_QUEUE_BYTES && v.tx.try_send(chunk.clone()).is_ok() {
                return true;
            }
            v.shared.lagged.store(true, Ordering::Release);
            false
        });
        let dropped = before - st.viewers.len();
        if dropped > 0 {
            tracing::warn!(
                session = %self.id(), dropped,
                "chat viewer fell {} bytes behind and was detached", VIEWER_QUEUE_BYTES
            );
            if st.viewers.is_empty() && st.idle_since.is_none() {
                st.idle_since = Some(Instant::now());
            }
        }
    }
}
