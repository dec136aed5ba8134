//! `--upstream-command CMD` (SPEC §6): dashgate runs the upstream itself.
//!
//! The command (shell words, like `--chat-command`) is started in a process
//! group of its own, without dashgate's startup token in its environment
//! ([`crate::chat::SCRUBBED_ENV`]); its stdout and stderr become lines of
//! dashgate's log (target `dashgate::upstream`, with the child's pid). The
//! supervisor waits (at most [`START_WAIT`]) until the upstream's address
//! accepts TCP connections and logs when it does; until then, and while it
//! is being restarted, proxied requests get 502 `upstream_unavailable` (the
//! proxy's answer to a refused connection). When the child exits it is
//! started again after a delay that doubles from [`BACKOFF_MIN`] to
//! [`BACKOFF_MAX`], back to the minimum once a child has run for
//! [`BACKOFF_RESET`]. On shutdown its group gets SIGTERM, then SIGKILL after
//! [`STOP_GRACE`], and the child is reaped.

use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::ops::{connects, Health, Ops};

/// First delay before a restart.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest delay before a restart.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long resets the delay to [`BACKOFF_MIN`].
pub const BACKOFF_RESET: Duration = Duration::from_secs(60);
/// How long the supervisor waits for a new child to accept connections
/// before it says so in the log and marks the upstream down (the child is
/// left running; the prober marks it up when it starts accepting).
pub const START_WAIT: Duration = Duration::from_secs(60);
/// How often the supervisor tries to connect while it waits.
const READY_POLL: Duration = Duration::from_millis(50);
/// After SIGTERM, how long the child's group has before SIGKILL (dashgate
/// exits within 2 s of SIGTERM, SPEC §4).
pub const STOP_GRACE: Duration = Duration::from_millis(1500);
/// The longest line of the child's output logged as one line.
const MAX_LINE: usize = 8 * 1024;

/// The running supervisor; [`Supervisor::stop`] ends it and its child.
pub struct Supervisor {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// A handle that asks the supervisor to stop (from the shutdown future).
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }

    /// Stop the child (SIGTERM to its group, SIGKILL after [`STOP_GRACE`])
    /// and wait until it is reaped (bounded).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(STOP_GRACE + Duration::from_secs(1), self.task).await;
    }
}

/// Parse `--upstream-command` as shell words.
///
/// # Errors
/// Not valid shell words, or no word at all.
pub fn parse_command(cmd: &str) -> Result<Vec<String>, String> {
    let words = shell_words::split(cmd)
        .map_err(|e| format!("--upstream-command {cmd:?} is not valid shell words: {e}"))?;
    if words.is_empty() {
        return Err("--upstream-command is empty: give the program to run".into());
    }
    Ok(words)
}

/// Start supervising `command` (which serves the upstream of `ops`).
pub fn start(command: Vec<String>, ops: Arc<Ops>) -> Supervisor {
    ops.set_supervised(&command[0]);
    let (stop, stop_rx) = watch::channel(false);
    let task = tokio::spawn(supervise(command, ops, stop_rx));
    Supervisor { stop, task }
}

enum End {
    Exited(std::io::Result<ExitStatus>),
    Stopped,
}

async fn supervise(command: Vec<String>, ops: Arc<Ops>, mut stop: watch::Receiver<bool>) {
    let program = command[0].clone();
    let mut delay = BACKOFF_MIN;
    let mut restart = false;
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        match spawn(&command) {
            Err(e) => {
                let why = format!("cannot start {program:?}: {e}");
                tracing::error!(upstream = %ops.url, "{why}");
                ops.child_started(None, restart);
                ops.child_exited(why);
            }
            Ok(mut child) => {
                let pid = child.id();
                tracing::info!(upstream = %ops.url, pid, command = ?command, restart, "started the upstream");
                ops.child_started(pid, restart);
                match run(&mut child, &ops, &mut stop).await {
                    End::Stopped => {
                        terminate(&mut child).await;
                        tracing::info!(upstream = %ops.url, pid, "stopped the upstream");
                        return;
                    }
                    End::Exited(status) => {
                        kill_group(pid, rustix::process::Signal::KILL);
                        let why = match status {
                            Ok(s) => format!("{program} exited ({s})"),
                            Err(e) => format!("{program}: waiting for it failed: {e}"),
                        };
                        ops.child_exited(why);
                    }
                }
            }
        }
        restart = true;
        if started.elapsed() >= BACKOFF_RESET {
            delay = BACKOFF_MIN;
        }
        tracing::warn!(upstream = %ops.url, delay_ms = delay.as_millis() as u64, "restarting the upstream");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        delay = (delay * 2).min(BACKOFF_MAX);
    }
}

/// Start one child: own process group, scrubbed environment, output piped
/// to the log, SIGTERM if dashgate dies without stopping it.
fn spawn(command: &[String]) -> std::io::Result<Child> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    for var in crate::chat::SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    // SAFETY: the closure runs in the forked child before exec and only
    // makes one system call (prctl), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM))
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    if let Some(out) = child.stdout.take() {
        tokio::spawn(log_lines(out, pid, "stdout"));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(log_lines(err, pid, "stderr"));
    }
    Ok(child)
}

/// Wait for the child to exit or for the stop signal, meanwhile waiting
/// (bounded) for the upstream to accept connections.
async fn run(child: &mut Child, ops: &Ops, stop: &mut watch::Receiver<bool>) -> End {
    let started = Instant::now();
    let ready = async {
        while started.elapsed() < START_WAIT {
            if connects(&ops.addr, READY_POLL * 10).await.is_ok() {
                tracing::info!(
                    upstream = %ops.url,
                    after_ms = started.elapsed().as_millis() as u64,
                    "the upstream accepts connections"
                );
                ops.reachable();
                return;
            }
            tokio::time::sleep(READY_POLL).await;
        }
        let why = format!(
            "started {} s ago and does not accept connections on {}",
            START_WAIT.as_secs(),
            ops.addr
        );
        tracing::warn!(upstream = %ops.url, "{why}");
        if ops.health() == Health::Starting {
            ops.set(Health::Down, Some(why));
        }
    };
    tokio::pin!(ready);
    let mut waiting = true;
    loop {
        tokio::select! {
            status = child.wait() => return End::Exited(status),
            _ = stop.changed() => return End::Stopped,
            () = &mut ready, if waiting => waiting = false,
        }
    }
}

fn kill_group(pid: Option<u32>, sig: rustix::process::Signal) -> bool {
    let Some(pid) = pid
        .and_then(|p| i32::try_from(p).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    rustix::process::kill_process_group(pid, sig).is_ok()
}

/// SIGTERM to the child's group, SIGKILL after [`STOP_GRACE`], reaped.
async fn terminate(child: &mut Child) {
    let pid = child.id();
    kill_group(pid, rustix::process::Signal::TERM);
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!(pid, "the upstream did not exit on SIGTERM: SIGKILL");
        let _ = child.start_kill();
    }
    // Whatever else is left of its group (the leader may be gone).
    kill_group(pid, rustix::process::Signal::KILL);
    let _ = tokio::time::timeout(Duration::from_millis(500), child.wait()).await;
}

/// Log the child's output line by line (a longer line in pieces of
/// [`MAX_LINE`]).
async fn log_lines(mut r: impl AsyncRead + Unpin, pid: Option<u32>, stream: &'static str) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let emit = |line: &[u8]| {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        tracing::info!(target: "dashgate::upstream", pid, stream, "{text}");
    };
    loop {
        let n = match r.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        while let Some(i) = buf.iter().position(|b| *b == b'\n') {
            emit(&buf[..i]);
            buf.drain(..=i);
        }
        while buf.len() >= MAX_LINE {
            emit(&buf[..MAX_LINE]);
            buf.drain(..MAX_LINE);
        }
    }
    if !buf.is_empty() {
        emit(&buf);
    }
}
