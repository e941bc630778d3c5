//! VAE: a variational auto-encoder on the 8×8 digits, trained on the
//! negative ELBO = reconstruction + `gaussian_kl`.
//!
//! - Encoder MLP 64 → 128 → 2·8 gives the mean `mu` and log-variance
//!   `logvar` of q(z | x) over an 8-d latent.
//! - Reparameterised sample `z = mu + exp(logvar / 2) · eps`, with `eps` a
//!   seeded standard-normal tensor entered as a *constant* on the tape: the
//!   randomness carries no gradient, so `mu` and `logvar` get theirs through
//!   the sample.
//! - Decoder MLP 8 → 128 → 64 gives one logit per pixel.
//!
//! **Reconstruction is `bce_with_logits`**, the Bernoulli negative
//! log-likelihood of the pixels (in [0, 1], valid soft targets) given the
//! decoder's logits. It is the same "bce reconstruction" as `bce` applied to
//! `sigmoid(logits)` — the run checks the two agree on the held-out digits —
//! but it never forms the probability: computed as
//! `max(z, 0) − z·y + log1p(e^−|z|)`, a confidently wrong pixel costs its
//! true (large) loss with gradient `σ(z) − y`, whereas `bce` on a sigmoid that
//! has rounded to 0 or 1 hits the log clamp at −100 and gets no gradient.
//!
//! Both terms are **sums per image averaged over the batch**: the
//! reconstruction is `bce_with_logits(…, reduction = sum) / batch`, and
//! `gaussian_kl` already sums over the latent axis and (with `mean`) averages
//! over rows. So the loss is the negative ELBO in nats per image, an upper
//! bound on −log p(x) (a one-sample estimate: one `eps` per image).
//!
//! Because the pixels are grey levels, not 0/1, the reconstruction cannot
//! reach 0: its floor is the pixels' own Bernoulli entropy, `bce(x, x)`,
//! which the run prints next to the reached value.
//!
//! The table prints, per epoch, the negative ELBO on the whole training and
//! held-out sets (25 % seeded split), each with one fixed seeded `eps` so
//! epochs compare like for like. The pictures: held-out originals above
//! their reconstructions (the decoder's mean `sigmoid(logits)` at `z = mu`),
//! decodings of prior samples `z ~ N(0, I)`, and the ELBO curves. Every
//! figure comes from fixed seeds; the run is deterministic.
//!
//! `cargo run --release --example vae`

mod common;

use common::{chart, out_dir, print_result, print_table, progress, Series};
use lossgraph::losses::Reduction;
use lossgraph::losses::{
    bce, bce_with_logits, gaussian_kl, BceOptions, BceWithLogitsOptions, GaussianKlOptions,
};
use lossgraph::nn::{
    select_rows, train_test_split, Activation, Adam, AdamOptions, Batches, Bound, Init, Mlp,
    Module, Optimizer, ParamStore,
};
use lossgraph::prelude::*;
use plotters::prelude::*;
use std::path::Path;

const LATENT: usize = 8;
const HIDDEN: usize = 128;
const EPOCHS: usize = 200;
const BATCH: usize = 64;

/// The encoder and decoder MLPs (their weights live in a `ParamStore`).
struct Vae {
    encoder: Mlp,
    decoder: Mlp,
}

/// The terms of the negative ELBO of a batch, in nats per image.
struct Elbo {
    recon: Var<f32>,
    kl: Var<f32>,
    logits: Var<f32>,
}

impl Elbo {
    fn loss(&self) -> Result<Var<f32>> {
        self.recon.add(&self.kl)
    }
}

impl Vae {
    fn new(params: &mut ParamStore<f32>) -> Result<Self> {
        let init = Init::kaiming_uniform(Activation::Relu);
        let encoder = Mlp::new(
            params,
            "enc",
            &[64, HIDDEN, 2 * LATENT],
            Activation::Relu,
            init,
            1,
        )?;
        let decoder = Mlp::new(
            params,
            "dec",
            &[LATENT, HIDDEN, 64],
            Activation::Relu,
            init,
            2,
        )?;
        Ok(Vae { encoder, decoder })
    }

    /// `(mu, logvar)` of q(z | x).
    fn encode(&self, p: &Bound<f32>, x: &Var<f32>) -> Result<(Var<f32>, Var<f32>)> {
        let h = self.encoder.forward(p, x)?;
        Ok((h.narrow(1, 0, LATENT)?, h.narrow(1, LATENT, LATENT)?))
    }

    /// Negative ELBO of the rows of `x`, with the standard-normal draw `eps`.
    fn elbo(&self, p: &Bound<f32>, x: &Tensor<f32>, eps: &Tensor<f32>) -> Result<Elbo> {
        let t = p.tape();
        let x = t.constant(x.clone());
        let (mu, logvar) = self.encode(p, &x)?;
        // reparameterisation: eps is a constant, the gradient flows via mu, logvar
        let z = mu.add(
            &logvar
                .mul_scalar(0.5)?
                .exp()?
                .mul(&t.constant(eps.clone()))?,
        )?;
        let logits = self.decoder.forward(p, &z)?;
        let n = x.dims()[0].max(1) as f32;
        let sum = BceWithLogitsOptions {
            reduction: Reduction::Sum,
            ..Default::default()
        };
        let recon = bce_with_logits(&logits, &x, &sum)?.mul_scalar(1.0 / n)?;
        let kl = gaussian_kl(
            &mu,
            &logvar,
            &GaussianKlOptions {
                reduction: Reduction::Mean,
            },
        )?;
        Ok(Elbo { recon, kl, logits })
    }

    /// Decoder means `sigmoid(logits)` for latent codes `z`.
    fn decode(&self, params: &ParamStore<f32>, z: &Tensor<f32>) -> Result<Tensor<f32>> {
        let tape = Tape::new();
        let p = params.bind(&tape);
        Ok(self
            .decoder
            .forward(&p, &tape.constant(z.clone()))?
            .sigmoid()?
            .value())
    }

    /// Reconstructions of `x` decoded from the posterior mean `z = mu`.
    fn reconstruct(&self, params: &ParamStore<f32>, x: &Tensor<f32>) -> Result<Tensor<f32>> {
        let tape = Tape::new();
        let (mu, _) = self.encode(&params.bind(&tape), &tape.constant(x.clone()))?;
        self.decode(params, &mu.value())
    }
}

/// Negative ELBO, reconstruction and KL (nats per image) on all of `x`.
fn evaluate(
    vae: &Vae,
    params: &ParamStore<f32>,
    x: &Tensor<f32>,
    eps: &Tensor<f32>,
) -> Result<[f64; 3]> {
    let tape = Tape::new();
    let e = vae.elbo(&params.bind(&tape), x, eps)?;
    let (r, k) = (e.recon.item()? as f64, e.kl.item()? as f64);
    Ok([r + k, r, k])
}

/// Draw 8×8 images (values in [0, 1], ink dark) as a grid of `cols` columns,
/// each pixel a filled rectangle; `row_labels` name the rows (cycling).
fn draw_digits(
    path: &Path,
    title: &str,
    images: &Tensor<f32>,
    cols: usize,
    row_labels: &[&str],
) -> Result<()> {
    let err = |e: String| Error::Io(format!("{}: {e}", path.display()));
    let (cell, gap, left, top) = (
        7i32,
        6i32,
        if row_labels.is_empty() { 10 } else { 120 },
        44i32,
    );
    let n = images.dims()[0];
    let rows = n.div_ceil(cols);
    let side = 8 * cell + gap;
    let size = (
        (left + cols as i32 * side + 10) as u32,
        (top + rows as i32 * side + 10) as u32,
    );
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    root.draw(&Text::new(title.to_string(), (10, 12), ("sans-serif", 20)))
        .map_err(|e| err(e.to_string()))?;
    let px = images.as_slice();
    for i in 0..n {
        let (r, c) = ((i / cols) as i32, (i % cols) as i32);
        let (x0, y0) = (left + c * side, top + r * side);
        if c == 0 && !row_labels.is_empty() {
            let label = row_labels[r as usize % row_labels.len()];
            root.draw(&Text::new(
                label.to_string(),
                (8, y0 + 4 * cell - 8),
                ("sans-serif", 15),
            ))
            .map_err(|e| err(e.to_string()))?;
        }
        for k in 0..64 {
            let v = px[i * 64 + k].clamp(0.0, 1.0);
            let g = (255.0 * (1.0 - v)).round() as u8;
            let (pr, pc) = ((k / 8) as i32, (k % 8) as i32);
            let (a, b) = (
                (x0 + pc * cell, y0 + pr * cell),
                (x0 + (pc + 1) * cell, y0 + (pr + 1) * cell),
            );
            root.draw(&Rectangle::new([a, b], RGBColor(g, g, g).filled()))
                .map_err(|e| err(e.to_string()))?;
        }
        // a thin frame so blank images still show their extent
        let frame = [(x0 - 1, y0 - 1), (x0 + 8 * cell, y0 + 8 * cell)];
        root.draw(&Rectangle::new(frame, RGBColor(200, 200, 200)))
            .map_err(|e| err(e.to_string()))?;
    }
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

fn main() -> Result<()> {
    let (x, _) = common::load_digits()?;
    let (tr, te) = train_test_split(x.dims()[0], 0.25, 0)?;
    let (xtr, xte) = (select_rows(&x, &tr)?, select_rows(&x, &te)?);
    println!(
        "digits: {} train, {} held out; latent {LATENT}, hidden {HIDDEN}\n",
        tr.len(),
        te.len()
    );

    let mut params = ParamStore::<f32>::new();
    let vae = Vae::new(&mut params)?;
    let mut opt = Adam::new(AdamOptions {
        lr: 1e-3,
        ..Default::default()
    })?;
    let batches = Batches::new(tr.len(), BATCH, 5)?;
    // fixed evaluation draws, so every epoch is scored on the same eps
    let eps_train = Tensor::<f32>::randn([tr.len(), LATENT], 0.0, 1.0, 101)?;
    let eps_test = Tensor::<f32>::randn([te.len(), LATENT], 0.0, 1.0, 102)?;

    let bar = progress(EPOCHS as u64, "vae");
    let mut table = Vec::new();
    let (mut train_curve, mut test_curve) = (Vec::new(), Vec::new());
    let mut last = [0.0; 3];
    for epoch in 0..EPOCHS {
        for (b, rows) in batches.epoch(epoch as u64).enumerate() {
            let xb = select_rows(&xtr, &rows)?;
            let seed = 1_000_000 + (epoch * 1000 + b) as u64;
            let eps = Tensor::<f32>::randn([rows.len(), LATENT], 0.0, 1.0, seed)?;
            let (_, grads) = params.value_and_grad(|p| vae.elbo(p, &xb, &eps)?.loss())?;
            opt.step(&mut params, &grads)?;
        }
        let train = evaluate(&vae, &params, &xtr, &eps_train)?;
        last = evaluate(&vae, &params, &xte, &eps_test)?;
        train_curve.push((epoch as f64 + 1.0, train[0]));
        test_curve.push((epoch as f64 + 1.0, last[0]));
        if epoch < 3 || [5, 10].contains(&(epoch + 1)) || (epoch + 1) % 20 == 0 {
            let mut row = vec![format!("{}", epoch + 1)];
            row.extend(train.iter().chain(&last).map(|v| format!("{v:.3}")));
            table.push(row);
        }
        bar.set_message(format!("test -ELBO {:.3}", last[0]));
        bar.inc(1);
    }
    bar.finish();
    print_table(
        &[
            "epoch",
            "train -ELBO",
            "train recon",
            "train KL",
            "test -ELBO",
            "test recon",
            "test KL",
        ],
        &table,
    );

    // the same reconstruction term through bce on probabilities: on purpose
    // what check mode's check 3 (bce on a sigmoid) warns about, so this one
    // comparison tape runs with check mode off
    let tape = Tape::new();
    tape.set_check_mode(false);
    let e = vae.elbo(&params.bind(&tape), &xte, &eps_test)?;
    let probs = e.logits.sigmoid()?;
    let sum = BceOptions {
        reduction: Reduction::Sum,
        ..Default::default()
    };
    let via_bce = bce(&probs, &tape.constant(xte.clone()), &sum)?.item()? as f64 / te.len() as f64;
    // soft targets set a floor: no decoder beats predicting y itself, where the
    // loss is the pixels' own Bernoulli entropy Σ H(y) — bce(y, y)
    let target = tape.constant(xte.clone());
    let floor = bce(&target, &target, &sum)?.item()? as f64 / te.len() as f64;
    println!("\ntest reconstruction, nats per image:");
    println!("  bce_with_logits(logits, x)   {:.4}", last[1]);
    println!("  bce(sigmoid(logits), x)      {via_bce:.4}   (the same term on probabilities)");
    println!("  floor bce(x, x) = Σ H(pixel) {floor:.4}   (the targets are soft, not 0/1)");

    let dir = out_dir("vae")?;
    // 4 pairs of rows: 12 held-out originals, then their reconstructions
    let (cols, pairs) = (12, 4);
    let mut grid = Vec::new();
    for k in 0..pairs {
        let idx: Vec<usize> = (k * cols..(k + 1) * cols).collect();
        let orig = select_rows(&xte, &idx)?;
        grid.push(orig.clone());
        grid.push(vae.reconstruct(&params, &orig)?);
    }
    let grid = Tensor::concat(&grid.iter().collect::<Vec<_>>(), 0)?;
    draw_digits(
        &dir.join("reconstructions.png"),
        "held-out digits and their reconstructions (decoder mean at z = mu)",
        &grid,
        cols,
        &["original", "reconstructed"],
    )?;
    let z = Tensor::<f32>::randn([64, LATENT], 0.0, 1.0, 7)?;
    draw_digits(
        &dir.join("samples.png"),
        "decoded samples z ~ N(0, I)",
        &vae.decode(&params, &z)?,
        8,
        &[],
    )?;
    chart(
        &dir.join("elbo.png"),
        "negative ELBO per epoch (nats per image)",
        "epoch",
        "-ELBO",
        &[
            Series::new("train", train_curve),
            Series::new("test", test_curve),
        ],
        false,
    )?;
    println!("pictures: {}", dir.display());
    print_result(&[
        ("neg_elbo_test", format!("{:.3}", last[0])),
        ("recon", format!("{:.3}", last[1])),
        ("kl", format!("{:.3}", last[2])),
    ]);
    Ok(())
}
