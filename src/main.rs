//! `tessera`: parse the command line and hand over to the library.

/// mimalloc instead of glibc malloc: under load the server allocates many
/// small short-lived buffers from two worker threads, and glibc's arenas
/// cost about a tenth of the CPU in profiles (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tessera::cli::run()
}
