//! Test harness: the real `dashgate` binary on 127.0.0.1:0 (or 0.0.0.0:0),
//! real HTTP (reqwest) and WebSocket (tokio-tungstenite) clients, with the
//! client socket bound to a chosen loopback address (127.0.0.2, …) so
//! source-address rules can be tested without leaving the machine.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// A running server process; killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    /// The `?token=` of the `open` line, when one was printed.
    pub token: Option<String>,
    /// Everything printed on stdout and stderr so far.
    pub output: Arc<Mutex<String>>,
    /// It printed `listening on https://` (`--tls-cert`, `--tls self-signed`).
    pub https: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builder for a server process.
pub struct Launch {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    host: String,
}

pub fn launch() -> Launch {
    Launch {
        args: vec![],
        envs: vec![],
        host: "127.0.0.1".into(),
    }
}

impl Launch {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }
    /// `--policy FILE`.
    pub fn policy(self, file: impl AsRef<std::path::Path>) -> Self {
        self.arg("--policy")
            .arg(file.as_ref().to_str().expect("UTF-8 path"))
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.envs.push((k.into(), v.into()));
        self
    }
    pub fn host(mut self, h: &str) -> Self {
        self.host = h.into();
        self
    }

    /// The command line, without spawning (for exit-status tests).
    pub fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dashgate"));
        c.arg("serve")
            .args(["--host", &self.host, "--port", "0"])
            .args(&self.args)
            .env_remove("DASHGATE_TOKEN")
            .env_remove("DASHGATE_POLICY")
            .env_remove("DASHGATE_INSECURE")
            .env_remove("HERMES_DASHBOARD_INSECURE")
            .env_remove("HERMES_DASHBOARD_SESSION_TOKEN")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1");
        for (k, v) in &self.envs {
            c.env(k, v);
        }
        c
    }

    /// Spawn and wait for the `listening on` line.
    pub fn start(self) -> Server {
        spawn(self.command())
    }
}

/// Spawn `c`, a dashgate (or a script that execs one), and wait for its
/// `listening on` line; its output is collected in [`Server::output`].
pub fn spawn(mut c: Command) -> Server {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn dashgate");
    let output = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    let out = output.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            out.lock().unwrap().push_str(&line);
            out.lock().unwrap().push('\n');
            let _ = tx.send(line);
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let err = output.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            err.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut addr = None;
    let mut token = None;
    let mut https = false;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                if let Some(a) = line.strip_prefix("listening on http://") {
                    addr = Some(a.trim().parse::<SocketAddr>().expect("addr"));
                }
                if let Some(a) = line.strip_prefix("listening on https://") {
                    addr = Some(a.trim().parse::<SocketAddr>().expect("addr"));
                    https = true;
                }
                let line = line.replacen("open https://", "open http://", 1);
                if let Some(rest) = line.strip_prefix("open http://") {
                    token = rest.split("?token=").nth(1).map(str::to_string);
                    break;
                }
                if addr.is_some() {
                    // the `open` line, if any, follows at once
                    if let Ok(l) = rx.recv_timeout(Duration::from_millis(300)) {
                        let l = l.replacen("open https://", "open http://", 1);
                        if let Some(rest) = l.strip_prefix("open http://") {
                            token = rest.split("?token=").nth(1).map(str::to_string);
                        }
                    }
                    break;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Ok(Some(st)) = child.try_wait() {
                    panic!(
                        "dashgate exited early with {st}: {}",
                        output.lock().unwrap()
                    );
                }
            }
            Err(_) => break,
        }
    }
    let addr = addr.unwrap_or_else(|| panic!("no listening line: {}", output.lock().unwrap()));
    Server {
        child,
        addr,
        token,
        output,
        https,
    }
}

impl Server {
    /// `http://127.0.0.1:PORT` (for a 0.0.0.0 bind too).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
    /// Wait until the output contains `needle` (bounded).
    pub fn wait_output(&self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if self.output().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .args([format!("-{sig}"), self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
    }
}

/// An HTTP client whose connections come from `local` (e.g. 127.0.0.2).
pub fn http_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<IpAddr>().unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

pub fn http() -> reqwest::Client {
    http_from("127.0.0.1")
}

/// A WebSocket handshake from `local` with extra headers. `Ok` is the open
/// socket (101); `Err` carries the refusal's status and body.
pub async fn ws_connect_from(
    local: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<(Ws, Response<Option<Vec<u8>>>), (u16, String)> {
    let mut req = url.into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let host = req.uri().host().unwrap().to_string();
    let port = req.uri().port_u16().unwrap();
    let target: SocketAddr = format!("{host}:{port}").parse().unwrap();
    let local: IpAddr = local.parse().unwrap();
    let sock = if target.is_ipv4() {
        TcpSocket::new_v4().unwrap()
    } else {
        TcpSocket::new_v6().unwrap()
    };
    sock.bind(SocketAddr::new(local, 0)).unwrap();
    let stream = sock.connect(target).await.expect("tcp connect");
    match tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream)).await {
        Ok((ws, resp)) => Ok((ws, resp)),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((status, body))
        }
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

pub async fn ws_connect(url: &str, headers: &[(&str, &str)]) -> Result<Ws, (u16, String)> {
    ws_connect_from("127.0.0.1", url, headers)
        .await
        .map(|(w, _)| w)
}

/// The status of a WebSocket handshake (101 when it opened).
pub async fn ws_status(local: &str, url: &str, headers: &[(&str, &str)]) -> u16 {
    match ws_connect_from(local, url, headers).await {
        Ok(_) => 101,
        Err((s, _)) => s,
    }
}

/// The first frame `pick` takes, skipping the others (pings among them);
/// `None` on close, error or timeout.
async fn next_picked<T>(
    ws: &mut Ws,
    timeout: Duration,
    pick: impl Fn(Message) -> Option<T>,
) -> Option<T> {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => return None,
            Ok(Some(Ok(m))) => {
                if let Some(v) = pick(m) {
                    return Some(v);
                }
            }
        }
    }
}

/// Next text frame (skipping pings), bounded.
pub async fn next_text(ws: &mut Ws, timeout: Duration) -> Option<String> {
    next_picked(ws, timeout, |m| match m {
        Message::Text(t) => Some(t.to_string()),
        _ => None,
    })
    .await
}

/// The next binary frame's payload, skipping others; `None` on close, error
/// or timeout (like [`next_text`]).
pub async fn next_binary(ws: &mut Ws, timeout: Duration) -> Option<Vec<u8>> {
    next_picked(ws, timeout, |m| match m {
        Message::Binary(b) => Some(b.to_vec()),
        _ => None,
    })
    .await
}

/// Wait for a text frame containing `needle`, bounded.
pub async fn wait_text(ws: &mut Ws, needle: &str, timeout: Duration) -> Option<String> {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        let t = next_text(ws, left).await?;
        if t.contains(needle) {
            return Some(t);
        }
    }
}

/// Wait until a text frame containing each of `needles` has arrived, in any
/// order (events from different tasks may come either way), bounded.
pub async fn wait_texts(ws: &mut Ws, needles: &[&str], timeout: Duration) -> bool {
    let end = tokio::time::Instant::now() + timeout;
    let mut left: Vec<&str> = needles.to_vec();
    while !left.is_empty() {
        let wait = end.saturating_duration_since(tokio::time::Instant::now());
        let Some(t) = next_text(ws, wait).await else {
            return false;
        };
        left.retain(|n| !t.contains(n));
    }
    true
}

/// The close frame (code, reason) the server sends, bounded.
pub async fn close_of(ws: &mut Ws, timeout: Duration) -> Option<(u16, String)> {
    let end = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Ok(Some(Ok(Message::Close(Some(f))))) => {
                return Some((u16::from(f.code), f.reason.to_string()))
            }
            Ok(Some(Ok(Message::Close(None)))) => return Some((1005, String::new())),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

pub async fn send_text(ws: &mut Ws, s: &str) {
    ws.send(Message::text(s.to_string())).await.unwrap();
}

/// The reporter's handshake headers (curl without Origin).
pub const UPGRADE_HEADERS: &[(&str, &str)] = &[];

/// Send `raw` (a whole HTTP/1.1 request) over a fresh TCP connection and
/// return the status code and the body. For requests a URL library would
/// normalise (`/api/../x`, `//x`), which are exactly the ones to test.
pub fn raw_request(addr: SocketAddr, raw: &str) -> (u16, String) {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// `GET path` with `Connection: close`, raw.
pub fn raw_get(addr: SocketAddr, path: &str) -> (u16, String) {
    raw_request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
    )
}

/// The `name=value` pair of a `Set-Cookie` line (what a client sends back).
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

/// The `name=value` pair of the cookie a response sets.
pub fn session_of(r: &reqwest::Response) -> String {
    cookie_pair(r.headers()["set-cookie"].to_str().unwrap())
}

/// Write `text` to a fresh policy file in a temp dir kept alive by the caller.
pub fn policy_file(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// One HTTP/1.1 keep-alive connection from `local`, for requests that must
/// share a connection (each `reqwest` request may take another from its pool).
pub struct Kept {
    io: tokio::io::BufReader<tokio::net::TcpStream>,
}

impl Kept {
    pub async fn open(local: &str, addr: SocketAddr) -> Kept {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(local.parse().unwrap(), 0))
            .unwrap();
        let stream = sock.connect(addr).await.unwrap();
        Kept {
            io: tokio::io::BufReader::new(stream),
        }
    }

    /// `GET path` with `headers` (Host is added); the status and the body.
    /// Panics if the server closes the connection or takes over 10 s.
    pub async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let addr = self.io.get_ref().peer_addr().unwrap();
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let answer = async {
            self.io.get_mut().write_all(req.as_bytes()).await.unwrap();
            let mut line = String::new();
            self.io.read_line(&mut line).await.unwrap();
            let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
            let mut length = 0;
            loop {
                line.clear();
                self.io.read_line(&mut line).await.unwrap();
                if line == "\r\n" {
                    break;
                }
                let (k, v) = line.split_once(':').unwrap();
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            self.io.read_exact(&mut body).await.unwrap();
            (status, String::from_utf8_lossy(&body).into_owned())
        };
        tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("no answer on the kept connection")
    }
}

/// `password` hashed with argon2id, made by `dashgate hash-password` at
/// test time (for the `users` of a policy file).
pub fn hash_password(password: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dashgate"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
