//! Shared helpers for the examples: data loading, output folder, progress
//! bars, tables and the closing `result:` line, and simple charts.
//!
//! Each example includes this with `mod common;` (cargo treats
//! `examples/common/` as a module folder, not an example).

#![allow(dead_code)] // each example uses a different subset

use indicatif::{ProgressBar, ProgressStyle};
use lossgraph::prelude::*;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// The repository's `data/` folder.
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// Read a numeric CSV with a header: (column names, rows).
pub fn read_csv(path: &Path) -> Result<(Vec<String>, Vec<Vec<f64>>)> {
    let text =
        std::fs::read_to_string(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let row: std::result::Result<Vec<f64>, _> =
            line.split(',').map(|s| s.trim().parse::<f64>()).collect();
        rows.push(row.map_err(|e| Error::Io(format!("{}:{}: {e}", path.display(), i + 2)))?);
    }
    Ok((header, rows))
}

/// The digits data: pixels scaled to [0, 1] as `[1797, 64]` and labels `[1797]`.
pub fn load_digits() -> Result<(Tensor<f32>, IndexTensor)> {
    let (_, rows) = read_csv(&data_dir().join("digits.csv"))?;
    let n = rows.len();
    let x: Vec<f32> = rows
        .iter()
        .flat_map(|r| r[..64].iter().map(|&v| (v / 16.0) as f32))
        .collect();
    let y: Vec<i64> = rows.iter().map(|r| r[64] as i64).collect();
    Ok((Tensor::from_vec(x, [n, 64])?, Tensor::from_vec(y, [n])?))
}

/// The diabetes data: 10 raw features `[442, 10]` and the target `[442]`.
pub fn load_diabetes() -> Result<(Tensor<f32>, Tensor<f32>)> {
    let (_, rows) = read_csv(&data_dir().join("diabetes.csv"))?;
    let n = rows.len();
    let x: Vec<f32> = rows
        .iter()
        .flat_map(|r| r[..10].iter().map(|&v| v as f32))
        .collect();
    let y: Vec<f32> = rows.iter().map(|r| r[10] as f32).collect();
    Ok((Tensor::from_vec(x, [n, 10])?, Tensor::from_vec(y, [n])?))
}

/// Standardise columns of `[N, D]` with the mean and std of `fit` (train rows).
pub fn standardize(x: &Tensor<f32>, fit: &Tensor<f32>) -> Result<Tensor<f32>> {
    let mean = fit.mean(0, true)?;
    let std = fit
        .sub(&mean)?
        .square()
        .mean(0, true)?
        .sqrt()
        .add_scalar(1e-8);
    Ok(x.sub(&mean)?.div(&std)?)
}

/// `target/examples/NAME/`, created, where an example writes its pictures.
pub fn out_dir(name: &str) -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/examples")
        .join(name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
    Ok(dir)
}

/// A progress bar over `n` steps with a label.
pub fn progress(n: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(n);
    let style = ProgressStyle::with_template("{prefix:>12} {bar:40} {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar
}

/// Print a table with a header row and aligned columns.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let widths: Vec<usize> = (0..headers.len())
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.len()))
                .max()
                .unwrap_or(0)
                .max(headers[c].len())
        })
        .collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    println!("{}", line(headers.to_vec()));
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("  ")
    );
    for r in rows {
        println!("{}", line(r.iter().map(|s| s.as_str()).collect()));
    }
}

/// Print the closing line `result: key=value ...` that scripts read.
pub fn print_result(pairs: &[(&str, String)]) {
    let kv: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("result: {}", kv.join(" "));
}

/// One named series of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
        }
    }
}

fn bounds(series: &[Series]) -> ((f64, f64), (f64, f64)) {
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite());
    let (mut x0, mut x1, mut y0, mut y1) = (
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
    );
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        return ((0.0, 1.0), (0.0, 1.0));
    }
    let pad = |a: f64, b: f64| {
        if a == b {
            (a - 1.0, b + 1.0)
        } else {
            (a - 0.05 * (b - a), b + 0.05 * (b - a))
        }
    };
    (pad(x0, x1), pad(y0, y1))
}

/// Draw a chart's legend at `position`: the examples' one style, a white
/// box (90% opaque) with a black border. The error is plotters' message.
pub fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    ch: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> std::result::Result<(), String> {
    ch.configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

/// Draw series as lines (or points when `scatter`) into a PNG.
pub fn chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    scatter: bool,
) -> Result<()> {
    let err = |e: String| Error::Io(format!("{}: {e}", path.display()));
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let ((x0, x1), (y0, y1)) = bounds(series);
    let mut ch = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| err(e.to_string()))?;
    ch.configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    for (i, s) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        let anno = if scatter {
            ch.draw_series(pts.iter().map(|&p| Circle::new(p, 2, color.filled())))
                .map_err(|e| err(e.to_string()))?
        } else {
            ch.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
        };
        anno.label(s.name.clone()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
        });
    }
    ch.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
