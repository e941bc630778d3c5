//! Indexing by constant `i64` tensors. Rules scatter `g` back (repeated
//! indices accumulate).

use crate::error::Result;
use crate::tape::Var;
use lossgraph_tensor::{Float, Tensor};
use smallvec::smallvec;

impl<T: Float> Var<T> {
    /// PyTorch's `gather` along `axis`; rule: scatter-add `g` back.
    pub fn gather(&self, axis: usize, idx: &Tensor<i64>) -> Result<Var<T>> {
        let x = self.value();
        let y = x.gather(axis, idx)?;
        let (shape, idx) = (x.shape().clone(), idx.clone());
        self.record("gather", y, &[self], move |g, _| {
            Ok(smallvec![Some(Tensor::scatter_add(&shape, axis, &idx, g)?)])
        })
    }
    /// Select slices along `axis` by a 1-D index; rule: index-add `g` back.
    pub fn index_select(&self, axis: usize, idx: &Tensor<i64>) -> Result<Var<T>> {
        let x = self.value();
        let y = x.index_select(axis, idx)?;
        let (shape, idx) = (x.shape().clone(), idx.clone());
        self.record("index_select", y, &[self], move |g, _| {
            Ok(smallvec![Some(Tensor::index_add(&shape, axis, &idx, g)?)])
        })
    }
}
