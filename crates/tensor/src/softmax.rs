//! Softmax and log-softmax along the last axis, max-shifted so that no
//! exponential overflows.

use crate::error::{Error, Result};
use crate::float::Float;
use crate::parallel::for_each_row_mut;
use crate::simd;
use crate::tensor::Tensor;

impl<T: Float> Tensor<T> {
    /// `softmax(x)` along the last axis: `e^(x − max) / Σ e^(x − max)`.
    ///
    /// Each row runs the SIMD row kernels (the max, then `e^(x − max)`
    /// written and summed in one pass, then one scaling); a row whose max
    /// is not finite (a NaN, an infinity, all −∞) takes [`softmax_row`],
    /// whose IEEE behaviour there is the reference.
    pub fn softmax(&self) -> Tensor<T> {
        self.map_last_axis(
            #[inline(always)]
            |xr, row| {
                let m = simd::max(xr);
                if !m.is_finite() {
                    row.copy_from_slice(xr);
                    return softmax_row(row);
                }
                let inv = T::one() / simd::exp_shift_sum(xr, m, row);
                row.iter_mut().for_each(|v| *v *= inv);
            },
        )
    }
    /// `log softmax(x)` along the last axis: `x − max − log Σ e^(x − max)`,
    /// through the SIMD row kernels as [`Tensor::softmax`].
    pub fn log_softmax(&self) -> Tensor<T> {
        self.map_last_axis(
            #[inline(always)]
            |xr, row| {
                let lse = logsumexp_fast(xr);
                for (o, &v) in row.iter_mut().zip(xr) {
                    *o = v - lse;
                }
            },
        )
    }

    /// The gradient of [`Tensor::softmax`] given its output (`self`, `y`)
    /// and the cotangent `g`: `y ⊙ (g − Σ g⊙y)` along each row, in one
    /// sweep per row (the row's `Σ g⊙y`, then the write, while the row is
    /// in cache) rather than four tensor passes and three temporaries.
    ///
    /// # Errors
    /// `ShapeMismatch` when `g`'s shape differs from `y`'s.
    pub fn softmax_backward(&self, g: &Tensor<T>) -> Result<Tensor<T>> {
        self.zip_last_axis(
            "softmax_backward",
            g,
            #[inline(always)]
            |yr, gr, out| {
                let s = simd::sum_map2(gr, yr, |g, y| g * y);
                for ((o, &y), &g) in out.iter_mut().zip(yr).zip(gr) {
                    *o = y * (g - s);
                }
            },
        )
    }

    /// The gradient of [`Tensor::log_softmax`] given its output (`self`,
    /// `y`) and the cotangent `g`: `g − e^y · Σ g` along each row, in one
    /// sweep per row as [`Tensor::softmax_backward`].
    ///
    /// # Errors
    /// `ShapeMismatch` when `g`'s shape differs from `y`'s.
    pub fn log_softmax_backward(&self, g: &Tensor<T>) -> Result<Tensor<T>> {
        self.zip_last_axis(
            "log_softmax_backward",
            g,
            #[inline(always)]
            |yr, gr, out| {
                let s = simd::sum(gr);
                for ((o, &y), &g) in out.iter_mut().zip(yr).zip(gr) {
                    *o = g - y.fast_exp() * s;
                }
            },
        )
    }

    /// [`Tensor::map_last_axis`] over two tensors of one shape:
    /// `f(self_row, other_row, output_row)`.
    fn zip_last_axis(
        &self,
        op: &str,
        other: &Tensor<T>,
        f: impl Fn(&[T], &[T], &mut [T]) + Sync,
    ) -> Result<Tensor<T>> {
        if self.shape() != other.shape() {
            return Err(Error::shape(
                op,
                &[self.dims(), other.dims()],
                "the output and its cotangent must have one shape",
            ));
        }
        let n = self.shape().last_dim();
        let (x, y) = (self.as_slice(), other.as_slice());
        let mut out = crate::pool::take(x.len());
        for_each_row_mut(&mut out, n, |i, row| {
            let (xr, yr) = (&x[i * n..(i + 1) * n], &y[i * n..(i + 1) * n]);
            simd::vectorized(
                #[inline(always)]
                || f(xr, yr, row),
            )
        });
        Ok(Tensor::from_parts(out, self.shape().clone()))
    }

    /// A tensor of this shape whose rows along the last axis are written by
    /// `f(input_row, output_row)`, compiled for the widest instruction set
    /// ([`simd::vectorized`]; mark `f` `#[inline(always)]`), rows in
    /// parallel when the tensor is large.
    fn map_last_axis(&self, f: impl Fn(&[T], &mut [T]) + Sync) -> Tensor<T> {
        let n = self.shape().last_dim();
        let x = self.as_slice();
        let mut out = crate::pool::take(x.len());
        for_each_row_mut(&mut out, n, |i, row| {
            let xr = &x[i * n..(i + 1) * n];
            simd::vectorized(
                #[inline(always)]
                || f(xr, row),
            )
        });
        Tensor::from_parts(out, self.shape().clone())
    }
}

/// `log Σ eˣ` of one row, shifted by its max (−∞ for an all −∞ row).
#[inline]
pub fn logsumexp_row<T: Float>(row: &[T]) -> T {
    let m = row.iter().fold(
        T::neg_infinity(),
        |a, &x| if x > a || x.is_nan() { x } else { a },
    );
    if !m.is_finite() {
        return m;
    }
    let s: T = row.iter().map(|&x| (x - m).exp()).sum();
    m + s.ln()
}

/// `log Σ exp(x)` of one row through the SIMD kernels: the max, then
/// `e^(x − max)` block by block into a buffer on the stack, each block
/// added up in `f64` ([`simd::sum_f64`]), so a long row sums as accurately
/// as [`Tensor::sum`]. A row whose max is not finite takes
/// [`logsumexp_row`], the IEEE reference. Compile it inside
/// [`simd::vectorized`].
#[inline(always)]
pub(crate) fn logsumexp_fast<T: Float>(x: &[T]) -> T {
    let m = simd::max(x);
    if !m.is_finite() {
        return logsumexp_row(x);
    }
    const BLOCK: usize = 1024;
    let mut buf = [T::zero(); BLOCK];
    let mut s = 0.0f64;
    for c in x.chunks(BLOCK) {
        let b = &mut buf[..c.len()];
        simd::exp_shift_sum(c, m, b);
        s += simd::sum_f64(b);
    }
    m + T::of(s.ln())
}

/// Softmax of one row, in place.
#[inline]
pub fn softmax_row<T: Float>(row: &mut [T]) {
    let m = row.iter().fold(
        T::neg_infinity(),
        |a, &x| if x > a || x.is_nan() { x } else { a },
    );
    let m = if m.is_finite() { m } else { T::zero() };
    let mut s = T::zero();
    for v in row.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    let inv = T::one() / s;
    row.iter_mut().for_each(|v| *v *= inv);
}
