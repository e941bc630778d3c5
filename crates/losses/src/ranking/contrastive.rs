//! Contrastive pair loss: `ℓ = s·d² + (1−s)·max(0, m − d)²` with
//! `d = ‖u − v‖₂` the distance between two embeddings and `s ∈ {0, 1}` whether
//! the pair is similar.
//!
//! Similar pairs are pulled together with a quadratic pull; dissimilar pairs are
//! pushed apart until they are `m` apart, then left alone. Only distances
//! matter, so the scale of the embeddings (and whether they are normalised)
//! decides what a margin means. At `d = 0` the direction of `u − v` is
//! undefined; the gradient there is 0 (PyTorch's norm gradient at 0).

use super::for_row_blocks;
use crate::common::{
    check_option, eager_inputs, filled, grads_as_tensors_of, no_batchmean, norm_from_sum_sq,
    reduce, reduce_naive, slots, unfilled, Reduction, UnitGrads, Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::simd::{self, vectorized};
use lossgraph_tensor::{Error, Float, Tensor};
use std::mem::MaybeUninit;

const OP: &str = "contrastive";

/// Options of [`contrastive`].
#[derive(Debug, Clone, PartialEq)]
pub struct ContrastiveOptions {
    /// How pairs are combined (default `mean`).
    pub reduction: Reduction,
    /// The distance beyond which dissimilar pairs cost nothing (default 1.0).
    pub margin: f64,
}

impl Default for ContrastiveOptions {
    fn default() -> Self {
        ContrastiveOptions {
            reduction: Reduction::Mean,
            margin: 1.0,
        }
    }
}

/// Check options, shapes (`u`, `v` of `[..., D]`, `similar` of `[...]`) and
/// labels (each 0 or 1; NaN passes through).
fn validate<T: Float>(
    u: &Var<T>,
    v: &Var<T>,
    similar: &Var<T>,
    o: &ContrastiveOptions,
) -> Result<()> {
    no_batchmean(OP, o.reduction)?;
    check_option(
        OP,
        "margin",
        o.margin,
        o.margin.is_finite(),
        "finite values",
    )?;
    let (du, dv, ds) = (u.dims(), v.dims(), similar.dims());
    if du != dv || du.is_empty() || ds[..] != du[..du.len() - 1] {
        return Err(Error::shape(
            OP,
            &[&du, &dv, &ds],
            "u and v must be [..., D] alike and similar [...]",
        )
        .into());
    }
    super::check_labels(OP, "similar", &similar.value(), [0.0, 1.0])
}

/// The fused op. One pass over the rows computes each pair's loss and, when
/// gradients are wanted, the gradients of the row while it is in cache:
/// forward does it for an upstream gradient of 1 with `sum`/`mean`
/// ([`eager_inputs`]) and backward only rescales; otherwise backward makes
/// the same pass with the real upstream gradients (the distances are
/// recomputed from the inputs the tape holds, nothing else is saved).
struct Contrastive<T> {
    margin: T,
    reduction: Reduction,
    /// Which inputs get their gradient in forward.
    eager: Option<Vec<bool>>,
}

/// One row: the loss `s·d² + (1−s)·max(0, m − d)²` and, for the outputs
/// present, `∂ℓ/∂u = c·(u − v)`, `∂ℓ/∂v = −c·(u − v)` and
/// `∂ℓ/∂s = g·(d² − gap²)`, with `c = g·(2s − 2(1−s)·gap/d)` (the hinge term
/// 0 at `d = 0`, PyTorch's norm gradient there) and `g` the row's upstream
/// gradient. The row's branches are per row; the loops over its elements are
/// branch-free and vectorise. `d` comes from a scaled sum of squares
/// ([`norm_from_sum_sq`]) when the plain `d²` overflows or underflows, so
/// `d`, the gradients and a dissimilar pair's loss stay finite and accurate
/// at any input magnitude; `d²` itself is `∞` only where it truly overflows.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pair_row<T: Float>(
    u: &[T],
    v: &[T],
    s: T,
    m: T,
    g: T,
    du: Option<&mut [MaybeUninit<T>]>,
    dv: Option<&mut [MaybeUninit<T>]>,
    ds: Option<&mut MaybeUninit<T>>,
) -> T {
    let (zero, one, two) = (T::zero(), T::one(), T::of(2.0));
    let v = &v[..u.len()];
    let diff = |a: T, b: T| a - b;
    let d2 = simd::sum_map2(
        u,
        v,
        #[inline(always)]
        |a, b| diff(a, b) * diff(a, b),
    );
    // d² out of range (overflowed, or so small that squares underflowed):
    // d from a scaled sum; one compare per row otherwise
    let (dist, d2) = norm_from_sum_sq(d2, u, v, diff);
    let gap = (m - dist).max(zero);
    let push = if gap > zero && dist > zero {
        two * (one - s) * gap / dist
    } else {
        zero
    };
    let c = g * (two * s - push);
    if let Some(du) = du {
        let du = &mut du[..u.len()];
        for j in 0..u.len() {
            du[j] = MaybeUninit::new(c * (u[j] - v[j]));
        }
    }
    if let Some(dv) = dv {
        let dv = &mut dv[..u.len()];
        for j in 0..u.len() {
            dv[j] = MaybeUninit::new(-(c * (u[j] - v[j])));
        }
    }
    if let Some(ds) = ds {
        // d² − gap² as (d − gap)(d + gap) where the plain form is ∞ − ∞
        let gap2 = gap * gap;
        let dd = if gap > zero && !(d2 - gap2).is_finite() {
            (dist - gap) * (dist + gap)
        } else {
            d2 - gap2
        };
        *ds = MaybeUninit::new(g * dd);
    }
    // the label selects its term, so the other one's overflow (an ∞ times
    // 0) cannot make the loss NaN; a NaN label still gives NaN
    if s == one {
        d2
    } else if s == zero {
        gap * gap
    } else {
        s * d2 + (one - s) * gap * gap
    }
}

impl<T: Float> Contrastive<T> {
    /// The loss of every pair and the gradients `[du, dv, ds]` of the inputs
    /// in `need` for upstream gradients `up`, in one pass over the rows
    /// (blocks of rows over rayon, each output written once, no zero fill).
    fn pass(
        &self,
        x: [&Tensor<T>; 3],
        up: Upstream<'_, T>,
        need: &[bool],
    ) -> (Vec<T>, Vec<Option<Vec<T>>>) {
        let (u, v, s) = (x[0].as_slice(), x[1].as_slice(), x[2].as_slice());
        let d = x[0].shape().last_dim();
        let rows = s.len();
        let want = |k: usize| need.get(k).copied().unwrap_or(false);
        let mut loss = unfilled(rows);
        let mut du = want(0).then(|| unfilled(rows * d));
        let mut dv = want(1).then(|| unfilled(rows * d));
        let mut ds = want(2).then(|| unfilled(rows));
        let m = self.margin;
        for_row_blocks(
            rows,
            d,
            [
                (Some(slots(&mut loss, rows)), 1),
                (du.as_mut().map(|b| slots(b, rows * d)), d),
                (dv.as_mut().map(|b| slots(b, rows * d)), d),
                (ds.as_mut().map(|b| slots(b, rows)), 1),
            ],
            |r, [l, mut du, mut dv, mut ds]| {
                let (u, v, s) = (&u[r.start * d..r.end * d], &v[r.start * d..], &s[r.clone()]);
                let l = l.unwrap_or_default();
                let up = up.range(r);
                vectorized(
                    #[inline(always)]
                    || {
                        for i in 0..s.len() {
                            let rr = i * d..(i + 1) * d;
                            let (ui, vi) = (&u[rr.clone()], &v[rr.clone()]);
                            let dui = du.as_deref_mut().map(|o| &mut o[rr.clone()]);
                            let dvi = dv.as_deref_mut().map(|o| &mut o[rr.clone()]);
                            let dsi = ds.as_deref_mut().map(|o| &mut o[i]);
                            let li = pair_row(ui, vi, s[i], m, up.at(i), dui, dvi, dsi);
                            l[i] = MaybeUninit::new(li);
                        }
                    },
                )
            },
        );
        // SAFETY: the blocks cover every row, and pair_row wrote the loss and
        // each present gradient of each row.
        unsafe {
            filled(&mut loss, rows);
            for b in [&mut du, &mut dv].into_iter().flatten() {
                filled(b, rows * d);
            }
            if let Some(b) = &mut ds {
                filled(b, rows);
            }
        }
        (loss, vec![du, dv, ds])
    }
}

impl<T: Float> CustomOp<T> for Contrastive<T> {
    type Saved = UnitGrads<T>;
    fn name(&self) -> &str {
        OP
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, UnitGrads<T>)> {
        let rows = x[2].numel();
        let one = Tensor::scalar(T::one());
        // unit upstream gradients (only used for the eager gradients, which
        // `none` does not have)
        let up = match self.reduction {
            Reduction::None => Upstream::Same(T::one()),
            r => Upstream::new(&one, r, rows),
        };
        let need = self.eager.as_deref().unwrap_or(&[]);
        let (loss, grads) = self.pass([x[0], x[1], x[2]], up, need);
        let out = reduce(loss, x[2].shape().clone(), self.reduction, rows)?;
        Ok((out, UnitGrads::new(self.eager.is_some().then_some(grads))))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, UnitGrads<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let x = &cx.inputs;
        let grads = cx.saved.take_scaled_or(cx.grad_output, cx.needs_grad, || {
            let up = Upstream::new(cx.grad_output, self.reduction, x[2].numel());
            self.pass([&x[0], &x[1], &x[2]], up, cx.needs_grad).1
        });
        grads_as_tensors_of(grads, &[x[0].shape(), x[1].shape(), x[2].shape()])
    }
}

/// Contrastive pair loss `s·d² + (1−s)·max(0, margin − d)²`, `d = ‖u − v‖₂` per
/// row, reduced; `"none"` gives one loss per pair (`similar`'s shape).
///
/// Gradient, with `r = u − v`: `∂ℓ/∂u = (2s − 2(1−s)·max(0, m − d)/d)·r`
/// (the second term 0 at `d = 0`), `∂ℓ/∂v = −∂ℓ/∂u`,
/// `∂ℓ/∂s = d² − max(0, m − d)²`.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{contrastive, ContrastiveOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let u = tape.leaf(Tensor::from_vec(vec![0.0, 0.0, 0.0, 0.0], [2, 2])?);
/// let v = tape.leaf(Tensor::from_vec(vec![0.3, 0.4, 0.3, 0.4], [2, 2])?);
/// let similar = tape.constant(Tensor::from_vec(vec![1.0, 0.0], [2])?);
/// let loss = contrastive(&u, &v, &similar, &ContrastiveOptions::default())?;
/// // d = 0.5 for both pairs: (0.25 + 0.25) / 2
/// assert!((loss.item()? - 0.25).abs() < 1e-12);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` unless `u` and `v` are `[..., D]` alike and `similar` is
/// `[...]`; `InvalidTarget` for a label other than 0 or 1; `InvalidOption`
/// for a non-finite margin or `batchmean`.
pub fn contrastive<T: Float>(
    u: &Var<T>,
    v: &Var<T>,
    similar: &Var<T>,
    opts: &ContrastiveOptions,
) -> Result<Var<T>> {
    validate(u, v, similar, opts)?;
    let op = Contrastive {
        margin: T::of(opts.margin),
        reduction: opts.reduction,
        eager: eager_inputs(opts.reduction, &[u, v, similar]),
    };
    u.tape().clone().apply(op, &[u, v, similar])
}

/// The naive twin of [`contrastive`], from primitive ops:
/// `d = sqrt(sum(square(u − v)))`, then the formula (its gradient is NaN at
/// `d = 0`, where `sqrt` has none).
///
/// # Errors
/// As [`contrastive`].
pub fn contrastive_naive<T: Float>(
    u: &Var<T>,
    v: &Var<T>,
    similar: &Var<T>,
    opts: &ContrastiveOptions,
) -> Result<Var<T>> {
    validate(u, v, similar, opts)?;
    let last = u.dims().len() - 1;
    let d2 = u.sub(v)?.square()?.sum(last, false)?;
    let gap = d2.sqrt()?.neg()?.add_scalar(T::of(opts.margin))?.relu()?;
    let dissimilar = similar.neg()?.add_scalar(T::one())?;
    let loss = similar.mul(&d2)?.add(&dissimilar.mul(&gap.square()?)?)?;
    reduce_naive(loss, opts.reduction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, check_twins, Case};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::ErrorKind;

    /// Embeddings of `shape` and 0/1 labels. With margin 2.5 (and normal
    /// inputs) most dissimilar pairs sit inside the margin; `|m − d| ≥ 0.05`
    /// keeps finite differences off the hinge.
    fn case(shape: &[usize], seed: u64, margin: f64) -> Case {
        let c = Case::normal(2, shape, seed);
        let d = *shape.last().unwrap();
        let n = c.inputs[0].numel() / d;
        let mut u = c.inputs[0].to_vec();
        let v = c.inputs[1].as_slice();
        for i in 0..n {
            let dist: f64 = (0..d)
                .map(|j| (u[i * d + j] - v[i * d + j]).powi(2))
                .sum::<f64>()
                .sqrt();
            if (margin - dist).abs() < 0.05 {
                u[i * d] += 0.3;
            }
        }
        let s: Vec<f64> = (0..n)
            .map(|i| ((i * 7 + 3) % 3 == 0) as u8 as f64)
            .collect();
        Case::new(vec![
            Tensor::from_vec(u, shape.to_vec()).unwrap(),
            c.inputs[1].clone(),
            Tensor::from_vec(s, shape[..shape.len() - 1].to_vec()).unwrap(),
        ])
    }

    /// Gradcheck perturbs every input, and a perturbed label is no longer 0
    /// or 1, so gradcheck runs on `u`, `v` with the labels held constant; the
    /// twin check then compares all three gradients, the label's included.
    #[test]
    fn contrastive_gradcheck_and_twin() {
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            for margin in [1.0, 2.5] {
                let o = ContrastiveOptions { reduction, margin };
                for (shape, seed) in [(&[6, 3][..], 1), (&[2, 4, 5][..], 2)] {
                    let c = case(shape, seed, margin);
                    let s = c.inputs[2].clone();
                    let label = |v: &[Var<f64>]| v[0].tape().constant(s.clone());
                    check_family(
                        &Case::new(c.inputs[..2].to_vec()),
                        |v| contrastive(&v[0], &v[1], &label(v), &o),
                        |v| contrastive_naive(&v[0], &v[1], &label(v), &o),
                    );
                    check_twins(
                        &c,
                        |v| contrastive(&v[0], &v[1], &v[2], &o),
                        |v| contrastive_naive(&v[0], &v[1], &v[2], &o),
                    );
                }
            }
        }
    }

    #[test]
    fn zero_distance_has_zero_gradient() {
        let tape = Tape::<f64>::new();
        let u = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 1.0, 2.0], [2, 2]).unwrap());
        let v = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 1.0, 2.0], [2, 2]).unwrap());
        let s = tape.leaf(Tensor::from_vec(vec![0.0, 1.0], [2]).unwrap());
        let o = ContrastiveOptions {
            reduction: Reduction::Sum,
            margin: 1.5,
        };
        let loss = contrastive(&u, &v, &s, &o).unwrap();
        assert_eq!(loss.item().unwrap(), 2.25);
        let g = loss.backward().unwrap();
        assert_eq!(g.get(&u).unwrap().to_vec(), vec![0.0; 4]);
        assert_eq!(g.get(&v).unwrap().to_vec(), vec![0.0; 4]);
        assert_eq!(g.get(&s).unwrap().to_vec(), vec![-2.25, -2.25]);
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let u = tape.leaf(Tensor::zeros([3, 2]).unwrap());
        let v = tape.leaf(Tensor::zeros([3, 3]).unwrap());
        let s = tape.leaf(Tensor::zeros([3]).unwrap());
        let s4 = tape.leaf(Tensor::zeros([4]).unwrap());
        let half = tape.leaf(Tensor::full([3], 0.5).unwrap());
        let o = ContrastiveOptions::default();
        let kind = |r: Result<Var<f64>>| r.unwrap_err().kind();
        assert_eq!(kind(contrastive(&u, &v, &s, &o)), ErrorKind::ShapeMismatch);
        assert_eq!(kind(contrastive(&u, &u, &s4, &o)), ErrorKind::ShapeMismatch);
        assert_eq!(
            kind(contrastive(&u, &u, &half, &o)),
            ErrorKind::InvalidTarget
        );
        let bad = ContrastiveOptions {
            margin: f64::NAN,
            ..o.clone()
        };
        assert_eq!(
            kind(contrastive(&u, &u, &s, &bad)),
            ErrorKind::InvalidOption
        );
        let bm = ContrastiveOptions {
            reduction: Reduction::BatchMean,
            ..o
        };
        assert_eq!(kind(contrastive(&u, &u, &s, &bm)), ErrorKind::InvalidOption);
    }
}
