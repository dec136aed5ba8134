//! Native TLS end to end (SPEC §7): the real binary with `--tls self-signed`
//! or `--tls-cert/--tls-key`, clients that trust exactly the served
//! certificate (reqwest with rustls, tokio-rustls + tokio-tungstenite).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls_pki_types::pem::PemObject;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const T: Duration = Duration::from_secs(10);

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// A server on `--tls self-signed` with its own state dir.
fn self_signed(args: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let s = launch()
        .args(["--tls", "self-signed", "--state-dir"])
        .arg(dir.path().join("state").to_str().unwrap())
        .args(args.iter().copied())
        .start();
    assert!(s.https, "{}", s.output());
    (dir, s)
}

fn state_cert(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state/tls-cert.pem")
}

fn pem_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .unwrap()
}

fn colon_hex(der: &[u8]) -> String {
    let d = Sha256::digest(der);
    d.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An https client trusting only the certificates in `pems`.
fn https(pems: &[&[u8]]) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(T);
    for pem in pems {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem).unwrap());
    }
    b.build().unwrap()
}

fn tls_config(pems: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for pem in pems {
        for c in pem_certs(pem) {
            roots.add(c).unwrap();
        }
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// A TLS connection to `addr` trusting `pems` (bounded).
async fn tls_connect(addr: SocketAddr, pems: &[&[u8]]) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    tokio::time::timeout(
        T,
        tokio_rustls::TlsConnector::from(tls_config(pems)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("handshake")
}

/// The fingerprint of the certificate the server shows a new connection.
async fn served_fingerprint(addr: SocketAddr, pems: &[&[u8]]) -> String {
    let s = tls_connect(addr, pems).await;
    let (_, conn) = s.get_ref();
    colon_hex(conn.peer_certificates().unwrap()[0].as_ref())
}

/// A WebSocket handshake over TLS; `Err` is the refusal's status and body.
async fn wss_connect(
    addr: SocketAddr,
    pems: &[&[u8]],
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Wss, (u16, String)> {
    let mut req = format!("wss://{addr}{path}").into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let stream = tls_connect(addr, pems).await;
    match tokio::time::timeout(T, tokio_tungstenite::client_async(req, stream))
        .await
        .expect("upgrade in time")
    {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err((
            resp.status().as_u16(),
            resp.body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
        )),
        Err(e) => panic!("wss handshake failed: {e}"),
    }
}

/// The gate's reason in a refusal, if the answer is one.
fn gate_reason(status: u16, body: &str) -> Option<String> {
    if ![400, 401, 403, 429].contains(&status) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["reason"].as_str().map(str::to_string)
}

/// One request on a kept-alive TLS connection: the status.
async fn kept_get(io: &mut BufReader<TlsStream<TcpStream>>, host: SocketAddr, path: &str) -> u16 {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let answer = async {
        io.get_mut().write_all(req.as_bytes()).await.unwrap();
        let mut line = String::new();
        io.read_line(&mut line).await.unwrap();
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_else(|| panic!("no status line: {line:?}"))
            .parse()
            .unwrap();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            io.read_line(&mut h).await.unwrap();
            if h == "\r\n" || h.is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        io.read_exact(&mut body).await.unwrap();
        status
    };
    tokio::time::timeout(T, answer)
        .await
        .expect("answer in time")
}

/// A raw plain-HTTP request (bounded): the whole answer.
fn plain(addr: SocketAddr, raw: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    answer.split("\r\n").find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Make a pair with rcgen: (cert PEM, key PEM) for 127.0.0.1.
fn make_pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Replace `path`'s content at once (a rename over it, as deploy tools do).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn files_server(dir: &Path) -> Launch {
    launch()
        .arg("--tls-cert")
        .arg(dir.join("cert.pem").to_str().unwrap())
        .arg("--tls-key")
        .arg(dir.join("key.pem").to_str().unwrap())
}

/// The route-listing check over TLS: every route of the tree, over https
/// and as a wss upgrade, with and without a credential, is decided exactly
/// as over plain HTTP; in the secure preset every non-public route is
/// refused without credentials.
#[tokio::test]
async fn https_and_wss_are_decided_by_the_gate_like_plain_http() {
    use dashgate::routes::{Kind, ROUTES};
    let (dir, s) = self_signed(&[]);
    let pem = std::fs::read(state_cert(&dir)).unwrap();
    let plain_server = launch().start();
    let tls_token = s.token.clone().expect("an open line with a token");
    let plain_token = plain_server.token.clone().unwrap();
    let client = https(&[&pem]);
    for &(_, path, kind) in ROUTES {
        for ws in [false, true] {
            for signed_in in [false, true] {
                let tls_got = if ws {
                    let bearer = format!("Bearer {tls_token}");
                    let hdrs: Vec<(&str, &str)> = if signed_in {
                        vec![("authorization", bearer.as_str())]
                    } else {
                        vec![]
                    };
                    match wss_connect(s.addr, &[&pem], path, &hdrs).await {
                        Ok(_) => None,
                        Err((st, body)) => gate_reason(st, &body),
                    }
                } else {
                    let mut r = client.get(format!("https://{}{path}", s.addr));
                    if signed_in {
                        r = r.bearer_auth(&tls_token);
                    }
                    let r = r.send().await.unwrap();
                    let st = r.status().as_u16();
                    gate_reason(st, &r.text().await.unwrap())
                };
                let bearer = format!("Bearer {plain_token}");
                let hdrs: Vec<(&str, &str)> = if signed_in {
                    vec![("authorization", bearer.as_str())]
                } else {
                    vec![]
                };
                let plain_got = if ws {
                    match ws_connect(&plain_server.ws_url(path), &hdrs).await {
                        Ok(_) => None,
                        Err((st, body)) => gate_reason(st, &body),
                    }
                } else {
                    let mut r = http().get(plain_server.url(path));
                    if signed_in {
                        r = r.bearer_auth(&plain_token);
                    }
                    let r = r.send().await.unwrap();
                    let st = r.status().as_u16();
                    gate_reason(st, &r.text().await.unwrap())
                };
                assert_eq!(tls_got, plain_got, "{path} ws={ws} signed_in={signed_in}");
                let public = ["/healthz", "/login"].contains(&path) || path.starts_with("/assets/");
                if !signed_in && !public && (!ws || kind == Kind::Ws) {
                    assert_eq!(tls_got.as_deref(), Some("no_credential"), "{path} ws={ws}");
                }
            }
        }
    }
}

/// The scheme fact is `https`: a page of the https origin may open the
/// chat socket, the same host's http origin may not.
#[tokio::test]
async fn the_origin_check_knows_the_connection_is_https() {
    let (dir, s) = self_signed(&["--insecure"]);
    let pem = std::fs::read(state_cert(&dir)).unwrap();
    let same = format!("https://{}", s.addr);
    let ws = wss_connect(s.addr, &[&pem], "/api/events", &[("origin", &same)]).await;
    assert!(ws.is_ok(), "{:?}", ws.err());
    let other = format!("http://{}", s.addr);
    let refused = wss_connect(s.addr, &[&pem], "/api/events", &[("origin", &other)]).await;
    let Err((st, body)) = refused else {
        panic!("an http origin is another origin, but the upgrade was let in");
    };
    assert_eq!(st, 403, "{body}");
    assert_eq!(
        gate_reason(st, &body).as_deref(),
        Some("origin_not_allowed")
    );
}

/// The chat over wss: the PTY's output arrives.
#[tokio::test]
async fn the_chat_works_over_wss() {
    let (dir, s) = self_signed(&["--chat-command", "/bin/sh"]);
    let pem = std::fs::read(state_cert(&dir)).unwrap();
    let bearer = format!("Bearer {}", s.token.clone().unwrap());
    let mut ws = wss_connect(
        s.addr,
        &[&pem],
        "/api/ws?cols=80&rows=24",
        &[("authorization", &bearer)],
    )
    .await
    .unwrap_or_else(|e| panic!("wss refused: {e:?}"));
    ws.send(Message::binary(b"echo tls-$((6*7))\n".to_vec()))
        .await
        .unwrap();
    let end = tokio::time::Instant::now() + T;
    let mut seen = String::new();
    while !seen.contains("tls-42") {
        match tokio::time::timeout_at(end, ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => seen.push_str(&String::from_utf8_lossy(&b)),
            Ok(Some(Ok(_))) => {}
            other => panic!("waiting for output: {other:?}; so far {seen:?}"),
        }
    }
}

/// Plain HTTP on the TLS port: a redirect to the https URL (Host checked
/// against the allowlist), then the connection closes.
#[tokio::test]
async fn plain_http_on_the_tls_port_is_redirected_to_https() {
    let (_dir, s) = self_signed(&[]);
    let a = s.addr;
    let got = plain(
        a,
        &format!(
            "GET /sessions?x=1 HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            a.port()
        ),
    );
    assert!(got.starts_with("HTTP/1.1 301 "), "{got}");
    assert_eq!(
        header(&got, "location"),
        Some(format!("https://localhost:{}/sessions?x=1", a.port()).as_str())
    );
    // A name nobody allowed is not echoed: the bound address instead.
    let got = plain(a, "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n");
    assert_eq!(
        header(&got, "location"),
        Some(format!("https://{a}/").as_str())
    );
    // A POST keeps its method (308).
    let got = plain(
        a,
        &format!("POST /api/login HTTP/1.1\r\nHost: {a}\r\nContent-Length: 0\r\n\r\n"),
    );
    assert!(got.starts_with("HTTP/1.1 308 "), "{got}");
    // A chat child's publisher path from loopback is left to the gate
    // (plain, no credential here: refused), a path that only starts like
    // it is redirected.
    let got = plain(
        a,
        &format!("GET /api/pub?channel=x HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n"),
    );
    assert!(got.starts_with("HTTP/1.1 401 "), "{got}");
    let got = plain(a, &format!("GET /api/public HTTP/1.1\r\nHost: {a}\r\n\r\n"));
    assert!(got.starts_with("HTTP/1.1 301 "), "{got}");
    // And the https URL answers.
    let pem = std::fs::read(state_cert(&_dir)).unwrap();
    let r = https(&[&pem])
        .get(format!("https://{a}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A `?token=` visit over https sets a `Secure` cookie, which then signs in.
#[tokio::test]
async fn the_session_cookie_is_secure_over_https() {
    let (dir, s) = self_signed(&[]);
    let pem = std::fs::read(state_cert(&dir)).unwrap();
    let token = s.token.clone().unwrap();
    let c = https(&[&pem]);
    let r = c
        .get(format!("https://{}/?token={token}", s.addr))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let pair = cookie_pair(&cookie);
    let r = c
        .get(format!("https://{}/api/status", s.addr))
        .header("cookie", pair)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let status: serde_json::Value = r.json().await.unwrap();
    let fp = colon_hex(pem_certs(&pem)[0].as_ref());
    assert_eq!(status["tls"]["fingerprint_sha256"], fp.as_str());
    assert_eq!(status["tls"]["self_signed"], true);
}

/// The same state dir, the same certificate after a restart; its
/// fingerprint is printed at start, served, and told by `dashgate cert`;
/// the key is its owner's only.
#[tokio::test]
async fn the_self_signed_certificate_is_the_same_after_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, first) = self_signed(&[]);
    let pem = std::fs::read(state_cert(&dir)).unwrap();
    let fp = colon_hex(pem_certs(&pem)[0].as_ref());
    assert!(
        first
            .output()
            .contains(&format!("tls certificate sha256 {fp}")),
        "{}",
        first.output()
    );
    assert_eq!(served_fingerprint(first.addr, &[&pem]).await, fp);
    drop(first);
    let state = dir.path().join("state");
    let again = launch()
        .args([
            "--tls",
            "self-signed",
            "--state-dir",
            state.to_str().unwrap(),
        ])
        .start();
    assert!(again
        .output()
        .contains(&format!("tls certificate sha256 {fp}")));
    assert_eq!(served_fingerprint(again.addr, &[&pem]).await, fp);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&state.join("tls-key.pem")), 0o600);
    assert_eq!(mode(&state), 0o700);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dashgate"))
        .args(["cert", "--state-dir", state.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("sha256 {fp}")), "{text}");
    assert!(
        text.contains(&state.join("tls-cert.pem").display().to_string()),
        "{text}"
    );
    assert!(
        text.contains(&state.join("tls-key.pem").display().to_string()),
        "{text}"
    );
}

/// A new pair under a running server: an open keep-alive connection goes
/// on, new connections get the new certificate. A broken pair afterwards is
/// kept out (logged, the last good one still served).
#[tokio::test]
async fn a_certificate_swap_keeps_open_connections_and_a_broken_one_is_kept_out() {
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, a_key) = make_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (b_cert, b_key) = make_pair(&rcgen::PKCS_ED25519);
    std::fs::write(dir.path().join("cert.pem"), &a_cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &a_key).unwrap();
    let s = files_server(dir.path()).start();
    assert!(s.https);
    let roots: [&[u8]; 2] = [a_cert.as_bytes(), b_cert.as_bytes()];
    let fp_a = colon_hex(pem_certs(a_cert.as_bytes())[0].as_ref());
    let fp_b = colon_hex(pem_certs(b_cert.as_bytes())[0].as_ref());
    assert_eq!(served_fingerprint(s.addr, &roots).await, fp_a);
    let mut kept = BufReader::new(tls_connect(s.addr, &roots).await);
    assert_eq!(kept_get(&mut kept, s.addr, "/healthz").await, 200);

    // The key first, then the certificate: the watcher waits for both.
    replace(&dir.path().join("key.pem"), &b_key);
    replace(&dir.path().join("cert.pem"), &b_cert);
    assert!(
        s.wait_output(&format!("fingerprint={fp_b}"), T),
        "no reload: {}",
        s.output()
    );
    assert_eq!(kept_get(&mut kept, s.addr, "/healthz").await, 200);
    assert_eq!(served_fingerprint(s.addr, &roots).await, fp_b);

    // A broken certificate: refused on reload, B still served.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate\n").unwrap();
    s.signal("HUP");
    assert!(
        s.wait_output("TLS reload failed", T),
        "no failure logged: {}",
        s.output()
    );
    let out = s.output();
    let line = out
        .lines()
        .find(|l| l.contains("TLS reload failed"))
        .unwrap();
    assert!(
        line.contains("cert.pem") && line.contains("no certificate in the file"),
        "{line}"
    );
    assert_eq!(served_fingerprint(s.addr, &roots).await, fp_b);
    assert_eq!(kept_get(&mut kept, s.addr, "/healthz").await, 200);
}

/// A broken pair at start: exit 2 with the file and the reason.
#[test]
fn a_broken_pair_is_refused_at_start_with_the_file_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (a_cert, _) = make_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (_, b_key) = make_pair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let run = |cert: &str, key: &str| {
        std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), key).unwrap();
        let mut c = files_server(dir.path()).command();
        let child = c
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let end = Instant::now() + T;
        let out = child.wait_with_output().unwrap();
        assert!(Instant::now() < end + T);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let cert_file = dir.path().join("cert.pem").display().to_string();
    let (code, err) = run("garbage\n", &b_key);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&cert_file) && err.contains("no certificate in the file"),
        "{err}"
    );
    let (code, err) = run(&a_cert, &b_key);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not the key of the certificate"), "{err}");
    assert!(err.contains(&cert_file), "{err}");
    let (code, err) = run(&a_cert, "");
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("no private key in the file"), "{err}");
    // --tls-cert without --tls-key is a usage error.
    let out = launch()
        .arg("--tls-cert")
        .arg(&cert_file)
        .command()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Bring-your-own pairs: a chain (leaf + CA, the client trusting only the
/// CA), and RSA, P-384 and Ed25519 keys.
#[tokio::test]
async fn chains_and_rsa_ecdsa_ed25519_keys_are_served() {
    let dir = tempfile::tempdir().unwrap();
    // A CA and a leaf it signs; the file holds leaf then CA.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let leaf_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    std::fs::write(
        dir.path().join("cert.pem"),
        format!("{}{}", leaf.pem(), ca.pem()),
    )
    .unwrap();
    std::fs::write(dir.path().join("key.pem"), leaf_key.serialize_pem()).unwrap();
    {
        let s = files_server(dir.path()).start();
        let ca_pem = ca.pem();
        let r = https(&[ca_pem.as_bytes()])
            .get(format!("https://{}/healthz", s.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // RSA: openssl makes the key (rcgen on ring cannot), rcgen the
    // certificate; the key file in PKCS#1 (`RSA PRIVATE KEY`) form.
    let openssl = |args: &[&str]| {
        let st = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl (Debian package openssl) makes the RSA key");
        assert!(st.success(), "openssl {args:?}");
    };
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        "rsa8.pem",
    ]);
    openssl(&["rsa", "-in", "rsa8.pem", "-traditional", "-out", "key.pem"]);
    let rsa_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.path().join("rsa8.pem")).unwrap())
            .unwrap();
    let rsa_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
        .unwrap()
        .self_signed(&rsa_key)
        .unwrap();
    let key_text = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    assert!(
        key_text.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{key_text}"
    );
    std::fs::write(dir.path().join("cert.pem"), rsa_cert.pem()).unwrap();
    let rsa_pem = std::fs::read(dir.path().join("cert.pem")).unwrap();
    {
        let s = files_server(dir.path()).start();
        let r = https(&[&rsa_pem])
            .get(format!("https://{}/healthz", s.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let (cert, key) = make_pair(&rcgen::PKCS_ED25519);
    std::fs::write(dir.path().join("cert.pem"), &cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), &key).unwrap();
    let s = files_server(dir.path()).start();
    let r = https(&[cert.as_bytes()])
        .get(format!("https://{}/healthz", s.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// ALPN says http/1.1, even to a client that would rather speak h2.
#[tokio::test]
async fn alpn_is_http1_only() {
    let (dir, s) = self_signed(&[]);
    let pem = std::fs::read(state_cert(&dir)).unwrap();
    let stream = tls_connect(s.addr, &[&pem]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

/// A chat child's `dashgate-publish` (plain `ws://` to loopback, by
/// design std-only) still reaches its channel on a TLS port: the gate's
/// internal-credential rules decide it as over plain HTTP.
#[tokio::test]
async fn a_chat_child_publishes_on_a_tls_port() {
    let (dir, s) = self_signed(&["--chat-command", "/bin/sh"]);
    let pem = std::fs::read(state_cert(&dir)).unwrap();
    let bearer = format!("Bearer {}", s.token.clone().unwrap());
    let auth = [("authorization", bearer.as_str())];
    let mut chat = wss_connect(s.addr, &[&pem], "/api/ws?cols=80&rows=24", &auth)
        .await
        .unwrap_or_else(|e| panic!("wss refused: {e:?}"));
    let hello = loop {
        match tokio::time::timeout(T, chat.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                break serde_json::from_str::<serde_json::Value>(&t).unwrap()
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no session frame: {other:?}"),
        }
    };
    let id = hello["id"].as_str().unwrap().to_string();
    let mut sub = wss_connect(
        s.addr,
        &[&pem],
        &format!("/api/events?channel=session.{id}"),
        &auth,
    )
    .await
    .unwrap_or_else(|e| panic!("subscription refused: {e:?}"));
    sub.send(Message::Ping(vec![1].into())).await.unwrap();
    let publish = env!("CARGO_BIN_EXE_dashgate-publish");
    chat.send(Message::binary(
        format!("{publish} '{{\"type\":\"note\",\"n\":42}}' && echo published-ok\r").into_bytes(),
    ))
    .await
    .unwrap();
    let end = tokio::time::Instant::now() + T;
    let got = loop {
        match tokio::time::timeout_at(end, sub.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => break t.to_string(),
            Ok(Some(Ok(_))) => {}
            other => panic!("no published message: {other:?}; {}", s.output()),
        }
    };
    assert_eq!(got, r#"{"type":"note","n":42}"#);
}
