//! The `dashgate` binary: parse the command line, set up logging, hand over
//! to the library. Everything of substance lives in `dashgate::`.

fn main() {
    std::process::exit(dashgate::cli::main());
}
