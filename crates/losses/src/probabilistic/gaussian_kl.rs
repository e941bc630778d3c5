//! KL divergence from a diagonal Gaussian `N(μ, e^logvar)` to the standard
//! normal: `ℓ = ½ Σ_d (μ_d² + e^{logvar_d} − 1 − logvar_d)` over the last axis,
//! the regulariser of a VAE's evidence lower bound.
//!
//! The encoder predicts `logvar` rather than the variance so that any real
//! output is a valid variance. The sum runs over the latent axis `D`; the
//! reduction then runs over the rows `[...]`. The fused op computes
//! `e^lv − 1 − lv` as `expm1(lv) − lv`, which keeps its digits near the
//! optimum `lv = 0` where both terms are small. A very large `logvar`
//! overflows `e^lv` to `+∞`, which is the true value's magnitude, not an error.
//!
//! Gradients: `∂ℓ/∂μ = μ`, `∂ℓ/∂logvar = ½ (e^logvar − 1)`.

use crate::common::{no_batchmean, reduce, same_shape, Reduction, Upstream};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::{Error, Float, Shape, Tensor};

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

struct GaussianKl {
    reduction: Reduction,
    out: Shape,
    d: usize,
}

impl<T: Float> CustomOp<T> for GaussianKl {
    type Saved = ();
    fn name(&self) -> &str {
        "gaussian_kl"
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, ())> {
        let (mu, lv) = (x[0].as_slice(), x[1].as_slice());
        let (rows, d, half) = (self.out.numel(), self.d, T::of(0.5));
        let loss: Vec<T> = (0..rows)
            .map(|r| {
                let range = r * d..(r + 1) * d;
                let s: T = mu[range.clone()]
                    .iter()
                    .zip(&lv[range])
                    .map(|(&m, &l)| m * m + (l.exp_m1() - l))
                    .sum();
                half * s
            })
            .collect();
        Ok((reduce(loss, self.out.clone(), self.reduction, rows)?, ()))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, ()>) -> Result<Vec<Option<Tensor<T>>>> {
        let (mu, lv) = (cx.inputs[0].as_slice(), cx.inputs[1].as_slice());
        let (rows, d, half) = (self.out.numel(), self.d, T::of(0.5));
        let up = Upstream::new(cx.grad_output, self.reduction, rows);
        let row_of = |i: usize| i.checked_div(d).unwrap_or(0);
        let dmu = cx.needs_grad[0].then(|| {
            mu.iter()
                .enumerate()
                .map(|(i, &m)| up.at(row_of(i)) * m)
                .collect::<Vec<T>>()
        });
        let dlv = cx.needs_grad[1].then(|| {
            lv.iter()
                .enumerate()
                .map(|(i, &l)| up.at(row_of(i)) * half * l.exp_m1())
                .collect::<Vec<T>>()
        });
        let shape = cx.inputs[0].shape();
        Ok(vec![
            dmu.map(|g| Tensor::from_vec(g, shape.clone()))
                .transpose()?,
            dlv.map(|g| Tensor::from_vec(g, shape.clone()))
                .transpose()?,
        ])
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
    use crate::testing::{check_family, Case};
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
        let mu = tape.leaf(Tensor::zeros([1, 1]));
        let lv = tape.leaf(Tensor::full([1, 1], 1e-4f32));
        let o = GaussianKlOptions::default();
        let got = gaussian_kl(&mu, &lv, &o).unwrap().item().unwrap() as f64;
        let want = 0.5 * (1e-4f32 as f64).exp_m1() - 0.5 * (1e-4f32 as f64);
        assert!((got - want).abs() <= 1e-3 * want, "{got} vs {want}");
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let a = tape.leaf(Tensor::zeros([2, 3]));
        let b = tape.leaf(Tensor::zeros([2, 4]));
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
}
