//! Every example runs clean under check mode: each example binary is run
//! with `LOSSGRAPH_CHECK=1` and must exit successfully without printing a
//! single `lossgraph check:` warning (docs/checks.md).
//!
//! The binaries are the ones `cargo test` builds next to this test (in
//! `target/<profile>/examples/`); `cargo test --test examples_check` alone
//! does not build them, so build them first with `cargo build --examples`
//! (the test says so when one is missing).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The examples: every `examples/*.rs`.
fn example_names() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("the examples folder")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

/// `target/<profile>/examples/`, from this test's own path
/// (`target/<profile>/deps/examples_check-…`).
fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    profile.join("examples")
}

#[test]
fn every_example_runs_clean_under_check_mode() {
    let dir = examples_dir();
    let names = example_names();
    assert!(names.len() >= 9, "examples found: {names:?}");
    let mut dirty = Vec::new();
    for name in &names {
        let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
        assert!(
            bin.exists(),
            "{} is missing: build the examples first (cargo build --examples)",
            bin.display()
        );
        let out = Command::new(&bin)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("LOSSGRAPH_CHECK", "1")
            .output()
            .expect("the example runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name} failed:\n{stderr}");
        let warnings: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("lossgraph check:"))
            .collect();
        if !warnings.is_empty() {
            dirty.push(format!("{name}:\n  {}", warnings.join("\n  ")));
        }
    }
    assert!(
        dirty.is_empty(),
        "warnings under check mode:\n{}",
        dirty.join("\n")
    );
}
