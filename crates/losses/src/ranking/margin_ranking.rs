//! Margin ranking: `ℓ = max(0, m − y(a − b))` for a pair of scores `a`, `b`
//! and a preference `y ∈ {−1, +1}` (`+1`: `a` should rank above `b`).
//!
//! Only the order of the two scores matters, never their size: the loss is
//! zero once the preferred score leads by the margin, and its gradient is a
//! constant `∓y` while it does not. It is a surrogate for pairwise ranking
//! metrics. A label other than ±1 is an error (`InvalidTarget`).

use super::pointwise::Pointwise;
use crate::common::{check_denominator, no_batchmean, reduce_naive_with, same_shape, Reduction};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::Float;

/// Options of [`margin_ranking`].
#[derive(Debug, Clone, PartialEq)]
pub struct MarginRankingOptions {
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
    /// The lead the preferred score must have (default 0.0; any finite value).
    pub margin: f64,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

impl Default for MarginRankingOptions {
    fn default() -> Self {
        MarginRankingOptions {
            reduction: Reduction::Mean,
            margin: 0.0,
            denominator: None,
        }
    }
}

/// Check options, shapes and labels; every `target` element must be ±1
/// (NaN passes through, as non-finite inputs do).
fn validate<T: Float>(
    a: &Var<T>,
    b: &Var<T>,
    target: &Var<T>,
    o: &MarginRankingOptions,
) -> Result<()> {
    const OP: &str = "margin_ranking";
    no_batchmean(OP, o.reduction)?;
    check_denominator(OP, o.denominator, o.reduction)?;
    crate::common::check_option(
        OP,
        "margin",
        o.margin,
        o.margin.is_finite(),
        "finite values",
    )?;
    same_shape(OP, &a.shape(), &b.shape(), "a and b")?;
    same_shape(OP, &a.shape(), &target.shape(), "a and target")?;
    super::check_labels(OP, "target", &target.value(), [-1.0, 1.0])
}

/// Margin ranking loss `max(0, margin − y(a − b))`, reduced; PyTorch's
/// `F.margin_ranking_loss`.
///
/// Gradient where `x = margin − y(a − b) > 0`: `∂ℓ/∂a = −y`, `∂ℓ/∂b = y`,
/// `∂ℓ/∂y = −(a − b)`; zero elsewhere, the corner `x = 0` included (PyTorch
/// 2.15's `clamp_min` passes nothing there; `tests/edges/` holds the
/// cases). `target` is a real input and gets its gradient too.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{margin_ranking, MarginRankingOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let a = tape.leaf(Tensor::from_vec(vec![2.0, 0.0], [2])?);
/// let b = tape.leaf(Tensor::from_vec(vec![1.0, 1.0], [2])?);
/// let y = tape.constant(Tensor::from_vec(vec![1.0, 1.0], [2])?);
/// let o = MarginRankingOptions { margin: 0.5, ..Default::default() };
/// let loss = margin_ranking(&a, &b, &y, &o)?;
/// assert_eq!(loss.item()?, 0.75); // (max(0, −0.5) + max(0, 1.5)) / 2
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when the three shapes differ; `InvalidTarget` for a label
/// other than ±1; `InvalidOption` for a non-finite margin or `batchmean`.
pub fn margin_ranking<T: Float>(
    a: &Var<T>,
    b: &Var<T>,
    target: &Var<T>,
    opts: &MarginRankingOptions,
) -> Result<Var<T>> {
    validate(a, b, target, opts)?;
    let m = T::of(opts.margin);
    let zero = T::zero();
    // Both closures are branch-free (the hinge is a select on computed
    // values) and inlined into the vectorised loops of `Pointwise`.
    Pointwise::new(
        "margin_ranking",
        opts.reduction,
        #[inline(always)]
        move |[a, b, y]: [T; 3]| (m - y * (a - b)).max(zero),
        #[inline(always)]
        move |[a, b, y]: [T; 3]| {
            let on = m - y * (a - b) > zero;
            [
                if on { -y } else { zero },
                if on { y } else { zero },
                if on { b - a } else { zero },
            ]
        },
    )
    .over(opts.denominator)
    .apply([a, b, target])
}

/// The naive twin of [`margin_ranking`]: `clamp(margin − y·(a − b), 0, ∞)` with
/// primitive ops.
///
/// # Errors
/// As [`margin_ranking`].
pub fn margin_ranking_naive<T: Float>(
    a: &Var<T>,
    b: &Var<T>,
    target: &Var<T>,
    opts: &MarginRankingOptions,
) -> Result<Var<T>> {
    validate(a, b, target, opts)?;
    let x = a
        .sub(b)?
        .mul(target)?
        .neg()?
        .add_scalar(T::of(opts.margin))?;
    reduce_naive_with(
        x.clamp(T::zero(), T::infinity())?,
        opts.reduction,
        opts.denominator,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, check_twins, Case, REDUCTIONS};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::{ErrorKind, Tensor};

    /// Scores and ±1 labels; with `margin` 0.3, `|m − y(a − b)| ≥ 0.05` keeps
    /// finite differences off the corner.
    fn case(n: usize, seed: u64) -> Case {
        let c = Case::normal(2, &[n], seed);
        let y: Vec<f64> = (0..n)
            .map(|i| if i % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let (mut a, b) = (c.inputs[0].to_vec(), c.inputs[1].as_slice());
        for i in 0..n {
            let x = 0.3 - y[i] * (a[i] - b[i]);
            if x.abs() < 0.05 {
                a[i] += 0.2;
            }
        }
        Case::new(vec![
            Tensor::from_vec(a, [n]).unwrap(),
            c.inputs[1].clone(),
            Tensor::from_vec(y, [n]).unwrap(),
        ])
    }

    /// Gradcheck perturbs every input, and a perturbed label is no longer ±1,
    /// so gradcheck runs on `a`, `b` with the labels held constant; the twin
    /// check then compares all three gradients, the label's included.
    #[test]
    fn margin_ranking_gradcheck_and_twin() {
        for (reduction, denominator) in REDUCTIONS {
            for margin in [0.0, 0.3] {
                let o = MarginRankingOptions {
                    reduction,
                    margin,
                    denominator,
                };
                for (n, seed) in [(7, 1), (12, 2)] {
                    let c = case(n, seed);
                    let y = c.inputs[2].clone();
                    let label = |v: &[Var<f64>]| v[0].tape().constant(y.clone());
                    check_family(
                        &Case::new(c.inputs[..2].to_vec()),
                        |v| margin_ranking(&v[0], &v[1], &label(v), &o),
                        |v| margin_ranking_naive(&v[0], &v[1], &label(v), &o),
                    );
                    check_twins(
                        &c,
                        |v| margin_ranking(&v[0], &v[1], &v[2], &o),
                        |v| margin_ranking_naive(&v[0], &v[1], &v[2], &o),
                    );
                }
            }
        }
    }

    /// At the corner `x = 0` PyTorch 2.15's `F.margin_ranking_loss` (and
    /// `clamp_min`) pass no gradient: checked against PyTorch in
    /// `tests/edges/margin_ranking.json`; here, that the fused op and its twin
    /// (through the `clamp` primitive) agree on it.
    #[test]
    fn corner_passes_no_gradient_as_pytorch() {
        // a = b with margin 0: x = 0 exactly
        let c = Case::new(vec![
            Tensor::from_vec(vec![1.0, 2.0], [2]).unwrap(),
            Tensor::from_vec(vec![1.0, 2.0], [2]).unwrap(),
            Tensor::from_vec(vec![1.0, -1.0], [2]).unwrap(),
        ]);
        let o = MarginRankingOptions {
            reduction: Reduction::Sum,
            denominator: None,
            margin: 0.0,
        };
        check_twins(
            &c,
            |v| margin_ranking(&v[0], &v[1], &v[2], &o),
            |v| margin_ranking_naive(&v[0], &v[1], &v[2], &o),
        );
        let tape = Tape::<f64>::new();
        let v: Vec<_> = c.inputs.iter().map(|x| tape.leaf(x.clone())).collect();
        let g = margin_ranking(&v[0], &v[1], &v[2], &o)
            .unwrap()
            .backward()
            .unwrap();
        for x in &v {
            assert_eq!(g.get(x).unwrap().to_vec(), vec![0.0, 0.0]);
        }
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let a = tape.leaf(Tensor::zeros([3]).unwrap());
        let y = tape.leaf(Tensor::from_vec(vec![1.0, 0.0, -1.0], [3]).unwrap());
        let ok = tape.leaf(Tensor::ones([3]).unwrap());
        let short = tape.leaf(Tensor::zeros([2]).unwrap());
        let o = MarginRankingOptions::default();
        let kind = |r: Result<Var<f64>>| r.unwrap_err().kind();
        assert_eq!(
            kind(margin_ranking(&a, &a, &y, &o)),
            ErrorKind::InvalidTarget
        );
        assert_eq!(
            kind(margin_ranking(&a, &short, &ok, &o)),
            ErrorKind::ShapeMismatch
        );
        assert_eq!(
            kind(margin_ranking(&a, &a, &short, &o)),
            ErrorKind::ShapeMismatch
        );
        let bad = MarginRankingOptions {
            margin: f64::NAN,
            ..o.clone()
        };
        assert_eq!(
            kind(margin_ranking(&a, &a, &ok, &bad)),
            ErrorKind::InvalidOption
        );
        let bm = MarginRankingOptions {
            reduction: Reduction::BatchMean,
            ..o
        };
        assert_eq!(
            kind(margin_ranking(&a, &a, &ok, &bm)),
            ErrorKind::InvalidOption
        );
        assert_eq!(tape.len(), 4, "errors record nothing");
    }
}
