//! DNS rebinding (SPEC §2.3): a web page the user visits resolves its own
//! name to the dashboard and then talks to it as a same-origin page. On a
//! wildcard bind (`0.0.0.0`), the README's own LAN commands, only IP
//! literals, the loopback names and the machine's own names are served by
//! default, and any other name only when the operator lists it
//! (`--allowed-host`, `DASHGATE_ALLOWED_HOSTS`, `allowed_hosts`).
//!
//! Every server here binds 0.0.0.0:0 (or 127.0.0.1:0) and is reached on
//! 127.0.0.1; the name in the Host header is what the browser would send.

mod common;

use std::process::Command;

use common::*;

const LAN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/lan.yaml");

/// A GET of `path` with this Host and a same-host Origin, as a page loaded
/// from `http://HOST/` would send it; status and body.
async fn get_as(s: &Server, path: &str, host: &str) -> (u16, String) {
    let origin = format!("http://{host}");
    let r = http()
        .get(s.url(path))
        .header("host", host)
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A WebSocket upgrade of `path` with this Host and a same-host Origin:
/// 101 when it opened, else the refusal's status and body.
async fn upgrade_as(s: &Server, path: &str, host: &str) -> (u16, String) {
    let origin = format!("http://{host}");
    let headers = [("host", host), ("origin", origin.as_str())];
    match ws_connect_from("127.0.0.1", &s.ws_url(path), &headers).await {
        Ok(_) => (101, String::new()),
        Err(refused) => refused,
    }
}

/// The refusal of `name`: 403 `host_not_allowed`, a message that names the
/// host and says how to allow it.
fn assert_refused(what: &str, name: &str, (status, body): (u16, String)) {
    assert_eq!(status, 403, "{what}: {body}");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: {e}: {body}"));
    assert_eq!(v["reason"], "host_not_allowed", "{what}: {body}");
    let msg = v["error"].as_str().unwrap_or_default();
    assert_eq!(
        msg,
        format!(
            "Host '{name}' is not allowed: add it with --allowed-host {name}, \
             DASHGATE_ALLOWED_HOSTS or allowed_hosts in the policy"
        ),
        "{what}"
    );
}

/// The chat socket and a REST call both refused under `name`.
async fn assert_name_refused(s: &Server, name: &str) {
    let host = format!("{name}:{}", s.addr.port());
    assert_refused(
        &format!("upgrade /api/ws as {host}"),
        name,
        upgrade_as(s, "/api/ws", &host).await,
    );
    assert_refused(
        &format!("GET /api/status as {host}"),
        name,
        get_as(s, "/api/status", &host).await,
    );
}

/// The chat socket and a REST call both served under `host`.
async fn assert_served(s: &Server, host: &str) {
    let (st, body) = upgrade_as(s, "/api/ws", host).await;
    assert_eq!(st, 101, "upgrade /api/ws as {host}: {body}");
    let (st, body) = get_as(s, "/api/status", host).await;
    assert_eq!(st, 200, "GET /api/status as {host}: {body}");
}

/// This machine's host name, as the server finds it (`uname -n`).
fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the kernel's host name")
        .trim()
        .to_ascii_lowercase()
}

fn wildcard() -> Launch {
    launch().host("0.0.0.0").args(["--chat-command", "sh"])
}

/// The attack, in both presets the README shows for a LAN: refused; while
/// the addresses and names a user reaches the machine under still work.
#[tokio::test]
async fn a_rebinding_name_is_refused_on_a_wildcard_bind_in_insecure_and_lan() {
    let name = machine_name();
    for (preset, s) in [
        ("insecure", wildcard().arg("--insecure").start()),
        ("lan", wildcard().policy(LAN).start()),
    ] {
        assert_name_refused(&s, "evil.example").await;
        let port = s.addr.port();
        let mut served = vec![
            format!("127.0.0.1:{port}"),
            format!("127.0.0.2:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        if name != "localhost" {
            served.push(format!("{name}:{port}"));
            served.push(format!("{name}.local:{port}"));
        }
        for host in &served {
            assert_served(&s, host).await;
        }
        // The log says what was refused.
        assert!(
            s.wait_output("host_not_allowed", std::time::Duration::from_secs(5)),
            "{preset}: {}",
            s.output()
        );
    }
}

#[tokio::test]
async fn allowed_host_flags_add_names() {
    let s = wildcard()
        .arg("--insecure")
        .args(["--allowed-host", "nas.lan", "--allowed-host", "*.ts.net"])
        .start();
    let port = s.addr.port();
    assert_served(&s, &format!("nas.lan:{port}")).await;
    assert_served(&s, &format!("mybox.tail1234.ts.net:{port}")).await;
    // Added to the default, not in place of it.
    assert_served(&s, &format!("127.0.0.2:{port}")).await;
    assert_name_refused(&s, "evil.example").await;
    assert_name_refused(&s, "other.lan").await;
}

#[tokio::test]
async fn allowed_hosts_from_the_environment_add_names() {
    let s = wildcard()
        .policy(LAN)
        .env("DASHGATE_ALLOWED_HOSTS", "nas.lan, other.lan,")
        .start();
    let port = s.addr.port();
    assert_served(&s, &format!("nas.lan:{port}")).await;
    assert_served(&s, &format!("other.lan:{port}")).await;
    assert_served(&s, &format!("10.0.0.7:{port}")).await;
    assert_name_refused(&s, "evil.example").await;
}

/// On a loopback bind the default is the loopback names only; a flag adds
/// to that too, and to a policy's own list.
#[tokio::test]
async fn flags_add_to_a_loopback_bind_and_to_a_listed_policy() {
    let s = launch()
        .arg("--insecure")
        .args(["--chat-command", "sh", "--allowed-host", "nas.lan"])
        .start();
    let port = s.addr.port();
    assert_served(&s, &format!("nas.lan:{port}")).await;
    assert_served(&s, &format!("localhost:{port}")).await;
    assert_name_refused(&s, "127.0.0.2").await;
    assert_name_refused(&s, &machine_name()).await;

    let (_dir, file) =
        policy_file("version: 1\nextends: insecure\nallowed_hosts: [\"*.ts.net\"]\n");
    let s = wildcard()
        .policy(&file)
        .env("DASHGATE_ALLOWED_HOSTS", "nas.lan")
        .start();
    let port = s.addr.port();
    assert_served(&s, &format!("mybox.tail1234.ts.net:{port}")).await;
    assert_served(&s, &format!("nas.lan:{port}")).await;
    // A listed set replaces the default: addresses too.
    assert_name_refused(&s, "127.0.0.2").await;
}

#[test]
fn a_malformed_allowed_host_is_a_start_error() {
    for (flag, env) in [
        (Some("nas.lan:9119"), None),
        (None, Some("ok.lan,bad host")),
    ] {
        let mut l = wildcard().arg("--insecure");
        if let Some(f) = flag {
            l = l.args(["--allowed-host", f]);
        }
        if let Some(e) = env {
            l = l.env("DASHGATE_ALLOWED_HOSTS", e);
        }
        let out = l.command().output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag:?} {env:?}: {err}");
        assert!(err.contains("--allowed-host"), "{err}");
        assert!(err.contains("is not a host name"), "{err}");
    }
}

/// A browser navigation gets the same words as an API client.
#[tokio::test]
async fn a_refused_page_says_why_to_a_browser() {
    let s = wildcard().arg("--insecure").start();
    let host = format!("rebind.test:{}", s.addr.port());
    let r = http()
        .get(s.url("/"))
        .header("host", &host)
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    assert_refused(
        "GET / as a page",
        "rebind.test",
        (st, r.text().await.unwrap()),
    );
}

/// `policy explain` decides as the server would: `--bind` and
/// `--allowed-host` (or the variable) give it the server's hosts.
#[test]
fn policy_explain_takes_the_servers_hosts() {
    let explain = |args: &[&str], env: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dashgate"));
        c.args(["policy", "explain", "insecure", "--from", "192.168.1.5"])
            .args(args)
            .env_remove("DASHGATE_ALLOWED_HOSTS");
        if let Some(v) = env {
            c.env("DASHGATE_ALLOWED_HOSTS", v);
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let last = |out: &str| out.lines().last().unwrap_or_default().to_owned();
    let wild = ["--bind", "0.0.0.0", "--host", "nas.lan:9119"];
    let out = explain(&wild, None);
    assert!(out.contains("host_not_allowed"), "{out}");
    assert!(out.contains("any IP address"), "{out}");
    assert_eq!(last(&out), "decision: deny (rule: none)", "{out}");
    let out = explain(&[&wild[..], &["--allowed-host", "nas.lan"]].concat(), None);
    assert_eq!(
        last(&out),
        "decision: allow (rule: everything is allowed)",
        "{out}"
    );
    let out = explain(&wild, Some("other.lan,nas.lan"));
    assert_eq!(
        last(&out),
        "decision: allow (rule: everything is allowed)",
        "{out}"
    );
    let out = explain(&["--bind", "0.0.0.0", "--host", "192.168.1.2:9119"], None);
    assert_eq!(
        last(&out),
        "decision: allow (rule: everything is allowed)",
        "{out}"
    );
    // Without --bind, the server's default bind: loopback names only.
    let out = explain(&["--host", "192.168.1.2:9119"], None);
    assert_eq!(last(&out), "decision: deny (rule: none)", "{out}");
}
