//! Triplet loss: an anchor should be closer to its positive than to its
//! negative by a margin, `ℓ = max(0, d(a, p) − d(a, n) + m)`.
//!
//! Two distances: `squared` (the default) uses `‖a − p‖²`, a smooth quadratic;
//! otherwise `‖a − p + ε‖₂` with `ε = 1e-6` added to every component of the
//! difference, exactly as PyTorch's `F.triplet_margin_loss` (through
//! `F.pairwise_distance`) does, so the results match it. Triplets that already
//! satisfy the margin give no gradient, which is why mining useful (hard but
//! correct) negatives decides how well it trains.

use super::for_row_blocks;
use crate::common::{
    check_option, eager_inputs, filled, grads_as_tensors, max_abs_map2, no_batchmean,
    norm_from_sum_sq, pow2_scale, reduce, reduce_naive, scaled_sum_sq2, slots, sum_sq_in_range,
    unfilled, Reduction, UnitGrads, Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::simd::{self, vectorized};
use lossgraph_tensor::{Error, Float, Tensor};
use std::mem::MaybeUninit;

const OP: &str = "triplet";
/// PyTorch's `pairwise_distance` eps, added to each difference.
const EPS: f64 = 1e-6;

/// Options of [`triplet`].
#[derive(Debug, Clone, PartialEq)]
pub struct TripletOptions {
    /// How triplets are combined (default `mean`).
    pub reduction: Reduction,
    /// The lead the negative's distance must have (default 1.0).
    pub margin: f64,
    /// Squared distances (default true); false gives PyTorch's Euclidean form.
    pub squared: bool,
}

impl Default for TripletOptions {
    fn default() -> Self {
        TripletOptions {
            reduction: Reduction::Mean,
            margin: 1.0,
            squared: true,
        }
    }
}

fn validate<T: Float>(a: &Var<T>, p: &Var<T>, n: &Var<T>, o: &TripletOptions) -> Result<()> {
    no_batchmean(OP, o.reduction)?;
    check_option(
        OP,
        "margin",
        o.margin,
        o.margin.is_finite(),
        "finite values",
    )?;
    let (da, dp, dn) = (a.dims(), p.dims(), n.dims());
    if da != dp || da != dn || da.is_empty() {
        return Err(Error::shape(
            OP,
            &[&da, &dp, &dn],
            "anchor, positive and negative must be [..., D] alike",
        )
        .into());
    }
    Ok(())
}

/// The loss's options; [`TripletOp`] is the fused op built on them.
struct Triplet<T> {
    margin: T,
    squared: bool,
    reduction: Reduction,
}

impl<T: Float> Triplet<T> {
    /// The distance between two rows: `‖x − y‖²` or `‖x − y + ε‖`
    /// (vectorised inside a [`vectorized`] region).
    /// The Euclidean norm comes from a scaled sum of squares
    /// ([`norm_from_sum_sq`]) when the plain one overflows or underflows;
    /// the squared form's range is handled by [`Triplet::hinge_arg`].
    #[inline(always)]
    fn dist(&self, x: &[T], y: &[T]) -> T {
        if self.squared {
            simd::sum_map2(
                x,
                y,
                #[inline(always)]
                |a, b| (a - b) * (a - b),
            )
        } else {
            let e = T::of(EPS);
            let f = move |a: T, b: T| a - b + e;
            let ss = simd::sum_map2(
                x,
                y,
                #[inline(always)]
                |a, b| f(a, b) * f(a, b),
            );
            norm_from_sum_sq(ss, x, y, f).0
        }
    }

    /// `d⁺ − d⁻ + m` from the distances `dp`, `dn` of [`Triplet::dist`]. In
    /// the squared form, when either sum of squares is out of
    /// [`sum_sq_in_range`] (`∞ − ∞` once both overflow, digits lost once
    /// they underflow), both are recomputed over one power-of-two scale `s`
    /// near the largest difference: `((t⁺ − t⁻)·s)·s + m`, `∞` only where the
    /// value truly overflows. Normal magnitudes pay two compares per row.
    #[inline(always)]
    fn hinge_arg(&self, a: &[T], p: &[T], n: &[T], dp: T, dn: T) -> T {
        if !self.squared || (sum_sq_in_range(dp) && sum_sq_in_range(dn)) {
            return dp - dn + self.margin;
        }
        let diff = |x: T, y: T| x - y;
        let m = max_abs_map2(a, p, diff).max(max_abs_map2(a, n, diff));
        match pow2_scale(m) {
            Some(s) => {
                let tp = scaled_sum_sq2(a, p, s, diff);
                let tn = scaled_sum_sq2(a, n, s, diff);
                ((tp - tn) * s) * s + self.margin
            }
            None => dp - dn + self.margin,
        }
    }
    /// Whether the hinge passes the gradient at `x = d⁺ − d⁻ + m`: strictly
    /// inside, for both forms (the squared form has no PyTorch twin:
    /// subgradient 0; the Euclidean form follows PyTorch 2.15's `clamp_min`,
    /// which passes nothing at the corner).
    #[inline(always)]
    fn active(&self, x: T) -> bool {
        x > T::zero()
    }

    /// One triplet of rows: the loss `max(0, d⁺ − d⁻ + m)` and, for the
    /// outputs present, the gradients with upstream gradient `g`: with `∇d`
    /// the gradient of the distance in its first row — `2(x − y)` squared,
    /// `(x − y + ε)/d` Euclidean (0 at `d = 0`) — `∂ℓ/∂a = ∇d⁺ − ∇d⁻`,
    /// `∂ℓ/∂p = −∇d⁺`, `∂ℓ/∂n = ∇d⁻`, or zeros where the hinge is inactive.
    /// Branches are per row; each output's loop over the row is branch-free
    /// (the row is in cache, so one loop per output costs little).
    #[inline(always)]
    fn row(&self, a: &[T], p: &[T], n: &[T], g: T, outs: [Option<&mut [MaybeUninit<T>]>; 3]) -> T {
        let (zero, two, e) = (T::zero(), T::of(2.0), T::of(EPS));
        let d = a.len();
        let (p, n) = (&p[..d], &n[..d]);
        let dp = self.dist(a, p);
        let dn = self.dist(a, n);
        let x = self.hinge_arg(a, p, n, dp, dn);
        // ∂d/∂x for d(x, y): 2(x − y) squared, (x − y + ε)/d Euclidean (0 at d = 0);
        // an inactive hinge passes nothing (both factors 0)
        let on = self.active(x);
        let (cp, cn, shift) = if !on {
            (zero, zero, zero)
        } else if self.squared {
            (g * two, g * two, zero)
        } else {
            let inv = |d: T| if d > zero { g / d } else { zero };
            (inv(dp), inv(dn), e)
        };
        let [ga, gp, gn] = outs;
        if let Some(o) = ga {
            let o = &mut o[..d];
            for j in 0..d {
                let wp = cp * (a[j] - p[j] + shift);
                let wn = cn * (a[j] - n[j] + shift);
                o[j] = MaybeUninit::new(wp - wn);
            }
        }
        if let Some(o) = gp {
            let o = &mut o[..d];
            for j in 0..d {
                o[j] = MaybeUninit::new(-(cp * (a[j] - p[j] + shift)));
            }
        }
        if let Some(o) = gn {
            let o = &mut o[..d];
            for j in 0..d {
                o[j] = MaybeUninit::new(cn * (a[j] - n[j] + shift));
            }
        }
        x.max(zero)
    }
}

/// The fused op. One pass over the rows computes each triplet's loss and,
/// when gradients are wanted, the gradients of its rows while they are in
/// cache: forward does it for an upstream gradient of 1 with `sum`/`mean`
/// ([`eager_inputs`]) and backward only rescales; otherwise backward makes
/// the same pass with the real upstream gradients (the distances are
/// recomputed from the inputs the tape holds, nothing else is saved).
struct TripletOp<T> {
    t: Triplet<T>,
    /// Which inputs get their gradient in forward.
    eager: Option<Vec<bool>>,
}

impl<T: Float> TripletOp<T> {
    /// The loss of every triplet and the gradients of the inputs in `need`
    /// for upstream gradients `up`, in one pass over the rows (blocks of rows
    /// over rayon, each output written once, no zero fill).
    fn pass(
        &self,
        x: [&Tensor<T>; 3],
        up: Upstream<'_, T>,
        need: &[bool],
    ) -> (Vec<T>, Vec<Option<Vec<T>>>) {
        let (a, p, n) = (x[0].as_slice(), x[1].as_slice(), x[2].as_slice());
        let d = x[0].shape().last_dim();
        let len = a.len();
        let rows = x[0].shape().reduced(x[0].ndim() - 1, false).numel();
        let want = |k: usize| need.get(k).copied().unwrap_or(false);
        let mut loss = unfilled(rows);
        let mut grads: [Option<Vec<T>>; 3] =
            std::array::from_fn(|k| want(k).then(|| unfilled(len)));
        let [g0, g1, g2] = grads.each_mut().map(|g| g.as_mut().map(|b| slots(b, len)));
        let t = &self.t;
        for_row_blocks(
            rows,
            d,
            [(Some(slots(&mut loss, rows)), 1), (g0, d), (g1, d), (g2, d)],
            |r, [l, mut ga, mut gp, mut gn]| {
                let e = r.start * d;
                let (a, p, n) = (&a[e..r.end * d], &p[e..], &n[e..]);
                let l = l.unwrap_or_default();
                let up = up.range(r);
                vectorized(
                    #[inline(always)]
                    || {
                        for (i, l) in l.iter_mut().enumerate() {
                            let rr = i * d..(i + 1) * d;
                            let outs = [&mut ga, &mut gp, &mut gn]
                                .map(|o| o.as_deref_mut().map(|o| &mut o[rr.clone()]));
                            let li = t.row(&a[rr.clone()], &p[rr.clone()], &n[rr], up.at(i), outs);
                            *l = MaybeUninit::new(li);
                        }
                    },
                )
            },
        );
        // SAFETY: the blocks cover every row, and `row` wrote the loss and
        // each present gradient of each row.
        unsafe {
            filled(&mut loss, rows);
            for b in grads.iter_mut().flatten() {
                filled(b, len);
            }
        }
        (loss, grads.into_iter().collect())
    }
}

impl<T: Float> CustomOp<T> for TripletOp<T> {
    type Saved = UnitGrads<T>;
    fn name(&self) -> &str {
        OP
    }
    fn is_mean(&self) -> bool {
        self.t.reduction.is_mean()
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, UnitGrads<T>)> {
        let out_shape = x[0].shape().reduced(x[0].ndim() - 1, false);
        let rows = out_shape.numel();
        let one = Tensor::scalar(T::one());
        // unit upstream gradients (only used for the eager gradients, which
        // `none` does not have)
        let up = match self.t.reduction {
            Reduction::None => Upstream::Same(T::one()),
            r => Upstream::new(&one, r, rows),
        };
        let need = self.eager.as_deref().unwrap_or(&[]);
        let (loss, grads) = self.pass([x[0], x[1], x[2]], up, need);
        let out = reduce(loss, out_shape, self.t.reduction, rows)?;
        Ok((out, UnitGrads::new(self.eager.is_some().then_some(grads))))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, UnitGrads<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let x = &cx.inputs;
        let grads = cx.saved.take_scaled_or(cx.grad_output, cx.needs_grad, || {
            let rows = x[0].shape().reduced(x[0].ndim() - 1, false).numel();
            let up = Upstream::new(cx.grad_output, self.t.reduction, rows);
            self.pass([&x[0], &x[1], &x[2]], up, cx.needs_grad).1
        });
        grads_as_tensors(grads, x[0].shape())
    }
}

/// Triplet margin loss `max(0, d(a, p) − d(a, n) + margin)` per row of
/// `[..., D]` inputs, reduced; `"none"` gives `[...]`. With `squared = false`
/// it is PyTorch's `F.triplet_margin_loss` (p = 2, eps = 1e-6, no swap).
///
/// Gradient where the hinge is active (strictly positive, in both forms: at
/// the corner PyTorch 2.15's `clamp_min` passes nothing), with `∇d(x, y)` the gradient of the
/// distance in `x` — `2(x − y)` squared, `(x − y + ε)/‖x − y + ε‖` Euclidean
/// (0 at distance 0): `∂ℓ/∂a = ∇d(a, p) − ∇d(a, n)`, `∂ℓ/∂p = −∇d(a, p)`,
/// `∂ℓ/∂n = ∇d(a, n)`.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{triplet, TripletOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let a = tape.leaf(Tensor::from_vec(vec![0.0, 0.0], [1, 2])?);
/// let p = tape.leaf(Tensor::from_vec(vec![1.0, 0.0], [1, 2])?);
/// let n = tape.leaf(Tensor::from_vec(vec![0.0, 1.0], [1, 2])?);
/// let loss = triplet(&a, &p, &n, &TripletOptions::default())?;
/// assert_eq!(loss.item()?, 1.0); // 1 − 1 + margin 1
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` unless all three are `[..., D]` of one shape;
/// `InvalidOption` for a non-finite margin or `batchmean`.
pub fn triplet<T: Float>(
    anchor: &Var<T>,
    positive: &Var<T>,
    negative: &Var<T>,
    opts: &TripletOptions,
) -> Result<Var<T>> {
    validate(anchor, positive, negative, opts)?;
    let op = TripletOp {
        t: Triplet {
            margin: T::of(opts.margin),
            squared: opts.squared,
            reduction: opts.reduction,
        },
        eager: eager_inputs(opts.reduction, &[anchor, positive, negative]),
    };
    anchor
        .tape()
        .clone()
        .apply(op, &[anchor, positive, negative])
}

/// The naive twin of [`triplet`], from primitive ops: `sum(square(a − p))` (or
/// `sqrt` of it with `ε` added), then `relu` (squared) or `clamp(·, 0, ∞)`
/// (Euclidean, PyTorch's corner rule).
///
/// # Errors
/// As [`triplet`].
pub fn triplet_naive<T: Float>(
    anchor: &Var<T>,
    positive: &Var<T>,
    negative: &Var<T>,
    opts: &TripletOptions,
) -> Result<Var<T>> {
    validate(anchor, positive, negative, opts)?;
    let last = anchor.dims().len() - 1;
    let dist = |other: &Var<T>| -> Result<Var<T>> {
        let r = anchor.sub(other)?;
        if opts.squared {
            r.square()?.sum(last, false)
        } else {
            r.add_scalar(T::of(EPS))?.square()?.sum(last, false)?.sqrt()
        }
    };
    let x = dist(positive)?
        .sub(&dist(negative)?)?
        .add_scalar(T::of(opts.margin))?;
    let loss = if opts.squared {
        x.relu()?
    } else {
        x.clamp(T::zero(), T::infinity())?
    };
    reduce_naive(loss, opts.reduction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, Case};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::ErrorKind;

    /// Normal triplets, with any triplet within 0.05 of the hinge corner moved
    /// off it (finite differences need a smooth neighbourhood).
    fn case(shape: &[usize], seed: u64, o: &TripletOptions) -> Case {
        let mut c = Case::normal(3, shape, seed);
        let d = *shape.last().unwrap();
        let rows = c.inputs[0].numel() / d;
        let t = Triplet {
            margin: o.margin,
            squared: o.squared,
            reduction: Reduction::None,
        };
        let mut neg = c.inputs[2].to_vec();
        let (a, p) = (c.inputs[0].as_slice(), c.inputs[1].as_slice());
        for i in 0..rows {
            let r = i * d..(i + 1) * d;
            let x = t.dist(&a[r.clone()], &p[r.clone()]) - t.dist(&a[r.clone()], &neg[r.clone()]);
            if (x + o.margin).abs() < 0.05 {
                neg[i * d] += 0.5;
            }
        }
        c.inputs[2] = Tensor::from_vec(neg, shape.to_vec()).unwrap();
        c
    }

    #[test]
    fn triplet_gradcheck_and_twin() {
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            for (margin, squared) in [(1.0, true), (0.5, true), (1.0, false), (0.3, false)] {
                let o = TripletOptions {
                    reduction,
                    margin,
                    squared,
                };
                for (shape, seed) in [(&[6, 4][..], 1), (&[2, 3, 5][..], 2)] {
                    check_family(
                        &case(shape, seed, &o),
                        |v| triplet(&v[0], &v[1], &v[2], &o),
                        |v| triplet_naive(&v[0], &v[1], &v[2], &o),
                    );
                }
            }
        }
    }

    #[test]
    fn euclidean_adds_eps_to_the_difference() {
        // a = p: d⁺ = ‖ε·1‖ = ε√D, not 0 (PyTorch's pairwise_distance)
        let tape = Tape::<f64>::new();
        let a = tape.leaf(Tensor::from_vec(vec![1.0; 4], [1, 4]).unwrap());
        let n = tape.leaf(Tensor::from_vec(vec![1.0, 1.0, 1.0, 3.0], [1, 4]).unwrap());
        let o = TripletOptions {
            reduction: Reduction::Sum,
            margin: 3.0,
            squared: false,
        };
        let loss = triplet(&a, &a, &n, &o).unwrap().item().unwrap();
        let dn = (3.0 * EPS * EPS + (-2.0 + EPS) * (-2.0 + EPS)).sqrt();
        assert!((loss - (2.0 * EPS - dn + 3.0)).abs() < 1e-15);
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let a = tape.leaf(Tensor::zeros([3, 2]).unwrap());
        let b = tape.leaf(Tensor::zeros([3, 3]).unwrap());
        let s = tape.leaf(Tensor::zeros([]).unwrap());
        let o = TripletOptions::default();
        let kind = |r: Result<Var<f64>>| r.unwrap_err().kind();
        assert_eq!(kind(triplet(&a, &a, &b, &o)), ErrorKind::ShapeMismatch);
        assert_eq!(kind(triplet(&s, &s, &s, &o)), ErrorKind::ShapeMismatch);
        let bad = TripletOptions {
            margin: f64::NAN,
            ..o.clone()
        };
        assert_eq!(kind(triplet(&a, &a, &a, &bad)), ErrorKind::InvalidOption);
        let bm = TripletOptions {
            reduction: Reduction::BatchMean,
            ..o
        };
        assert_eq!(kind(triplet(&a, &a, &a, &bm)), ErrorKind::InvalidOption);
    }
}
