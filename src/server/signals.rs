//! Unix signals: SIGTERM/SIGINT shut down, SIGHUP reloads the policy
//! and the TLS pair.

use tokio::signal::unix::{signal, SignalKind};

use crate::state::AppState;

/// Install the handlers; the returned future resolves on SIGTERM or SIGINT.
pub fn install(state: AppState) -> impl std::future::Future<Output = ()> + Send {
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            crate::server::reload::reload(&state, "SIGHUP").await;
            crate::server::tls::reload(&state, "SIGHUP", false);
        }
    });
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
