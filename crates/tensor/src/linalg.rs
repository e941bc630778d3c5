//! Matrix products through the `gemm` crate (a well-kept, SIMD, threaded GEMM).
//!
//! Transposed operands are passed as strides, never copied: `a·bᵀ` and `aᵀ·b`
//! are what the backward of a product needs.

use crate::error::{Error, Result};
use crate::float::Float;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Whether an operand is used as stored or transposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trans {
    /// As stored.
    N,
    /// Transposed (the last two axes swapped).
    T,
}

impl<T: Float> Tensor<T> {
    /// Matrix product: `[M,K]·[K,N] → [M,N]`, or batched
    /// `[B,M,K]·[B,K,N] → [B,M,N]` (a batch of 1 on either side broadcasts).
    ///
    /// ```
    /// use lossgraph_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f64, 2.0, 3.0, 4.0], [2, 2])?;
    /// let i = Tensor::from_vec(vec![1.0f64, 0.0, 0.0, 1.0], [2, 2])?;
    /// assert_eq!(a.matmul(&i)?.to_vec(), a.to_vec());
    /// # Ok::<(), lossgraph_tensor::Error>(())
    /// ```
    ///
    /// # Errors
    /// `ShapeMismatch` when the inner dimensions or batches differ, or an
    /// operand is not 2-D or 3-D.
    pub fn matmul(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        matmul_t(self, Trans::N, other, Trans::N)
    }
    /// `a · bᵀ` without materialising the transpose.
    ///
    /// # Errors
    /// As [`Tensor::matmul`].
    pub fn matmul_nt(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        matmul_t(self, Trans::N, other, Trans::T)
    }
    /// `aᵀ · b` without materialising the transpose.
    ///
    /// # Errors
    /// As [`Tensor::matmul`].
    pub fn matmul_tn(&self, other: &Tensor<T>) -> Result<Tensor<T>> {
        matmul_t(self, Trans::T, other, Trans::N)
    }
}

/// (batch, rows, cols) of a 2-D or 3-D operand as used (after `t`), with its
/// row and column strides into the stored data and the batch stride.
fn operand(op: &str, x: &[usize], t: Trans) -> Result<(usize, usize, usize, isize, isize, usize)> {
    let (b, r, c) = match *x {
        [r, c] => (1, r, c),
        [b, r, c] => (b, r, c),
        _ => {
            return Err(Error::shape(op, &[x], "matmul operands must be 2-D or 3-D"));
        }
    };
    let bs = r * c;
    Ok(match t {
        Trans::N => (b, r, c, c as isize, 1, bs),
        Trans::T => (b, c, r, 1, c as isize, bs),
    })
}

/// `op(a) · op(b)` where `op` transposes the last two axes when asked.
///
/// # Errors
/// `ShapeMismatch` when the shapes do not fit.
pub fn matmul_t<T: Float>(a: &Tensor<T>, ta: Trans, b: &Tensor<T>, tb: Trans) -> Result<Tensor<T>> {
    let op = "matmul";
    let (ba, m, k, rsa, csa, bsa) = operand(op, a.dims(), ta)?;
    let (bb, k2, n, rsb, csb, bsb) = operand(op, b.dims(), tb)?;
    if k != k2 {
        return Err(Error::shape(
            op,
            &[a.dims(), b.dims()],
            format!("inner dimensions differ: {k} vs {k2}"),
        ));
    }
    if ba != bb && ba != 1 && bb != 1 {
        return Err(Error::shape(
            op,
            &[a.dims(), b.dims()],
            "batch sizes differ",
        ));
    }
    // a batch of 1 broadcasts to the other side's, 0 included: [0, m, k]
    // times [1, k, n] is an empty [0, m, n] (the larger of the two, 1, would
    // read a matrix from the empty side's buffer)
    let batch = if ba == 1 { bb } else { ba };
    let batched = a.ndim() == 3 || b.ndim() == 3;
    // [m, k]·[k, n] from two real buffers can still ask for m·n elements
    // that do not fit (m = n = 2³³ with k = 0 holds no element at all)
    let out_shape = Shape::from([batch, m, n]);
    let len = out_shape.checked_numel(op)?;
    let out = if m == 0 || n == 0 || k == 0 {
        crate::alloc::try_filled(op, &out_shape, T::zero())?
    } else {
        // No zero fill: with beta = 0 the product writes every element.
        let mut out: Vec<T> = crate::alloc::try_with_capacity(op, &out_shape)?;
        for i in 0..batch {
            let ap = &a.as_slice()[if ba == 1 { 0 } else { i * bsa }..];
            let bp = &b.as_slice()[if bb == 1 { 0 } else { i * bsb }..];
            // SAFETY: the operand shapes were checked above, so each pointer
            // covers its matrix under the given strides; the destination is
            // the spare capacity of `out` (m·n elements for this batch entry),
            // written, never read, since beta = 0.
            unsafe {
                T::gemm(
                    m,
                    k,
                    n,
                    T::one(),
                    ap.as_ptr(),
                    rsa,
                    csa,
                    bp.as_ptr(),
                    rsb,
                    csb,
                    T::zero(),
                    out.as_mut_ptr().add(i * m * n),
                    n as isize,
                    1,
                );
            }
        }
        // SAFETY: every one of the `len` elements was written above.
        unsafe { out.set_len(len) };
        out
    };
    let shape = if batched {
        vec![batch, m, n]
    } else {
        vec![m, n]
    };
    Tensor::from_vec(out, shape)
}

/// `c = beta·c + op(a)·op(b)` into a row-major `[M, N]` buffer, for 2-D
/// operands: accumulate a product (`beta = 1`, e.g. a weight gradient summed
/// over blocks of rows) or write one into part of a larger buffer
/// (`beta = 0`) without a temporary.
///
/// ```
/// use lossgraph_tensor::{matmul_into, Tensor, Trans};
/// let a = Tensor::from_vec(vec![1.0f64, 2.0], [2, 1])?;
/// let mut c = vec![1.0f64; 4];
/// matmul_into(&mut c, 1.0, &a, Trans::N, &a, Trans::T)?; // c += a·aᵀ
/// assert_eq!(c, [2.0, 3.0, 3.0, 5.0]);
/// # Ok::<(), lossgraph_tensor::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` unless both operands are 2-D with matching inner
/// dimensions and `c` holds exactly `M·N` elements.
pub fn matmul_into<T: Float>(
    c: &mut [T],
    beta: T,
    a: &Tensor<T>,
    ta: Trans,
    b: &Tensor<T>,
    tb: Trans,
) -> Result<()> {
    let op = "matmul_into";
    let (ba, m, k, rsa, csa, _) = operand(op, a.dims(), ta)?;
    let (bb, k2, n, rsb, csb, _) = operand(op, b.dims(), tb)?;
    if a.ndim() != 2 || b.ndim() != 2 || ba != 1 || bb != 1 || k != k2 || c.len() != m * n {
        return Err(Error::shape(
            op,
            &[a.dims(), b.dims(), &[c.len()]],
            "need 2-D operands [M, K]·[K, N] and a destination of M·N elements",
        ));
    }
    if k == 0 {
        // an empty sum: c = beta·c, with beta = 0 clearing even NaN
        c.iter_mut().for_each(|x| {
            *x = if beta == T::zero() {
                T::zero()
            } else {
                beta * *x
            }
        });
        return Ok(());
    }
    if m > 0 && n > 0 {
        // SAFETY: shapes checked above; `c` is an exclusive M·N buffer that
        // cannot alias the operands' shared storage.
        unsafe {
            T::gemm(
                m,
                k,
                n,
                T::one(),
                a.as_slice().as_ptr(),
                rsa,
                csa,
                b.as_slice().as_ptr(),
                rsb,
                csb,
                beta,
                c.as_mut_ptr(),
                n as isize,
                1,
            );
        }
    }
    Ok(())
}
