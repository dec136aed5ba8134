//! The command line (SPEC §4): clap derive, with every `serve` flag also read
//! from a `DASHGATE_*` variable and, for drop-in use in existing hermes
//! deployments, from the `HERMES_DASHBOARD_*` aliases. A flag beats a variable.

use std::net::IpAddr;
use std::path::PathBuf;

mod policy_cmd;
pub mod serve;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// A web dashboard server for terminal agents, guarded by one policy.
#[derive(Debug, Parser)]
#[command(name = "dashgate", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `dashgate` alone means `dashgate serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the dashboard (the default).
    Serve(Box<ServeArgs>),
    /// Check, explain or describe policy files.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Print an argon2id hash of a password read from stdin.
    HashPassword,
    /// Print a new random token and its `sha256` line for the policy file.
    Token,
    /// Print the self-signed certificate's SHA-256 fingerprint and where
    /// its files are (or those of --tls-cert).
    Cert(CertArgs),
}

/// How the server speaks TLS without a certificate of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    /// A certificate made for this machine's names, kept in --state-dir.
    SelfSigned,
}

#[derive(Debug, Clone, Args)]
pub struct CertArgs {
    /// Where `--tls self-signed` keeps its certificate (default
    /// `~/.local/state/dashgate`).
    #[arg(long, env = "DASHGATE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Show this certificate file instead (`serve --tls-cert`).
    #[arg(long, env = "DASHGATE_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to bind.
    #[arg(long, env = "DASHGATE_HOST")]
    pub host: Option<IpAddr>,
    /// Port to bind (0 picks a free one).
    #[arg(long, env = "DASHGATE_PORT")]
    pub port: Option<u16>,
    /// Policy file (default: the `secure` preset). Also `DASHGATE_POLICY`.
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Use the `insecure` preset: everything allowed, Host/Origin still
    /// checked. Also `DASHGATE_INSECURE=1` / `HERMES_DASHBOARD_INSECURE=1`.
    #[arg(long)]
    pub insecure: bool,
    /// A Host name to serve besides the policy's `allowed_hosts` or its
    /// default (repeatable; `*.suffix` for a domain). Also
    /// `DASHGATE_ALLOWED_HOSTS` (comma-separated).
    #[arg(
        long = "allowed-host",
        value_name = "HOST",
        env = "DASHGATE_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// Folder of the web UI.
    #[arg(long, env = "DASHGATE_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
    /// The chat command, as shell words (default: hermes, $SHELL, /bin/sh).
    #[arg(long, env = "DASHGATE_CHAT_COMMAND")]
    pub chat_command: Option<String>,
    /// Working directory of chat sessions.
    #[arg(long, env = "DASHGATE_CHAT_CWD")]
    pub chat_cwd: Option<PathBuf>,
    /// Most chat sessions running at once.
    #[arg(long, env = "DASHGATE_MAX_SESSIONS", default_value_t = 16)]
    pub max_sessions: usize,
    /// Seconds a chat session lives without a viewer.
    #[arg(long, env = "DASHGATE_IDLE_TIMEOUT", default_value_t = 1800)]
    pub idle_timeout: u64,
    /// Most open HTTP connections at once (further ones wait to be accepted;
    /// one that sends no request head for --request-timeout is closed).
    #[arg(long, env = "DASHGATE_MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,
    /// Most open connections from one address (one more is closed at once);
    /// a trusted proxy (`trusted_proxies`) is not limited.
    #[arg(
        long,
        env = "DASHGATE_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 64
    )]
    pub max_connections_per_client: usize,
    /// Seconds a request head may take to arrive, a request body may go
    /// without a byte (then 408), and a connection may stay open with no
    /// request (an idle HTTP/2 connection gets GOAWAY).
    #[arg(long, env = "DASHGATE_REQUEST_TIMEOUT", default_value_t = 10)]
    pub request_timeout: u64,
    /// Most open WebSockets at once (one more gets 503 at the upgrade).
    #[arg(long, env = "DASHGATE_MAX_SOCKETS", default_value_t = 20_000)]
    pub max_sockets: usize,
    /// Length in seconds of the failed-credential window of
    /// `limits.auth_failures_per_minute` (60; shorter only for tests).
    #[arg(
        long,
        env = "DASHGATE_AUTH_WINDOW_SECS",
        default_value_t = 60,
        hide = true
    )]
    pub auth_window_secs: u64,
    /// Read the startup token from this file (Docker secrets, systemd
    /// credentials); a trailing newline is trimmed. Not with DASHGATE_TOKEN.
    #[arg(long, env = "DASHGATE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, env = "DASHGATE_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Put the gate in front of this dashboard (`http://HOST:PORT` or
    /// `https://HOST:PORT`): every path but `/.dashgate/...` (dashgate's
    /// own) is proxied to it.
    #[arg(long, env = "DASHGATE_UPSTREAM", value_name = "URL")]
    pub upstream: Option<String>,
    /// Run the upstream too, as shell words (e.g. `hermes dashboard
    /// --no-open --skip-build --host 127.0.0.1 --port 9120`): started, waited
    /// for, restarted with backoff when it exits, stopped on SIGTERM. Its
    /// output goes to dashgate's log. Needs --upstream.
    #[arg(
        long,
        env = "DASHGATE_UPSTREAM_COMMAND",
        value_name = "CMD",
        requires = "upstream"
    )]
    pub upstream_command: Option<String>,
    /// Check an https upstream's certificate against the CA certificates
    /// of this PEM file only (default: the system's roots).
    #[arg(long, env = "DASHGATE_UPSTREAM_CA", value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,
    /// Seconds the upstream has to answer (a response head, a WebSocket
    /// handshake) before the client gets 504.
    #[arg(long, env = "DASHGATE_UPSTREAM_TIMEOUT", default_value_t = 30.0)]
    pub upstream_timeout: f64,
    /// Serve https with this certificate chain (PEM, leaf first; with
    /// --tls-key). Reloaded on SIGHUP and when the file changes.
    #[arg(
        long,
        env = "DASHGATE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: RSA, ECDSA or Ed25519).
    #[arg(
        long,
        env = "DASHGATE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
    /// `self-signed`: serve https with a certificate made for this
    /// machine's names, kept in --state-dir and reused across restarts.
    #[arg(long, value_enum, env = "DASHGATE_TLS", conflicts_with = "tls_cert")]
    pub tls: Option<TlsMode>,
    /// Where dashgate keeps what it makes (the self-signed certificate).
    /// Default `~/.local/state/dashgate`.
    #[arg(long, env = "DASHGATE_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate files; exit 0, or 2 with file:line:col.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show how a request would be decided, rule by rule.
    Explain(Box<ExplainArgs>),
    /// Print the JSON Schema of the policy file.
    Schema,
}

#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// The policy file, or a preset name.
    pub file: PathBuf,
    /// The client as seen after proxies.
    #[arg(long, conflicts_with = "peer", required_unless_present = "peer")]
    pub from: Option<IpAddr>,
    /// The TCP peer; with --header, lets the proxy rules find the client.
    #[arg(long)]
    pub peer: Option<IpAddr>,
    /// A request header `K: V` (repeatable).
    #[arg(long = "header")]
    pub headers: Vec<String>,
    #[arg(long, default_value = "GET")]
    pub method: String,
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Decide a WebSocket upgrade.
    #[arg(long)]
    pub ws: bool,
    /// The Host header (a browser sends the port too).
    #[arg(long, default_value = "localhost:9119")]
    pub host: String,
    /// The address the server binds (`serve --host`): it decides the
    /// default `allowed_hosts`.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: IpAddr,
    /// A Host name the server is told to serve with `--allowed-host`
    /// (repeatable). Also `DASHGATE_ALLOWED_HOSTS`.
    #[arg(
        long = "allowed-host",
        value_name = "HOST",
        env = "DASHGATE_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    #[arg(long)]
    pub origin: Option<String>,
    /// A bearer token to present.
    #[arg(long, conflicts_with = "user")]
    pub token: Option<String>,
    /// Decide as `serve --upstream URL` would: the presets name dashgate's
    /// own paths under `/.dashgate/`, every other path is the upstream's.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,
    /// Present a signed-in principal by name: a user, a token's name,
    /// `startup`, or (with forward auth) a forwarded user; its groups come
    /// from the policy's credentials.
    #[arg(long)]
    pub user: Option<String>,
    /// A forwarded user's groups (as its proxy's groups header would name
    /// them); repeatable.
    #[arg(long = "group", value_name = "GROUP", requires = "user")]
    pub groups: Vec<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Parse the process arguments and run; returns the exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match cli.command {
        None => crate::cli::serve::main(cli.serve),
        Some(Command::Serve(args)) => crate::cli::serve::main(*args),
        Some(Command::Policy(cmd)) => crate::cli::policy_cmd::main(cmd),
        Some(Command::HashPassword) => crate::cli::policy_cmd::hash_password(),
        Some(Command::Token) => crate::cli::policy_cmd::token(),
        Some(Command::Cert(args)) => crate::cli::serve::cert(args),
    }
}
