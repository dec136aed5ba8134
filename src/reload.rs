//! Reloading the policy without a restart.
//!
//! The new file is compiled completely before anything changes; a broken
//! file leaves the old policy serving, is logged with its line and column and
//! announced as `policy.reload_failed`. After a successful swap every open
//! WebSocket is decided again with the facts of its upgrade and closed with
//! 4403 (reason: the rule) if the new policy refuses it.

use crate::conns::Close;
use crate::gate::redecide;
use crate::serve::load_policy;
use crate::state::AppState;

/// Reload from the policy's source; `why` names the trigger for the log.
/// Returns whether the new policy is in force.
pub fn reload(state: &AppState, why: &str) -> bool {
    let source = &state.config.policy_source;
    match load_policy(source, state.config.bind.ip()) {
        Err(e) => {
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
            let live = state.policy();
            let closed = state.conns.recheck(|access| {
                let d = redecide(state, &live.compiled, access);
                match d.verdict {
                    Ok(_) => None,
                    Err(reason) => {
                        let rule = d.rule.as_deref().unwrap_or(reason.as_str());
                        Some(Close::new(4403, rule))
                    }
                }
            });
            tracing::info!(trigger = why, source = %summary.source, rules = summary.rules, sockets_closed = closed, "policy reloaded");
            state.hub.server_event(
                "policy.reloaded",
                serde_json::json!({
                    "source": summary.source,
                    "rules": summary.rules,
                    "sha256": summary.sha256,
                    "sockets_closed": closed,
                    "trigger": why,
                }),
            );
            true
        }
    }
}
