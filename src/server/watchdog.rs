//! A connection's timers and its shutdown signal, watched by a task beside
//! the connection's own.
//!
//! Why a second task: the connection's task is woken several times for
//! every request it serves. Watched in that task (a `select!` of the
//! connection, the server's stop signal and the idle timer), each wake
//! polled the timer and the stop signal again, re-registering both: about
//! 600 instructions of every proxied request, for events that come once an
//! idle time. Here the watchdog sleeps until one of them happens and then
//! tells the connection's task through [`Signal`], which that task reads
//! with one atomic swap per wake.

use std::future::poll_fn;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

use super::limits::Activity;

/// Start a graceful shutdown: an idle HTTP/1 connection closes, an HTTP/2
/// one is told GOAWAY and its open streams may finish.
const SHUTDOWN: u8 = 1;
/// Drop the connection now.
const DROP: u8 = 2;

/// What the watchdog tells the connection's task.
#[derive(Default)]
struct Signal {
    pending: AtomicU8,
    task: AtomicWaker,
}

impl Signal {
    fn send(&self, what: u8) {
        self.pending.fetch_or(what, Ordering::AcqRel);
        self.task.wake();
    }
}

/// Serve `conn` until it ends, is shut down (`shutdown`, hyper's graceful
/// shutdown) for the server's stop (`stopped`), or is idle (`activity`)
/// for `idle`:
///
/// * no first request in the idle time (a silent socket, a bare HTTP/2
///   preface, a head that never ends): dropped;
/// * no open request for the idle time, or a request body that stalled:
///   shut down gracefully, and dropped if still there one more idle time
///   later (a peer that never reads cannot hold it open by not taking the
///   goodbye).
pub async fn serve<C: Future>(
    conn: C,
    shutdown: impl Fn(Pin<&mut C>),
    activity: Arc<Activity>,
    idle: Duration,
    stopped: watch::Receiver<bool>,
) {
    let signal = Arc::new(Signal::default());
    let (done, ended) = oneshot::channel::<()>();
    tokio::spawn(watch(signal.clone(), activity, idle, stopped, ended));
    let mut conn = std::pin::pin!(conn);
    poll_fn(|cx| {
        signal.task.register(cx.waker());
        let got = signal.pending.swap(0, Ordering::AcqRel);
        if got & DROP != 0 {
            return Poll::Ready(());
        }
        if got & SHUTDOWN != 0 {
            shutdown(conn.as_mut());
        }
        conn.as_mut().poll(cx).map(drop)
    })
    .await;
    drop(done);
}

/// The watchdog of one connection; ends when the connection does (`ended`).
async fn watch(
    signal: Arc<Signal>,
    activity: Arc<Activity>,
    idle: Duration,
    mut stopped: watch::Receiver<bool>,
    mut ended: oneshot::Receiver<()>,
) {
    let mut stopping = false;
    let mut goodbye: Option<Instant> = None;
    loop {
        let wake = goodbye
            .or_else(|| activity.idle_deadline(idle))
            .unwrap_or_else(|| Instant::now() + idle);
        tokio::select! {
            _ = &mut ended => return,
            _ = stopped.changed(), if !stopping => {
                stopping = true;
                if goodbye.is_none() {
                    signal.send(SHUTDOWN);
                }
            }
            () = tokio::time::sleep_until(wake) => {
                if goodbye.is_some() {
                    signal.send(DROP);
                    return;
                }
                let idle_now = activity
                    .idle_deadline(idle)
                    .is_some_and(|d| d <= Instant::now());
                if idle_now && !activity.spoke() {
                    signal.send(DROP);
                    return;
                }
                if idle_now || activity.stalled() {
                    if !stopping {
                        signal.send(SHUTDOWN);
                    }
                    goodbye = Some(Instant::now() + idle);
                }
            }
        }
    }
}
