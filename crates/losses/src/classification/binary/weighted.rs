//! What `bce` and `bce_with_logits` share: tensor options (`weight`,
//! `pos_weight`) broadcast to the input's shape, and a fused op for a loss
//! that is `w · f(a, b; pw)` element by element.

use crate::common::{
    chunked_fill, chunked_fill2, chunked_sum, eager_inputs, fill_two_grads, filled, grad_loop,
    reduce, slots, unfilled, Reduction, UnitGrads, Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::simd::{self, vectorized, Store};
use lossgraph_tensor::{broadcasts_to, Error, Float, Shape, Tensor};
use std::ops::Range;

/// `t` materialised at `shape` (NumPy broadcasting), or `None` when absent.
///
/// # Errors
/// `ShapeMismatch` when `t` does not broadcast to `shape` (the option may
/// not enlarge the input).
pub(super) fn broadcast_option<T: Float>(
    op: &str,
    name: &str,
    t: Option<&Tensor<T>>,
    shape: &Shape,
) -> Result<Option<Tensor<T>>> {
    let Some(t) = t else { return Ok(None) };
    if !broadcasts_to(t.shape(), shape) {
        return Err(Error::shape(
            op,
            &[t.dims(), shape.dims()],
            format!("`{name}` must broadcast to the input's shape"),
        )
        .into());
    }
    Ok(Some(t.broadcast_to(shape)?))
}

/// A per-element factor of a chunk: a slice, or [`One`] when absent (so the
/// loops carry no per-element branch on whether the option was given).
trait Factor<T>: Copy {
    /// The factor of element `i` of the chunk.
    fn at(self, i: usize) -> T;
    /// The factors of elements `r` of the chunk.
    fn slice(self, r: Range<usize>) -> Self;
}

/// The factor 1 (an absent option).
#[derive(Clone, Copy)]
struct One;

impl<T: Float> Factor<T> for One {
    #[inline(always)]
    fn at(self, _: usize) -> T {
        T::one()
    }
    #[inline(always)]
    fn slice(self, _: Range<usize>) -> Self {
        One
    }
}

impl<T: Float> Factor<T> for &[T] {
    #[inline(always)]
    fn at(self, i: usize) -> T {
        self[i]
    }
    #[inline(always)]
    fn slice(self, r: Range<usize>) -> Self {
        &self[r]
    }
}

/// Evaluate `$body` with `$w` and `$pw` bound to the chunk `$r` of the
/// optional factors: four monomorphic copies, one per present/absent pair.
macro_rules! with_factors {
    ($w:expr, $pw:expr, $r:expr, |$wv:ident, $pv:ident| $body:expr) => {
        match ($w, $pw) {
            (None, None) => {
                let ($wv, $pv) = (One, One);
                $body
            }
            (Some(w), None) => {
                let ($wv, $pv) = (&w[$r.clone()], One);
                $body
            }
            (None, Some(p)) => {
                let ($wv, $pv) = (One, &p[$r.clone()]);
                $body
            }
            (Some(w), Some(p)) => {
                let ($wv, $pv) = (&w[$r.clone()], &p[$r.clone()]);
                $body
            }
        }
    };
}

/// Losses of a chunk per block of this many elements, summed lane-wise.
const BLOCK: usize = 256;

/// `out_i = w_i·f(a_i, b_i; pw_i)` over a chunk.
#[inline(always)]
fn loss_chunk<T: Float>(
    f: &impl Fn(T, T, T) -> T,
    a: &[T],
    b: &[T],
    w: impl Factor<T>,
    pw: impl Factor<T>,
    out: &mut [impl Store<T>],
) {
    let n = out.len();
    let (a, b, w, pw) = (&a[..n], &b[..n], w.slice(0..n), pw.slice(0..n));
    for i in 0..n {
        out[i].store(w.at(i) * f(a[i], b[i], pw.at(i)));
    }
}

/// `Σ w_i·f(a_i, b_i; pw_i)` over a chunk, block by block through a stack
/// buffer (vectorisable loops, no allocation).
#[inline(always)]
fn sum_chunk<T: Float>(
    f: &impl Fn(T, T, T) -> T,
    a: &[T],
    b: &[T],
    w: impl Factor<T>,
    pw: impl Factor<T>,
) -> T {
    let mut buf = [T::zero(); BLOCK];
    let mut total = T::zero();
    let mut s = 0;
    while s < a.len() {
        let e = (s + BLOCK).min(a.len());
        let out = &mut buf[..e - s];
        loss_chunk(f, &a[s..e], &b[s..e], w.slice(s..e), pw.slice(s..e), out);
        total += simd::sum(out);
        s = e;
    }
    total
}

/// `ℓᵢ = wᵢ · f(aᵢ, bᵢ; pwᵢ)`, reduced. `loss(a, b, pw)` gives `f`,
/// `grad(a, b, pw)` its partials `(∂f/∂a, ∂f/∂b)`. `weight` and `pos_weight`
/// are already broadcast to the input shape (absent means 1). As in
/// [`crate::common::Elementwise`]: with `sum` or `mean`, forward writes the
/// gradients in its pass over the data and backward rescales them; else
/// backward recomputes from the inputs. The passes run in parallel chunks of
/// vectorised loops.
pub(super) struct WeightedPointwise<T: Float, L, G> {
    pub name: &'static str,
    pub reduction: Reduction,
    pub weight: Option<Tensor<T>>,
    pub pos_weight: Option<Tensor<T>>,
    pub loss: L,
    pub grad: G,
    /// Which inputs get their gradient in forward (set by [`Self::apply`]).
    eager: Option<Vec<bool>>,
}

impl<T, L, G> WeightedPointwise<T, L, G>
where
    T: Float,
    L: Fn(T, T, T) -> T + Send + Sync + 'static,
    G: Fn(T, T, T) -> (T, T) + Send + Sync + 'static,
{
    /// The op. Pass `loss` and `grad` as closures marked `#[inline(always)]`
    /// (`#[inline(always)] |a, b, pw| …`, allowed in argument position) so
    /// that the vectorised loops inline them, however large they are.
    pub fn new(
        name: &'static str,
        reduction: Reduction,
        weight: Option<Tensor<T>>,
        pos_weight: Option<Tensor<T>>,
        loss: L,
        grad: G,
    ) -> Self {
        WeightedPointwise {
            name,
            reduction,
            weight,
            pos_weight,
            loss,
            grad,
            eager: None,
        }
    }

    /// Record the op on `a`'s tape with inputs `a` and `b`.
    pub fn apply(mut self, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        self.eager = eager_inputs(self.reduction, &[a, b]);
        a.tape().apply(self, &[a, b])
    }

    /// One pass over the inputs: `Σ wᵢ·f` (when `with_sum`) and the
    /// gradients `u·w·∂f` for the inputs in `need`, each written once.
    fn sum_and_grads(
        &self,
        a: &[T],
        b: &[T],
        up: Upstream<'_, T>,
        need: &[bool],
        with_sum: bool,
    ) -> (T, Vec<Option<Vec<T>>>) {
        let w = self.weight.as_ref().map(Tensor::as_slice);
        let pw = self.pos_weight.as_ref().map(Tensor::as_slice);
        let (f, g) = (&self.loss, &self.grad);
        let (parts, grads) = fill_two_grads(a.len(), need, |sa, sb| {
            chunked_fill2(a.len(), sa, sb, |r, da, db| {
                let (a, b, up) = (&a[r.clone()], &b[r.clone()], up.range(r.clone()));
                with_factors!(w, pw, r, |w, pw| vectorized(
                    #[inline(always)]
                    || {
                        let s = if with_sum {
                            sum_chunk(f, a, b, w, pw)
                        } else {
                            T::zero()
                        };
                        grad_loop(
                            #[inline(always)]
                            |i, x, y| {
                                let (ga, gb) = g(x, y, pw.at(i));
                                let w: T = w.at(i);
                                (w * ga, w * gb)
                            },
                            a,
                            b,
                            up,
                            da,
                            db,
                        );
                        s
                    }
                ))
            })
        });
        (simd::sum_of(&parts), grads)
    }
}

impl<T, L, G> CustomOp<T> for WeightedPointwise<T, L, G>
where
    T: Float,
    L: Fn(T, T, T) -> T + Send + Sync + 'static,
    G: Fn(T, T, T) -> (T, T) + Send + Sync + 'static,
{
    type Saved = UnitGrads<T>;
    fn name(&self) -> &str {
        self.name
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, UnitGrads<T>)> {
        let (a, b) = (x[0].as_slice(), x[1].as_slice());
        let n = a.len();
        if let Some(need) = &self.eager {
            let one = Tensor::scalar(T::one());
            let up = Upstream::new(&one, self.reduction, n);
            let (s, grads) = self.sum_and_grads(a, b, up, need, true);
            let out = reduce(vec![s], Shape::scalar(), self.reduction, n)?;
            return Ok((out, UnitGrads::new(Some(grads))));
        }
        let w = self.weight.as_ref().map(Tensor::as_slice);
        let pw = self.pos_weight.as_ref().map(Tensor::as_slice);
        let f = &self.loss;
        let out = match self.reduction {
            Reduction::None => {
                let mut out = unfilled(n);
                chunked_fill(slots(&mut out, n), |s, o| {
                    let r = s..s + o.len();
                    let (a, b) = (&a[r.clone()], &b[r.clone()]);
                    with_factors!(w, pw, r, |w, pw| vectorized(
                        #[inline(always)]
                        || loss_chunk(f, a, b, w, pw, o)
                    ))
                });
                // SAFETY: the chunks cover 0..n and loss_chunk writes each slot.
                unsafe { filled(&mut out, n) };
                Tensor::from_vec(out, x[0].shape().clone())?
            }
            r => {
                let s = chunked_sum(n, |r| {
                    let (a, b) = (&a[r.clone()], &b[r.clone()]);
                    with_factors!(w, pw, r, |w, pw| vectorized(
                        #[inline(always)]
                        || sum_chunk(f, a, b, w, pw)
                    ))
                });
                reduce(vec![s], Shape::scalar(), r, n)?
            }
        };
        Ok((out, UnitGrads::new(None)))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, UnitGrads<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let (a, b) = (cx.inputs[0].as_slice(), cx.inputs[1].as_slice());
        let grads = match cx.saved.take_scaled(cx.grad_output, cx.needs_grad) {
            Some(g) => g,
            None => {
                let up = Upstream::new(cx.grad_output, self.reduction, a.len());
                self.sum_and_grads(a, b, up, cx.needs_grad, false).1
            }
        };
        let mut grads = grads.into_iter();
        let (da, db) = (grads.next().flatten(), grads.next().flatten());
        let shape = cx.inputs[0].shape();
        let wrap = |d: Option<Vec<T>>| d.map(|d| Tensor::from_vec(d, shape.clone())).transpose();
        Ok(vec![wrap(da)?, wrap(db)?])
    }
}
