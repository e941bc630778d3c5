//! KL divergence from a diagonal Gaussian `N(μ, e^logvar)` to the standard
//! normal: `ℓ = ½ Σ_d (μ_d² + e^{logvar_d} − 1 − logvar_d)` over the last axis,
//! the regulariser of a VAE's evidence lower bound.
//!
//! The encoder predicts `logvar` rather than the variance so that any real
//! output is a valid variance. The sum runs over the latent axis `D`; the
//! reduction then runs over the rows `[...]`. The fused op computes
//! `e^lv − 1 − lv` as `expm1(lv) − lv`, and near the optimum `lv = 0` (where
//! both terms are small and agree in all but the digits of `lv²/2`) by its
//! Taylor series, so it keeps its digits there. A very large `logvar`
//! overflows `e^lv` to `+∞`, which is the true value's magnitude, not an error.
//!
//! Gradients: `∂ℓ/∂μ = μ`, `∂ℓ/∂logvar = ½ (e^logvar − 1)`.

use crate::common::{
    eager_inputs, fill_two_grads, grads_as_tensors, no_batchmean, reduce, row_fill2, row_sums,
    same_shape, sum_and_grads, Reduction, UnitGrads, Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::simd::{self, vectorized};
use lossgraph_tensor::{Error, Float, Shape, Tensor};
use std::mem::MaybeUninit;

/// Options of [`gaussian_kl`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct GaussianKlOptions {
    /// How rows are combined (default `mean`, over rows).
    pub reduction: Reduction,
}

/// `KL(N(μ, e^logvar) ‖ N(0, 1)) = ½ Σ_d (μ² + e^logvar − 1 − logvar)` per row
/// of the last axis, reduced.
///
/// Gradient: `∂ℓ/∂μ = μ`, `∂ℓ/∂logvar = ½ (e^logvar − 1)`.
///
/// Options: `reduction` (`mean` over rows; `"none"` gives `[...]`).
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{gaussian_kl, GaussianKlOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let mu = tape.leaf(Tensor::from_vec(vec![0.0, 2.0], [1, 2])?);
/// let logvar = tape.leaf(Tensor::from_vec(vec![0.0, 0.0], [1, 2])?);
/// let loss = gaussian_kl(&mu, &logvar, &GaussianKlOptions::default())?;
/// assert_eq!(loss.item()?, 2.0); // ½ (0 + 4)
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when the shapes differ or the inputs are 0-d;
/// `InvalidOption` for `batchmean`.
pub fn gaussian_kl<T: Float>(
    mu: &Var<T>,
    logvar: &Var<T>,
    opts: &GaussianKlOptions,
) -> Result<Var<T>> {
    let (out, d) = validate(mu, logvar, opts)?;
    let op = GaussianKl {
        reduction: opts.reduction,
        out,
        d,
        eager: eager_inputs(opts.reduction, &[mu, logvar]),
    };
    mu.tape().clone().apply(op, &[mu, logvar])
}

/// Check the inputs; return the `[...]` shape and `D`.
fn validate<T: Float>(
    mu: &Var<T>,
    lv: &Var<T>,
    opts: &GaussianKlOptions,
) -> Result<(Shape, usize)> {
    no_batchmean("gaussian_kl", opts.reduction)?;
    let shape = mu.shape();
    same_shape("gaussian_kl", &shape, &lv.shape(), "mu and logvar")?;
    match shape.dims().split_last() {
        Some((&d, lead)) => Ok((Shape::from(lead), d)),
        None => Err(Error::shape(
            "gaussian_kl",
            &[shape.dims()],
            "mu and logvar need a latent axis [..., D]",
        )
        .into()),
    }
}

/// The fused op. With `sum` or `mean` the row structure does not matter
/// (`½ Σ` over every element, over the rows' count), so it is one
/// elementwise pass over chunks of the flat input that also writes the
/// gradients for an upstream gradient of 1 when an input needs one
/// ([`eager_inputs`]); backward rescales them. With `none`, forward sums each
/// row and backward scales each row's gradients by its own upstream value.
struct GaussianKl {
    reduction: Reduction,
    out: Shape,
    d: usize,
    /// Which inputs get their gradient in forward.
    eager: Option<Vec<bool>>,
}

/// `1/k!` for `k = 2 … 14`: the Taylor coefficients of `(e^x − 1 − x)/x²`.
const INV_FACT: [f64; 13] = [
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40320.0,
    1.0 / 362880.0,
    1.0 / 3628800.0,
    1.0 / 39916800.0,
    1.0 / 479001600.0,
    1.0 / 6227020800.0,
    1.0 / 87178291200.0,
];

/// `e^l − 1 − l` without cancellation at any `l`. For `|l| < ½` it is the
/// Taylor series `l²·Σ_{k=2}^{14} l^{k−2}/k!` (the first term left out is
/// under 2e-16 of the sum there): `expm1(l) − l` would subtract two numbers
/// that agree in all but the digits of `l²/2`, leaving nothing of it once
/// `|l|` is below the precision (`l = 1e-10`: `5e-21` from two `1e-10`s).
/// From `|l| = ½` on, `expm1(l) − l` loses at most a few ulps. Branch-free
/// (both are computed), so a loop of it vectorises.
#[inline(always)]
pub(super) fn exp_m1_minus<T: Float>(l: T) -> T {
    let mut s = T::of(INV_FACT[12]);
    for &c in INV_FACT[..12].iter().rev() {
        s = s * l + T::of(c);
    }
    let series = l * l * s;
    let direct = l.fast_exp_m1() - l;
    if l.abs() < T::of(0.5) {
        series
    } else {
        direct
    }
}

/// `μ² + (e^lv − 1 − lv)` for one latent dimension (twice its share of the
/// loss), the second term by [`exp_m1_minus`].
#[inline(always)]
fn item<T: Float>(m: T, l: T) -> T {
    m * m + exp_m1_minus(l)
}

/// `(∂ℓ/∂μ, ∂ℓ/∂logvar) = (μ, ½ (e^lv − 1))` of one latent dimension.
#[inline(always)]
fn item_grad<T: Float>(m: T, l: T) -> (T, T) {
    (m, T::of(0.5) * l.fast_exp_m1())
}

impl GaussianKl {
    /// Gradients for per-row upstream gradients `g` (the `none` case):
    /// each row's part scaled by its own `g[row]`, written once, in chunks
    /// over rayon cut at row boundaries.
    fn grads_per_row<T: Float>(
        &self,
        mu: &[T],
        lv: &[T],
        g: &[T],
        need: &[bool],
    ) -> Vec<Option<Vec<T>>> {
        let n = mu.len();
        fill_two_grads(n, need, |dmu, dlv| {
            row_fill2(n, self.d, dmu, dlv, |r, range, dmu, dlv| {
                let (mu, lv, u) = (&mu[range.clone()], &lv[range], g[r]);
                let half = T::of(0.5);
                vectorized(
                    #[inline(always)]
                    || {
                        if let Some(d) = dmu {
                            for (o, &m) in d[..mu.len()].iter_mut().zip(mu) {
                                *o = MaybeUninit::new(u * m);
                            }
                        }
                        if let Some(d) = dlv {
                            for (o, &l) in d[..lv.len()].iter_mut().zip(lv) {
                                *o = MaybeUninit::new(u * (half * l.fast_exp_m1()));
                            }
                        }
                    },
                )
            })
        })
        .1
    }
}

impl<T: Float> CustomOp<T> for GaussianKl {
    type Saved = UnitGrads<T>;
    fn name(&self) -> &str {
        "gaussian_kl"
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, UnitGrads<T>)> {
        let (mu, lv) = (x[0].as_slice(), x[1].as_slice());
        let (rows, d, half) = (self.out.numel(), self.d, T::of(0.5));
        if self.reduction == Reduction::None {
            let loss: Vec<T> = row_sums(rows, d, |r| {
                let (mu, lv) = (&mu[r.clone()], &lv[r]);
                vectorized(
                    #[inline(always)]
                    || [half * simd::sum_map2(mu, lv, item)],
                )
            })
            .into_iter()
            .map(|[s]| s)
            .collect();
            let out = reduce(loss, self.out.clone(), self.reduction, rows)?;
            return Ok((out, UnitGrads::new(None)));
        }
        let one = Tensor::scalar(T::one());
        let up = Upstream::new(&one, self.reduction, rows);
        let need = self.eager.as_deref().unwrap_or(&[]);
        let (s, grads) = sum_and_grads(mu, lv, item, item_grad, up, need, true);
        let grads = self.eager.is_some().then_some(grads);
        let out = reduce(vec![half * s], Shape::scalar(), self.reduction, rows)?;
        Ok((out, UnitGrads::new(grads)))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, UnitGrads<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let (mu, lv) = (cx.inputs[0].as_slice(), cx.inputs[1].as_slice());
        let rows = self.out.numel();
        let grads =
            cx.saved.take_scaled_or(cx.grad_output, cx.needs_grad, || {
                match Upstream::new(cx.grad_output, self.reduction, rows) {
                    Upstream::Each(g) => self.grads_per_row(mu, lv, g, cx.needs_grad),
                    up => sum_and_grads(mu, lv, item, item_grad, up, cx.needs_grad, false).1,
                }
            });
        grads_as_tensors(grads, cx.inputs[0].shape())
    }
}

/// The naive twin of [`gaussian_kl`]: `½ sum(μ² + exp(lv) − 1 − lv)` over the
/// last axis with primitive ops.
///
/// # Errors
/// As [`gaussian_kl`].
pub fn gaussian_kl_naive<T: Float>(
    mu: &Var<T>,
    logvar: &Var<T>,
    opts: &GaussianKlOptions,
) -> Result<Var<T>> {
    validate(mu, logvar, opts)?;
    let item = mu
        .square()?
        .add(&logvar.exp()?)?
        .add_scalar(-T::one())?
        .sub(logvar)?;
    let axis = mu.shape().ndim() - 1;
    let rows = item.sum(axis, false)?.mul_scalar(T::of(0.5))?;
    crate::common::reduce_naive(rows, opts.reduction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_family, check_twins, Case};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::ErrorKind;

    #[test]
    fn gaussian_kl_gradcheck_and_twin() {
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            let o = GaussianKlOptions { reduction };
            for (shape, seed) in [(&[4][..], 1), (&[3, 5][..], 2), (&[2, 3, 2][..], 3)] {
                check_family(
                    &Case::normal(2, shape, seed),
                    |v| gaussian_kl(&v[0], &v[1], &o),
                    |v| gaussian_kl_naive(&v[0], &v[1], &o),
                );
            }
        }
    }

    #[test]
    fn small_logvar_keeps_its_digits() {
        // e^lv − 1 − lv ≈ lv²/2: the naive form loses it to cancellation
        let tape = Tape::<f32>::new();
        let mu = tape.leaf(Tensor::zeros([1, 1]).unwrap());
        let lv = tape.leaf(Tensor::full([1, 1], 1e-4f32).unwrap());
        let o = GaussianKlOptions::default();
        let got = gaussian_kl(&mu, &lv, &o).unwrap().item().unwrap() as f64;
        let want = 0.5 * (1e-4f32 as f64).exp_m1() - 0.5 * (1e-4f32 as f64);
        assert!((got - want).abs() <= 1e-3 * want, "{got} vs {want}");
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let a = tape.leaf(Tensor::zeros([2, 3]).unwrap());
        let b = tape.leaf(Tensor::zeros([2, 4]).unwrap());
        let s = tape.leaf(Tensor::scalar(0.0));
        let o = GaussianKlOptions::default();
        for f in [gaussian_kl::<f64>, gaussian_kl_naive::<f64>] {
            assert_eq!(
                f(&a, &b, &o).err().unwrap().kind(),
                ErrorKind::ShapeMismatch
            );
            assert_eq!(
                f(&s, &s, &o).err().unwrap().kind(),
                ErrorKind::ShapeMismatch
            );
            let bm = GaussianKlOptions {
                reduction: Reduction::BatchMean,
            };
            assert_eq!(
                f(&a, &a, &bm).err().unwrap().kind(),
                ErrorKind::InvalidOption
            );
        }
    }

    #[test]
    fn large_inputs_and_a_second_backward_agree_with_twin() {
        // above the parallel threshold: long rows, and rows that straddle
        // the chunks of the per-row gradient pass
        for shape in [&[2usize, 40_000][..], &[300, 123][..]] {
            for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
                let o = GaussianKlOptions { reduction };
                let c = Case::normal(2, shape, 17);
                check_twins(
                    &c,
                    |v| gaussian_kl(&v[0], &v[1], &o),
                    |v| gaussian_kl_naive(&v[0], &v[1], &o),
                );
                let tape = Tape::<f64>::new();
                let (m, l) = (
                    tape.leaf(c.inputs[0].clone()),
                    tape.leaf(c.inputs[1].clone()),
                );
                let out = gaussian_kl(&m, &l, &o).unwrap();
                let cot = Tensor::full(out.shape(), 0.5).unwrap();
                let g1 = out.backward_with(cot.clone()).unwrap();
                let g2 = out.backward_with(cot).unwrap();
                for v in [&m, &l] {
                    assert_close(
                        "second backward",
                        &g2.get_or_zeros(v),
                        &g1.get_or_zeros(v),
                        1e-12,
                    );
                }
            }
        }
    }
}
