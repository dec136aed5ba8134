//! The `dashgate` binary: parse the command line, set up logging, hand over
//! to the library. Everything of substance lives in `dashgate::`.

fn main() {
    std::process::exit(dashgate::cli::main());
}

/// mimalloc rather than the system allocator: a request allocates a few
/// dozen small objects on one core and frees most of them on the same one,
/// which a per-thread allocator serves without locks (about a fifth fewer
/// instructions per `GET /api/status`, see docs/benchmarks.md). Asked for
/// plain blocks where those are aligned enough (`dashgate::alloc`).
#[global_allocator]
static ALLOCATOR: dashgate::alloc::Allocator = dashgate::alloc::Allocator;
