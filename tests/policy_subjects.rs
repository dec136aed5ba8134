//! Table tests of the subject fields (`users`, `groups`) and `access`: a
//! matching and a missing case for each, the anonymous-caller rule of SPEC
//! §2 (401 at a subject rule, while a signed-in non-member falls through),
//! `access: read` refusing unsafe methods, and the located errors of a
//! `users` or `groups` entry that no credential has.

mod policy_util;

use std::process::Command;

use dashgate::policy::{AccessLevel, CompiledPolicy, Credential, LoadContext, Principal, Reason};
use policy_util::{compile, req, FactsExt};

const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

fn team() -> String {
    format!(
        r#"
version: 1
credentials:
  tokens:
    - {{ name: ana, sha256: "{SHA}", groups: [ops] }}
    - {{ name: vic, sha256: "{SHA}", groups: [viewers] }}
    - {{ name: bob, sha256: "{SHA}" }}
rules:
  - {{ name: ana only,    paths: [/u],  users: [ana],       action: authenticate }}
  - {{ name: ops only,    paths: [/g],  groups: [ops],      action: authenticate }}
  - {{ name: both,        paths: [/ug], users: [ana], groups: [ops], action: authenticate }}
  - {{ name: viewers read, paths: [/r], groups: [viewers], access: read, action: authenticate }}
  - {{ name: ops full,    paths: [/r],  groups: [ops],      action: authenticate }}
  - {{ name: fallback,    action: deny }}
"#
    )
}

fn tok(name: &str) -> Credential {
    Credential::Valid(Principal::Token { name: name.into() })
}

#[test]
fn users_groups_and_access_each_match_and_miss() {
    let p = compile(&team());
    // case | request | who | rule that decides | verdict
    let cases = [
        "users matches | GET /u | ana | ana only | ok",
        "users misses: falls through | GET /u | bob | fallback | deny",
        "groups matches | GET /g | ana | ops only | ok",
        "groups misses: falls through | GET /g | vic | fallback | deny",
        "a principal without groups misses | GET /g | bob | fallback | deny",
        "users and groups both name ana | GET /ug | ana | both | ok",
        "users and groups are AND-ed | GET /ug | vic | fallback | deny",
        "access read lets GET in | GET /r | vic | viewers read | ok",
        "access read refuses POST | POST /r | vic | viewers read | read-only",
        "access read refuses DELETE | DELETE /r | vic | viewers read | read-only",
        "access read: a WebSocket upgrade is a GET | GET /r upgrade | vic | viewers read | ok",
        "full access POSTs | POST /r | ana | ops full | ok",
    ];
    for line in cases {
        let [case, request, who, rule, want] = line.split(" | ").collect::<Vec<_>>()[..] else {
            panic!("not a case: {line}");
        };
        let want = match want {
            "ok" => Ok(()),
            "deny" => Err(Reason::RuleDeny),
            "read-only" => Err(Reason::ReadOnly),
            _ => panic!("{case}: no verdict {want}"),
        };
        let mut words = request.split(' ');
        let (method, path) = (words.next().unwrap(), words.next().unwrap());
        let facts = req(method, path).cred(tok(who));
        let facts = if words.next() == Some("upgrade") {
            facts.ws()
        } else {
            facts
        };
        let (verdict, index) = p.decide_indexed(&facts);
        let name = index.map(|i| p.rule_name(i).0.to_string());
        assert_eq!(name.as_deref(), Some(rule), "{case}: {verdict:?}");
        assert_eq!(verdict.map(|_| ()), want, "{case}");
    }
    let access = |f| p.decide_indexed(&f).1.map(|i| p.rule_access(i));
    assert_eq!(
        access(req("GET", "/r").cred(tok("vic"))),
        Some(AccessLevel::Read)
    );
    assert_eq!(
        access(req("GET", "/r").cred(tok("ana"))),
        Some(AccessLevel::Full)
    );
    assert_eq!(
        p.groups_of(&Principal::Token { name: "ana".into() }),
        ["ops".to_owned()]
    );
}

#[test]
fn anonymous_at_a_subject_rule_signs_in_while_a_non_member_falls_through() {
    let p = compile(&format!(
        r#"
version: 1
credentials:
  tokens: [{{ name: ana, sha256: "{SHA}", groups: [ops] }}, {{ name: bob, sha256: "{SHA}" }}]
rules:
  - {{ name: ops, groups: [ops], action: allow }}
  - {{ name: everyone else, action: allow }}
"#
    ));
    let d = p.decide(&req("GET", "/x"));
    assert_eq!(d.verdict, Err(Reason::NoCredential), "anonymous: {d:?}");
    assert_eq!(d.rule.as_deref(), Some("ops"));
    assert_eq!(Reason::NoCredential.status(), 401);
    let d = p.decide(&req("GET", "/x").cred(Credential::Invalid));
    assert_eq!(d.verdict, Err(Reason::BadCredential), "invalid: {d:?}");
    let d = p.decide(&req("GET", "/x").cred(tok("bob")));
    assert_eq!(
        d.rule.as_deref(),
        Some("everyone else"),
        "non-member: {d:?}"
    );
    assert_eq!(d.verdict, Ok(Principal::Token { name: "bob".into() }));
    let d = p.decide(&req("GET", "/x").cred(tok("ana")));
    assert_eq!(d.rule.as_deref(), Some("ops"));
    // An earlier rule that matches decides before the subject rule is reached.
    let p = compile(&format!(
        "version: 1\ncredentials:\n  tokens: [{{ name: ana, sha256: \"{SHA}\", groups: [ops] }}]\nrules:\n  - {{ paths: [/healthz], action: allow }}\n  - {{ groups: [ops], action: allow }}\n"
    ));
    assert_eq!(
        p.decide(&req("GET", "/healthz")).verdict,
        Ok(Principal::Anonymous)
    );
}

#[test]
fn forwarded_users_carry_their_groups_and_startup_is_a_user_name() {
    let p = compile(&format!(
        r#"
version: 1
credentials:
  forward_auth: {{ user_header: Remote-User, secret_header: X-Secret, secret_sha256: "{SHA}", groups_header: Remote-Groups }}
rules:
  - {{ name: admins, groups: [admins], action: authenticate }}
  - {{ name: the owner, users: [startup, carol], action: authenticate }}
  - {{ action: deny }}
"#
    ));
    let fwd = |name: &str, groups: &[&str]| {
        Credential::Valid(Principal::Forwarded {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        })
    };
    let rule = |c| p.decide(&req("GET", "/").cred(c)).rule.unwrap().to_string();
    assert_eq!(rule(fwd("dave", &["staff", "admins"])), "admins");
    assert_eq!(rule(fwd("dave", &["staff"])), "rule 3");
    assert_eq!(rule(fwd("carol", &[])), "the owner");
    assert_eq!(
        rule(Credential::Valid(Principal::StartupToken)),
        "the owner"
    );
}

fn load(yaml: &str) -> Result<CompiledPolicy, String> {
    let ctx = LoadContext::new("127.0.0.1".parse().unwrap());
    CompiledPolicy::from_str(yaml, "team.yaml", &ctx).map_err(|e| e.to_string())
}

#[test]
fn unknown_groups_and_users_are_located_errors() {
    let base = format!(
        "version: 1\ncredentials:\n  tokens:\n    - {{ name: ana, sha256: \"{SHA}\", groups: [ops] }}\nrules:\n"
    );
    // (case, rules, expected start of the error)
    let cases = [
        (
            "a typo'd group",
            "  - { groups: [opps], action: allow }\n",
            "team.yaml:6:16: rules[0].groups[0]: no credential is in group \"opps\"",
        ),
        (
            "a user no credential names",
            "  - { action: deny }\n  - { users: [ana, anna], action: allow }\n",
            "team.yaml:7:20: rules[1].users[1]: no credential is named \"anna\"",
        ),
        (
            "an empty users list",
            "  - { users: [], action: allow }\n",
            "team.yaml:6:14: rules[0].users: empty list",
        ),
        (
            "access on a deny rule",
            "  - { access: read, action: deny }\n",
            "team.yaml:6:15: rules[0].access:",
        ),
        (
            "an unknown access level",
            "  - { access: write, action: allow }\n",
            "team.yaml:6:",
        ),
    ];
    for (case, rules, want) in cases {
        let err = load(&format!("{base}{rules}")).expect_err(case);
        assert!(err.starts_with(want), "{case}: {err}");
    }
    let err = load(&format!(
        "{base}  - {{ action: allow }}\nchat:\n  see_all: [ops, admin]\n"
    ))
    .unwrap_err();
    assert!(
        err.starts_with("team.yaml:8:18: chat.see_all[1]: no credential is in group \"admin\""),
        "{err}"
    );
    let err = load(&format!(
        "version: 1\ncredentials:\n  tokens:\n    - {{ name: ana, sha256: \"{SHA}\", groups: [\"a,b\"] }}\nrules: [{{ action: allow }}]\n"
    ))
    .unwrap_err();
    assert!(err.starts_with("team.yaml:4:"), "{err}");
    // `startup` and `anonymous` are principals already: no token or user
    // may take their names.
    for name in ["startup", "anonymous"] {
        let err = load(&format!(
            "version: 1\ncredentials:\n  tokens:\n    - {{ name: {name}, sha256: \"{SHA}\" }}\nrules: [{{ action: allow }}]\n"
        ))
        .unwrap_err();
        assert!(
            err.starts_with("team.yaml:4:15: credentials.tokens[0].name: token name"),
            "{err}"
        );
        assert!(err.contains("is reserved"), "{err}");
    }
    // Forward auth: its users (and, with a groups header, its groups) cannot
    // be known in advance, so any name is taken.
    load(&format!(
        "version: 1\ncredentials:\n  forward_auth: {{ user_header: Remote-User, secret_header: X-S, secret_sha256: \"{SHA}\", groups_header: Remote-Groups }}\nrules:\n  - {{ users: [erin], groups: [staff], action: allow }}\n"
    ))
    .unwrap();
    let err = load(&format!(
        "version: 1\ncredentials:\n  forward_auth: {{ user_header: Remote-User, secret_header: X-S, secret_sha256: \"{SHA}\" }}\nrules:\n  - {{ users: [erin], groups: [staff], action: allow }}\n"
    ))
    .unwrap_err();
    assert!(err.contains("rules[0].groups[0]"), "{err}");
}

fn dashgate(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dashgate"))
        .args(args)
        .env_remove("DASHGATE_TOKEN")
        .env_remove("HERMES_DASHBOARD_SESSION_TOKEN")
        .output()
        .expect("run dashgate")
}

/// `dashgate policy explain FILE --from 127.0.0.1 ARGS…`.
fn explain(file: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["policy", "explain", file, "--from", "127.0.0.1"];
    all.extend_from_slice(args);
    dashgate(&all)
}

/// What [`explain`] prints, which must exit 0 (a refusal explained is not
/// an error).
fn explained(file: &str, args: &[&str]) -> String {
    let out = explain(file, args);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{args:?}: {text}");
    text
}

#[test]
fn policy_check_and_explain_speak_of_subjects() {
    let dir = std::env::temp_dir().join(format!("dashgate-subjects-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        format!("version: 1\ncredentials:\n  tokens: [{{ name: ana, sha256: \"{SHA}\", groups: [ops] }}]\nrules:\n  - {{ groups: [opps], action: allow }}\n"),
    )
    .unwrap();
    let out = dashgate(&["policy", "check", bad.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.yaml:5:16: rules[0].groups[0]: no credential is in group \"opps\""),
        "{err}"
    );

    let good = dir.join("team.yaml");
    std::fs::write(&good, team()).unwrap();
    let f = good.to_str().unwrap();
    let text = explained(f, &["--path", "/g", "--user", "vic"]);
    assert!(
        text.contains("ops only [authenticate] (file): missed: groups [ops]: vic (groups [viewers]) not named"),
        "{text}"
    );
    assert!(
        text.ends_with("decision: deny (rule: fallback)\n"),
        "{text}"
    );
    let text = explained(f, &["--path", "/r", "--user", "vic"]);
    assert!(
        text.contains("viewers read [authenticate] (file): matched: groups [viewers]: vic (groups [viewers]) named (access: read)"),
        "{text}"
    );
    assert!(
        text.contains("verdict: allowed as token vic (groups viewers), read-only"),
        "{text}"
    );
    let text = explained(f, &["--path", "/r", "--method", "POST", "--token", "test"]);
    // All three tokens of the table share one hash: the first, ana, wins.
    assert!(text.contains("credential: token ana"), "{text}");
    let text = explained(f, &["--path", "/u"]);
    assert!(
        text.contains("no credential (anonymous: sign in, 401)"),
        "{text}"
    );
    assert!(
        text.contains("verdict: refused 401 no_credential"),
        "{text}"
    );
    let out = explain(f, &["--user", "nobody"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = dashgate(&["policy", "schema"]);
    let schema = String::from_utf8_lossy(&out.stdout);
    for key in [
        "\"users\"",
        "\"groups\"",
        "\"access\"",
        "\"see_all\"",
        "\"groups_header\"",
    ] {
        assert!(schema.contains(key), "schema lacks {key}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
