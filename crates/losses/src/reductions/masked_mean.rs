//! The masked mean `Σ mᵢℓᵢ / (Σ mᵢ + ε)`: the average of the items a mask
//! keeps, e.g. the valid tokens of padded sequences.
//!
//! The denominator counts the kept items, not the batch: a padded position
//! neither adds to the sum nor dilutes the mean, and items whose mask is 0 are
//! skipped outright, so a padded position holding `∞` or NaN does not poison
//! the result. With `per_row`, each row of the last axis is averaged first and
//! the rows are then averaged with equal weight, over the rows that keep at
//! least one item (a short sequence then counts as much as a long one). When
//! nothing is kept the mean is 0 and every gradient is 0.
//!
//! The mask is meant to be 0/1; a fractional mask in `[0, 1]` acts as a soft
//! weight (which is also what makes the mask differentiable), and a mask value
//! outside `[0, 1]` is an error.
//!
//! Gradients, with `D = Σ m + ε` and `μ` the mean (per row for `per_row`, the
//! whole scaled by `1/R` over the `R` kept rows): `∂/∂ℓᵢ = mᵢ / D`,
//! `∂/∂mᵢ = (ℓᵢ − μ) / D`.
//!
//! The `denominator` option takes the count from outside — the whole
//! batch's, when this call sees a part of it — so that the parts' gradients
//! add up to the batch's: for the token mean it replaces `Σ m` (so
//! `D = denominator + ε`), for `per_row` the number of kept rows (parts must
//! then hold whole rows). `D` is then a constant: `∂/∂mᵢ = ℓᵢ / D`.

use crate::checks;
use crate::common::{
    check_denominator, check_option, check_unit_interval, count_where, fill_two_grads, first_where,
    grads_as_tensors, outside_unit, pow2_scale, row_fill2, row_sums, same_shape, Reduction,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Tape, Var};
use lossgraph_tensor::simd::{self, vectorized};
use lossgraph_tensor::{Error, Float, Shape, Tensor};
use std::mem::MaybeUninit;

/// Options of [`masked_mean`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MaskedMeanOptions {
    /// Added to the denominator (default 0.0, must be finite and ≥ 0).
    pub eps: f64,
    /// Average each row of the last axis first, then the rows that keep any
    /// item (default `false`: one mean over every kept item).
    pub per_row: bool,
    /// The count from outside (default none: this call's own): replaces
    /// `Σ m` (the token mean) or the number of kept rows (`per_row`) — the
    /// whole batch's, when this call sees a part of it (a micro-batch, a
    /// data-parallel shard), so that the parts' gradients add up to the
    /// batch's. Finite, ≥ 0.
    pub denominator: Option<f64>,
}

/// Masked mean `Σ m·ℓ / (Σ m + eps)` of `values` under `mask`, a 0-d output.
///
/// With `per_row`, the masked mean of each row of the last axis, then the
/// plain mean of those row means over the rows with any kept item. Nothing
/// kept gives 0 with zero gradients.
///
/// Gradient: `∂/∂ℓ = m / D`, `∂/∂m = (ℓ − μ) / D` with `D = Σ m + eps` and
/// `μ` the mean (per row, and divided by the number of kept rows, for
/// `per_row`).
///
/// Options: `eps` (0.0), `per_row` (`false`).
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{masked_mean, MaskedMeanOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let loss = tape.leaf(Tensor::from_vec(vec![1.0, 3.0, 9.0, 2.0, 0.0, 0.0], [2, 3])?);
/// let mask = tape.constant(Tensor::from_vec(vec![1.0, 1.0, 0.0, 1.0, 0.0, 0.0], [2, 3])?);
/// let tokens = masked_mean(&loss, &mask, &MaskedMeanOptions::default())?;
/// assert_eq!(tokens.item()?, 2.0); // (1 + 3 + 2) / 3
/// let rows = masked_mean(&loss, &mask, &MaskedMeanOptions { per_row: true, ..Default::default() })?;
/// assert_eq!(rows.item()?, 2.0); // (2 + 2) / 2
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `InvalidOption` for an `eps` that is negative or not finite;
/// `ShapeMismatch` when `values` and `mask` differ in shape; `InvalidValue`
/// when a mask value lies outside `[0, 1]`.
pub fn masked_mean<T: Float>(
    values: &Var<T>,
    mask: &Var<T>,
    opts: &MaskedMeanOptions,
) -> Result<Var<T>> {
    check_shape_and_eps(values, mask, opts)?;
    // the mask's values are checked by the op's forward, in its one pass
    let rule = WeightRule::UnitInterval;
    let out = RatioMean::new("masked_mean", opts.eps, opts.per_row, rule, &values.shape())
        .with_denominator(opts.denominator)
        .apply(values, mask)?;
    // a part of a batch may hold only masked items when the count comes from outside
    if opts.denominator.is_none() {
        checks::all_masked("masked_mean", "mask", mask);
    }
    Ok(out)
}

fn check_shape_and_eps<T: Float>(
    values: &Var<T>,
    mask: &Var<T>,
    opts: &MaskedMeanOptions,
) -> Result<()> {
    let op = "masked_mean";
    check_eps(op, opts.eps)?;
    check_denominator(op, opts.denominator, Reduction::Mean)?;
    same_shape(op, &values.shape(), &mask.shape(), "values and mask")
}

/// Every check of [`masked_mean`] (the naive twin runs them all up front).
fn validate<T: Float>(values: &Var<T>, mask: &Var<T>, opts: &MaskedMeanOptions) -> Result<()> {
    check_shape_and_eps(values, mask, opts)?;
    WeightRule::UnitInterval.check("masked_mean", &mask.value())
}

/// What each mask value or weight must satisfy. The fused op counts the
/// violations in the same pass as its sums (a branch-free count, so the
/// data is read once), and fails its forward, before anything is recorded,
/// with the error of [`Self::check`] for the first bad value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WeightRule {
    /// A mask: every value in `[0, 1]` (NaN passes).
    UnitInterval,
    /// Weights: no negative value (NaN passes).
    NonNegative,
}

impl WeightRule {
    /// `InvalidValue` naming the first value of `w` that breaks the rule.
    pub(super) fn check<T: Float>(self, op: &str, w: &Tensor<T>) -> Result<()> {
        match self {
            WeightRule::UnitInterval => check_unit_interval(op, "mask", w),
            WeightRule::NonNegative => {
                let x = w.as_slice();
                match first_where(x, |v| v < T::zero()) {
                    Some(i) => {
                        let v = x[i];
                        Err(Error::value(op, format!("weights[{i}] = {v} is negative")).into())
                    }
                    None => Ok(()),
                }
            }
        }
    }
    /// How many values of `w` break the rule (vectorisable: call inside
    /// [`vectorized`]).
    #[inline(always)]
    fn count_bad<T: Float>(self, w: &[T]) -> T {
        match self {
            WeightRule::UnitInterval => count_where(w, outside_unit),
            WeightRule::NonNegative => count_where(
                w,
                #[inline(always)]
                |m| m < T::zero(),
            ),
        }
    }
}

/// `InvalidOption` unless `eps` is finite and ≥ 0.
pub(super) fn check_eps(op: &str, eps: f64) -> Result<()> {
    check_option(op, "eps", eps, eps >= 0.0 && eps.is_finite(), "[0, ∞)")
}

/// The fused op behind [`masked_mean`] and `weighted_mean`: the mean of row
/// ratios `Σ wℓ / (Σ w + eps)` over the rows with `Σ w ≠ 0`. Without
/// `per_row` the whole input is one row.
pub(super) struct RatioMean {
    name: &'static str,
    eps: f64,
    rule: WeightRule,
    rows: usize,
    c: usize,
    per_row: bool,
    /// The `denominator` option: `Σ w` (one row) or the kept rows (per row).
    outer: Option<f64>,
}

/// Per row: the centre of `∂/∂w` (its mean `μ`; 0 when `D` is given from
/// outside and so does not move with `w`), its denominator as `(D/s, s)` with `s` the
/// power of two its weights were scaled by (1 on the plain path; see
/// [`RatioMean::scaled_row`]), `None` for a row that keeps nothing; and the
/// number of kept rows.
pub(super) struct Saved<T> {
    rows: Vec<Option<(T, T, T)>>,
    kept: usize,
}

impl RatioMean {
    /// The op for inputs of `shape`.
    pub(super) fn new(
        name: &'static str,
        eps: f64,
        per_row: bool,
        rule: WeightRule,
        shape: &Shape,
    ) -> Self {
        let n = shape.numel();
        let c = if per_row { shape.last_dim() } else { n };
        let rows = n.checked_div(c).unwrap_or(0);
        RatioMean {
            name,
            eps,
            rule,
            rows,
            c,
            per_row,
            outer: None,
        }
    }
    /// Take the `denominator` option (checked by the caller).
    pub(super) fn with_denominator(mut self, d: Option<f64>) -> Self {
        self.outer = d;
        self
    }
    /// What the row means are averaged over: the kept rows, or the option's
    /// count with `per_row` (one row otherwise: the option went into `D`).
    fn rows_denom<T: Float>(&self, kept: usize) -> T {
        match self.outer {
            Some(d) if self.per_row => T::of(d),
            _ => T::of(kept as f64),
        }
    }
    /// Record on the values' tape (shapes and `eps` already checked; forward
    /// checks the weights).
    pub(super) fn apply<T: Float>(self, values: &Var<T>, weights: &Var<T>) -> Result<Var<T>> {
        let tape: Tape<T> = values.tape().clone();
        tape.apply(self, &[values, weights])
    }

    /// Row `r`'s `(μ, D/s_w, s_w)` when its plain sums left the accurate
    /// range (`Σ wℓ` or `Σ w` overflowed, `∞ − ∞` in `Σ wℓ`, or `Σ wℓ` so
    /// small that products underflowed): both sums again with `w/s_w` and
    /// `ℓ/s_ℓ`, `s_w`, `s_ℓ` powers of two near `max w` and `max |ℓ|` (over
    /// the items of non-zero weight), so that
    /// `μ = s_ℓ·Σ (w/s_w)(ℓ/s_ℓ) / (Σ w/s_w + eps/s_w)` is finite wherever
    /// the mean is. Scaling by powers of two is exact, so where the plain
    /// sums were fine this gives the same
    /// bits. `None` (keep the plain sums) when a max is 0 or not finite
    /// (a non-finite input under a non-zero weight, whose result stands).
    fn scaled_row<T: Float>(&self, v: &[T], w: &[T]) -> Option<(T, T, T)> {
        let zero = T::zero();
        let wmax = w.iter().fold(zero, |m, &x| m.max(x));
        let lmax = v.iter().zip(w).fold(
            zero,
            |m, (&l, &x)| if x != zero { m.max(l.abs()) } else { m },
        );
        let (sw, sl) = (pow2_scale(wmax)?, pow2_scale(lmax)?);
        let (num, den) = vectorized(
            #[inline(always)]
            || {
                let num = simd::sum_map2(
                    v,
                    w,
                    #[inline(always)]
                    |l, m| {
                        if m != zero {
                            (m / sw) * (l / sl)
                        } else {
                            zero
                        }
                    },
                );
                let den = simd::sum_map(
                    w,
                    #[inline(always)]
                    |m| m / sw,
                );
                (num, den)
            },
        );
        let dd = den + T::of(self.eps) / sw;
        Some(((num / dd) * sl, dd, sw))
    }
}

impl<T: Float> CustomOp<T> for RatioMean {
    type Saved = Saved<T>;
    fn name(&self) -> &str {
        self.name
    }
    fn is_mean(&self) -> bool {
        true // masked_mean and weighted_mean are means by definition
    }
    /// One pass over the inputs: per row, `Σ wℓ` and `Σ w` (a long row, such
    /// as the whole input without `per_row`, in fixed chunks over rayon),
    /// vectorised, and the count of weights that break the op's rule (an
    /// error then, before anything is recorded). A weight of 0 contributes 0
    /// to the numerator through a select on the computed product, not a
    /// branch, so an `∞`/NaN value under it is dropped as before, and the
    /// loop still vectorises.
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, Saved<T>)> {
        let (v, w) = (x[0].as_slice(), x[1].as_slice());
        let (eps, rule) = (T::of(self.eps), self.rule);
        let sums = row_sums(self.rows, self.c, |r| {
            let (v, w) = (&v[r.clone()], &w[r]);
            vectorized(
                #[inline(always)]
                || {
                    let num = simd::sum_map2(
                        v,
                        w,
                        #[inline(always)]
                        |l, m| if m != T::zero() { m * l } else { T::zero() },
                    );
                    [num, simd::sum(w), rule.count_bad(w)]
                },
            )
        });
        if sums.iter().any(|&[_, _, bad]| bad > T::zero()) {
            self.rule.check(self.name, x[1])?;
        }
        let mut saved = Saved {
            rows: Vec::with_capacity(self.rows),
            kept: 0,
        };
        let mut total = T::zero();
        // below this a sum of products may have lost digits to underflow
        let tiny = T::min_positive_value() / T::epsilon();
        if let (Some(d), false) = (self.outer, self.per_row) {
            // D from outside: Σ wℓ / (D + ε), a constant denominator (the
            // plain sum: a part's D is the whole batch's, not its own Σ w)
            // (an empty input has no row: its sum is 0)
            let num = sums.first().map_or(T::zero(), |s| s[0]);
            let d = T::of(d) + eps;
            let (out, row) = if d == T::zero() {
                (T::zero(), None)
            } else {
                (num / d, Some((T::zero(), d, T::one())))
            };
            saved.kept = usize::from(row.is_some());
            saved.rows.push(row);
            return Ok((Tensor::scalar(out), saved));
        }
        for (r, [num, den, _]) in sums.into_iter().enumerate() {
            if den == T::zero() {
                saved.rows.push(None);
            } else {
                // the plain row unless its sums left the accurate range (one
                // compare per row at normal magnitudes)
                let plain = num.abs() >= tiny && num.is_finite() && den.is_finite();
                let range = r * self.c..(r + 1) * self.c;
                let row = (!plain)
                    .then(|| self.scaled_row(&v[range.clone()], &w[range]))
                    .flatten()
                    .unwrap_or_else(|| {
                        let d = den + eps;
                        (num / d, d, T::one())
                    });
                total += row.0;
                saved.kept += 1;
                saved.rows.push(Some(row));
            }
        }
        let rows: T = self.rows_denom(saved.kept);
        let out = if rows == T::zero() {
            T::zero()
        } else {
            total / rows
        };
        Ok((Tensor::scalar(out), saved))
    }
    /// `∂/∂ℓ = k·w`, `∂/∂w = k·(ℓ − μ)` with `k = g / (R·D)` per row: one
    /// vectorised pass writing each gradient once (no zero fill first), in
    /// fixed chunks over rayon cut at row boundaries. A row that keeps
    /// nothing gets zeros (not `0·(ℓ − 0)`, which is NaN for `ℓ = ∞`).
    fn backward(&self, cx: &BackwardCtx<'_, T, Saved<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let (v, w) = (cx.inputs[0].as_slice(), cx.inputs[1].as_slice());
        let sv = cx.saved;
        let g = cx
            .grad_output
            .as_slice()
            .first()
            .copied()
            .unwrap_or(T::zero());
        let rows: T = self.rows_denom(sv.kept);
        let scale = if rows == T::zero() {
            T::zero()
        } else {
            g / rows
        };
        let n = v.len();
        let ((), grads) = fill_two_grads(n, cx.needs_grad, |dv, dw| {
            row_fill2(n, self.c, dv, dw, |r, range, dv, dw| {
                let (v, w) = (&v[range.clone()], &w[range]);
                let row = sv.rows[r];
                vectorized(
                    #[inline(always)]
                    || {
                        // D = dd·sw: a scaled row (sw ≠ 1) divides by sw
                        // last, so neither D nor k underflows on the way
                        let (k, mean, sw) = match row {
                            Some((mean, dd, sw)) => (scale / dd, mean, sw),
                            None => (T::zero(), T::zero(), T::one()),
                        };
                        let plain = sw == T::one();
                        if let Some(dv) = dv {
                            let dv = &mut dv[..w.len()];
                            if row.is_none() {
                                dv.fill(MaybeUninit::new(T::zero()));
                            } else if plain {
                                for (o, &m) in dv.iter_mut().zip(w) {
                                    *o = MaybeUninit::new(k * m);
                                }
                            } else {
                                for (o, &m) in dv.iter_mut().zip(w) {
                                    *o = MaybeUninit::new(k * (m / sw));
                                }
                            }
                        }
                        if let Some(dw) = dw {
                            let dw = &mut dw[..v.len()];
                            if row.is_none() {
                                dw.fill(MaybeUninit::new(T::zero()));
                            } else if plain {
                                for (o, &l) in dw.iter_mut().zip(v) {
                                    *o = MaybeUninit::new(k * (l - mean));
                                }
                            } else {
                                for (o, &l) in dw.iter_mut().zip(v) {
                                    *o = MaybeUninit::new((k * (l - mean)) / sw);
                                }
                            }
                        }
                    },
                )
            })
        });
        grads_as_tensors(grads, cx.inputs[0].shape())
    }
}

/// The naive twin of [`masked_mean`]: `sum(m·ℓ) / (sum(m) + eps)` with
/// primitive ops (per row: row sums, a `where` that drops the rows keeping
/// nothing, then their mean). Masked `∞`/NaN values poison it.
///
/// # Errors
/// As [`masked_mean`].
pub fn masked_mean_naive<T: Float>(
    values: &Var<T>,
    mask: &Var<T>,
    opts: &MaskedMeanOptions,
) -> Result<Var<T>> {
    validate(values, mask, opts)?;
    if !opts.per_row {
        return ratio_naive(values, mask, opts.eps, opts.denominator);
    }
    let (v, m) = if values.shape().ndim() == 0 {
        (values.reshape([1])?, mask.reshape([1])?)
    } else {
        (values.clone(), mask.clone())
    };
    let axis = v.shape().ndim() - 1;
    let num = v.mul(&m)?.sum(axis, false)?;
    let den = m.sum(axis, false)?.add_scalar(T::of(opts.eps))?;
    let kept = m
        .value()
        .sum(axis, false)?
        .map(|s| if s == T::zero() { T::zero() } else { T::one() });
    let r: T = kept.as_slice().iter().copied().sum();
    let r = opts.denominator.map_or(r, T::of);
    let tape = values.tape();
    let safe = Var::where_select(&kept, &den, &tape.constant(Tensor::ones(den.shape())?))?;
    let means = num.div(&safe)?.mul(&tape.constant(kept))?.sum_all()?;
    if r == T::zero() {
        means.mul_scalar(T::zero())
    } else {
        means.mul_scalar(T::one() / r)
    }
}

/// `sum(w·ℓ) / (sum(w) + eps)` with primitive ops; 0 (and zero gradients)
/// when `sum(w) = 0`. With a denominator `d` from outside,
/// `sum(w·ℓ) / (d + eps)`, 0 when `d + eps = 0`.
pub(super) fn ratio_naive<T: Float>(
    values: &Var<T>,
    w: &Var<T>,
    eps: f64,
    outer: Option<f64>,
) -> Result<Var<T>> {
    let num = values.mul(w)?.sum_all()?;
    if let Some(d) = outer {
        let d = d + eps;
        return num.mul_scalar(if d == 0.0 { T::zero() } else { T::of(1.0 / d) });
    }
    if w.value().sum_all().item()? == T::zero() {
        return num.mul_scalar(T::zero());
    }
    num.div(&w.sum_all()?.add_scalar(T::of(eps))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, check_twins, value_and_grads, Case};
    use lossgraph_tensor::ErrorKind;

    const SHAPES: [&[usize]; 3] = [&[6], &[3, 4], &[2, 2, 3]];

    fn all_options() -> Vec<MaskedMeanOptions> {
        let mut v = Vec::new();
        for eps in [0.0, 1e-3, 0.5] {
            for per_row in [false, true] {
                // a count from outside, as a micro-batch of a larger batch sees it
                for denominator in [None, Some(4.5)] {
                    v.push(MaskedMeanOptions {
                        eps,
                        per_row,
                        denominator,
                    });
                }
            }
        }
        v
    }

    /// A 0/1 mask with an empty row (for the multi-row shapes).
    fn hard_mask(shape: &[usize]) -> Tensor<f64> {
        let n: usize = shape.iter().product();
        let c = *shape.last().unwrap();
        let data = (0..n)
            .map(|i| if i / c == 1 || i % 3 == 2 { 0.0 } else { 1.0 })
            .collect();
        Tensor::from_vec(data, shape.to_vec()).unwrap()
    }

    #[test]
    fn soft_mask_gradcheck_and_twin() {
        // masks inside (0, 1) so that finite differences stay valid
        for o in all_options() {
            for (k, shape) in SHAPES.iter().enumerate() {
                let v = Tensor::randn(shape.to_vec(), 0.0, 1.0, k as u64).unwrap();
                let m = Tensor::rand_uniform(shape.to_vec(), 0.1, 0.9, 10 + k as u64).unwrap();
                check_family(
                    &Case::new(vec![v, m]),
                    |x| masked_mean(&x[0], &x[1], &o),
                    |x| masked_mean_naive(&x[0], &x[1], &o),
                );
            }
        }
    }

    #[test]
    fn hard_mask_gradcheck_and_twin() {
        // a fixed 0/1 mask (a constant) with a row that keeps nothing
        for o in all_options() {
            for (k, shape) in SHAPES.iter().enumerate() {
                let m = hard_mask(shape);
                let (m1, m2) = (m.clone(), m.clone());
                check_family(
                    &Case::normal(1, shape, 20 + k as u64),
                    move |x| masked_mean(&x[0], &x[0].tape().constant(m1.clone()), &o),
                    move |x| masked_mean_naive(&x[0], &x[0].tape().constant(m2.clone()), &o),
                );
                // and the mask's own gradient against the twin's
                let v = Tensor::randn(shape.to_vec(), 0.0, 1.0, 30 + k as u64).unwrap();
                check_twins(
                    &Case::new(vec![v, m]),
                    |x| masked_mean(&x[0], &x[1], &o),
                    |x| masked_mean_naive(&x[0], &x[1], &o),
                );
            }
        }
    }

    #[test]
    fn all_masked_is_zero_with_zero_gradients() {
        for o in all_options() {
            let v = Tensor::randn([3, 4], 0.0, 1.0, 5).unwrap();
            let m = Tensor::zeros([3, 4]).unwrap();
            let case = Case::new(vec![v, m]);
            for f in [masked_mean::<f64>, masked_mean_naive::<f64>] {
                let (out, grads) = value_and_grads(&|x| f(&x[0], &x[1], &o), &case.inputs, 1);
                assert_eq!(out.item().unwrap(), 0.0);
                assert!(grads[0].as_slice().iter().all(|&x| x == 0.0), "{o:?}");
                // a denominator from outside does not move with the mask, so
                // a masked item's mask gradient is g·ℓ/D (the token mean; g
                // the cotangent), not 0: proportional to the values
                let (dm, v) = (grads[1].as_slice(), case.inputs[0].as_slice());
                if o.denominator.is_some() && !o.per_row {
                    let k = dm[0] / v[0];
                    assert!(k != 0.0, "{o:?}");
                    for (d, x) in dm.iter().zip(v) {
                        assert!((d - k * x).abs() <= 1e-12, "{o:?}: {d} vs {}", k * x);
                    }
                } else {
                    assert!(dm.iter().all(|&x| x == 0.0), "{o:?}");
                }
            }
        }
    }

    #[test]
    fn masked_non_finite_values_are_ignored() {
        let tape = Tape::<f32>::new();
        let v =
            tape.leaf(Tensor::from_vec(vec![1.0, f32::INFINITY, 3.0, f32::NAN], [2, 2]).unwrap());
        let m = tape.leaf(Tensor::from_vec(vec![1.0, 0.0, 1.0, 0.0], [2, 2]).unwrap());
        for per_row in [false, true] {
            let o = MaskedMeanOptions {
                eps: 0.0,
                per_row,
                ..Default::default()
            };
            let loss = masked_mean(&v, &m, &o).unwrap();
            assert_eq!(loss.item().unwrap(), 2.0);
            let g = loss.backward().unwrap();
            assert_eq!(g.get(&v).unwrap().to_vec(), vec![0.5, 0.0, 0.5, 0.0]);
        }
    }

    #[test]
    fn registry_accepts_an_integer_mask() {
        use crate::registry::{build, Call, Flavor, InputValue};
        let mut call = Call {
            op: "masked_mean".into(),
            ..Default::default()
        };
        let v = Tensor::from_vec(vec![1.0, 2.0, 6.0], [3]).unwrap();
        let m = Tensor::from_vec(vec![1i64, 0, 1], [3]).unwrap();
        call.inputs.insert("values".into(), InputValue::Real(v));
        call.inputs.insert("mask".into(), InputValue::Int(m));
        for flavor in [Flavor::Fused, Flavor::Naive] {
            let tape = Tape::<f64>::new();
            let built = build(&tape, &call, flavor).unwrap();
            assert_eq!(built.output.item().unwrap(), 3.5);
        }
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let v = tape.leaf(Tensor::zeros([2, 3]).unwrap());
        let kind = |r: Result<Var<f64>>| r.err().unwrap().kind();
        let o = MaskedMeanOptions::default();
        for f in [masked_mean::<f64>, masked_mean_naive::<f64>] {
            let wide = tape.leaf(Tensor::ones([2, 4]).unwrap());
            assert_eq!(kind(f(&v, &wide, &o)), ErrorKind::ShapeMismatch);
            for bad in [2.0, -0.5, 1.0 + 1e-9] {
                let m = tape
                    .leaf(Tensor::from_vec(vec![1.0, 0.0, bad, 1.0, 1.0, 0.0], [2, 3]).unwrap());
                assert_eq!(kind(f(&v, &m, &o)), ErrorKind::InvalidValue);
            }
            let ones = tape.leaf(Tensor::ones([2, 3]).unwrap());
            for eps in [-1e-3, f64::NAN, f64::INFINITY] {
                let o = MaskedMeanOptions { eps, ..o };
                assert_eq!(kind(f(&v, &ones, &o)), ErrorKind::InvalidOption);
            }
        }
    }

    #[test]
    fn large_inputs_split_over_rayon_agree_with_twin() {
        // long rows (cut into chunks) and many short rows (spread over
        // rayon), with a row that keeps nothing
        for shape in [&[2usize, 40_000][..], &[300, 120][..]] {
            let n: usize = shape.iter().product();
            let c = *shape.last().unwrap();
            let v = Tensor::randn(shape.to_vec(), 0.0, 1.0, 41).unwrap();
            let u = Tensor::rand_uniform(shape.to_vec(), 0.0, 1.0, 42).unwrap();
            let m: Vec<f64> = (0..n)
                .map(|i| {
                    if i / c == 1 || i % 5 == 0 {
                        0.0
                    } else {
                        u.as_slice()[i]
                    }
                })
                .collect();
            let m = Tensor::from_vec(m, shape.to_vec()).unwrap();
            for o in all_options() {
                check_twins(
                    &Case::new(vec![v.clone(), m.clone()]),
                    |x| masked_mean(&x[0], &x[1], &o),
                    |x| masked_mean_naive(&x[0], &x[1], &o),
                );
            }
        }
    }

    #[test]
    fn bad_mask_error_names_the_first_bad_value() {
        // the fused op checks the mask in its forward pass: the same error as
        // the twin's up-front check, and nothing recorded by either
        let tape = Tape::<f64>::new();
        let v = tape.leaf(Tensor::zeros([2, 3]).unwrap());
        let m = tape.leaf(Tensor::from_vec(vec![1.0, 0.0, 1.5, -1.0, 1.0, 0.0], [2, 3]).unwrap());
        for per_row in [false, true] {
            let o = MaskedMeanOptions {
                eps: 0.0,
                per_row,
                ..Default::default()
            };
            for f in [masked_mean::<f64>, masked_mean_naive::<f64>] {
                let before = tape.len();
                let e = f(&v, &m, &o).err().unwrap();
                assert_eq!(e.kind(), ErrorKind::InvalidValue);
                assert!(e.to_string().contains("mask[2] = 1.5"), "{e}");
                assert_eq!(tape.len(), before);
            }
        }
    }
}
