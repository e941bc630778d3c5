//! Matrix products. For `y = a·b`: `da = g·bᵀ`, `db = aᵀ·g`, computed with
//! transposed strides (no copies); a broadcast batch of 1 sums its gradient.

use crate::error::Result;
use crate::tape::Var;
use lossgraph_tensor::parallel::serial_products;
use lossgraph_tensor::{matmul_t, Float, Tensor, Trans};
use smallvec::smallvec;

/// Multiply-adds per backward product (`M·N·K`) from which a matmul's two
/// backward products run side by side, one per core (below it, a product
/// takes a few microseconds and the hand-off is not worth it).
const SIDE_BY_SIDE: usize = 1 << 20;

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
            // y = a·op(b): da = g·op(b)ᵀ
            let grad_a = || -> Result<Tensor<T>> {
                let flip = if tb == Trans::N { Trans::T } else { Trans::N };
                fit_batch(matmul_t(g, Trans::N, &b, flip)?, a.dims())
            };
            // op(b) = aᵀ·g, so b = aᵀ·g or (aᵀ·g)ᵀ = gᵀ·a
            let grad_b = || -> Result<Tensor<T>> {
                let d = match tb {
                    Trans::N => matmul_t(&a, Trans::T, g, Trans::N)?,
                    Trans::T => matmul_t(g, Trans::T, &a, Trans::N)?,
                };
                fit_batch(d, b.dims())
            };
            let (da, db) = match (n[0], n[1]) {
                // two independent products: one per core, each single-threaded
                // (fewer hand-offs between threads than splitting each over all)
                (true, true)
                    if g.numel() * a.dims().last().copied().unwrap_or(0) >= SIDE_BY_SIDE =>
                {
                    let (da, db) =
                        rayon::join(|| serial_products(grad_a), || serial_products(grad_b));
                    (Some(da?), Some(db?))
                }
                (wa, wb) => (wa.then(grad_a).transpose()?, wb.then(grad_b).transpose()?),
            };
            Ok(smallvec![da, db])
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::Tape;
    use lossgraph_tensor::{matmul_t, Tensor, Trans};

    /// Products big enough to take the side-by-side path give the gradients
    /// of the definition, for both layouts of the right operand.
    #[test]
    fn side_by_side_backward_products_match_the_definition() {
        let (m, k, n) = (96, 128, 112);
        assert!(m * n * k >= super::SIDE_BY_SIDE);
        let a = Tensor::<f64>::randn([m, k], 0.0, 1.0, 1).unwrap();
        let g = Tensor::<f64>::randn([m, n], 0.0, 1.0, 2).unwrap();
        for tb in [Trans::N, Trans::T] {
            let b = match tb {
                Trans::N => Tensor::<f64>::randn([k, n], 0.0, 1.0, 3).unwrap(),
                Trans::T => Tensor::<f64>::randn([n, k], 0.0, 1.0, 3).unwrap(),
            };
            let tape = Tape::new();
            let (va, vb) = (tape.leaf(a.clone()), tape.leaf(b.clone()));
            let y = match tb {
                Trans::N => va.matmul(&vb).unwrap(),
                Trans::T => va.matmul_nt(&vb).unwrap(),
            };
            let grads = y.backward_with(g.clone()).unwrap();
            let flip = if tb == Trans::N { Trans::T } else { Trans::N };
            let want_a = matmul_t(&g, Trans::N, &b, flip).unwrap();
            let want_b = match tb {
                Trans::N => matmul_t(&a, Trans::T, &g, Trans::N).unwrap(),
                Trans::T => matmul_t(&g, Trans::T, &a, Trans::N).unwrap(),
            };
            for (got, want) in [(grads.get(&va), want_a), (grads.get(&vb), want_b)] {
                let got = got.unwrap();
                assert_eq!(got.dims(), want.dims());
                for (x, w) in got.as_slice().iter().zip(want.as_slice()) {
                    assert!((x - w).abs() <= 1e-12 * w.abs().max(1.0), "{x} vs {w}");
                }
            }
        }
    }
}
