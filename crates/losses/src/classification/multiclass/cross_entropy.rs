//! Cross-entropy of a categorical distribution given by logits `z [..., C]`:
//! `ℓ = −Σ_c q_c log softmax(z)_c`, where the target distribution `q` is a
//! class id (one-hot) or a row of probabilities (soft targets).
//!
//! It is the negative log-likelihood of a categorical model, a strictly proper
//! scoring rule: in expectation it is minimised by the true class
//! probabilities. Computed in logit space, `−log softmax(z)_c = lse(z) − z_c`
//! with `lse` the max-shifted log-sum-exp, so logits of any finite magnitude
//! give a finite loss; the textbook `log(softmax(z))` underflows to `log 0 =
//! −∞` as soon as one class trails the leader by a few hundred (f64) or ~100
//! (f32). The gradient is `softmax(z)·Σq − q`: bounded, and largest when the
//! model is confidently wrong.
//!
//! Options follow PyTorch's `F.cross_entropy` exactly (with the class axis
//! last): class weights `w`, an `ignore_index`, and label smoothing `ε`, which
//! mixes the uniform distribution into the target. With class ids `y` the
//! effective (weighted, smoothed) target of an item is
//! `a_c = (1 − ε)·w_y·[c = y] + (ε/C)·w_c`, and `"mean"` divides by
//! `Σ_i w_{y_i}` over the items that are not ignored. With soft targets
//! `t`, `a_c = w_c·((1 − ε)·t_c + ε/C)` and `"mean"` divides by the number of
//! rows (PyTorch's choice; `ignore_index` plays no part).
//!
//! The log-sum-exp of a row is kept as `max + log Σ e^{z − max}` (two
//! numbers, so f32 keeps its digits). With class ids, every exponential is
//! computed once: forward writes `e^{z − max}` row by row while summing it
//! (vectorised; rows of fewer than 32 classes as one loop across rows) and,
//! when the logits need a gradient, keeps that buffer for backward instead of
//! recomputing it. For `sum` and `mean` every row's upstream gradient is the
//! cotangent times a constant known at forward time, so forward turns each
//! block of rows into the gradient for a cotangent of 1 while it is in cache,
//! and backward returns the buffer as it is (or rescales it once when the
//! cotangent is not 1); for `none` backward scales the kept exps row by row.
//! The trade: an `[..., C]` buffer (the size of the gradient backward would
//! allocate anyway, so the peak does not grow) is held from forward to
//! backward, and forward does the gradient's work even if backward never
//! runs — so it only does when the logits need a gradient (grad enabled and
//! the logits tracked). In exchange the exps are computed once, and the
//! logits are read once and the gradient written once, the least memory
//! traffic the op can have. A second backward through the same tape
//! recomputes. Soft targets save the log-sum-exp only and recompute.

use super::rows::{
    at, buf_blocks, check_ids, class_of, class_weight, grad_rows, map_rows, naive_classes,
    per_class, row, row_blocks, rows_of, Lse, Rows,
};
use crate::checks;
use crate::common::{
    assume_init, check_denominator, check_option, check_unit_interval, filled, mean_denominator,
    no_batchmean, outside_unit, reduce_naive_over, reduce_over, same_shape, slots, unfilled,
    Reduction, Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::simd::{self, vectorized, Store};
use lossgraph_tensor::{Float, Shape, Tensor};
use std::sync::Mutex;

/// Rows shorter than this go through the block-wise (across-rows) exp loop.
const SHORT_ROW: usize = 32;

const OP: &str = "cross_entropy";

/// The target of [`cross_entropy`]: class ids or probabilities.
///
/// Both convert with `From`, so `cross_entropy(&logits, &ids, &opts)` and
/// `cross_entropy(&logits, &probs, &opts)` both work.
#[derive(Clone, Copy)]
pub enum CrossEntropyTarget<'a, T: Float> {
    /// Class ids `[...]` (`i64`), one per row of the logits; never
    /// differentiable. An id equal to `ignore_index` skips its row.
    Classes(&'a Tensor<i64>),
    /// Probabilities `[..., C]`, the logits' shape (soft targets, as in
    /// distillation or mixup). A differentiable input:
    /// `∂ℓ/∂t_c = −(1 − ε)·w_c·log softmax(z)_c`. Each entry must lie in
    /// `[0, 1]` (`InvalidValue` otherwise); a row need not sum to 1, as in
    /// PyTorch (the gradient in the logits is `softmax(z)·Σ_c a_c − a`, so a
    /// row's total scales it).
    Probs(&'a Var<T>),
}

impl<'a, T: Float> From<&'a Tensor<i64>> for CrossEntropyTarget<'a, T> {
    fn from(ids: &'a Tensor<i64>) -> Self {
        CrossEntropyTarget::Classes(ids)
    }
}

impl<'a, T: Float> From<&'a Var<T>> for CrossEntropyTarget<'a, T> {
    fn from(probs: &'a Var<T>) -> Self {
        CrossEntropyTarget::Probs(probs)
    }
}

/// Options of [`cross_entropy`].
#[derive(Debug, Clone, PartialEq)]
pub struct CrossEntropyOptions {
    /// Per-class weights `w [C]` (default none: every class 1).
    pub weight: Option<Vec<f64>>,
    /// Class id whose rows are skipped: loss 0, gradient 0, and left out of
    /// the mean's denominator (default −100; class-id targets only).
    pub ignore_index: i64,
    /// Label smoothing `ε` in `[0, 1]` (default 0).
    pub label_smoothing: f64,
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
    /// The mean's denominator from outside (default none: this call's own
    /// count, `Σ w_{y_i}` over the items not ignored, or the number of rows
    /// with probability targets): the whole batch's, when this call sees a part of it
    /// (a micro-batch, a data-parallel shard), so that the parts' gradients
    /// add up to the batch's. Only with `reduction = mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

impl Default for CrossEntropyOptions {
    fn default() -> Self {
        CrossEntropyOptions {
            weight: None,
            ignore_index: -100,
            label_smoothing: 0.0,
            reduction: Reduction::Mean,
            denominator: None,
        }
    }
}

/// Cross-entropy from logits `[..., C]` (class axis last); PyTorch's
/// `F.cross_entropy` with the class axis moved.
///
/// Per item, with `lse = log Σ_c e^{z_c}` and the effective target `a` of the
/// module docs: `ℓ = Σ_c a_c·(lse − z_c)`; without weights or smoothing this
/// is `lse − z_y = −log softmax(z)_y`. `"none"` gives `[...]` (0 at ignored
/// items), `"sum"` adds, `"mean"` divides by `Σ w_{y_i}` over non-ignored
/// items (class ids) or by the number of rows (soft targets); an empty
/// denominator gives 0 with zero gradients.
///
/// Gradient: `∂ℓ/∂z_k = softmax(z)_k·Σ_c a_c − a_k`; for soft targets also
/// `∂ℓ/∂t_c = (1 − ε)·w_c·(lse − z_c)`.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{cross_entropy, CrossEntropyOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// // two rows of three classes; logits 0 everywhere → p = 1/3
/// let logits = tape.leaf(Tensor::zeros([2, 3])?);
/// let ids = Tensor::from_vec(vec![0i64, 2], [2])?;
/// let loss = cross_entropy(&logits, &ids, &CrossEntropyOptions::default())?;
/// assert!((loss.item()? - 3f64.ln()).abs() < 1e-12);
///
/// // the same targets as probabilities, with label smoothing
/// let probs = tape.leaf(Tensor::from_vec(vec![1.0, 0.0, 0.0, 0.0, 0.0, 1.0], [2, 3])?);
/// let opts = CrossEntropyOptions { label_smoothing: 0.1, ..Default::default() };
/// let soft = cross_entropy(&logits, &probs, &opts)?;
/// assert!((soft.item()? - 3f64.ln()).abs() < 1e-12);
/// let grads = soft.backward()?;
/// assert_eq!(grads.get(&probs).unwrap().dims(), &[2, 3]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// - `ShapeMismatch`: class ids not shaped as the logits without their last
///   axis, probabilities not shaped as the logits, 0-d logits or `C = 0`, or
///   `weight` of a length other than `C`.
/// - `InvalidTarget`: a class id outside `[0, C)` that is not `ignore_index`.
/// - `InvalidValue`: a probability target outside `[0, 1]` (NaN passes, as
///   non-finite inputs do).
/// - `InvalidOption`: `label_smoothing` outside `[0, 1]`, or `batchmean`.
pub fn cross_entropy<'a, T: Float>(
    logits: &Var<T>,
    target: impl Into<CrossEntropyTarget<'a, T>>,
    opts: &CrossEntropyOptions,
) -> Result<Var<T>> {
    let tape = logits.tape().clone();
    match target.into() {
        CrossEntropyTarget::Classes(ids) => {
            let mut op = ClassCe::new(&logits.shape(), ids, opts)?;
            op.keep_exps = tape.grad_enabled() && logits.requires_grad();
            let out = tape.apply(op, &[logits])?;
            checks::logits(OP, "logits", logits, true);
            checks::class_ids(
                &tape,
                OP,
                ids,
                opts.ignore_index,
                opts.denominator.is_some(),
            );
            // a weighted mean divides by Σ w_y: the weights' scale cancels
            if let (Some(w), false) = (&opts.weight, opts.reduction.is_mean()) {
                checks::class_weights(&tape, OP, "weight", w, ids, Some(opts.ignore_index));
            }
            Ok(out)
        }
        CrossEntropyTarget::Probs(probs) => {
            let op = SoftCe::new(&logits.shape(), &probs.shape(), opts)?;
            let out = tape.apply(op, &[logits, probs])?;
            checks::logits(OP, "logits", logits, true);
            Ok(out)
        }
    }
}

/// Check the options shared by both target kinds.
fn check_options(opts: &CrossEntropyOptions) -> Result<()> {
    no_batchmean(OP, opts.reduction)?;
    check_denominator(OP, opts.denominator, opts.reduction)?;
    let e = opts.label_smoothing;
    check_option(OP, "label_smoothing", e, (0.0..=1.0).contains(&e), "[0, 1]")
}

/// Cross-entropy against class ids: one input, the logits.
struct ClassCe<T> {
    target: Tensor<i64>,
    ignore: i64,
    weight: Option<Vec<T>>,
    /// Label smoothing ε.
    eps: T,
    /// `Σ_c w_c` (C without weights), for the smoothing term's total.
    wsum: T,
    /// The mean's denominator, `Σ w_{y_i}` over non-ignored items.
    denom: T,
    reduction: Reduction,
    rows: Rows,
    /// Whether forward keeps the exps for backward (the logits need a
    /// gradient).
    keep_exps: bool,
}

impl<T: Float> ClassCe<T> {
    fn new(shape: &Shape, ids: &Tensor<i64>, o: &CrossEntropyOptions) -> Result<Self> {
        check_options(o)?;
        let rows = check_ids(OP, shape, ids, Some(o.ignore_index))?;
        let weight = per_class::<T>(OP, "weight", o.weight.as_deref(), rows.classes)?;
        let wsum = weight
            .as_ref()
            .map_or(T::of(rows.classes as f64), |w| w.iter().copied().sum());
        let denom = ids
            .as_slice()
            .iter()
            .filter_map(|&y| class_of(y, Some(o.ignore_index)))
            .map(|y| at(&weight, y))
            .sum();
        let denom = mean_denominator(o.denominator, denom);
        Ok(ClassCe {
            target: ids.clone(),
            ignore: o.ignore_index,
            weight,
            eps: T::of(o.label_smoothing),
            wsum,
            denom,
            reduction: o.reduction,
            rows,
            keep_exps: false,
        })
    }

    /// The class of row `i`, `None` when ignored.
    #[inline(always)]
    fn class(&self, i: usize) -> Option<usize> {
        class_of(self.target.as_slice()[i], Some(self.ignore))
    }

    /// The weight on the true class, `(1 − ε)·w_y`, and the one on every
    /// class from smoothing, `ε/C` (times `w_c`).
    #[inline(always)]
    fn split(&self, y: usize) -> (T, T) {
        let c = T::of(self.rows.classes as f64);
        ((T::one() - self.eps) * at(&self.weight, y), self.eps / c)
    }
}

/// What the class-id forward saves for backward.
struct ClassSaved<T> {
    /// Per row, `1/Σ_c e^{z_c − max}`, which turns the exps into
    /// probabilities (1 when the max is not finite — the log-sum is then
    /// taken as 0 — and 0 for ignored rows).
    inv: Vec<T>,
    /// The `[rows, C]` buffer that becomes the gradient, present when the
    /// logits needed a gradient at forward time. The first backward takes
    /// it; a later one recomputes.
    buffer: Mutex<Option<Buffer<T>>>,
}

impl<T: Float> ClassCe<T> {
    /// The forward of a block of rows starting at row `row0`: each row's loss
    /// and `1/Σe` ([`ClassSaved::inv`]), and, when `e` is given, `e^{z − max}` of every element
    /// of the block (zeros for ignored rows) — every slot of `e` is written.
    ///
    /// Each exponential is computed once. Rows of at least [`SHORT_ROW`]
    /// classes go one at a time (max, then exps and their sum in one pass,
    /// vectorised along the row); shorter rows go as a block: the row maxes
    /// are spread over a scratch buffer and the exps of the whole block are
    /// one flat loop, vectorised across rows. The logs and reciprocals of the
    /// sums are one loop over the block's rows.
    #[inline(always)]
    fn forward_block(
        &self,
        z: &[T],
        row0: usize,
        mut e: Option<&mut [impl Store<T>]>,
        loss: &mut [T],
        inv: &mut [T],
    ) {
        let (rows, c) = (loss.len(), self.rows.classes);
        let zb = &z[row0 * c..(row0 + rows) * c];
        let mut max = vec![T::zero(); rows];
        let mut sum = vec![T::one(); rows];
        if c >= SHORT_ROW {
            for r in 0..rows {
                let zr = &zb[r * c..(r + 1) * c];
                let er = e.as_deref_mut().map(|e| &mut e[r * c..(r + 1) * c]);
                if self.class(row0 + r).is_none() {
                    if let Some(er) = er {
                        er.iter_mut().for_each(|v| v.store(T::zero()));
                    }
                    continue;
                }
                max[r] = simd::max(zr);
                // the next row streams in while this one's exps are computed
                let i = row0 + r;
                let next = z.get((i + 1) * c..(i + 2) * c).unwrap_or(&[]);
                sum[r] = match er {
                    Some(er) => simd::exp_shift_sum_ahead(zr, max[r], er, next),
                    None => simd::sum_exp_shift(zr, max[r]),
                };
            }
        } else {
            let mut ex = vec![T::zero(); rows * c];
            for (r, (zr, xr)) in zb.chunks_exact(c).zip(ex.chunks_exact_mut(c)).enumerate() {
                max[r] = simd::max(zr);
                xr.fill(max[r]);
            }
            simd::exp_sub_from(&mut ex, zb);
            for (r, xr) in ex.chunks_exact_mut(c).enumerate() {
                if self.class(row0 + r).is_none() {
                    xr.fill(T::zero());
                } else {
                    sum[r] = simd::sum(xr);
                }
            }
            if let Some(e) = e {
                for (o, &x) in e.iter_mut().zip(&ex) {
                    o.store(x);
                }
            }
        }
        // log Σ and 1/Σ for the block's rows in one (vectorisable) loop
        let mut log_sum = vec![T::zero(); rows];
        for (l, s) in log_sum.iter_mut().zip(sum.iter_mut()) {
            *l = s.fast_ln();
            *s = T::one() / *s;
        }
        for r in 0..rows {
            let (i, zr) = (row0 + r, &zb[r * c..(r + 1) * c]);
            let Some(y) = self.class(i) else {
                loss[r] = T::zero();
                inv[r] = T::zero();
                continue;
            };
            let m = max[r];
            let finite = m.is_finite();
            let lse = Lse {
                max: m,
                log_sum: if finite { log_sum[r] } else { T::zero() },
            };
            inv[r] = if finite { sum[r] } else { T::one() };
            let (on_y, smooth) = self.split(y);
            let mut l = on_y * lse.nlp(zr[y]);
            if smooth > T::zero() {
                // Σ_k w_k·(lse − z_k) = Σ_k w_k·(max − z_k) + Σw·log_sum
                let gap = match &self.weight {
                    None => simd::sum_map(zr, |zk| m - zk),
                    Some(w) => simd::sum_map2(zr, w, |zk, wk| wk * (m - zk)),
                };
                l += smooth * (gap + self.wsum * lse.log_sum);
            }
            loss[r] = l;
        }
    }

    /// Turn a block of exps (rows from `row0`) into the gradient, in place:
    /// `dz_k = u·(Σa·p_k − a_k)` with `p_k = e_k·inv` and
    /// `a_k = on_y·[k = y] + smooth·w_k`, `Σa = on_y + smooth·Σw`.
    #[inline(always)]
    fn scale_block(&self, row0: usize, gb: &mut [T], up: Upstream<'_, T>, inv: &[T]) {
        let c = self.rows.classes;
        for (r, d) in gb.chunks_exact_mut(c).enumerate() {
            let i = row0 + r;
            let Some(y) = self.class(i) else { continue };
            let u = up.at(i);
            let (on_y, smooth) = self.split(y);
            let total = on_y + smooth * self.wsum;
            let scale = u * total * inv[r];
            let us = u * smooth;
            match (&self.weight, smooth > T::zero()) {
                (_, false) => d.iter_mut().for_each(|v| *v *= scale),
                (None, true) => d.iter_mut().for_each(|v| *v = *v * scale - us),
                (Some(w), true) => d
                    .iter_mut()
                    .zip(w)
                    .for_each(|(v, &wk)| *v = *v * scale - us * wk),
            }
            d[y] -= u * on_y;
        }
    }

    /// The forward over every row, also building a `[rows, C]` buffer: the
    /// gradient for upstream gradients `up` when given, else the exps.
    /// Each block of rows is turned into its gradient while it is in cache.
    fn forward_with_buffer(
        &self,
        z: &[T],
        up: Option<Upstream<'_, T>>,
        loss: &mut [T],
        inv: &mut [T],
    ) -> Vec<T> {
        let (n, c) = (self.rows.rows, self.rows.classes);
        let mut e = unfilled(n * c);
        row_blocks(c, Some(slots(&mut e, n * c)), loss, inv, |r0, e, l, s| {
            vectorized(
                #[inline(always)]
                || {
                    let Some(e) = e else { return };
                    self.forward_block(z, r0, Some(&mut *e), l, s);
                    if let Some(up) = up {
                        // SAFETY: forward_block wrote every slot of e.
                        let gb = unsafe { assume_init(e) };
                        self.scale_block(r0, gb, up, s);
                    }
                },
            )
        });
        // SAFETY: the blocks cover every row and forward_block writes every
        // slot of its rows.
        unsafe { filled(&mut e, n * c) };
        e
    }
}

/// What the class-id forward leaves in its `[rows, C]` buffer.
enum Buffer<T> {
    /// The gradient for a cotangent of 1 (`sum` and `mean`: the upstream
    /// gradient of every row is then the same, known at forward time).
    UnitGrad(Vec<T>),
    /// The exps `e^{z − max}` (`none`: each row's upstream gradient is only
    /// known at backward time).
    Exps(Vec<T>),
}

impl<T: Float> CustomOp<T> for ClassCe<T> {
    /// Per row, the log-sum-exp and `1/Σe`; and, when the logits need a
    /// gradient, the exps `e^{z − max}` themselves (see the module docs).
    type Saved = ClassSaved<T>;
    fn name(&self) -> &str {
        OP
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, Self::Saved)> {
        let (z, n, c) = (x[0].as_slice(), self.rows.rows, self.rows.classes);
        let (mut loss, mut inv) = (vec![T::zero(); n], vec![T::zero(); n]);
        let buffer = if !self.keep_exps {
            let none: Option<&mut [T]> = None;
            row_blocks(c, none, &mut loss, &mut inv, |r0, _, l, s| {
                let e: Option<&mut [T]> = None;
                vectorized(
                    #[inline(always)]
                    || self.forward_block(z, r0, e, l, s),
                )
            });
            None
        } else if self.reduction == Reduction::None {
            Some(Buffer::Exps(
                self.forward_with_buffer(z, None, &mut loss, &mut inv),
            ))
        } else {
            let one = Tensor::scalar(T::one());
            let unit = Upstream::over(&one, self.reduction, self.denom);
            let g = self.forward_with_buffer(z, Some(unit), &mut loss, &mut inv);
            Some(Buffer::UnitGrad(g))
        };
        let out = reduce_over(loss, &self.rows.batch, self.reduction, self.denom)?;
        Ok((
            out,
            ClassSaved {
                inv,
                buffer: Mutex::new(buffer),
            },
        ))
    }

    fn backward(&self, cx: &BackwardCtx<'_, T, Self::Saved>) -> Result<Vec<Option<Tensor<T>>>> {
        let c = self.rows.classes;
        let up = Upstream::over(cx.grad_output, self.reduction, self.denom);
        let saved = cx
            .saved
            .buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let g = match saved {
            Some(Buffer::UnitGrad(mut g)) => {
                // the gradient is linear in the cotangent g: rescale unless 1
                let k = cx.grad_output.as_slice()[0];
                if k != T::one() {
                    buf_blocks(c, &mut g, |_, gb| {
                        vectorized(
                            #[inline(always)]
                            || gb.iter_mut().for_each(|v| *v *= k),
                        )
                    });
                }
                g
            }
            Some(Buffer::Exps(mut g)) => {
                let inv = &cx.saved.inv;
                buf_blocks(c, &mut g, |r0, gb| {
                    vectorized(
                        #[inline(always)]
                        || self.scale_block(r0, gb, up, &inv[r0..]),
                    )
                });
                g
            }
            None => {
                // a second backward: recompute, block by block
                let n = self.rows.rows;
                let (mut loss, mut inv) = (vec![T::zero(); n], vec![T::zero(); n]);
                self.forward_with_buffer(cx.inputs[0].as_slice(), Some(up), &mut loss, &mut inv)
            }
        };
        Ok(vec![Some(Tensor::from_vec(g, cx.inputs[0].shape())?)])
    }
}

/// Cross-entropy against probabilities: two inputs, logits and target.
struct SoftCe<T> {
    weight: Option<Vec<T>>,
    eps: T,
    reduction: Reduction,
    /// The mean's denominator: the rows, or the option's.
    denom: T,
    rows: Rows,
}

impl<T: Float> SoftCe<T> {
    fn new(shape: &Shape, target: &Shape, o: &CrossEntropyOptions) -> Result<Self> {
        check_options(o)?;
        let rows = rows_of(OP, shape, "logits")?;
        same_shape(OP, shape, target, "logits and probability targets")?;
        Ok(SoftCe {
            weight: per_class::<T>(OP, "weight", o.weight.as_deref(), rows.classes)?,
            eps: T::of(o.label_smoothing),
            reduction: o.reduction,
            denom: mean_denominator(o.denominator, T::of(rows.rows as f64)),
            rows,
        })
    }

    /// The effective target `a_c = w_c·((1 − ε)·t_c + ε/C)`.
    #[inline]
    fn a(&self, k: usize, t: T) -> T {
        let c = T::of(self.rows.classes as f64);
        at(&self.weight, k) * ((T::one() - self.eps) * t + self.eps / c)
    }
}

impl<T: Float> CustomOp<T> for SoftCe<T> {
    /// One log-sum-exp per row.
    type Saved = Vec<Lse<T>>;
    fn name(&self) -> &str {
        OP
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, Self::Saved)> {
        let (z, t, c) = (x[0].as_slice(), x[1].as_slice(), self.rows.classes);
        let per_row = map_rows(self.rows.rows, c, |i| {
            let (zr, tr) = (row(z, i, c), row(t, i, c));
            let lse = Lse::of(zr);
            let (mut loss, mut outside) = (T::zero(), false);
            for (k, (&zk, &tk)) in zr.iter().zip(tr).enumerate() {
                let a = self.a(k, tk);
                // 0·log 0 = 0: a class with no target mass adds nothing,
                // even when its logit is −∞ (a masked class)
                if a != T::zero() {
                    loss += a * lse.nlp(zk);
                }
                // the [0, 1] check rides along in the same pass
                outside |= outside_unit(tk);
            }
            (loss, lse, outside)
        });
        if per_row.iter().any(|r| r.2) {
            // a target outside [0, 1]: the checker finds and names the first
            check_unit_interval(OP, "target", x[1])?;
        }
        let (loss, lse): (Vec<T>, Vec<Lse<T>>) =
            per_row.into_iter().map(|(l, s, _)| (l, s)).unzip();
        Ok((
            reduce_over(loss, &self.rows.batch, self.reduction, self.denom)?,
            lse,
        ))
    }

    fn backward(&self, cx: &BackwardCtx<'_, T, Self::Saved>) -> Result<Vec<Option<Tensor<T>>>> {
        let (z, t, c) = (
            cx.inputs[0].as_slice(),
            cx.inputs[1].as_slice(),
            self.rows.classes,
        );
        let up = Upstream::over(cx.grad_output, self.reduction, self.denom);
        let shape = cx.inputs[0].shape();
        let dz = cx.needs_grad[0]
            .then(|| {
                grad_rows(shape, c, |i, d| {
                    let (u, lse) = (up.at(i), cx.saved[i]);
                    let (zr, tr) = (row(z, i, c), row(t, i, c));
                    let total: T = tr.iter().enumerate().map(|(k, &tk)| self.a(k, tk)).sum();
                    for (k, (dk, (&zk, &tk))) in d.iter_mut().zip(zr.iter().zip(tr)).enumerate() {
                        *dk = u * (total * lse.p(zk) - self.a(k, tk));
                    }
                })
            })
            .transpose()?;
        let dt = cx.needs_grad[1]
            .then(|| {
                let keep = T::one() - self.eps;
                grad_rows(shape, c, |i, d| {
                    let (u, lse) = (up.at(i), cx.saved[i]);
                    for (k, (dk, &zk)) in d.iter_mut().zip(row(z, i, c)).enumerate() {
                        *dk = u * keep * at(&self.weight, k) * lse.nlp(zk);
                    }
                })
            })
            .transpose()?;
        Ok(vec![dz, dt])
    }
}

/// The naive twin of [`cross_entropy`]: `log(softmax(z))` with primitive ops,
/// times the effective target (a constant built from the one-hot ids, or the
/// smoothed probabilities times the weights), summed over the class axis.
///
/// # Errors
/// As [`cross_entropy`].
pub fn cross_entropy_naive<'a, T: Float>(
    logits: &Var<T>,
    target: impl Into<CrossEntropyTarget<'a, T>>,
    opts: &CrossEntropyOptions,
) -> Result<Var<T>> {
    let tape = logits.tape().clone();
    let shape = logits.shape();
    let last = shape.ndim().saturating_sub(1);
    // The fused op's constructors validate (shapes, ids, options) so that
    // both flavors refuse the same inputs with the same errors; everything
    // they compute (weights, smoothing, the ignore test, the mean's
    // denominator) is recomputed below from the options and the formula of
    // LOSSES.md, so a bug there cannot agree with itself.
    let classes = shape.dims().last().copied().unwrap_or(1).max(1);
    let rows = shape.numel() / classes;
    let eps = opts.label_smoothing;
    let w = |k| class_weight(&opts.weight, k);
    let log_p = || logits.softmax()?.log();
    match target.into() {
        CrossEntropyTarget::Classes(ids) => {
            ClassCe::<T>::new(&shape, ids, opts)?;
            // −Σ_k a_k log p_k with a = (1 − ε)·w_y·onehot(y) + (ε/C)·w, a
            // zero row where the id is ignored; the mean divides by Σ w_y
            // over the rows kept (PyTorch's rule, smoothing included)
            let mut a = vec![T::zero(); rows * classes];
            let mut denom = 0.0;
            let kept = naive_classes(ids, Some(opts.ignore_index));
            for (row, y) in a.chunks_mut(classes).zip(kept) {
                let Some(y) = y else { continue };
                denom += w(y);
                for (k, v) in row.iter_mut().enumerate() {
                    *v = T::of(eps / classes as f64 * w(k));
                }
                row[y] += T::of((1.0 - eps) * w(y));
            }
            let a = tape.constant(Tensor::from_vec(a, shape.clone())?);
            let loss = log_p()?.mul(&a)?.sum(last, false)?.neg()?;
            reduce_naive_over(
                loss,
                opts.reduction,
                T::of(opts.denominator.unwrap_or(denom)),
            )
        }
        CrossEntropyTarget::Probs(probs) => {
            SoftCe::<T>::new(&shape, &probs.shape(), opts)?;
            check_unit_interval(OP, "target", &probs.value())?;
            // a = (1 − ε)·t + ε/C, weighted per class; the mean is over rows
            let t = probs
                .mul_scalar(T::of(1.0 - eps))?
                .add_scalar(T::of(eps / classes as f64))?;
            let weights: Vec<T> = (0..classes).map(|k| T::of(w(k))).collect();
            let a = t.mul(&tape.constant(Tensor::from_vec(weights, [classes])?))?;
            let loss = log_p()?.mul(&a)?.sum(last, false)?.neg()?;
            let denom = opts.denominator.unwrap_or(rows as f64);
            reduce_naive_over(loss, opts.reduction, T::of(denom))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, check_twins, Case};
    use lossgraph_autodiff::{ErrorKind, Tape};

    /// Random class ids in `[0, c)`, with every `ignore_every`-th replaced by
    /// `ignore` (when given).
    fn ids(n: &[usize], c: usize, seed: u64, ignore: Option<(usize, i64)>) -> Tensor<i64> {
        let u = Tensor::<f64>::rand_uniform(n.to_vec(), 0.0, c as f64, seed).unwrap();
        let v = u
            .as_slice()
            .iter()
            .enumerate()
            .map(|(i, &x)| match ignore {
                Some((every, id)) if i % every == 1 => id,
                _ => (x as i64).min(c as i64 - 1),
            })
            .collect();
        Tensor::from_vec(v, n.to_vec()).unwrap()
    }

    fn probs(shape: &[usize], seed: u64) -> Tensor<f64> {
        Tensor::<f64>::randn(shape.to_vec(), 0.0, 1.0, seed)
            .unwrap()
            .softmax()
    }

    fn all_options() -> Vec<CrossEntropyOptions> {
        let w = Some(vec![0.5, 1.5, 2.0, 0.25]);
        let mut out = Vec::new();
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            for (weight, label_smoothing) in
                [(None, 0.0), (w.clone(), 0.0), (None, 0.2), (w.clone(), 0.3)]
            {
                out.push(CrossEntropyOptions {
                    weight,
                    label_smoothing,
                    reduction,
                    ..Default::default()
                });
            }
        }
        // a mean over a part of a batch, divided by the whole batch's count
        out.push(CrossEntropyOptions {
            weight: w.clone(),
            label_smoothing: 0.1,
            denominator: Some(6.5),
            ..Default::default()
        });
        out.push(CrossEntropyOptions {
            denominator: Some(0.0),
            ..Default::default()
        });
        out
    }

    #[test]
    fn class_ids_gradcheck_and_twin() {
        // 2-D [N, C] and K-dim [B, T, C] logits, with some ignored items
        for (shape, seed) in [(vec![5usize, 4], 1u64), (vec![2, 3, 4], 2)] {
            let lead = &shape[..shape.len() - 1];
            let y = ids(lead, 4, seed, Some((3, -100)));
            for o in all_options() {
                check_family(
                    &Case::normal(1, &shape, seed),
                    |v| cross_entropy(&v[0], &y, &o),
                    |v| cross_entropy_naive(&v[0], &y, &o),
                );
            }
        }
    }

    #[test]
    fn large_inputs_split_over_rayon_agree_with_twin() {
        // 300 × 120 = 36000 elements: above the parallel threshold
        let y = ids(&[300], 120, 11, Some((7, -100)));
        let o = CrossEntropyOptions {
            label_smoothing: 0.1,
            ..Default::default()
        };
        check_twins(
            &Case::normal(1, &[300, 120], 11),
            |v| cross_entropy(&v[0], &y, &o),
            |v| cross_entropy_naive(&v[0], &y, &o),
        );
        let soft = Case::new(vec![
            Tensor::randn([300, 120], 0.0, 1.0, 12).unwrap(),
            probs(&[300, 120], 13),
        ]);
        check_twins(
            &soft,
            |v| cross_entropy(&v[0], &v[1], &o),
            |v| cross_entropy_naive(&v[0], &v[1], &o),
        );
    }

    #[test]
    fn custom_ignore_index_in_range() {
        let y = ids(&[3, 2], 4, 7, None);
        let o = CrossEntropyOptions {
            ignore_index: 2,
            weight: Some(vec![1.0, 2.0, 3.0, 4.0]),
            ..Default::default()
        };
        check_family(
            &Case::normal(1, &[3, 2, 4], 7),
            |v| cross_entropy(&v[0], &y, &o),
            |v| cross_entropy_naive(&v[0], &y, &o),
        );
    }

    #[test]
    fn soft_targets_gradcheck_and_twin() {
        for (shape, seed) in [(vec![5usize, 4], 3u64), (vec![2, 3, 4], 4)] {
            let case = Case::new(vec![
                Tensor::randn(shape.clone(), 0.0, 1.5, seed).unwrap(),
                probs(&shape, seed + 10),
            ]);
            for o in all_options() {
                check_family(
                    &case,
                    |v| cross_entropy(&v[0], &v[1], &o),
                    |v| cross_entropy_naive(&v[0], &v[1], &o),
                );
            }
        }
    }

    #[test]
    fn all_ignored_mean_is_zero_with_zero_grads() {
        let tape = Tape::<f64>::new();
        let z = tape.leaf(Tensor::randn([3, 4], 0.0, 1.0, 5).unwrap());
        let y = Tensor::from_vec(vec![-100i64; 3], [3]).unwrap();
        for weight in [None, Some(vec![1.0; 4])] {
            let o = CrossEntropyOptions {
                weight,
                label_smoothing: 0.1,
                ..Default::default()
            };
            let loss = cross_entropy(&z, &y, &o).unwrap();
            assert_eq!(loss.item().unwrap(), 0.0);
            let g = loss.backward().unwrap();
            assert!(g.get(&z).unwrap().as_slice().iter().all(|&d| d == 0.0));
        }
    }

    #[test]
    fn empty_batch() {
        let tape = Tape::<f64>::new();
        let z = tape.leaf(Tensor::zeros([0, 4]).unwrap());
        let y = Tensor::from_vec(vec![], [0]).unwrap();
        let mean = cross_entropy(&z, &y, &CrossEntropyOptions::default()).unwrap();
        assert_eq!(mean.item().unwrap(), 0.0);
        assert_eq!(mean.backward().unwrap().get(&z).unwrap().dims(), &[0, 4]);
        let o = CrossEntropyOptions {
            reduction: Reduction::None,
            ..Default::default()
        };
        assert_eq!(cross_entropy(&z, &y, &o).unwrap().dims(), vec![0]);
    }

    #[test]
    fn f32_extreme_logits_stay_finite() {
        // f32 logits far apart: softmax underflows to 0, so the naive
        // log(softmax) is −∞ and the loss +∞; the fused op stays finite
        let data = vec![
            1e4, -1e4, 0.5, 100.0, -3.0, -8000.25, 7000.0, 7000.0, -1.0, 2.0,
        ];
        let y = Tensor::from_vec(vec![1i64, 0], [2]).unwrap();
        let run = |smoothing: f64| {
            let o = CrossEntropyOptions {
                label_smoothing: smoothing,
                reduction: Reduction::None,
                ..Default::default()
            };
            let t32 = Tape::<f32>::new();
            let z32 = t32
                .leaf(Tensor::from_vec(data.iter().map(|&v| v as f32).collect(), [2, 5]).unwrap());
            let naive = cross_entropy_naive(&z32, &y, &o).unwrap().value();
            assert!(naive.as_slice().iter().any(|v| !v.is_finite()));
            let fused = cross_entropy(&z32, &y, &o).unwrap();
            let g32 = fused.backward_with(Tensor::ones([2]).unwrap()).unwrap();
            let t64 = Tape::<f64>::new();
            let z64 = t64.leaf(Tensor::from_vec(data.clone(), [2, 5]).unwrap());
            let want = cross_entropy(&z64, &y, &o).unwrap();
            let g64 = want.backward_with(Tensor::ones([2]).unwrap()).unwrap();
            for (&a, &b) in fused.value().as_slice().iter().zip(want.value().as_slice()) {
                assert!(a.is_finite());
                assert!((a as f64 - b).abs() <= 1e-6 * b.abs(), "{a} vs {b}");
            }
            let (d32, d64) = (g32.get(&z32).unwrap(), g64.get(&z64).unwrap());
            for (&a, &b) in d32.as_slice().iter().zip(d64.as_slice()) {
                assert!(a.is_finite());
                assert!((a as f64 - b).abs() <= 1e-5 + 1e-5 * b.abs(), "{a} vs {b}");
            }
        };
        run(0.0);
        run(0.1);
    }

    #[test]
    fn soft_targets_masked_class_is_finite() {
        // a −∞ logit where the target has no mass contributes nothing
        let tape = Tape::<f64>::new();
        let z = tape.leaf(Tensor::from_vec(vec![1.0, f64::NEG_INFINITY, 0.0], [1, 3]).unwrap());
        let t = tape.leaf(Tensor::from_vec(vec![0.5, 0.0, 0.5], [1, 3]).unwrap());
        let loss = cross_entropy(&z, &t, &CrossEntropyOptions::default()).unwrap();
        let want = 0.5 * ((1f64.exp() + 1.0).ln() - 1.0) + 0.5 * (1f64.exp() + 1.0).ln();
        assert!((loss.item().unwrap() - want).abs() < 1e-12);
        let g = loss.backward().unwrap();
        assert!(g.get(&z).unwrap().as_slice().iter().all(|d| d.is_finite()));
    }

    /// A soft target outside [0, 1] (the issue's row [3, −1, 0.5]) is
    /// `InvalidValue` in both flavors, and records nothing; NaN passes.
    #[test]
    fn soft_targets_outside_the_unit_interval_are_invalid() {
        let tape = Tape::<f64>::new();
        let z = tape.leaf(Tensor::from_vec(vec![0.5, -1.0, 2.0, 0.0, 1.0, 1.0], [2, 3]).unwrap());
        let d = CrossEntropyOptions::default();
        for (bad, at) in [
            (vec![0.2, 0.3, 0.5, 3.0, -1.0, 0.5], "target[3] = 3"),
            (vec![0.0, 0.0, 1.0, 0.5, 0.5, 1.0 + 1e-12], "target[5]"),
        ] {
            let t = tape.leaf(Tensor::from_vec(bad, [2, 3]).unwrap());
            let before = tape.len();
            for r in [cross_entropy(&z, &t, &d), cross_entropy_naive(&z, &t, &d)] {
                let e = r.expect_err("a target outside [0, 1] is an error");
                assert_eq!(e.kind(), ErrorKind::InvalidValue);
                assert!(e.to_string().contains(at), "{e}");
            }
            assert_eq!(tape.len(), before, "a refused op records nothing");
        }
        let nan =
            tape.leaf(Tensor::from_vec(vec![0.5, f64::NAN, 0.5, 0.0, 1.0, 0.0], [2, 3]).unwrap());
        assert!(cross_entropy(&z, &nan, &d)
            .unwrap()
            .item()
            .unwrap()
            .is_nan());
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let z = tape.leaf(Tensor::zeros([4, 3]).unwrap());
        let ok = Tensor::from_vec(vec![0i64, 1, 2, -100], [4]).unwrap();
        let d = CrossEntropyOptions::default();
        let kind = |r: Result<Var<f64>>| r.err().map(|e| e.kind());
        let bad = Tensor::from_vec(vec![0i64, 3, 1, 1], [4]).unwrap();
        assert_eq!(
            kind(cross_entropy(&z, &bad, &d)),
            Some(ErrorKind::InvalidTarget)
        );
        let neg = Tensor::from_vec(vec![0i64, -1, 1, 1], [4]).unwrap();
        assert_eq!(
            kind(cross_entropy(&z, &neg, &d)),
            Some(ErrorKind::InvalidTarget)
        );
        let short = Tensor::from_vec(vec![0i64, 1, 2], [3]).unwrap();
        assert_eq!(
            kind(cross_entropy(&z, &short, &d)),
            Some(ErrorKind::ShapeMismatch)
        );
        let w = CrossEntropyOptions {
            weight: Some(vec![1.0; 4]),
            ..Default::default()
        };
        assert_eq!(
            kind(cross_entropy(&z, &ok, &w)),
            Some(ErrorKind::ShapeMismatch)
        );
        for ls in [-0.1, 1.5, f64::NAN] {
            let o = CrossEntropyOptions {
                label_smoothing: ls,
                ..Default::default()
            };
            assert_eq!(
                kind(cross_entropy(&z, &ok, &o)),
                Some(ErrorKind::InvalidOption)
            );
        }
        let bm = CrossEntropyOptions {
            reduction: Reduction::BatchMean,
            ..Default::default()
        };
        assert_eq!(
            kind(cross_entropy(&z, &ok, &bm)),
            Some(ErrorKind::InvalidOption)
        );
        let p = tape.leaf(Tensor::zeros([4, 2]).unwrap());
        assert_eq!(
            kind(cross_entropy(&z, &p, &d)),
            Some(ErrorKind::ShapeMismatch)
        );
        let s = tape.leaf(Tensor::scalar(1.0));
        let y0 = Tensor::from_vec(vec![0i64], []).unwrap();
        assert_eq!(
            kind(cross_entropy(&s, &y0, &d)),
            Some(ErrorKind::ShapeMismatch)
        );
        // the naive twin checks the same way
        assert_eq!(
            kind(cross_entropy_naive(&z, &bad, &d)),
            Some(ErrorKind::InvalidTarget)
        );
        // nothing was recorded by the failing calls
        assert_eq!(tape.len(), 3);
    }
}
