//! Matrix products. For `y = a·b`: `da = g·bᵀ`, `db = aᵀ·g`, computed with
//! transposed strides (no copies); a broadcast batch of 1 sums its gradient.

use crate::error::Result;
use crate::tape::Var;
use lossgraph_tensor::{matmul_t, Float, Tensor, Trans};
use smallvec::smallvec;

/// Sum a batched gradient down to an operand that had no batch (2-D) or a
/// batch of 1.
fn fit_batch<T: Float>(g: Tensor<T>, like: &[usize]) -> Result<Tensor<T>> {
    if g.dims() == like {
        return Ok(g);
    }
    let s = g.sum(0, like.len() == 3)?;
    Ok(s)
}

impl<T: Float> Var<T> {
    /// Matrix product `[M,K]·[K,N]` or batched `[B,M,K]·[B,K,N]`.
    pub fn matmul(&self, other: &Var<T>) -> Result<Var<T>> {
        self.matmul_with(other, Trans::N)
    }
    /// `a·bᵀ` (e.g. `x·Wᵀ` with `W` stored `[out, in]`), no transpose copy.
    pub fn matmul_nt(&self, other: &Var<T>) -> Result<Var<T>> {
        self.matmul_with(other, Trans::T)
    }
    fn matmul_with(&self, other: &Var<T>, tb: Trans) -> Result<Var<T>> {
        let (a, b) = (self.value(), other.value());
        let y = matmul_t(&a, Trans::N, &b, tb)?;
        self.record("matmul", y, &[self, other], move |g, n| {
            let da = if n[0] {
                // y = a·op(b): da = g·op(b)ᵀ
                let flip = if tb == Trans::N { Trans::T } else { Trans::N };
                Some(fit_batch(matmul_t(g, Trans::N, &b, flip)?, a.dims())?)
            } else {
                None
            };
            let db = if n[1] {
                // op(b) = aᵀ·g, so b = aᵀ·g or (aᵀ·g)ᵀ = gᵀ·a
                let d = match tb {
                    Trans::N => matmul_t(&a, Trans::T, g, Trans::N)?,
                    Trans::T => matmul_t(g, Trans::T, &a, Trans::N)?,
                };
                Some(fit_batch(d, b.dims())?)
            } else {
                None
            };
            Ok(smallvec![da, db])
        })
    }
}
