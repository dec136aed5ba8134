//! STUB: `dashgate policy …`, `token`, `hash-password` (policy helper replaces this).
use crate::cli::PolicyCommand;

pub fn main(_cmd: PolicyCommand) -> i32 {
    2
}
pub fn hash_password() -> i32 {
    2
}
pub fn token() -> i32 {
    2
}
