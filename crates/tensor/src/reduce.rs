//! Reductions along one axis (with `keepdim`) and over every element.
//!
//! A tensor is viewed as `[outer, len, inner]` around the reduced axis, so one
//! loop serves every axis.

use crate::error::Result;
use crate::float::Float;
use crate::shape::Shape;
use crate::tensor::Tensor;

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
        if axis + 1 == self.ndim() {
            // contiguous rows: a plain slice sum per row
            self.shape().check_axis("sum", axis)?;
            let n = self.shape().last_dim();
            let data = if n == 0 {
                // rows of length 0: as many zeros as rows, which may not fit
                crate::alloc::try_filled("sum", &self.shape().reduced(axis, keepdim), T::zero())?
            } else {
                self.as_slice()
                    .chunks(n)
                    .map(|r| r.iter().copied().sum())
                    .collect()
            };
            return Ok(Tensor::from_parts(
                data,
                self.shape().reduced(axis, keepdim),
            ));
        }
        self.reduce_axis("sum", axis, keepdim, T::zero, |a, x, _| a + x, |a, _| a)
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
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let mx = ms[o * inner + i];
                if !mx.is_finite() {
                    // all −∞ gives −∞; +∞ or NaN propagate
                    out.push(mx);
                    continue;
                }
                let mut s = T::zero();
                for k in 0..len {
                    s += (x[(o * len + k) * inner + i] - mx).exp();
                }
                out.push(mx + s.ln());
            }
        }
        Ok(Tensor::from_parts(out, self.shape().reduced(axis, keepdim)))
    }

    /// Sum of every element, as a 0-d tensor.
    pub fn sum_all(&self) -> Tensor<T> {
        Tensor::scalar(self.as_slice().iter().copied().sum())
    }
    /// Mean of every element, as a 0-d tensor (NaN when empty).
    pub fn mean_all(&self) -> Tensor<T> {
        let n = T::of(self.numel() as f64);
        Tensor::scalar(self.as_slice().iter().copied().sum::<T>() / n)
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
