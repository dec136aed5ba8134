//! Reloading the policy without a restart.
//!
//! The new file is compiled completely before anything changes; a broken
//! file leaves the old policy serving, is logged with its line and column and
//! announced as `policy.reload_failed`. After a successful swap every open
//! WebSocket is decided again with the facts of its upgrade and closed with
//! 4403 (reason: the rule) if the new policy refuses it; before that, the
//! sign-in sessions whose credential the new policy removed or changed (or
//! that are older than its `session_ttl`) end, and their sockets close with
//! 4401.
//!
//! Reading and compiling run on tokio's blocking pool, never on the
//! workers that serve requests (SPEC §8): a file of a megabyte takes a
//! while to compile, and the server answers meanwhile. One reload runs at a
//! time, so two triggers at once cannot swap in the older file last.

use sha2::{Digest, Sha256};

use crate::cli::serve::load_policy;
use crate::gate::still_allowed;
use crate::policy::CompiledPolicy;
use crate::server::conns::Close;
use crate::state::{AppState, PolicySource};

/// Taken for the whole of a reload. It holds what the last reload read
/// (SHA-256 of the file's bytes, or of the error that reading it gave): the
/// same content seen again by the watcher is no change, so a broken file is
/// reported once, however often something touches it.
static ONE_AT_A_TIME: tokio::sync::Mutex<Option<[u8; 32]>> = tokio::sync::Mutex::const_new(None);

/// Reload from the policy's source; `why` names the trigger for the log.
/// Returns whether the new policy is in force.
pub async fn reload(state: &AppState, why: &str) -> bool {
    run(state, why, true).await
}

/// What reading the source gave.
enum Read {
    /// The same bytes as the last reload read, or as the policy in force.
    Unchanged,
    Loaded(Result<Box<CompiledPolicy>, String>),
}

/// Read and compile the source on tokio's blocking pool; unless `always`,
/// stop before compiling content that was seen already.
async fn run(state: &AppState, why: &str, always: bool) -> bool {
    let mut last = ONE_AT_A_TIME.lock().await;
    let source = state.config.policy_source.clone();
    let ctx = state.config.policy_context.clone();
    let in_force = state.policy().compiled.summary().sha256;
    let before = *last;
    tracing::debug!(trigger = why, "reading the policy");
    let task = tokio::task::spawn_blocking(move || {
        let PolicySource::File(path) = &source else {
            return (Read::Loaded(load_policy(&source, &ctx).map(Box::new)), None);
        };
        let (bytes, seen) = match CompiledPolicy::read_file(path) {
            Ok(b) => {
                let seen: [u8; 32] = Sha256::digest(&b).into();
                (Ok(b), seen)
            }
            Err(e) => {
                let e = e.to_string();
                let seen: [u8; 32] = Sha256::digest(e.as_bytes()).into();
                (Err(e), seen)
            }
        };
        if !always && (before == Some(seen) || hex::encode(seen) == in_force) {
            return (Read::Unchanged, Some(seen));
        }
        let name = path.display().to_string();
        let loaded = bytes
            .and_then(|b| CompiledPolicy::from_bytes(&b, &name, &ctx).map_err(|e| e.to_string()));
        (Read::Loaded(loaded.map(Box::new)), Some(seen))
    });
    let (read, seen) = task.await.unwrap_or_else(|e| {
        let e = format!("the policy loader stopped: {e}");
        (Read::Loaded(Err(e)), None)
    });
    if seen.is_some() {
        *last = seen;
    }
    match read {
        Read::Unchanged => false,
        Read::Loaded(loaded) => apply(state, why, loaded.map(|p| *p)),
    }
}

/// Put a loaded policy in force, or report why it was not.
fn apply(state: &AppState, why: &str, loaded: Result<CompiledPolicy, String>) -> bool {
    match loaded {
        Err(e) => {
            state.metrics.reload_failures.inc();
            tracing::error!(trigger = why, error = %e, "policy reload failed; the old policy stays in force");
            state.hub.server_event(
                "policy.reload_failed",
                serde_json::json!({ "error": e, "trigger": why }),
            );
            false
        }
        Ok(policy) => {
            let summary = policy.summary();
            state.swap_policy(policy);
            state.metrics.reloads.inc();
            let live = state.policy();
            let (sessions_ended, signed_out) =
                crate::routes::auth::end_stale_sessions(state, &live.compiled);
            // A socket the new policy refuses closes with 4403 and the rule;
            // one that lost write access too (it reconnects read-only:
            // never downgraded silently), and a chat viewer whose groups no
            // longer let it see another's session.
            let refused = state.conns.recheck_watching(|access, watching| {
                match still_allowed(state, &live.compiled, access) {
                    Err(reason) => Some(Close::new(4403, reason)),
                    Ok(groups) => match watching {
                        Some(owner)
                            if owner != access.owner()
                                && !live.compiled.sees_all_sessions(&groups) =>
                        {
                            Some(Close::new(4403, "chat.see_all no longer names your groups"))
                        }
                        _ => None,
                    },
                }
            });
            let closed = signed_out + refused;
            tracing::info!(trigger = why, source = %summary.source, rules = summary.rules, sockets_closed = closed, sessions_ended, "policy reloaded");
            state.hub.server_event(
                "policy.reloaded",
                serde_json::json!({
                    "source": summary.source,
                    "rules": summary.rules,
                    "sha256": summary.sha256,
                    "sockets_closed": closed,
                    "sessions_ended": sessions_ended,
                    "trigger": why,
                }),
            );
            true
        }
    }
}

/// Quiet time after the last change before a reload: editors write a file
/// in several steps (truncate + write, or write a temp file + rename).
pub const DEBOUNCE: std::time::Duration = std::time::Duration::from_millis(150);

/// Watch the policy file (when the policy came from one) and reload when its
/// content changes. The folder is watched, not the file, so an editor that
/// replaces the file by renaming a new one over it is seen too. Reads of the
/// file (access events) are no change: the reload's own read of a broken
/// file used to wake the watcher again, and report it again, forever. The
/// returned watcher must be kept alive.
pub fn watch(state: &AppState) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};

    let crate::state::PolicySource::File(path) = &state.config.policy_source else {
        return None;
    };
    let path = std::path::absolute(path).unwrap_or_else(|_| path.clone());
    let dir = path.parent()?.to_path_buf();
    let name = path.file_name()?.to_os_string();
    // One pending change is enough: the reload reads the file afresh.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev {
            if !matches!(ev.kind, notify::EventKind::Access(_))
                && ev
                    .paths
                    .iter()
                    .any(|p| p.file_name() == Some(name.as_os_str()))
            {
                let _ = tx.try_send(());
            }
        }
    })
    .map_err(|e| tracing::warn!(error = %e, "cannot watch the policy file; SIGHUP still reloads"))
    .ok()?;
    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the policy folder; SIGHUP still reloads");
        return None;
    }
    let state: AppState = *state;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            run(&state, "file changed", false).await;
        }
    });
    Some(watcher)
}
