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
        for o in 0..outer {
            for i in 0..inner {
                let mut acc = init();
                for k in 0..len {
                    acc = f(acc, x[(o * len + k) * inner + i], k);
                }
                out.push(finish(acc, len));
            }
        }
        Ok(Tensor::from_parts(out, out_shape))
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
    /// `InvalidOption` when `axis` is out of range.
    pub fn argmax(&self, axis: usize, keepdim: bool) -> Result<Tensor<i64>> {
        self.shape().check_axis("argmax", axis)?;
        let (outer, len, inner) = self.shape().split_at_axis(axis);
        if len == 0 && outer * inner > 0 {
            return Err(crate::Error::shape(
                "argmax",
                &[self.dims()],
                "argmax over an empty axis",
            ));
        }
        let x = self.as_slice();
        let mut out =
            crate::alloc::try_with_capacity("argmax", &self.shape().reduced(axis, keepdim))?;
        for o in 0..outer {
            for i in 0..inner {
                let mut best = 0usize;
                let mut bv = T::neg_infinity();
                for k in 0..len {
                    let v = x[(o * len + k) * inner + i];
                    if v.is_nan() {
                        best = k;
                        break;
                    }
                    if v > bv || k == 0 {
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
        let m = self.max(axis, true)?;
        let (outer, len, inner) = self.shape().split_at_axis(axis);
        let x = self.as_slice();
        let ms = m.as_slice();
        let mut out = crate::pool::take_empty(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let mx = ms[o * inner + i];
                if !mx.is_finite() {
                    // all −∞ gives −∞; +∞ or NaN propagate
                    out.push(mx);
                    continue;
                }
                // in f64, so a long axis adds up accurately (as `sum`)
                let mut s = 0.0f64;
                for k in 0..len {
                    s += (x[(o * len + k) * inner + i] - mx).exp().as_f64();
                }
                out.push(mx + T::of(s).ln());
            }
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
        Tensor::scalar(
            self.as_slice()
                .iter()
                .fold(T::neg_infinity(), |a, &x| nan_max(a, x)),
        )
    }
    /// Minimum of every element, as a 0-d tensor.
    pub fn min_all(&self) -> Tensor<T> {
        Tensor::scalar(
            self.as_slice()
                .iter()
                .fold(T::infinity(), |a, &x| nan_min(a, x)),
        )
    }
    /// The shape a reduction along `axis` gives.
    pub fn reduced_shape(&self, axis: usize, keepdim: bool) -> Shape {
        self.shape().reduced(axis, keepdim)
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
