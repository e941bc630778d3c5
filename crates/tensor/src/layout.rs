//! Layout ops: permute/transpose, broadcast_to, narrow, concat, stack.
//! Each produces a new contiguous tensor (reshape alone shares storage).

use crate::error::{Error, Result};
use crate::float::Element;
use crate::shape::{broadcast_strides, broadcasts_to, Shape};
use crate::tensor::Tensor;

/// Copy `src` (read through `strides`) into a fresh buffer of `shape`.
fn gather_strided<T: Element>(
    op: &str,
    src: &[T],
    shape: &Shape,
    strides: &[usize],
) -> Result<Vec<T>> {
    let dims = shape.dims();
    let mut out = crate::alloc::try_with_capacity(op, shape)?;
    let n = shape.numel(); // checked just above
    if n == 0 {
        return Ok(out);
    }
    if dims.is_empty() {
        out.push(src[0]);
        return Ok(out);
    }
    let nd = dims.len();
    let mut idx = vec![0usize; nd];
    let mut off = 0usize;
    let (inner, is) = (dims[nd - 1], strides[nd - 1]);
    loop {
        for k in 0..inner {
            out.push(src[off + k * is]);
        }
        let mut d = nd - 1;
        loop {
            if d == 0 {
                return Ok(out);
            }
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
}

impl<T: Element> Tensor<T> {
    /// Reorder the axes: output axis `i` is input axis `perm[i]`.
    ///
    /// # Errors
    /// `InvalidOption` when `perm` is not a permutation of `0..ndim`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor<T>> {
        let nd = self.ndim();
        let mut seen = vec![false; nd];
        if perm.len() != nd
            || perm
                .iter()
                .any(|&p| p >= nd || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::option(
                "permute",
                "perm",
                format!("{perm:?} is not a permutation of the {nd} axes"),
            ));
        }
        let st = self.shape().strides();
        let dims: Vec<usize> = perm.iter().map(|&p| self.dims()[p]).collect();
        let strides: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
        let shape = Shape::from(dims);
        Ok(Tensor::from_parts(
            gather_strided("permute", self.as_slice(), &shape, &strides)?,
            shape,
        ))
    }
    /// Swap two axes.
    ///
    /// # Errors
    /// `InvalidOption` when an axis is out of range.
    pub fn transpose(&self, a0: usize, a1: usize) -> Result<Tensor<T>> {
        self.shape().check_axis("transpose", a0)?;
        self.shape().check_axis("transpose", a1)?;
        let mut perm: Vec<usize> = (0..self.ndim()).collect();
        perm.swap(a0, a1);
        self.permute(&perm)
    }
    /// A contiguous copy with the last two axes swapped, by 32×32 tiles so
    /// that both the reads and the writes stay in cache.
    fn transpose_last2(&self) -> Tensor<T> {
        let nd = self.ndim();
        debug_assert!(nd >= 2);
        let (r, c) = (self.dims()[nd - 2], self.dims()[nd - 1]);
        let batch = self.numel() / (r * c).max(1);
        let src = self.as_slice();
        let mut out = crate::pool::take(self.numel());
        const TILE: usize = 32;
        for b in 0..batch {
            let (s, d) = (
                &src[b * r * c..(b + 1) * r * c],
                &mut out[b * r * c..(b + 1) * r * c],
            );
            for i0 in (0..r).step_by(TILE) {
                for j0 in (0..c).step_by(TILE) {
                    for i in i0..(i0 + TILE).min(r) {
                        for j in j0..(j0 + TILE).min(c) {
                            d[j * r + i] = s[i * c + j];
                        }
                    }
                }
            }
        }
        let mut dims = self.dims().to_vec();
        dims.swap(nd - 2, nd - 1);
        Tensor::from_parts(out, Shape::from(dims))
    }

    /// Swap the last two axes of a 2-D or higher tensor.
    ///
    /// # Errors
    /// `ShapeMismatch` for fewer than two axes.
    pub fn t(&self) -> Result<Tensor<T>> {
        let nd = self.ndim();
        if nd < 2 {
            return Err(Error::shape(
                "t",
                &[self.dims()],
                "t() needs at least 2 axes",
            ));
        }
        Ok(self.transpose_last2())
    }
    /// Materialise the NumPy broadcast of this tensor to `shape`.
    ///
    /// # Errors
    /// `ShapeMismatch` when this shape does not broadcast to `shape`.
    pub fn broadcast_to(&self, shape: &Shape) -> Result<Tensor<T>> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        if !broadcasts_to(self.shape(), shape) {
            return Err(Error::shape(
                "broadcast_to",
                &[self.dims(), shape.dims()],
                "shape does not broadcast",
            ));
        }
        // the target shape is the caller's: its count is checked, and its
        // buffer allocated fallibly, in `gather_strided`
        let strides = broadcast_strides(self.shape(), shape);
        Ok(Tensor::from_parts(
            gather_strided("broadcast_to", self.as_slice(), shape, &strides)?,
            shape.clone(),
        ))
    }
    /// The slice `start..start+len` along `axis`.
    ///
    /// # Errors
    /// `InvalidOption` when the axis or range is out of bounds.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Tensor<T>> {
        self.shape().check_axis("narrow", axis)?;
        let (outer, n, inner) = self.shape().split_at_axis(axis);
        if start.checked_add(len).is_none_or(|e| e > n) {
            return Err(Error::option(
                "narrow",
                "start/len",
                format!(
                    "range {start}..{} is outside axis {axis} of length {n}",
                    start.saturating_add(len)
                ),
            ));
        }
        let x = self.as_slice();
        let mut out = crate::pool::take_empty(outer * len * inner);
        for o in 0..outer {
            out.extend_from_slice(&x[(o * n + start) * inner..(o * n + start + len) * inner]);
        }
        let mut dims = self.dims().to_vec();
        dims[axis] = len;
        Ok(Tensor::from_parts(out, Shape::from(dims)))
    }
    /// Join tensors along an existing `axis`; the other dims must agree.
    ///
    /// # Errors
    /// `ShapeMismatch` for no tensors or disagreeing dims; `InvalidOption` for
    /// a bad axis.
    pub fn concat(parts: &[&Tensor<T>], axis: usize) -> Result<Tensor<T>> {
        let first = parts
            .first()
            .ok_or_else(|| Error::shape("concat", &[], "concat needs at least one tensor"))?;
        first.shape().check_axis("concat", axis)?;
        let mut total = 0;
        for p in parts {
            let same = p.ndim() == first.ndim()
                && p.dims()
                    .iter()
                    .zip(first.dims())
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !same {
                return Err(Error::shape(
                    "concat",
                    &[first.dims(), p.dims()],
                    format!("dims must agree except along axis {axis}"),
                ));
            }
            // the same tensor may be passed many times: the sum can wrap
            total = usize::checked_add(total, p.dims()[axis]).ok_or_else(|| {
                Error::shape(
                    "concat",
                    &[first.dims()],
                    format!("the joined length along axis {axis} overflows usize"),
                )
            })?;
        }
        let (outer, _, inner) = first.shape().split_at_axis(axis);
        let mut dims = first.dims().to_vec();
        dims[axis] = total;
        let shape = Shape::from(dims);
        let mut out = crate::alloc::try_with_capacity("concat", &shape)?;
        for o in 0..outer {
            for p in parts {
                let n = p.dims()[axis] * inner;
                out.extend_from_slice(&p.as_slice()[o * n..(o + 1) * n]);
            }
        }
        Ok(Tensor::from_parts(out, shape))
    }
    /// Stack equal-shaped tensors along a new `axis` (0..=ndim).
    ///
    /// # Errors
    /// `ShapeMismatch` for no tensors or unequal shapes; `InvalidOption` for a
    /// bad axis.
    pub fn stack(parts: &[&Tensor<T>], axis: usize) -> Result<Tensor<T>> {
        let first = parts
            .first()
            .ok_or_else(|| Error::shape("stack", &[], "stack needs at least one tensor"))?;
        if axis > first.ndim() {
            return Err(Error::option(
                "stack",
                "axis",
                format!("axis {axis} > ndim {}", first.ndim()),
            ));
        }
        let mut dims = first.dims().to_vec();
        dims.insert(axis, 1);
        let expanded: Vec<Tensor<T>> = parts
            .iter()
            .map(|p| {
                if p.shape() != first.shape() {
                    Err(Error::shape(
                        "stack",
                        &[first.dims(), p.dims()],
                        "shapes must be equal",
                    ))
                } else {
                    p.reshape(dims.clone())
                }
            })
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor<T>> = expanded.iter().collect();
        Tensor::concat(&refs, axis)
    }
}
