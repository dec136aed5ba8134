//! Fuzz target `client_ip`: the checks are in `fuzz/checks.rs`, shared with
//! the replay test `tests/fuzz_regressions.rs`.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::client_ip(data));
