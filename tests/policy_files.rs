//! Policy files: the bad corpus fails where each file says it fails, the
//! shipped presets and examples compile, credentials and the effective
//! policy behave as documented.

mod policy_util;

use std::path::{Path, PathBuf};

use dashgate::policy::{CompiledPolicy, LoadContext, Principal, PRESETS};

fn ctx() -> LoadContext {
    LoadContext::new("127.0.0.1".parse().unwrap())
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

/// The first line of each bad file: `# expect: LINE:COL: text in the message`.
fn expectation(path: &Path) -> (usize, usize, String) {
    let text = std::fs::read_to_string(path).unwrap();
    let first = text.lines().next().unwrap_or_default();
    let rest = first.strip_prefix("# expect: ").unwrap_or_else(|| {
        panic!(
            "{}: first line must be '# expect: L:C: text'",
            path.display()
        )
    });
    let mut parts = rest.splitn(3, ':');
    let line = parts.next().unwrap().parse().unwrap();
    let col = parts.next().unwrap().parse().unwrap();
    (line, col, parts.next().unwrap().trim().to_owned())
}

#[test]
fn every_bad_file_fails_at_its_own_line_and_column() {
    let files = yaml_files("tests/policies/bad");
    assert!(
        files.len() >= 15,
        "the corpus needs at least 15 files, has {}",
        files.len()
    );
    for file in files {
        let (line, col, text) = expectation(&file);
        let err = CompiledPolicy::load_file(&file, &ctx())
            .err()
            .unwrap_or_else(|| panic!("{} compiled but must fail", file.display()));
        let shown = err.to_string();
        assert_eq!((err.line, err.col), (line, col), "{shown}");
        assert!(
            err.message.contains(&text),
            "{shown}\n  expected to contain: {text}"
        );
        assert!(
            shown.starts_with(&format!("{}:{line}:{col}: ", file.display())),
            "{shown}"
        );
    }
}

#[test]
fn the_presets_and_examples_compile() {
    for (name, _) in PRESETS {
        let p = CompiledPolicy::preset(name, &ctx()).unwrap();
        assert_eq!(p.summary().preset.as_deref(), Some(*name));
        assert_eq!(p.summary().source, format!("preset:{name}"));
    }
    let mut files = yaml_files("policies");
    files.extend(yaml_files("policies/examples"));
    assert!(files.len() >= 3 + 3, "{files:?}");
    for f in files {
        let p = CompiledPolicy::load_file(&f, &ctx()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.summary().source, f.display().to_string());
        assert_eq!(p.summary().sha256.len(), 64);
    }
    assert!(CompiledPolicy::preset("nope", &ctx()).is_err());
    let missing = CompiledPolicy::load_file(Path::new("/nonexistent/p.yaml"), &ctx()).unwrap_err();
    assert!(
        missing
            .to_string()
            .starts_with("/nonexistent/p.yaml:1:1: cannot read"),
        "{missing}"
    );
}

/// sha256("test")
const TEST_SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

#[test]
fn credentials_settings_and_their_defaults() {
    let phc = dashgate::policy::hash_password("s3cret").unwrap();
    let yaml = format!(
        r#"
version: 1
extends: secure
credentials:
  startup_token: false
  tokens:
    - {{ name: ci, sha256: "{}" }}
  users:
    - {{ name: alice, password_hash: "{phc}" }}
  forward_auth: {{ user_header: Remote-User, secret_header: X-Proxy-Secret, secret_sha256: "{TEST_SHA}" }}
  session_ttl: 15m
limits:
  auth_failures_per_minute: 3
rules:
  - {{ paths: [/x], action: deny }}
"#,
        TEST_SHA.to_uppercase()
    );
    let p = policy_util::compile(&yaml);
    assert_eq!(
        p.verify_token("test"),
        Some(Principal::Token { name: "ci".into() })
    );
    assert_eq!(p.verify_token("test "), None);
    assert_eq!(
        p.verify_password("alice", "s3cret"),
        Some(Principal::User {
            name: "alice".into()
        })
    );
    assert_eq!(p.verify_password("alice", "S3cret"), None);
    assert_eq!(p.verify_password("mallory", "s3cret"), None);
    assert!(!p.startup_token_enabled());
    assert_eq!(p.forward_auth_header(), Some("Remote-User"));
    assert_eq!(p.session_ttl().as_secs(), 15 * 60);
    assert_eq!(p.auth_failures_per_minute(), 3);

    let d = policy_util::preset("secure");
    assert!(d.startup_token_enabled());
    assert_eq!(d.forward_auth_header(), None);
    assert_eq!(d.session_ttl().as_secs(), 12 * 3600);
    assert_eq!(d.auth_failures_per_minute(), 10);
    assert_eq!(d.verify_token("test"), None);
    assert_eq!(d.verify_password("alice", "s3cret"), None);
}

#[test]
fn the_effective_policy_is_merged_and_has_no_secrets() {
    let phc = dashgate::policy::hash_password("pw").unwrap();
    let yaml = format!(
        "version: 1\nextends: lan\ncredentials:\n  tokens: [{{ name: ci, sha256: \"{TEST_SHA}\" }}]\n  users: [{{ name: alice, password_hash: \"{phc}\" }}]\nrules:\n  - {{ paths: [/x], action: deny }}\n"
    );
    let p = policy_util::compile(&yaml);
    let json = p.effective();
    let text = json.to_string();
    assert!(
        !text.contains(TEST_SHA) && !text.contains("argon2"),
        "{text}"
    );
    assert_eq!(json["credentials"]["tokens"][0]["name"], "ci");
    assert_eq!(json["credentials"]["users"][0]["name"], "alice");
    let rules = json["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1 + 1 + 4);
    assert_eq!(rules[0]["name"], "rule 1");
    assert_eq!(rules[1]["name"], "local networks need no sign-in");
    assert_eq!(json["extends"], "lan");
}

#[test]
fn unused_network_definitions_are_still_validated() {
    // Nothing is skipped silently: a bad entry fails even if no rule uses it.
    let e = CompiledPolicy::from_str(
        "version: 1\nnetworks:\n  unused: [10.0.0.1/8]\nrules:\n  - { action: allow }\n",
        "u.yaml",
        &ctx(),
    )
    .unwrap_err();
    assert_eq!((e.line, e.col), (3, 12), "{e}");
}

#[test]
fn a_compiled_policy_can_be_shared_across_threads() {
    // The server keeps it in `RwLock<Arc<CompiledPolicy>>` and swaps it on reload.
    fn shared<T: Send + Sync + 'static>() {}
    shared::<CompiledPolicy>();
    shared::<dashgate::policy::Decision>();
    shared::<dashgate::policy::Facts>();
}
