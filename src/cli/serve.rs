//! `dashgate serve`: flags and environment -> a running server.
//!
//! Resolution order for every setting: flag, then `DASHGATE_*`, then the
//! `HERMES_DASHBOARD_*` alias, then the default. `--insecure` and `--policy`
//! together are an error, never a silent pick; no policy means `secure`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use rand::RngCore;

use crate::chat::ChatConfig;
use crate::cli::{CertArgs, LogFormat, ServeArgs, TlsMode};
use crate::policy::{CompiledPolicy, LoadContext};
use crate::proxy::Upstream;
use crate::server::limits::Limits;
use crate::state::{Config, PolicySource, StartupToken, State};

/// Default port (the hermes dashboard's).
pub const DEFAULT_PORT: u16 = 9119;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

/// Which policy to load: flags beat variables; two contradicting sources at
/// the same level are an error.
fn policy_source(args: &ServeArgs) -> Result<PolicySource, String> {
    if args.insecure && args.policy.is_some() {
        return Err("--insecure and --policy contradict each other: pick one".into());
    }
    if args.insecure {
        return Ok(PolicySource::Preset("insecure".into()));
    }
    if let Some(p) = &args.policy {
        return Ok(PolicySource::File(p.clone()));
    }
    let env_insecure = env("DASHGATE_INSECURE")
        .or_else(|| env("HERMES_DASHBOARD_INSECURE"))
        .is_some_and(|v| truthy(&v));
    match (env("DASHGATE_POLICY"), env_insecure) {
        (Some(_), true) => Err(
            "DASHGATE_POLICY and DASHGATE_INSECURE/HERMES_DASHBOARD_INSECURE contradict each other"
                .into(),
        ),
        (Some(p), false) => Ok(PolicySource::File(PathBuf::from(p))),
        (None, true) => Ok(PolicySource::Preset("insecure".into())),
        (None, false) => Ok(PolicySource::Preset("secure".into())),
    }
}

/// Compile the policy named by `source`.
///
/// # Errors
/// The policy error, with file:line:col.
pub fn load_policy(source: &PolicySource, ctx: &LoadContext) -> Result<CompiledPolicy, String> {
    match source {
        PolicySource::Preset(name) => CompiledPolicy::preset(name, ctx),
        PolicySource::File(path) => CompiledPolicy::load_file(path, ctx),
    }
    .map_err(|e| e.to_string())
}

/// What a server bound to `bind` compiles its policy against: the machine's
/// host name (allowed by default on a wildcard bind) and the hosts of
/// `--allowed-host` / `DASHGATE_ALLOWED_HOSTS` (SPEC §2.3).
///
/// # Errors
/// A malformed host entry.
pub fn load_context(bind: IpAddr, allowed_hosts: &[String]) -> Result<LoadContext, String> {
    let hosts: Vec<String> = allowed_hosts
        .iter()
        .map(|h| h.trim())
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect();
    LoadContext::new(bind)
        .with_machine_name(machine_name())
        .with_allowed_hosts(&hosts, "--allowed-host / DASHGATE_ALLOWED_HOSTS")
}

/// The kernel's name for this machine (`uname -n`), if it is text.
fn machine_name() -> Option<String> {
    let uts = rustix::system::uname();
    uts.nodename().to_str().ok().map(str::to_owned)
}

fn host(args: &ServeArgs) -> Result<IpAddr, String> {
    if let Some(h) = args.host {
        return Ok(h);
    }
    match env("HERMES_DASHBOARD_HOST") {
        Some(h) => h
            .parse()
            .map_err(|_| format!("HERMES_DASHBOARD_HOST={h:?} is not an IP address")),
        None => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    }
}

fn port(args: &ServeArgs) -> Result<u16, String> {
    if let Some(p) = args.port {
        return Ok(p);
    }
    match env("HERMES_DASHBOARD_PORT") {
        Some(p) => p
            .parse()
            .map_err(|_| format!("HERMES_DASHBOARD_PORT={p:?} is not a port")),
        None => Ok(DEFAULT_PORT),
    }
}

/// The static folder: the flag, else `./static`, else the one in the source
/// tree this binary was built from (so tests and `cargo run` work anywhere).
fn static_dir(args: &ServeArgs) -> PathBuf {
    if let Some(d) = &args.static_dir {
        return d.clone();
    }
    let local = PathBuf::from("static");
    if local.join("index.html").exists() {
        return local;
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/static"))
}

/// The largest token file read: a token is a line, not a document.
const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// The startup token from `--token-file` / `DASHGATE_TOKEN_FILE`: the file's
/// one line, its trailing newline trimmed.
///
/// # Errors
/// An unreadable, empty, multi-line or oversized file, named.
pub fn read_token_file(path: &std::path::Path) -> Result<String, String> {
    use std::io::Read;
    let name = path.display();
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_TOKEN_FILE_BYTES + 1).read_to_string(&mut text))
        .map_err(|e| format!("cannot read the token file {name}: {e}"))?;
    if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(format!(
            "the token file {name} is larger than {MAX_TOKEN_FILE_BYTES} bytes (expected one line)"
        ));
    }
    let token = text.trim_end_matches(['\n', '\r']);
    if token.is_empty() {
        return Err(format!("the token file {name} is empty"));
    }
    if token.contains(['\n', '\r']) {
        return Err(format!(
            "the token file {name} holds more than one line (expected the token alone)"
        ));
    }
    Ok(token.to_owned())
}

/// The startup token: from `--token-file` / `DASHGATE_TOKEN_FILE`, or from
/// `DASHGATE_TOKEN` (or its alias), so it survives restarts; otherwise 32
/// random bytes, base64url. A file and a variable together are an error,
/// never a silent pick.
fn startup_token(args: &ServeArgs) -> Result<(String, bool), String> {
    let from_env = env("DASHGATE_TOKEN")
        .map(|t| ("DASHGATE_TOKEN", t))
        .or_else(|| {
            env("HERMES_DASHBOARD_SESSION_TOKEN").map(|t| ("HERMES_DASHBOARD_SESSION_TOKEN", t))
        });
    if let Some(path) = &args.token_file {
        if let Some((var, _)) = from_env {
            return Err(format!(
                "--token-file (or DASHGATE_TOKEN_FILE) and {var} contradict each other: pick one"
            ));
        }
        return read_token_file(path).map(|t| (t, true));
    }
    if let Some((_, t)) = from_env {
        return Ok((t, true));
    }
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    Ok((
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b),
        false,
    ))
}

/// The chat sessions' settings; `events_url` is derived from the bound
/// address later, by `State::new`.
fn chat_config(args: &ServeArgs) -> Result<ChatConfig, String> {
    if args.max_sessions == 0 {
        return Err("--max-sessions must be at least 1".into());
    }
    let mut cfg = ChatConfig::new(crate::chat::command::resolve(args.chat_command.as_deref())?);
    cfg.cwd = args.chat_cwd.clone();
    cfg.max_sessions = args.max_sessions;
    cfg.idle_timeout = Duration::from_secs(args.idle_timeout.max(1));
    Ok(cfg)
}

/// `--upstream URL`, checked (SPEC §6).
fn upstream(args: &ServeArgs) -> Result<Option<Arc<Upstream>>, String> {
    let Some(url) = &args.upstream else {
        return Ok(None);
    };
    let t = args.upstream_timeout;
    if !(t.is_finite() && t > 0.0) {
        return Err(format!(
            "--upstream-timeout {t}: expected a positive number of seconds"
        ));
    }
    Upstream::parse_with(url, Duration::from_secs_f64(t), args.upstream_ca.as_deref())
        .map(|u| Some(Arc::new(u)))
}

/// The connection limits (SPEC §8); none of them may be zero.
fn limits(args: &ServeArgs) -> Result<Limits, String> {
    for (flag, n) in [
        ("--max-connections", args.max_connections as u64),
        (
            "--max-connections-per-client",
            args.max_connections_per_client as u64,
        ),
        ("--request-timeout", args.request_timeout),
    ] {
        if n == 0 {
            return Err(format!("{flag} must be at least 1"));
        }
    }
    Ok(Limits {
        max_connections: args.max_connections,
        max_connections_per_client: args.max_connections_per_client,
        request_timeout: Duration::from_secs(args.request_timeout),
    })
}

/// The state dir: the flag (or `DASHGATE_STATE_DIR`), else the default.
fn state_dir(flag: Option<&PathBuf>) -> Result<PathBuf, String> {
    flag.cloned()
        .or_else(crate::server::tls::default_state_dir)
        .ok_or_else(|| "no --state-dir and no HOME to put ~/.local/state/dashgate in".into())
}

/// The TLS pair to serve, if any (SPEC §7): `--tls-cert`/`--tls-key`, or
/// `--tls self-signed` made for the names a server on `bind` is reached
/// under.
fn tls(args: &ServeArgs, bind: IpAddr) -> Result<Option<crate::server::tls::Tls>, String> {
    use crate::server::tls::{self, Pair, Tls};
    match (&args.tls_cert, &args.tls_key, args.tls) {
        (Some(cert), Some(key), None) => {
            let pair = Pair {
                cert: cert.clone(),
                key: key.clone(),
            };
            Tls::load(pair, false).map(Some)
        }
        (None, None, Some(TlsMode::SelfSigned)) => {
            let dir = state_dir(args.state_dir.as_ref())?;
            let names =
                tls::self_signed_names(bind, machine_name().as_deref(), &args.allowed_hosts);
            let (pair, made) = tls::self_signed(&dir, &names)?;
            if made {
                tracing::info!(dir = %dir.display(), names = ?names, "made a self-signed certificate");
            }
            Tls::load(pair, true).map(Some)
        }
        (None, None, None) => Ok(None),
        _ => Err("--tls-cert and --tls-key go together, and not with --tls self-signed".into()),
    }
}

/// `dashgate cert`: the fingerprint and the files of the certificate
/// `--tls self-signed` serves (or of `--tls-cert`).
pub fn cert(args: CertArgs) -> i32 {
    use crate::server::tls;
    let cert = match &args.tls_cert {
        Some(c) => c.clone(),
        None => match state_dir(args.state_dir.as_ref()) {
            Ok(d) => tls::self_signed_pair(&d).cert,
            Err(e) => {
                eprintln!("dashgate: {e}");
                return 2;
            }
        },
    };
    let text = match std::fs::read(&cert) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "dashgate: {}: {e} (`dashgate --tls self-signed` makes the self-signed certificate)",
                cert.display()
            );
            return 1;
        }
    };
    use rustls_pki_types::pem::PemObject;
    match rustls_pki_types::CertificateDer::pem_slice_iter(&text).next() {
        Some(Ok(der)) => {
            println!("sha256 {}", tls::fingerprint(der.as_ref()));
            println!("certificate {}", cert.display());
            if args.tls_cert.is_none() {
                let pair = tls::self_signed_pair(cert.parent().unwrap_or(&cert));
                println!("key {}", pair.key.display());
            }
            0
        }
        _ => {
            eprintln!(
                "dashgate: {}: no PEM certificate in the file",
                cert.display()
            );
            1
        }
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().flatten_event(true).init(),
    }
}

/// Run the server; returns the exit status (2 for configuration errors).
pub fn main(args: ServeArgs) -> i32 {
    init_tracing(args.log_format);
    let fail = |msg: String| {
        eprintln!("dashgate: {msg}");
        2
    };
    let source = match policy_source(&args) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let (host, port) = match (host(&args), port(&args)) {
        (Ok(h), Ok(p)) => (h, p),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let upstream = match upstream(&args) {
        Ok(u) => u,
        Err(e) => return fail(e),
    };
    let upstream_command = match args
        .upstream_command
        .as_deref()
        .map(crate::proxy::supervise::parse_command)
    {
        Some(Err(e)) => return fail(e),
        Some(Ok(c)) => Some(c),
        None => None,
    };
    let ctx = match load_context(host, &args.allowed_hosts) {
        Ok(c) => c.with_upstream(upstream.is_some()),
        Err(e) => return fail(e),
    };
    let policy = match load_policy(&source, &ctx) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let chat = match chat_config(&args) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let limits = match limits(&args) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let (token, _from_env) = match startup_token(&args) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let tls = match tls(&args, host) {
        Ok(t) => t.map(std::sync::Arc::new),
        Err(e) => return fail(e),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind(SocketAddr::new(host, port)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("dashgate: cannot bind {host}:{port}: {e}");
                return 1;
            }
        };
        let bind = listener.local_addr().expect("bound address");
        let needs_token = policy.can_require_auth() && policy.startup_token_enabled();
        let config = Config {
            bind,
            static_dir: static_dir(&args),
            policy_source: source,
            policy_context: ctx,
            startup_token: Some(StartupToken::new(&token)),
            auth_window: Duration::from_secs(args.auth_window_secs.max(1)),
            max_sockets: args.max_sockets,
            chat,
            upstream,
        };
        let state = State::new(config, policy);
        let shown = if bind.ip().is_unspecified() {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bind.port())
        } else {
            bind
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        if let Some(tls) = tls {
            println!("tls certificate sha256 {} ({})", tls.fingerprint(), tls.pair.cert.display());
            let _ = state.tls.set(tls);
        }
        // Signals and the watcher are in place before the server announces
        // itself, so a SIGHUP right after the `listening` line is a reload.
        let _watcher = crate::server::reload::watch(&state);
        let _tls_watcher = crate::server::tls::watch(&state);
        let shutdown = crate::server::signals::install(state);
        let supervisor = match (&state.upstream_ops, upstream_command) {
            (Some(ops), Some(cmd)) => Some(crate::proxy::supervise::start(cmd, ops.clone())),
            _ => None,
        };
        if let Some(ops) = &state.upstream_ops {
            if supervisor.is_none() {
                crate::proxy::ops::probe(ops).await;
            }
            tokio::spawn(crate::proxy::ops::probe_loop(ops.clone()));
        }
        let stopper = supervisor.as_ref().map(crate::proxy::supervise::Supervisor::stopper);
        let shutdown = async move {
            shutdown.await;
            // The upstream is stopped while the sockets say goodbye.
            if let Some(s) = stopper {
                let _ = s.send(true);
            }
        };
        let summary = state.policy().compiled.summary();
        tracing::info!(bind = %bind, policy = %summary.source, rules = summary.rules, "dashgate listening");
        println!("listening on {scheme}://{shown}");
        if needs_token {
            let page = state.config.own_route("/login");
            let page = if state.config.upstream.is_some() { page.as_str() } else { "/" };
            println!("open {scheme}://{shown}{page}?token={token}");
        }
        if let Some(up) = &state.config.upstream {
            println!("proxying to {}", up.url);
        }
        drop(token);
        crate::server::run(listener, state, limits, shutdown).await;
        if let Some(s) = supervisor {
            s.stop().await;
        }
        0
    })
}
