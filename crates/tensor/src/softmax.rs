//! Softmax and log-softmax along the last axis, max-shifted so that no
//! exponential overflows.

use crate::float::Float;
use crate::parallel::for_each_row_mut;
use crate::tensor::Tensor;

impl<T: Float> Tensor<T> {
    /// `softmax(x)` along the last axis: `e^(x − max) / Σ e^(x − max)`.
    pub fn softmax(&self) -> Tensor<T> {
        let n = self.shape().last_dim();
        let mut out = self.to_vec();
        for_each_row_mut(&mut out, n, |_, row| softmax_row(row));
        Tensor::from_parts(out, self.shape().clone())
    }
    /// `log softmax(x)` along the last axis: `x − max − log Σ e^(x − max)`.
    pub fn log_softmax(&self) -> Tensor<T> {
        let n = self.shape().last_dim();
        let mut out = self.to_vec();
        for_each_row_mut(&mut out, n, |_, row| {
            let lse = logsumexp_row(row);
            row.iter_mut().for_each(|v| *v -= lse);
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
