//! A server started under `nohup` (SIGHUP ignored, which every child
//! inherits across exec unless told otherwise) still hangs up its chat
//! programs: a kill ends them with SIGHUP, not with the SIGKILL after the
//! grace time. Its own file: ignoring SIGHUP is process-wide.

use std::sync::Arc;
use std::time::Duration;

use dashgate::chat::{ChatConfig, EventSink, Registry, ViewerEvent};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_hangs_up_a_program_whose_server_ignores_sighup() {
    // SAFETY: SIG_IGN installs no handler; nothing else in this test
    // binary depends on SIGHUP.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    let on_event: EventSink = Arc::new(|_: &str, _| {});
    let reg = Registry::new(ChatConfig::new(vec!["/bin/sh".to_string()]), on_event);
    let s = reg.create(80, 24).unwrap();
    let mut v = s.attach().unwrap();
    assert!(reg.kill(s.id()));
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match v.recv().await {
                Some(ViewerEvent::Output(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the session ended");
    assert_eq!(
        end,
        Some(ViewerEvent::Exit {
            code: None,
            signal: Some(1)
        }),
        "ended by SIGHUP, not by the SIGKILL after the grace time"
    );
}
