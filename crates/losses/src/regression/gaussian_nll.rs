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
    check_denominator, check_option, chunked_fill, chunked_fill2, eager_inputs, fill_two_grads,
    filled, first_where, grads_as_tensors, mean_denominator, no_batchmean, reduce_naive_with,
    reduce_over, same_shape, slots, unfilled, Reduction, UnitGrads, Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::simd::{self, vectorized, LaneSum};
use lossgraph_tensor::{Error, Float, Shape, Tensor};
use std::mem::MaybeUninit;

/// Options of [`gaussian_nll`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussianNllOptions {
    /// Lower clamp of the variance (default 1e-6, ≥ 0).
    pub eps: f64,
    /// Add the constant `½ log 2π` (default false).
    pub full: bool,
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

impl Default for GaussianNllOptions {
    fn default() -> Self {
        GaussianNllOptions {
            eps: 1e-6,
            full: false,
            reduction: Reduction::Mean,
            denominator: None,
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
    check_denominator("gaussian_nll", opts.denominator, opts.reduction)?;
    let ps = pred.shape();
    same_shape("gaussian_nll", &ps, &target.shape(), "pred and target")?;
    same_shape("gaussian_nll", &ps, &var.shape(), "pred and var")?;
    let v = var.value();
    let v = v.as_slice();
    if let Some(i) = first_where(v, |x| x < T::zero()) {
        let x = v[i];
        return Err(Error::value("gaussian_nll", format!("var[{i}] = {x} is negative")).into());
    }
    Ok(())
}

/// Elements per block of a pass: the block's losses wait in a stack buffer
/// of this many values, then are summed lane-wise.
const BLOCK: usize = 256;

/// The fused op. With `sum` or `mean` and an input that needs a gradient,
/// forward writes the gradients (for an upstream gradient of 1) in its pass
/// over the data, from the same `r/v` as the loss, and backward only
/// rescales them ([`eager_inputs`]); otherwise nothing is saved and backward
/// recomputes from the inputs. The passes run over fixed chunks split over
/// rayon, each a vectorised loop ([`vectorized`]).
struct GaussianNll<T> {
    eps: T,
    constant: T,
    reduction: Reduction,
    /// The `mean`'s denominator from outside (none: the element count).
    denominator: Option<f64>,
    /// Which inputs get their gradient in forward (set by [`gaussian_nll`]).
    eager: Option<Vec<bool>>,
}

impl<T: Float> GaussianNll<T> {
    /// The `mean`'s denominator for `n` elements.
    fn denom(&self, n: usize) -> T {
        mean_denominator(self.denominator, T::of(n as f64))
    }

    /// `(ℓ, r/v, ∂ℓ/∂var)` of one item, with `r = pred − target` and
    /// `v = max(var, eps)` (a select; NaN stays NaN): one `r/v` shared by the
    /// loss and the gradients, which are `±r/v` for pred and target and
    /// `½(1/v − r²/v²)` for var, straight through the clamp.
    #[inline(always)]
    fn item(&self, p: T, t: T, var: T) -> (T, T, T) {
        let half = T::of(0.5);
        let v = if var < self.eps { self.eps } else { var };
        let r = p - t;
        let w = r / v;
        // r·(r/v): no overflow of r² where r²/v is finite
        let loss = half * (v.fast_ln() + r * w) + self.constant;
        (loss, w, half * (v.recip() - w * w))
    }

    /// One block: its losses into `buf` (when `SUM`), `u_i·sign·r/v` into
    /// `da` (when `DA`) and `u_i·∂ℓ/∂var` into `dv` (when `DV`); an output
    /// not written may be empty. The flags are constants of each copy, so
    /// the loop has no branch and skips the work of what it does not write.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn block<const SUM: bool, const DA: bool, const DV: bool>(
        &self,
        [p, t, var]: [&[T]; 3],
        u: impl Fn(usize) -> T,
        sign: T,
        buf: &mut [T],
        da: &mut [MaybeUninit<T>],
        dv: &mut [MaybeUninit<T>],
    ) {
        let n = p.len();
        let (t, var) = (&t[..n], &var[..n]);
        let buf = if SUM { &mut buf[..n] } else { &mut [] };
        let da = if DA { &mut da[..n] } else { &mut [] };
        let dv = if DV { &mut dv[..n] } else { &mut [] };
        for i in 0..n {
            let (l, w, gv) = self.item(p[i], t[i], var[i]);
            let u = u(i);
            if SUM {
                buf[i] = l;
            }
            if DA {
                da[i] = MaybeUninit::new(u * (sign * w));
            }
            if DV {
                dv[i] = MaybeUninit::new(u * gv);
            }
        }
    }

    /// One chunk (inside [`vectorized`]), block by block while each block
    /// is in cache: returns `Σℓ` (when `SUM`, else 0) and writes the
    /// outputs of [`Self::block`].
    #[inline(always)]
    fn chunk<const SUM: bool, const DA: bool, const DV: bool>(
        &self,
        x: [&[T]; 3],
        up: Upstream<'_, T>,
        sign: T,
        da: &mut [MaybeUninit<T>],
        dv: &mut [MaybeUninit<T>],
    ) -> T {
        let n = x[0].len();
        let mut buf = [T::zero(); BLOCK];
        // summed across once, not per block (see `LaneSum`)
        let mut total = LaneSum::default();
        let mut s = 0;
        while s < n {
            let e = (s + BLOCK).min(n);
            let xb = x.map(|v| &v[s..e]);
            let da = if DA { &mut da[s..e] } else { &mut [] };
            let dv = if DV { &mut dv[s..e] } else { &mut [] };
            match up.range(s..e) {
                Upstream::Same(u) => {
                    self.block::<SUM, DA, DV>(xb, |_| u, sign, &mut buf, da, dv);
                }
                Upstream::Each(g) => {
                    let g = &g[..e - s];
                    self.block::<SUM, DA, DV>(xb, |i| g[i], sign, &mut buf, da, dv);
                }
            }
            if SUM {
                total.add(&buf[..e - s]);
            }
            s = e;
        }
        total.total()
    }

    /// One pass over the inputs: `Σℓ` (when `with_sum`; backward does not
    /// need it) and the gradients `u·∂ℓ` for the inputs in `need`
    /// (`[pred, target, var]`), each written once. Pred's and target's
    /// gradients are opposite: the pass writes one of them, and target's is
    /// negated from pred's when both are needed.
    fn sum_and_grads(
        &self,
        x: [&[T]; 3],
        up: Upstream<'_, T>,
        need: &[bool],
        with_sum: bool,
    ) -> (T, Vec<Option<Vec<T>>>) {
        let want = |k: usize| need.get(k).copied().unwrap_or(false);
        let n = x[0].len();
        let sign = if want(0) { T::one() } else { -T::one() };
        let (parts, mut grads) = fill_two_grads(n, &[want(0) || want(1), want(2)], |sa, sv| {
            chunked_fill2(n, sa, sv, |r, da, dv| {
                let (x, up) = (x.map(|v| &v[r.clone()]), up.range(r));
                let (has_a, has_v) = (da.is_some(), dv.is_some());
                let (da, dv) = (da.unwrap_or(&mut []), dv.unwrap_or(&mut []));
                vectorized(
                    #[inline(always)]
                    || match (with_sum, has_a, has_v) {
                        (true, true, true) => self.chunk::<true, true, true>(x, up, sign, da, dv),
                        (true, true, false) => self.chunk::<true, true, false>(x, up, sign, da, dv),
                        (true, false, true) => self.chunk::<true, false, true>(x, up, sign, da, dv),
                        (true, false, false) => {
                            self.chunk::<true, false, false>(x, up, sign, da, dv)
                        }
                        (false, true, true) => self.chunk::<false, true, true>(x, up, sign, da, dv),
                        (false, true, false) => {
                            self.chunk::<false, true, false>(x, up, sign, da, dv)
                        }
                        (false, false, true) => {
                            self.chunk::<false, false, true>(x, up, sign, da, dv)
                        }
                        (false, false, false) => T::zero(),
                    },
                )
            })
        });
        let (da, dv) = (grads[0].take(), grads[1].take());
        let (dp, dt) = match (want(0), want(1)) {
            (true, true) => {
                let dt = da.as_deref().map(negated);
                (da, dt)
            }
            (true, false) => (da, None),
            (false, true) => (None, da),
            (false, false) => (None, None),
        };
        (simd::sum_of(&parts), vec![dp, dt, dv])
    }
}

/// `−x`, element by element, over rayon chunks.
fn negated<T: Float>(x: &[T]) -> Vec<T> {
    let mut out = unfilled(x.len());
    chunked_fill(slots(&mut out, x.len()), |s, o| {
        let x = &x[s..s + o.len()];
        vectorized(
            #[inline(always)]
            || {
                for (o, &v) in o.iter_mut().zip(x) {
                    *o = MaybeUninit::new(-v);
                }
            },
        )
    });
    // SAFETY: the chunks cover every slot and the loop writes each one.
    unsafe { filled(&mut out, x.len()) };
    out
}

impl<T: Float> CustomOp<T> for GaussianNll<T> {
    type Saved = UnitGrads<T>;
    fn name(&self) -> &str {
        "gaussian_nll"
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, UnitGrads<T>)> {
        let x3 = [0, 1, 2].map(|k| x[k].as_slice());
        let n = x3[0].len();
        if let Some(need) = &self.eager {
            let one = Tensor::scalar(T::one());
            let up = Upstream::over(&one, self.reduction, self.denom(n));
            let (s, grads) = self.sum_and_grads(x3, up, need, true);
            let out = reduce_over(vec![s], Shape::scalar(), self.reduction, self.denom(n))?;
            return Ok((out, UnitGrads::new(Some(grads))));
        }
        let out = match self.reduction {
            Reduction::None => {
                let mut out = unfilled(n);
                chunked_fill(slots(&mut out, n), |s, o| {
                    let [p, t, var] = x3.map(|v| &v[s..s + o.len()]);
                    vectorized(
                        #[inline(always)]
                        || {
                            for (i, o) in o.iter_mut().enumerate() {
                                *o = MaybeUninit::new(self.item(p[i], t[i], var[i]).0);
                            }
                        },
                    )
                });
                // SAFETY: the chunks cover every slot and the loop writes each one.
                unsafe { filled(&mut out, n) };
                Tensor::from_vec(out, x[0].shape().clone())?
            }
            r => {
                let s = self
                    .sum_and_grads(x3, Upstream::Same(T::one()), &[], true)
                    .0;
                reduce_over(vec![s], Shape::scalar(), r, self.denom(n))?
            }
        };
        Ok((out, UnitGrads::new(None)))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, UnitGrads<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let x3 = [0, 1, 2].map(|k| cx.inputs[k].as_slice());
        let grads = cx.saved.take_scaled_or(cx.grad_output, cx.needs_grad, || {
            let up = Upstream::over(cx.grad_output, self.reduction, self.denom(x3[0].len()));
            self.sum_and_grads(x3, up, cx.needs_grad, false).1
        });
        grads_as_tensors(grads, cx.inputs[0].shape())
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
/// let target = tape.constant(Tensor::zeros([2])?);
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
        eager: eager_inputs(opts.reduction, &[pred, target, var]),
        eps: T::of(opts.eps),
        constant: T::of(if opts.full {
            0.5 * (2.0 * std::f64::consts::PI).ln()
        } else {
            0.0
        }),
        reduction: opts.reduction,
        denominator: opts.denominator,
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
    reduce_naive_with(loss, opts.reduction, opts.denominator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, Case, REDUCTIONS};
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
            for (reduction, denominator) in REDUCTIONS {
                let o = GaussianNllOptions {
                    full,
                    reduction,
                    denominator,
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
            Tensor::zeros([4]).unwrap(),
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
        let t = tape.leaf(Tensor::zeros([2]).unwrap());
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
        let z = tape.leaf(Tensor::zeros([3]).unwrap());
        let ones = tape.leaf(Tensor::ones([3]).unwrap());
        let o = GaussianNllOptions::default();
        let short = tape.leaf(Tensor::ones([2]).unwrap());
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
