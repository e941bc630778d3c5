//! The `lossgraph` command line: gradcheck any op from the shell, run
//! conformance cases, benchmark fused against naive ops, draw losses and
//! their gradients.
//!
//! The binary (`src/bin/lossgraph/main.rs`) is `Cli::parse()` followed by
//! [`run`]; the parser and the commands live here, in the library, so that
//! the command line is one more door the fuzz harnesses and tests can drive
//! in process ([`crate::doors::cli_args`]).
//!
//! `bench`'s memory column reads the counters of [`alloc::CountingAlloc`];
//! they count only where a program installs it as its global allocator, as
//! the binary does. Elsewhere the memory figures read 0.

pub mod alloc;
mod bench;
mod gradcheck;
mod plot;

use clap::{Parser, Subcommand};

/// Exit code of a command that did what it was asked.
pub const SUCCESS: u8 = 0;
/// Exit code of a command whose check failed (a gradient, a case).
pub const FAILURE: u8 = 1;
/// Exit code of a command given bad arguments or unreadable input.
pub const USAGE: u8 = 2;

/// lossgraph: every loss function is a graph op.
#[derive(Parser)]
#[command(name = "lossgraph", version, about, long_about = None)]
pub struct Cli {
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

/// What a parsed command line asks for, for callers that must decide
/// whether to run it (the fuzz harness runs the cheap commands only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// `lossgraph gradcheck`.
    Gradcheck,
    /// `lossgraph conformance`.
    Conformance,
    /// `lossgraph bench` (seconds to minutes).
    Bench,
    /// `lossgraph plot` (writes a file).
    Plot,
}

impl Cli {
    /// Which command this command line runs.
    pub fn kind(&self) -> CommandKind {
        match self.command {
            Command::Gradcheck(_) => CommandKind::Gradcheck,
            Command::Conformance(_) => CommandKind::Conformance,
            Command::Bench(_) => CommandKind::Bench,
            Command::Plot(_) => CommandKind::Plot,
        }
    }
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

fn conformance(args: ConformanceArgs) -> u8 {
    use crate::losses::conformance::{load_dir, print_report, run_all};
    let dir = args.dir.unwrap_or_else(|| {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("crates/losses/tests/conformance")
    });
    let cases = match load_dir(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lossgraph conformance: {e}");
            return USAGE;
        }
    };
    if print_report(&run_all(&cases)) {
        SUCCESS
    } else {
        FAILURE
    }
}

/// Run a parsed command line; its messages go to stdout and stderr, and the
/// returned exit code says how it went ([`SUCCESS`], [`FAILURE`] or
/// [`USAGE`]).
pub fn run(cli: Cli) -> u8 {
    match cli.command {
        Command::Gradcheck(a) => gradcheck::run(a),
        Command::Conformance(a) => conformance(a),
        Command::Bench(a) => bench::run(a),
        Command::Plot(a) => plot::run(a),
    }
}
