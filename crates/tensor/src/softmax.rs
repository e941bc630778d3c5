//! Softmax and log-softmax along the last axis, max-shifted so that no
//! exponential overflows.

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
                let m = simd::max(xr);
                let lse = if m.is_finite() {
                    m + simd::sum_exp_shift(xr, m).ln()
                } else {
                    logsumexp_row(xr)
                };
                for (o, &v) in row.iter_mut().zip(xr) {
                    *o = v - lse;
                }
            },
        )
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
