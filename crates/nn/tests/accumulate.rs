//! Exact reductions across micro-batches and data-parallel shards: a batch
//! of variable-length sequences split into k ∈ {1, 2, 3, 7} parts of unequal
//! valid-token counts. With the whole batch's denominator, the summed
//! gradients of the parts equal the full batch's to 1e-12 in f64 — for
//! cross_entropy with ignore_index, linear_cross_entropy, masked_mean (token
//! and per-row), weighted_mean, and the `mean` of two elementwise losses
//! (mse and bce_with_logits over every output, padding positions included:
//! their count is the element count), by micro-batch accumulation and by
//! rayon shards. The per-part mean (each part divided by its own count, the
//! parts then averaged) does not.

use lossgraph_autodiff::{ErrorKind, Result, Var};
use lossgraph_losses::{
    bce_with_logits, cross_entropy, linear_cross_entropy, masked_mean, mse, weighted_mean,
    BceWithLogitsOptions, CrossEntropyOptions, LinearCrossEntropyOptions, MaskedMeanOptions,
    MseOptions, Reduction, WeightedMeanOptions,
};
use lossgraph_nn::{
    accumulate, data_parallel, select_rows, tanh, Bound, GradAccumulator, Init, Linear, Module,
    ParamGrads, ParamStore,
};
use lossgraph_tensor::Tensor;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const B: usize = 21; // sequences
const T: usize = 9; // positions per padded row
const F: usize = 5; // input features per position
const H: usize = 6;
const V: usize = 7;
const IGNORE: i64 = -100;

/// Padded sequences: `x [B·T, F]`, targets `[B·T]` (IGNORE past each
/// sequence's length), the mask `[B, T]` and per-token weights `[B, T]`;
/// for the elementwise losses, real targets `[B·T, V]` and probabilities
/// in (0, 1) `[B·T, V]`.
struct Data {
    x: Tensor<f64>,
    target: Tensor<i64>,
    mask: Tensor<f64>,
    weight: Tensor<f64>,
    real: Tensor<f64>,
    prob: Tensor<f64>,
}

impl Data {
    fn new() -> Self {
        let mut rng = StdRng::seed_from_u64(5);
        let x = Tensor::<f64>::randn([B * T, F], 0.0, 1.0, 6).unwrap();
        let (mut target, mut mask, mut weight) =
            (vec![IGNORE; B * T], vec![0.0; B * T], vec![0.0; B * T]);
        for b in 0..B {
            // lengths 0..=T: some sequences are empty
            let len = rng.random_range(0..=T);
            for t in 0..len {
                target[b * T + t] = rng.random_range(0..V as i64);
                mask[b * T + t] = 1.0;
                weight[b * T + t] = rng.random_range(0.1..2.0);
            }
        }
        Data {
            x,
            target: Tensor::from_vec(target, [B * T]).unwrap(),
            mask: Tensor::from_vec(mask, [B, T]).unwrap(),
            weight: Tensor::from_vec(weight, [B, T]).unwrap(),
            real: Tensor::randn([B * T, V], 0.0, 1.0, 7).unwrap(),
            prob: Tensor::rand_uniform([B * T, V], 0.05, 0.95, 8).unwrap(),
        }
    }
    /// The sequences `rows` (whole rows: a per-row mean needs them whole).
    fn part(&self, rows: &[usize]) -> Self {
        let tokens: Vec<usize> = rows.iter().flat_map(|&b| b * T..(b + 1) * T).collect();
        let n = rows.len();
        let seq = |t: &Tensor<f64>| {
            select_rows(&t.reshape([B, T]).unwrap(), rows)
                .unwrap()
                .reshape([n, T])
                .unwrap()
        };
        Data {
            x: select_rows(&self.x, &tokens).unwrap(),
            target: select_rows(&self.target, &tokens).unwrap(),
            mask: seq(&self.mask),
            weight: seq(&self.weight),
            real: select_rows(&self.real, &tokens).unwrap(),
            prob: select_rows(&self.prob, &tokens).unwrap(),
        }
    }
    fn rows(&self) -> usize {
        self.mask.dims()[0]
    }
    fn tokens(&self) -> f64 {
        self.mask.as_slice().iter().sum()
    }
    fn kept_rows(&self) -> f64 {
        self.mask
            .as_slice()
            .chunks(T)
            .filter(|r| r.iter().any(|&m| m > 0.0))
            .count() as f64
    }
    fn total_weight(&self) -> f64 {
        self.weight.as_slice().iter().sum()
    }
    /// The elementwise losses' count: every output of every position.
    fn elements(&self) -> f64 {
        self.real.numel() as f64
    }
}

struct Model {
    enc: Linear,
    out: Linear,
}

/// The losses under test, each a mean whose denominator can come from
/// outside, with how a part counts its share of that denominator.
#[derive(Debug, Clone, Copy)]
enum Loss {
    CrossEntropy,
    LinearCrossEntropy,
    MaskedToken,
    MaskedPerRow,
    Weighted,
    Mse,
    BceWithLogits,
}

impl Loss {
    fn count(self, d: &Data) -> f64 {
        match self {
            Loss::CrossEntropy | Loss::LinearCrossEntropy | Loss::MaskedToken => d.tokens(),
            Loss::MaskedPerRow => d.kept_rows(),
            Loss::Weighted => d.total_weight(),
            Loss::Mse | Loss::BceWithLogits => d.elements(),
        }
    }

    /// The loss of `d`, divided by `denominator` when given (else its own).
    fn build(
        self,
        m: &Model,
        p: &Bound<f64>,
        d: &Data,
        denominator: Option<f64>,
    ) -> Result<Var<f64>> {
        let tape = p.tape();
        let h = tanh(&m.enc.forward(p, &tape.constant(d.x.clone()))?)?;
        let per_token = |h: &Var<f64>| {
            let o = CrossEntropyOptions {
                reduction: Reduction::None,
                ..Default::default()
            };
            cross_entropy(&m.out.forward(p, h)?, &d.target, &o)?.reshape([d.rows(), T])
        };
        match self {
            Loss::CrossEntropy => {
                let o = CrossEntropyOptions {
                    denominator,
                    ..Default::default()
                };
                cross_entropy(&m.out.forward(p, &h)?, &d.target, &o)
            }
            Loss::LinearCrossEntropy => {
                let o = LinearCrossEntropyOptions {
                    denominator,
                    chunk: 4,
                    ..Default::default()
                };
                let (w, b) = (p.var(m.out.weight())?, p.var(m.out.bias())?);
                // Linear keeps its weight as [out, in] = [V, H], as the op wants
                linear_cross_entropy(&h, w, Some(b), &d.target, &o)
            }
            Loss::MaskedToken | Loss::MaskedPerRow => {
                let o = MaskedMeanOptions {
                    per_row: matches!(self, Loss::MaskedPerRow),
                    denominator,
                    ..Default::default()
                };
                masked_mean(&per_token(&h)?, &tape.constant(d.mask.clone()), &o)
            }
            Loss::Weighted => {
                let o = WeightedMeanOptions {
                    denominator,
                    ..Default::default()
                };
                weighted_mean(&per_token(&h)?, &tape.constant(d.weight.clone()), &o)
            }
            Loss::Mse => {
                let o = MseOptions {
                    denominator,
                    ..Default::default()
                };
                mse(&m.out.forward(p, &h)?, &tape.constant(d.real.clone()), &o)
            }
            Loss::BceWithLogits => {
                let o = BceWithLogitsOptions {
                    denominator,
                    ..Default::default()
                };
                let y = tape.constant(d.prob.clone());
                bce_with_logits(&m.out.forward(p, &h)?, &y, &o)
            }
        }
    }
}

const LOSSES: [Loss; 7] = [
    Loss::CrossEntropy,
    Loss::LinearCrossEntropy,
    Loss::MaskedToken,
    Loss::MaskedPerRow,
    Loss::Weighted,
    Loss::Mse,
    Loss::BceWithLogits,
];

fn setup() -> (ParamStore<f64>, Model, Data) {
    let mut params = ParamStore::new();
    let init = Init::xavier_uniform();
    let m = Model {
        enc: Linear::new(&mut params, "enc", F, H, init, 1).unwrap(),
        out: Linear::new(&mut params, "out", H, V, init, 2).unwrap(),
    };
    (params, m, Data::new())
}

/// `k` parts of the sequences, of unequal sizes (and so unequal counts).
fn split(k: usize) -> Vec<Vec<usize>> {
    // cut points at the triangular numbers, scaled to B: sizes grow part by part
    let weights: Vec<usize> = (1..=k).collect();
    let total: usize = weights.iter().sum();
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, w) in weights.iter().enumerate() {
        let end = if i + 1 == k {
            B
        } else {
            (start + (w * B).div_ceil(total)).min(B)
        };
        parts.push((start..end).collect());
        start = end;
    }
    parts
}

fn max_diff(a: &ParamGrads<f64>, b: &ParamGrads<f64>) -> f64 {
    a.iter()
        .zip(b.iter())
        .flat_map(|(x, y)| {
            let (x, y) = (x.unwrap(), y.unwrap());
            x.as_slice()
                .iter()
                .zip(y.as_slice())
                .map(|(p, q)| (p - q).abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0, f64::max)
}

#[test]
fn parts_with_the_global_denominator_equal_the_full_batch() {
    let (params, m, data) = setup();
    for k in [1, 2, 3, 7] {
        let parts: Vec<Data> = split(k).iter().map(|rows| data.part(rows)).collect();
        for loss in LOSSES {
            // the parts' counts differ (the test is void otherwise)
            let counts: Vec<f64> = parts.iter().map(|p| loss.count(p)).collect();
            assert!(
                k == 1 || counts.windows(2).any(|w| w[0] != w[1]),
                "{loss:?}: {counts:?}"
            );
            let (full_value, full) = params
                .value_and_grad(|p| loss.build(&m, p, &data, None))
                .unwrap();
            let count = |d: &Data| Ok(loss.count(d));
            let build = |p: &Bound<f64>, d: &Data, den: f64| loss.build(&m, p, d, Some(den));
            let (value, acc) = accumulate(&params, &parts, count, build).unwrap();
            let (dp_value, dp) = data_parallel(&params, &parts, count, build).unwrap();
            let (da, dd) = (max_diff(&acc, &full), max_diff(&dp, &full));
            eprintln!("{loss:?} k={k}: max |Δgrad| accumulate {da:.1e}, data_parallel {dd:.1e}");
            assert!(da <= 1e-12, "{loss:?} k={k}: accumulate differs by {da}");
            assert!(dd <= 1e-12, "{loss:?} k={k}: data_parallel differs by {dd}");
            assert!((value - full_value).abs() <= 1e-12, "{loss:?} k={k}");
            assert!((dp_value - full_value).abs() <= 1e-12, "{loss:?} k={k}");
            // the gradients are not trivially zero
            assert!(full.global_norm() > 1e-3);
        }
    }
}

#[test]
fn the_naive_per_part_mean_differs() {
    let (params, m, data) = setup();
    for k in [2, 3, 7] {
        let parts: Vec<Data> = split(k).iter().map(|rows| data.part(rows)).collect();
        for loss in LOSSES {
            let (_, full) = params
                .value_and_grad(|p| loss.build(&m, p, &data, None))
                .unwrap();
            // each part divided by its own count, the k means averaged
            let mut acc = GradAccumulator::new();
            for d in &parts {
                acc.add(
                    params
                        .value_and_grad(|p| loss.build(&m, p, d, None)?.mul_scalar(1.0 / k as f64))
                        .unwrap(),
                )
                .unwrap();
            }
            let (_, naive) = acc.finish().unwrap();
            let diff = max_diff(&naive, &full);
            eprintln!("{loss:?} k={k}: max |Δgrad| of the per-part mean {diff:.1e}");
            assert!(
                diff > 1e-4,
                "{loss:?} k={k}: the naive mean differs by only {diff}"
            );
        }
    }
}

#[test]
fn bad_counts_and_denominators_are_errors() {
    let (params, m, data) = setup();
    let parts = vec![data.part(&[0, 1]), data.part(&[2])];
    let build = |p: &Bound<f64>, d: &Data, den: f64| Loss::CrossEntropy.build(&m, p, d, Some(den));
    for bad in [-1.0, f64::NAN, f64::INFINITY] {
        let e = accumulate(&params, &parts, |_| Ok(bad), build).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidOption);
        let e = data_parallel(&params, &parts, |_| Ok(bad), build).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidOption);
    }
    let none: Vec<Data> = vec![];
    let e = accumulate(&params, &none, |d| Ok(d.tokens()), build).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidOption);
    // the option itself: negative, or with a reduction other than mean
    let e = params
        .value_and_grad(|p| Loss::CrossEntropy.build(&m, p, &data, Some(-2.0)))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidOption);
    let e = params
        .value_and_grad(|p| {
            let h = p.tape().constant(Tensor::zeros([3, V]).unwrap());
            let ids = Tensor::from_vec(vec![0i64, 1, 2], [3]).unwrap();
            let o = CrossEntropyOptions {
                reduction: Reduction::Sum,
                denominator: Some(3.0),
                ..Default::default()
            };
            cross_entropy(&h, &ids, &o)
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidOption);
}
