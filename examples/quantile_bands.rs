//! Quantile bands: one network, three quantile heads, an 80 % prediction band.
//!
//! Heteroscedastic 1-D data: `y = sin(2x) + 0.5x + σ(x)·ε` with
//! `x ~ U(0, 4)`, `ε ~ N(0, 1)` and a noise scale growing with x,
//! `σ(x) = 0.1 + 0.25x` (0.1 at the left edge, 1.1 at the right). A model
//! fitted with mse would give the conditional mean and say nothing about how
//! wide the spread is; a band of constant width would be too wide on the left
//! and too narrow on the right.
//!
//! Instead one MLP (1 → 64 → 64 → 3, tanh) has three outputs, trained
//! together by a single call of the fused `quantile` (pinball) loss with
//! `taus = [0.1, 0.5, 0.9]`: `pred [N, 3]`, `target [N]`, column q scored
//! with τ_q. The pinball loss charges τ per unit of under-prediction and
//! 1 − τ per unit of over-prediction, so its minimiser is the conditional
//! τ-quantile: the outer columns bound an 80 % band whose width follows the
//! noise, and the middle column is the conditional median.
//!
//! Checked on 2000 held-out points: the empirical coverage of
//! `[q0.1, q0.9]` (should be ≈ 0.80), coverage in three x-ranges (a band of
//! constant width would over-cover on the left and under-cover on the
//! right), and the crossing rate — the fraction of points where
//! `q0.1 > q0.5` or `q0.5 > q0.9`. Nothing in the loss keeps the three
//! columns ordered; a well-trained model rarely crosses, and where it does
//! the fix is post-hoc sorting or a monotone parameterisation. All numbers
//! come from one seeded run (data, initialisation and batches) and are the
//! same on every run.
//!
//! `cargo run --release --example quantile_bands`

mod common;

use common::{legend, out_dir, print_result, print_table, progress};
use lossgraph::losses::{quantile, QuantileOptions};
use lossgraph::nn::{
    select_rows, Activation, Adam, AdamOptions, Batches, CosineSchedule, Init, Mlp, Module,
    Optimizer, ParamStore,
};
use lossgraph::prelude::*;
use plotters::prelude::*;
use std::path::Path;

const N_TRAIN: usize = 2000;
const N_TEST: usize = 2000;
const TAUS: [f64; 3] = [0.1, 0.5, 0.9];
const EPOCHS: u64 = 150;
const BATCH: usize = 128;
const LR: f64 = 3e-3;
/// z-score of the 90 % quantile of N(0, 1), for the true quantile curves.
const Z90: f64 = 1.281_551_565_545;

/// The noise-free curve and the noise scale.
fn mean_curve(x: f64) -> f64 {
    (2.0 * x).sin() + 0.5 * x
}
fn noise_scale(x: f64) -> f64 {
    0.1 + 0.25 * x
}

/// `n` points `(x [n, 1], y [n])` of the heteroscedastic data.
fn sample(n: usize, seed: u64) -> Result<(Tensor<f32>, Tensor<f32>)> {
    let x = Tensor::<f32>::rand_uniform([n, 1], 0.0, 4.0, seed)?;
    let eps = Tensor::<f32>::randn([n], 0.0, 1.0, seed + 1)?.to_vec();
    let y: Vec<f32> = x
        .to_vec()
        .iter()
        .zip(&eps)
        .map(|(&x, &e)| (mean_curve(x as f64) + noise_scale(x as f64) * e as f64) as f32)
        .collect();
    Ok((x, Tensor::from_vec(y, [n])?))
}

/// Network input: x rescaled from [0, 4] to [−1, 1].
fn input(x: &Tensor<f32>) -> Tensor<f32> {
    x.mul_scalar(0.5).add_scalar(-1.0)
}

fn main() -> Result<()> {
    let (x_train, y_train) = sample(N_TRAIN, 10)?;
    let (x_test, y_test) = sample(N_TEST, 20)?;
    println!(
        "data: y = sin(2x) + 0.5x + (0.1 + 0.25x)·N(0, 1), x ~ U(0, 4); {N_TRAIN} train, {N_TEST} held-out"
    );

    // ---- one MLP with three outputs, one quantile loss over all of them ----
    let mut params = ParamStore::<f32>::new();
    let act = Activation::Tanh;
    let mlp = Mlp::new(
        &mut params,
        "mlp",
        &[1, 64, 64, 3],
        act,
        Init::xavier_uniform(),
        0,
    )?;
    let opts = QuantileOptions {
        taus: Some(TAUS.to_vec()),
        ..Default::default()
    };
    let batches = Batches::new(N_TRAIN, BATCH, 0)?;
    let total = EPOCHS as usize * batches.len();
    let schedule = CosineSchedule::new(LR, 1e-5, total / 20, total)?;
    let mut opt = Adam::new(AdamOptions {
        lr: LR,
        ..Default::default()
    })?;
    let x_in = input(&x_train);

    let bar = progress(total as u64, "quantile");
    let mut step = 0;
    for epoch in 0..EPOCHS {
        for rows in batches.epoch(epoch) {
            let (xb, yb) = (select_rows(&x_in, &rows)?, select_rows(&y_train, &rows)?);
            let (loss, grads) = params.value_and_grad(|p| {
                let pred = mlp.forward(p, &p.tape().constant(xb))?; // [B, 3]
                quantile(&pred, &p.tape().constant(yb), &opts) // target [B]
            })?;
            opt.set_lr(schedule.lr(step))?;
            opt.step(&mut params, &grads)?;
            step += 1;
            bar.set_message(format!("pinball {loss:.4}"));
            bar.inc(1);
        }
    }
    bar.finish();

    // ---- held-out checks ----
    let predict = |x: &Tensor<f32>| -> Result<Vec<[f64; 3]>> {
        let tape = Tape::new();
        let out = tape.no_grad(|| mlp.forward(&params.bind(&tape), &tape.constant(input(x))))?;
        Ok(out
            .value()
            .to_vec()
            .chunks(3)
            .map(|q| [q[0] as f64, q[1] as f64, q[2] as f64])
            .collect())
    };
    let q = predict(&x_test)?;
    let (xs, ys): (Vec<f64>, Vec<f64>) = (
        x_test.to_vec().iter().map(|&v| v as f64).collect(),
        y_test.to_vec().iter().map(|&v| v as f64).collect(),
    );
    let inside = |i: usize| q[i][0] <= ys[i] && ys[i] <= q[i][2];
    let coverage = (0..N_TEST).filter(|&i| inside(i)).count() as f64 / N_TEST as f64;
    let crossing = (0..N_TEST)
        .filter(|&i| q[i][0] > q[i][1] || q[i][1] > q[i][2])
        .count();
    let crossing_rate = crossing as f64 / N_TEST as f64;

    // per quantile: share of held-out targets below it (should be ≈ τ)
    println!();
    let rows: Vec<Vec<String>> = TAUS
        .iter()
        .enumerate()
        .map(|(k, &tau)| {
            let below = (0..N_TEST).filter(|&i| ys[i] <= q[i][k]).count() as f64 / N_TEST as f64;
            vec![
                format!("q{tau}"),
                format!("{tau:.2}"),
                format!("{below:.4}"),
            ]
        })
        .collect();
    print_table(&["head", "tau", "held-out share of y below"], &rows);

    // coverage and width in three x-ranges: the band adapts to the noise
    println!();
    let mut rows = Vec::new();
    for (lo, hi) in [(0.0, 4.0 / 3.0), (4.0 / 3.0, 8.0 / 3.0), (8.0 / 3.0, 4.0)] {
        let idx: Vec<usize> = (0..N_TEST).filter(|&i| xs[i] >= lo && xs[i] < hi).collect();
        let cov = idx.iter().filter(|&&i| inside(i)).count() as f64 / idx.len() as f64;
        let width = idx.iter().map(|&i| q[i][2] - q[i][0]).sum::<f64>() / idx.len() as f64;
        let true_width = idx
            .iter()
            .map(|&i| 2.0 * Z90 * noise_scale(xs[i]))
            .sum::<f64>()
            / idx.len() as f64;
        rows.push(vec![
            format!("[{lo:.2}, {hi:.2})"),
            idx.len().to_string(),
            format!("{cov:.4}"),
            format!("{width:.3}"),
            format!("{true_width:.3}"),
        ]);
    }
    rows.push(vec![
        "all".into(),
        N_TEST.to_string(),
        format!("{coverage:.4}"),
        format!(
            "{:.3}",
            (0..N_TEST).map(|i| q[i][2] - q[i][0]).sum::<f64>() / N_TEST as f64
        ),
        format!(
            "{:.3}",
            xs.iter().map(|&x| 2.0 * Z90 * noise_scale(x)).sum::<f64>() / N_TEST as f64
        ),
    ]);
    print_table(
        &[
            "x range",
            "points",
            "coverage of [q0.1, q0.9]",
            "mean width",
            "true width",
        ],
        &rows,
    );
    println!(
        "\ncrossing rate (q0.1 > q0.5 or q0.5 > q0.9): {crossing} of {N_TEST} held-out points"
    );

    // ---- picture: held-out data, the fitted band and the true quantiles ----
    let grid: Vec<f64> = (0..=400).map(|i| i as f64 / 100.0).collect();
    let grid_t = Tensor::from_vec(grid.iter().map(|&x| x as f32).collect(), [grid.len(), 1])?;
    let curves = predict(&grid_t)?;
    let path = out_dir("quantile_bands")?.join("bands.png");
    draw(&path, &xs, &ys, &grid, &curves, coverage)?;
    println!("picture: {}", path.display());

    print_result(&[
        ("coverage", format!("{coverage:.4}")),
        ("crossing_rate", format!("{crossing_rate:.4}")),
    ]);
    Ok(())
}

/// Held-out points, the fitted 80 % band (shaded) and median, and the true
/// 10 %/50 %/90 % quantiles dashed.
fn draw(
    path: &Path,
    xs: &[f64],
    ys: &[f64],
    grid: &[f64],
    q: &[[f64; 3]],
    coverage: f64,
) -> Result<()> {
    let err = |e: String| Error::Io(format!("{}: {e}", path.display()));
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let mut ch = ChartBuilder::on(&root)
        .caption(
            format!("Quantile heads (0.1, 0.5, 0.9) on heteroscedastic data: held-out coverage {coverage:.3}"),
            ("sans-serif", 22),
        )
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0f64..4.0, -2.0f64..6.0)
        .map_err(|e| err(e.to_string()))?;
    ch.configure_mesh()
        .x_desc("x")
        .y_desc("y")
        .draw()
        .map_err(|e| err(e.to_string()))?;

    let blue = RGBColor(31, 119, 180);
    let orange = RGBColor(255, 127, 14);
    // the fitted band as one polygon: up along q0.9, back along q0.1
    let band: Vec<(f64, f64)> = grid
        .iter()
        .zip(q)
        .map(|(&x, q)| (x, q[2]))
        .chain(grid.iter().zip(q).rev().map(|(&x, q)| (x, q[0])))
        .collect();
    ch.draw_series(std::iter::once(Polygon::new(band, blue.mix(0.18).filled())))
        .map_err(|e| err(e.to_string()))?
        .label("fitted [q0.1, q0.9] band")
        .legend(move |(x, y)| {
            Rectangle::new([(x, y - 5), (x + 18, y + 5)], blue.mix(0.3).filled())
        });
    ch.draw_series(
        xs.iter()
            .zip(ys)
            .map(|(&x, &y)| Circle::new((x, y), 1, RGBColor(70, 70, 70).mix(0.45).filled())),
    )
    .map_err(|e| err(e.to_string()))?
    .label("held-out data")
    .legend(|(x, y)| Circle::new((x + 9, y), 3, RGBColor(70, 70, 70).filled()));
    for (k, name) in ["q0.1", "q0.5 (median)", "q0.9"].iter().enumerate() {
        let color = if k == 1 { orange } else { blue };
        let pts: Vec<(f64, f64)> = grid.iter().zip(q).map(|(&x, q)| (x, q[k])).collect();
        let anno = ch
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(e.to_string()))?;
        if k != 2 {
            let label = if k == 0 {
                "fitted q0.1, q0.9".to_string()
            } else {
                format!("fitted {name}")
            };
            anno.label(label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
        }
    }
    for (k, z) in [-Z90, 0.0, Z90].into_iter().enumerate() {
        let pts: Vec<(f64, f64)> = grid
            .iter()
            .map(|&x| (x, mean_curve(x) + z * noise_scale(x)))
            .collect();
        let anno = ch
            .draw_series(DashedLineSeries::new(
                pts,
                6,
                4,
                BLACK.mix(0.7).stroke_width(1),
            ))
            .map_err(|e| err(e.to_string()))?;
        if k == 0 {
            anno.label("true quantiles")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.7)));
        }
    }
    legend(&mut ch, SeriesLabelPosition::UpperLeft).map_err(err)?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
