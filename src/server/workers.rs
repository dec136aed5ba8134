//! Connection workers: every accepted connection lives on one thread.
//!
//! The accept loop runs on the multi-threaded runtime with everything else
//! (signals, reload, housekeeping). Each connection it accepts is handed to
//! one of a few workers, one per core, each a single-threaded tokio
//! runtime on a thread of its own, and stays there: its requests, the
//! gate's decisions, its WebSocket, and (in upstream mode) the connections
//! to the upstream it opens. This is nginx's shape: one event loop per
//! core, no work stealing.
//!
//! Why: on a work-stealing runtime a proxied request crosses threads
//! several times (the client's socket, the upstream connection's task, the
//! response body), and each crossing is a wake-up of a parked thread. Side
//! by side on this 2-core machine a bare hyper proxy used 16–18 µs of CPU per
//! request on the multi-threaded runtime and 11–12 µs on one
//! single-threaded runtime (docs/benchmarks.md). The price is that a busy
//! connection cannot be moved to an idle core; connections are dealt out
//! in turn, so many connections spread evenly.
//!
//! A socket is registered with the reactor of the runtime that polls it,
//! so the stream is moved as a `std` socket and registered again in its
//! worker ([`Workers::spawn`]).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

thread_local! {
    /// The index of the worker this thread is, if it is one.
    static WORKER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// The worker the calling thread is (`None` off the workers): lets
/// per-worker state (the upstream pool) stay on its thread.
pub fn current() -> Option<usize> {
    WORKER.with(std::cell::Cell::get)
}

/// At most this many workers.
pub const MAX_WORKERS: usize = 64;

/// How many workers: one per core the process may use.
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, MAX_WORKERS))
}

struct Worker {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

/// The connection workers of one server; dropped, they stop (their tasks
/// are dropped after a short grace).
pub struct Workers {
    workers: Vec<Worker>,
    next: AtomicUsize,
}

impl Workers {
    /// Start `n` workers (at least one).
    ///
    /// # Errors
    /// A runtime or thread could not be made.
    pub fn start(n: usize) -> std::io::Result<Self> {
        let n = n.clamp(1, MAX_WORKERS);
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            // Not joined: a worker stops on its own once told (its tasks
            // dropped after a short grace), and its owner is shutting down.
            std::thread::Builder::new()
                .name(format!("dashgate-conn-{i}"))
                .spawn(move || {
                    WORKER.with(|w| w.set(Some(i)));
                    rt.block_on(async {
                        let _ = stopped.await;
                    });
                    rt.shutdown_timeout(Duration::from_millis(200));
                })?;
            workers.push(Worker {
                handle,
                stop: Some(stop),
            });
        }
        Ok(Self {
            workers,
            next: AtomicUsize::new(0),
        })
    }

    /// How many workers there are.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Whether there are none (never: [`Self::start`] makes at least one).
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Run a connection on the next worker in turn: `stream` is taken off
    /// this runtime's reactor and `serve` gets it registered on the
    /// worker's.
    pub fn spawn<S, F>(&self, stream: tokio::net::TcpStream, serve: S)
    where
        S: FnOnce(tokio::net::TcpStream) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let std = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "connection could not be handed to a worker");
                return;
            }
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.workers.len();
        self.workers[i].handle.spawn(async move {
            match tokio::net::TcpStream::from_std(std) {
                Ok(stream) => serve(stream).await,
                Err(e) => tracing::warn!(error = %e, "connection could not be registered"),
            }
        });
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for w in &mut self.workers {
            if let Some(stop) = w.stop.take() {
                let _ = stop.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_runs_on_a_worker_and_keeps_its_socket() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let workers = Workers::start(2).unwrap();
        assert_eq!(workers.len(), 2);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 16];
            let n = c.read(&mut buf).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let (s, _) = l.accept().await.unwrap();
        assert_eq!(current(), None, "the accept loop is not a worker");
        workers.spawn(s, |mut s| async move {
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            let on = current().map_or("none".to_string(), |i| i.to_string());
            s.write_all(format!("{}:{on}", String::from_utf8_lossy(&buf)).as_bytes())
                .await
                .unwrap();
        });
        assert_eq!(client.await.unwrap(), "ping:0");
    }
}
