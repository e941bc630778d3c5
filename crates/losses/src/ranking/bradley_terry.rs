//! Bradley–Terry pairwise preference: `ℓ = −log σ(c − r − m)` for the score
//! `c` of the chosen item and `r` of the rejected one (the reward-model loss).
//!
//! It reads the score gap as a log-odds that the chosen item wins and
//! maximises that likelihood. The naive form `log(sigmoid(x))` breaks for a
//! large negative gap: `σ(x)` underflows to 0 (at x ≈ −88 in f32) and the loss
//! becomes `+∞` although its true value is about `|x|`. The fused op uses
//! `softplus(−x) = max(−x, 0) + log1p(e^−|x|)`, finite for every finite gap.

use super::pointwise::logistic;
use crate::common::{
    check_denominator, no_batchmean, reduce_naive_with, same_shape, Elementwise, Reduction,
};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::Float;

/// Options of [`bradley_terry`].
#[derive(Debug, Clone, PartialEq)]
pub struct BradleyTerryOptions {
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
    /// A gap the chosen score must exceed before the loss fades (default 0.0).
    pub margin: f64,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

impl Default for BradleyTerryOptions {
    fn default() -> Self {
        BradleyTerryOptions {
            reduction: Reduction::Mean,
            margin: 0.0,
            denominator: None,
        }
    }
}

fn check_margin(o: &BradleyTerryOptions) -> Result<()> {
    crate::common::check_option(
        "bradley_terry",
        "margin",
        o.margin,
        o.margin.is_finite(),
        "finite values",
    )
}

/// Bradley–Terry loss `−log σ(chosen − rejected − margin)`, reduced, computed
/// as `softplus(−x)`.
///
/// Gradient, with `x = chosen − rejected − margin`:
/// `∂ℓ/∂chosen = −σ(−x)`, `∂ℓ/∂rejected = σ(−x)`.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{bradley_terry, BradleyTerryOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f32>::new();
/// let chosen = tape.leaf(Tensor::from_vec(vec![-500.0f32, 0.0], [2])?);
/// let rejected = tape.leaf(Tensor::from_vec(vec![500.0f32, 0.0], [2])?);
/// let o = BradleyTerryOptions::default();
/// let loss = bradley_terry(&chosen, &rejected, &o)?;
/// // (1000 + ln 2) / 2, finite where sigmoid-then-log gives +inf
/// assert!((loss.item()? - 500.3466).abs() < 1e-3);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `chosen` and `rejected` differ in shape;
/// `InvalidOption` for a non-finite margin or `batchmean`.
pub fn bradley_terry<T: Float>(
    chosen: &Var<T>,
    rejected: &Var<T>,
    opts: &BradleyTerryOptions,
) -> Result<Var<T>> {
    check_margin(opts)?;
    let m = T::of(opts.margin);
    // softplus(−x) and σ(−x) from one exp and one log1p, branch-free
    // (`logistic`), so the loops of `Elementwise` vectorise.
    Elementwise::new(
        "bradley_terry",
        opts.reduction,
        #[inline(always)]
        move |c: T, r: T| logistic(c - r - m).softplus_neg,
        #[inline(always)]
        move |c: T, r: T| {
            let s = logistic(c - r - m).sigmoid_neg;
            (-s, s)
        },
    )
    .over(opts.denominator)
    .apply(chosen, rejected)
}

/// The naive twin of [`bradley_terry`]: `−log(sigmoid(chosen − rejected − m))`
/// with primitive ops (overflows to `+∞` for large negative gaps).
///
/// # Errors
/// As [`bradley_terry`].
pub fn bradley_terry_naive<T: Float>(
    chosen: &Var<T>,
    rejected: &Var<T>,
    opts: &BradleyTerryOptions,
) -> Result<Var<T>> {
    check_margin(opts)?;
    no_batchmean("bradley_terry", opts.reduction)?;
    check_denominator("bradley_terry", opts.denominator, opts.reduction)?;
    same_shape(
        "bradley_terry",
        &chosen.shape(),
        &rejected.shape(),
        "chosen and rejected",
    )?;
    let x = chosen.sub(rejected)?.add_scalar(-T::of(opts.margin))?;
    reduce_naive_with(x.sigmoid()?.log()?.neg()?, opts.reduction, opts.denominator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, Case, REDUCTIONS};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::{ErrorKind, Tensor};

    #[test]
    fn bradley_terry_gradcheck_and_twin() {
        for (reduction, denominator) in REDUCTIONS {
            for margin in [0.0, 1.5] {
                let o = BradleyTerryOptions {
                    reduction,
                    margin,
                    denominator,
                };
                check_family(
                    &Case::normal(2, &[6], 3),
                    |v| bradley_terry(&v[0], &v[1], &o),
                    |v| bradley_terry_naive(&v[0], &v[1], &o),
                );
                check_family(
                    &Case::normal(2, &[3, 4], 4),
                    |v| bradley_terry(&v[0], &v[1], &o),
                    |v| bradley_terry_naive(&v[0], &v[1], &o),
                );
            }
        }
    }

    /// f32, score gaps of ±1000 and ±200: sigmoid-then-log gives +inf (σ
    /// underflows to 0) while the fused op stays finite and matches f64.
    #[test]
    fn f32_large_gap_stays_finite() {
        let chosen = [-500.0, 500.0, -100.0, 100.0, 0.25];
        let rejected = [500.0, -500.0, 100.0, -100.0, -0.5];
        let o = BradleyTerryOptions {
            reduction: Reduction::None,
            denominator: None,
            margin: 0.0,
        };
        let run32 = |naive: bool| {
            let tape = Tape::<f32>::new();
            let c = tape.leaf(Tensor::from_vec(chosen.map(|x| x as f32).to_vec(), [5]).unwrap());
            let r = tape.leaf(Tensor::from_vec(rejected.map(|x| x as f32).to_vec(), [5]).unwrap());
            let out = if naive {
                bradley_terry_naive(&c, &r, &o).unwrap()
            } else {
                bradley_terry(&c, &r, &o).unwrap()
            };
            let g = out.backward_with(Tensor::ones([5]).unwrap()).unwrap();
            (out.value(), g.get_or_zeros(&c))
        };
        let (naive, _) = run32(true);
        assert!(naive.as_slice()[0].is_infinite() && naive.as_slice()[2].is_infinite());
        let (fused, grad) = run32(false);
        assert!(fused.all_finite() && grad.all_finite());

        let tape = Tape::<f64>::new();
        let c = tape.leaf(Tensor::from_vec(chosen.to_vec(), [5]).unwrap());
        let r = tape.leaf(Tensor::from_vec(rejected.to_vec(), [5]).unwrap());
        let out = bradley_terry(&c, &r, &o).unwrap();
        let g = out.backward_with(Tensor::ones([5]).unwrap()).unwrap();
        for (got, want) in fused.as_slice().iter().zip(out.value().as_slice()) {
            assert!(((*got as f64) - want).abs() <= 1e-5 * (1.0 + want.abs()));
        }
        for (got, want) in grad.as_slice().iter().zip(g.get_or_zeros(&c).as_slice()) {
            assert!(((*got as f64) - want).abs() <= 1e-6);
        }
        assert_eq!(out.value().as_slice()[0], 1000.0);
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let a = tape.leaf(Tensor::zeros([3]).unwrap());
        let b = tape.leaf(Tensor::zeros([4]).unwrap());
        let o = BradleyTerryOptions::default();
        let kind = |r: Result<Var<f64>>| r.unwrap_err().kind();
        assert_eq!(kind(bradley_terry(&a, &b, &o)), ErrorKind::ShapeMismatch);
        let bad = BradleyTerryOptions {
            margin: f64::INFINITY,
            ..o.clone()
        };
        assert_eq!(kind(bradley_terry(&a, &a, &bad)), ErrorKind::InvalidOption);
        let bm = BradleyTerryOptions {
            reduction: Reduction::BatchMean,
            ..o
        };
        assert_eq!(kind(bradley_terry(&a, &a, &bm)), ErrorKind::InvalidOption);
    }
}
