//! The policy commands, run as a user runs them: the built binary, its
//! stdout, stderr and exit status.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dashgate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dashgate"))
        .args(args)
        .current_dir(root())
        .env_remove("DASHGATE_TOKEN")
        .env_remove("HERMES_DASHBOARD_SESSION_TOKEN")
        .output()
        .expect("run dashgate")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn yaml_in(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| p.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn check_accepts_the_presets_and_examples() {
    let mut files = yaml_in("policies");
    files.extend(yaml_in("policies/examples"));
    let args: Vec<&str> = ["policy", "check"]
        .into_iter()
        .chain(files.iter().map(String::as_str))
        .collect();
    let out = dashgate(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for f in &files {
        assert!(
            stdout(&out).contains(&format!("{f}: ok (")),
            "{f}\n{}",
            stdout(&out)
        );
    }
}

#[test]
fn check_refuses_each_bad_file_with_its_position() {
    let files = yaml_in("tests/policies/bad");
    assert!(files.len() >= 15);
    for f in &files {
        let text = std::fs::read_to_string(root().join(f)).unwrap();
        let expect = text
            .lines()
            .next()
            .unwrap()
            .trim_start_matches("# expect: ");
        let pos: Vec<&str> = expect.splitn(3, ':').take(2).collect();
        let out = dashgate(&["policy", "check", f]);
        assert_eq!(out.status.code(), Some(2), "{f}");
        let want = format!("{f}:{}:{}: ", pos[0], pos[1]);
        assert!(stderr(&out).starts_with(&want), "{f}: {}", stderr(&out));
    }
    // One bad file among good ones still fails the run, and the good are reported.
    let out = dashgate(&["policy", "check", "policies/secure.yaml", &files[0]]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains("policies/secure.yaml: ok (4 rules)"));
}

#[test]
fn explain_lan_allows_the_chat_websocket_from_the_lan() {
    let out = dashgate(&[
        "policy",
        "explain",
        "policies/lan.yaml",
        "--from",
        "192.168.1.20",
        "--path",
        "/api/ws",
        "--ws",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let last = text.trim_end().lines().last().unwrap();
    assert_eq!(
        last,
        "decision: allow (rule: local networks need no sign-in)"
    );
}

#[test]
fn explain_names_the_missed_fields_and_pre_rule_refusals() {
    let out = dashgate(&[
        "policy",
        "explain",
        "secure",
        "--from",
        "203.0.113.9",
        "--path",
        "/api/ws",
        "--ws",
    ]);
    let text = stdout(&out);
    assert!(text.contains("health check is public [allow] (preset:secure): missed: paths: /api/ws not in [/healthz]"), "{text}");
    assert!(
        text.contains("verdict: refused 401 no_credential"),
        "{text}"
    );
    assert!(
        text.trim_end()
            .ends_with("decision: authenticate (rule: everything else needs a credential)"),
        "{text}"
    );

    let out = dashgate(&[
        "policy",
        "explain",
        "insecure",
        "--from",
        "127.0.0.1",
        "--ws",
        "--origin",
        "https://evil.example",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("verdict: refused 403 origin_not_allowed"),
        "{text}"
    );
    assert!(
        text.trim_end().ends_with("decision: deny (rule: none)"),
        "{text}"
    );

    let out = dashgate(&[
        "policy",
        "explain",
        "secure",
        "--from",
        "127.0.0.1",
        "--path",
        "/a/../b",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["verdict"]["reason"], "non_canonical_path");
    assert_eq!(v["decision"]["action"], "deny");
    assert_eq!(v["decision"]["rule"], serde_json::Value::Null);
}

#[test]
fn explain_runs_the_proxy_logic_with_peer_and_headers() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "version: 1\ntrusted_proxies: [loopback]\nrules:\n  - { name: lan, from: [private], action: allow }\n  - { name: rest, action: deny }\n",
    )
    .unwrap();
    let path = file.path().to_str().unwrap();
    let run = |peer: &str, xff: &str| {
        stdout(&dashgate(&[
            "policy",
            "explain",
            path,
            "--peer",
            peer,
            "--header",
            &format!("X-Forwarded-For: {xff}"),
        ]))
    };
    assert!(run("127.0.0.1", "192.168.1.9")
        .trim_end()
        .ends_with("decision: allow (rule: lan)"));
    // The same header from an untrusted peer is ignored.
    assert!(run("203.0.113.9", "192.168.1.9")
        .trim_end()
        .ends_with("decision: deny (rule: rest)"));
    let bad = dashgate(&[
        "policy",
        "explain",
        path,
        "--peer",
        "127.0.0.1",
        "--header",
        "X-Forwarded-For: nonsense",
    ]);
    assert_eq!(bad.status.code(), Some(0));
    assert!(
        stdout(&bad).contains("verdict: refused 400 bad_forwarding_header"),
        "{}",
        stdout(&bad)
    );
}

#[test]
fn explain_and_check_fail_with_status_2() {
    let out = dashgate(&[
        "policy",
        "explain",
        "tests/policies/bad/unknown_network.yaml",
        "--from",
        "127.0.0.1",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown_network.yaml:8:12: "),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        dashgate(&["policy", "explain", "secure", "--from", "not-an-ip"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        dashgate(&["policy", "explain", "secure"]).status.code(),
        Some(2)
    );
    assert_eq!(
        dashgate(&["policy", "check", "/nonexistent.yaml"])
            .status
            .code(),
        Some(2)
    );
}

#[test]
fn schema_describes_the_file() {
    let out = dashgate(&["policy", "schema"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["properties"]["rules"].is_object(), "{v}");
    assert_eq!(v["additionalProperties"], false);
    assert!(v["required"]
        .as_array()
        .unwrap()
        .contains(&"version".into()));
}

fn hash_password(stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dashgate"))
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn temp_policy(credentials: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.yaml");
    let yaml = format!("version: 1\ncredentials:\n{credentials}rules:\n  - {{ name: signed in, action: authenticate }}\n");
    std::fs::write(&path, yaml).unwrap();
    (dir, path)
}

#[test]
fn hash_password_round_trips_through_a_policy() {
    let out = hash_password("correct horse\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let phc = stdout(&out).trim().to_owned();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    let (_dir, path) = temp_policy(&format!(
        "  users:\n    - {{ name: alice, password_hash: \"{phc}\" }}\n"
    ));
    let ctx = dashgate::policy::LoadContext::new("127.0.0.1".parse().unwrap());
    let p = dashgate::policy::CompiledPolicy::load_file(&path, &ctx).unwrap();
    assert!(p.verify_password("alice", "correct horse").is_some());
    assert!(p.verify_password("alice", "correct horse\n").is_none());
    let empty = hash_password("\n");
    assert_eq!(empty.status.code(), Some(2));
    assert!(stderr(&empty).contains("empty password"));
}

#[test]
fn a_token_line_pasted_into_a_policy_authenticates_that_token() {
    let out = dashgate(&["token"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let mut lines = text.lines();
    let token = lines.next().unwrap().to_owned();
    let line = lines.next().unwrap().to_owned();
    assert_eq!(
        token.len(),
        43,
        "32 bytes base64url without padding: {token}"
    );
    assert!(
        line.starts_with("- { name: CHANGE-ME, sha256: \""),
        "{line}"
    );
    let (_dir, path) = temp_policy(&format!("  tokens:\n    {line}\n"));
    let path = path.to_str().unwrap();
    let ok = dashgate(&[
        "policy",
        "explain",
        path,
        "--from",
        "203.0.113.9",
        "--token",
        &token,
    ]);
    let text = stdout(&ok);
    assert!(
        text.contains("verdict: allowed as token CHANGE-ME"),
        "{text}"
    );
    assert!(text
        .trim_end()
        .ends_with("decision: authenticate (rule: signed in)"));
    let bad = stdout(&dashgate(&[
        "policy",
        "explain",
        path,
        "--from",
        "203.0.113.9",
        "--token",
        "x",
    ]));
    assert!(bad.contains("verdict: refused 401 bad_credential"), "{bad}");
    // Two runs give two different tokens.
    assert_ne!(stdout(&dashgate(&["token"])).lines().next().unwrap(), token);
}

#[test]
fn explain_accepts_the_startup_token_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_dashgate"))
        .args([
            "policy",
            "explain",
            "secure",
            "--from",
            "127.0.0.1",
            "--path",
            "/api/status",
            "--token",
            "hello",
        ])
        .env("DASHGATE_TOKEN", "hello")
        .output()
        .unwrap();
    assert!(
        stdout(&out).contains("verdict: allowed as the startup token"),
        "{}",
        stdout(&out)
    );
}
