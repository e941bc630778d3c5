//! The `lossgraph` command end to end: plot writes real SVG and PNG files,
//! gradcheck and conformance print their summary lines and exit 0,
//! `plot --help` documents every preset, and `bench` runs one op and writes
//! its JSON row.

use std::path::PathBuf;
use std::process::{Command, Output};

fn lossgraph(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lossgraph"))
        .args(args)
        .output()
        .expect("the lossgraph binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_file(&p);
    p
}

/// The `N` of a `PREFIX N passed, M failed` line, when `M` is 0.
fn passed_with_no_failure(text: &str, prefix: &str) -> Option<usize> {
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    let rest = line.strip_prefix(prefix)?.trim();
    let (n, tail) = rest.split_once(" passed, ")?;
    (tail == "0 failed").then(|| n.parse().ok())?
}

#[test]
fn plot_regression_preset_writes_svg_and_png() {
    let svg = tmp("cli-regression.svg");
    let o = lossgraph(&[
        "plot",
        "--preset",
        "regression",
        "--out",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&svg).expect("the svg exists");
    assert!(text.starts_with("<svg"), "not an svg");
    assert!(
        text.len() > 20_000,
        "a 5-curve chart is more than {} bytes",
        text.len()
    );
    // titles, legend and axis labels are text in the svg
    for want in [
        "Regression losses vs the residual",
        "huber delta=1",
        "quantile tau=0.9",
        "∂loss/∂x",
    ] {
        assert!(text.contains(want), "the svg lacks {want:?}");
    }

    let png = tmp("cli-regression.png");
    let o = lossgraph(&[
        "plot",
        "--preset",
        "regression",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&png).expect("the png exists");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        bytes.len() > 20_000,
        "a chart png is more than {} bytes",
        bytes.len()
    );
}

#[test]
fn plot_rejects_bad_requests_with_a_message() {
    let out = tmp("cli-bad.svg");
    let out = out.to_str().unwrap();
    for (args, says) in [
        (vec!["plot", "msee", "--out", out], "unknown op"),
        (
            vec!["plot", "mse", "--against", "logit", "--out", out],
            "cannot be drawn against logit",
        ),
        (
            vec!["plot", "mse", "--opt", "gamma=2", "--out", out],
            "no op accepts it",
        ),
        (vec!["plot", "mse", "--out", "chart.txt"], ".png or .svg"),
        // HI − LO overflows: plotters' tick search never ended on it
        (
            vec!["plot", "mse", "--range=-1e308,1e308", "--out", out],
            "--range",
        ),
        (
            vec!["plot", "mse", "--loss-range=-1e308,1e308", "--out", out],
            "--loss-range",
        ),
        (
            vec![
                "plot",
                "mse",
                "--range=1e16,1.0000000000000002e16",
                "--out",
                out,
            ],
            "--range",
        ),
    ] {
        let o = lossgraph(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Curves whose values reach ±1e308 (the gradient of `mse` at residuals
/// near ±4e307; the loss itself overflows to inf and is left out) still get
/// drawable axes, and the command ends: an axis span that overflowed once
/// sent plotters' tick search into an endless loop (found by the
/// `cli_args` door of tests/doors.rs).
#[test]
fn plot_of_values_near_the_largest_float_ends() {
    let out = tmp("cli-huge.svg");
    let mut child = Command::new(env!("CARGO_BIN_EXE_lossgraph"))
        .args(["plot", "mse", "--range=-4e307,4e307", "--out"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the lossgraph binary runs");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > std::time::Duration::from_secs(120) {
            let _ = child.kill();
            panic!("plot did not end within 120 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success());
    assert!(std::fs::read_to_string(&out).unwrap().contains("<svg"));
}

#[test]
fn gradcheck_huber_passes() {
    let o = lossgraph(&["gradcheck", "huber", "--seed", "1"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    let n = passed_with_no_failure(&text, "gradcheck (f64): ").expect("a summary line");
    assert!(n > 0, "{text}");
}

#[test]
fn conformance_passes() {
    let o = lossgraph(&["conformance"]);
    let text = stdout(&o);
    assert!(o.status.success(), "{text}");
    let n = passed_with_no_failure(&text, "conformance: ").expect("a summary line");
    assert!(n > 0, "{text}");
}

#[test]
fn plot_help_names_every_preset() {
    let o = lossgraph(&["plot", "--help"]);
    assert!(o.status.success());
    let help = stdout(&o);
    for preset in [
        "regression",
        "focal",
        "margins",
        "temperature",
        "reductions",
    ] {
        assert!(
            help.contains(&format!("\n  {preset} ")) || help.contains(&format!("  {preset}  ")),
            "plot --help does not describe the preset {preset}:\n{help}"
        );
    }
    assert!(help.contains("Examples:"));
    assert!(help.contains("--against"));
}

#[test]
fn bench_one_op_writes_its_row_and_names_the_heap_modes() {
    let out = tmp("bench_contrastive.json");
    let o = lossgraph(&[
        "bench",
        "--op",
        "contrastive",
        "--reps",
        "1",
        "--retain-heap",
        "--warm-each",
        "--json",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let header = text.lines().next().unwrap_or_default();
    assert!(header.contains("(--warm-each)"), "{header}");
    // where malloc is not glibc's the mode is refused on stderr instead
    if cfg!(all(target_os = "linux", target_env = "gnu")) {
        assert!(header.contains("(--retain-heap)"), "{header}");
    }
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["op"], "contrastive");
    assert!(row["fused_ms"].as_f64().unwrap() > 0.0);
    // the naive twin keeps its intermediate tensors on the tape
    assert!(row["naive_peak_bytes"].as_u64().unwrap() > row["fused_peak_bytes"].as_u64().unwrap());
}

#[test]
fn bench_rejects_an_unknown_op() {
    let o = lossgraph(&["bench", "--op", "msee", "--huge-pages"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no benchmark for op"));
}
