//! Layout ops. Each rule moves the gradient back through the inverse layout.

use crate::error::{Error, Result};
use crate::tape::{Grads, Var};
use lossgraph_tensor::{Float, Shape, Tensor};
use smallvec::smallvec;

impl<T: Float> Var<T> {
    /// Same data, new shape (no copy); rule: reshape `g` back.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Var<T>> {
        let x = self.value();
        let orig = x.shape().clone();
        self.record("reshape", x.reshape(shape)?, &[self], move |g, _| {
            Ok(smallvec![Some(g.reshape(&orig)?)])
        })
    }
    /// Reorder axes; rule: the inverse permutation.
    pub fn permute(&self, perm: &[usize]) -> Result<Var<T>> {
        let y = self.value().permute(perm)?;
        let mut inv = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        self.record("permute", y, &[self], move |g, _| {
            Ok(smallvec![Some(g.permute(&inv)?)])
        })
    }
    /// Swap two axes; rule: swap them back.
    pub fn transpose(&self, a0: usize, a1: usize) -> Result<Var<T>> {
        let y = self.value().transpose(a0, a1)?;
        self.record("transpose", y, &[self], move |g, _| {
            Ok(smallvec![Some(g.transpose(a0, a1)?)])
        })
    }
    /// Broadcast to `shape`; rule: sum `g` back to the input's shape.
    pub fn broadcast_to(&self, shape: impl Into<Shape>) -> Result<Var<T>> {
        let x = self.value();
        let orig = x.shape().clone();
        self.record(
            "broadcast_to",
            x.broadcast_to(&shape.into())?,
            &[self],
            move |g, _| Ok(smallvec![Some(g.sum_to_shape(&orig)?)]),
        )
    }
    /// The slice `start..start+len` along `axis`; rule: `g` placed back in a
    /// zero gradient of the input's shape.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Var<T>> {
        let x = self.value();
        let dims = x.dims().to_vec();
        self.record(
            "narrow",
            x.narrow(axis, start, len)?,
            &[self],
            move |g, _| {
                let mut before = dims.clone();
                before[axis] = start;
                let mut after = dims.clone();
                after[axis] = dims[axis] - start - len;
                let (b, a) = (Tensor::zeros(before)?, Tensor::zeros(after)?);
                Ok(smallvec![Some(Tensor::concat(&[&b, g, &a], axis)?)])
            },
        )
    }
    /// Join vars along `axis`; rule: slice `g` back into the parts.
    ///
    /// # Errors
    /// `ShapeMismatch` for no parts or disagreeing dims.
    pub fn concat(parts: &[&Var<T>], axis: usize) -> Result<Var<T>> {
        let first = parts.first().ok_or_else(|| {
            Error::from(lossgraph_tensor::Error::shape(
                "concat",
                &[],
                "concat needs at least one var",
            ))
        })?;
        let values: Vec<Tensor<T>> = parts.iter().map(|p| p.value()).collect();
        let refs: Vec<&Tensor<T>> = values.iter().collect();
        let y = Tensor::concat(&refs, axis)?;
        let lens: Vec<usize> = values.iter().map(|v| v.dims()[axis]).collect();
        first.record("concat", y, parts, move |g, needs| {
            let mut start = 0;
            let mut out: Grads<T> = smallvec![];
            for (k, &n) in lens.iter().enumerate() {
                out.push(if needs[k] {
                    Some(g.narrow(axis, start, n)?)
                } else {
                    None
                });
                start += n;
            }
            Ok(out)
        })
    }
    /// Stack equal-shaped vars along a new `axis`.
    ///
    /// # Errors
    /// `ShapeMismatch` for no parts or unequal shapes.
    pub fn stack(parts: &[&Var<T>], axis: usize) -> Result<Var<T>> {
        let expanded: Vec<Var<T>> = parts
            .iter()
            .map(|p| {
                let mut d = p.dims();
                if axis > d.len() {
                    return Err(lossgraph_tensor::Error::option(
                        "stack",
                        "axis",
                        format!("axis {axis} > ndim {}", d.len()),
                    )
                    .into());
                }
                d.insert(axis, 1);
                p.reshape(d)
            })
            .collect::<Result<_>>()?;
        let refs: Vec<&Var<T>> = expanded.iter().collect();
        Var::concat(&refs, axis)
    }
}
