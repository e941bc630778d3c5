//! `lossgraph`: gradcheck any op from the shell, run conformance cases,
//! benchmark fused against naive ops, draw losses and their gradients. The
//! commands live in the library ([`lossgraph::cli`]); this is the entry point.

use clap::Parser;
use lossgraph::cli::{alloc::CountingAlloc, run, Cli};
use std::process::ExitCode;

/// Counts heap bytes, for `bench`'s memory column.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() -> ExitCode {
    ExitCode::from(run(Cli::parse()))
}
