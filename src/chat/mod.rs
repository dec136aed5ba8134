//! PTY chat sessions: the terminal agent's own UI, run on the server and shown
//! in the browser (SPEC §3.1). No warp in here: the `/api/ws` and
//! `/api/sessions` routes are thin adapters over this library, and the tests
//! drive it with a real PTY and no server.
//!
//! * [`Registry`] – every session by id: create (bounded by `max_sessions`),
//!   list, kill, the idle sweeper, shutdown, and the per-session internal
//!   credential behind `DASHGATE_EVENTS_URL`.
//! * [`Session`] – one child on one PTY: a reader task that fans output out to
//!   the viewers and into the scrollback, a supervisor task that reaps the
//!   child and turns kill requests into SIGHUP-then-SIGKILL.
//! * [`Viewer`] – one attached client: the scrollback, then live output, then
//!   how the program ended. Dropping it detaches.
//! * [`Scrollback`] – the 256 KiB ring a late viewer is replayed from.
//! * [`SessionInfo`], [`ExitInfo`] – what the REST API shows.
//! * [`command::resolve`] – which program a session runs.
//!
//! The one rule the design serves: a slow viewer never stalls the PTY or the
//! other viewers. Output goes to each viewer through a bounded queue with
//! `try_send`; a viewer that falls [`VIEWER_QUEUE_BYTES`] behind is dropped
//! and told [`ViewerEvent::Lagged`] (the route closes it with 1013; the
//! client reattaches and is replayed the scrollback).

pub mod command;
mod info;
mod registry;
mod scrollback;
mod session;
pub(crate) use session::SCRUBBED_ENV;
mod viewer;

use std::path::PathBuf;
use std::time::Duration;

pub use info::{ExitInfo, SessionInfo, SessionStatus};
pub use registry::{EventSink, Registry};
pub use scrollback::{Scrollback, SCROLLBACK_BYTES};
pub use session::Session;
pub use viewer::{Viewer, ViewerEvent};

/// Default for `--max-sessions`: children running at once.
pub const DEFAULT_MAX_SESSIONS: usize = 16;
/// Default for `--idle-timeout`: how long a session lives without a viewer.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Viewers one session accepts at once; each costs a queue of up to
/// [`VIEWER_QUEUE_BYTES`], so this bounds a session's memory.
pub const MAX_VIEWERS_PER_SESSION: usize = 32;
/// Output bytes queued for one viewer before it counts as lagged. About 80 ms
/// of output at the 50 MB/s target: enough to ride out a scheduling hiccup,
/// small enough that a stuck client costs little.
pub const VIEWER_QUEUE_BYTES: usize = 4 * 1024 * 1024;
/// Chunks queued for one viewer (the channel bound; bytes usually bind first).
pub const VIEWER_QUEUE_CHUNKS: usize = 1024;
/// Largest single read from the PTY, and so the largest output chunk.
pub const READ_CHUNK: usize = 64 * 1024;
/// Between SIGHUP and SIGKILL when a session is killed (`DELETE`, idle).
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// Between SIGHUP and SIGKILL on server shutdown, which must finish in ~1 s.
pub const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
/// How long a keystroke write may wait for a child that does not read its
/// input before the writer gives up, so no caller waits forever.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an exited session stays listed (with its exit code) when it was
/// not killed through [`Registry::kill`]; a killed one is forgotten at exit.
pub const EXITED_RETENTION: Duration = Duration::from_secs(60);
/// Smallest and largest terminal dimension accepted from a client.
pub const SIZE_RANGE: std::ops::RangeInclusive<u16> = 1..=1000;

/// What the server tells the chat library (from the command line).
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Program and arguments every session runs (see [`command::resolve`]).
    pub command: Vec<String>,
    /// Working directory of the children; `None` keeps the server's.
    pub cwd: Option<PathBuf>,
    /// Sessions running at once; one more is refused with
    /// [`ChatError::TooManySessions`] so a client cannot fork-bomb the host.
    pub max_sessions: usize,
    /// A session without a viewer for this long is killed, so closed tabs do
    /// not leave agents running forever.
    pub idle_timeout: Duration,
    /// Base of the children's `DASHGATE_EVENTS_URL`, such as
    /// `ws://127.0.0.1:9119/api/pub`; set by the server once it knows its
    /// port. `None` leaves the variable unset.
    pub events_url: Option<String>,
}

impl ChatConfig {
    /// A config running `command` with the default limits.
    pub fn new(command: Vec<String>) -> Self {
        Self {
            command,
            cwd: None,
            max_sessions: DEFAULT_MAX_SESSIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            events_url: None,
        }
    }
}

impl Default for ChatConfig {
    /// `/bin/sh` with the default limits; the server passes the resolved
    /// command instead.
    fn default() -> Self {
        Self::new(vec![command::FALLBACK_SHELL.to_string()])
    }
}

/// Why a chat operation failed; [`ChatError::code`] is the machine-readable
/// reason the routes put in their JSON bodies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// `max_sessions` children are already running.
    #[error("too many chat sessions: {max} are running, the most allowed")]
    TooManySessions { max: usize },
    /// The session already has [`MAX_VIEWERS_PER_SESSION`] viewers.
    #[error("too many viewers on this session (at most {max})")]
    TooManyViewers { max: usize },
    /// The server is shutting down and starts no new session.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A terminal size outside [`SIZE_RANGE`].
    #[error("terminal size {cols}x{rows} is out of range (1..=1000 each)")]
    BadSize { cols: u16, rows: u16 },
    /// The PTY could not be opened or the chat command not started.
    #[error("cannot start the chat command: {0}")]
    Spawn(String),
    /// The session's program has exited: no more input or resizing.
    #[error("the session has exited")]
    Exited,
    /// The program did not read its input within [`WRITE_TIMEOUT`].
    #[error("the program did not read its input within {}s", WRITE_TIMEOUT.as_secs())]
    WriteTimeout,
    /// Reading or writing the PTY failed.
    #[error("terminal I/O failed: {0}")]
    Io(String),
}

impl ChatError {
    /// Stable snake_case reason for JSON bodies, e.g. `too_many_sessions`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooManySessions { .. } => "too_many_sessions",
            Self::TooManyViewers { .. } => "too_many_viewers",
            Self::ShuttingDown => "shutting_down",
            Self::BadSize { .. } => "bad_size",
            Self::Spawn(_) => "spawn_failed",
            Self::Exited => "session_exited",
            Self::WriteTimeout => "write_timeout",
            Self::Io(_) => "pty_io",
        }
    }
}

/// Refuse terminal sizes a client could use to make the PTY layer allocate
/// absurd buffers, or a zero size that breaks full-screen programs.
pub(crate) fn check_size(cols: u16, rows: u16) -> Result<(), ChatError> {
    if SIZE_RANGE.contains(&cols) && SIZE_RANGE.contains(&rows) {
        Ok(())
    } else {
        Err(ChatError::BadSize { cols, rows })
    }
}
