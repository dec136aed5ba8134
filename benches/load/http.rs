//! HTTP/1.1 load generators over N keep-alive connections, recording the
//! latency of every request (to its last body byte): a closed loop sharing
//! a fixed request count, and an open loop at a fixed rate. Bounded by
//! count and by time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// What one round of requests gave.
#[derive(Debug, Default, Clone)]
pub struct Round {
    pub ok: usize,
    pub errors: usize,
    pub secs: f64,
    /// Latency of each successful request, µs.
    pub lat_us: Vec<u32>,
}

impl Round {
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.secs.max(1e-9)
    }
}

/// The target of a round.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    /// Extra request headers (the credential).
    pub headers: Vec<(String, String)>,
    /// Make every request's head differ from the one before (an
    /// `X-Request-Id: <n>` header), as a client that numbers its requests
    /// does (the gate decides every request afresh either way).
    pub fresh: bool,
    /// The `Host` header, when not the address (a name-based virtual host).
    pub host: Option<String>,
    /// Count every answer as one, whatever its status and body (the PGO
    /// training run's refusals and 404s), rather than only a 200 with a
    /// body.
    pub any_status: bool,
}

impl Target {
    fn host(&self) -> String {
        self.host.clone().unwrap_or_else(|| self.addr.to_string())
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// One keep-alive connection to `addr` (bounded), its driver spawned.
async fn open(addr: SocketAddr) -> Option<(Sender, tokio::task::JoinHandle<()>)> {
    let conn = async {
        let s = TcpStream::connect(addr).await.ok()?;
        let _ = s.set_nodelay(true);
        hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .ok()
    };
    let (send, conn) = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .ok()
        .flatten()?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    Some((send, driver))
}

/// Request `n` of a round: `GET path` with the target's headers.
fn request(t: &Target, host: &str, n: usize) -> http::Request<Empty<Bytes>> {
    let mut req = http::Request::get(t.path.as_str()).header("host", host);
    if t.fresh {
        req = req.header("x-request-id", n);
    }
    for (k, v) in &t.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    req.body(Empty::<Bytes>::new()).expect("request")
}

impl Round {
    /// Send one request and read its body; a 200 with a body (any answer
    /// if `any_status`) counts as ok with its latency from `from`, anything
    /// else as an error (false).
    async fn count(
        &mut self,
        send: &mut Sender,
        req: http::Request<Empty<Bytes>>,
        (from, deadline): (Instant, Instant),
        any_status: bool,
    ) -> bool {
        let done = tokio::time::timeout_at(deadline.into(), async {
            let resp = send.send_request(req).await.ok()?;
            let ok = resp.status() == http::StatusCode::OK;
            let body = resp.into_body().collect().await.ok()?;
            (any_status || (ok && !body.to_bytes().is_empty())).then_some(())
        })
        .await;
        if matches!(done, Ok(Some(()))) {
            self.ok += 1;
            self.lat_us.push(from.elapsed().as_micros() as u32);
            true
        } else {
            self.errors += 1;
            false
        }
    }
}

/// One connection of a round: opened, then held until every connection of
/// the round is (`ready`), then handed to `drive` with an empty [`Round`]
/// for `capacity` latencies; a connection that did not open is one error.
async fn on_connection<F, Fut>(
    addr: SocketAddr,
    ready: &Barrier,
    capacity: usize,
    drive: F,
) -> Round
where
    F: FnOnce(Round, Sender) -> Fut,
    Fut: std::future::Future<Output = Round>,
{
    let mut r = Round {
        lat_us: Vec::with_capacity(capacity),
        ..Round::default()
    };
    let conn = open(addr).await;
    ready.wait().await;
    let Some((send, driver)) = conn else {
        r.errors += 1;
        return r;
    };
    let r = drive(r, send).await;
    driver.abort();
    r
}

/// Sum the connections' rounds into one.
async fn gather(tasks: Vec<tokio::task::JoinHandle<Round>>, start: Instant) -> Round {
    let mut out = Round::default();
    for task in tasks {
        if let Ok(r) = task.await {
            out.ok += r.ok;
            out.errors += r.errors;
            out.lat_us.extend(r.lat_us);
        }
    }
    out.secs = start.elapsed().as_secs_f64();
    out
}

/// Send `total` requests over `conns` connections (at most `limit` long).
pub async fn round(t: &Target, conns: usize, total: usize, limit: Duration) -> Round {
    let next = Arc::new(AtomicUsize::new(0));
    let ready = Arc::new(Barrier::new(conns + 1));
    let mut tasks = Vec::with_capacity(conns);
    let deadline = Instant::now() + limit;
    for _ in 0..conns {
        let (t, next, ready) = (t.clone(), next.clone(), ready.clone());
        tasks.push(tokio::spawn(async move {
            let (addr, host) = (t.addr, t.host());
            on_connection(
                addr,
                &ready,
                total / conns + 1,
                |mut r, mut send| async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= total || Instant::now() >= deadline {
                            break;
                        }
                        let req = request(&t, &host, n);
                        if !r
                            .count(&mut send, req, (Instant::now(), deadline), t.any_status)
                            .await
                        {
                            break;
                        }
                    }
                    r
                },
            )
            .await
        }));
    }
    ready.wait().await;
    gather(tasks, Instant::now()).await
}

/// An open-loop round: `rate` requests per second in all, spread evenly
/// over `conns` connections, for `secs`; each connection sends on its own
/// schedule whether or not the server kept up.
///
/// Why: in a closed loop every front runs saturated, and by Little's law
/// its mean latency is `conns ÷ throughput`, so a latency compared there
/// is the throughput compared again. At one offered rate that both fronts
/// carry, latency is a figure of its own.
///
/// A request's latency counts from when it was sent, not from when it was
/// due (wrk2's correction for coordinated omission). Here the load
/// generator shares two cores with the front and the upstream, and a
/// stall of its own of a few milliseconds made every request due meanwhile
/// late: counted from when they were due, the upstream alone read a p99
/// of 2–7 ms at a quarter of its throughput, against 0.6–1 ms closed-loop.
/// At half load a front rarely still holds a connection when its next
/// request is due, which is what that correction is for.
pub async fn paced(t: &Target, conns: usize, rate: f64, secs: f64, limit: Duration) -> Round {
    let ready = Arc::new(Barrier::new(conns + 1));
    let every = Duration::from_secs_f64(conns as f64 / rate);
    let count = (secs * rate / conns as f64).ceil() as usize;
    let start = Instant::now() + Duration::from_millis(200);
    let deadline = start + limit;
    let mut tasks = Vec::with_capacity(conns);
    for k in 0..conns {
        let (t, ready) = (t.clone(), ready.clone());
        tasks.push(tokio::spawn(async move {
            let (addr, host) = (t.addr, t.host());
            let offset = every.mul_f64(k as f64 / conns as f64);
            on_connection(addr, &ready, count, |mut r, mut send| async move {
                for i in 0..count {
                    let due = start + offset + every * i as u32;
                    if Instant::now() < due {
                        tokio::time::sleep_until(due.into()).await;
                    }
                    let sent = Instant::now();
                    if sent >= deadline {
                        break;
                    }
                    let req = request(&t, &host, k * count + i);
                    if !r
                        .count(&mut send, req, (sent, deadline), t.any_status)
                        .await
                    {
                        break;
                    }
                }
                r
            })
            .await
        }));
    }
    ready.wait().await;
    gather(tasks, start).await
}

/// The `q`-quantile (0..=1) of `v`, sorting it.
pub fn quantile(v: &mut [u32], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    let i = ((v.len() - 1) as f64 * q).round() as usize;
    f64::from(v[i])
}

/// The median of `v`.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `GET path` once and parse the JSON body (bounded).
pub async fn get_json(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
) -> Option<serde_json::Value> {
    let fut = async {
        let s = TcpStream::connect(addr).await.ok()?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .ok()?;
        let driver = tokio::spawn(conn);
        let mut req = http::Request::get(path).header("host", addr.to_string());
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = send
            .send_request(req.body(Empty::<Bytes>::new()).ok()?)
            .await
            .ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        driver.abort();
        serde_json::from_slice(&body).ok()
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .ok()
        .flatten()
}

/// `method path` once; the status (bounded). For DELETE and friends.
pub async fn status_of(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &[(String, String)],
) -> Option<u16> {
    let fut = async {
        let s = TcpStream::connect(addr).await.ok()?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .ok()?;
        let driver = tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr.to_string());
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let resp = send
            .send_request(req.body(Empty::<Bytes>::new()).ok()?)
            .await
            .ok()?;
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        driver.abort();
        Some(status)
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .ok()
        .flatten()
}
