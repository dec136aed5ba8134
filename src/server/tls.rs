//! Native TLS (SPEC §7): rustls through tokio-rustls on dashgate's own
//! accept loop.
//!
//! * The pair in force is one `ServerConfig` in an `ArcSwap`, read once per
//!   accepted connection: a reload (SIGHUP, or a change of either file)
//!   swaps it; an open connection keeps the keys it shook hands with, a new
//!   one gets the new pair. A pair that fails to load leaves the old one
//!   serving, and is logged and announced (`tls.reload_failed`), like a
//!   policy that fails.
//! * ALPN offers `http/1.1` only, and TLS connections are served by an
//!   HTTP/1-only builder: the chat's WebSocket upgrade (RFC 6455) and every
//!   gate test are HTTP/1.1, and WebSockets over HTTP/2 (RFC 8441) are not
//!   served, so a browser that negotiated h2 would need a second
//!   connection for the chat anyway.
//! * The first byte of a connection tells TLS (0x16, a handshake record)
//!   from plain HTTP: a plain request is answered with a redirect to the
//!   https URL and the connection closed, not left to hang in a handshake.
//!   One exception: a chat child's publisher (`GET /api/pub` from
//!   loopback, see [`internal_publisher`]) is served as plain HTTP.
//! * `--tls self-signed` makes a certificate for the machine's names once,
//!   keeps it in the state dir (key 0600, dir 0700) and reuses it, so its
//!   fingerprint stays the same across restarts.
//!
//! The crypto provider is rustls' `ring` one, named explicitly, so no other
//! crate's feature can make the choice ambiguous at run time.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use crate::state::AppState;

/// The one ALPN protocol offered (see the module docs for why).
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Most bytes of a plain-HTTP request head read before its redirect.
pub const MAX_PLAIN_HEAD: usize = 8 * 1024;

/// File names of the self-signed pair in the state dir.
pub const SELF_SIGNED_CERT: &str = "tls-cert.pem";
pub const SELF_SIGNED_KEY: &str = "tls-key.pem";
/// What the self-signed certificate was made for (its names, its end), so
/// a restart knows whether it still fits without parsing X.509.
const SELF_SIGNED_META: &str = "tls-names.txt";
/// Years a self-signed certificate is valid.
const SELF_SIGNED_YEARS: i32 = 10;

/// The certificate chain file and key file of a pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A loaded pair, ready to serve.
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the end-entity certificate, `AB:CD:…` as browsers show it.
    pub fingerprint: String,
    /// SHA-256 of both files' bytes: a watcher's no-op write is skipped.
    files_sha: [u8; 32],
}

/// The TLS side of a server: where its pair comes from and the pair in force.
pub struct Tls {
    pub pair: Pair,
    /// Made by `--tls self-signed` (shown in `/api/status`).
    pub self_signed: bool,
    live: ArcSwap<Loaded>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("pair", &self.pair)
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Load `pair`.
    ///
    /// # Errors
    /// The file and the reason, for a person to act on.
    pub fn load(pair: Pair, self_signed: bool) -> Result<Self, String> {
        let loaded = load_pair(&pair)?;
        Ok(Self {
            pair,
            self_signed,
            live: ArcSwap::from_pointee(loaded),
        })
    }

    /// The config for one new connection.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.live.load().config.clone()
    }

    pub fn fingerprint(&self) -> String {
        self.live.load().fingerprint.clone()
    }

    /// What `/api/status` says about TLS.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "fingerprint_sha256": self.fingerprint(),
            "cert_file": self.pair.cert.display().to_string(),
            "self_signed": self.self_signed,
            "alpn": ["http/1.1"],
        })
    }
}

/// SHA-256 of `der`, upper-case hex pairs joined by colons.
pub fn fingerprint(der: &[u8]) -> String {
    let d = Sha256::digest(der);
    let hex: Vec<String> = d.iter().map(|b| format!("{b:02X}")).collect();
    hex.join(":")
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read and check a pair: a PEM chain (leaf first), a PEM key (PKCS#8,
/// PKCS#1 RSA or SEC1 EC; RSA, ECDSA P-256/P-384 or Ed25519) that is the
/// leaf's.
///
/// # Errors
/// Which file and why.
pub fn load_pair(pair: &Pair) -> Result<Loaded, String> {
    let cert_name = pair.cert.display();
    let key_name = pair.key.display();
    let cert_bytes =
        std::fs::read(&pair.cert).map_err(|e| format!("TLS certificate {cert_name}: {e}"))?;
    let key_bytes = std::fs::read(&pair.key).map_err(|e| format!("TLS key {key_name}: {e}"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("TLS certificate {cert_name}: not a PEM certificate chain ({e})"))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {cert_name}: no certificate in the file (expected a PEM `-----BEGIN CERTIFICATE-----` block)"
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => format!(
            "TLS key {key_name}: no private key in the file (expected a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block)"
        ),
        e => format!("TLS key {key_name}: not a PEM private key ({e})"),
    })?;
    let provider = provider();
    let signer = provider.key_provider.load_private_key(key).map_err(|e| {
        format!("TLS key {key_name}: {e} (supported: RSA, ECDSA P-256/P-384, Ed25519)")
    })?;
    let certified = rustls::sign::CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(format!(
                "TLS key {key_name} is not the key of the certificate {cert_name} (their public keys differ)"
            ))
        }
        // The key cannot tell its public half: nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(e) => {
            return Err(format!(
                "TLS certificate {cert_name}: the first certificate cannot be read ({e})"
            ))
        }
    }
    let fingerprint = fingerprint(certified.cert[0].as_ref());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        fingerprint,
        files_sha: files_sha(&cert_bytes, &key_bytes),
    })
}

fn files_sha(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_le_bytes());
    h.update(cert);
    h.update(key);
    h.finalize().into()
}

/// Load the pair again; `why` names the trigger for the log. A pair that
/// fails leaves the old one serving. `skip_same`: do nothing when both
/// files hold the bytes in force (a watcher's no-op write). Returns whether
/// a new pair is in force.
pub fn reload(state: &AppState, why: &str, skip_same: bool) -> bool {
    let Some(tls) = state.tls.get() else {
        return false;
    };
    if skip_same {
        if let (Ok(c), Ok(k)) = (std::fs::read(&tls.pair.cert), std::fs::read(&tls.pair.key)) {
            if files_sha(&c, &k) == tls.live.load().files_sha {
                return false;
            }
        }
    }
    match load_pair(&tls.pair) {
        Err(e) => {
            tracing::error!(trigger = why, error = %e, "TLS reload failed; the old certificate stays in force");
            state.hub.server_event(
                "tls.reload_failed",
                serde_json::json!({ "error": e, "trigger": why }),
            );
            false
        }
        Ok(loaded) => {
            let fp = loaded.fingerprint.clone();
            tls.live.store(Arc::new(loaded));
            tracing::info!(trigger = why, fingerprint = %fp, cert = %tls.pair.cert.display(), "TLS certificate reloaded");
            state.hub.server_event(
                "tls.reloaded",
                serde_json::json!({ "fingerprint_sha256": fp, "trigger": why }),
            );
            true
        }
    }
}

/// Watch the pair's files (their folders, so a rename over a file is seen)
/// and reload when one changes. The returned watcher must be kept alive.
pub fn watch(state: &AppState) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};

    let tls = state.tls.get()?;
    let files: Vec<PathBuf> = [&tls.pair.cert, &tls.pair.key]
        .into_iter()
        .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    dirs.dedup();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let names = files.clone();
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            if ev.paths.iter().any(|p| names.contains(p)) {
                let _ = tx.try_send(());
            }
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot watch the TLS files; SIGHUP still reloads"))
    .ok()?;
    for dir in &dirs {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the TLS folder; SIGHUP still reloads");
            return None;
        }
    }
    let state: AppState = *state;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // A certificate and its key are written one after the other.
            tokio::time::sleep(crate::server::reload::DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            reload(&state, "file changed", true);
        }
    });
    Some(watcher)
}

/// A connection as the HTTP side serves it: plain TCP or TLS over TCP.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            Stream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(self, s => s.poll_shutdown(cx))
    }
}

/// Take one accepted connection on a TLS port: shake hands (within
/// `timeout`), or answer a plain-HTTP request with a redirect to https and
/// close. `None` when there is nothing left to serve.
pub async fn accept(
    stream: TcpStream,
    state: AppState,
    tls: &Tls,
    timeout: Duration,
) -> Option<Stream> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(timeout, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return None,
    }
    if first[0] != TLS_HANDSHAKE {
        if internal_publisher(&stream, timeout).await {
            return Some(Stream::Plain(stream));
        }
        let _ = tokio::time::timeout(timeout, redirect_plain(stream, state)).await;
        return None;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(Stream::Tls(Box::new(s))),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => None,
    }
}

/// The request line a chat child's publisher starts with.
const PUB_PREFIX: &[u8] = b"GET /api/pub";

/// Whether a plain connection is a chat child's publisher: from loopback,
/// opening `GET /api/pub…`. Its `DASHGATE_EVENTS_URL` is a loopback
/// `ws://` URL and `dashgate-publish` is std-only, without TLS; loopback
/// traffic never leaves the machine, and the gate still decides the
/// request as any other (the internal credential counts only on a
/// loopback WebSocket upgrade of `/api/pub`), so it is served as plain
/// HTTP (scheme `http`) rather than redirected.
async fn internal_publisher(stream: &TcpStream, timeout: Duration) -> bool {
    if !stream
        .peer_addr()
        .is_ok_and(|p| p.ip().to_canonical().is_loopback())
    {
        return false;
    }
    let want = PUB_PREFIX.len() + 1;
    let mut buf = [0u8; 16];
    let end = tokio::time::Instant::now() + timeout.min(Duration::from_secs(2));
    loop {
        // A peek returns what has arrived: a request line sent in pieces
        // is waited for, boundedly.
        let n = match tokio::time::timeout_at(end, stream.peek(&mut buf[..want])).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        if n == 0 || !PUB_PREFIX.starts_with(&buf[..n.min(PUB_PREFIX.len())]) {
            return false;
        }
        if n >= want {
            return matches!(buf[PUB_PREFIX.len()], b'?' | b' ');
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Answer a plain-HTTP request on the TLS port: `301`/`308` to the same
/// path under `https://HOST`, HOST from the request's `Host` when the
/// policy allows it (a redirect must not send a browser to a name nobody
/// listed), else the bound address; then close.
async fn redirect_plain(mut stream: TcpStream, state: AppState) {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while head.len() < MAX_PLAIN_HEAD && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    let (method, location) = redirect_target(&head, state);
    let status = match method.as_str() {
        "GET" | "HEAD" => "301 Moved Permanently",
        _ => "308 Permanent Redirect",
    };
    let body = format!("This port speaks HTTPS: {location}\n");
    let reply = format!(
        "HTTP/1.1 {status}\r\nLocation: {location}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tracing::debug!(location = %location, "plain HTTP on the TLS port: redirected");
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The method and the https URL a plain request `head` is sent to.
fn redirect_target(head: &[u8], state: AppState) -> (String, String) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("/");
    // Origin-form only, and nothing that could end the Location line.
    let path = if target.starts_with('/') && target.bytes().all(|b| b.is_ascii_graphic()) {
        target
    } else {
        "/"
    };
    let mut hosts = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim());
    let host = match (hosts.next(), hosts.next()) {
        (Some(h), None) if safe_authority(h) && state.policy().compiled.hosts.allows(Some(h)) => {
            h.to_owned()
        }
        _ => shown_addr(state.config.bind).to_string(),
    };
    (method, format!("https://{host}{path}"))
}

/// An authority made of the characters a host and port can have.
fn safe_authority(h: &str) -> bool {
    !h.is_empty()
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b))
}

/// The address to print and to fall back to: a wildcard bind is shown as
/// its loopback address.
pub fn shown_addr(bind: SocketAddr) -> SocketAddr {
    if bind.ip().is_unspecified() {
        let ip = match bind.ip() {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(ip, bind.port())
    } else {
        bind
    }
}

/// The default state dir: `$XDG_STATE_HOME/dashgate`, else
/// `~/.local/state/dashgate`.
pub fn default_state_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(x).join("dashgate"));
    }
    let home = std::env::var_os("HOME").filter(|v| !v.is_empty())?;
    Some(PathBuf::from(home).join(".local/state/dashgate"))
}

/// The self-signed pair's files in `dir`.
pub fn self_signed_pair(dir: &Path) -> Pair {
    Pair {
        cert: dir.join(SELF_SIGNED_CERT),
        key: dir.join(SELF_SIGNED_KEY),
    }
}

/// The names a self-signed certificate is made for: the loopback names,
/// the machine's names, the bound address when it is a specific one, and
/// the plain names of `--allowed-host`.
pub fn self_signed_names(bind: IpAddr, machine: Option<&str>, extra: &[String]) -> Vec<String> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Some(m) = machine {
        names.extend(crate::policy::machine_names(m));
    }
    if !bind.is_unspecified() {
        names.push(bind.to_canonical().to_string());
    }
    for h in extra {
        let h = h.trim().trim_matches(['[', ']']).to_ascii_lowercase();
        // A plain name (no port, no wildcard) or an address.
        let plain = !h.is_empty() && !h.contains('*') && safe_authority(&h) && !h.contains(':');
        if plain || h.parse::<IpAddr>().is_ok() {
            names.push(h);
        }
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

fn current_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    1970 + (secs / 31_556_952) as i32
}

/// The self-signed pair in `dir` for `names`: the one there when it loads
/// and was made for the same names and is not near its end, else a new one
/// (the key written 0600, the dir made 0700). Returns the pair and whether
/// it was made now.
///
/// # Errors
/// The state dir or a file that cannot be written, with the reason.
pub fn self_signed(dir: &Path, names: &[String]) -> Result<(Pair, bool), String> {
    let pair = self_signed_pair(dir);
    let meta_path = dir.join(SELF_SIGNED_META);
    let year = current_year();
    if pair.cert.exists() || pair.key.exists() {
        let fits = std::fs::read_to_string(&meta_path).ok().is_some_and(|m| {
            let mut lines = m.lines();
            let until = lines
                .next()
                .and_then(|l| l.strip_prefix("valid-until "))
                .and_then(|y| y.parse::<i32>().ok());
            let made_for: Vec<&str> = lines.collect();
            until.is_some_and(|u| u > year) && made_for == names
        });
        match load_pair(&pair) {
            Ok(_) if fits => return Ok((pair, false)),
            Ok(_) => {
                tracing::info!(dir = %dir.display(), "the self-signed certificate was made for other names (or is near its end): making a new one")
            }
            Err(e) => {
                tracing::warn!(error = %e, "the self-signed certificate in the state dir cannot be used: making a new one")
            }
        }
    }
    make_private_dir(dir)?;
    let until = year + SELF_SIGNED_YEARS;
    let mut params = rcgen::CertificateParams::new(names.to_vec())
        .map_err(|e| format!("self-signed certificate for {names:?}: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dashgate self-signed");
    params.not_before = rcgen::date_time_ymd(year - 1, 1, 1);
    params.not_after = rcgen::date_time_ymd(until, 1, 1);
    let key = rcgen::KeyPair::generate().map_err(|e| format!("self-signed key: {e}"))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("self-signed certificate: {e}"))?;
    write_file(&pair.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&pair.cert, cert.pem().as_bytes(), 0o644)?;
    let meta = format!("valid-until {until}\n{}\n", names.join("\n"));
    write_file(&meta_path, meta.as_bytes(), 0o644)?;
    Ok((pair, true))
}

/// Create `dir` (and its parents) and make it readable by its owner only.
fn make_private_dir(dir: &Path) -> Result<(), String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("state dir {}: {e}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("state dir {}: {e}", dir.display()))
}

/// Write `bytes` to `path` with `mode`, through a temporary file renamed
/// over it, so a reader never sees half a key and the key is never, even
/// for a moment, readable by others.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_colon_hex() {
        let f = fingerprint(b"abc");
        assert_eq!(f.len(), 32 * 3 - 1);
        assert!(f.starts_with("BA:78:16:BF"));
    }

    #[test]
    fn names_for_a_specific_bind_and_allowed_hosts() {
        let n = self_signed_names(
            "192.168.1.20".parse().unwrap(),
            Some("mybox"),
            &["nas.lan".into(), "*.ts.net".into()],
        );
        for want in [
            "localhost",
            "127.0.0.1",
            "::1",
            "mybox",
            "mybox.local",
            "192.168.1.20",
            "nas.lan",
        ] {
            assert!(n.contains(&want.to_string()), "{want} in {n:?}");
        }
        assert!(!n.iter().any(|x| x.contains('*')));
        let wild = self_signed_names("0.0.0.0".parse().unwrap(), None, &[]);
        assert_eq!(wild, ["localhost", "127.0.0.1", "::1"]);
    }

    #[test]
    fn self_signed_is_reused_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let names = self_signed_names("127.0.0.1".parse().unwrap(), Some("box"), &[]);
        let (pair, made) = self_signed(&state, &names).unwrap();
        assert!(made);
        let fp = load_pair(&pair).unwrap().fingerprint;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&pair.key), 0o600);
        assert_eq!(mode(&state), 0o700);
        let (again, made) = self_signed(&state, &names).unwrap();
        assert!(!made);
        assert_eq!(load_pair(&again).unwrap().fingerprint, fp);
        // Other names: a new certificate.
        let (_, made) = self_signed(&state, &names[..3]).unwrap();
        assert!(made);
        assert_ne!(load_pair(&pair).unwrap().fingerprint, fp);
    }

    #[test]
    fn a_key_of_another_certificate_is_refused_with_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = self_signed(&dir.path().join("a"), &["localhost".into()]).unwrap();
        let (b, _) = self_signed(&dir.path().join("b"), &["localhost".into()]).unwrap();
        let mixed = Pair {
            cert: a.cert.clone(),
            key: b.key.clone(),
        };
        let e = load_pair(&mixed).err().unwrap();
        assert!(e.contains("is not the key of the certificate"), "{e}");
        assert!(e.contains(&a.cert.display().to_string()), "{e}");
        std::fs::write(&a.cert, "hello").unwrap();
        let e = load_pair(&a).err().unwrap();
        assert!(e.contains("no certificate in the file"), "{e}");
    }
}
