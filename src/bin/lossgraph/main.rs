//! `lossgraph`: gradcheck any op from the shell, run conformance cases,
//! benchmark fused against naive ops, draw losses and their gradients.

mod alloc;
mod bench;
mod gradcheck;
mod plot;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[global_allocator]
static ALLOC: alloc::CountingAlloc = alloc::CountingAlloc;

/// lossgraph: every loss function is a graph op.
#[derive(Parser)]
#[command(name = "lossgraph", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Gradcheck(gradcheck::Args),
    Conformance(ConformanceArgs),
    Bench(bench::Args),
    Plot(plot::Args),
}

/// Run conformance case files and print `conformance: N passed, M failed`.
///
/// Runs every case of every `*.json` file in DIR (default: the vendored cases
/// in crates/losses/tests/conformance) in every dtype it lists. Exits
/// non-zero if any case fails.
///
/// Examples:
///   lossgraph conformance
///   lossgraph conformance path/to/more/cases
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
struct ConformanceArgs {
    /// Folder of case files.
    dir: Option<std::path::PathBuf>,
}

fn conformance(args: ConformanceArgs) -> ExitCode {
    use lossgraph::losses::conformance::{load_dir, print_report, run_all};
    let dir = args.dir.unwrap_or_else(|| {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/losses/tests/conformance")
    });
    let cases = match load_dir(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lossgraph conformance: {e}");
            return ExitCode::from(2);
        }
    };
    if print_report(&run_all(&cases)) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Gradcheck(a) => gradcheck::run(a),
        Command::Conformance(a) => conformance(a),
        Command::Bench(a) => bench::run(a),
        Command::Plot(a) => plot::run(a),
    }
}
