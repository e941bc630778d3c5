//! Elementwise functions of two tensors, with NumPy broadcasting.

use crate::error::Result;
use crate::float::{Element, Float};
use crate::parallel;
use crate::shape::{broadcast_shapes, broadcast_strides, Shape};
use crate::tensor::Tensor;

/// Apply `f` elementwise over the broadcast of `a` and `b`.
///
/// Fast paths: equal shapes (a zip), and a scalar on either side; the general
/// path walks the output with a multi-index and per-input broadcast strides.
pub fn broadcast_map<T: Element, U: Element>(
    op: &str,
    a: &Tensor<T>,
    b: &Tensor<T>,
    f: impl Fn(T, T) -> U + Sync + Send,
) -> Result<Tensor<U>> {
    if a.shape() == b.shape() {
        let data = parallel::zip_map(a.as_slice(), b.as_slice(), f);
        return Ok(Tensor::from_parts(data, a.shape().clone()));
    }
    let out_shape = broadcast_shapes(op, a.shape(), b.shape())?;
    if b.numel() == 1 && out_shape == *a.shape() {
        let y = b.as_slice()[0];
        return Ok(a.map(move |x| f(x, y)));
    }
    if a.numel() == 1 && out_shape == *b.shape() {
        let x = a.as_slice()[0];
        return Ok(b.map(move |y| f(x, y)));
    }
    // One side repeats along the leading axes of the other (a bias row added
    // to every row): zip each row of the big side with the small side.
    if let Some(out) = rows_zip(a, b, &out_shape, &f) {
        return Ok(out);
    }
    let sa = broadcast_strides(a.shape(), &out_shape);
    let sb = broadcast_strides(b.shape(), &out_shape);
    let data = strided_zip(&out_shape, a.as_slice(), &sa, b.as_slice(), &sb, f);
    Ok(Tensor::from_parts(data, out_shape))
}

/// `b`'s dims without their leading 1s.
fn core_dims(t: &Shape) -> &[usize] {
    let d = t.dims();
    &d[d.iter().position(|&x| x != 1).unwrap_or(d.len())..]
}

/// The fast paths of [`broadcast_map`] when one input has the output's
/// shape and the other repeats in blocks: a trailing block of it (a bias
/// row added to every row), or a column (`[.., n, 1]` against `[.., n, m]`:
/// one value per row). The output is written row by row, rows in parallel
/// when large, each compiled for the widest instruction set. `None` when
/// neither applies.
fn rows_zip<T: Element, U: Element>(
    a: &Tensor<T>,
    b: &Tensor<T>,
    out_shape: &Shape,
    f: &(impl Fn(T, T) -> U + Sync + Send),
) -> Option<Tensor<U>> {
    let n = out_shape.numel();
    if n == 0 {
        return None;
    }
    let repeats = |big: &Tensor<T>, small: &Tensor<T>| {
        big.shape() == out_shape
            && !core_dims(small.shape()).is_empty()
            && big.dims().ends_with(core_dims(small.shape()))
    };
    let column = |big: &Tensor<T>, small: &Tensor<T>| {
        let (bd, sd) = (big.dims(), small.dims());
        big.shape() == out_shape
            && bd.len() == sd.len()
            && sd.last() == Some(&1)
            && bd[..bd.len() - 1] == sd[..sd.len() - 1]
    };
    // which side repeats, and how; decided before the output is taken
    enum Repeat {
        RowOfB,
        RowOfA,
        ColumnOfB,
        ColumnOfA,
    }
    let pattern = if repeats(a, b) {
        Repeat::RowOfB
    } else if repeats(b, a) {
        Repeat::RowOfA
    } else if column(a, b) {
        Repeat::ColumnOfB
    } else if column(b, a) {
        Repeat::ColumnOfA
    } else {
        return None;
    };
    /// `row(i, out_row)` for every row of `len`, each compiled for the
    /// widest instruction set (generic, so that `row` is inlined there)
    fn each_row<U: Send>(out: &mut [U], len: usize, row: impl Fn(usize, &mut [U]) + Sync) {
        parallel::for_each_row_mut(out, len, |i, o| {
            crate::simd::vectorized(
                #[inline(always)]
                || row(i, o),
            )
        })
    }
    let mut out = crate::pool::take(n);
    let (x, y) = (a.as_slice(), b.as_slice());
    let m = out_shape.last_dim();
    match pattern {
        Repeat::RowOfB => each_row(&mut out, y.len(), |i, o| {
            let xr = &x[i * y.len()..][..y.len()];
            o.iter_mut()
                .zip(xr.iter().zip(y))
                .for_each(|(o, (&x, &y))| *o = f(x, y));
        }),
        Repeat::RowOfA => each_row(&mut out, x.len(), |i, o| {
            let yr = &y[i * x.len()..][..x.len()];
            o.iter_mut()
                .zip(x.iter().zip(yr))
                .for_each(|(o, (&x, &y))| *o = f(x, y));
        }),
        Repeat::ColumnOfB => each_row(&mut out, m, |i, o| {
            let (xr, y) = (&x[i * m..][..m], y[i]);
            o.iter_mut().zip(xr).for_each(|(o, &x)| *o = f(x, y));
        }),
        Repeat::ColumnOfA => each_row(&mut out, m, |i, o| {
            let (x, yr) = (x[i], &y[i * m..][..m]);
            o.iter_mut().zip(yr).for_each(|(o, &y)| *o = f(x, y));
        }),
    }
    Some(Tensor::from_parts(out, out_shape.clone()))
}

/// Walk `out_shape` in row-major order, reading `a` and `b` through strides.
/// The innermost axis is a tight loop; the outer axes advance a counter.
fn strided_zip<T: Copy, U: Element>(
    out_shape: &Shape,
    a: &[T],
    sa: &[usize],
    b: &[T],
    sb: &[usize],
    f: impl Fn(T, T) -> U,
) -> Vec<U> {
    let dims = out_shape.dims();
    let n = out_shape.numel();
    let mut out = crate::pool::take_empty(n);
    if n == 0 {
        return out;
    }
    let nd = dims.len();
    let inner = dims[nd - 1];
    let (ia, ib) = (sa[nd - 1], sb[nd - 1]);
    let mut idx = vec![0usize; nd];
    let (mut oa, mut ob) = (0usize, 0usize);
    loop {
        for k in 0..inner {
            out.push(f(a[oa + k * ia], b[ob + k * ib]));
        }
        // advance the outer multi-index
        let mut d = nd - 1;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            idx[d] += 1;
            oa += sa[d];
            ob += sb[d];
            if idx[d] < dims[d] {
                break;
            }
            oa -= sa[d] * dims[d];
            ob -= sb[d] * dims[d];
            idx[d] = 0;
        }
    }
}

macro_rules! binary {
    ($($(#[$doc:meta])* $name:ident => |$x:ident, $y:ident| $body:expr;)*) => {
        impl<T: Float> Tensor<T> {
            $(
                $(#[$doc])*
                ///
                /// # Errors
                /// `ShapeMismatch` when the shapes do not broadcast.
                pub fn $name(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
                    broadcast_map(stringify!($name), self, other, |$x: T, $y: T| $body)
                }
            )*
        }
    };
}

binary! {
    /// `a + b`, broadcasting.
    add => |x, y| x + y;
    /// `a − b`, broadcasting.
    sub => |x, y| x - y;
    /// `a · b`, broadcasting.
    mul => |x, y| x * y;
    /// `a / b`, broadcasting.
    div => |x, y| x / y;
    /// Elementwise maximum, broadcasting (NaN propagates).
    maximum => |x, y| if x.is_nan() || y.is_nan() { T::nan() } else if x >= y { x } else { y };
    /// Elementwise minimum, broadcasting (NaN propagates).
    minimum => |x, y| if x.is_nan() || y.is_nan() { T::nan() } else if x <= y { x } else { y };
    /// `aᵇ`, broadcasting.
    pow => |x, y| x.powf(y);
    /// 1 where `a > b`, else 0.
    gt => |x, y| if x > y { T::one() } else { T::zero() };
    /// 1 where `a ≥ b`, else 0.
    ge => |x, y| if x >= y { T::one() } else { T::zero() };
    /// 1 where `a < b`, else 0.
    lt => |x, y| if x < y { T::one() } else { T::zero() };
    /// 1 where `a ≤ b`, else 0.
    le => |x, y| if x <= y { T::one() } else { T::zero() };
    /// 1 where `a = b`, else 0.
    eq_mask => |x, y| if x == y { T::one() } else { T::zero() };
}

impl<T: Float> Tensor<T> {
    /// `cond ? a : b` elementwise (`cond` nonzero selects `a`); all three broadcast.
    ///
    /// # Errors
    /// `ShapeMismatch` when the shapes do not broadcast.
    pub fn where_select(cond: &Tensor<T>, a: &Tensor<T>, b: &Tensor<T>) -> Result<Tensor<T>> {
        let shape = broadcast_shapes("where", cond.shape(), a.shape())?;
        let shape = broadcast_shapes("where", &shape, b.shape())?;
        let c = cond.broadcast_to(&shape)?;
        let a = a.broadcast_to(&shape)?;
        let b = b.broadcast_to(&shape)?;
        let mut data = crate::pool::take_empty(shape.numel());
        data.extend(
            c.as_slice()
                .iter()
                .zip(a.as_slice().iter().zip(b.as_slice()))
                .map(|(&c, (&x, &y))| if c != T::zero() { x } else { y }),
        );
        Ok(Tensor::from_parts(data, shape))
    }

    /// Sum a gradient of a broadcast shape back down to `shape` (the inverse of
    /// broadcasting: sum over the axes that were added or stretched from 1).
    ///
    /// # Errors
    /// `ShapeMismatch` when `shape` does not broadcast to this tensor's shape.
    pub fn sum_to_shape(&self, shape: &Shape) -> Result<Tensor<T>> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        if !crate::shape::broadcasts_to(shape, self.shape()) {
            return Err(crate::Error::shape(
                "sum_to_shape",
                &[self.dims(), shape.dims()],
                "target shape does not broadcast to the source shape",
            ));
        }
        // Common case (a bias gradient): `shape` is the trailing block of this
        // shape, so summing is adding up consecutive rows of that block.
        let kept: usize = shape.numel();
        let trailing = self.dims().ends_with(core_dims(shape));
        if trailing && kept > 0 {
            let mut out = crate::pool::take_zeroed(kept);
            for row in self.as_slice().chunks(kept) {
                out.iter_mut().zip(row).for_each(|(o, &v)| *o += v);
            }
            return Tensor::from_vec(out, shape.clone());
        }
        let strides = broadcast_strides(shape, self.shape());
        let mut out = crate::pool::take_zeroed(shape.numel());
        let dims = self.dims();
        let nd = dims.len();
        let mut idx = vec![0usize; nd];
        let mut off = 0usize;
        for &v in self.as_slice() {
            out[off] += v;
            let mut d = nd;
            while d > 0 {
                d -= 1;
                idx[d] += 1;
                off += strides[d];
                if idx[d] < dims[d] {
                    break;
                }
                off -= strides[d] * dims[d];
                idx[d] = 0;
            }
        }
        Tensor::from_vec(out, shape.clone())
    }

    /// Add `other` into this tensor in place (no copy when the storage is not
    /// shared). Used to accumulate gradients.
    ///
    /// # Errors
    /// `ShapeMismatch` when the shapes differ.
    pub fn add_assign(&mut self, other: &Tensor<T>) -> Result<()> {
        if self.shape() != other.shape() {
            return Err(crate::Error::shape(
                "add_assign",
                &[self.dims(), other.dims()],
                "shapes must be equal",
            ));
        }
        let o = other.as_slice();
        let s = self.make_mut();
        if s.len() >= parallel::PAR_THRESHOLD {
            use rayon::prelude::*;
            s.par_chunks_mut(parallel::PAR_CHUNK)
                .zip(o.par_chunks(parallel::PAR_CHUNK))
                .for_each(|(s, o)| s.iter_mut().zip(o).for_each(|(s, &o)| *s += o));
        } else {
            s.iter_mut().zip(o).for_each(|(s, &o)| *s += o);
        }
        Ok(())
    }
}
