//! TLS: dashgate (`--tls-cert/--tls-key`) against Debian's nginx
//! (`make deps-nginx`), the same ECDSA P-256 certificate, the same machine,
//! one run, alternated A B A B.
//!
//! * keep-alive – `GET /api/status` over TLS on `CONNS` kept connections
//!   (dashgate: through the gate, secure preset, with the bearer token;
//!   nginx: a `return 200` of a fixed JSON body, so nginx does no work
//!   beyond TLS and HTTP and the ratio is an upper bound on what TLS in
//!   dashgate costs against nginx's);
//! * handshakes – new TLS connections per second: connect, full handshake
//!   (no resumption), one `GET /api/status`, close, from `CONNS` loops.
//!
//! Every socket is loopback; every loop is bounded by count and by time.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::http::median;
use super::procs::{Dashgate, Proc};
use super::table::{Row, Table};
use super::{Plan, TOKEN};

const CONNS: usize = 16;
const LIMIT: Duration = Duration::from_secs(30);
/// Rounds per server and the handshakes in each (full run).
const ROUNDS: usize = 5;
const HANDSHAKES: usize = 2_000;

/// A client that trusts only `cert_pem`, offering http/1.1.
fn connector(cert_pem: &[u8]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(cert_pem) {
        roots.add(c.expect("PEM")).expect("root");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every new connection a full handshake: the figure is the handshake.
    cfg.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(cfg))
}

async fn open(
    addr: SocketAddr,
    tls: &TlsConnector,
) -> Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>> {
    let fut = async {
        let s = TcpStream::connect(addr).await.ok()?;
        let _ = s.set_nodelay(true);
        let s = tls
            .connect(ServerName::IpAddress(addr.ip().into()), s)
            .await
            .ok()?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
            .await
            .ok()?;
        tokio::spawn(conn);
        Some(send)
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .ok()
        .flatten()
}

async fn get(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    addr: SocketAddr,
    bearer: &str,
) -> bool {
    let req = http::Request::get("/api/status")
        .header("host", addr.to_string())
        .header("authorization", bearer)
        .body(Empty::<Bytes>::new())
        .expect("request");
    let fut = async {
        let resp = send.send_request(req).await.ok()?;
        let ok = resp.status() == http::StatusCode::OK;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        Some(ok && !body.is_empty())
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), fut).await,
        Ok(Some(true))
    )
}

/// `total` requests over `CONNS` kept TLS connections: requests/s.
async fn keep_alive(addr: SocketAddr, tls: &TlsConnector, total: usize) -> Option<f64> {
    let mut sends = Vec::new();
    for _ in 0..CONNS {
        sends.push(open(addr, tls).await?);
    }
    share(total, sends, move |send, bearer| {
        Box::pin(async move { get(send, addr, bearer).await })
    })
    .await
}

/// `total` new connections (handshake + one request + close) from
/// `CONNS` loops: connections/s.
async fn handshakes(addr: SocketAddr, tls: &TlsConnector, total: usize) -> Option<f64> {
    share(total, vec![tls.clone(); CONNS], move |tls, bearer| {
        Box::pin(async move {
            match open(addr, tls).await {
                Some(mut send) => get(&mut send, addr, bearer).await,
                None => false,
            }
        })
    })
    .await
}

/// A loop per state in `states`, together making `total` requests with
/// `step` (bounded by [`LIMIT`]): requests/s, or `None` if one failed.
/// `step` makes one request on its loop's state (a connection, or what
/// opens one) with the `Authorization` line, and says whether it succeeded.
async fn share<S, F>(total: usize, states: Vec<S>, step: F) -> Option<f64>
where
    S: Send + 'static,
    F: for<'a> Fn(&'a mut S, &'a str) -> Pin<Box<dyn Future<Output = bool> + Send + 'a>>
        + Send
        + Sync
        + 'static,
{
    let next = Arc::new(AtomicUsize::new(0));
    let step = Arc::new(step);
    let start = Instant::now();
    let deadline = start + LIMIT;
    let tasks: Vec<_> = states
        .into_iter()
        .map(|mut state| {
            let (next, step) = (next.clone(), step.clone());
            tokio::spawn(async move {
                let bearer = format!("Bearer {TOKEN}");
                let mut ok = 0usize;
                while next.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < deadline {
                    if !step(&mut state, &bearer).await {
                        return None;
                    }
                    ok += 1;
                }
                Some(ok)
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.ok()??;
    }
    Some(ok as f64 / start.elapsed().as_secs_f64())
}

/// nginx with its workers: the master is told to stop (SIGTERM ends its
/// workers too) and waited for, boundedly, before `Proc` kills it.
pub struct Nginx(Proc);

impl Nginx {
    /// The pids of the master's children (its workers).
    pub fn workers(&self) -> Vec<u32> {
        let pid = self.0.pid();
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let pid = self.0.pid() as libc::pid_t;
        // SAFETY: a signal to our own child's pid, which it still holds
        // (not reaped yet).
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.0.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A free loopback port (bound and released: nginx binds it next).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// Debian's nginx (`$NGINX`, default `/usr/sbin/nginx`) in the temp prefix
/// `dir`, in the foreground, a worker per core, access log off, with
/// `http_conf` inside its `http {}` block; returns once every address in
/// `listen` accepts connections (bounded).
pub fn run_nginx(dir: &Path, http_conf: &str, listen: &[SocketAddr]) -> Result<Nginx, String> {
    let bin = std::env::var("NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into());
    if !Path::new(&bin).exists() {
        return Err(format!("no {bin}: run `make deps-nginx`"));
    }
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| e.to_string())?;
    let d = dir.display();
    let conf = format!(
        r#"daemon off;
worker_processes auto;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  keepalive_requests 1000000;
{http_conf}
}}
"#
    );
    std::fs::write(dir.join("nginx.conf"), conf).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(&bin);
    cmd.arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("logs/error.log"));
    let proc = Nginx(Proc::spawn(cmd).map_err(|e| format!("cannot run {bin}: {e}"))?);
    let end = Instant::now() + Duration::from_secs(10);
    for addr in listen {
        while std::net::TcpStream::connect(addr).is_err() {
            if Instant::now() > end {
                let log = std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default();
                return Err(format!("nginx did not listen on {addr}: {log}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(proc)
}

/// nginx serving the pair in `dir` over TLS on a free loopback port.
fn start_nginx(dir: &Path) -> Result<(Nginx, SocketAddr), String> {
    let port = free_port()?;
    let d = dir.display();
    let conf = format!(
        r#"  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {d}/cert.pem;
    ssl_certificate_key {d}/key.pem;
    ssl_protocols TLSv1.3 TLSv1.2;
    ssl_session_tickets off;
    ssl_session_cache off;
    location = /api/status {{
      default_type application/json;
      return 200 '{{"name":"nginx","status":"ok"}}';
    }}
  }}"#
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    Ok((run_nginx(dir, &conf, &[addr])?, addr))
}

/// The TLS rows.
pub async fn run(t: &mut Table, plan: Plan) {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    std::fs::write(dir.path().join("cert.pem"), cert.pem()).expect("cert file");
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).expect("key file");
    let tls = connector(cert.pem().as_bytes());
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    let dash = Dashgate::start(&[
        "--tls-cert",
        cert_file.to_str().expect("UTF-8"),
        "--tls-key",
        key_file.to_str().expect("UTF-8"),
    ]);
    let nginx = start_nginx(dir.path());
    let (rounds, requests, shakes) = if plan.full {
        (ROUNDS, plan.requests, HANDSHAKES)
    } else {
        (1, plan.requests, 50)
    };
    let mut d_ka = Vec::new();
    let mut n_ka = Vec::new();
    let mut d_hs = Vec::new();
    let mut n_hs = Vec::new();
    for _ in 0..rounds {
        d_ka.extend(keep_alive(dash.addr, &tls, requests).await);
        d_hs.extend(handshakes(dash.addr, &tls, shakes).await);
        if let Ok((_, addr)) = &nginx {
            n_ka.extend(keep_alive(*addr, &tls, requests).await);
            n_hs.extend(handshakes(*addr, &tls, shakes).await);
        }
    }
    let note = format!(
        "{CONNS} connections, ECDSA P-256, TLS 1.3 (rustls/ring vs nginx/OpenSSL), median of {rounds} rounds A B A B"
    );
    let rows: [(&str, &Vec<f64>, &Vec<f64>, &str); 2] = [
        ("TLS keep-alive GET /api/status", &d_ka, &n_ka, "requests/s"),
        (
            "new TLS connections (handshake + 1 request)",
            &d_hs,
            &n_hs,
            "connections/s",
        ),
    ];
    for (figure, d, n, unit) in rows {
        if d.len() < rounds {
            t.push(Row::missing(
                &format!("{figure}: dashgate"),
                "—",
                "a round failed",
            ));
            continue;
        }
        let dm = median(d);
        t.push(
            Row::new(
                &format!("{figure}: dashgate"),
                dm,
                unit,
                format!("{dm:.0} {unit}"),
            )
            .note(note.clone()),
        );
        match &nginx {
            Ok(_) if n.len() == rounds => {
                let nm = median(n);
                t.push(
                    Row::new(
                        &format!("{figure}: nginx"),
                        nm,
                        unit,
                        format!("{nm:.0} {unit} (dashgate {:.2}× nginx)", dm / nm),
                    )
                    .note("nginx answers a fixed body (`return 200`); dashgate decides each request through the gate"),
                );
            }
            Ok(_) => t.push(Row::missing(
                &format!("{figure}: nginx"),
                "—",
                "a round failed",
            )),
            Err(e) => t.push(Row::missing(&format!("{figure}: nginx"), "—", e)),
        }
    }
    drop(dash);
}
