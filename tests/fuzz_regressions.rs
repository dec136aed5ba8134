//! Replays every input kept in `fuzz/corpus/regressions/TARGET/` through
//! the function its cargo-fuzz target calls (`fuzz/checks.rs`, shared), on
//! stable Rust and without cargo-fuzz, so `make test` keeps each crash the
//! fuzzer found fixed (docs/fuzzing.md). A target whose folder is empty or
//! missing fails: a replay that runs nothing cannot fail.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus/regressions")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no inputs in {}", dir.display());
    for file in files {
        let data = std::fs::read(&file).expect("a kept input");
        let caught = std::panic::catch_unwind(|| check(&data));
        assert!(caught.is_ok(), "{target}: {} fails", file.display());
    }
}

#[test]
fn policy_load_inputs() {
    replay("policy_load", checks::policy_load);
}

#[test]
fn gate_read_inputs() {
    replay("gate_read", checks::gate_read);
}

#[test]
fn client_ip_inputs() {
    replay("client_ip", checks::client_ip);
}

#[test]
fn chat_control_inputs() {
    replay("chat_control", checks::chat_control);
}
