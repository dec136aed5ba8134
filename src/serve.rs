//! `dashgate serve`: turn flags into a config and run the server.
use crate::cli::ServeArgs;

pub fn main(_args: ServeArgs) -> i32 {
    2
}
