//! What the family's fused ops share: tensor options (`weight`,
//! `pos_weight`) broadcast to the input's shape, and a fused op for a loss
//! that is `w · f(a, b; pw)` element by element (`bce`, `bce_with_logits`,
//! and `sigmoid_focal` with `w = pw = 1`), whose loss and gradients come from
//! one evaluation per element.

use crate::common::{
    check_denominator, check_unit_interval, chunked_fill, chunked_fill2, count_where, eager_inputs,
    fill_two_grads, filled, grads_as_tensors, mean_denominator, outside_unit, reduce_over, slots,
    unfilled, Reduction, UnitGrads, Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::simd::{self, vectorized, LaneSum, Store};
use lossgraph_tensor::{broadcasts_to, Error, Float, Shape, Tensor};
use std::mem::MaybeUninit;
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

/// The per-element function of a [`WeightedPointwise`] op: `f` at
/// `(a, b; pw)` and its partials, `(f, ∂f/∂a, ∂f/∂b)`, which share their
/// costly parts (an `exp`, a `log`); a pass that needs only some of the
/// three gets the others optimised away. Mark `eval` `#[inline(always)]`
/// so that the vectorised loops inline it, however large it is.
pub(super) trait Item<T: Float>: Send + Sync + 'static {
    /// The values at one element; with `FMA` the polynomials may use fused
    /// multiply-adds (the loops instantiate it so only where the CPU has
    /// them, see [`vectorized_fma`]).
    fn eval<const FMA: bool>(&self, a: T, b: T, pw: T) -> (T, T, T);

    /// Whether [`Self::eval_log1p_split`] takes a logarithm out of the
    /// loss, so that a sum of losses at `w = pw = 1` can gather many of
    /// them into one ([`add_log1p`]).
    const LOG1P_SPLIT: bool = false;

    /// At `pw = 1`: `(r, t, ∂a, ∂b)` with the loss `f = r + log1p(t)` for
    /// some `t ∈ [0, 1]`, the logarithm not taken. By default `t = 0` and
    /// `r` the whole loss.
    #[inline(always)]
    fn eval_log1p_split<const FMA: bool>(&self, a: T, b: T) -> (T, T, T, T) {
        let (f, da, db) = self.eval::<FMA>(a, b, T::one());
        (f, T::zero(), da, db)
    }
}

/// Evaluate `$body` compiled for the widest instruction set this CPU has
/// ([`vectorized`]), with the const `$fma` (named by the caller, used as
/// `::<$fma>` inside) true where that set has fused multiply-adds: two
/// monomorphic copies of the loops, one picked at run time.
macro_rules! vectorized_fma {
    (|$fma:ident| $body:expr) => {
        if simd::has_fma() {
            const $fma: bool = true;
            vectorized(
                #[inline(always)]
                || $body,
            )
        } else {
            const $fma: bool = false;
            vectorized(
                #[inline(always)]
                || $body,
            )
        }
    };
}

/// A per-element factor of a chunk: a slice, a number for every element
/// ([`Same`], an upstream gradient shared by all items), or [`One`] when
/// absent (so the loops carry no per-element branch on whether the option
/// was given).
trait Factor<T>: Copy {
    /// Whether the factor is 1 for every element ([`One`]).
    const ONE: bool = false;
    /// The factor of element `i` of the chunk.
    fn at(self, i: usize) -> T;
    /// The factors of elements `r` of the chunk.
    fn slice(self, r: Range<usize>) -> Self;
}

/// The factor 1 (an absent option).
#[derive(Clone, Copy)]
struct One;

impl<T: Float> Factor<T> for One {
    const ONE: bool = true;
    #[inline(always)]
    fn at(self, _: usize) -> T {
        T::one()
    }
    #[inline(always)]
    fn slice(self, _: Range<usize>) -> Self {
        One
    }
}

/// The same factor for every element.
#[derive(Clone, Copy)]
struct Same<T>(T);

impl<T: Float> Factor<T> for Same<T> {
    #[inline(always)]
    fn at(self, _: usize) -> T {
        self.0
    }
    #[inline(always)]
    fn slice(self, _: Range<usize>) -> Self {
        self
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

/// Where a loop puts one value per element of a block: slots of an output
/// (a gradient buffer, the block's losses), or nowhere ([`Skip`]: an output
/// nobody asked for). One generic loop body then serves every combination
/// of wanted outputs; each copy has no per-element branch, and the work of
/// a value it skips is optimised away (backward's recompute never
/// evaluates the loss, a target that is a constant gets no `∂/∂y`).
trait Sink<T> {
    /// The first `n` slots (a no-op for [`Skip`]), so that indexing below
    /// `n` needs no bounds check in the loop.
    fn first(self, n: usize) -> Self;
    /// Put `v` into slot `i`.
    fn put(&mut self, i: usize, v: T);
}

/// An output that is not wanted.
struct Skip;

impl<T> Sink<T> for Skip {
    #[inline(always)]
    fn first(self, _: usize) -> Self {
        Skip
    }
    #[inline(always)]
    fn put(&mut self, _: usize, _: T) {}
}

impl<T, S: Store<T>> Sink<T> for &mut [S] {
    #[inline(always)]
    fn first(self, n: usize) -> Self {
        &mut self[..n]
    }
    #[inline(always)]
    fn put(&mut self, i: usize, v: T) {
        self[i].store(v);
    }
}

/// Evaluate `$body` with `$wv` and `$pv` bound to the chunk `$r` of the
/// optional factors `$w` and `$pw`: four monomorphic copies, one per
/// present/absent pair.
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

/// Call `$f::<_, $fma>(loss, da, db, …)` with each optional output
/// (`Option<&mut [_]>`) replaced by the slice or [`Skip`]: one monomorphic
/// copy per combination.
macro_rules! with_sinks {
    ($loss:expr, $da:expr, $db:expr, $f:ident::<$fma:ident>($($arg:expr),*)) => {
        match ($loss, $da, $db) {
            (Some(l), Some(a), Some(b)) => $f::<_, $fma>(l, a, b, $($arg),*),
            (Some(l), Some(a), None) => $f::<_, $fma>(l, a, Skip, $($arg),*),
            (Some(l), None, Some(b)) => $f::<_, $fma>(l, Skip, b, $($arg),*),
            (Some(l), None, None) => $f::<_, $fma>(l, Skip, Skip, $($arg),*),
            (None, Some(a), Some(b)) => $f::<_, $fma>(Skip, a, b, $($arg),*),
            (None, Some(a), None) => $f::<_, $fma>(Skip, a, Skip, $($arg),*),
            (None, None, Some(b)) => $f::<_, $fma>(Skip, Skip, b, $($arg),*),
            (None, None, None) => {}
        }
    };
}

/// One block of elements, one evaluation each: with
/// `(ℓ, ∂a, ∂b) = item(a_i, b_i, pw_i)`, puts `w_i·ℓ` into `loss` and
/// `u_i·w_i·∂a`, `u_i·w_i·∂b` into `da` and `db` (each `a.len()` long or
/// [`Skip`]). A plain map loop: it vectorises once `item` is inlined.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block<T: Float, const FMA: bool>(
    loss: impl Sink<T>,
    da: impl Sink<T>,
    db: impl Sink<T>,
    item: &impl Item<T>,
    a: &[T],
    b: &[T],
    w: impl Factor<T>,
    pw: impl Factor<T>,
    u: impl Factor<T>,
) {
    let n = a.len();
    let (b, w, pw, u) = (&b[..n], w.slice(0..n), pw.slice(0..n), u.slice(0..n));
    let (mut loss, mut da, mut db) = (loss.first(n), da.first(n), db.first(n));
    for i in 0..n {
        let (l, x, y) = item.eval::<FMA>(a[i], b[i], pw.at(i));
        let w = w.at(i);
        loss.put(i, w * l);
        let wu = w * u.at(i);
        da.put(i, wu * x);
        db.put(i, wu * y);
    }
}

/// [`block`] for a sum of losses at `w = pw = 1` whose item splits off
/// a `log1p` ([`Item::eval_log1p_split`]): puts `r_i` into `rest`, `t_i`
/// into `t` (so that the loss is `Σ r + Σ log1p t`) and `u_i·∂` into `da`
/// and `db`. Adds to `outside` how many `b_i` lie outside `[0, 1]`: counted
/// in the same loop (an integer count, which vectorises), a few operations
/// where a second pass over the block cost more.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn block_split<T: Float, const FMA: bool>(
    rest: impl Sink<T>,
    da: impl Sink<T>,
    db: impl Sink<T>,
    t: &mut [T],
    item: &impl Item<T>,
    a: &[T],
    b: &[T],
    u: impl Factor<T>,
    outside: &mut usize,
) {
    let n = a.len();
    let (b, t, u) = (&b[..n], &mut t[..n], u.slice(0..n));
    let (mut rest, mut da, mut db) = (rest.first(n), da.first(n), db.first(n));
    // a 32-bit count, as wide as an f32 lane: with a 64-bit one LLVM
    // vectorised the whole loop 8 lanes wide (ymm) instead of 16; a block
    // holds at most BLOCK elements, so it cannot overflow
    let mut count = 0u32;
    for i in 0..n {
        let (r, ti, x, y) = item.eval_log1p_split::<FMA>(a[i], b[i]);
        rest.put(i, r);
        t[i] = ti;
        let u = u.at(i);
        da.put(i, u * x);
        db.put(i, u * y);
        count += u32::from(outside_unit(b[i]));
    }
    *outside += count as usize;
}

/// Lanes of [`add_log1p`]'s running products: four vectors of 16 `f32`,
/// so that four short dependency chains run side by side.
const LOG_LANES: usize = 64;

/// Add `Σ log1p(tᵢ)` for `tᵢ ∈ [0, 1]` into `sums`, with one
/// logarithm per lane rather than per term, since a sum of logarithms is the
/// logarithm of a product: lane `j` keeps `Eⱼ = Π(1 + tᵢ) − 1` over its
/// terms, updated as `E + t + E·t` (all terms non-negative, so each step
/// rounds by a couple of ulp relative to `E`, and a small `t` is not lost to
/// the rounding of `1 + t`), then adds `log1p(Eⱼ)`. A block of [`BLOCK`]
/// terms gives each lane 4 of them, so `1 + E ≤ 16`. The lanes are summed
/// once per chunk, not per block: a horizontal sum is a chain of dependent
/// additions. For `bce_with_logits` the logarithm was as costly as the rest
/// of the loss and its gradient together.
#[inline(always)]
fn add_log1p<T: Float, const FMA: bool>(t: &[T], sums: &mut LaneSum<T>) {
    let one = T::one();
    let mut acc = [T::zero(); LOG_LANES];
    let groups = t.chunks_exact(LOG_LANES);
    let tail = groups.remainder();
    for g in groups {
        for (e, &t) in acc.iter_mut().zip(g) {
            *e = *e * t + (*e + t);
        }
    }
    for (e, &t) in acc.iter_mut().zip(tail) {
        *e = *e * t + (*e + t);
    }
    // log1p(E) as log u plus what the rounding of u = 1 + E lost
    for e in acc.iter_mut() {
        let u = one + *e;
        *e = u.ln_normal::<FMA>() + (*e - (u - one)) / u;
    }
    sums.add(&acc);
}

/// Elements per block of [`fused_chunk`]: its losses wait in a stack buffer
/// of this many values, then are summed lane-wise.
const BLOCK: usize = 256;

/// One pass over a chunk: `Σ w_i·ℓ_i` when `with_sum` (else 0), and the
/// gradients `u_i·w_i·∂` into the present outputs (each `a.len()` long),
/// from one evaluation of `item` per element, block by block while the
/// block is in cache.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fused_chunk<T: Float, const FMA: bool>(
    item: &impl Item<T>,
    a: &[T],
    b: &[T],
    w: impl Factor<T>,
    pw: impl Factor<T>,
    up: Upstream<'_, T>,
    with_sum: bool,
    unit: [bool; 2],
    da: Option<&mut [MaybeUninit<T>]>,
    db: Option<&mut [MaybeUninit<T>]>,
) -> (T, T) {
    match up {
        Upstream::Same(u) => {
            fused_chunk_u::<T, FMA, _, _, _>(item, a, b, w, pw, Same(u), with_sum, unit, da, db)
        }
        Upstream::Each(g) => {
            fused_chunk_u::<T, FMA, _, _, _>(item, a, b, w, pw, g, with_sum, unit, da, db)
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn fused_chunk_u<T: Float, const FMA: bool, F: Item<T>, W: Factor<T>, P: Factor<T>>(
    item: &F,
    a: &[T],
    b: &[T],
    w: W,
    pw: P,
    u: impl Factor<T>,
    with_sum: bool,
    unit: [bool; 2],
    mut da: Option<&mut [MaybeUninit<T>]>,
    mut db: Option<&mut [MaybeUninit<T>]>,
) -> (T, T) {
    let mut buf = [T::zero(); BLOCK];
    // the split-off log1p arguments, when the loss's logs are gathered
    let split = with_sum && F::LOG1P_SPLIT && W::ONE && P::ONE;
    let mut ts = [T::zero(); BLOCK];
    // the blocks' losses, summed across once per chunk (see `LaneSum`)
    let mut sums = LaneSum::default();
    let mut bad = T::zero();
    let mut s = 0;
    while s < a.len() {
        let e = (s + BLOCK).min(a.len());
        let r = s..e;
        let losses = with_sum.then_some(&mut buf[..e - s]);
        let da = da.as_deref_mut().map(|d| &mut d[r.clone()]);
        let db = db.as_deref_mut().map(|d| &mut d[r.clone()]);
        let (ab, bb) = (&a[r.clone()], &b[r.clone()]);
        let (wb, pb, ub) = (w.slice(r.clone()), pw.slice(r.clone()), u.slice(r));
        // the input checks, on the block while it is in cache (the split
        // loop counts `b`'s itself)
        if split {
            let t = &mut ts[..e - s];
            let mut outside = 0;
            with_sinks!(
                losses,
                da,
                db,
                block_split::<FMA>(&mut *t, item, ab, bb, ub, &mut outside)
            );
            if unit[1] {
                bad += T::of(outside as f64);
            }
            sums.add(&buf[..e - s]);
            add_log1p::<T, FMA>(t, &mut sums);
        } else {
            with_sinks!(losses, da, db, block::<FMA>(item, ab, bb, wb, pb, ub));
            if with_sum {
                sums.add(&buf[..e - s]);
            }
        }
        if unit[0] {
            bad += count_where(ab, outside_unit);
        }
        if unit[1] && !split {
            bad += count_where(bb, outside_unit);
        }
        s = e;
    }
    (sums.total(), bad)
}

/// The chunks' `(sum, count)` pairs added up, each in chunk order.
fn sum_pairs<T: Float>(parts: &[(T, T)]) -> (T, T) {
    let (s, c): (Vec<T>, Vec<T>) = parts.iter().copied().unzip();
    (simd::sum_of(&s), simd::sum_of(&c))
}

/// `ℓᵢ = wᵢ · f(aᵢ, bᵢ; pwᵢ)`, reduced, with `f` and its partials from an
/// [`Item`]. `weight` and `pos_weight` are
/// already broadcast to the input shape (absent means 1). As in
/// [`crate::common::Elementwise`]: with `sum` or `mean`, forward writes the
/// gradients in its pass over the data and backward rescales them; else
/// backward recomputes from the inputs. The passes run in parallel chunks of
/// vectorised loops.
///
/// Inputs named in [`Self::in_unit_interval`] are checked in forward: with
/// `sum`/`mean`, by a count in the same pass (on each block while it is in
/// cache, not a separate pass over the whole input); then forward fails with
/// the `InvalidValue` of [`check_unit_interval`], before anything is recorded.
pub(super) struct WeightedPointwise<T: Float, F> {
    pub name: &'static str,
    pub reduction: Reduction,
    pub weight: Option<Tensor<T>>,
    pub pos_weight: Option<Tensor<T>>,
    pub item: F,
    /// Per input, its name when its values must lie in `[0, 1]`.
    unit: [Option<&'static str>; 2],
    /// The `mean`'s denominator from outside (set by [`Self::over`]).
    denominator: Option<f64>,
    /// Which inputs get their gradient in forward (set by [`Self::apply`]).
    eager: Option<Vec<bool>>,
}

impl<T, F> WeightedPointwise<T, F>
where
    T: Float,
    F: Item<T>,
{
    /// The op.
    pub fn new(
        name: &'static str,
        reduction: Reduction,
        weight: Option<Tensor<T>>,
        pos_weight: Option<Tensor<T>>,
        item: F,
    ) -> Self {
        WeightedPointwise {
            name,
            reduction,
            weight,
            pos_weight,
            item,
            unit: [None, None],
            denominator: None,
            eager: None,
        }
    }

    /// Divide the `mean` by `denominator` (the `denominator` option) instead
    /// of the element count; `None` keeps the count. As
    /// [`crate::common::Elementwise::over`].
    pub fn over(mut self, denominator: Option<f64>) -> Self {
        self.denominator = denominator;
        self
    }

    /// The `mean`'s denominator for `n` elements.
    fn denom(&self, n: usize) -> T {
        mean_denominator(self.denominator, T::of(n as f64))
    }

    /// Check that the inputs named here (`[a, b]`, `None` for no check) lie
    /// in `[0, 1]`; the error names the input.
    pub fn in_unit_interval(mut self, names: [Option<&'static str>; 2]) -> Self {
        self.unit = names;
        self
    }

    /// Which inputs forward checks.
    fn checked(&self) -> [bool; 2] {
        self.unit.map(|n| n.is_some())
    }

    /// The error for the first input that breaks its check (called once a
    /// count found one; `Ok` if none does).
    fn check_inputs(&self, x: &[&Tensor<T>]) -> Result<()> {
        for (name, t) in self.unit.iter().zip(x) {
            if let Some(name) = name {
                check_unit_interval(self.name, name, t)?;
            }
        }
        Ok(())
    }

    /// Record the op on `a`'s tape with inputs `a` and `b`.
    ///
    /// # Errors
    /// `InvalidOption` for a bad denominator ([`check_denominator`]).
    pub fn apply(mut self, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        check_denominator(self.name, self.denominator, self.reduction)?;
        self.eager = eager_inputs(self.reduction, &[a, b]);
        a.tape().apply(self, &[a, b])
    }

    /// One pass over the inputs: `Σ wᵢ·f` (when `with_sum`), the count of
    /// values that break the checks in `unit`, and the gradients `u·w·∂f`
    /// for the inputs in `need`, each written once.
    #[allow(clippy::type_complexity)]
    fn sum_and_grads(
        &self,
        a: &[T],
        b: &[T],
        up: Upstream<'_, T>,
        need: &[bool],
        with_sum: bool,
        unit: [bool; 2],
    ) -> ((T, T), Vec<Option<Vec<T>>>) {
        let w = self.weight.as_ref().map(Tensor::as_slice);
        let pw = self.pos_weight.as_ref().map(Tensor::as_slice);
        let item = &self.item;
        let (parts, grads) = fill_two_grads(a.len(), need, |sa, sb| {
            chunked_fill2(a.len(), sa, sb, |r, da, db| {
                let (a, b, up) = (&a[r.clone()], &b[r.clone()], up.range(r.clone()));
                with_factors!(w, pw, r, |w, pw| vectorized_fma!(|FMA| {
                    fused_chunk::<T, FMA>(item, a, b, w, pw, up, with_sum, unit, da, db)
                }))
            })
        });
        (sum_pairs(&parts), grads)
    }
}

impl<T, F> CustomOp<T> for WeightedPointwise<T, F>
where
    T: Float,
    F: Item<T>,
{
    type Saved = UnitGrads<T>;
    fn name(&self) -> &str {
        self.name
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, UnitGrads<T>)> {
        let (a, b) = (x[0].as_slice(), x[1].as_slice());
        let n = a.len();
        if let Some(need) = &self.eager {
            let one = Tensor::scalar(T::one());
            let up = Upstream::over(&one, self.reduction, self.denom(n));
            let ((s, bad), grads) = self.sum_and_grads(a, b, up, need, true, self.checked());
            if bad > T::zero() {
                self.check_inputs(x)?;
            }
            let out = reduce_over(vec![s], Shape::scalar(), self.reduction, self.denom(n))?;
            return Ok((out, UnitGrads::new(Some(grads))));
        }
        let w = self.weight.as_ref().map(Tensor::as_slice);
        let pw = self.pos_weight.as_ref().map(Tensor::as_slice);
        let item = &self.item;
        let out = match self.reduction {
            Reduction::None => {
                self.check_inputs(x)?;
                let mut out = unfilled(n);
                chunked_fill(slots(&mut out, n), |s, o| {
                    let r = s..s + o.len();
                    let (a, b) = (&a[r.clone()], &b[r.clone()]);
                    with_factors!(w, pw, r, |w, pw| vectorized_fma!(|FMA| {
                        block::<T, FMA>(&mut *o, Skip, Skip, item, a, b, w, pw, One)
                    }))
                });
                // SAFETY: the chunks cover 0..n and `block` writes each slot.
                unsafe { filled(&mut out, n) };
                Tensor::from_vec(out, x[0].shape().clone())?
            }
            r => {
                let (one, unit) = (Upstream::Same(T::one()), self.checked());
                let none: Option<&mut [MaybeUninit<T>]> = None;
                let parts = chunked_fill2(n, none, None, |r, _, _| {
                    let (a, b) = (&a[r.clone()], &b[r.clone()]);
                    with_factors!(w, pw, r, |w, pw| vectorized_fma!(|FMA| {
                        fused_chunk::<T, FMA>(item, a, b, w, pw, one, true, unit, None, None)
                    }))
                });
                let (s, bad) = sum_pairs(&parts);
                if bad > T::zero() {
                    self.check_inputs(x)?;
                }
                reduce_over(vec![s], Shape::scalar(), r, self.denom(n))?
            }
        };
        Ok((out, UnitGrads::new(None)))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, UnitGrads<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let (a, b) = (cx.inputs[0].as_slice(), cx.inputs[1].as_slice());
        let grads = cx.saved.take_scaled_or(cx.grad_output, cx.needs_grad, || {
            let up = Upstream::over(cx.grad_output, self.reduction, self.denom(a.len()));
            self.sum_and_grads(a, b, up, cx.needs_grad, false, [false; 2])
                .1
        });
        grads_as_tensors(grads, cx.inputs[0].shape())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        bce, bce_with_logits, naive, sigmoid_focal, BceOptions, BceWithLogitsOptions,
        SigmoidFocalOptions,
    };
    use crate::common::Reduction;
    use lossgraph_autodiff::{Result, Tape, Var};
    use lossgraph_tensor::parallel::PAR_THRESHOLD;
    use lossgraph_tensor::{ErrorKind, Tensor};

    type Op = fn(&Var<f32>, &Var<f32>, Reduction) -> Result<Var<f32>>;

    /// The fused ops check their inputs' values inside forward's pass (a
    /// count per block): a bad value anywhere — first element, last element
    /// of a multi-chunk input — gives the twin's error, naming the input
    /// and the first bad index, for every reduction, with and without
    /// gradients, and leaves the tape as it was.
    #[test]
    fn bad_values_found_in_forward_pass_change_nothing() {
        let ops: [(&str, Op, Op); 3] = [
            (
                "bce",
                |a, b, r| {
                    bce(
                        a,
                        b,
                        &BceOptions {
                            reduction: r,
                            ..Default::default()
                        },
                    )
                },
                |a, b, r| {
                    naive::bce(
                        a,
                        b,
                        &BceOptions {
                            reduction: r,
                            ..Default::default()
                        },
                    )
                },
            ),
            (
                "bce_with_logits",
                |a, b, r| {
                    let o = BceWithLogitsOptions {
                        reduction: r,
                        ..Default::default()
                    };
                    bce_with_logits(a, b, &o)
                },
                |a, b, r| {
                    let o = BceWithLogitsOptions {
                        reduction: r,
                        ..Default::default()
                    };
                    naive::bce_with_logits(a, b, &o)
                },
            ),
            (
                "sigmoid_focal",
                |a, b, r| {
                    let o = SigmoidFocalOptions {
                        reduction: r,
                        ..Default::default()
                    };
                    sigmoid_focal(a, b, &o)
                },
                |a, b, r| {
                    let o = SigmoidFocalOptions {
                        reduction: r,
                        ..Default::default()
                    };
                    naive::sigmoid_focal(a, b, &o)
                },
            ),
        ];
        let big = 2 * PAR_THRESHOLD + 3;
        for (name, fused, twin) in ops {
            // (which input is bad, its name, length, bad index)
            let mut cases = vec![(1, "target", 5, 0), (1, "target", big, big - 1)];
            if name == "bce" {
                cases.push((0, "probs", big, big / 2));
            }
            for (which, what, n, at) in cases {
                let mut inputs = [vec![0.25f32; n], vec![0.5f32; n]];
                inputs[which][at] = 1.5;
                for r in [Reduction::Mean, Reduction::Sum, Reduction::None] {
                    for grad in [true, false] {
                        let tape = Tape::<f32>::new();
                        let mk = |v: &Vec<f32>| {
                            let t = Tensor::from_vec(v.clone(), [n]).unwrap();
                            if grad {
                                tape.leaf(t)
                            } else {
                                tape.constant(t)
                            }
                        };
                        let (a, b) = (mk(&inputs[0]), mk(&inputs[1]));
                        let before = tape.len();
                        let e = fused(&a, &b, r).expect_err("a bad value must fail");
                        assert_eq!(e.kind(), ErrorKind::InvalidValue, "{name} {r:?}");
                        let want = format!("{what}[{at}] = 1.5");
                        assert!(e.to_string().contains(&want), "{name} {r:?}: {e}");
                        assert_eq!(tape.len(), before, "{name} {r:?} recorded a node");
                        let t = twin(&a, &b, r).expect_err("the twin fails too");
                        assert_eq!(t.to_string(), e.to_string());
                    }
                }
            }
        }
    }
}
