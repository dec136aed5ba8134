//! `dashgate-publish`: publish JSON messages to a dashgate channel from a
//! shell inside a chat session.
//!
//! ```text
//! dashgate-publish '{"type":"progress","pct":40}'   # each argument is one message
//! some-tool --json-lines | dashgate-publish         # or each line of stdin
//! ```
//!
//! The URL is `$DASHGATE_EVENTS_URL`, which dashgate gives every chat child:
//! a loopback `ws://…/api/pub?channel=session.ID&token=…` whose internal
//! credential the gate accepts only from loopback, only for that channel.
//! `--url URL` overrides it.
//!
//! Deliberately std-only (a blocking socket and the few lines of RFC 6455 a
//! client needs to send text frames), so the helper starts instantly and
//! pulls no async runtime into a one-shot command.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Duration;

use base64::Engine as _;
use rand::RngCore;

const TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dashgate-publish: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let url = match args.iter().position(|a| a == "--url") {
        Some(i) if i + 1 < args.len() => {
            let u = args.remove(i + 1);
            args.remove(i);
            u
        }
        Some(_) => return Err("--url needs a value".into()),
        None => std::env::var("DASHGATE_EVENTS_URL").map_err(|_| {
            "DASHGATE_EVENTS_URL is not set (run inside a dashgate chat session, or pass --url)"
        })?,
    };
    let mut ws = connect(&url)?;
    if args.is_empty() {
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|e| format!("reading stdin: {e}"))?;
            if !line.trim().is_empty() {
                send_frame(&mut ws, 0x1, line.as_bytes())?;
            }
        }
    } else {
        for msg in &args {
            send_frame(&mut ws, 0x1, msg.as_bytes())?;
        }
    }
    // Close and wait for the server to hang up, so every message was read
    // (the server handles frames in order) before this process exits.
    send_frame(&mut ws, 0x8, &1000u16.to_be_bytes())?;
    let mut sink = [0u8; 1024];
    while matches!(ws.read(&mut sink), Ok(n) if n > 0) {}
    Ok(())
}

/// Open the WebSocket: TCP, then the HTTP/1.1 upgrade, which must be 101.
fn connect(url: &str) -> Result<TcpStream, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("only ws:// URLs are supported, not {url:?}"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut s =
        TcpStream::connect(authority).map_err(|e| format!("connecting to {authority}: {e}"))?;
    s.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let key = base64::engine::general_purpose::STANDARD.encode(random::<16>());
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;

    // Read the response head byte by byte: nothing after it may be consumed.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err("response head too large".into());
        }
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return Err("the server closed the connection during the upgrade".into()),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let status = head.lines().next().unwrap_or_default().to_string();
    if status.split_whitespace().nth(1) != Some("101") {
        let mut body = String::new();
        let _ = s.read_to_string(&mut body);
        return Err(format!("refused: {status} {}", body.trim()));
    }
    Ok(s)
}

/// One masked frame (clients must mask, RFC 6455 §5.3).
fn send_frame(s: &mut TcpStream, opcode: u8, payload: &[u8]) -> Result<(), String> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let mask = random::<4>();
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    s.write_all(&frame).map_err(|e| format!("sending: {e}"))
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}
