//! What every loss shares: the reduction, option checks, and a fused op for
//! losses that are a function of two same-shaped inputs, element by element.

use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Tape, Var};
use lossgraph_tensor::parallel::PAR_THRESHOLD;
use lossgraph_tensor::simd::{self, vectorized};
use lossgraph_tensor::{Element, Error, Float, Shape, Tensor};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::Mutex;

/// How the per-item losses are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Keep the unreduced loss, shaped as the op says.
    None,
    /// Sum of the per-item losses (a 0-d output).
    Sum,
    /// Mean over every item (a 0-d output; 0 when there is no item).
    #[default]
    Mean,
    /// Sum divided by the size of axis 0 (`kl_div` only).
    BatchMean,
}

impl Reduction {
    /// Parse `"none" | "sum" | "mean" | "batchmean"`.
    ///
    /// # Errors
    /// `InvalidOption` for any other string.
    pub fn parse(op: &str, s: &str) -> Result<Self> {
        Ok(match s {
            "none" => Reduction::None,
            "sum" => Reduction::Sum,
            "mean" => Reduction::Mean,
            "batchmean" => Reduction::BatchMean,
            _ => {
                return Err(
                    Error::option(op, "reduction", format!("unknown reduction {s:?}")).into(),
                )
            }
        })
    }
    /// Whether the output is a mean (`mean` or `batchmean`).
    pub fn is_mean(self) -> bool {
        matches!(self, Reduction::Mean | Reduction::BatchMean)
    }
    /// The name as `LOSSES.md` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Sum => "sum",
            Reduction::Mean => "mean",
            Reduction::BatchMean => "batchmean",
        }
    }
}

/// Reject `batchmean` for ops that do not define it.
pub fn no_batchmean(op: &str, r: Reduction) -> Result<()> {
    if r == Reduction::BatchMean {
        return Err(Error::option(op, "reduction", "batchmean is only defined for kl_div").into());
    }
    Ok(())
}

/// Check the `denominator` option: the global count a `mean` divides by
/// when the batch is split into parts (micro-batches, data-parallel shards),
/// so that the parts' gradients add up to the whole batch's. It must be
/// finite and `>= 0` (0 follows the empty-denominator rule: loss and
/// gradients 0), and it only means something for `reduction = mean`.
///
/// # Errors
/// `InvalidOption` otherwise.
pub fn check_denominator(op: &str, d: Option<f64>, r: Reduction) -> Result<()> {
    let Some(d) = d else { return Ok(()) };
    check_option(op, "denominator", d, d.is_finite() && d >= 0.0, "[0, ∞)")?;
    if r != Reduction::Mean {
        return Err(Error::option(
            op,
            "denominator",
            format!("applies to reduction = mean only, not {}", r.name()),
        )
        .into());
    }
    Ok(())
}

/// The denominator a `mean` divides by: the `denominator` option when given
/// (the whole batch's count), else `local` (this call's own count).
pub fn mean_denominator<T: Float>(d: Option<f64>, local: T) -> T {
    d.map_or(local, T::of)
}

/// Reduce per-item losses of `shape`; `mean` over `count` items (0 when
/// `count` is 0: the project's empty-denominator rule).
pub fn reduce<T: Float>(
    loss: Vec<T>,
    shape: impl Into<Shape>,
    r: Reduction,
    count: usize,
) -> Result<Tensor<T>> {
    reduce_over(loss, shape, r, T::of(count as f64))
}

/// [`reduce`] with the mean's denominator as a number (a weight total, a
/// count of items not ignored, or the `denominator` option): `mean` is
/// `Σ/denom`, 0 when `denom` is 0. `shape` is the unreduced loss's (used by
/// `none` only: a `&Shape` is not cloned otherwise).
pub fn reduce_over<T: Float>(
    loss: Vec<T>,
    shape: impl Into<Shape>,
    r: Reduction,
    denom: T,
) -> Result<Tensor<T>> {
    Ok(match r {
        Reduction::None => Tensor::from_vec(loss, shape)?,
        Reduction::Sum => Tensor::scalar(simd::sum_of(&loss)),
        Reduction::Mean | Reduction::BatchMean => {
            let s: T = simd::sum_of(&loss);
            Tensor::scalar(if denom == T::zero() {
                T::zero()
            } else {
                s / denom
            })
        }
    })
}

/// The gradient reaching each item from the reduced output: `g[i]` for
/// `none`, `g` for `sum`, `g/count` for `mean` (0 when `count` is 0).
#[derive(Clone, Copy)]
pub enum Upstream<'a, T> {
    /// One gradient per item.
    Each(&'a [T]),
    /// The same gradient for every item.
    Same(T),
}

impl<'a, T: Float> Upstream<'a, T> {
    /// Build from the output gradient `g` of a reduction over `count` items.
    pub fn new(g: &'a Tensor<T>, r: Reduction, count: usize) -> Self {
        Self::over(g, r, T::of(count as f64))
    }
    /// As [`Self::new`] for [`reduce_over`]: `g/denom` for `mean`.
    pub fn over(g: &'a Tensor<T>, r: Reduction, denom: T) -> Self {
        match r {
            Reduction::None => Upstream::Each(g.as_slice()),
            Reduction::Sum => Upstream::Same(g.as_slice()[0]),
            Reduction::Mean | Reduction::BatchMean => Upstream::Same(if denom == T::zero() {
                T::zero()
            } else {
                g.as_slice()[0] / denom
            }),
        }
    }
    /// The gradient reaching item `i`.
    #[inline]
    pub fn at(&self, i: usize) -> T {
        match self {
            Upstream::Each(g) => g[i],
            Upstream::Same(g) => *g,
        }
    }
    /// The gradients of items `r` (a sub-slice for `Each`).
    #[inline]
    pub fn range(&self, r: Range<usize>) -> Upstream<'a, T> {
        match *self {
            Upstream::Each(g) => Upstream::Each(&g[r]),
            Upstream::Same(g) => Upstream::Same(g),
        }
    }
}

/// `ShapeMismatch` unless `a` and `b` have the same shape.
pub fn same_shape(op: &str, a: &Shape, b: &Shape, what: &str) -> Result<()> {
    if a != b {
        return Err(Error::shape(
            op,
            &[a.dims(), b.dims()],
            format!("{what} must have the same shape"),
        )
        .into());
    }
    Ok(())
}

/// `InvalidOption` unless `ok` holds; `range` describes the valid values.
pub fn check_option(op: &str, name: &str, value: f64, ok: bool, range: &str) -> Result<()> {
    if !ok || value.is_nan() {
        return Err(Error::option(op, name, format!("{value} is outside {range}")).into());
    }
    Ok(())
}

/// `InvalidValue` unless every element lies in `[0, 1]` (NaN passes: non-finite
/// inputs propagate rather than error).
pub fn check_unit_interval<T: Float>(op: &str, what: &str, t: &Tensor<T>) -> Result<()> {
    let x = t.as_slice();
    if let Some(i) = first_where(x, outside_unit) {
        let v = x[i];
        return Err(Error::value(op, format!("{what}[{i}] = {v} is outside [0, 1]")).into());
    }
    Ok(())
}

/// Whether `v` lies outside `[0, 1]` (NaN does not: it is not checked).
#[inline(always)]
pub(crate) fn outside_unit<T: Float>(v: T) -> bool {
    v < T::zero() || v > T::one()
}

/// How many elements of `x` `bad` holds for, as a number: a branch-free
/// count that vectorises (inside [`vectorized`]), for checks folded into a
/// kernel's pass over its data.
#[inline(always)]
pub(crate) fn count_where<T: Float>(x: &[T], bad: impl Fn(T) -> bool) -> T {
    simd::sum_map(
        x,
        #[inline(always)]
        |v| if bad(v) { T::one() } else { T::zero() },
    )
}

/// The index of the first element for which `bad` holds. A branch-free count
/// per chunk first (vectorised, over rayon), then a search only on failure:
/// an input check costs a fraction of the op it guards.
pub(crate) fn first_where<T: Float>(
    x: &[T],
    bad: impl Fn(T) -> bool + Sync + Send,
) -> Option<usize> {
    // a closure marked for inlining rather than `&bad`: called through the
    // `&F` shim, closures were not always inlined into the per-ISA wrapper
    #[allow(clippy::redundant_closure)]
    let count = chunked_sum(x.len(), |r| {
        let x = &x[r];
        vectorized(
            #[inline(always)]
            || {
                count_where(
                    x,
                    #[inline(always)]
                    |v| bad(v),
                )
            },
        )
    });
    if count > T::zero() {
        x.iter().position(|&v| bad(v))
    } else {
        None
    }
}

/// Elements per task of the parallel pointwise kernels (128 KiB of `f32`).
pub(crate) const CHUNK: usize = 1 << 15;

/// The fixed chunks of `0..n` (so results do not depend on the thread count).
fn chunks(n: usize) -> impl IndexedParallelIterator<Item = Range<usize>> {
    (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(move |c| c * CHUNK..((c + 1) * CHUNK).min(n))
}

/// `Σ f(chunk)` over fixed chunks of `0..n`, over rayon when `n` is large;
/// the chunk sums are added in order, so the result is deterministic.
pub(crate) fn chunked_sum<T: Float>(n: usize, f: impl Fn(Range<usize>) -> T + Sync + Send) -> T {
    if n < PAR_THRESHOLD {
        return f(0..n);
    }
    let parts: Vec<T> = chunks(n).map(f).collect();
    simd::sum_of(&parts)
}

/// Run `f(start, chunk)` over fixed chunks of `out`, over rayon when large.
pub(crate) fn chunked_fill<E: Send>(out: &mut [E], f: impl Fn(usize, &mut [E]) + Sync + Send) {
    if out.len() < PAR_THRESHOLD {
        f(0, out);
    } else {
        out.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(c, o)| f(c * CHUNK, o));
    }
}

/// Run `f(range, a_chunk, b_chunk)` over fixed chunks of `0..n` and of the
/// two optional outputs (each `n` long when present), over rayon when large;
/// returns what `f` gave for each chunk, in order.
pub(crate) fn chunked_fill2<E: Send, R: Send>(
    n: usize,
    a: Option<&mut [E]>,
    b: Option<&mut [E]>,
    f: impl Fn(Range<usize>, Option<&mut [E]>, Option<&mut [E]>) -> R + Sync + Send,
) -> Vec<R> {
    if n < PAR_THRESHOLD {
        return vec![f(0..n, a, b)];
    }
    chunks(n)
        .zip(split_chunks(a, n))
        .zip(split_chunks(b, n))
        .map(|((r, a), b)| f(r, a, b))
        .collect()
}

/// An optional buffer of `n` elements cut into the chunks of [`chunks`]
/// (`None` for each chunk when absent).
fn split_chunks<T>(o: Option<&mut [T]>, n: usize) -> Vec<Option<&mut [T]>> {
    match o {
        Some(o) => o.chunks_mut(CHUNK).map(Some).collect(),
        None => (0..n.div_ceil(CHUNK)).map(|_| None).collect(),
    }
}

/// A vector of `n` elements to be written once through
/// [`Vec::spare_capacity_mut`] (no zero fill first: a fresh output is
/// written once, not twice); [`filled`] sets its length afterwards. The
/// room comes from the tensor buffer pool, so a training loop reuses the
/// last step's buffer instead of faulting in fresh pages.
pub(crate) fn unfilled<T: Element>(n: usize) -> Vec<T> {
    lossgraph_tensor::pool::take_empty(n)
}

/// The first `n` uninitialised slots of `v` (from [`unfilled`]).
pub(crate) fn slots<T>(v: &mut Vec<T>, n: usize) -> &mut [MaybeUninit<T>] {
    &mut v.spare_capacity_mut()[..n]
}

/// Slots that have all been written, as values.
///
/// # Safety
/// Every element of `s` must have been written.
pub(crate) unsafe fn assume_init<T>(s: &mut [MaybeUninit<T>]) -> &mut [T] {
    // SAFETY: MaybeUninit<T> has T's layout, and the caller wrote every slot.
    unsafe { &mut *(s as *mut [MaybeUninit<T>] as *mut [T]) }
}

/// Set the length of a vector from [`unfilled`] to `n`.
///
/// # Safety
/// Its first `n` slots must have been written.
pub(crate) unsafe fn filled<T>(v: &mut Vec<T>, n: usize) {
    debug_assert!(v.capacity() >= n);
    // SAFETY: the caller wrote the first n slots.
    unsafe { v.set_len(n) }
}

/// `out_i = loss(a_i, b_i)` over equal-length slices (vectorisable); writes
/// every slot of `out`.
#[inline(always)]
fn loss_loop<T: Float>(loss: &impl Fn(T, T) -> T, a: &[T], b: &[T], out: &mut [MaybeUninit<T>]) {
    let n = out.len();
    let (a, b) = (&a[..n], &b[..n]);
    for i in 0..n {
        out[i] = MaybeUninit::new((*loss)(a[i], b[i]));
    }
}

/// `da_i = u_i·∂a(a_i, b_i)`, `db_i = u_i·∂b(a_i, b_i)` for the outputs that
/// are present (vectorisable: one loop per case, no branch inside); writes
/// every slot of each present output, which must be `a.len()` long. With
/// `stream` (for outputs far larger than the cache, [`simd::streams`]) the
/// same values are written with streaming stores.
#[inline(always)]
pub(crate) fn grad_loop<T: Float>(
    grad: impl Fn(usize, T, T) -> (T, T),
    a: &[T],
    b: &[T],
    up: Upstream<'_, T>,
    da: Option<&mut [MaybeUninit<T>]>,
    db: Option<&mut [MaybeUninit<T>]>,
    stream: bool,
) {
    match up {
        Upstream::Same(u) => grad_loop_with(&grad, a, b, |_| u, da, db, stream),
        Upstream::Each(g) => {
            let g = &g[..a.len()];
            grad_loop_with(&grad, a, b, |i| g[i], da, db, stream)
        }
    }
}

/// [`grad_loop`] for one kind of upstream gradient `u`: the plain or the
/// streamed loop.
#[inline(always)]
fn grad_loop_with<T: Float>(
    grad: &impl Fn(usize, T, T) -> (T, T),
    a: &[T],
    b: &[T],
    u: impl Fn(usize) -> T,
    da: Option<&mut [MaybeUninit<T>]>,
    db: Option<&mut [MaybeUninit<T>]>,
    stream: bool,
) {
    if stream {
        grad_loop_streamed(grad, a, b, u, da, db)
    } else {
        grad_loop_u(grad, a, b, u, da, db)
    }
}

/// [`grad_loop_u`] for outputs far larger than the cache
/// ([`simd::streams`]): block by block ([`simd::stream_blocks`]) into
/// scratch blocks that stay in L1, each copied out with streaming stores, so
/// the outputs' lines are not read from memory before they are overwritten.
/// The values are the same as [`grad_loop_u`]'s, element for element.
#[inline(always)]
fn grad_loop_streamed<T: Float>(
    grad: &impl Fn(usize, T, T) -> (T, T),
    a: &[T],
    b: &[T],
    u: impl Fn(usize) -> T,
    mut da: Option<&mut [MaybeUninit<T>]>,
    mut db: Option<&mut [MaybeUninit<T>]>,
) {
    let n = a.len();
    let mut sa = [MaybeUninit::<T>::uninit(); simd::STREAM_BLOCK];
    let mut sb = [MaybeUninit::<T>::uninit(); simd::STREAM_BLOCK];
    let lead = da.as_deref().or(db.as_deref());
    let head = lead.map_or(0, |o| simd::line_offset(o.as_ptr()));
    for r in simd::stream_blocks(head, n) {
        let (s, m) = (r.start, r.len());
        let (ab, bb) = (&a[r.clone()], &b[r.clone()]);
        let (ga, gb) = (&mut sa[..m], &mut sb[..m]);
        grad_loop_u(
            &|k, x, y| grad(s + k, x, y),
            ab,
            bb,
            |k| u(s + k),
            da.is_some().then_some(&mut *ga),
            db.is_some().then_some(&mut *gb),
        );
        if let Some(d) = da.as_deref_mut() {
            // SAFETY: grad_loop_u wrote every slot of the scratch block of
            // each output that is present, and `da` is.
            simd::copy_streaming(unsafe { assume_init(ga) }, &mut d[r.clone()]);
        }
        if let Some(d) = db.as_deref_mut() {
            // SAFETY: as above, for `db`.
            simd::copy_streaming(unsafe { assume_init(gb) }, &mut d[r]);
        }
    }
    simd::stream_fence();
}

#[inline(always)]
fn grad_loop_u<T: Float>(
    grad: &impl Fn(usize, T, T) -> (T, T),
    a: &[T],
    b: &[T],
    u: impl Fn(usize) -> T,
    da: Option<&mut [MaybeUninit<T>]>,
    db: Option<&mut [MaybeUninit<T>]>,
) {
    let n = a.len();
    let b = &b[..n];
    match (da, db) {
        (Some(da), Some(db)) => {
            let (da, db) = (&mut da[..n], &mut db[..n]);
            for i in 0..n {
                let (x, y) = (*grad)(i, a[i], b[i]);
                let u = u(i);
                da[i] = MaybeUninit::new(u * x);
                db[i] = MaybeUninit::new(u * y);
            }
        }
        (Some(da), None) => {
            let da = &mut da[..n];
            for i in 0..n {
                da[i] = MaybeUninit::new(u(i) * (*grad)(i, a[i], b[i]).0);
            }
        }
        (None, Some(db)) => {
            let db = &mut db[..n];
            for i in 0..n {
                db[i] = MaybeUninit::new(u(i) * (*grad)(i, a[i], b[i]).1);
            }
        }
        (None, None) => {}
    }
}

/// Gradient buffers for two inputs, each `n` long where `need` asks for it,
/// written once by `fill` through their uninitialised slots (which must
/// write every slot of each present buffer); returns what `fill` returned
/// and the buffers.
pub(crate) fn fill_two_grads<T: Element, R>(
    n: usize,
    need: &[bool],
    fill: impl FnOnce(Option<&mut [MaybeUninit<T>]>, Option<&mut [MaybeUninit<T>]>) -> R,
) -> (R, Vec<Option<Vec<T>>>) {
    let want = |k: usize| need.get(k).copied().unwrap_or(false);
    let mut da = want(0).then(|| unfilled(n));
    let mut db = want(1).then(|| unfilled(n));
    let r = fill(
        da.as_mut().map(|v| slots(v, n)),
        db.as_mut().map(|v| slots(v, n)),
    );
    for v in da.iter_mut().chain(db.iter_mut()) {
        // SAFETY: `fill` wrote every slot of each present buffer.
        unsafe { filled(v, n) };
    }
    (r, vec![da, db])
}

/// Gradients computed as flat buffers, as tensors of the inputs' shared
/// `shape` (`None` stays `None`: an input that needs no gradient). The
/// common tail of the fused ops' backward.
pub(crate) fn grads_as_tensors<T: Float>(
    grads: Vec<Option<Vec<T>>>,
    shape: &Shape,
) -> Result<Vec<Option<Tensor<T>>>> {
    let shapes = vec![shape; grads.len()];
    grads_as_tensors_of(grads, &shapes)
}

/// [`grads_as_tensors`] for inputs of different shapes, one per gradient.
pub(crate) fn grads_as_tensors_of<T: Float>(
    grads: Vec<Option<Vec<T>>>,
    shapes: &[&Shape],
) -> Result<Vec<Option<Tensor<T>>>> {
    grads
        .into_iter()
        .zip(shapes)
        .map(|(g, &shape)| g.map(|g| Tensor::from_vec(g, shape.clone())).transpose())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(Into::into)
}

/// Which inputs get their gradient already in forward: with a `sum` or
/// `mean` reduction every item's upstream gradient is the same number, and
/// the gradients are linear in it, so forward can compute them for an
/// upstream gradient of 1 in the same pass over the data (while it is in
/// cache) and backward only rescales them. `None` (value only) for `none`,
/// with gradients off, or when no input needs a gradient.
pub fn eager_inputs<T: Float>(reduction: Reduction, inputs: &[&Var<T>]) -> Option<Vec<bool>> {
    let need: Vec<bool> = inputs.iter().map(|v| v.requires_grad()).collect();
    let on = inputs.first().is_some_and(|v| v.tape().grad_enabled());
    (reduction != Reduction::None && on && need.contains(&true)).then_some(need)
}

/// Gradients forward computed for an upstream gradient of 1 (one optional
/// buffer per input, see [`eager_inputs`]), kept for the first backward,
/// which takes them; a second backward finds none and recomputes.
pub struct UnitGrads<T>(Mutex<Option<Vec<Option<Vec<T>>>>>);

impl<T: Float> UnitGrads<T> {
    /// Keep `grads` (`None`: forward computed none).
    pub fn new(grads: Option<Vec<Option<Vec<T>>>>) -> Self {
        UnitGrads(Mutex::new(grads))
    }
    /// [`Self::take_scaled`], or `recompute()` when forward kept none (a
    /// `none` reduction, a second backward): the start of every backward
    /// of an op that saves [`UnitGrads`].
    pub fn take_scaled_or(
        &self,
        g: &Tensor<T>,
        need: &[bool],
        recompute: impl FnOnce() -> Vec<Option<Vec<T>>>,
    ) -> Vec<Option<Vec<T>>> {
        self.take_scaled(g, need).unwrap_or_else(recompute)
    }

    /// The gradients scaled by the (scalar) upstream gradient `g`, if they
    /// are still here and cover every input in `need`; inputs not in `need`
    /// get `None`.
    pub fn take_scaled(&self, g: &Tensor<T>, need: &[bool]) -> Option<Vec<Option<Vec<T>>>> {
        let mut grads = self.0.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        let covered = need
            .iter()
            .enumerate()
            .all(|(i, &n)| !n || grads.get(i).is_some_and(|g| g.is_some()));
        if !covered {
            return None;
        }
        let k = g.as_slice()[0];
        for (i, slot) in grads.iter_mut().enumerate() {
            if !need.get(i).copied().unwrap_or(false) {
                *slot = None;
            } else if let (Some(v), true) = (slot.as_mut(), k != T::one()) {
                v.par_chunks_mut(CHUNK).for_each(|c| {
                    vectorized(
                        #[inline(always)]
                        || c.iter_mut().for_each(|x| *x *= k),
                    )
                });
            }
        }
        Some(grads)
    }
}

/// A loss that is `f(a, b)` element by element over two same-shaped inputs,
/// reduced. `loss(a, b)` gives the item's loss, `grad(a, b)` its partial
/// derivatives `(∂/∂a, ∂/∂b)`. With `sum` or `mean` and an input that needs a
/// gradient, forward writes the gradients for an upstream gradient of 1 in
/// the same pass as the sum ([`eager_inputs`]): the data is read once for
/// the whole step. Otherwise nothing is saved and backward recomputes the
/// derivatives from the inputs, which the tape holds anyway.
///
/// Both passes run over fixed chunks of 32K elements split over rayon,
/// each a loop compiled for the widest vector instructions the CPU has
/// ([`vectorized`]); forward sums each chunk with many accumulators (no
/// per-item loss vector unless the reduction is `none`), backward writes each
/// gradient once into a buffer allocated once (no zero fill, no per-element
/// push). For the loops to vectorise, pass `loss` and `grad` as closures
/// marked `#[inline(always)]` (allowed in argument position) and use
/// [`Float::fast_exp`] and friends for transcendental functions.
pub struct Elementwise<T, L, G> {
    /// Op name for errors.
    pub name: &'static str,
    /// How items are combined.
    pub reduction: Reduction,
    /// Per-item loss.
    pub loss: L,
    /// Per-item partial derivatives.
    pub grad: G,
    /// The `mean`'s denominator from outside (see [`check_denominator`];
    /// set by [`Self::over`], default none: the element count).
    denominator: Option<f64>,
    /// Which inputs get their gradient in forward (set by [`Self::apply`]).
    eager: Option<Vec<bool>>,
    /// Marker for the element type.
    pub _t: std::marker::PhantomData<T>,
}

impl<T, L, G> Elementwise<T, L, G>
where
    T: Float,
    L: Fn(T, T) -> T + Send + Sync + 'static,
    G: Fn(T, T) -> (T, T) + Send + Sync + 'static,
{
    /// An elementwise loss named `name`.
    pub fn new(name: &'static str, reduction: Reduction, loss: L, grad: G) -> Self {
        Elementwise {
            name,
            reduction,
            loss,
            grad,
            denominator: None,
            eager: None,
            _t: std::marker::PhantomData,
        }
    }

    /// Divide the `mean` by `denominator` (the `denominator` option: the
    /// whole batch's element count when this call sees a part of it)
    /// instead of this call's element count; `None` keeps the count.
    pub fn over(mut self, denominator: Option<f64>) -> Self {
        self.denominator = denominator;
        self
    }

    /// The `mean`'s denominator for `n` elements.
    fn denom(&self, n: usize) -> T {
        mean_denominator(self.denominator, T::of(n as f64))
    }

    /// Check shapes, the reduction and the denominator, then record the op
    /// on `a`'s tape.
    ///
    /// # Errors
    /// `ShapeMismatch` when the shapes differ; `InvalidOption` for batchmean
    /// or a bad denominator ([`check_denominator`]).
    pub fn apply(mut self, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        no_batchmean(self.name, self.reduction)?;
        check_denominator(self.name, self.denominator, self.reduction)?;
        same_shape(self.name, &a.shape(), &b.shape(), "both inputs")?;
        self.eager = eager_inputs(self.reduction, &[a, b]);
        let tape: Tape<T> = a.tape().clone();
        tape.apply(self, &[a, b])
    }
}

impl<T, L, G> CustomOp<T> for Elementwise<T, L, G>
where
    T: Float,
    L: Fn(T, T) -> T + Send + Sync + 'static,
    G: Fn(T, T) -> (T, T) + Send + Sync + 'static,
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
        let loss = &self.loss;
        if let Some(need) = &self.eager {
            let one = Tensor::scalar(T::one());
            let up = Upstream::over(&one, self.reduction, self.denom(n));
            let (s, grads) = self.sum_and_grads(a, b, up, need, true);
            let out = reduce_over(vec![s], Shape::scalar(), self.reduction, self.denom(n))?;
            return Ok((out, UnitGrads::new(Some(grads))));
        }
        let out = match self.reduction {
            Reduction::None => {
                let out = map_items(
                    a,
                    b,
                    #[inline(always)]
                    |x, y| (*loss)(x, y),
                );
                Tensor::from_vec(out, x[0].shape().clone())?
            }
            r => {
                let s = chunked_sum(n, |r| {
                    let (a, b) = (&a[r.clone()], &b[r]);
                    vectorized(
                        #[inline(always)]
                        || {
                            simd::sum_map2(
                                a,
                                b,
                                #[inline(always)]
                                |x, y| (*loss)(x, y),
                            )
                        },
                    )
                });
                reduce_over(vec![s], Shape::scalar(), r, self.denom(n))?
            }
        };
        Ok((out, UnitGrads::new(None)))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, UnitGrads<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let (a, b) = (cx.inputs[0].as_slice(), cx.inputs[1].as_slice());
        let n = a.len();
        let grads = cx.saved.take_scaled_or(cx.grad_output, cx.needs_grad, || {
            let up = Upstream::over(cx.grad_output, self.reduction, self.denom(n));
            self.sum_and_grads(a, b, up, cx.needs_grad, false).1
        });
        grads_as_tensors(grads, cx.inputs[0].shape())
    }
}

impl<T, L, G> Elementwise<T, L, G>
where
    T: Float,
    L: Fn(T, T) -> T + Send + Sync + 'static,
    G: Fn(T, T) -> (T, T) + Send + Sync + 'static,
{
    /// One pass over the inputs, chunk by chunk: the sum of the losses (when
    /// `with_sum`; backward does not need it) and the gradients `u·∂` for the
    /// inputs in `need`, each written once into a buffer allocated once (no
    /// zero fill). The chunk is still in cache when the gradient loop reads
    /// it after the sum.
    fn sum_and_grads(
        &self,
        a: &[T],
        b: &[T],
        up: Upstream<'_, T>,
        need: &[bool],
        with_sum: bool,
    ) -> (T, Vec<Option<Vec<T>>>) {
        let (loss, grad) = (&self.loss, &self.grad);
        sum_and_grads(
            a,
            b,
            #[inline(always)]
            |x, y| (*loss)(x, y),
            #[inline(always)]
            |x, y| (*grad)(x, y),
            up,
            need,
            with_sum,
        )
    }
}

/// Reduce a var of per-item losses with primitive ops (for naive twins).
pub fn reduce_naive<T: Float>(loss: Var<T>, r: Reduction) -> Result<Var<T>> {
    reduce_naive_with(loss, r, None)
}

/// [`reduce_naive`] with the `denominator` option: when given, `mean` is the
/// sum over `denominator` ([`reduce_naive_over`]), else over every item.
pub fn reduce_naive_with<T: Float>(
    loss: Var<T>,
    r: Reduction,
    denominator: Option<f64>,
) -> Result<Var<T>> {
    match (r, denominator) {
        (Reduction::Mean, Some(d)) => reduce_naive_over(loss, r, T::of(d)),
        (Reduction::None, _) => Ok(loss),
        (Reduction::Sum, _) => loss.sum_all(),
        (Reduction::Mean | Reduction::BatchMean, _) => {
            if loss.shape().numel() == 0 {
                loss.sum_all()
            } else {
                loss.mean_all()
            }
        }
    }
}

/// [`reduce_over`] with primitive ops (for naive twins): `mean` is the sum
/// times `1/denom` (0 when `denom` is 0: the empty-denominator rule).
pub fn reduce_naive_over<T: Float>(loss: Var<T>, r: Reduction, denom: T) -> Result<Var<T>> {
    match r {
        Reduction::None => Ok(loss),
        Reduction::Sum => loss.sum_all(),
        Reduction::Mean | Reduction::BatchMean => {
            let inv = if denom == T::zero() {
                T::zero()
            } else {
                T::one() / denom
            };
            loss.sum_all()?.mul_scalar(inv)
        }
    }
}

/// Per-row sums for `rows` rows of width `c` laid out one after the other:
/// `f(range)` gives `K` partial sums over the elements `range` (a part of one
/// row, as global indices) and the parts of each row are added in order.
/// A long row (at least [`PAR_THRESHOLD`] elements: a whole input reduced as
/// one row) is cut into the fixed chunks of [`chunks`], spread over rayon;
/// short rows are spread over rayon whole. The cuts do not depend on the
/// thread count, so neither do the sums.
pub(crate) fn row_sums<T: Float, const K: usize>(
    rows: usize,
    c: usize,
    f: impl Fn(Range<usize>) -> [T; K] + Sync + Send,
) -> Vec<[T; K]> {
    if c >= PAR_THRESHOLD {
        return (0..rows)
            .map(|r| {
                let parts: Vec<[T; K]> = chunks(c)
                    .map(|p| f(r * c + p.start..r * c + p.end))
                    .collect();
                let mut s = [T::zero(); K];
                for p in parts {
                    for k in 0..K {
                        s[k] += p[k];
                    }
                }
                s
            })
            .collect();
    }
    let row = |r: usize| f(r * c..(r + 1) * c);
    if rows > 1 && rows.saturating_mul(c) >= PAR_THRESHOLD {
        (0..rows).into_par_iter().map(row).collect()
    } else {
        (0..rows).map(row).collect()
    }
}

/// Run `f(row, range, a_part, b_part)` over two optional outputs of `n`
/// elements (rows of width `c`, one after the other), piece by piece: the
/// fixed chunks of [`chunked_fill2`] (over rayon when large), each cut
/// further at row boundaries, so that every call sees a part of one row
/// (`range` its global element indices, `a_part`/`b_part` the matching
/// parts of the outputs that are present). Every element lies in exactly one
/// piece.
pub(crate) fn row_fill2<E: Send>(
    n: usize,
    c: usize,
    a: Option<&mut [E]>,
    b: Option<&mut [E]>,
    f: impl Fn(usize, Range<usize>, Option<&mut [E]>, Option<&mut [E]>) + Sync + Send,
) {
    let c = c.max(1);
    chunked_fill2(n, a, b, |r, mut a, mut b| {
        let mut i = r.start;
        while i < r.end {
            let row = i / c;
            let end = ((row + 1) * c).min(r.end);
            let (lo, hi) = (i - r.start, end - r.start);
            f(
                row,
                i..end,
                a.as_deref_mut().map(|a| &mut a[lo..hi]),
                b.as_deref_mut().map(|b| &mut b[lo..hi]),
            );
            i = end;
        }
    });
}

/// [`Elementwise`]'s one pass as a free function, for fused ops of two
/// same-shaped inputs that reduce with their own denominator (`kl_div`'s
/// `batchmean`) or add a constant factor: the sum of `loss(a_i, b_i)` (when
/// `with_sum`) and the gradients `u_i·∂` of `grad` for the inputs in `need`,
/// each written once, chunk by chunk over rayon, vectorised. Pass `loss` and
/// `grad` as closures marked `#[inline(always)]`.
pub(crate) fn sum_and_grads<T: Float>(
    a: &[T],
    b: &[T],
    loss: impl Fn(T, T) -> T + Sync + Send,
    grad: impl Fn(T, T) -> (T, T) + Sync + Send,
    up: Upstream<'_, T>,
    need: &[bool],
    with_sum: bool,
) -> (T, Vec<Option<Vec<T>>>) {
    let (loss, grad) = (&loss, &grad);
    let stream = simd::streams::<T>(a.len());
    let (parts, grads) = fill_two_grads(a.len(), need, |sa, sb| {
        chunked_fill2(a.len(), sa, sb, |r, da, db| {
            let (a, b, up) = (&a[r.clone()], &b[r.clone()], up.range(r));
            vectorized(
                #[inline(always)]
                || {
                    let s = if with_sum {
                        simd::sum_map2(
                            a,
                            b,
                            #[inline(always)]
                            |x, y| (*loss)(x, y),
                        )
                    } else {
                        T::zero()
                    };
                    grad_loop(
                        #[inline(always)]
                        |_, x, y| (*grad)(x, y),
                        a,
                        b,
                        up,
                        da,
                        db,
                        stream,
                    );
                    s
                },
            )
        })
    });
    (simd::sum_of(&parts), grads)
}

/// `loss(a_i, b_i)` for every item, as a fresh vector written once (chunks
/// over rayon, vectorised): the unreduced output of such an op.
pub(crate) fn map_items<T: Float>(
    a: &[T],
    b: &[T],
    loss: impl Fn(T, T) -> T + Sync + Send,
) -> Vec<T> {
    let n = a.len();
    let loss = &loss;
    let mut out = unfilled(n);
    chunked_fill(slots(&mut out, n), |s, o| {
        let r = s..s + o.len();
        let (a, b) = (&a[r.clone()], &b[r]);
        vectorized(
            #[inline(always)]
            || loss_loop(loss, a, b, o),
        )
    });
    // SAFETY: the chunks cover 0..n and loss_loop writes each slot.
    unsafe { filled(&mut out, n) };
    out
}

/// `f(row, a_row, b_row)` for each of `rows` rows of width `c`, with the
/// row's parts of two optional outputs (`rows·c` elements each, when
/// present); returns `f`'s results in row order. Rows go in blocks of about
/// [`CHUNK`] elements, spread over rayon when the input is large (each row is
/// computed whole by one thread, so results do not depend on the thread
/// count).
pub(crate) fn rows_map2<E: Send, R: Send>(
    rows: usize,
    c: usize,
    a: Option<&mut [E]>,
    b: Option<&mut [E]>,
    f: impl Fn(usize, Option<&mut [E]>, Option<&mut [E]>) -> R + Sync + Send,
) -> Vec<R> {
    let rpb = (CHUNK / c.max(1)).max(1);
    let blocks = rows.div_ceil(rpb);
    /// `o` cut into `blocks` blocks of `w` elements (`w` may be 0).
    fn split<E>(o: Option<&mut [E]>, w: usize, blocks: usize) -> Vec<Option<&mut [E]>> {
        match o {
            Some(o) if w > 0 => o.chunks_mut(w).map(Some).collect(),
            Some(_) => (0..blocks).map(|_| Some(&mut [][..])).collect(),
            None => (0..blocks).map(|_| None).collect(),
        }
    }
    let block = |k: usize, mut a: Option<&mut [E]>, mut b: Option<&mut [E]>| -> Vec<R> {
        let r0 = k * rpb;
        (r0..(r0 + rpb).min(rows))
            .map(|r| {
                let part = (r - r0) * c..(r - r0 + 1) * c;
                f(
                    r,
                    a.as_deref_mut().map(|a| &mut a[part.clone()]),
                    b.as_deref_mut().map(|b| &mut b[part]),
                )
            })
            .collect()
    };
    let (sa, sb) = (split(a, rpb * c, blocks), split(b, rpb * c, blocks));
    let parts: Vec<Vec<R>> = if blocks > 1 && rows.saturating_mul(c) >= PAR_THRESHOLD {
        sa.into_par_iter()
            .zip(sb)
            .enumerate()
            .map(|(k, (a, b))| block(k, a, b))
            .collect()
    } else {
        sa.into_iter()
            .zip(sb)
            .enumerate()
            .map(|(k, (a, b))| block(k, a, b))
            .collect()
    };
    parts.into_iter().flatten().collect()
}

/// Whether a plain sum of squares `ss` (of finite terms) is accurate: finite,
/// and large enough (≥ `MIN_POSITIVE/ε`) that squares which fell below the
/// normal range cost it no digit. Outside that range (or NaN) the caller
/// recomputes with [`pow2_scale`] and [`scaled_sum_sq2`], as `hypot` and
/// BLAS `nrm2` do; inside it (every normal-magnitude input) this compare is
/// all the scaled path costs.
#[inline(always)]
pub(crate) fn sum_sq_in_range<T: Float>(ss: T) -> bool {
    ss >= T::min_positive_value() / T::epsilon() && ss <= T::max_value()
}

/// `max |f(a_j, b_j)|` over equal-length slices (0 for empty ones; NaN
/// terms are skipped, they reach the sum anyway).
pub(crate) fn max_abs_map2<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    a.iter()
        .zip(b)
        .fold(T::zero(), |m, (&x, &y)| m.max(f(x, y).abs()))
}

/// The power of two `2^⌊log₂ m⌋` for a finite `m > 0` (within a factor 2 of
/// `m`), `None` otherwise. Dividing by it is exact (short of subnormal
/// results), so a sum scaled by it differs from the plain one only where
/// the plain one overflowed or underflowed.
pub(crate) fn pow2_scale<T: Float>(m: T) -> Option<T> {
    if !(m > T::zero() && m.is_finite()) {
        return None;
    }
    let k = m.as_f64().log2().floor() as i32;
    Some(T::of(2f64.powi(k)))
}

/// `Σ (f(a_j, b_j)/s)²` in the order of the plain `simd::sum_map2` of
/// `f²` (so with `s` from [`pow2_scale`] it is that sum times `s⁻²`,
/// without its overflow or underflow); vectorised inside a `vectorized`
/// region.
#[inline(always)]
pub(crate) fn scaled_sum_sq2<T: Float>(a: &[T], b: &[T], s: T, f: impl Fn(T, T) -> T) -> T {
    lossgraph_tensor::simd::sum_map2(
        a,
        b,
        #[inline(always)]
        |x, y| {
            let z = f(x, y) / s;
            z * z
        },
    )
}

/// `‖f(a, b)‖₂` from its plain sum of squares `ss`: `√ss` when
/// [`sum_sq_in_range`], else `s·√(Σ (f/s)²)` with `s` a power of two near
/// `max |f|` (finite and accurate wherever the norm is; `√ss` when the max
/// is 0 or not finite). Returns the norm and the sum of squares `ss`, the
/// latter as `(s·Σ(f/s)²)·s` on the scaled path (`∞` only where it truly
/// overflows).
#[inline(always)]
pub(crate) fn norm_from_sum_sq<T: Float>(
    ss: T,
    a: &[T],
    b: &[T],
    f: impl Fn(T, T) -> T + Copy,
) -> (T, T) {
    if sum_sq_in_range(ss) {
        return (ss.sqrt(), ss);
    }
    match pow2_scale(max_abs_map2(a, b, f)) {
        Some(s) => {
            let t = scaled_sum_sq2(a, b, s, f);
            (s * t.sqrt(), (s * t) * s)
        }
        None => (ss.sqrt(), ss),
    }
}
