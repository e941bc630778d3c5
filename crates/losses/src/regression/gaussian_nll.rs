//! Gaussian negative log-likelihood with a predicted variance:
//! `ℓ = ½(log v + r²/v)`, `v = max(var, eps)`, `r = pred − target`.
//!
//! The model predicts a mean and a variance per item (heteroscedastic
//! regression); the loss is the NLL of the target under `N(pred, var)`,
//! without the constant `½ log 2π` unless `full`. Items the model finds hard
//! can be given a large variance, which scales down their squared error but
//! pays `½ log v` for it. The variance is clamped below at `eps` so the loss
//! stays finite as it collapses; as in PyTorch, the clamp happens outside
//! the graph, so the gradient w.r.t. `var` is that of the formula at the
//! clamped value even where `var < eps` (it never goes silent). A variance
//! head trained this way can still shrink `var` towards 0 on well-fitted
//! items and make the loss very negative: keep `eps` meaningful.

use crate::common::{
    check_option, no_batchmean, reduce, reduce_naive, same_shape, Reduction, Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::{Error, Float, Tensor};

/// Options of [`gaussian_nll`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussianNllOptions {
    /// Lower clamp of the variance (default 1e-6, ≥ 0).
    pub eps: f64,
    /// Add the constant `½ log 2π` (default false).
    pub full: bool,
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
}

impl Default for GaussianNllOptions {
    fn default() -> Self {
        GaussianNllOptions {
            eps: 1e-6,
            full: false,
            reduction: Reduction::Mean,
        }
    }
}

/// Options, shapes and the sign of `var`, checked before anything is recorded.
fn check<T: Float>(
    pred: &Var<T>,
    target: &Var<T>,
    var: &Var<T>,
    opts: &GaussianNllOptions,
) -> Result<()> {
    let ok = opts.eps >= 0.0 && opts.eps.is_finite();
    check_option("gaussian_nll", "eps", opts.eps, ok, "[0, ∞)")?;
    no_batchmean("gaussian_nll", opts.reduction)?;
    let ps = pred.shape();
    same_shape("gaussian_nll", &ps, &target.shape(), "pred and target")?;
    same_shape("gaussian_nll", &ps, &var.shape(), "pred and var")?;
    let v = var.value();
    if let Some((i, x)) = v
        .as_slice()
        .iter()
        .enumerate()
        .find(|(_, &x)| x < T::zero())
    {
        return Err(Error::value("gaussian_nll", format!("var[{i}] = {x} is negative")).into());
    }
    Ok(())
}

/// The fused op: nothing saved, backward recomputes `r` and `v` per item.
struct GaussianNll<T> {
    eps: T,
    constant: T,
    reduction: Reduction,
}

impl<T: Float> GaussianNll<T> {
    /// The clamped variance; NaN stays NaN.
    #[inline]
    fn clamp(&self, var: T) -> T {
        if var < self.eps {
            self.eps
        } else {
            var
        }
    }
}

impl<T: Float> CustomOp<T> for GaussianNll<T> {
    type Saved = ();
    fn name(&self) -> &str {
        "gaussian_nll"
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, ())> {
        let half = T::of(0.5);
        let loss: Vec<T> = x[0]
            .as_slice()
            .iter()
            .zip(x[1].as_slice())
            .zip(x[2].as_slice())
            .map(|((&p, &t), &var)| {
                let (r, v) = (p - t, self.clamp(var));
                // r·(r/v): no overflow of r² where r²/v is finite
                half * (v.fast_ln() + r * (r / v)) + self.constant
            })
            .collect();
        let n = loss.len();
        Ok((reduce(loss, x[0].shape().clone(), self.reduction, n)?, ()))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, ()>) -> Result<Vec<Option<Tensor<T>>>> {
        let [pred, target, var] = [0, 1, 2].map(|k| cx.inputs[k].as_slice());
        let up = Upstream::new(cx.grad_output, self.reduction, pred.len());
        let half = T::of(0.5);
        let cap = |k: usize| if cx.needs_grad[k] { pred.len() } else { 0 };
        let (mut dp, mut dt, mut dv) = (
            Vec::with_capacity(cap(0)),
            Vec::with_capacity(cap(1)),
            Vec::with_capacity(cap(2)),
        );
        for (i, ((&p, &t), &var)) in pred.iter().zip(target).zip(var).enumerate() {
            let v = self.clamp(var);
            let w = (p - t) / v; // r / v
            let g = up.at(i);
            if cx.needs_grad[0] {
                dp.push(g * w);
            }
            if cx.needs_grad[1] {
                dt.push(-g * w);
            }
            if cx.needs_grad[2] {
                // ½(1/v − r²/v²), straight through the clamp
                dv.push(g * half * (v.recip() - w * w));
            }
        }
        let shape = cx.inputs[0].shape();
        let out = |k: usize, d: Vec<T>| {
            cx.needs_grad[k]
                .then(|| Tensor::from_vec(d, shape.clone()))
                .transpose()
        };
        Ok(vec![out(0, dp)?, out(1, dt)?, out(2, dv)?])
    }
}

/// Gaussian negative log-likelihood of `target` under `N(pred, var)`,
/// reduced; PyTorch's `F.gaussian_nll_loss` (with `var` of `pred`'s shape).
///
/// `ℓ = ½(log v + r²/v)` with `v = max(var, eps)`, plus `½ log 2π` if `full`.
/// Gradient: `∂ℓ/∂pred = r/v`, `∂ℓ/∂target = −r/v`,
/// `∂ℓ/∂var = ½(1/v − r²/v²)` — taken at the clamped `v` but passed straight
/// through the clamp, as PyTorch does.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{gaussian_nll, GaussianNllOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let pred = tape.leaf(Tensor::from_vec(vec![1.0, 0.0], [2])?);
/// let target = tape.constant(Tensor::zeros([2]));
/// let var = tape.leaf(Tensor::from_vec(vec![1.0, 0.0], [2])?);
/// let loss = gaussian_nll(&pred, &target, &var, &GaussianNllOptions::default())?;
/// // ½(0 + 1) and ½ log 1e-6 (the variance 0 is clamped), averaged
/// let want = (0.5 + 0.5 * 1e-6f64.ln()) / 2.0;
/// assert!((loss.item()? - want).abs() < 1e-12);
/// let g = loss.backward()?;
/// // ½(1/v − r²/v²)/2 = 0 for the first item, ½·1e6/2 for the clamped one
/// let gv = g.get(&var).unwrap().to_vec();
/// assert!(gv[0] == 0.0 && (gv[1] - 0.25e6).abs() < 1e-6);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `pred`, `target` and `var` differ in shape;
/// `InvalidValue` when `var` has a negative entry (as PyTorch);
/// `InvalidOption` when `eps` is negative or not finite, or for `batchmean`.
pub fn gaussian_nll<T: Float>(
    pred: &Var<T>,
    target: &Var<T>,
    var: &Var<T>,
    opts: &GaussianNllOptions,
) -> Result<Var<T>> {
    check(pred, target, var, opts)?;
    let op = GaussianNll {
        eps: T::of(opts.eps),
        constant: T::of(if opts.full {
            0.5 * (2.0 * std::f64::consts::PI).ln()
        } else {
            0.0
        }),
        reduction: opts.reduction,
    };
    pred.tape().apply(op, &[pred, target, var])
}

/// The naive twin of [`gaussian_nll`] from primitive ops, clamping as
/// PyTorch does: `v = var + (max(var, eps) − var)` with the correction a
/// constant, then `½(log v + (pred − target)²/v)`.
///
/// # Errors
/// As [`gaussian_nll`].
pub fn gaussian_nll_naive<T: Float>(
    pred: &Var<T>,
    target: &Var<T>,
    var: &Var<T>,
    opts: &GaussianNllOptions,
) -> Result<Var<T>> {
    check(pred, target, var, opts)?;
    let eps = T::of(opts.eps);
    let lift = var
        .value()
        .map(|x| if x < eps { eps - x } else { T::zero() });
    let v = var.add(&var.tape().constant(lift))?;
    let sq = pred.sub(target)?.square()?;
    let mut loss = v.log()?.add(&sq.div(&v)?)?.mul_scalar(T::of(0.5))?;
    if opts.full {
        loss = loss.add_scalar(T::of(0.5 * (2.0 * std::f64::consts::PI).ln()))?;
    }
    reduce_naive(loss, opts.reduction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, Case};
    use lossgraph_autodiff::{ErrorKind, Tape};

    /// pred, target standard normal; var uniform in [0.2, 3].
    fn case(shape: &[usize], seed: u64) -> Case {
        let mut c = Case::regression(shape, seed);
        c.inputs
            .push(Tensor::rand_uniform(shape.to_vec(), 0.2, 3.0, seed + 7).unwrap());
        c
    }

    #[test]
    fn gaussian_nll_gradcheck_and_twin() {
        for full in [false, true] {
            for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
                let o = GaussianNllOptions {
                    full,
                    reduction,
                    ..Default::default()
                };
                for (shape, seed) in [(&[8][..], 20), (&[3, 4][..], 21)] {
                    check_family(
                        &case(shape, seed),
                        |v| gaussian_nll(&v[0], &v[1], &v[2], &o),
                        |v| gaussian_nll_naive(&v[0], &v[1], &v[2], &o),
                    );
                }
            }
        }
    }

    #[test]
    fn gaussian_nll_clamp_passes_gradient_straight_through() {
        // var below eps (a larger eps so finite differences stay away from it)
        let o = GaussianNllOptions {
            eps: 0.5,
            reduction: Reduction::Sum,
            ..Default::default()
        };
        let var = Tensor::from_vec(vec![0.1, 0.0, 0.3, 2.0], [4]).unwrap();
        let c = Case::new(vec![
            Tensor::from_vec(vec![1.0, -0.5, 0.2, 3.0], [4]).unwrap(),
            Tensor::zeros([4]),
            var,
        ]);
        crate::testing::check_twins(
            &c,
            |v| gaussian_nll(&v[0], &v[1], &v[2], &o),
            |v| gaussian_nll_naive(&v[0], &v[1], &v[2], &o),
        );
        let tape = Tape::<f64>::new();
        let vs: Vec<_> = c.inputs.iter().map(|x| tape.leaf(x.clone())).collect();
        let g = gaussian_nll(&vs[0], &vs[1], &vs[2], &o)
            .unwrap()
            .backward()
            .unwrap();
        let dv = g.get(&vs[2]).unwrap().to_vec();
        // v = 0.5 for the first three: ½(1/0.5 − r²/0.25)
        let want = [
            0.5 * (2.0 - 4.0),
            0.5 * (2.0 - 1.0),
            0.5 * (2.0 - 0.16),
            0.5 * (0.5 - 9.0 / 4.0),
        ];
        for (a, b) in dv.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{dv:?} vs {want:?}");
        }
    }

    #[test]
    fn gaussian_nll_f32_large_residual_and_tiny_var() {
        let tape = Tape::<f32>::new();
        let p = tape.leaf(Tensor::from_vec(vec![1e4f32, 0.0], [2]).unwrap());
        let t = tape.leaf(Tensor::zeros([2]));
        let v = tape.leaf(Tensor::from_vec(vec![1e-3f32, 0.0], [2]).unwrap());
        let o = GaussianNllOptions {
            reduction: Reduction::None,
            ..Default::default()
        };
        let y = gaussian_nll(&p, &t, &v, &o).unwrap().value().to_vec();
        let want = [0.5 * (1e-3f64.ln() + 1e8 / 1e-3), 0.5 * 1e-6f64.ln()];
        for (a, b) in y.iter().zip(want) {
            assert!(
                ((*a as f64) - b).abs() <= 1e-6 * b.abs(),
                "{y:?} vs {want:?}"
            );
        }
    }

    #[test]
    fn gaussian_nll_errors() {
        let tape = Tape::<f64>::new();
        let z = tape.leaf(Tensor::zeros([3]));
        let ones = tape.leaf(Tensor::ones([3]));
        let o = GaussianNllOptions::default();
        let short = tape.leaf(Tensor::ones([2]));
        for (p, t, v) in [(&z, &z, &short), (&z, &short, &ones), (&short, &z, &ones)] {
            assert_eq!(
                gaussian_nll(p, t, v, &o).unwrap_err().kind(),
                ErrorKind::ShapeMismatch
            );
            assert_eq!(
                gaussian_nll_naive(p, t, v, &o).unwrap_err().kind(),
                ErrorKind::ShapeMismatch
            );
        }
        let neg = tape.leaf(Tensor::from_vec(vec![1.0, -1e-9, 1.0], [3]).unwrap());
        assert_eq!(
            gaussian_nll(&z, &z, &neg, &o).unwrap_err().kind(),
            ErrorKind::InvalidValue
        );
        for eps in [-1.0, f64::NAN, f64::INFINITY] {
            let o = GaussianNllOptions { eps, ..o };
            assert_eq!(
                gaussian_nll(&z, &z, &ones, &o).unwrap_err().kind(),
                ErrorKind::InvalidOption
            );
        }
        let o = GaussianNllOptions {
            reduction: Reduction::BatchMean,
            ..o
        };
        assert_eq!(
            gaussian_nll(&z, &z, &ones, &o).unwrap_err().kind(),
            ErrorKind::InvalidOption
        );
    }
}
