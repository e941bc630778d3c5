//! Linear projection fused with cross-entropy: `cross_entropy(h·Wᵀ + b, y)`
//! computed in blocks of rows, so the `[N, V]` logits — for a language model,
//! tokens × vocabulary, often the largest tensor of a step — never exist whole.
//!
//! Each block's logits `z = h_b·Wᵀ + b` give the rows' log-sum-exps and
//! losses, and are then turned in place into their gradient
//! `dz = (softmax(z) − ỹ)·u` (`ỹ` the smoothed target, `u` the row's upstream
//! gradient), from which `dh_b = dz·W`, `dW += dzᵀ·h_b` and `db += Σ_rows dz`
//! follow. The products write straight into the gradient buffers (a GEMM
//! with `beta = 1` for `dW`), so the only scratch memory is one block of
//! logits.
//!
//! When is the gradient computed? With a `sum` or `mean` reduction every row's
//! `u` is the same and the gradients are linear in it, so forward computes
//! them for `u = 1` while each block's logits are at hand, and backward only
//! rescales them: three matrix products in all, as many as the unfused
//! path. With `none` (each row's `u` is known only at backward time), with
//! gradients off, or at a second backward, forward keeps one number per row
//! (its log-sum-exp) and backward recomputes each block's logits: a fourth
//! product, for memory that does not grow with `V`.
//!
//! The value is PyTorch's `F.cross_entropy` on the full logits (class axis
//! last), label smoothing included; rows whose target is `ignore_index` cost
//! nothing and count for nothing in the mean (a mean over no rows is 0).

use crate::checks;
use crate::common::{
    check_denominator, check_option, eager_inputs, mean_denominator, no_batchmean, reduce_naive,
    reduce_over, Reduction, UnitGrads, Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::simd::{self, vectorized};
use lossgraph_tensor::{matmul_into, Error, Float, Tensor, Trans};
use rayon::prelude::*;

const OP: &str = "linear_cross_entropy";

/// Options of [`linear_cross_entropy`].
#[derive(Debug, Clone, PartialEq)]
pub struct LinearCrossEntropyOptions {
    /// How rows are combined (default `mean`, over rows not ignored).
    pub reduction: Reduction,
    /// A target id whose rows are skipped (default −100).
    pub ignore_index: i64,
    /// Mass moved from the target to the uniform distribution (default 0.0,
    /// in [0, 1]).
    pub label_smoothing: f64,
    /// Rows per block (default 256, ≥ 1): at most `chunk × V` logits are held
    /// at once.
    pub chunk: usize,
    /// The mean's denominator from outside (default none: this call's own
    /// count, the rows not ignored): the whole batch's, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction = mean`;
    /// finite, ≥ 0.
    pub denominator: Option<f64>,
}

impl Default for LinearCrossEntropyOptions {
    fn default() -> Self {
        LinearCrossEntropyOptions {
            reduction: Reduction::Mean,
            ignore_index: -100,
            label_smoothing: 0.0,
            chunk: 256,
            denominator: None,
        }
    }
}

/// The sizes of a call: `n` rows of width `h`, `v` classes.
#[derive(Clone, Copy)]
struct Dims {
    n: usize,
    h: usize,
    v: usize,
}

/// Check options, shapes and ids; returns the sizes.
fn validate<T: Float>(
    hidden: &Var<T>,
    weight: &Var<T>,
    bias: Option<&Var<T>>,
    target: &Tensor<i64>,
    o: &LinearCrossEntropyOptions,
) -> Result<Dims> {
    no_batchmean(OP, o.reduction)?;
    check_denominator(OP, o.denominator, o.reduction)?;
    let e = o.label_smoothing;
    check_option(OP, "label_smoothing", e, (0.0..=1.0).contains(&e), "[0, 1]")?;
    check_option(OP, "chunk", o.chunk as f64, o.chunk >= 1, "integers ≥ 1")?;
    let (dh, dw) = (hidden.dims(), weight.dims());
    let fits = match (dh.split_last(), &dw[..]) {
        (Some((&h, lead)), &[_, wh]) => h == wh && target.dims() == lead,
        _ => false,
    };
    if !fits {
        return Err(Error::shape(
            OP,
            &[&dh, &dw, target.dims()],
            "need hidden [..., H], weight [V, H] and target [...]",
        )
        .into());
    }
    let (h, v) = (dw[1], dw[0]);
    if let Some(b) = bias {
        if b.dims() != [v] {
            return Err(Error::shape(OP, &[&b.dims(), &dw], "bias must be [V]").into());
        }
    }
    if let Some((i, &bad)) = target
        .as_slice()
        .iter()
        .enumerate()
        .find(|(_, &t)| t != o.ignore_index && !(0..v as i64).contains(&t))
    {
        return Err(Error::target(
            OP,
            format!("target[{i}] = {bad} is outside [0, {v}) and not ignore_index"),
        )
        .into());
    }
    Ok(Dims {
        n: target.numel(),
        h,
        v,
    })
}

/// The fused op: inputs `hidden`, `weight` and, when `has_bias`, `bias`.
struct LinearCrossEntropy<T> {
    target: Tensor<i64>,
    dims: Dims,
    has_bias: bool,
    ignore_index: i64,
    smoothing: T,
    chunk: usize,
    reduction: Reduction,
    /// The `denominator` option.
    denominator: Option<f64>,
    /// With a `sum` or `mean` reduction and gradients on, which of hidden,
    /// weight and bias need a gradient: forward then computes them for an
    /// upstream gradient of 1 (see the module docs). `None`: value only.
    eager: Option<Vec<bool>>,
}

/// Gradients summed block by block, each only where needed: `∂/∂hidden`
/// (`N·H`), `∂/∂weight` (`V·H`) and `∂/∂bias` (`V`).
struct Grads<T> {
    dh: Option<Vec<T>>,
    dw: Option<Vec<T>>,
    db: Option<Vec<T>>,
}

impl<T> Grads<T> {
    fn into_vec(self) -> Vec<Option<Vec<T>>> {
        vec![self.dh, self.dw, self.db]
    }
}

/// What forward keeps: each row's log-sum-exp (0 for ignored rows), and in
/// eager mode the gradients for an upstream gradient of 1, which the first
/// backward takes (a second backward recomputes).
struct Saved<T> {
    lse: Vec<T>,
    unit_grads: UnitGrads<T>,
}

/// Rows per parallel task when a block's rows are split over threads.
fn rows_per_task(v: usize) -> usize {
    (1 << 14) / v.max(1) + 1
}

/// One row of logits `z` turned into its gradient in place:
/// `dz_c = (e^{z_c − lse} − ε/V)·u`, then `dz_y −= (1 − ε)·u`.
#[inline(always)]
fn row_grad<T: Float>(z: &mut [T], lse: T, off: T, hit: T, u: T, y: usize) {
    for v in z.iter_mut() {
        *v = ((*v - lse).fast_exp() - off) * u;
    }
    z[y] -= hit * u;
}

impl<T: Float> LinearCrossEntropy<T> {
    /// The target of row `i`, or `None` when the row is ignored.
    fn class(&self, i: usize) -> Option<usize> {
        let t = self.target.as_slice()[i];
        (t != self.ignore_index).then_some(t as usize)
    }
    /// The denominator of the mean: the rows not ignored, or the option's.
    fn denom(&self) -> T {
        let count = (0..self.dims.n)
            .filter(|&i| self.class(i).is_some())
            .count();
        mean_denominator(self.denominator, T::of(count as f64))
    }
    /// The blocks of rows `start..start + len` that hold a row not ignored.
    fn blocks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let n = self.dims.n;
        (0..n)
            .step_by(self.chunk)
            .map(move |s| (s, self.chunk.min(n - s)))
            .filter(|&(s, len)| (s..s + len).any(|i| self.class(i).is_some()))
    }
    /// The block's rows of `hidden` as `[len, H]` and its logits `[len, V]`.
    fn logits(&self, x: &[&Tensor<T>], start: usize, len: usize) -> Result<(Tensor<T>, Tensor<T>)> {
        let h = self.dims.h;
        let rows = &x[0].as_slice()[start * h..(start + len) * h];
        let hb = Tensor::from_vec(rows.to_vec(), [len, h])?;
        let mut z = hb.matmul_nt(x[1])?;
        if self.has_bias {
            let b = x[2].as_slice();
            let v = self.dims.v;
            z.make_mut()
                .par_chunks_mut(v)
                .with_min_len(rows_per_task(v))
                .for_each(|row| row.iter_mut().zip(b).for_each(|(z, &b)| *z += b));
        }
        Ok((hb, z))
    }
    /// Zeroed gradient buffers for the inputs in `need`.
    fn new_grads(&self, need: &[bool]) -> Grads<T> {
        let Dims { n, h, v } = self.dims;
        let want = |k: usize| need.get(k).copied().unwrap_or(false);
        Grads {
            dh: want(0).then(|| vec![T::zero(); n * h]),
            dw: want(1).then(|| vec![T::zero(); v * h]),
            db: (self.has_bias && want(2)).then(|| vec![T::zero(); v]),
        }
    }
    /// Add a block's share, given its rows `hb` and logit gradients `dz`:
    /// `dh = dz·W` (its own rows), `dW += dzᵀ·hb`, `db += Σ_rows dz`. The
    /// products write straight into the gradients: no `[V, H]` temporary.
    fn accumulate(
        &self,
        w: &Tensor<T>,
        hb: &Tensor<T>,
        dz: &Tensor<T>,
        start: usize,
        g: &mut Grads<T>,
    ) -> Result<()> {
        let (h, v, len) = (self.dims.h, self.dims.v, hb.dims()[0]);
        if let Some(dh) = g.dh.as_mut() {
            let rows = &mut dh[start * h..(start + len) * h];
            matmul_into(rows, T::zero(), dz, Trans::N, w, Trans::N)?;
        }
        if let Some(dw) = g.dw.as_mut() {
            matmul_into(dw, T::one(), dz, Trans::T, hb, Trans::N)?;
        }
        if let Some(db) = g.db.as_mut() {
            for row in dz.as_slice().chunks(v) {
                db.iter_mut().zip(row).for_each(|(b, &g)| *b += g);
            }
        }
        Ok(())
    }
    /// Turn each row of a block's logits into its gradient (`up` gives each
    /// row's upstream gradient, `lse` its log-sum-exp); ignored rows get 0.
    fn block_grad(&self, z: &mut Tensor<T>, start: usize, lse: &[T], up: &Upstream<'_, T>) {
        let v = self.dims.v;
        let (off, hit) = self.off_hit();
        z.make_mut()
            .par_chunks_mut(v)
            .with_min_len(rows_per_task(v))
            .enumerate()
            .for_each(|(r, row)| {
                let i = start + r;
                match self.class(i) {
                    None => row.fill(T::zero()),
                    Some(y) => vectorized(
                        #[inline(always)]
                        || row_grad(row, lse[i], off, hit, up.at(i), y),
                    ),
                }
            });
    }
    /// `ε/V`, the smoothed target's mass on every class, and `1 − ε`, the
    /// extra mass on the target class.
    fn off_hit(&self) -> (T, T) {
        let eps = self.smoothing;
        (eps / T::of(self.dims.v as f64), T::one() - eps)
    }
    /// Each row's loss and log-sum-exp over one block of logits.
    fn block_loss(&self, z: &Tensor<T>, start: usize, loss: &mut [T], lse: &mut [T]) {
        let v = self.dims.v;
        let eps = self.smoothing;
        let inv_v = T::one() / T::of(v as f64);
        z.as_slice()
            .par_chunks(v)
            .with_min_len(rows_per_task(v))
            .zip(loss.par_iter_mut().zip(lse.par_iter_mut()))
            .enumerate()
            .for_each(|(r, (row, (l, s)))| {
                let Some(y) = self.class(start + r) else {
                    return;
                };
                vectorized(
                    #[inline(always)]
                    || {
                        let m = simd::max(row);
                        let lse = m + simd::sum_exp_shift(row, m).ln();
                        let mut li = (T::one() - eps) * (lse - row[y]);
                        if eps > T::zero() {
                            li += eps * (lse - simd::sum(row) * inv_v);
                        }
                        *l = li;
                        *s = lse;
                    },
                )
            });
    }
    /// The gradients of every block, recomputing the logits (backward for
    /// `none`, or a second backward).
    fn recompute(
        &self,
        x: &[&Tensor<T>],
        lse: &[T],
        up: Upstream<'_, T>,
        need: &[bool],
    ) -> Result<Grads<T>> {
        let mut g = self.new_grads(need);
        for (start, len) in self.blocks() {
            let (hb, mut z) = self.logits(x, start, len)?;
            self.block_grad(&mut z, start, lse, &up);
            self.accumulate(x[1], &hb, &z, start, &mut g)?;
        }
        Ok(g)
    }
}

impl<T: Float> CustomOp<T> for LinearCrossEntropy<T> {
    type Saved = Saved<T>;
    fn name(&self) -> &str {
        OP
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, Saved<T>)> {
        let n = self.dims.n;
        let denom = self.denom();
        let mut loss = vec![T::zero(); n];
        let mut lse = vec![T::zero(); n];
        let one = Tensor::scalar(T::one());
        let unit = Upstream::over(&one, self.reduction, denom);
        let mut grads = self.eager.as_ref().map(|need| self.new_grads(need));
        for (start, len) in self.blocks() {
            let (hb, mut z) = self.logits(x, start, len)?;
            let rows = start..start + len;
            self.block_loss(&z, start, &mut loss[rows.clone()], &mut lse[rows]);
            if let Some(g) = grads.as_mut() {
                // while the block's logits exist: its gradient, for u = 1
                self.block_grad(&mut z, start, &lse, &unit);
                self.accumulate(x[1], &hb, &z, start, g)?;
            }
        }
        let out = reduce_over(loss, self.target.shape().clone(), self.reduction, denom)?;
        let saved = Saved {
            lse,
            unit_grads: UnitGrads::new(grads.map(Grads::into_vec)),
        };
        Ok((out, saved))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, Saved<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let Dims { h, v, .. } = self.dims;
        let g = match cx
            .saved
            .unit_grads
            .take_scaled(cx.grad_output, cx.needs_grad)
        {
            Some(g) => g,
            None => {
                let x: Vec<&Tensor<T>> = cx.inputs.iter().collect();
                let up = Upstream::over(cx.grad_output, self.reduction, self.denom());
                self.recompute(&x, &cx.saved.lse, up, cx.needs_grad)?
                    .into_vec()
            }
        };
        let mut g = g.into_iter();
        // both paths hold a buffer only for the inputs that need a gradient
        let mut out = vec![
            g.next()
                .flatten()
                .map(|d| Tensor::from_vec(d, cx.inputs[0].shape().clone()))
                .transpose()?,
            g.next()
                .flatten()
                .map(|d| Tensor::from_vec(d, [v, h]))
                .transpose()?,
        ];
        if self.has_bias {
            out.push(
                g.next()
                    .flatten()
                    .map(|d| Tensor::from_vec(d, [v]))
                    .transpose()?,
            );
        }
        Ok(out)
    }
}

/// Cross-entropy of the projection `hidden · weightᵀ + bias` against class
/// ids, computed `chunk` rows at a time; equal to `cross_entropy` on the full
/// logits (PyTorch's `F.cross_entropy`, class axis last). `"none"` gives the
/// target's shape, 0 at ignored rows.
///
/// Per row, with `z` the logits, `lse = log Σ e^z` and smoothing `ε`:
/// `ℓ = (1−ε)(lse − z_y) + ε(lse − mean_c z_c)`; the mean divides by the
/// number of rows not ignored.
///
/// Gradient: `dz = (softmax(z) − (1−ε)·onehot(y) − ε/V)·u` (`u` the
/// upstream gradient of the row), `∂/∂hidden = dz·W`, `∂/∂weight = dzᵀ·hidden`,
/// `∂/∂bias = Σ_rows dz`.
///
/// Options: `ignore_index` (−100), `label_smoothing` (0.0, in [0, 1]),
/// `chunk` (256 rows per block), `reduction` (`mean`).
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{linear_cross_entropy, LinearCrossEntropyOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let hidden = tape.leaf(Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [3, 2])?);
/// let weight = tape.leaf(Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], [2, 2])?);
/// let target = Tensor::from_vec(vec![0i64, -100, 1], [3])?;
/// let o = LinearCrossEntropyOptions { chunk: 2, ..Default::default() };
/// let loss = linear_cross_entropy(&hidden, &weight, None, &target, &o)?;
/// // rows 0 and 2: logits [1, 0] → log(1 + e⁻¹); [1, 1] → log 2
/// let want = ((1.0 + (-1f64).exp()).ln() + 2f64.ln()) / 2.0;
/// assert!((loss.item()? - want).abs() < 1e-12);
/// let grads = loss.backward()?;
/// assert_eq!(grads.get(&weight).unwrap().dims(), &[2, 2]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` unless `hidden` is `[..., H]`, `weight` `[V, H]`, `bias`
/// `[V]` and `target` `[...]`; `InvalidTarget` for an id outside `[0, V)` that
/// is not `ignore_index`; `InvalidOption` for `label_smoothing` outside
/// [0, 1], `chunk = 0` or `batchmean`.
pub fn linear_cross_entropy<T: Float>(
    hidden: &Var<T>,
    weight: &Var<T>,
    bias: Option<&Var<T>>,
    target: &Tensor<i64>,
    opts: &LinearCrossEntropyOptions,
) -> Result<Var<T>> {
    let dims = validate(hidden, weight, bias, target, opts)?;
    let mut inputs = vec![hidden, weight];
    inputs.extend(bias);
    let eager = eager_inputs(opts.reduction, &inputs);
    let op = LinearCrossEntropy {
        target: target.clone(),
        dims,
        has_bias: bias.is_some(),
        ignore_index: opts.ignore_index,
        smoothing: T::of(opts.label_smoothing),
        chunk: opts.chunk,
        reduction: opts.reduction,
        denominator: opts.denominator,
        eager,
    };
    let tape = hidden.tape().clone();
    let out = tape.apply(op, &inputs)?;
    if tape.check_mode() {
        checks::class_ids(
            &tape,
            OP,
            target,
            opts.ignore_index,
            opts.denominator.is_some(),
        );
        let sample = first_logits(hidden, weight, bias, dims.n.min(CHECKED_ROWS))?;
        checks::logit_values(&tape, OP, "logits (h·Wᵀ + b)", &sample, true, None);
    }
    Ok(out)
}

/// How many rows of the logits check mode computes to look at them.
const CHECKED_ROWS: usize = 4;

/// The logits `h·Wᵀ + b` of the first `rows` rows, for check mode (the op
/// itself never holds them).
fn first_logits<T: Float>(
    hidden: &Var<T>,
    weight: &Var<T>,
    bias: Option<&Var<T>>,
    rows: usize,
) -> Result<Tensor<T>> {
    let h = hidden.value();
    let width = h.dims().last().copied().unwrap_or(0);
    let first = h
        .reshape([h.numel() / width.max(1), width])?
        .narrow(0, 0, rows)?;
    let z = first.matmul_nt(&weight.value())?;
    Ok(match bias {
        Some(b) => z.add(&b.value())?,
        None => z,
    })
}

/// The naive twin of [`linear_cross_entropy`]: the whole `[N, V]` logits
/// `hidden.matmul_nt(weight) + bias`, then `log_softmax`, `gather` of the
/// target, the smoothing term `mean(log_softmax)` and a mask of the ignored
/// rows, all primitive ops (`chunk` is not used).
///
/// # Errors
/// As [`linear_cross_entropy`].
pub fn linear_cross_entropy_naive<T: Float>(
    hidden: &Var<T>,
    weight: &Var<T>,
    bias: Option<&Var<T>>,
    target: &Tensor<i64>,
    opts: &LinearCrossEntropyOptions,
) -> Result<Var<T>> {
    let Dims { n, h, .. } = validate(hidden, weight, bias, target, opts)?;
    let tape = hidden.tape();
    let mut z = hidden.reshape([n, h])?.matmul_nt(weight)?;
    if let Some(b) = bias {
        z = z.add(b)?;
    }
    let logp = z.log_softmax()?;
    let kept: Vec<bool> = target
        .as_slice()
        .iter()
        .map(|&t| t != opts.ignore_index)
        .collect();
    let ids: Vec<i64> = target
        .as_slice()
        .iter()
        .zip(&kept)
        .map(|(&t, &k)| if k { t } else { 0 })
        .collect();
    let ids = Tensor::from_vec(ids, [n, 1])?;
    let mut loss = logp.gather(1, &ids)?.reshape([n])?.neg()?;
    if opts.label_smoothing > 0.0 {
        let e = T::of(opts.label_smoothing);
        let uniform = logp.mean(1, false)?.neg()?;
        loss = loss
            .mul_scalar(T::one() - e)?
            .add(&uniform.mul_scalar(e)?)?;
    }
    let mask: Vec<T> = kept
        .iter()
        .map(|&k| if k { T::one() } else { T::zero() })
        .collect();
    let loss = loss
        .mul(&tape.constant(Tensor::from_vec(mask, [n])?))?
        .reshape(target.shape().clone())?;
    let count = kept.iter().filter(|&&k| k).count() as f64;
    let count = opts.denominator.unwrap_or(count);
    match opts.reduction {
        Reduction::Mean if count > 0.0 => loss.sum_all()?.mul_scalar(T::one() / T::of(count)),
        // an empty denominator: 0 (every row ignored sums to 0 already)
        Reduction::Mean => loss.sum_all()?.mul_scalar(T::zero()),
        r => reduce_naive(loss, r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, value_and_grads, Case};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::ErrorKind;

    /// `hidden [.., H]`, `weight [V, H]`, optional `bias [V]` (normal), and
    /// ids with every third row ignored.
    fn case(lead: &[usize], h: usize, v: usize, bias: bool, seed: u64) -> (Case, Tensor<i64>) {
        let mut dims = lead.to_vec();
        dims.push(h);
        let mut inputs = vec![
            Tensor::randn(dims, 0.0, 1.0, seed).unwrap(),
            Tensor::randn([v, h], 0.0, 1.0, seed + 100).unwrap(),
        ];
        if bias {
            inputs.push(Tensor::randn([v], 0.0, 1.0, seed + 200).unwrap());
        }
        let n: usize = lead.iter().product();
        let ids = (0..n)
            .map(|i| {
                if i % 3 == 1 {
                    -100
                } else {
                    ((i * 7 + seed as usize) % v) as i64
                }
            })
            .collect();
        (
            Case::new(inputs),
            Tensor::from_vec(ids, lead.to_vec()).unwrap(),
        )
    }

    fn fused<'a>(
        t: &'a Tensor<i64>,
        o: &'a LinearCrossEntropyOptions,
    ) -> impl Fn(&[Var<f64>]) -> Result<Var<f64>> + 'a {
        move |v| linear_cross_entropy(&v[0], &v[1], v.get(2), t, o)
    }
    fn naive<'a>(
        t: &'a Tensor<i64>,
        o: &'a LinearCrossEntropyOptions,
    ) -> impl Fn(&[Var<f64>]) -> Result<Var<f64>> + 'a {
        move |v| linear_cross_entropy_naive(&v[0], &v[1], v.get(2), t, o)
    }

    #[test]
    fn linear_cross_entropy_gradcheck_and_twin() {
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            for label_smoothing in [0.0, 0.2] {
                for (chunk, bias) in [(1, true), (3, false), (4, true), (100, true)] {
                    // a mean over part of a batch: the whole batch's count
                    let denominator = (reduction == Reduction::Mean && chunk == 3).then_some(11.0);
                    let o = LinearCrossEntropyOptions {
                        reduction,
                        label_smoothing,
                        chunk,
                        denominator,
                        ..Default::default()
                    };
                    for (lead, h, v, seed) in [(&[7][..], 5, 6, 1), (&[2, 4][..], 3, 9, 2)] {
                        let (c, t) = case(lead, h, v, bias, seed);
                        check_family(&c, fused(&t, &o), naive(&t, &o));
                    }
                }
            }
        }
    }

    #[test]
    fn chunk_size_does_not_change_the_result() {
        let (c, t) = case(&[10], 4, 7, true, 5);
        let o = |chunk| LinearCrossEntropyOptions {
            chunk,
            label_smoothing: 0.1,
            ..Default::default()
        };
        let (o1, o10) = (o(1), o(10));
        let (v1, g1) = value_and_grads(&fused(&t, &o1), &c.inputs, 3);
        let (v10, g10) = value_and_grads(&fused(&t, &o10), &c.inputs, 3);
        crate::testing::assert_close("output", &v1, &v10, 1e-13);
        for (a, b) in g1.iter().zip(&g10) {
            crate::testing::assert_close("grad", a, b, 1e-12);
        }
    }

    /// The gradients computed in forward (sum, mean) equal the ones a second
    /// backward recomputes, rescaled by the upstream gradient; a constant
    /// input gets none.
    #[test]
    fn eager_and_recomputed_gradients_agree() {
        for reduction in [Reduction::Sum, Reduction::Mean] {
            let (c, t) = case(&[9], 4, 7, true, 3);
            let o = LinearCrossEntropyOptions {
                reduction,
                chunk: 4,
                label_smoothing: 0.1,
                ..Default::default()
            };
            let tape = Tape::<f64>::new();
            let hidden = tape.constant(c.inputs[0].clone());
            let (w, b) = (
                tape.leaf(c.inputs[1].clone()),
                tape.leaf(c.inputs[2].clone()),
            );
            let loss = linear_cross_entropy(&hidden, &w, Some(&b), &t, &o).unwrap();
            let scaled = loss.mul_scalar(2.5).unwrap();
            let first = scaled.backward().unwrap();
            let second = scaled.backward().unwrap();
            assert!(first.get(&hidden).is_none());
            for x in [&w, &b] {
                crate::testing::assert_close(
                    "second backward",
                    second.get(x).unwrap(),
                    first.get(x).unwrap(),
                    1e-13,
                );
            }
            let unit = loss.backward().unwrap();
            crate::testing::assert_close(
                "rescaled",
                &unit.get(&w).unwrap().mul_scalar(2.5),
                first.get(&w).unwrap(),
                1e-13,
            );
        }
    }

    #[test]
    fn all_ignored_gives_zero() {
        let tape = Tape::<f64>::new();
        let hidden = tape.leaf(Tensor::randn([3, 2], 0.0, 1.0, 1).unwrap());
        let weight = tape.leaf(Tensor::randn([4, 2], 0.0, 1.0, 2).unwrap());
        let bias = tape.leaf(Tensor::zeros([4]).unwrap());
        let t = Tensor::from_vec(vec![-1i64; 3], [3]).unwrap();
        let o = LinearCrossEntropyOptions {
            ignore_index: -1,
            ..Default::default()
        };
        let loss = linear_cross_entropy(&hidden, &weight, Some(&bias), &t, &o).unwrap();
        assert_eq!(loss.item().unwrap(), 0.0);
        let g = loss.backward().unwrap();
        for x in [&hidden, &weight, &bias] {
            assert!(g.get(x).unwrap().as_slice().iter().all(|&v| v == 0.0));
        }
    }

    /// No rows, no width, or no classes (with every row ignored) never panic.
    #[test]
    fn empty_inputs() {
        for (n, h, v) in [(0, 3, 4), (3, 0, 4), (2, 3, 0)] {
            for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
                let tape = Tape::<f64>::new();
                let hidden = tape.leaf(Tensor::zeros([n, h]).unwrap());
                let weight = tape.leaf(Tensor::zeros([v, h]).unwrap());
                let bias = tape.leaf(Tensor::zeros([v]).unwrap());
                let ids = (0..n).map(|i| if v == 0 { -100 } else { i as i64 % 4 });
                let t = Tensor::from_vec(ids.collect(), [n]).unwrap();
                let o = LinearCrossEntropyOptions {
                    reduction,
                    chunk: 2,
                    ..Default::default()
                };
                let out = linear_cross_entropy(&hidden, &weight, Some(&bias), &t, &o).unwrap();
                let g = out
                    .backward_with(Tensor::ones(out.shape()).unwrap())
                    .unwrap();
                assert!(out.value().all_finite());
                assert!(
                    g.get_or_zeros(&hidden).all_finite() && g.get_or_zeros(&weight).all_finite()
                );
            }
        }
    }

    /// Logits of ±1e4 in f32 stay finite and match f64.
    #[test]
    fn f32_large_logits_stay_finite() {
        let h = Tensor::from_vec(vec![100.0, -50.0, -100.0, 80.0], [2, 2]).unwrap();
        let w = Tensor::from_vec(vec![100.0, 0.0, 0.0, 100.0, -60.0, 60.0], [3, 2]).unwrap();
        let t = Tensor::from_vec(vec![1i64, 0], [2]).unwrap();
        let o = LinearCrossEntropyOptions::default();
        let tape = Tape::<f64>::new();
        let want = linear_cross_entropy(&tape.leaf(h.clone()), &tape.leaf(w.clone()), None, &t, &o)
            .unwrap()
            .item()
            .unwrap();
        let tape = Tape::<f32>::new();
        let (h32, w32) = (tape.leaf(h.cast()), tape.leaf(w.cast()));
        let loss = linear_cross_entropy(&h32, &w32, None, &t, &o).unwrap();
        let g = loss.backward().unwrap();
        assert!(g.get(&h32).unwrap().all_finite() && g.get(&w32).unwrap().all_finite());
        let got = loss.item().unwrap() as f64;
        assert!(
            want > 1e3 && (got - want).abs() <= 1e-5 * want,
            "{got} vs {want}"
        );
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let hidden = tape.leaf(Tensor::zeros([3, 2]).unwrap());
        let weight = tape.leaf(Tensor::zeros([4, 2]).unwrap());
        let wide = tape.leaf(Tensor::zeros([4, 3]).unwrap());
        let bias5 = tape.leaf(Tensor::zeros([5]).unwrap());
        let t = Tensor::from_vec(vec![0i64, 1, 3], [3]).unwrap();
        let t2 = Tensor::from_vec(vec![0i64, 1], [2]).unwrap();
        let bad = Tensor::from_vec(vec![0i64, 4, 1], [3]).unwrap();
        let flat = hidden.reshape([6]).unwrap();
        let o = LinearCrossEntropyOptions::default();
        fn lce(
            h: &Var<f64>,
            w: &Var<f64>,
            b: Option<&Var<f64>>,
            t: &Tensor<i64>,
            o: &LinearCrossEntropyOptions,
        ) -> ErrorKind {
            linear_cross_entropy(h, w, b, t, o).unwrap_err().kind()
        }
        use ErrorKind::*;
        assert_eq!(lce(&hidden, &wide, None, &t, &o), ShapeMismatch);
        assert_eq!(lce(&hidden, &flat, None, &t, &o), ShapeMismatch);
        assert_eq!(lce(&hidden, &weight, Some(&bias5), &t, &o), ShapeMismatch);
        assert_eq!(lce(&hidden, &weight, None, &t2, &o), ShapeMismatch);
        assert_eq!(lce(&hidden, &weight, None, &bad, &o), InvalidTarget);
        for bad_o in [
            LinearCrossEntropyOptions {
                label_smoothing: 1.5,
                ..o.clone()
            },
            LinearCrossEntropyOptions {
                chunk: 0,
                ..o.clone()
            },
            LinearCrossEntropyOptions {
                reduction: Reduction::BatchMean,
                ..o.clone()
            },
        ] {
            assert_eq!(lce(&hidden, &weight, None, &t, &bad_o), InvalidOption);
        }
    }
}
