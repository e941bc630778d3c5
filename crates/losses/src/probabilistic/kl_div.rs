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

use crate::checks;
use crate::common::{
    eager_inputs, grads_as_tensors, map_items, reduce, same_shape, sum_and_grads, Reduction,
    UnitGrads, Upstream,
};
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
        eager: eager_inputs(opts.reduction, &[input, target]),
    };
    let out = input.tape().clone().apply(op, &[input, target])?;
    checks::log_probs("kl_div", input);
    Ok(out)
}

/// The denominator of the mean: every element, or the size of axis 0 for
/// `batchmean` (1 for a 0-d input).
fn count(shape: &Shape, r: Reduction) -> usize {
    match r {
        Reduction::BatchMean => shape.dims().first().copied().unwrap_or(1),
        _ => shape.numel(),
    }
}

/// The fused op: an elementwise loss with its own mean denominator
/// (`count`), run through the vectorised chunked passes of `common`. With
/// `sum`, `mean` or `batchmean` and an input that needs a gradient, forward
/// writes the gradients for an upstream gradient of 1 in the same pass as
/// the sum ([`eager_inputs`]); backward rescales them.
struct KlDiv {
    reduction: Reduction,
    log_target: bool,
    count: usize,
    /// Which inputs get their gradient in forward.
    eager: Option<Vec<bool>>,
}

// The item functions, written with selects on computed values (no branch):
// the loops over them vectorise, and a zero probability still gives exactly
// the values of the `0 · log 0 = 0` convention (the discarded side may be
// NaN). `fast_ln`/`fast_exp` are the exact std functions in f64.

/// `p (log p − x)`, 0 at `p = 0`.
#[inline(always)]
fn loss_p<T: Float>(x: T, p: T) -> T {
    let l = p * (p.fast_ln() - x);
    if p == T::zero() {
        T::zero()
    } else {
        l
    }
}

/// `(∂/∂x, ∂/∂p) = (−p, log p + 1 − x)`, `(0, −x)` at `p = 0`.
#[inline(always)]
fn grad_p<T: Float>(x: T, p: T) -> (T, T) {
    let dp = p.fast_ln() + T::one() - x;
    (-p, if p == T::zero() { -x } else { dp })
}

/// `eᵗ (t − x)`, 0 where `eᵗ` is 0.
#[inline(always)]
fn loss_log<T: Float>(x: T, t: T) -> T {
    let p = t.fast_exp();
    let l = p * (t - x);
    if p == T::zero() {
        T::zero()
    } else {
        l
    }
}

/// `(∂/∂x, ∂/∂t) = (−eᵗ, eᵗ (t − x + 1))`, `(0, 0)` where `eᵗ` is 0.
#[inline(always)]
fn grad_log<T: Float>(x: T, t: T) -> (T, T) {
    let p = t.fast_exp();
    let dt = p * (t - x + T::one());
    let zero = p == T::zero();
    (
        if zero { T::zero() } else { -p },
        if zero { T::zero() } else { dt },
    )
}

impl KlDiv {
    /// [`sum_and_grads`] with the item functions of this target form.
    fn pass<T: Float>(
        &self,
        x: &[T],
        t: &[T],
        up: Upstream<'_, T>,
        need: &[bool],
        with_sum: bool,
    ) -> (T, Vec<Option<Vec<T>>>) {
        if self.log_target {
            sum_and_grads(x, t, loss_log, grad_log, up, need, with_sum)
        } else {
            sum_and_grads(x, t, loss_p, grad_p, up, need, with_sum)
        }
    }
}

impl<T: Float> CustomOp<T> for KlDiv {
    type Saved = UnitGrads<T>;
    fn name(&self) -> &str {
        "kl_div"
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, UnitGrads<T>)> {
        let (a, b) = (x[0].as_slice(), x[1].as_slice());
        let shape = x[0].shape().clone();
        if self.reduction == Reduction::None {
            let loss = if self.log_target {
                map_items(a, b, loss_log)
            } else {
                map_items(a, b, loss_p)
            };
            return Ok((Tensor::from_vec(loss, shape)?, UnitGrads::new(None)));
        }
        let one = Tensor::scalar(T::one());
        let up = Upstream::new(&one, self.reduction, self.count);
        let (s, grads) = match &self.eager {
            Some(need) => {
                let (s, g) = self.pass(a, b, up, need, true);
                (s, Some(g))
            }
            None => (self.pass(a, b, up, &[], true).0, None),
        };
        let out = reduce(vec![s], Shape::scalar(), self.reduction, self.count)?;
        Ok((out, UnitGrads::new(grads)))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, UnitGrads<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let (a, b) = (cx.inputs[0].as_slice(), cx.inputs[1].as_slice());
        let grads = cx.saved.take_scaled_or(cx.grad_output, cx.needs_grad, || {
            let up = Upstream::new(cx.grad_output, self.reduction, self.count);
            self.pass(a, b, up, cx.needs_grad, false).1
        });
        grads_as_tensors(grads, cx.inputs[0].shape())
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
        let ones = tape.constant(Tensor::ones(shape.clone())?);
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
    use crate::testing::{assert_close, check_family, check_twins, Case};
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
        let x = tape.leaf(Tensor::zeros([2, 3]).unwrap());
        let p = tape.leaf(Tensor::zeros([3, 2]).unwrap());
        for f in [kl_div::<f64>, kl_div_naive::<f64>] {
            let e = f(&x, &p, &KlDivOptions::default()).err().unwrap();
            assert_eq!(e.kind(), lossgraph_tensor::ErrorKind::ShapeMismatch);
        }
    }

    #[test]
    fn large_inputs_and_a_second_backward_agree_with_twin() {
        // above the parallel threshold, with exact zeros in the target
        let mut c = case(&[40, 1000], 9);
        let p: Vec<f64> = c.inputs[1]
            .as_slice()
            .iter()
            .enumerate()
            .map(|(i, &p)| if i % 7 == 0 { 0.0 } else { p })
            .collect();
        c.inputs[1] = Tensor::from_vec(p, [40, 1000]).unwrap();
        for reduction in REDUCTIONS {
            for log_target in [false, true] {
                let o = KlDivOptions {
                    reduction,
                    log_target,
                };
                let mut c = c.clone();
                if log_target {
                    c.inputs[1] = c.inputs[1].map(|p| if p == 0.0 { -800.0 } else { p.ln() });
                }
                check_twins(
                    &c,
                    |v| kl_div(&v[0], &v[1], &o),
                    |v| kl_div_naive(&v[0], &v[1], &o),
                );
                // forward's gradients serve the first backward; a second
                // recomputes them
                let tape = Tape::<f64>::new();
                let (x, t) = (
                    tape.leaf(c.inputs[0].clone()),
                    tape.leaf(c.inputs[1].clone()),
                );
                let out = kl_div(&x, &t, &o).unwrap();
                let cot = Tensor::full(out.shape(), 0.5).unwrap();
                let g1 = out.backward_with(cot.clone()).unwrap();
                let g2 = out.backward_with(cot).unwrap();
                for v in [&x, &t] {
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
