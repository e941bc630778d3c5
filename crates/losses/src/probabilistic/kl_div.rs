//! KL divergence with the model side given as log-probabilities, PyTorch's
//! `F.kl_div`: `ℓ = p (log p − x)` with `x = input` (log-probabilities) and
//! `p = target` (probabilities), or `ℓ = eᵗ (t − x)` with `t = log p` when
//! `log_target` is set.
//!
//! It assumes the input is already a log-probability (a `log_softmax` output):
//! the op does not normalise anything, and `Σ ℓ` over a row is `KL(p ‖ eˣ)`
//! only when both sides are normalised. A zero probability contributes 0
//! (`0 · log 0 = 0`), so targets with exact zeros are safe; negative targets
//! are not probabilities and give NaN, as in PyTorch.
//!
//! Gradients: `∂ℓ/∂x = −p`, `∂ℓ/∂p = log p + 1 − x`. That last one tends to −∞
//! as `p → 0`; at `p = 0` the op returns `−x`, the `p log p` term contributing
//! 0 as under `xlogy`'s convention (PyTorch's own backward gives NaN there).
//! With `log_target`: `∂ℓ/∂x = −eᵗ`, `∂ℓ/∂t = eᵗ (t − x + 1)`.
//!
//! Beware PyTorch's reductions: `"mean"` divides by every element, which is
//! not the KL of a batch; `"batchmean"` (sum / size of axis 0) is.

use crate::common::{reduce, same_shape, Reduction, Upstream};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::{Float, Shape, Tensor};

/// Options of [`kl_div`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct KlDivOptions {
    /// How items are combined (default `mean`); `batchmean` divides the sum
    /// by the size of axis 0.
    pub reduction: Reduction,
    /// The target is given as log-probabilities (default `false`).
    pub log_target: bool,
}

/// KL divergence `p (log p − x)` for log-probability inputs `x`, reduced;
/// PyTorch's `F.kl_div`.
///
/// With `log_target` the target is `t = log p` and the item loss is
/// `eᵗ (t − x)`. Items with `p = 0` contribute 0.
///
/// Gradient: `∂ℓ/∂x = −p`, `∂ℓ/∂p = log p + 1 − x` (`−x` at `p = 0`); with
/// `log_target`, `∂ℓ/∂x = −eᵗ` and `∂ℓ/∂t = eᵗ (t − x + 1)`.
///
/// Options: `reduction` (`mean`; also `none`, `sum`, `batchmean`),
/// `log_target` (`false`). `"none"` returns the input's shape.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{kl_div, KlDivOptions, Reduction};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// // model: uniform over 2 classes; target: (1, 0)
/// let input = tape.leaf(Tensor::from_vec(vec![0.5f64.ln(), 0.5f64.ln()], [1, 2])?);
/// let target = tape.constant(Tensor::from_vec(vec![1.0, 0.0], [1, 2])?);
/// let o = KlDivOptions { reduction: Reduction::BatchMean, ..Default::default() };
/// let loss = kl_div(&input, &target, &o)?;
/// assert!((loss.item()? - 2f64.ln()).abs() < 1e-15); // KL((1,0) ‖ (½,½)) = log 2
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `input` and `target` differ in shape.
pub fn kl_div<T: Float>(input: &Var<T>, target: &Var<T>, opts: &KlDivOptions) -> Result<Var<T>> {
    let shape = input.shape();
    same_shape("kl_div", &shape, &target.shape(), "input and target")?;
    let op = KlDiv {
        reduction: opts.reduction,
        log_target: opts.log_target,
        count: count(&shape, opts.reduction),
    };
    input.tape().clone().apply(op, &[input, target])
}

/// The denominator of the mean: every element, or the size of axis 0 for
/// `batchmean` (1 for a 0-d input).
fn count(shape: &Shape, r: Reduction) -> usize {
    match r {
        Reduction::BatchMean => shape.dims().first().copied().unwrap_or(1),
        _ => shape.numel(),
    }
}

struct KlDiv {
    reduction: Reduction,
    log_target: bool,
    count: usize,
}

impl KlDiv {
    /// Item loss.
    #[inline]
    fn loss<T: Float>(&self, x: T, t: T) -> T {
        if self.log_target {
            let p = t.exp();
            if p == T::zero() {
                T::zero()
            } else {
                p * (t - x)
            }
        } else if t == T::zero() {
            T::zero()
        } else {
            t * (t.ln() - x)
        }
    }
    /// Item partial derivatives `(∂/∂x, ∂/∂target)`.
    #[inline]
    fn grad<T: Float>(&self, x: T, t: T) -> (T, T) {
        if self.log_target {
            let p = t.exp();
            if p == T::zero() {
                (T::zero(), T::zero())
            } else {
                (-p, p * (t - x + T::one()))
            }
        } else if t == T::zero() {
            (-t, -x)
        } else {
            (-t, t.ln() + T::one() - x)
        }
    }
}

impl<T: Float> CustomOp<T> for KlDiv {
    type Saved = ();
    fn name(&self) -> &str {
        "kl_div"
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, ())> {
        let (a, b) = (x[0].as_slice(), x[1].as_slice());
        let loss: Vec<T> = a.iter().zip(b).map(|(&a, &b)| self.loss(a, b)).collect();
        let out = reduce(loss, x[0].shape().clone(), self.reduction, self.count)?;
        Ok((out, ()))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, ()>) -> Result<Vec<Option<Tensor<T>>>> {
        let (a, b) = (cx.inputs[0].as_slice(), cx.inputs[1].as_slice());
        let up = Upstream::new(cx.grad_output, self.reduction, self.count);
        let mut dx = cx.needs_grad[0].then(|| Vec::with_capacity(a.len()));
        let mut dt = cx.needs_grad[1].then(|| Vec::with_capacity(a.len()));
        for (i, (&x, &t)) in a.iter().zip(b).enumerate() {
            let (gx, gt) = self.grad(x, t);
            let u = up.at(i);
            if let Some(d) = dx.as_mut() {
                d.push(u * gx);
            }
            if let Some(d) = dt.as_mut() {
                d.push(u * gt);
            }
        }
        let shape = cx.inputs[0].shape();
        Ok(vec![
            dx.map(|d| Tensor::from_vec(d, shape.clone())).transpose()?,
            dt.map(|d| Tensor::from_vec(d, shape.clone())).transpose()?,
        ])
    }
}

/// The naive twin of [`kl_div`]: `xlogy(p, p) − p·x` (or `eᵗ (t − x)`) with
/// primitive ops; `xlogy` takes the log of `p` where `p ≠ 0` and of 1
/// elsewhere, so that `0 · log 0` is 0.
///
/// # Errors
/// As [`kl_div`].
pub fn kl_div_naive<T: Float>(
    input: &Var<T>,
    target: &Var<T>,
    opts: &KlDivOptions,
) -> Result<Var<T>> {
    let shape = input.shape();
    same_shape("kl_div", &shape, &target.shape(), "input and target")?;
    let loss = if opts.log_target {
        target.exp()?.mul(&target.sub(input)?)?
    } else {
        let tape = input.tape();
        let nonzero = target
            .value()
            .map(|p| if p == T::zero() { T::zero() } else { T::one() });
        let ones = tape.constant(Tensor::ones(shape.clone()));
        let safe = Var::where_select(&nonzero, target, &ones)?;
        target.mul(&safe.log()?)?.sub(&target.mul(input)?)?
    };
    match opts.reduction {
        Reduction::BatchMean => {
            let n = count(&shape, opts.reduction);
            let s = loss.sum_all()?;
            if n == 0 {
                Ok(s)
            } else {
                s.mul_scalar(T::one() / T::of(n as f64))
            }
        }
        r => crate::common::reduce_naive(loss, r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, check_twins, Case};
    use lossgraph_autodiff::Tape;

    /// Log-probabilities (log-softmax of normals) and positive targets.
    fn case(shape: &[usize], seed: u64) -> Case {
        let z = Tensor::randn(shape.to_vec(), 0.0, 1.0, seed).unwrap();
        let p = Tensor::rand_uniform(shape.to_vec(), 0.05, 1.0, seed + 7).unwrap();
        Case::new(vec![z.log_softmax(), p])
    }

    const REDUCTIONS: [Reduction; 4] = [
        Reduction::None,
        Reduction::Sum,
        Reduction::Mean,
        Reduction::BatchMean,
    ];

    #[test]
    fn kl_div_gradcheck_and_twin() {
        for reduction in REDUCTIONS {
            for log_target in [false, true] {
                let o = KlDivOptions {
                    reduction,
                    log_target,
                };
                for (shape, seed) in [(&[6][..], 1), (&[3, 4][..], 2)] {
                    let mut c = case(shape, seed);
                    if log_target {
                        c.inputs[1] = c.inputs[1].log();
                    }
                    check_family(
                        &c,
                        |v| kl_div(&v[0], &v[1], &o),
                        |v| kl_div_naive(&v[0], &v[1], &o),
                    );
                }
            }
        }
    }

    #[test]
    fn zero_target_contributes_nothing() {
        // p = 0: loss 0, ∂/∂x = 0, ∂/∂p = −x (the xlogy convention), as the twin.
        let x = Tensor::from_vec(vec![-0.5, -1.0, -2.0, -0.1], [2, 2]).unwrap();
        let p = Tensor::from_vec(vec![0.0, 0.6, 0.0, 0.4], [2, 2]).unwrap();
        for reduction in REDUCTIONS {
            let o = KlDivOptions {
                reduction,
                log_target: false,
            };
            check_twins(
                &Case::new(vec![x.clone(), p.clone()]),
                |v| kl_div(&v[0], &v[1], &o),
                |v| kl_div_naive(&v[0], &v[1], &o),
            );
        }
        let tape = Tape::<f64>::new();
        let (xv, pv) = (tape.leaf(x), tape.leaf(p));
        let o = KlDivOptions {
            reduction: Reduction::Sum,
            log_target: false,
        };
        let g = kl_div(&xv, &pv, &o).unwrap().backward().unwrap();
        assert_eq!(g.get(&xv).unwrap().as_slice()[0], 0.0);
        assert_eq!(g.get(&pv).unwrap().as_slice()[0], 0.5);
        // an input of −∞ where p = 0 is still a zero contribution
        let xi = tape.leaf(Tensor::from_vec(vec![f64::NEG_INFINITY, -1.0], [2]).unwrap());
        let pi = tape.leaf(Tensor::from_vec(vec![0.0, 1.0], [2]).unwrap());
        assert_eq!(kl_div(&xi, &pi, &o).unwrap().item().unwrap(), 1.0);
    }

    #[test]
    fn batchmean_divides_by_axis_zero() {
        let c = case(&[3, 4], 5);
        let tape = Tape::<f64>::new();
        let (x, p) = (
            tape.leaf(c.inputs[0].clone()),
            tape.leaf(c.inputs[1].clone()),
        );
        let sum = |r| {
            let o = KlDivOptions {
                reduction: r,
                log_target: false,
            };
            kl_div(&x, &p, &o).unwrap().item().unwrap()
        };
        let (s, bm, m) = (
            sum(Reduction::Sum),
            sum(Reduction::BatchMean),
            sum(Reduction::Mean),
        );
        assert!((bm - s / 3.0).abs() < 1e-14);
        assert!((m - s / 12.0).abs() < 1e-14);
    }

    #[test]
    fn shape_mismatch() {
        let tape = Tape::<f64>::new();
        let x = tape.leaf(Tensor::zeros([2, 3]));
        let p = tape.leaf(Tensor::zeros([3, 2]));
        for f in [kl_div::<f64>, kl_div_naive::<f64>] {
            let e = f(&x, &p, &KlDivOptions::default()).err().unwrap();
            assert_eq!(e.kind(), lossgraph_tensor::ErrorKind::ShapeMismatch);
        }
    }
}
