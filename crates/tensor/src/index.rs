//! Indexing with `i64` tensors: gather, index_select, one_hot, and the
//! scatter-adds their gradients need.

use crate::error::{Error, Result};
use crate::float::{Element, Float};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Check that every index lies in `[0, n)`; the error is `InvalidTarget`
/// because indices here are class ids or row ids chosen by the caller.
pub fn check_indices(op: &str, idx: &Tensor<i64>, n: usize) -> Result<()> {
    if let Some((pos, &bad)) = idx
        .as_slice()
        .iter()
        .enumerate()
        .find(|(_, &i)| i < 0 || i as u64 >= n as u64)
    {
        return Err(Error::target(
            op,
            format!("index {bad} at position {pos} is outside [0, {n})"),
        ));
    }
    Ok(())
}

impl<T: Element> Tensor<T> {
    /// PyTorch's `gather`: `out[..., j, ...] = x[..., idx[..., j, ...], ...]`
    /// along `axis`. `idx` has the same rank as `x`, its dims no larger than
    /// `x`'s off the axis; the output has `idx`'s shape.
    ///
    /// # Errors
    /// `InvalidOption` for a bad axis; `ShapeMismatch` for ranks or dims that
    /// do not fit; `InvalidTarget` for an index out of range.
    pub fn gather(&self, axis: usize, idx: &Tensor<i64>) -> Result<Tensor<T>> {
        self.shape().check_axis("gather", axis)?;
        gather_shape_check(self.shape(), axis, idx.shape())?;
        check_indices("gather", idx, self.dims()[axis])?;
        let xs = self.shape().strides();
        let id = idx.dims();
        let mut out = crate::pool::take_empty(idx.numel());
        for_each_index(id, |pos, flat| {
            let mut off = 0;
            for (d, &p) in pos.iter().enumerate() {
                let c = if d == axis {
                    idx.as_slice()[flat] as usize
                } else {
                    p
                };
                off += c * xs[d];
            }
            out.push(self.as_slice()[off]);
        });
        Ok(Tensor::from_parts(out, idx.shape().clone()))
    }

    /// Select whole slices along `axis` by a 1-D index list.
    ///
    /// # Errors
    /// `InvalidOption` for a bad axis; `ShapeMismatch` when `idx` is not 1-D;
    /// `InvalidTarget` for an index out of range.
    pub fn index_select(&self, axis: usize, idx: &Tensor<i64>) -> Result<Tensor<T>> {
        self.shape().check_axis("index_select", axis)?;
        if idx.ndim() != 1 {
            return Err(Error::shape(
                "index_select",
                &[idx.dims()],
                "indices must be 1-D",
            ));
        }
        let (outer, n, inner) = self.shape().split_at_axis(axis);
        check_indices("index_select", idx, n)?;
        let x = self.as_slice();
        let mut dims = self.dims().to_vec();
        dims[axis] = idx.numel();
        let shape = Shape::from(dims);
        // repeated indices can select more elements than `self` holds
        let mut out = crate::alloc::try_with_capacity("index_select", &shape)?;
        for o in 0..outer {
            for &i in idx.as_slice() {
                let s = (o * n + i as usize) * inner;
                out.extend_from_slice(&x[s..s + inner]);
            }
        }
        Ok(Tensor::from_parts(out, shape))
    }
}

fn gather_shape_check(x: &Shape, axis: usize, idx: &Shape) -> Result<()> {
    let fits = idx.ndim() == x.ndim()
        && idx
            .dims()
            .iter()
            .zip(x.dims())
            .enumerate()
            .all(|(d, (&i, &n))| d == axis || i <= n);
    if fits {
        Ok(())
    } else {
        Err(Error::shape(
            "gather",
            &[x.dims(), idx.dims()],
            "index must have the input's rank and no larger dims off the axis",
        ))
    }
}

/// Visit every multi-index of `dims` in row-major order with its flat position.
fn for_each_index(dims: &[usize], mut f: impl FnMut(&[usize], usize)) {
    let n: usize = dims.iter().product();
    let mut pos = vec![0usize; dims.len()];
    for flat in 0..n {
        f(&pos, flat);
        for d in (0..dims.len()).rev() {
            pos[d] += 1;
            if pos[d] < dims[d] {
                break;
            }
            pos[d] = 0;
        }
    }
}

impl<T: Float> Tensor<T> {
    /// The adjoint of [`Tensor::gather`]: zeros of `shape` with `src` added at
    /// the gathered positions (repeated indices accumulate).
    ///
    /// # Errors
    /// As [`Tensor::gather`], and `ShapeMismatch` when `src` and `idx` differ.
    pub fn scatter_add(
        shape: &Shape,
        axis: usize,
        idx: &Tensor<i64>,
        src: &Tensor<T>,
    ) -> Result<Tensor<T>> {
        shape.check_axis("scatter_add", axis)?;
        // `shape` is the caller's: check its count before any stride product
        shape.checked_numel("scatter_add")?;
        gather_shape_check(shape, axis, idx.shape())?;
        if idx.shape() != src.shape() {
            return Err(Error::shape(
                "scatter_add",
                &[idx.dims(), src.dims()],
                "index and source shapes differ",
            ));
        }
        check_indices("scatter_add", idx, shape.dims()[axis])?;
        let xs = shape.strides();
        let mut out = crate::alloc::try_filled("scatter_add", shape, T::zero())?;
        for_each_index(idx.dims(), |pos, flat| {
            let mut off = 0;
            for (d, &p) in pos.iter().enumerate() {
                let c = if d == axis {
                    idx.as_slice()[flat] as usize
                } else {
                    p
                };
                off += c * xs[d];
            }
            out[off] += src.as_slice()[flat];
        });
        Ok(Tensor::from_parts(out, shape.clone()))
    }

    /// The adjoint of [`Tensor::index_select`]: zeros of `shape` with the
    /// slices of `src` added at the selected positions.
    ///
    /// # Errors
    /// As [`Tensor::index_select`], and `ShapeMismatch` when `src` does not
    /// have the selected shape.
    pub fn index_add(
        shape: &Shape,
        axis: usize,
        idx: &Tensor<i64>,
        src: &Tensor<T>,
    ) -> Result<Tensor<T>> {
        shape.check_axis("index_add", axis)?;
        // `shape` is the caller's: check its count before splitting it
        shape.checked_numel("index_add")?;
        let (outer, n, inner) = shape.split_at_axis(axis);
        check_indices("index_add", idx, n)?;
        let mut want = shape.dims().to_vec();
        want[axis] = idx.numel();
        if src.dims() != want.as_slice() {
            return Err(Error::shape(
                "index_add",
                &[src.dims(), &want],
                "source has the wrong shape",
            ));
        }
        let mut out = crate::alloc::try_filled("index_add", shape, T::zero())?;
        let s = src.as_slice();
        let k = idx.numel();
        for o in 0..outer {
            for (j, &i) in idx.as_slice().iter().enumerate() {
                let dst = (o * n + i as usize) * inner;
                let from = (o * k + j) * inner;
                for t in 0..inner {
                    out[dst + t] += s[from + t];
                }
            }
        }
        Ok(Tensor::from_parts(out, shape.clone()))
    }

    /// One-hot encode class ids into a new last axis of size `classes`.
    ///
    /// # Errors
    /// `InvalidTarget` for an id outside `[0, classes)`.
    pub fn one_hot(idx: &Tensor<i64>, classes: usize) -> Result<Tensor<T>> {
        check_indices("one_hot", idx, classes)?;
        let mut dims = idx.dims().to_vec();
        dims.push(classes);
        let shape = Shape::from(dims);
        // `classes` comes from the caller: the product may wrap or not fit
        let mut out = crate::alloc::try_filled("one_hot", &shape, T::zero())?;
        for (r, &c) in idx.as_slice().iter().enumerate() {
            out[r * classes + c as usize] = T::one();
        }
        Ok(Tensor::from_parts(out, shape))
    }
}
