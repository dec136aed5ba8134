//! One chat session: a child on a PTY, its scrollback and its viewers.
//!
//! Two tasks per session, so neither can hold up the other:
//!
//! * the **reader** reads the PTY master in chunks of up to [`READ_CHUNK`]
//!   (coalescing what the kernel already has, so a fast program costs few
//!   wake-ups), appends each chunk to the ring and hands a `Bytes` clone to
//!   every viewer with `try_send`. It never awaits a viewer.
//! * the **supervisor** owns the `Child`: it reaps it whatever ends it (its
//!   own exit, our SIGKILL, someone else's), so no zombie is left, and turns a
//!   kill request into SIGHUP to the process group, then SIGKILL after the
//!   grace period. Signals are sent only while the child is not yet reaped, so
//!   a recycled pid is never hit.
//!
//! The child is a session leader (`setsid`, done by `pty-process`), so its pid
//! is its process group id and signals reach the programs it started too.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use futures_util::FutureExt;
use parking_lot::Mutex;
use rustix::process::{Pid, Signal};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::info::{rfc3339, ExitInfo, SessionInfo, SessionStatus};
use super::registry::EventSink;
use super::scrollback::Scrollback;
use super::viewer::ViewerSlot;
use super::{check_size, ChatError, READ_CHUNK, WRITE_TIMEOUT};

/// After the child exits, how long the reader may keep draining output the
/// child wrote just before (a background process that keeps the terminal open
/// would otherwise hold the exit back forever).
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(300);

/// First and longest sleep of a keystroke write waiting for room in the PTY.
const WRITE_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(1);
const WRITE_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_millis(20);

/// Server variables a child must not inherit: the startup token (or the
/// path of the file holding it) would let the agent (or anything it runs)
/// act as the dashboard's owner.
pub(crate) const SCRUBBED_ENV: &[&str] = &[
    "DASHGATE_TOKEN",
    "DASHGATE_TOKEN_FILE",
    "HERMES_DASHBOARD_SESSION_TOKEN",
    "COLUMNS",
    "LINES",
];

/// Sent by [`Session::terminate`] to the supervisor, which alone may signal.
pub(crate) enum Control {
    Terminate { grace: std::time::Duration },
}

/// Called by the supervisor once the session has exited (the registry uses it
/// to forget sessions that were killed on purpose).
pub(crate) type ExitHook = Box<dyn FnOnce(&Arc<Session>) + Send>;

/// What the registry decides about a new session.
pub(crate) struct SpawnSpec<'a> {
    pub id: String,
    pub command: &'a [String],
    pub cwd: Option<&'a std::path::Path>,
    pub env: Vec<(&'static str, String)>,
    pub cols: u16,
    pub rows: u16,
    pub token_sha256: Option<[u8; 32]>,
    pub owner: String,
}

/// A running (or recently exited) chat session.
pub struct Session {
    id: String,
    command: Vec<String>,
    pid: u32,
    created_at: SystemTime,
    /// The principal that started it (`anonymous` for an `allow` rule's
    /// anonymous caller): it, and `chat.see_all` groups, see the session.
    owner: String,
    /// SHA-256 of the internal credential in `DASHGATE_EVENTS_URL`; the
    /// token itself lives only in the child's environment.
    pub(crate) token_sha256: Option<[u8; 32]>,
    pub(crate) state: Mutex<State>,
    /// Taken by a writer for a whole write, so concurrent viewers'
    /// keystrokes are written whole, one after the other.
    write_turn: tokio::sync::Mutex<()>,
    /// A duplicate of the PTY master (non-blocking, like the original) for
    /// keystrokes and `TIOCSWINSZ`; the reader task owns the original.
    /// `None` once exited, which closes it.
    master: Mutex<Option<Arc<OwnedFd>>>,
    control: mpsc::Sender<Control>,
    /// Set once by the supervisor when the child has been reaped.
    exited: watch::Receiver<Option<ExitInfo>>,
    /// A kill was requested, so the idle sweeper does not ask again.
    pub(crate) terminating: AtomicBool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("pid", &self.pid)
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

pub(crate) struct State {
    pub ring: Scrollback,
    pub viewers: Vec<ViewerSlot>,
    pub next_viewer: u64,
    pub cols: u16,
    pub rows: u16,
    pub exit: Option<ExitInfo>,
    /// Since when no viewer is attached (`None` while one is).
    pub idle_since: Option<Instant>,
    pub exited_at: Option<Instant>,
    /// Forget this session as soon as it exits (it was killed on purpose).
    /// Under the same lock as `exit`, so a kill racing the exit cannot miss.
    pub forget_on_exit: bool,
}

/// Between fork and exec: the signals a session is ended with back to
/// their default action. An ignored signal stays ignored across exec, so a
/// server started under `nohup` (SIGHUP ignored) would give its programs a
/// hang-up they cannot hear, and every kill would wait for SIGKILL.
fn default_signals() -> std::io::Result<()> {
    for sig in [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM] {
        // SAFETY: resetting a disposition to SIG_DFL installs no handler.
        if unsafe { libc::signal(sig, libc::SIG_DFL) } == libc::SIG_ERR {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Session {
    /// Open a PTY, start the command on it and the session's two tasks.
    /// Must be called inside a tokio runtime.
    pub(crate) fn spawn(
        spec: SpawnSpec<'_>,
        on_event: EventSink,
        on_exit: ExitHook,
    ) -> Result<Arc<Session>, ChatError> {
        check_size(spec.cols, spec.rows)?;
        let spawn_err = |e: &dyn std::fmt::Display| {
            ChatError::Spawn(format!("cannot start {:?}: {e}", spec.command[0]))
        };
        let (pty, pts) = pty_process::open().map_err(|e| spawn_err(&e))?;
        pty.resize(pty_process::Size::new(spec.rows, spec.cols))
            .map_err(|e| spawn_err(&e))?;
        let master = pty
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| spawn_err(&e))?;

        let mut cmd = pty_process::Command::new(&spec.command[0])
            .args(&spec.command[1..])
            .env("TERM", "xterm-256color")
            // Backstop: if the runtime goes away before the supervisor has
            // reaped the child, tokio kills it rather than orphaning it.
            .kill_on_drop(true);
        for var in SCRUBBED_ENV {
            cmd = cmd.env_remove(var);
        }
        for (k, v) in &spec.env {
            cmd = cmd.env(k, v);
        }
        if let Some(cwd) = spec.cwd {
            cmd = cmd.current_dir(cwd);
        }
        // SAFETY: `default_signals` only calls signal(2), which is
        // async-signal-safe, between fork and exec.
        cmd = unsafe { cmd.pre_exec(default_signals) };
        let child = cmd.spawn(pts).map_err(|e| spawn_err(&e))?;
        let pid = child.id().unwrap_or_default();

        let (control, control_rx) = mpsc::channel(4);
        let (exit_tx, exited) = watch::channel(None);
        let session = Arc::new(Session {
            id: spec.id,
            command: spec.command.to_vec(),
            pid,
            created_at: SystemTime::now(),
            owner: spec.owner,
            token_sha256: spec.token_sha256,
            state: Mutex::new(State {
                ring: Scrollback::default(),
                viewers: Vec::new(),
                next_viewer: 0,
                cols: spec.cols,
                rows: spec.rows,
                exit: None,
                idle_since: Some(Instant::now()),
                exited_at: None,
                forget_on_exit: false,
            }),
            write_turn: tokio::sync::Mutex::new(()),
            master: Mutex::new(Some(Arc::new(master))),
            control,
            exited,
            terminating: AtomicBool::new(false),
        });
        let reader = tokio::spawn(pump(session.clone(), pty));
        tokio::spawn(supervise(
            session.clone(),
            child,
            reader,
            control_rx,
            exit_tx,
            on_event,
            on_exit,
        ));
        Ok(session)
    }

    /// The session id (16 hex characters).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The program and arguments this session runs.
    pub fn command(&self) -> &[String] {
        &self.command
    }

    /// The principal that started the session.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The child's pid (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether the child has not yet been reaped.
    pub fn is_running(&self) -> bool {
        self.state.lock().exit.is_none()
    }

    /// How the program ended, once it has.
    pub fn exit_info(&self) -> Option<ExitInfo> {
        self.state.lock().exit
    }

    /// Wait until the child has exited and been reaped.
    pub async fn wait_exit(&self) -> ExitInfo {
        let mut rx = self.exited.clone();
        let unknown = ExitInfo {
            code: None,
            signal: None,
        };
        // The supervisor always sends before it ends; if it panicked the
        // sender is gone and "unknown" is the honest answer.
        let got = rx.wait_for(Option::is_some).await.map(|v| *v);
        got.ok().flatten().unwrap_or(unknown)
    }

    /// A snapshot for the REST API.
    pub fn info(&self) -> SessionInfo {
        let st = self.state.lock();
        SessionInfo {
            id: self.id.clone(),
            command: self.command.clone(),
            pid: self.pid,
            created_at: rfc3339(self.created_at),
            cols: st.cols,
            rows: st.rows,
            viewers: st.viewers.len(),
            owner: self.owner.clone(),
            watchers: st.viewers.iter().map(|v| v.watcher()).collect(),
            status: if st.exit.is_some() {
                SessionStatus::Exited
            } else {
                SessionStatus::Running
            },
            exit_code: st.exit.and_then(|e| e.code),
            exit_signal: st.exit.and_then(|e| e.signal),
        }
    }

    /// Send keystrokes to the program. Concurrent writers are serialised,
    /// each write whole.
    ///
    /// # Errors
    /// [`ChatError::Exited`] once the program has exited,
    /// [`ChatError::WriteTimeout`] when it has not read its input within
    /// [`WRITE_TIMEOUT`] (the PTY's input buffer is full), [`ChatError::Io`].
    ///
    /// Written with plain non-blocking `write(2)` calls, retried after a short
    /// sleep when the PTY is full, not by waiting for writability: a PTY
    /// master is not reliably woken for writing when the line discipline
    /// consumes input the program never `read()`s (a paste of line-kill
    /// characters stalled a readiness-based writer for good). Keystrokes go
    /// in at once; only a large paste into a busy program ever sleeps.
    pub async fn write(&self, data: &[u8]) -> Result<(), ChatError> {
        let write = async {
            let _turn = self.write_turn.lock().await;
            let mut rest = data;
            let mut backoff = WRITE_BACKOFF_MIN;
            while !rest.is_empty() {
                let fd = self.master.lock().clone().ok_or(ChatError::Exited)?;
                match rustix::io::write(&*fd, rest) {
                    Ok(n) => {
                        rest = &rest[n..];
                        backoff = WRITE_BACKOFF_MIN;
                    }
                    Err(rustix::io::Errno::AGAIN) => {
                        drop(fd);
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(WRITE_BACKOFF_MAX);
                    }
                    Err(rustix::io::Errno::INTR) => {}
                    // EIO: every slave descriptor is closed, the program is gone.
                    Err(rustix::io::Errno::IO) => return Err(ChatError::Exited),
                    Err(e) => return Err(ChatError::Io(e.to_string())),
                }
            }
            Ok(())
        };
        tokio::time::timeout(WRITE_TIMEOUT, write)
            .await
            .map_err(|_| ChatError::WriteTimeout)?
    }

    /// Set the terminal size (`TIOCSWINSZ`; the kernel sends the program
    /// SIGWINCH).
    ///
    /// # Errors
    /// [`ChatError::BadSize`] outside 1..=1000, [`ChatError::Exited`],
    /// [`ChatError::Io`].
    pub fn resize(&self, cols: u16, rows: u16) -> Result<(), ChatError> {
        check_size(cols, rows)?;
        {
            let fd = self.master.lock();
            let fd = fd.as_ref().ok_or(ChatError::Exited)?;
            let size = rustix::termios::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            rustix::termios::tcsetwinsize(fd, size).map_err(|e| ChatError::Io(e.to_string()))?;
        }
        let mut st = self.state.lock();
        st.cols = cols;
        st.rows = rows;
        Ok(())
    }

    /// Ask the supervisor to end the program: SIGHUP to its process group
    /// now, SIGKILL after `grace` if it is still alive. Returns whether the
    /// session was still running.
    pub(crate) fn terminate(&self, grace: std::time::Duration) -> bool {
        if !self.is_running() {
            return false;
        }
        self.terminating.store(true, Ordering::Relaxed);
        // A full queue already holds a terminate request; that is enough.
        let _ = self.control.try_send(Control::Terminate { grace });
        true
    }

    /// How long the session has had no viewer, while it runs.
    pub(crate) fn idle_for(&self) -> Option<std::time::Duration> {
        let st = self.state.lock();
        match st.exit {
            None => st.idle_since.map(|t| t.elapsed()),
            Some(_) => None,
        }
    }

    /// How long ago the child exited.
    pub(crate) fn exited_for(&self) -> Option<std::time::Duration> {
        self.state.lock().exited_at.map(|t| t.elapsed())
    }

    /// Record the exit, close the PTY and end every viewer's queue (each
    /// viewer then reads what is queued, then the exit).
    fn finish(&self, exit: ExitInfo) {
        self.master.lock().take();
        let mut st = self.state.lock();
        st.exit = Some(exit);
        st.exited_at = Some(Instant::now());
        st.idle_since = None;
        st.viewers.clear();
    }
}

/// The reader task: PTY output to the ring and the viewers, until EOF/EIO
/// (Linux answers EIO once every slave descriptor is closed).
async fn pump(session: Arc<Session>, mut pty: pty_process::Pty) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let mut n = match pty.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if e.raw_os_error() != Some(rustix::io::Errno::IO.raw_os_error()) {
                    tracing::debug!(session = %session.id, error = %e, "PTY read ended");
                }
                break;
            }
        };
        // Take whatever the kernel already holds without waiting, so a fast
        // producer is forwarded in large chunks. An error is left for the
        // next awaited read to report.
        while n < buf.len() {
            match pty.read(&mut buf[n..]).now_or_never() {
                Some(Ok(m)) if m > 0 => n += m,
                _ => break,
            }
        }
        session.broadcast(Bytes::copy_from_slice(&buf[..n]));
    }
}

/// The supervisor task: reap the child, signal it on request, then tell
/// everyone how it ended.
async fn supervise(
    session: Arc<Session>,
    mut child: tokio::process::Child,
    mut reader: JoinHandle<()>,
    mut control: mpsc::Receiver<Control>,
    exit_tx: watch::Sender<Option<ExitInfo>>,
    on_event: EventSink,
    on_exit: ExitHook,
) {
    let mut kill_at: Option<tokio::time::Instant> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(Control::Terminate { grace }) = control.recv() => {
                signal_group(&child, Signal::HUP, &session.id);
                let at = tokio::time::Instant::now() + grace;
                kill_at = Some(kill_at.map_or(at, |k| k.min(at)));
            }
            () = sleep_until(kill_at), if kill_at.is_some() => {
                signal_group(&child, Signal::KILL, &session.id);
                kill_at = None;
            }
        }
    };
    let exit = match status {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            ExitInfo {
                code: status.code(),
                signal: status.signal(),
            }
        }
        Err(e) => {
            tracing::error!(session = %session.id, error = %e, "waiting for the chat child failed");
            ExitInfo {
                code: None,
                signal: None,
            }
        }
    };
    if tokio::time::timeout(DRAIN_TIMEOUT, &mut reader)
        .await
        .is_err()
    {
        reader.abort();
    }
    session.finish(exit);
    tracing::info!(
        session = %session.id, pid = session.pid, code = ?exit.code, signal = ?exit.signal,
        "chat session exited"
    );
    on_event(
        "session.exited",
        serde_json::json!({ "id": session.id, "code": exit.code, "signal": exit.signal }),
    );
    on_exit(&session);
    // Last, so whoever awaits `wait_exit` finds the event out and the
    // registry up to date.
    let _ = exit_tx.send(Some(exit));
}

/// Signal the child's process group, but only while the child is unreaped
/// (`Child::id` is `None` afterwards), so the pid cannot have been recycled.
fn signal_group(child: &tokio::process::Child, sig: Signal, id: &str) {
    let Some(pid) = child.id().and_then(|p| Pid::from_raw(p as i32)) else {
        return;
    };
    if let Err(e) = rustix::process::kill_process_group(pid, sig) {
        // ESRCH: already gone, which is what we wanted.
        tracing::debug!(session = %id, ?sig, error = %e, "signal to the chat child failed");
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
