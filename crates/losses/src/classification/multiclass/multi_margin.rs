//! Multiclass hinge loss (Crammer–Singer style, as PyTorch's
//! `F.multi_margin_loss`): `ℓ = Σ_{j≠y} w_y·max(0, m − s_y + s_j)^p / C`.
//!
//! A margin surrogate, not a likelihood: it asks the true class to beat every
//! other class by `m` and is exactly 0 once it does, so well-separated items
//! stop contributing (sparse gradients, no calibrated probabilities). `p = 1`
//! gives constant-size pushes; `p = 2` (squared hinge) is smooth at the
//! margin and pushes harder on large violations. At a hinge corner
//! (`m − s_y + s_j = 0`) the gradient is 0, as in PyTorch.

use super::rows::{
    at, check_ids, class_weight, constant_rows, naive_classes, per_class, row, sum_others, Rows,
};
use crate::checks;
use crate::common::{
    assume_init, check_option, filled, no_batchmean, reduce_naive_over, reduce_over, rows_map2,
    slots, unfilled, Reduction, Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::simd::{self, vectorized};
use lossgraph_tensor::{Error, Float, Shape, Tensor};
use std::mem::MaybeUninit;

const OP: &str = "multi_margin";

/// Options of [`multi_margin`].
#[derive(Debug, Clone, PartialEq)]
pub struct MultiMarginOptions {
    /// Exponent of the hinge: 1 or 2 (default 1).
    pub p: u32,
    /// Margin `m` (default 1).
    pub margin: f64,
    /// Per-class weights `w [C]`, applied by the true class (default none).
    pub weight: Option<Vec<f64>>,
    /// How items are combined (default `mean`, over rows).
    pub reduction: Reduction,
}

impl Default for MultiMarginOptions {
    fn default() -> Self {
        MultiMarginOptions {
            p: 1,
            margin: 1.0,
            weight: None,
            reduction: Reduction::Mean,
        }
    }
}

/// Multiclass margin loss `Σ_{j≠y} w_y·max(0, m − s_y + s_j)^p / C` from
/// scores `[N, C]` and class ids `[N]`; PyTorch's `F.multi_margin_loss`.
/// (Any leading dims work: scores `[..., C]` with ids `[...]`.)
///
/// `"none"` gives `[N]`; `"mean"` divides by `N`.
///
/// Gradient: for each violated `j ≠ y` (`v_j = m − s_y + s_j > 0`),
/// `∂ℓ/∂s_j = w_y·p·v_j^{p−1}/C` and `∂ℓ/∂s_y` receives the negative of it.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{multi_margin, MultiMarginOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let s = tape.leaf(Tensor::from_vec(vec![0.1, 0.2, 0.4, 0.8], [1, 4])?);
/// let y = Tensor::from_vec(vec![3i64], [1])?;
/// let loss = multi_margin(&s, &y, &MultiMarginOptions::default())?;
/// // (1 − 0.8 + 0.1) + (1 − 0.8 + 0.2) + (1 − 0.8 + 0.4), over C = 4
/// assert!((loss.item()? - 0.325).abs() < 1e-12);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `target` is not the scores' shape without the last
/// axis, for 0-d scores or `C = 0`, or for `weight` of length ≠ C;
/// `InvalidTarget` for an id outside `[0, C)`; `InvalidOption` for `p` other
/// than 1 or 2, a NaN margin, or `batchmean`.
pub fn multi_margin<T: Float>(
    scores: &Var<T>,
    target: &Tensor<i64>,
    opts: &MultiMarginOptions,
) -> Result<Var<T>> {
    let op = MultiMargin::new(&scores.shape(), target, opts)?;
    let tape = scores.tape().clone();
    let out = tape.apply(op, &[scores])?;
    // the mean divides by the number of rows, not by Σ w_y
    if let Some(w) = &opts.weight {
        checks::class_weights(&tape, OP, "weight", w, target, None);
    }
    Ok(out)
}

struct MultiMargin<T> {
    target: Tensor<i64>,
    squared: bool,
    margin: T,
    weight: Option<Vec<T>>,
    reduction: Reduction,
    rows: Rows,
}

impl<T: Float> MultiMargin<T> {
    fn new(shape: &Shape, ids: &Tensor<i64>, o: &MultiMarginOptions) -> Result<Self> {
        no_batchmean(OP, o.reduction)?;
        if o.p != 1 && o.p != 2 {
            return Err(Error::option(OP, "p", format!("p must be 1 or 2, not {}", o.p)).into());
        }
        check_option(OP, "margin", o.margin, true, "the reals")?;
        let rows = check_ids(OP, shape, ids, None)?;
        Ok(MultiMargin {
            target: ids.clone(),
            squared: o.p == 2,
            margin: T::of(o.margin),
            weight: per_class::<T>(OP, "weight", o.weight.as_deref(), rows.classes)?,
            reduction: o.reduction,
            rows,
        })
    }

    fn class(&self, i: usize) -> usize {
        // ids are checked to lie in [0, C)
        self.target.as_slice()[i] as usize
    }

    /// `w_y / C`, the scale of row `i`'s terms, and its class.
    fn scale(&self, i: usize) -> (T, usize) {
        let y = self.class(i);
        (at(&self.weight, y) / T::of(self.rows.classes as f64), y)
    }
}

/// The hinge of violation `v = m − s_y + s_j`: `max(0, v)` or its square,
/// as a select on computed values (vectorisable).
#[inline(always)]
fn hinge<T: Float>(v: T, squared: bool) -> T {
    let h = if squared { v * v } else { v };
    if v > T::zero() {
        h
    } else {
        T::zero()
    }
}

/// `∂ hinge / ∂v`: `1` or `2v` where `v > 0`, else 0 (also at the corner).
#[inline(always)]
fn hinge_grad<T: Float>(v: T, squared: bool) -> T {
    let d = if squared { v + v } else { T::one() };
    if v > T::zero() {
        d
    } else {
        T::zero()
    }
}

impl<T: Float> CustomOp<T> for MultiMargin<T> {
    type Saved = ();
    fn name(&self) -> &str {
        OP
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }

    /// Per row, `Σ_{j≠y} hinge(m − s_y + s_j)` over the slices before and
    /// after `y` (vectorised, `p` fixed outside the loop); rows over rayon.
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, ())> {
        let (s, c) = (x[0].as_slice(), self.rows.classes);
        let none: Option<&mut [T]> = None;
        let loss = rows_map2(self.rows.rows, c, none, None, |i, _, _| {
            let (sc, y) = self.scale(i);
            let sr = row(s, i, c);
            let base = self.margin - sr[y];
            let sum = vectorized(
                #[inline(always)]
                || {
                    if self.squared {
                        sum_others(
                            sr,
                            y,
                            #[inline(always)]
                            |sj| hinge(base + sj, true),
                        )
                    } else {
                        sum_others(
                            sr,
                            y,
                            #[inline(always)]
                            |sj| hinge(base + sj, false),
                        )
                    }
                },
            );
            sc * sum
        });
        let n = T::of(self.rows.rows as f64);
        Ok((reduce_over(loss, &self.rows.batch, self.reduction, n)?, ()))
    }

    /// `∂ℓ/∂s_j = g·hinge′(v_j)` for every class in one branch-free loop,
    /// then `∂ℓ/∂s_y = −Σ_{j≠y}` of those (the row's sum with `y` zeroed);
    /// each gradient element written once (no zero fill first).
    fn backward(&self, cx: &BackwardCtx<'_, T, ()>) -> Result<Vec<Option<Tensor<T>>>> {
        let (s, c, n) = (cx.inputs[0].as_slice(), self.rows.classes, self.rows.rows);
        let up = Upstream::over(cx.grad_output, self.reduction, T::of(n as f64));
        let mut dz = unfilled(n * c);
        rows_map2(n, c, Some(slots(&mut dz, n * c)), None, |i, d, _| {
            let Some(d) = d else { return };
            let (sc, y) = self.scale(i);
            let (g, sr) = (up.at(i) * sc, row(s, i, c));
            let base = self.margin - sr[y];
            let squared = self.squared;
            vectorized(
                #[inline(always)]
                || {
                    let d = &mut d[..sr.len()];
                    if squared {
                        for (dj, &sj) in d.iter_mut().zip(sr) {
                            *dj = MaybeUninit::new(g * hinge_grad(base + sj, true));
                        }
                    } else {
                        for (dj, &sj) in d.iter_mut().zip(sr) {
                            *dj = MaybeUninit::new(g * hinge_grad(base + sj, false));
                        }
                    }
                    d[y] = MaybeUninit::new(T::zero());
                    // SAFETY: every slot of the row was just written.
                    let d = unsafe { assume_init(d) };
                    d[y] = -simd::sum(d);
                },
            );
        });
        // SAFETY: rows_map2 visits every row, and each row's slots are written.
        unsafe { filled(&mut dz, n * c) };
        Ok(vec![Some(Tensor::from_vec(dz, cx.inputs[0].shape())?)])
    }
}

/// The naive twin of [`multi_margin`]: `s − s_y + m` (with `s_y` picked by a
/// one-hot product), `relu` (squared for `p = 2`), masked off at `y`, scaled
/// by `w_y / C`, summed over the class axis.
///
/// # Errors
/// As [`multi_margin`].
pub fn multi_margin_naive<T: Float>(
    scores: &Var<T>,
    target: &Tensor<i64>,
    opts: &MultiMarginOptions,
) -> Result<Var<T>> {
    let shape = scores.shape();
    // validation only; the rest comes from the ids and the options
    let op = MultiMargin::<T>::new(&shape, target, opts)?;
    let (tape, c, rows) = (scores.tape(), op.rows.classes, op.rows.rows);
    let ids = naive_classes(target, None);
    let onehot = constant_rows(tape, &shape, c, |i, r| {
        if let Some(y) = ids[i] {
            r[y] = T::one();
        }
    })?;
    // w_y/C off the true class, 0 on it
    let mask = constant_rows(tape, &shape, c, |i, r| {
        if let Some(y) = ids[i] {
            let scale = T::of(class_weight(&opts.weight, y) / c as f64);
            r.iter_mut().for_each(|v| *v = scale);
            r[y] = T::zero();
        }
    })?;
    let last = shape.ndim() - 1;
    let s_y = scores.mul(&onehot)?.sum(last, true)?;
    let mut h = scores.sub(&s_y)?.add_scalar(T::of(opts.margin))?.relu()?;
    if opts.p == 2 {
        h = h.square()?;
    }
    let loss = h.mul(&mask)?.sum(last, false)?;
    reduce_naive_over(loss, opts.reduction, T::of(rows as f64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, check_twins, Case};
    use lossgraph_autodiff::{ErrorKind, Tape};

    fn ids(v: &[i64], shape: &[usize]) -> Tensor<i64> {
        Tensor::from_vec(v.to_vec(), shape.to_vec()).unwrap()
    }

    #[test]
    fn multi_margin_gradcheck_and_twin() {
        let cases = [
            (vec![6usize, 4], ids(&[0, 3, 2, 1, 2, 0], &[6])),
            (vec![2, 3, 3], ids(&[2, 1, 0, 0, 0, 1], &[2, 3])),
        ];
        for (seed, (shape, y)) in cases.iter().enumerate() {
            for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
                for (p, margin, weight) in [
                    (1, 1.0, None),
                    (2, 1.0, None),
                    (1, 0.5, Some(vec![0.5, 2.0, 1.0, 1.5])),
                    (2, 2.0, Some(vec![0.5, 2.0, 1.0, 1.5])),
                ] {
                    let c = shape[shape.len() - 1];
                    let o = MultiMarginOptions {
                        p,
                        margin,
                        weight: weight.map(|w| w[..c].to_vec()),
                        reduction,
                    };
                    check_family(
                        &Case::normal(1, shape, seed as u64 + 5),
                        |v| multi_margin(&v[0], y, &o),
                        |v| multi_margin_naive(&v[0], y, &o),
                    );
                }
            }
        }
    }

    #[test]
    fn corner_gradient_is_zero() {
        // m − s_y + s_j = 0 exactly for j = 1: no gradient there (PyTorch)
        let s = Tensor::from_vec(vec![1.0, 0.0, -3.0], [1, 3]).unwrap();
        let y = ids(&[0], &[1]);
        let o = MultiMarginOptions::default();
        let tape = Tape::<f64>::new();
        let v = tape.leaf(s.clone());
        let g = multi_margin(&v, &y, &o).unwrap().backward().unwrap();
        assert_eq!(g.get(&v).unwrap().to_vec(), vec![0.0, 0.0, 0.0]);
        check_twins(
            &Case::new(vec![s]),
            |v| multi_margin(&v[0], &y, &o),
            |v| multi_margin_naive(&v[0], &y, &o),
        );
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let s = tape.leaf(Tensor::zeros([2, 3]).unwrap());
        let y = ids(&[0, 2], &[2]);
        let kind = |r: Result<Var<f64>>| r.err().map(|e| e.kind());
        for p in [0, 3] {
            let o = MultiMarginOptions {
                p,
                ..Default::default()
            };
            assert_eq!(
                kind(multi_margin(&s, &y, &o)),
                Some(ErrorKind::InvalidOption)
            );
        }
        let d = MultiMarginOptions::default();
        assert_eq!(
            kind(multi_margin(&s, &ids(&[0, 3], &[2]), &d)),
            Some(ErrorKind::InvalidTarget)
        );
        assert_eq!(
            kind(multi_margin(&s, &ids(&[0], &[1]), &d)),
            Some(ErrorKind::ShapeMismatch)
        );
        let w = MultiMarginOptions {
            weight: Some(vec![1.0; 4]),
            ..Default::default()
        };
        assert_eq!(
            kind(multi_margin(&s, &y, &w)),
            Some(ErrorKind::ShapeMismatch)
        );
        let nan = MultiMarginOptions {
            margin: f64::NAN,
            ..Default::default()
        };
        assert_eq!(
            kind(multi_margin(&s, &y, &nan)),
            Some(ErrorKind::InvalidOption)
        );
        assert_eq!(
            kind(multi_margin_naive(&s, &y, &w)),
            Some(ErrorKind::ShapeMismatch)
        );
    }
}
