//! A minimal WebSocket reader for the fan-out's 1,000 subscribers.
//!
//! The subscribers share two cores with the server they measure, so they
//! should cost as little as possible: a handshake written by hand, then
//! frames parsed straight out of one read buffer (server frames are never
//! masked), no per-message allocation. The publisher and every other client
//! in the benchmarks use tokio-tungstenite.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub const OP_TEXT: u8 = 0x1;
pub const OP_CLOSE: u8 = 0x8;

pub struct RawWs {
    s: TcpStream,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// `(opcode, payload start, payload end)` of the first whole frame in `b`.
fn parse(b: &[u8]) -> Option<Result<(u8, usize, usize), ()>> {
    if b.len() < 2 {
        return None;
    }
    if b[1] & 0x80 != 0 {
        return Some(Err(())); // a masked frame from a server is a protocol error
    }
    let (hdr, len) = match b[1] & 0x7f {
        126 => (
            4,
            u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as usize,
        ),
        127 => (
            10,
            u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize,
        ),
        n => (2, n as usize),
    };
    (b.len() >= hdr + len).then_some(Ok((b[0] & 0x0f, hdr, hdr + len)))
}

impl RawWs {
    /// Open `path` on `addr` from `local`, with extra request headers.
    pub async fn connect(
        addr: SocketAddr,
        local: IpAddr,
        path: &str,
        headers: &[(String, String)],
    ) -> Result<RawWs, String> {
        let fut = async {
            let sock = TcpSocket::new_v4().map_err(|e| e.to_string())?;
            sock.bind(SocketAddr::new(local, 0))
                .map_err(|e| e.to_string())?;
            let mut s = sock.connect(addr).await.map_err(|e| e.to_string())?;
            let _ = s.set_nodelay(true);
            let mut req = format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            );
            for (k, v) in headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str("\r\n");
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 8192];
            let mut end = 0;
            let head_end = loop {
                if let Some(i) = buf[..end].windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                if end == buf.len() {
                    return Err("handshake answer too long".to_string());
                }
                let n = s.read(&mut buf[end..]).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("closed during the handshake".to_string());
                }
                end += n;
            };
            let status = String::from_utf8_lossy(&buf[..head_end.min(64)]).into_owned();
            if !status.starts_with("HTTP/1.1 101") {
                return Err(format!(
                    "upgrade refused: {}",
                    status.lines().next().unwrap_or("")
                ));
            }
            Ok(RawWs {
                s,
                buf,
                start: head_end,
                end,
            })
        };
        tokio::time::timeout(Duration::from_secs(15), fut)
            .await
            .map_err(|_| "handshake timed out".to_string())?
    }

    /// The next frame: opcode and payload; `None` at the end of the stream.
    /// Cancel-safe: nothing is consumed until a whole frame is there.
    pub async fn next(&mut self) -> Option<(u8, &[u8])> {
        let (op, a, b) = loop {
            match parse(&self.buf[self.start..self.end]) {
                Some(Ok((op, a, b))) => break (op, self.start + a, self.start + b),
                Some(Err(())) => return None,
                None => {}
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            match self.s.read(&mut self.buf[self.end..]).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.end += n,
            }
        };
        self.start = b;
        Some((op, &self.buf[a..b]))
    }
}
