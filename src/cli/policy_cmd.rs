//! `dashgate policy check|explain|schema`, `dashgate token` and
//! `dashgate hash-password` (SPEC §4): the commands a person uses to write a
//! policy and see what it does before a server runs it.
//!
//! Exit status: 0 when the command did its job (an explanation of a refusal
//! is still a success), 2 for a policy error or bad arguments, so scripts and
//! CI can gate on `policy check`.

use std::io::{BufRead, IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::cli::{ExplainArgs, PolicyCommand};
use crate::policy::{
    file::PolicyFile, CompiledPolicy, Credential, Facts, ForwardHeaders, LoadContext, PolicyError,
    Transport, PRESETS,
};

/// Exit status for a policy error or bad arguments.
const EXIT_ERROR: i32 = 2;

/// The bind address `policy check` assumes (and `policy explain` without
/// `--bind`): the server's default, so host defaults match what `dashgate
/// serve` would do.
const EXPLAIN_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Run `dashgate policy …`; returns the exit status.
pub fn main(cmd: PolicyCommand) -> i32 {
    match cmd {
        PolicyCommand::Check { files } => check(&files),
        PolicyCommand::Explain(args) => explain(&args),
        PolicyCommand::Schema => {
            let mut schema = schemars::schema_for!(PolicyFile).to_value();
            drop_null(&mut schema);
            match serde_json::to_string_pretty(&schema) {
                Ok(s) => {
                    println!("{s}");
                    0
                }
                Err(e) => fail(&format!("cannot print the schema: {e}")),
            }
        }
    }
}

/// Remove `null` from the schema's types: an optional key is left out,
/// never given an empty value (which the loader refuses, fail closed).
fn drop_null(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if types.len() == 1 {
                    let only = types.remove(0);
                    map.insert("type".into(), only);
                }
            }
            for key in ["anyOf", "oneOf"] {
                if let Some(Value::Array(alts)) = map.get_mut(key) {
                    alts.retain(|a| a.get("type").is_none_or(|t| t != "null"));
                    if alts.len() == 1 {
                        let only = alts.remove(0);
                        map.remove(key);
                        if let Value::Object(o) = only {
                            map.extend(o);
                        }
                    }
                }
            }
            map.values_mut().for_each(drop_null);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_null),
        _ => {}
    }
}

fn fail(msg: &str) -> i32 {
    eprintln!("error: {msg}");
    EXIT_ERROR
}

/// A policy file, or a preset by name when no such file exists.
fn load(path: &Path, ctx: &LoadContext) -> Result<CompiledPolicy, PolicyError> {
    let name = path.to_string_lossy();
    if !path.exists() && PRESETS.iter().any(|(n, _)| *n == name) {
        return CompiledPolicy::preset(&name, ctx);
    }
    CompiledPolicy::load_file(path, ctx)
}

fn check(files: &[std::path::PathBuf]) -> i32 {
    let mut status = 0;
    for file in files {
        match load(file, &LoadContext::new(EXPLAIN_BIND)) {
            Ok(p) => {
                let n = p.summary().rules;
                let s = if n == 1 { "" } else { "s" };
                println!("{}: ok ({n} rule{s})", file.display());
            }
            Err(e) => {
                eprintln!("{e}");
                status = EXIT_ERROR;
            }
        }
    }
    status
}

/// The request headers given with `--header 'K: V'`.
#[derive(Default)]
struct Headers {
    fwd: ForwardHeaders,
    host: Option<String>,
    origin: Option<String>,
    bearer: Option<String>,
}

fn parse_headers(lines: &[String]) -> Result<Headers, String> {
    let mut h = Headers::default();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("--header {line:?}: expected 'Name: value'"))?;
        let v = v.trim().to_owned();
        match k.trim().to_ascii_lowercase().as_str() {
            "x-forwarded-for" => h.fwd.x_forwarded_for.push(v),
            "forwarded" => h.fwd.forwarded.push(v),
            "x-forwarded-proto" => h.fwd.x_forwarded_proto = Some(v),
            "x-forwarded-host" => h.fwd.x_forwarded_host = Some(v),
            "host" => h.host = Some(v),
            "origin" => h.origin = Some(v),
            "authorization" => match v.strip_prefix("Bearer ") {
                Some(t) => h.bearer = Some(t.trim().to_owned()),
                None => {
                    return Err("--header Authorization: only 'Bearer TOKEN' is understood".into())
                }
            },
            other => eprintln!("note: header {other:?} does not take part in decisions; ignored"),
        }
    }
    Ok(h)
}

/// The credential `--token` stands for: a policy token, else the startup
/// token from `DASHGATE_TOKEN` (or its hermes alias) or the file named by
/// `DASHGATE_TOKEN_FILE`, else invalid.
fn credential(policy: &CompiledPolicy, token: Option<&str>) -> Credential {
    let Some(token) = token else {
        return Credential::None;
    };
    if let Some(p) = policy.verify_token(token) {
        return Credential::Valid(p);
    }
    let startup = std::env::var("DASHGATE_TOKEN")
        .or_else(|_| std::env::var("HERMES_DASHBOARD_SESSION_TOKEN"))
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            let path = std::env::var_os("DASHGATE_TOKEN_FILE").filter(|p| !p.is_empty())?;
            crate::cli::serve::read_token_file(Path::new(&path)).ok()
        });
    match startup {
        Some(s)
            if policy.startup_token_enabled()
                && bool::from(s.as_bytes().ct_eq(token.as_bytes())) =>
        {
            Credential::Valid(crate::policy::Principal::StartupToken)
        }
        _ => Credential::Invalid,
    }
}

fn explain(args: &ExplainArgs) -> i32 {
    // The server's view: its bind address, this machine's name, its
    // `--allowed-host` entries, and `--upstream` (the presets' paths under
    // `/.dashgate/`).
    let ctx = match crate::cli::serve::load_context(args.bind, &args.allowed_hosts) {
        Ok(c) => c.with_upstream(args.upstream.is_some()),
        Err(e) => return fail(&e),
    };
    let policy = match load(&args.file, &ctx) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return EXIT_ERROR;
        }
    };
    let headers = match parse_headers(&args.headers) {
        Ok(h) => h,
        Err(e) => return fail(&e),
    };
    let method = args.method.to_ascii_uppercase();
    if args.ws && method != "GET" {
        return fail("a WebSocket upgrade is a GET: drop --method or --ws");
    }
    let (peer, view) = match (args.from, args.peer) {
        (Some(ip), _) => {
            if !headers.fwd.x_forwarded_for.is_empty() || !headers.fwd.forwarded.is_empty() {
                eprintln!("note: --from is the client after proxies; forwarding headers are ignored (use --peer)");
            }
            (ip, None)
        }
        (None, Some(peer)) => match policy.client_detailed(peer, &headers.fwd) {
            Ok(view) => (peer, Some(view)),
            Err(msg) => return explain_bad_forwarding(&policy, args.json, &msg),
        },
        (None, None) => return fail("give --from IP or --peer IP"),
    };
    let token = args.token.as_deref().or(headers.bearer.as_deref());
    let credential = match &args.user {
        None => credential(&policy, token),
        Some(name) => match policy.principal_named(name, &args.groups) {
            Ok(p) => Credential::Valid(p),
            Err(e) => return fail(&e),
        },
    };
    let facts = Facts {
        peer: peer.to_canonical(),
        client: view.as_ref().map_or(peer.to_canonical(), |v| v.client),
        method: method.into(),
        path: args.path.clone(),
        host: view
            .as_ref()
            .and_then(|v| v.host.clone())
            .or(headers.host)
            .or_else(|| Some(args.host.clone())),
        origin: headers.origin.or_else(|| args.origin.clone()),
        scheme: view.and_then(|v| v.proto).map_or("http".into(), Into::into),
        transport: if args.ws {
            Transport::Ws
        } else {
            Transport::Http
        },
        credential,
    };
    let explanation = policy.explain(&facts);
    if args.json {
        match serde_json::to_string_pretty(&explanation) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(&e.to_string()),
        }
    } else {
        println!("{explanation}");
    }
    0
}

/// A malformed forwarding header from a trusted proxy is refused before any
/// rule is read (400 `bad_forwarding_header`).
fn explain_bad_forwarding(policy: &CompiledPolicy, json: bool, msg: &str) -> i32 {
    let source = policy.summary().source;
    if json {
        let v = serde_json::json!({
            "policy": source,
            "client": { "error": msg },
            "verdict": { "allowed": false, "status": 400, "reason": "bad_forwarding_header" },
            "decision": { "action": "deny", "rule": null },
        });
        println!("{v:#}");
    } else {
        println!("policy: {source}");
        println!("client: malformed forwarding header from a trusted proxy: {msg}");
        println!("verdict: refused 400 bad_forwarding_header");
        println!("decision: deny (rule: none)");
    }
    0
}

/// `dashgate hash-password`: one line from stdin, its argon2id PHC string.
pub fn hash_password() -> i32 {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("password (shown as you type): ");
        let _ = std::io::stderr().flush();
    }
    let mut line = String::new();
    if let Err(e) = stdin.lock().read_line(&mut line) {
        return fail(&format!("cannot read the password from stdin: {e}"));
    }
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return fail("empty password (give one line on stdin)");
    }
    match crate::policy::hash_password(password) {
        Ok(phc) => {
            println!("{phc}");
            0
        }
        Err(e) => fail(&format!("cannot hash: {e}")),
    }
}

/// `dashgate token`: a new random token and the line for `credentials.tokens`.
pub fn token() -> i32 {
    let bytes: [u8; 32] = rand::random();
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let sha = hex::encode(Sha256::digest(token.as_bytes()));
    println!("{token}");
    println!("- {{ name: CHANGE-ME, sha256: \"{sha}\" }}");
    eprintln!("# line 1 is the token: keep it secret, send it as 'Authorization: Bearer …'.");
    eprintln!("# line 2 goes under credentials.tokens in the policy (rename CHANGE-ME).");
    0
}
