//! `hyper-floor PORT UPSTREAM`: a reverse proxy with nothing but hyper and
//! tokio — no gate, no routing, no header rewriting, no timers — to measure
//! what dashgate's proxy costs above the libraries it is built on.
//!
//! One pool of kept-alive upstream connections (a stack behind a lock, as
//! dashgate's), each driven by a task of its own. `CT=1` runs it on one
//! single-threaded runtime instead of the work-stealing one: the two
//! figures side by side are why dashgate serves connections on one-thread
//! workers. The response body is collected before it is sent on (it is
//! 1 KiB in the bench), so the connection can go back to the pool at once.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};

type Pool = Arc<Mutex<Vec<SendRequest<Incoming>>>>;

async fn connect(up: SocketAddr) -> Result<SendRequest<Incoming>, String> {
    let s = TcpStream::connect(up).await.map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(tx)
}

async fn proxy(
    pool: Pool,
    up: SocketAddr,
    mut req: http::Request<Incoming>,
) -> Result<http::Response<Full<Bytes>>, String> {
    let pooled = pool.lock().pop();
    let mut tx = match pooled {
        Some(t) => t,
        None => connect(up).await?,
    };
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    *req.uri_mut() = target.parse().map_err(|_| "bad target".to_string())?;
    req.headers_mut().insert(
        http::header::HOST,
        http::HeaderValue::from_static("upstream"),
    );
    let res = tx.send_request(req).await.map_err(|e| e.to_string())?;
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    pool.lock().push(tx);
    Ok(http::Response::from_parts(parts, Full::new(bytes)))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(port), Some(up)) = (
        args.get(1).and_then(|p| p.parse::<u16>().ok()),
        args.get(2).and_then(|u| u.parse::<SocketAddr>().ok()),
    ) else {
        eprintln!("usage: hyper-floor PORT UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let rt = if std::env::var_os("CT").is_some() {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    }
    .expect("runtime");
    rt.block_on(async move {
        let l = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        let pool: Pool = Arc::default();
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let pool = pool.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| proxy(pool.clone(), up, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
}
