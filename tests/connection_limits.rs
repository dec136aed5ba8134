//! Connections a client cannot hold forever (SPEC §8): a request body must
//! keep moving, an HTTP/2 connection with no open stream is closed after the
//! idle time, and one peer address holds at most
//! `--max-connections-per-client` connections (trusted proxies exempt).
//!
//! The idle time is shortened with `DASHGATE_REQUEST_TIMEOUT` (an environment
//! variable rather than the flag, so these tests also run, and fail, against
//! a binary that knows neither).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;

/// The idle time the servers here run with, in seconds.
const IDLE: u64 = 2;

/// Generous bound on "the server acts on the idle time": idle time, a
/// second idle time for an HTTP/2 goodbye, and scheduling slack.
fn bound() -> Duration {
    Duration::from_secs(3 * IDLE + 4)
}

/// A blocking TCP connection from `local` (std cannot bind before
/// connecting, so through a tokio socket on a throwaway runtime).
fn connect_from(local: &str, addr: SocketAddr) -> TcpStream {
    let local: std::net::IpAddr = local.parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let s = rt
        .block_on(async {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind(SocketAddr::new(local, 0))?;
            sock.connect(addr).await
        })
        .unwrap();
    let s = s.into_std().unwrap();
    s.set_nonblocking(false).unwrap();
    s
}

/// Read until EOF, an error, or `until`; what was read and whether the
/// server closed the connection (EOF or reset) before `until`.
fn read_until_closed(s: &mut TcpStream, until: Instant) -> (Vec<u8>, bool) {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (mut got, mut buf) = (Vec::new(), [0u8; 4096]);
    while Instant::now() < until {
        match s.read(&mut buf) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (got, true),
        }
    }
    (got, false)
}

fn status_of(reply: &[u8]) -> u16 {
    String::from_utf8_lossy(reply)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Four POSTs whose bodies never come take all four slots; each gets 408
/// and its connection closes within the idle time, and the server then
/// answers a new request.
#[test]
fn stalled_request_bodies_get_408_and_free_their_slots() {
    let s = launch()
        .arg("--insecure")
        .args(["--max-connections", "4"])
        .env("DASHGATE_REQUEST_TIMEOUT", &IDLE.to_string())
        .start();
    let a = s.addr;
    let mut stalled: Vec<TcpStream> = (0..4)
        .map(|i| {
            let mut c = TcpStream::connect(a).unwrap();
            // The head, and (for half of them) the first bytes of the body.
            let head = format!(
                "POST /api/login HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{}",
                if i % 2 == 0 { "" } else { "{\"user\":" }
            );
            c.write_all(head.as_bytes()).unwrap();
            c
        })
        .collect();
    let t0 = Instant::now();
    let handles: Vec<_> = stalled
        .iter_mut()
        .map(|c| {
            let mut c = c.try_clone().unwrap();
            std::thread::spawn(move || read_until_closed(&mut c, Instant::now() + bound()))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (reply, closed) = h.join().unwrap();
        let text = String::from_utf8_lossy(&reply).into_owned();
        assert_eq!(
            status_of(&reply),
            408,
            "connection {i} after {:?}: {text:?}",
            t0.elapsed()
        );
        assert!(text.contains("request_timeout"), "connection {i}: {text:?}");
        assert!(closed, "connection {i} still open after 408: {text:?}");
    }
    assert!(
        t0.elapsed() >= Duration::from_secs(IDLE) - Duration::from_millis(200),
        "408 before the idle time: {:?}",
        t0.elapsed()
    );
    drop(stalled);
    let (st, body) = raw_get(a, "/api/status");
    assert_eq!(st, 200, "{body}");
}

/// A body that keeps moving, however slowly, is read to its end: the limit
/// is on silence, not on the length of the upload.
#[test]
fn a_slow_body_that_keeps_moving_is_read() {
    let s = launch()
        .arg("--insecure")
        .env("DASHGATE_REQUEST_TIMEOUT", &IDLE.to_string())
        .start();
    let a = s.addr;
    let body = br#"{"user":"nobody","password":"not the password"}"#;
    let mut c = TcpStream::connect(a).unwrap();
    c.write_all(
        format!(
            "POST /api/login HTTP/1.1\r\nHost: {a}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    // Over twice the idle time in all, a piece every half of it.
    let pieces = body.chunks(body.len() / 5 + 1).collect::<Vec<_>>();
    assert!(pieces.len() >= 5);
    for p in pieces {
        std::thread::sleep(Duration::from_millis(IDLE * 1000 / 2));
        c.write_all(p).unwrap();
    }
    let (reply, _) = read_until_closed(&mut c, Instant::now() + bound());
    let text = String::from_utf8_lossy(&reply);
    let st = status_of(&reply);
    assert!(st != 408 && st != 0, "{text:?}");
    assert!(!text.contains("request_timeout"), "{text:?}");
}

/// A request head must be all there within the idle time, however it
/// trickles in: a byte every quarter of the idle time, as a first head and
/// as the next head on a kept-alive connection. Each connection is closed
/// without an answer, no sooner than the idle time after it last finished
/// something, and the slots they held serve again.
#[test]
fn request_heads_that_trickle_in_are_cut_off() {
    let s = launch()
        .arg("--insecure")
        .args(["--max-connections", "2"])
        .env("DASHGATE_REQUEST_TIMEOUT", &IDLE.to_string())
        .start();
    let a = s.addr;
    let mut first = TcpStream::connect(a).unwrap();
    let mut kept = TcpStream::connect(a).unwrap();
    assert_eq!(kept_get(&mut kept, a), 200);
    let t0 = Instant::now();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: {a}\r\nX-Slow: {}",
        "z".repeat(64)
    );
    let writers: Vec<_> = [&first, &kept]
        .into_iter()
        .map(|c| {
            let (mut c, head) = (c.try_clone().unwrap(), head.clone());
            std::thread::spawn(move || {
                for b in head.bytes() {
                    if c.write_all(&[b]).is_err() {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(IDLE * 1000 / 4));
                }
            })
        })
        .collect();
    for (name, c) in [("first head", &mut first), ("next head", &mut kept)] {
        let (reply, closed) = read_until_closed(c, t0 + bound());
        assert!(closed, "{name}: still open after {:?}", t0.elapsed());
        assert!(
            reply.is_empty(),
            "{name}: {:?}",
            String::from_utf8_lossy(&reply)
        );
    }
    assert!(
        t0.elapsed() >= Duration::from_secs(IDLE) - Duration::from_millis(200),
        "closed before the idle time: {:?}",
        t0.elapsed()
    );
    drop((first, kept));
    for w in writers {
        w.join().unwrap();
    }
    let (st, body) = raw_get(a, "/api/status");
    assert_eq!(st, 200, "{body}");
}

/// The prior-knowledge HTTP/2 preface, an empty SETTINGS frame and one
/// `GET path` on stream 1 (HPACK literals, as in tests/gate.rs).
fn h2c_hello(addr: SocketAddr, path: &str) -> Vec<u8> {
    h2c_request(addr, 0x82, path, &[], true)
}

/// The preface, SETTINGS and the HEADERS of one request on stream 1:
/// `method` an HPACK static index (0x82 GET, 0x83 POST), `extra` more
/// header block, `end` whether the request ends with its head.
fn h2c_request(addr: SocketAddr, method: u8, path: &str, extra: &[u8], end: bool) -> Vec<u8> {
    let authority = addr.to_string();
    let mut block = vec![method, 0x86, 0x04, path.len() as u8];
    block.extend(path.bytes());
    block.extend([0x01, authority.len() as u8]);
    block.extend(authority.bytes());
    block.extend(extra);
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend([0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    let len = block.len();
    // HEADERS: END_HEADERS, and END_STREAM when the request has no body.
    let flags = if end { 0x5 } else { 0x4 };
    out.extend([
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        0x1,
        flags,
        0,
        0,
        0,
        1,
    ]);
    out.extend(block);
    out
}

/// Does `bytes` (what an HTTP/2 server wrote) contain a GOAWAY frame?
fn has_goaway(bytes: &[u8]) -> bool {
    // Skip the frames one by one: 9-byte header, then the payload.
    let mut i = 0;
    while i + 9 <= bytes.len() {
        let len = (usize::from(bytes[i]) << 16)
            | (usize::from(bytes[i + 1]) << 8)
            | usize::from(bytes[i + 2]);
        if bytes[i + 3] == 0x7 {
            return true;
        }
        i += 9 + len;
    }
    false
}

/// Four HTTP/2 connections that made one request each and then idle take
/// all four slots; each is told GOAWAY and closed, and the server then
/// answers a new request.
#[test]
fn idle_http2_connections_are_closed_and_free_their_slots() {
    let s = launch()
        .arg("--insecure")
        .args(["--max-connections", "4"])
        .env("DASHGATE_REQUEST_TIMEOUT", &IDLE.to_string())
        .start();
    let a = s.addr;
    let t0 = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let mut c = TcpStream::connect(a).unwrap();
            c.write_all(&h2c_hello(a, "/api/status")).unwrap();
            std::thread::spawn(move || read_until_closed(&mut c, Instant::now() + bound()))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let (got, closed) = h.join().unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.contains(r#""name":"dashgate""#),
            "connection {i} not served: {text:?}"
        );
        assert!(closed, "connection {i} still open after {:?}", t0.elapsed());
        assert!(has_goaway(&got), "connection {i}: no GOAWAY: {text:?}");
    }
    assert!(
        t0.elapsed() >= Duration::from_secs(IDLE) - Duration::from_millis(200),
        "closed before the idle time: {:?}",
        t0.elapsed()
    );
    let (st, body) = raw_get(a, "/api/status");
    assert_eq!(st, 200, "{body}");
}

/// Over HTTP/2 too, a stream whose body never comes is answered 408, and
/// its connection then gets GOAWAY and is closed.
#[test]
fn a_stalled_http2_body_gets_408_and_its_connection_closes() {
    let s = launch()
        .arg("--insecure")
        .env("DASHGATE_REQUEST_TIMEOUT", &IDLE.to_string())
        .start();
    let a = s.addr;
    // content-length: 100 (HPACK name index 28, literal value).
    let length = [0x0f, 0x0d, 3, b'1', b'0', b'0'];
    let mut c = TcpStream::connect(a).unwrap();
    c.write_all(&h2c_request(a, 0x83, "/api/login", &length, false))
        .unwrap();
    let (got, closed) = read_until_closed(&mut c, Instant::now() + bound());
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("request_timeout"), "no 408: {text:?}");
    assert!(closed, "connection still open: {text:?}");
    assert!(has_goaway(&got), "no GOAWAY: {text:?}");
}

/// One `GET /healthz` on a kept connection: 200, or 0 when the server
/// closed the connection instead of answering.
fn kept_get(c: &mut TcpStream, addr: SocketAddr) -> u16 {
    if c.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return 0;
    }
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 4096];
    match c.read(&mut buf) {
        Ok(n) if n > 0 => status_of(&buf[..n]),
        _ => 0,
    }
}

/// 64 connections from 127.0.0.2 are served; the 65th is refused while
/// 127.0.0.3 still gets in; once one of the 64 closes, 127.0.0.2 may open
/// another.
#[test]
fn one_address_holds_at_most_64_connections() {
    let s = launch().arg("--insecure").start();
    let a = s.addr;
    let mut held: Vec<TcpStream> = Vec::new();
    for i in 0..64 {
        let mut c = connect_from("127.0.0.2", a);
        assert_eq!(kept_get(&mut c, a), 200, "connection {i} from 127.0.0.2");
        held.push(c);
    }
    let mut extra = connect_from("127.0.0.2", a);
    assert_eq!(
        kept_get(&mut extra, a),
        0,
        "the 65th connection from 127.0.0.2 was served"
    );
    let mut other = connect_from("127.0.0.3", a);
    assert_eq!(kept_get(&mut other, a), 200, "127.0.0.3 was refused");
    // All 64 are still served.
    for (i, c) in held.iter_mut().enumerate() {
        assert_eq!(kept_get(c, a), 200, "held connection {i}");
    }
    // One closes: its place is free again (the server notices the close
    // at once, but give it a moment).
    drop(held.pop());
    let end = Instant::now() + Duration::from_secs(5);
    let mut served = false;
    while !served && Instant::now() < end {
        let mut c = connect_from("127.0.0.2", a);
        served = kept_get(&mut c, a) == 200;
        if served {
            held.push(c);
        } else {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(
        served,
        "127.0.0.2 stayed locked out after closing a connection"
    );
}

/// `--max-connections-per-client N` sets the limit.
#[test]
fn the_per_client_limit_is_settable() {
    let s = launch()
        .arg("--insecure")
        .args(["--max-connections-per-client", "2"])
        .start();
    let a = s.addr;
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect_from("127.0.0.2", a)).collect();
    for c in &mut held {
        assert_eq!(kept_get(c, a), 200);
    }
    let mut third = connect_from("127.0.0.2", a);
    assert_eq!(kept_get(&mut third, a), 0, "the 3rd connection was served");
}

/// A trusted proxy carries many clients on its connections: the limit does
/// not apply to it.
#[test]
fn a_trusted_proxy_is_not_limited() {
    let (_d, path) = policy_file("version: 1\nextends: insecure\ntrusted_proxies: [loopback]\n");
    let s = launch().policy(&path).start();
    let a = s.addr;
    let mut held: Vec<TcpStream> = Vec::new();
    for i in 0..70 {
        let mut c = connect_from("127.0.0.2", a);
        assert_eq!(
            kept_get(&mut c, a),
            200,
            "connection {i} from the trusted proxy"
        );
        held.push(c);
    }
}
