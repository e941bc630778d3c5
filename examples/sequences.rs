//! Sequences: next-token prediction over padded, variable-length sequences
//! with `linear_cross_entropy`, and what the choice of mean does.
//!
//! Data: sequences over a vocabulary of V = 16 tokens, lengths uniform in
//! 2..=40, from a noisy counting generator. The first token is uniform; each
//! next token is the previous one plus a stride (mod 16), except that with
//! probability 0.2 it is a uniform random token instead. **Short sequences
//! (length ≤ 10) count by 1, long ones by 5** — a stand-in for any data where
//! short and long examples behave differently (short answers and long
//! documents). Nothing in a prefix says how long its sequence will be, so
//! wherever the prefix does not yet reveal the stride the model must
//! compromise, and the loss's weighting decides the compromise.
//!
//! Batches are padded to the longest possible sequence (39 predictions per
//! row); padded positions get target `ignore_index = −100`. The model: an
//! embedding lookup (`index_select` on a learned `[V, H]` table, H = 32) of the
//! current token plus a context feature, the mean embedding of the prefix so
//! far (prefix token frequencies `[N, V]` times the same table), through one
//! tanh layer to `hidden [N, H]`; `linear_cross_entropy(hidden, W [V, H],
//! bias, target)` scores the next token without materialising the logits.
//!
//! Two models, trained alike except for the mean:
//!
//! - **token mean**: the op's own `mean` over the non-ignored tokens. Every
//!   token weighs the same, so a sequence weighs in proportion to its length:
//!   a 40-token sequence counts ≈ 39× a 2-token one.
//! - **per-sequence mean**: per-token losses via `reduction = none`, reshaped
//!   to `[B, T]`, then `masked_mean(…, per_row = true)`: each sequence's mean
//!   first, then the mean over sequences — every sequence weighs the same.
//!
//! `weights.png` shows the effective weight per sequence against its length,
//! read off the gradients of the two reductions on the training set (1 =
//! the average sequence). `per_length.png` and the table show the held-out
//! loss per token by length for the two models: the per-sequence model buys a
//! lower loss on the short (count-by-1) sequences with a slightly higher loss
//! on the long ones, because short sequences — ≈ 22 % of the sequences but
//! ≈ 5 % of the tokens — get ≈ 4× more say. (Knowing the stride, the best
//! possible loss is ≈ 0.99 nats per token; the first prediction of a
//! sequence can never know it.) The run also checks that the op's
//! token mean equals `masked_mean` without `per_row` on the same losses.
//!
//! Last, gradient accumulation: one batch of 64 sequences split into
//! micro-batches of 7, 19 and 38 sequences (unequal token counts). Summing
//! the micro-batches' gradients with the whole batch's token count as the
//! `denominator` ([`accumulate`](lossgraph::nn::accumulate)) gives the
//! full batch's gradient (`accum_exact_max_diff`, the largest absolute
//! difference, f32 rounding only); averaging each micro-batch's own token
//! mean does not (`accum_naive_max_diff`): short micro-batches' tokens weigh
//! more.
//!
//! Everything is seeded (data, initialisation, batch order); the run is
//! deterministic.
//!
//! `cargo run --release --example sequences`

mod common;

use common::{chart, out_dir, print_result, print_table, progress, Series};
use lossgraph::losses::{
    linear_cross_entropy, masked_mean, LinearCrossEntropyOptions, MaskedMeanOptions, Reduction,
};
use lossgraph::nn::{
    accumulate, Adam, AdamOptions, Batches, Bound, GradAccumulator, Init, Linear, Module,
    Optimizer, ParamGrads, ParamId, ParamStore,
};
use lossgraph::prelude::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const V: usize = 16;
const H: usize = 32;
const MAX_LEN: usize = 40;
/// Predictions per padded row.
const T: usize = MAX_LEN - 1;
const SHORT_MAX: usize = 10;
const NOISE: f64 = 0.2;
const IGNORE: i64 = -100;
const N_TRAIN: usize = 3000;
const N_TEST: usize = 2000;
const BATCH: usize = 64;
const EPOCHS: usize = 20;

/// One sequence from the generator.
fn generate(rng: &mut StdRng) -> Vec<i64> {
    let len = rng.random_range(2..=MAX_LEN);
    let stride = if len <= SHORT_MAX { 1 } else { 5 };
    let mut seq = vec![rng.random_range(0..V as i64)];
    while seq.len() < len {
        let prev = seq[seq.len() - 1];
        let next = if rng.random_bool(NOISE) {
            rng.random_range(0..V as i64)
        } else {
            (prev + stride) % V as i64
        };
        seq.push(next);
    }
    seq
}

/// A set of sequences.
struct Data {
    seqs: Vec<Vec<i64>>,
}

/// A padded batch, `B` rows of `T` positions flattened to `N = B·T`.
struct Batch {
    rows: usize,
    tokens: Tensor<i64>, // [N] current token (0 at padding)
    prefix: Tensor<f32>, // [N, V] token frequencies of the prefix so far
    target: Tensor<i64>, // [N] next token, IGNORE at padding
    mask: Tensor<f32>,   // [B, T] 1 where a target exists
}

impl Data {
    fn sample(n: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        Data {
            seqs: (0..n).map(|_| generate(&mut rng)).collect(),
        }
    }

    fn batch(&self, rows: &[usize]) -> Result<Batch> {
        let n = rows.len() * T;
        let (mut tokens, mut target) = (vec![0i64; n], vec![IGNORE; n]);
        let (mut prefix, mut mask) = (vec![0f32; n * V], vec![0f32; n]);
        for (b, &r) in rows.iter().enumerate() {
            let seq = &self.seqs[r];
            let mut counts = [0f32; V];
            for t in 0..seq.len() - 1 {
                let i = b * T + t;
                counts[seq[t] as usize] += 1.0;
                tokens[i] = seq[t];
                target[i] = seq[t + 1];
                mask[i] = 1.0;
                for (v, c) in counts.iter().enumerate() {
                    prefix[i * V + v] = c / (t + 1) as f32;
                }
            }
        }
        Ok(Batch {
            rows: rows.len(),
            tokens: Tensor::from_vec(tokens, [n])?,
            prefix: Tensor::from_vec(prefix, [n, V])?,
            target: Tensor::from_vec(target, [n])?,
            mask: Tensor::from_vec(mask, [rows.len(), T])?,
        })
    }

    fn all(&self) -> Result<Batch> {
        self.batch(&(0..self.seqs.len()).collect::<Vec<_>>())
    }
}

/// How per-token losses become the training loss.
#[derive(Clone, Copy, PartialEq)]
enum Weighting {
    TokenMean,
    SeqMean,
}

/// Embedding table, the layer to `hidden`, and the output projection.
struct Model {
    emb: ParamId,
    from_token: Linear,
    from_context: Linear,
    out: Linear, // weight [V, H], bias [V]: the projection inside the loss
}

impl Model {
    fn new(params: &mut ParamStore<f32>) -> Result<Self> {
        let emb = params.add("emb", Tensor::randn([V, H], 0.0, 1.0, 1)?)?;
        let init = Init::xavier_uniform();
        Ok(Model {
            emb,
            from_token: Linear::new(params, "tok", H, H, init, 2)?,
            from_context: Linear::new(params, "ctx", H, H, init, 3)?,
            out: Linear::new(params, "out", H, V, init, 4)?,
        })
    }

    /// `hidden [N, H]` = tanh(A·emb[token] + C·mean(emb[prefix]) + bias).
    fn hidden(&self, p: &Bound<f32>, b: &Batch) -> Result<Var<f32>> {
        let table = p.var(self.emb)?;
        let token = table.index_select(0, &b.tokens)?;
        let context = p.tape().constant(b.prefix.clone()).matmul(table)?;
        self.from_token
            .forward(p, &token)?
            .add(&self.from_context.forward(p, &context)?)?
            .tanh()
    }

    /// Per-token losses `[B, T]` (0 at padding), via reduction `none`.
    fn token_losses(&self, p: &Bound<f32>, b: &Batch) -> Result<Var<f32>> {
        self.projected_ce(p, b, Reduction::None, None)?
            .reshape([b.rows, T])
    }

    /// `linear_cross_entropy` of `hidden` through the output projection; a
    /// `mean` divides by `denominator` when given (a micro-batch of a
    /// larger batch), else by this batch's own token count.
    fn projected_ce(
        &self,
        p: &Bound<f32>,
        b: &Batch,
        reduction: Reduction,
        denominator: Option<f64>,
    ) -> Result<Var<f32>> {
        let h = self.hidden(p, b)?;
        let (w, bias) = (p.var(self.out.weight())?, p.var(self.out.bias())?);
        let o = LinearCrossEntropyOptions {
            reduction,
            ignore_index: IGNORE,
            denominator,
            ..Default::default()
        };
        linear_cross_entropy(&h, w, Some(bias), &b.target, &o)
    }

    /// The training loss under `weighting`.
    fn loss(&self, p: &Bound<f32>, b: &Batch, weighting: Weighting) -> Result<Var<f32>> {
        match weighting {
            // the op's own mean over the non-ignored tokens
            Weighting::TokenMean => self.projected_ce(p, b, Reduction::Mean, None),
            // each row's mean over its tokens, then the mean over rows
            Weighting::SeqMean => {
                let mask = p.tape().constant(b.mask.clone());
                let o = MaskedMeanOptions {
                    per_row: true,
                    ..Default::default()
                };
                masked_mean(&self.token_losses(p, b)?, &mask, &o)
            }
        }
    }
}

/// Train a model with `weighting`; returns it and its parameters.
fn train(weighting: Weighting, data: &Data) -> Result<(Model, ParamStore<f32>)> {
    let mut params = ParamStore::new();
    let model = Model::new(&mut params)?;
    let mut opt = Adam::new(AdamOptions {
        lr: 3e-3,
        ..Default::default()
    })?;
    let batches = Batches::new(data.seqs.len(), BATCH, 9)?;
    let label = match weighting {
        Weighting::TokenMean => "token mean",
        Weighting::SeqMean => "seq mean",
    };
    let bar = progress((EPOCHS * batches.len()) as u64, label);
    for epoch in 0..EPOCHS {
        for rows in batches.epoch(epoch as u64) {
            let b = data.batch(&rows)?;
            let (loss, grads) = params.value_and_grad(|p| model.loss(p, &b, weighting))?;
            opt.step(&mut params, &grads)?;
            bar.set_message(format!("epoch {} loss {loss:.4}", epoch + 1));
            bar.inc(1);
        }
    }
    bar.finish();
    Ok((model, params))
}

/// Held-out figures of one model.
struct Eval {
    token_mean: f64,
    seq_mean: f64,
    /// per-token loss by sequence length (index = length)
    by_length: Vec<f64>,
}

/// Both means of the held-out loss, and the per-token loss per length.
fn evaluate(model: &Model, params: &ParamStore<f32>, data: &Data, b: &Batch) -> Result<Eval> {
    let tape = Tape::new();
    let p = params.bind(&tape);
    let losses = model.token_losses(&p, b)?;
    let mask = tape.constant(b.mask.clone());
    let seq_mean = masked_mean(
        &losses,
        &mask,
        &MaskedMeanOptions {
            per_row: true,
            ..Default::default()
        },
    )?;
    let token_mean = model.projected_ce(&p, b, Reduction::Mean, None)?;
    let (mut sum, mut count) = (vec![0.0; MAX_LEN + 1], vec![0.0; MAX_LEN + 1]);
    for (row, seq) in losses.value().as_slice().chunks(T).zip(&data.seqs) {
        sum[seq.len()] += row.iter().map(|&v| v as f64).sum::<f64>();
        count[seq.len()] += (seq.len() - 1) as f64;
    }
    let by_length = sum
        .iter()
        .zip(&count)
        .map(|(s, c)| if *c > 0.0 { s / c } else { f64::NAN })
        .collect();
    Ok(Eval {
        token_mean: token_mean.item()? as f64,
        seq_mean: seq_mean.item()? as f64,
        by_length,
    })
}

/// Per-token loss over the sequences with length in `lo..=hi`.
fn bucket(e: &Eval, data: &Data, lo: usize, hi: usize) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for len in lo..=hi {
        let tokens = data.seqs.iter().filter(|q| q.len() == len).count() as f64 * (len - 1) as f64;
        if tokens > 0.0 {
            s += e.by_length[len] * tokens;
            c += tokens;
        }
    }
    s / c
}

/// Effective weight of each sequence under both reductions: the gradient of
/// the reduced loss with respect to each per-token loss, summed over the
/// sequence, times the number of sequences (so 1 is the average sequence).
fn sequence_weights(b: &Batch) -> Result<[Vec<f64>; 2]> {
    let mut out = [Vec::new(), Vec::new()];
    for (k, per_row) in [false, true].into_iter().enumerate() {
        let tape = Tape::<f32>::new();
        // any per-token losses will do: the weights do not depend on them
        let losses = tape.leaf(Tensor::ones([b.rows, T])?);
        let mean = masked_mean(
            &losses,
            &tape.constant(b.mask.clone()),
            &MaskedMeanOptions {
                per_row,
                ..Default::default()
            },
        )?;
        let g = mean.backward()?.get_or_zeros(&losses);
        out[k] = g
            .sum(1, false)?
            .as_slice()
            .iter()
            .map(|&w| w as f64 * b.rows as f64)
            .collect();
    }
    Ok(out)
}

/// The largest absolute difference between two sets of gradients.
fn max_diff(a: &ParamGrads<f32>, b: &ParamGrads<f32>) -> f64 {
    a.iter()
        .zip(b.iter())
        .filter_map(|(x, y)| Some((x?, y?)))
        .flat_map(|(x, y)| {
            x.as_slice()
                .iter()
                .zip(y.as_slice())
                .map(|(p, q)| (p - q).abs() as f64)
                .collect::<Vec<_>>()
        })
        .fold(0.0, f64::max)
}

/// One batch of [`BATCH`] sequences, as a whole and as three micro-batches
/// of unequal token counts: the largest gradient difference from the whole
/// batch when the micro-batches divide by the whole batch's token count
/// (exact), and when each takes its own token mean and the three are
/// averaged (naive).
fn accumulation_check(model: &Model, params: &ParamStore<f32>, data: &Data) -> Result<(f64, f64)> {
    let rows: Vec<usize> = (0..BATCH).collect();
    let whole = data.batch(&rows)?;
    let (_, full) =
        params.value_and_grad(|p| model.projected_ce(p, &whole, Reduction::Mean, None))?;
    let parts = [0..7, 7..26, 26..BATCH]
        .into_iter()
        .map(|r| data.batch(&rows[r]))
        .collect::<Result<Vec<_>>>()?;
    let tokens = |b: &Batch| Ok(b.mask.as_slice().iter().map(|&m| m as f64).sum());
    let (_, exact) = accumulate(params, &parts, tokens, |p, b, d| {
        model.projected_ce(p, b, Reduction::Mean, Some(d))
    })?;
    let mut naive = GradAccumulator::new();
    let k = parts.len() as f32;
    for b in &parts {
        naive.add(params.value_and_grad(|p| {
            model
                .projected_ce(p, b, Reduction::Mean, None)?
                .mul_scalar(1.0 / k)
        })?)?;
    }
    let (_, naive) = naive.finish()?;
    Ok((max_diff(&exact, &full), max_diff(&naive, &full)))
}

fn main() -> Result<()> {
    let train_data = Data::sample(N_TRAIN, 1);
    let test_data = Data::sample(N_TEST, 2);
    let tokens = |d: &Data| d.seqs.iter().map(|s| s.len() - 1).sum::<usize>();
    let short_train: Vec<&Vec<i64>> = train_data
        .seqs
        .iter()
        .filter(|s| s.len() <= SHORT_MAX)
        .collect();
    println!(
        "{N_TRAIN} training sequences ({} predicted tokens), {N_TEST} held out; short (len <= {SHORT_MAX}): {:.1} % of sequences, {:.1} % of tokens\n",
        tokens(&train_data),
        100.0 * short_train.len() as f64 / N_TRAIN as f64,
        100.0 * short_train.iter().map(|s| s.len() - 1).sum::<usize>() as f64 / tokens(&train_data) as f64,
    );

    let (tok_model, tok_params) = train(Weighting::TokenMean, &train_data)?;
    let (seq_model, seq_params) = train(Weighting::SeqMean, &train_data)?;
    let test = test_data.all()?;
    let tok = evaluate(&tok_model, &tok_params, &test_data, &test)?;
    let seq = evaluate(&seq_model, &seq_params, &test_data, &test)?;

    // the op's own mean is masked_mean over the same per-token losses
    let tape = Tape::new();
    let p = tok_params.bind(&tape);
    let via_mask = masked_mean(
        &tok_model.token_losses(&p, &test)?,
        &tape.constant(test.mask.clone()),
        &MaskedMeanOptions::default(),
    )?;
    println!(
        "\ncheck: linear_cross_entropy mean {:.6} = masked_mean(none, mask) {:.6}\n",
        tok.token_mean,
        via_mask.item()?
    );

    let buckets = [(2, SHORT_MAX), (11, 20), (21, 30), (31, MAX_LEN)];
    let mut rows = Vec::new();
    for (name, e) in [("token mean", &tok), ("seq mean", &seq)] {
        let mut row = vec![
            name.to_string(),
            format!("{:.4}", e.token_mean),
            format!("{:.4}", e.seq_mean),
        ];
        row.extend(
            buckets
                .iter()
                .map(|&(lo, hi)| format!("{:.4}", bucket(e, &test_data, lo, hi))),
        );
        rows.push(row);
    }
    let mut headers = vec![
        "trained with".to_string(),
        "test token mean".into(),
        "test seq mean".into(),
    ];
    headers.extend(buckets.iter().map(|(lo, hi)| format!("len {lo}-{hi}")));
    print_table(
        &headers.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        &rows,
    );

    let dir = out_dir("sequences")?;
    let lengths: Vec<f64> = train_data.seqs.iter().map(|s| s.len() as f64).collect();
    let [w_tok, w_seq] = sequence_weights(&train_data.all()?)?;
    let points = |w: &[f64]| {
        // one point per length (every sequence of a length has the same weight)
        let mut pts: Vec<(f64, f64)> = lengths.iter().copied().zip(w.iter().copied()).collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        pts.dedup_by(|a, b| a.0 == b.0);
        pts
    };
    chart(
        &dir.join("weights.png"),
        "effective weight of a training sequence by its length (1 = average)",
        "sequence length",
        "weight in the loss",
        &[
            Series::new("token mean (linear_cross_entropy mean)", points(&w_tok)),
            Series::new("per-sequence mean (masked_mean per_row)", points(&w_seq)),
        ],
        false,
    )?;
    let curve = |e: &Eval| (2..=MAX_LEN).map(|l| (l as f64, e.by_length[l])).collect();
    chart(
        &dir.join("per_length.png"),
        "held-out loss per token by sequence length (short <= 10 count by 1, long by 5)",
        "sequence length",
        "loss per token (nats)",
        &[
            Series::new("trained with token mean", curve(&tok)),
            Series::new("trained with per-sequence mean", curve(&seq)),
        ],
        false,
    )?;
    let (accum_exact, accum_naive) = accumulation_check(&tok_model, &tok_params, &train_data)?;
    println!(
        "\ngradient accumulation, micro-batches of 7, 19 and 38 sequences against the batch of {BATCH}:\n  \
         global token count as denominator: max |Δgrad| {accum_exact:.6}\n  \
         each micro-batch's own mean, averaged: max |Δgrad| {accum_naive:.6}"
    );
    // the claim itself, so that a run that breaks it fails (the README check
    // allows 0.01 absolute, which alone would not tell 0.0087 from 0)
    if !(accum_exact <= 1e-6 && accum_naive > 1e-4) {
        return Err(lossgraph::tensor::Error::value(
            "sequences",
            format!("accumulation check: exact {accum_exact}, naive {accum_naive}"),
        )
        .into());
    }
    println!("\npictures: {}", dir.display());
    print_result(&[
        ("token_mean_loss", format!("{:.4}", tok.token_mean)),
        ("seq_mean_loss", format!("{:.4}", seq.seq_mean)),
        (
            "short_tok",
            format!("{:.4}", bucket(&tok, &test_data, 2, SHORT_MAX)),
        ),
        (
            "short_seq",
            format!("{:.4}", bucket(&seq, &test_data, 2, SHORT_MAX)),
        ),
        (
            "long_tok",
            format!("{:.4}", bucket(&tok, &test_data, SHORT_MAX + 1, MAX_LEN)),
        ),
        (
            "long_seq",
            format!("{:.4}", bucket(&seq, &test_data, SHORT_MAX + 1, MAX_LEN)),
        ),
        ("accum_exact_max_diff", format!("{accum_exact:.6}")),
        ("accum_naive_max_diff", format!("{accum_naive:.6}")),
    ]);
    Ok(())
}
