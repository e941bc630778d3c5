//! Reductions along one axis (with `keepdim`) and over every element.
//!
//! A tensor is viewed as `[outer, len, inner]` around the reduced axis, so one
//! loop serves every axis.
//!
//! Sums and means add accurately at any length, in both dtypes: every
//! partial sum is kept in `f64`, a contiguous run is summed in blocks of
//! [`LEAF`] elements ([`simd::sum_f64`], 64 lanes of 64 values each) joined
//! by a balanced tree, and a strided axis in blocks of [`ROWS`] rows joined
//! the same way. So an `f32` sum is the exact sum rounded once (give or take
//! an error far under one ulp), and an `f64` sum of n elements is off by at
//! most about `(64 + log₂(n/LEAF))·ε·Σ|x|`, where a serial loop is off by
//! `n·ε·Σ|x|`. The tree's shape depends on the length only, never on the
//! number of threads, so results are reproducible.

use crate::error::Result;
use crate::float::Float;
use crate::shape::Shape;
use crate::simd;
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Elements per leaf of the summation tree: each of [`simd::sum_f64`]'s 64
/// lanes adds 64 of them.
const LEAF: usize = 4096;
/// Runs at least this long have their two halves summed on two threads
/// (rayon's `join`; the tree, and so the result, is the same either way).
const PAR_MIN: usize = 1 << 18;
/// Rows per block of a sum along a strided axis.
const ROWS: usize = 64;

/// `Σ x` in `f64` by the summation tree (see the module docs).
fn tree_sum<T: Float>(x: &[T]) -> f64 {
    if x.len() <= LEAF {
        return simd::vectorized(
            #[inline(always)]
            || simd::sum_f64(x),
        );
    }
    // split on a leaf boundary, so that the leaves are whole blocks
    let half = (x.len() / 2).div_ceil(LEAF) * LEAF;
    let (a, b) = x.split_at(half);
    if x.len() >= PAR_MIN {
        let (l, r) = rayon::join(|| tree_sum(a), || tree_sum(b));
        l + r
    } else {
        tree_sum(a) + tree_sum(b)
    }
}

/// `Σ x`, accurately (see the module docs).
pub(crate) fn accurate_sum<T: Float>(x: &[T]) -> T {
    T::of(tree_sum(x))
}

/// Column sums of a row-major `[len, inner]` slab, in `f64`: blocks of
/// [`ROWS`] rows summed row by row, the blocks' partial sums joined as a
/// binary counter joins its bits (a pairwise cascade), so each column's
/// error grows with `ROWS + log₂(len/ROWS)`, not with `len`.
fn column_sums<T: Float>(slab: &[T], inner: usize) -> Vec<f64> {
    let mut stack: Vec<(u32, Vec<f64>)> = Vec::new();
    for block in slab.chunks(ROWS * inner) {
        let mut part = vec![0.0f64; inner];
        simd::vectorized(
            #[inline(always)]
            || {
                for row in block.chunks_exact(inner) {
                    for (a, &v) in part.iter_mut().zip(row) {
                        *a += v.as_f64();
                    }
                }
            },
        );
        let mut level = 0;
        while stack.last().is_some_and(|(l, _)| *l == level) {
            let (_, lower) = stack.pop().expect("checked above");
            part.iter_mut().zip(&lower).for_each(|(a, b)| *a += *b);
            level += 1;
        }
        stack.push((level, part));
    }
    let mut total = vec![0.0f64; inner];
    for (_, part) in stack.iter().rev() {
        total.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    total
}

impl<T: Float> Tensor<T> {
    /// Fold along `axis` with `init` and `f`, then `finish(acc, len)`.
    fn reduce_axis<U: crate::Element>(
        &self,
        op: &str,
        axis: usize,
        keepdim: bool,
        init: impl Fn() -> U,
        f: impl Fn(U, T, usize) -> U,
        finish: impl Fn(U, usize) -> U,
    ) -> Result<Tensor<U>> {
        self.shape().check_axis(op, axis)?;
        let (outer, len, inner) = self.shape().split_at_axis(axis);
        let x = self.as_slice();
        // an empty axis ([2⁵⁷, 0] summed over axis 1) can reduce to far more
        // elements than the input holds: allocate the output fallibly
        let out_shape = self.shape().reduced(axis, keepdim);
        let mut out = crate::alloc::try_with_capacity(op, &out_shape)?;
        // one accumulator per output of a slab, the slab read row after row
        // (contiguous), not one output's strided column at a time
        if x.is_empty() {
            // no element to read: every output (if any) is the empty reduction
            out.extend((0..outer * inner).map(|_| finish(init(), len)));
            return Ok(Tensor::from_parts(out, out_shape));
        }
        let mut acc = Vec::with_capacity(inner);
        for slab in x.chunks(len * inner) {
            acc.clear();
            acc.extend((0..inner).map(|_| init()));
            for (k, row) in slab.chunks(inner).enumerate() {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a = f(*a, v, k);
                }
            }
            out.extend(acc.drain(..).map(|a| finish(a, len)));
        }
        Ok(Tensor::from_parts(out, out_shape))
    }

    /// `row(x)` for each contiguous row along the last axis (the caller
    /// checked that `axis` is the last one with a non-empty length), rows in
    /// parallel when the tensor is large, each compiled for the widest
    /// instruction set ([`simd::vectorized`]). Pass `row` as an
    /// `#[inline(always)]` closure, never a fn item: the item's call shim is
    /// compiled on its own, for the baseline instruction set.
    fn reduce_last_axis<U: crate::Element>(
        &self,
        op: &str,
        axis: usize,
        keepdim: bool,
        row: impl Fn(&[T]) -> U + Sync,
    ) -> Result<Tensor<U>> {
        let len = self.dims()[axis];
        let out_shape = self.shape().reduced(axis, keepdim);
        let mut out = crate::alloc::try_with_capacity(op, &out_shape)?;
        let run = |r: &[T]| {
            simd::vectorized(
                #[inline(always)]
                || row(r),
            )
        };
        let x = self.as_slice();
        if x.len() >= PAR_MIN && x.len() > len {
            out.par_extend(x.par_chunks(len).map(run));
        } else {
            out.extend(x.chunks(len).map(run));
        }
        Ok(Tensor::from_parts(out, out_shape))
    }

    /// Whether `axis` is the last one, non-empty, in a tensor with elements:
    /// the rows that [`Tensor::reduce_last_axis`] serves.
    fn is_row_axis(&self, axis: usize) -> bool {
        axis + 1 == self.ndim() && self.numel() > 0
    }

    /// Sum along `axis`.
    ///
    /// # Errors
    /// `InvalidOption` when `axis` is out of range.
    pub fn sum(&self, axis: usize, keepdim: bool) -> Result<Tensor<T>> {
        self.shape().check_axis("sum", axis)?;
        let (outer, len, inner) = self.shape().split_at_axis(axis);
        let out_shape = self.shape().reduced(axis, keepdim);
        if len == 0 || self.numel() == 0 {
            // an empty axis: as many zeros as outputs, which may not fit;
            // else no element at all: as many zeros as outputs, i.e. none
            let zeros = crate::alloc::try_filled("sum", &out_shape, T::zero())?;
            return Ok(Tensor::from_parts(zeros, out_shape));
        }
        let x = self.as_slice();
        let mut out: Vec<T> = crate::alloc::try_with_capacity("sum", &out_shape)?;
        if inner == 1 {
            // contiguous rows: one summation tree per row
            if x.len() >= PAR_MIN && outer > 1 {
                out.par_extend(x.par_chunks(len).map(accurate_sum));
            } else {
                out.extend(x.chunks(len).map(accurate_sum));
            }
        } else {
            for slab in x.chunks(len * inner) {
                out.extend(column_sums(slab, inner).into_iter().map(T::of));
            }
        }
        Ok(Tensor::from_parts(out, out_shape))
    }
    /// Mean along `axis` (NaN for an empty axis).
    ///
    /// # Errors
    /// `InvalidOption` when `axis` is out of range.
    pub fn mean(&self, axis: usize, keepdim: bool) -> Result<Tensor<T>> {
        let s = self.sum(axis, keepdim)?;
        let n = T::of(self.dims()[axis] as f64);
        Ok(s.map(|v| v / n))
    }
    /// Maximum along `axis` (NaN propagates; −∞ for an empty axis).
    ///
    /// # Errors
    /// `InvalidOption` when `axis` is out of range.
    pub fn max(&self, axis: usize, keepdim: bool) -> Result<Tensor<T>> {
        if self.is_row_axis(axis) {
            return self.reduce_last_axis(
                "max",
                axis,
                keepdim,
                #[inline(always)]
                |r| simd::max(r),
            );
        }
        self.reduce_axis(
            "max",
            axis,
            keepdim,
            T::neg_infinity,
            |a, x, _| nan_max(a, x),
            |a, _| a,
        )
    }
    /// Minimum along `axis` (NaN propagates; +∞ for an empty axis).
    ///
    /// # Errors
    /// `InvalidOption` when `axis` is out of range.
    pub fn min(&self, axis: usize, keepdim: bool) -> Result<Tensor<T>> {
        if self.is_row_axis(axis) {
            return self.reduce_last_axis(
                "min",
                axis,
                keepdim,
                #[inline(always)]
                |r| min_row(r),
            );
        }
        self.reduce_axis(
            "min",
            axis,
            keepdim,
            T::infinity,
            |a, x, _| nan_min(a, x),
            |a, _| a,
        )
    }
    /// Index of the first maximum along `axis` (a NaN counts as the maximum).
    ///
    /// # Errors
    /// `InvalidOption` when `axis` is out of range; `Shape` for an empty axis
    /// in a tensor with elements.
    pub fn argmax(&self, axis: usize, keepdim: bool) -> Result<Tensor<i64>> {
        self.arg_extreme("argmax", axis, keepdim, true)
    }
    /// Index of the first minimum along `axis` (a NaN counts as the minimum).
    ///
    /// # Errors
    /// As [`Tensor::argmax`].
    pub fn argmin(&self, axis: usize, keepdim: bool) -> Result<Tensor<i64>> {
        self.arg_extreme("argmin", axis, keepdim, false)
    }
    /// [`Tensor::argmax`] (`max`) or [`Tensor::argmin`]. Along the last axis
    /// each row takes two sweeps, both from cache after the first: the
    /// vectorised extreme (NaN if the row has one), then the first index
    /// that holds it — the same index the one-pass scalar scan finds.
    fn arg_extreme(&self, op: &str, axis: usize, keepdim: bool, max: bool) -> Result<Tensor<i64>> {
        self.shape().check_axis(op, axis)?;
        let (outer, len, inner) = self.shape().split_at_axis(axis);
        if len == 0 && outer * inner > 0 {
            return Err(crate::Error::shape(
                op,
                &[self.dims()],
                "an arg-extreme over an empty axis",
            ));
        }
        if self.is_row_axis(axis) {
            return self.reduce_last_axis(
                op,
                axis,
                keepdim,
                #[inline(always)]
                |r| {
                    let m = if max { simd::max(r) } else { min_row(r) };
                    let at = if m.is_nan() {
                        r.iter().position(|v| v.is_nan())
                    } else {
                        r.iter().position(|&v| v == m)
                    };
                    at.unwrap_or(0) as i64
                },
            );
        }
        let x = self.as_slice();
        let mut out = crate::alloc::try_with_capacity(op, &self.shape().reduced(axis, keepdim))?;
        for o in 0..outer {
            for i in 0..inner {
                let mut best = 0usize;
                let mut bv = x.get(o * len * inner + i).copied().unwrap_or(T::zero());
                for k in 0..len {
                    let v = x[(o * len + k) * inner + i];
                    if v.is_nan() {
                        best = k;
                        break;
                    }
                    if (max && v > bv) || (!max && v < bv) {
                        bv = v;
                        best = k;
                    }
                }
                out.push(best as i64);
            }
        }
        Ok(Tensor::from_parts(out, self.shape().reduced(axis, keepdim)))
    }
    /// `log Σ exp(x)` along `axis`, shifted by the max so it never overflows.
    ///
    /// # Errors
    /// `InvalidOption` when `axis` is out of range.
    pub fn logsumexp(&self, axis: usize, keepdim: bool) -> Result<Tensor<T>> {
        if self.is_row_axis(axis) {
            // a closure, not the fn item: the item's `Fn::call` shim is a
            // function of its own, compiled outside the vectorised wrapper,
            // where the exp polynomial's fused multiply-adds became calls
            // to libm's `fmaf` (116 ms instead of ~3 for [4096, 1024])
            return self.reduce_last_axis(
                "logsumexp",
                axis,
                keepdim,
                #[inline(always)]
                |r| crate::softmax::logsumexp_fast(r),
            );
        }
        let m = self.max(axis, true)?;
        let (outer, len, inner) = self.shape().split_at_axis(axis);
        let x = self.as_slice();
        let mut out = crate::pool::take_empty(outer * inner);
        // in f64, so a long axis adds up accurately (as `sum`); slab by
        // slab, each read row after row
        let mut acc = vec![0.0f64; inner];
        for (o, ms) in m.as_slice().chunks(inner.max(1)).enumerate().take(outer) {
            acc.fill(0.0);
            for k in 0..len {
                let row = &x[(o * len + k) * inner..][..inner];
                for ((a, &v), &mx) in acc.iter_mut().zip(row).zip(ms) {
                    *a += (v - mx).exp().as_f64();
                }
            }
            // a max that is not finite is the answer: all −∞ gives −∞,
            // +∞ or NaN propagate
            out.extend(acc.iter().zip(ms).map(|(&a, &mx)| {
                if mx.is_finite() {
                    mx + T::of(a).ln()
                } else {
                    mx
                }
            }));
        }
        Ok(Tensor::from_parts(out, self.shape().reduced(axis, keepdim)))
    }

    /// Sum of every element, as a 0-d tensor.
    pub fn sum_all(&self) -> Tensor<T> {
        Tensor::scalar(accurate_sum(self.as_slice()))
    }
    /// Mean of every element, as a 0-d tensor (NaN when empty).
    pub fn mean_all(&self) -> Tensor<T> {
        let n = self.numel() as f64;
        Tensor::scalar(T::of(tree_sum(self.as_slice()) / n))
    }
    /// Maximum of every element, as a 0-d tensor.
    pub fn max_all(&self) -> Tensor<T> {
        let x = self.as_slice();
        Tensor::scalar(simd::vectorized(
            #[inline(always)]
            || simd::max(x),
        ))
    }
    /// Minimum of every element, as a 0-d tensor.
    pub fn min_all(&self) -> Tensor<T> {
        let x = self.as_slice();
        Tensor::scalar(simd::vectorized(
            #[inline(always)]
            || min_row(x),
        ))
    }
    /// The shape a reduction along `axis` gives.
    pub fn reduced_shape(&self, axis: usize, keepdim: bool) -> Shape {
        self.shape().reduced(axis, keepdim)
    }
}

/// The smallest element of a row, NaN if any is NaN, as a compare and a
/// select per element (vectorisable: [`simd::max`]'s form).
#[inline(always)]
fn min_row<T: Float>(x: &[T]) -> T {
    let (mut m, mut nan) = (T::infinity(), false);
    for &v in x {
        m = if v < m { v } else { m };
        nan |= v.is_nan();
    }
    if nan {
        T::nan()
    } else {
        m
    }
}

#[inline]
fn nan_max<T: Float>(a: T, x: T) -> T {
    if a.is_nan() || x.is_nan() {
        T::nan()
    } else if x > a {
        x
    } else {
        a
    }
}
#[inline]
fn nan_min<T: Float>(a: T, x: T) -> T {
    if a.is_nan() || x.is_nan() {
        T::nan()
    } else if x < a {
        x
    } else {
        a
    }
}
