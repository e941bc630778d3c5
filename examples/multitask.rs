//! Multitask: one shared trunk, two heads, two losses on scales far apart —
//! and what fixed weights, uncertainty weighting and GradNorm make of it.
//!
//! Data: the 8×8 digits (1797 images, split 75/25, seeded). Two targets per
//! image: its class (10 classes, `cross_entropy`) and its **ink mass**, the
//! summed pixel intensity (19.5 ± 2.2 pixels' worth), a regression target
//! (`mse`). The ink target is standardised and then measured on a scale ×10,
//! so its `mse` is ×100 what the standardised target's would be: the same
//! task, in units that make its term — and its gradient — two orders of
//! magnitude larger than the class term's. Nothing about the task changed;
//! only its units did.
//!
//! Model: a trunk `64 → 64 → 32` (ReLU) shared by a class head `32 → 10` and
//! an ink head `32 → 1`. The objective is `λ_class·CE + λ_ink·MSE`, with the
//! terms' gradient pressure measured at the trunk's last layer (`trunk.2`,
//! as GradNorm does) on every step ([`Objective`] with a [`Shared`] set; two
//! backward passes per step instead of one). Three runs, alike but for the
//! weighting:
//!
//! - **fixed** weights `λ = (1, 1)`: the ink term carries almost all the
//!   gradient norm at the trunk for the whole run; the verdict of the first
//!   step says so. The trunk is shaped for the ink head and the class head
//!   makes do with what it gets.
//! - **uncertainty** weighting (Kendall et al. 2018): a learnable
//!   log-variance per term, stepped with the model; each weight settles
//!   near `½/L_j`, which undoes the units.
//! - **GradNorm** (Chen et al. 2018) with its default α = 1.5: the weights
//!   move so that the terms' gradient norms at `trunk.2` approach their mean
//!   times `r_j^α`, `r_j` the term's relative inverse training rate. α > 0
//!   keeps more pressure on the term that has trained less *relative to its
//!   own start*; α = 0 would equalise the norms.
//!
//! It prints per run the test accuracy, the ink RMSE in pixels, the final
//! weights and the ink term's share of the gradient norm at `trunk.2` over
//! the last epoch; `shares.png` draws each term's share per epoch for the
//! three runs.
//!
//! Everything is seeded (split, initialisation, batch order); the run is
//! deterministic. Check mode (`LOSSGRAPH_CHECK=1`) stays quiet: every step
//! is diagnosed, so each weighted term gets its own backward and check 9
//! never sees a root of several terms — the objective's diagnostics are
//! the same measurement, reported as data.
//!
//! `cargo run --release --example multitask`

mod common;

use common::{legend, load_digits, out_dir, print_result, print_table, progress};
use lossgraph::losses::{cross_entropy, mse, CrossEntropyOptions, MseOptions};
use lossgraph::nn::objective::Diagnostics;
use lossgraph::nn::{
    relu, select_rows, train_test_split, Activation, Adam, AdamOptions, Batches, Bound,
    GradNormOptions, Init, Linear, Module, Objective, Optimizer, ParamStore, Shared,
};
use lossgraph::prelude::*;
use plotters::prelude::*;
use std::path::Path;

const SEED: u64 = 0;
const EPOCHS: u64 = 30;
const BATCH: usize = 64;
const LR: f64 = 0.01;
/// The ink target in units of a tenth of its standard deviation: its mse is
/// ×100 the standardised target's.
const INK_SCALE: f32 = 10.0;
const TERMS: [&str; 2] = ["class", "ink"];

/// Images, class ids and the scaled ink target `[N, 1]`.
struct Split {
    x: Tensor<f32>,
    y: IndexTensor,
    ink: Tensor<f32>,
}

impl Split {
    fn rows(&self, rows: &[usize]) -> Result<Split> {
        Ok(Split {
            x: select_rows(&self.x, rows)?,
            y: select_rows(&self.y, rows)?,
            ink: select_rows(&self.ink, rows)?,
        })
    }
}

struct Model {
    trunk1: Linear,
    trunk2: Linear,
    class_head: Linear,
    ink_head: Linear,
}

impl Model {
    fn new(params: &mut ParamStore<f32>) -> Result<Self> {
        let init = Init::kaiming_uniform(Activation::Relu);
        let head = Init::xavier_uniform();
        Ok(Model {
            trunk1: Linear::new(params, "trunk.1", 64, 64, init, SEED + 1)?,
            trunk2: Linear::new(params, "trunk.2", 64, 32, init, SEED + 2)?,
            class_head: Linear::new(params, "class_head", 32, 10, head, SEED + 3)?,
            ink_head: Linear::new(params, "ink_head", 32, 1, head, SEED + 4)?,
        })
    }
    /// The trunk's last layer, where the terms' pressure is compared.
    fn shared(&self) -> Shared {
        Shared::new("trunk.2", vec![self.trunk2.weight(), self.trunk2.bias()])
    }
    /// Class logits `[N, 10]` and the ink prediction `[N, 1]`.
    fn forward(&self, p: &Bound<f32>, x: &Tensor<f32>) -> Result<(Var<f32>, Var<f32>)> {
        let h = relu(&self.trunk1.forward(p, &p.tape().constant(x.clone()))?)?;
        let h = relu(&self.trunk2.forward(p, &h)?)?;
        Ok((
            self.class_head.forward(p, &h)?,
            self.ink_head.forward(p, &h)?,
        ))
    }
    /// The raw terms, in the order of [`TERMS`].
    fn terms(&self, p: &Bound<f32>, d: &Split) -> Result<Vec<Var<f32>>> {
        let (logits, ink) = self.forward(p, &d.x)?;
        let class = cross_entropy(&logits, &d.y, &CrossEntropyOptions::default())?;
        let ink = mse(
            &ink,
            &p.tape().constant(d.ink.clone()),
            &MseOptions::default(),
        )?;
        Ok(vec![class, ink])
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Method {
    Fixed,
    Uncertainty,
    GradNorm,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Fixed => "fixed",
            Method::Uncertainty => "uncertainty",
            Method::GradNorm => "gradnorm",
        }
    }
}

/// What one training run leaves.
struct Run {
    method: Method,
    accuracy: f64,
    /// Ink RMSE on the test images, in pixels.
    ink_rmse: f64,
    weights: Vec<f64>,
    /// Per epoch, each term's mean share of the gradient norm at `trunk.2`.
    shares: Vec<[f64; 2]>,
    /// The first step's diagnostics.
    first: Diagnostics,
}

fn main() -> Result<()> {
    // ---- data: pixels in [0, 1], the ink mass per image, a seeded split ----
    let (x, y) = load_digits()?;
    let n = y.numel();
    let ink_px: Vec<f64> = x
        .to_vec()
        .chunks(64)
        .map(|r| r.iter().map(|&v| v as f64).sum())
        .collect();
    let (train_idx, test_idx) = train_test_split(n, 0.25, SEED)?;
    // standardised with the training images' mean and sd, then ×10
    let mean = train_idx.iter().map(|&i| ink_px[i]).sum::<f64>() / train_idx.len() as f64;
    let var = train_idx
        .iter()
        .map(|&i| (ink_px[i] - mean).powi(2))
        .sum::<f64>()
        / train_idx.len() as f64;
    let sd = var.sqrt();
    let scaled: Vec<f32> = ink_px
        .iter()
        .map(|&m| ((m - mean) / sd) as f32 * INK_SCALE)
        .collect();
    let all = Split {
        x,
        y,
        ink: Tensor::from_vec(scaled, [n, 1])?,
    };
    let (train, test) = (all.rows(&train_idx)?, all.rows(&test_idx)?);
    println!(
        "digits: {n} images, {} train, {} test; ink mass {mean:.2} ± {sd:.2} pixels, \
         its target in units of sd/{INK_SCALE} (mse ×100)",
        train_idx.len(),
        test_idx.len()
    );

    // ---- three runs, alike but for the weighting ----
    let mut runs = Vec::new();
    for method in [Method::Fixed, Method::Uncertainty, Method::GradNorm] {
        runs.push(train_run(method, &train, &test, sd)?);
    }

    println!("\nfirst step, fixed weights: {}", runs[0].first.verdict());
    println!();
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let last = r.shares.last().copied().unwrap_or([f64::NAN; 2]);
            vec![
                r.method.name().to_string(),
                format!("{:.4}", r.accuracy),
                format!("{:.3}", r.ink_rmse),
                format!("{:.3}, {:.3}", r.weights[0], r.weights[1]),
                format!("{:.3}", last[1]),
            ]
        })
        .collect();
    print_table(
        &[
            "weighting",
            "test accuracy",
            "ink RMSE (px)",
            "weights (class, ink)",
            "ink share at trunk.2, last epoch",
        ],
        &rows,
    );
    println!("(predicting the mean ink mass gives an RMSE of {sd:.3} px)");

    let path = out_dir("multitask")?.join("shares.png");
    share_plot(&path, &runs)?;
    println!("\ngradient-norm shares: {}", path.display());

    let mut result = Vec::new();
    for r in &runs {
        let m = r.method.name();
        result.push((format!("acc_{m}"), format!("{:.4}", r.accuracy)));
        result.push((format!("rmse_{m}"), format!("{:.4}", r.ink_rmse)));
    }
    for r in &runs {
        let share = r.shares.last().map_or(f64::NAN, |s| s[1]);
        result.push((
            format!("ink_share_{}", r.method.name()),
            format!("{share:.4}"),
        ));
    }
    let pairs: Vec<(&str, String)> = result
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    print_result(&pairs);
    Ok(())
}

/// Train a fresh model with `method`, diagnosing every step at `trunk.2`.
fn train_run(method: Method, train: &Split, test: &Split, sd: f64) -> Result<Run> {
    let mut params = ParamStore::<f32>::new();
    let model = Model::new(&mut params)?;
    let shared = model.shared();
    let mut objective = match method {
        Method::Fixed => Objective::fixed(&[(TERMS[0], 1.0), (TERMS[1], 1.0)])?,
        Method::Uncertainty => Objective::uncertainty(&mut params, &TERMS)?,
        Method::GradNorm => {
            Objective::grad_norm(&TERMS, shared.clone(), GradNormOptions::default())?
        }
    };
    let mut opt = Adam::new(AdamOptions {
        lr: LR,
        ..Default::default()
    })?;
    let batches = Batches::new(train.y.numel(), BATCH, SEED)?;
    let bar = progress(EPOCHS * batches.len() as u64, method.name());
    let (mut shares, mut first) = (Vec::new(), None);
    for epoch in 0..EPOCHS {
        let (mut sum, mut steps) = ([0.0; 2], 0.0);
        for rows in batches.epoch(epoch) {
            let d = train.rows(&rows)?;
            let step = objective.step(&params, Some(&shared), |p| model.terms(p, &d))?;
            opt.step(&mut params, &step.grads)?;
            let diag = step.diagnostics.expect("every step is diagnosed");
            for (s, t) in sum.iter_mut().zip(&diag.terms) {
                *s += t.share;
            }
            steps += 1.0;
            bar.set_message(format!("ink share {:.2}", diag.terms[1].share));
            bar.inc(1);
            first.get_or_insert(diag);
        }
        shares.push(sum.map(|s| s / steps));
    }
    bar.finish();

    // ---- test metrics ----
    let tape = Tape::new();
    let (logits, ink) = tape.no_grad(|| model.forward(&params.bind(&tape), &test.x))?;
    let labels = test.y.to_vec();
    let hits = logits
        .value()
        .to_vec()
        .chunks(10)
        .zip(&labels)
        .filter(|(row, &label)| {
            let best = (0..10).fold(0, |b, c| if row[c] > row[b] { c } else { b });
            best as i64 == label
        })
        .count();
    // back to pixels: a target unit is sd/10 pixels
    let sq: f64 = ink
        .value()
        .to_vec()
        .iter()
        .zip(test.ink.to_vec())
        .map(|(&p, t)| ((p - t) as f64 * sd / INK_SCALE as f64).powi(2))
        .sum();
    Ok(Run {
        method,
        accuracy: hits as f64 / labels.len() as f64,
        ink_rmse: (sq / labels.len() as f64).sqrt(),
        weights: objective.weights(&params)?,
        shares,
        first: first.expect("at least one step"),
    })
}

/// One panel per run: each term's share of the gradient norm at `trunk.2`,
/// per epoch.
fn share_plot(path: &Path, runs: &[Run]) -> Result<()> {
    let err = |e: String| Error::Io(format!("{}: {e}", path.display()));
    let root = BitMapBackend::new(path, (1500, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let colors = [RGBColor(31, 119, 180), RGBColor(214, 39, 40)];
    for (area, run) in root.split_evenly((1, runs.len())).iter().zip(runs) {
        let mut ch = ChartBuilder::on(area)
            .caption(
                format!("{}: share of ‖∇‖ at trunk.2", run.method.name()),
                ("sans-serif", 22),
            )
            .margin(14)
            .x_label_area_size(45)
            .y_label_area_size(55)
            .build_cartesian_2d(1.0..EPOCHS as f64, 0.0..1.0)
            .map_err(|e| err(e.to_string()))?;
        ch.configure_mesh()
            .x_desc("epoch")
            .y_desc("share of the gradient norm")
            .draw()
            .map_err(|e| err(e.to_string()))?;
        for (k, (&name, &color)) in TERMS.iter().zip(&colors).enumerate() {
            let pts: Vec<(f64, f64)> = run
                .shares
                .iter()
                .enumerate()
                .map(|(e, s)| ((e + 1) as f64, s[k]))
                .collect();
            ch.draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| err(e.to_string()))?
                .label(format!("{name} term"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
                });
        }
        legend(&mut ch, SeriesLabelPosition::MiddleRight).map_err(err)?;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}
