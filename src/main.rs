//! The `dashgate` binary: parse the command line, set up logging, hand over
//! to the library. Everything of substance lives in `dashgate::`.

fn main() {
    std::process::exit(dashgate::cli::main());
}

/// mimalloc rather than the system allocator: a request allocates a few
/// dozen small objects on one core and frees most of them on the same one,
/// which a per-thread allocator serves without locks (about a fifth fewer
/// instructions per `GET /api/status`, see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
