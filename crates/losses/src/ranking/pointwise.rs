//! A fused op for losses that are `f(x₀, …, x_{K−1})` element by element over
//! `K` same-shaped inputs (`margin_ranking` has three, `dpo` four) — the
//! `K`-input sibling of [`crate::common::Elementwise`], built the same way:
//!
//! - With `sum` or `mean` and an input that needs a gradient, forward writes
//!   the gradients for an upstream gradient of 1 in the same pass as the sum
//!   ([`eager_inputs`]) and backward only rescales them ([`UnitGrads`]); the
//!   data is read once for the whole step. Otherwise backward recomputes the
//!   partial derivatives from the inputs, which the tape holds anyway.
//! - Every pass runs over fixed chunks of [`CHUNK`] elements split over rayon
//!   (partial sums added in chunk order: deterministic), each chunk a loop
//!   compiled for the widest vectors the CPU has ([`vectorized`]), block by
//!   block through stack buffers so that evaluating `loss` and `grad` is a
//!   plain map loop. Each gradient is written once into a buffer allocated
//!   once (no zero fill, no per-element push).
//!
//! For the loops to vectorise, pass `loss` and `grad` as closures marked
//! `#[inline(always)]`, free of branches on computed values (select instead)
//! and of libm calls (use [`Float::fast_exp`] and friends, or the helpers at
//! the end of this file).

use crate::common::{
    check_denominator, eager_inputs, filled, grads_as_tensors, mean_denominator, no_batchmean,
    reduce_over, same_shape, slots, unfilled, Reduction, UnitGrads, Upstream, CHUNK,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::parallel::PAR_THRESHOLD;
use lossgraph_tensor::simd::{self, vectorized, LaneSum};
use lossgraph_tensor::{Float, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// `loss(x)` gives one item's loss, `grad(x)` its partials `∂ℓ/∂xₖ`.
pub(crate) struct Pointwise<T, L, G, const K: usize> {
    name: &'static str,
    reduction: Reduction,
    loss: L,
    grad: G,
    /// The `mean`'s denominator from outside (set by [`Self::over`]).
    denominator: Option<f64>,
    /// Which inputs get their gradient in forward (set by [`Self::apply`]).
    eager: Option<Vec<bool>>,
    _t: std::marker::PhantomData<T>,
}

/// One optional output slice per input (`None`: no gradient wanted).
type Outs<'a, T, const K: usize> = [Option<&'a mut [MaybeUninit<T>]>; K];

impl<T, L, G, const K: usize> Pointwise<T, L, G, K>
where
    T: Float,
    L: Fn([T; K]) -> T + Send + Sync + 'static,
    G: Fn([T; K]) -> [T; K] + Send + Sync + 'static,
{
    /// A pointwise loss named `name`.
    pub(crate) fn new(name: &'static str, reduction: Reduction, loss: L, grad: G) -> Self {
        Pointwise {
            name,
            reduction,
            loss,
            grad,
            denominator: None,
            eager: None,
            _t: std::marker::PhantomData,
        }
    }

    /// Divide the `mean` by `denominator` (the `denominator` option) instead
    /// of the element count; `None` keeps the count. As
    /// [`crate::common::Elementwise::over`].
    pub(crate) fn over(mut self, denominator: Option<f64>) -> Self {
        self.denominator = denominator;
        self
    }

    /// The `mean`'s denominator for `n` elements.
    fn denom(&self, n: usize) -> T {
        mean_denominator(self.denominator, T::of(n as f64))
    }

    /// Check the reduction, the denominator and that every input has the
    /// first one's shape, then record the op on the first input's tape.
    ///
    /// # Errors
    /// `ShapeMismatch` when shapes differ; `InvalidOption` for batchmean or
    /// a bad denominator.
    pub(crate) fn apply(mut self, inputs: [&Var<T>; K]) -> Result<Var<T>> {
        no_batchmean(self.name, self.reduction)?;
        check_denominator(self.name, self.denominator, self.reduction)?;
        let first = inputs[0].shape();
        for x in &inputs[1..] {
            same_shape(self.name, &first, &x.shape(), "all inputs")?;
        }
        self.eager = eager_inputs(self.reduction, &inputs);
        let tape = inputs[0].tape().clone();
        tape.apply(self, &inputs)
    }

    /// One pass over the inputs, chunk by chunk: the sum of the losses (when
    /// `with_sum`; backward does not need it) and the gradients `u·∂ₖ` for the
    /// inputs in `need`, each written once into a buffer allocated once.
    fn sum_and_grads(
        &self,
        xs: [&[T]; K],
        up: Upstream<'_, T>,
        need: &[bool],
        with_sum: bool,
    ) -> (T, Vec<Option<Vec<T>>>) {
        let n = xs[0].len();
        let (loss, grad) = (&self.loss, &self.grad);
        let want = |k: usize| need.get(k).copied().unwrap_or(false);
        let mut bufs: [Option<Vec<T>>; K] = std::array::from_fn(|k| want(k).then(|| unfilled(n)));
        let parts: Vec<T> = {
            // the outputs cut into the chunks, chunk by chunk
            let chunks = n.div_ceil(CHUNK);
            let mut per_chunk: Vec<Outs<'_, T, K>> =
                (0..chunks).map(|_| std::array::from_fn(|_| None)).collect();
            for (k, b) in bufs.iter_mut().enumerate() {
                if let Some(b) = b {
                    for (c, o) in slots(b, n).chunks_mut(CHUNK).enumerate() {
                        per_chunk[c][k] = Some(o);
                    }
                }
            }
            let run = |(c, outs): (usize, Outs<'_, T, K>)| {
                let r = c * CHUNK..((c + 1) * CHUNK).min(n);
                let x: [&[T]; K] = std::array::from_fn(|k| &xs[k][r.clone()]);
                let up = up.range(r);
                vectorized(
                    #[inline(always)]
                    || chunk_pass(loss, grad, x, up, with_sum, outs),
                )
            };
            if n < PAR_THRESHOLD {
                per_chunk.into_iter().enumerate().map(run).collect()
            } else {
                per_chunk.into_par_iter().enumerate().map(run).collect()
            }
        };
        for b in bufs.iter_mut().flatten() {
            // SAFETY: the chunks cover 0..n and chunk_pass writes every slot
            // of each present output.
            unsafe { filled(b, n) };
        }
        (simd::sum_of(&parts), bufs.into_iter().collect())
    }
}

/// Items per block: the losses and gradients of a block go through stack
/// buffers this long.
const BLOCK: usize = 256;

/// The sum of the losses of a chunk (when `with_sum`) and `u·∂ₖ` written into
/// every slot of each present output; `xs` and the outputs are the chunk's.
#[inline(always)]
fn chunk_pass<T: Float, const K: usize>(
    loss: &impl Fn([T; K]) -> T,
    grad: &impl Fn([T; K]) -> [T; K],
    xs: [&[T]; K],
    up: Upstream<'_, T>,
    with_sum: bool,
    mut outs: Outs<'_, T, K>,
) -> T {
    let n = xs[0].len();
    let any_grad = outs.iter().any(Option::is_some);
    let mut lbuf = [T::zero(); BLOCK];
    let mut gbuf = [[T::zero(); BLOCK]; K];
    // summed across once, not per block (see `LaneSum`)
    let mut total = LaneSum::default();
    let mut s = 0;
    while s < n {
        let e = (s + BLOCK).min(n);
        let m = e - s;
        let x: [&[T]; K] = std::array::from_fn(|k| &xs[k][s..e]);
        let lb = &mut lbuf[..m];
        let gb: [&mut [T]; K] = gbuf.each_mut().map(|b| &mut b[..m]);
        // one map loop per case, so that none evaluates what it drops
        match (with_sum, any_grad) {
            (true, true) => {
                for i in 0..m {
                    let v: [T; K] = std::array::from_fn(|k| x[k][i]);
                    lb[i] = (*loss)(v);
                    let g = (*grad)(v);
                    for k in 0..K {
                        gb[k][i] = g[k];
                    }
                }
            }
            (true, false) => {
                for i in 0..m {
                    lb[i] = (*loss)(std::array::from_fn(|k| x[k][i]));
                }
            }
            (false, true) => {
                for i in 0..m {
                    let g = (*grad)(std::array::from_fn(|k| x[k][i]));
                    for k in 0..K {
                        gb[k][i] = g[k];
                    }
                }
            }
            (false, false) => {}
        }
        if with_sum {
            total.add(lb);
        }
        for (o, g) in outs.iter_mut().zip(gb.iter()) {
            if let Some(o) = o.as_deref_mut() {
                scale_into(&mut o[s..e], g, up.range(s..e));
            }
        }
        s = e;
    }
    total.total()
}

/// `o_i = u_i·g_i` over `g.len()` elements (writes every slot of `o`).
#[inline(always)]
fn scale_into<T: Float>(o: &mut [MaybeUninit<T>], g: &[T], up: Upstream<'_, T>) {
    let o = &mut o[..g.len()];
    match up {
        Upstream::Same(u) => {
            for i in 0..g.len() {
                o[i] = MaybeUninit::new(u * g[i]);
            }
        }
        Upstream::Each(u) => {
            let u = &u[..g.len()];
            for i in 0..g.len() {
                o[i] = MaybeUninit::new(u[i] * g[i]);
            }
        }
    }
}

/// `out_i = loss(x_i)` over a chunk (writes every slot of `out`).
#[inline(always)]
fn loss_fill<T: Float, const K: usize>(
    loss: &impl Fn([T; K]) -> T,
    xs: [&[T]; K],
    out: &mut [MaybeUninit<T>],
) {
    let n = out.len();
    let x: [&[T]; K] = std::array::from_fn(|k| &xs[k][..n]);
    for i in 0..n {
        out[i] = MaybeUninit::new((*loss)(std::array::from_fn(|k| x[k][i])));
    }
}

impl<T, L, G, const K: usize> CustomOp<T> for Pointwise<T, L, G, K>
where
    T: Float,
    L: Fn([T; K]) -> T + Send + Sync + 'static,
    G: Fn([T; K]) -> [T; K] + Send + Sync + 'static,
{
    type Saved = UnitGrads<T>;
    fn name(&self) -> &str {
        self.name
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, UnitGrads<T>)> {
        let xs: [&[T]; K] = std::array::from_fn(|k| x[k].as_slice());
        let n = xs[0].len();
        let r = self.reduction;
        if r != Reduction::None {
            // the sum, and with it the unit gradients when they are wanted
            let none = vec![false; K];
            let need = self.eager.as_deref().unwrap_or(&none);
            let one = Tensor::scalar(T::one());
            let up = Upstream::over(&one, r, self.denom(n));
            let (s, grads) = self.sum_and_grads(xs, up, need, true);
            let out = reduce_over(vec![s], Shape::scalar(), r, self.denom(n))?;
            let saved = self.eager.is_some().then_some(grads);
            return Ok((out, UnitGrads::new(saved)));
        }
        let mut out = unfilled(n);
        let loss = &self.loss;
        let fill = |(c, o): (usize, &mut [MaybeUninit<T>])| {
            let s = c * CHUNK;
            let x: [&[T]; K] = std::array::from_fn(|k| &xs[k][s..s + o.len()]);
            vectorized(
                #[inline(always)]
                || loss_fill(loss, x, o),
            )
        };
        let o = slots(&mut out, n);
        if n < PAR_THRESHOLD {
            o.chunks_mut(CHUNK).enumerate().for_each(fill);
        } else {
            o.par_chunks_mut(CHUNK).enumerate().for_each(fill);
        }
        // SAFETY: the chunks cover 0..n and loss_fill writes each slot.
        unsafe { filled(&mut out, n) };
        Ok((
            Tensor::from_vec(out, x[0].shape().clone())?,
            UnitGrads::new(None),
        ))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, UnitGrads<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let xs: [&[T]; K] = std::array::from_fn(|k| cx.inputs[k].as_slice());
        let n = xs[0].len();
        let grads = cx.saved.take_scaled_or(cx.grad_output, cx.needs_grad, || {
            let up = Upstream::over(cx.grad_output, self.reduction, self.denom(n));
            self.sum_and_grads(xs, up, cx.needs_grad, false).1
        });
        grads_as_tensors(grads, cx.inputs[0].shape())
    }
}

/// Softplus and the logistic function at `±z`, from one
/// [`Float::fast_exp`] and one [`Float::fast_ln_1p`], branch-free (selects
/// on computed values): with `e = e^{−|z|}` and `t = log1p(e)`,
/// `softplus(±z) = max(±z, 0) + t` (finite for every finite `z`), and
/// `σ(±z)` is `1/(1 + e)` on the side where `±z ≥ 0` and `e/(1 + e)` on the
/// other (no overflow, no cancellation either way).
#[derive(Clone, Copy)]
pub(super) struct Logistic<T> {
    /// `softplus(z) = log(1 + eᶻ)`.
    pub softplus: T,
    /// `softplus(−z) = −log σ(z)`.
    pub softplus_neg: T,
    /// `σ(z)`.
    pub sigmoid: T,
    /// `σ(−z) = 1 − σ(z)`.
    pub sigmoid_neg: T,
}

/// [`Logistic`] at `z`.
#[inline(always)]
pub(super) fn logistic<T: Float>(z: T) -> Logistic<T> {
    let zero = T::zero();
    let e = (-z.abs()).fast_exp();
    let t = e.fast_ln_1p();
    let big = T::one() / (T::one() + e);
    let small = e * big;
    let pos = z >= zero;
    Logistic {
        softplus: if z > zero { z } else { zero } + t,
        softplus_neg: if z < zero { -z } else { zero } + t,
        sigmoid: if pos { big } else { small },
        sigmoid_neg: if pos { small } else { big },
    }
}
