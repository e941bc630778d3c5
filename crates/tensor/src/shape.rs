//! Shapes: a small vector of dimensions, row-major strides, broadcasting.

use crate::error::{Error, Result};
use smallvec::SmallVec;
use std::fmt;

/// The dimensions of a tensor, outermost first. Up to four dims live inline.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(SmallVec<[usize; 4]>);

impl Shape {
    /// The shape of a scalar: no dimensions, one element.
    pub fn scalar() -> Self {
        Shape(SmallVec::new())
    }
    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.0.len()
    }
    /// Number of elements (1 for a scalar).
    ///
    /// Every shape a [`Tensor`](crate::Tensor) holds has passed
    /// [`Shape::checked_numel`], so for those this product cannot wrap; for a
    /// shape built from outside data call `checked_numel` first.
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }
    /// The number of elements, or `ShapeMismatch` for `op` when the shape's
    /// extent overflows `usize`.
    ///
    /// The extent is the product of the dims with each 0 counted as 1: a
    /// shape such as `[0, 2⁶², 2⁶²]` holds no element, but its strides would
    /// still wrap, so it is rejected too.
    ///
    /// ```
    /// use lossgraph_tensor::{ErrorKind, Shape};
    /// assert_eq!(Shape::from([2, 3]).checked_numel("demo")?, 6);
    /// assert_eq!(Shape::from([0, 5]).checked_numel("demo")?, 0);
    /// let huge = Shape::from([1usize << 32, 1 << 32]);
    /// assert_eq!(huge.checked_numel("demo").unwrap_err().kind(), ErrorKind::ShapeMismatch);
    /// # Ok::<(), lossgraph_tensor::Error>(())
    /// ```
    ///
    /// # Errors
    /// `ShapeMismatch` on overflow.
    pub fn checked_numel(&self, op: &str) -> Result<usize> {
        let mut extent: usize = 1;
        for &d in &self.0 {
            extent = extent.checked_mul(d.max(1)).ok_or_else(|| {
                Error::shape(
                    op,
                    &[self.dims()],
                    "the element count overflows the address space",
                )
            })?;
        }
        Ok(if self.0.contains(&0) { 0 } else { extent })
    }
    /// Row-major strides, in elements.
    pub fn strides(&self) -> SmallVec<[usize; 4]> {
        let mut s: SmallVec<[usize; 4]> = SmallVec::from_elem(1, self.0.len());
        for i in (0..self.0.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * self.0[i + 1];
        }
        s
    }
    /// The size of the last axis (1 for a scalar).
    pub fn last_dim(&self) -> usize {
        self.0.last().copied().unwrap_or(1)
    }
    /// Check `axis < ndim` for `op`.
    pub fn check_axis(&self, op: &str, axis: usize) -> Result<()> {
        if axis < self.ndim() {
            Ok(())
        } else {
            Err(Error::option(
                op,
                "axis",
                format!("axis {axis} is out of range for shape {:?}", self.dims()),
            ))
        }
    }
    /// Split around `axis` into (outer, axis length, inner) element counts.
    pub fn split_at_axis(&self, axis: usize) -> (usize, usize, usize) {
        let outer = self.0[..axis].iter().product();
        let inner = self.0[axis + 1..].iter().product();
        (outer, self.0[axis], inner)
    }
    /// The shape with `axis` removed (or set to 1 when `keepdim`).
    pub fn reduced(&self, axis: usize, keepdim: bool) -> Shape {
        let mut d = self.0.clone();
        if keepdim {
            d[axis] = 1;
        } else {
            d.remove(axis);
        }
        Shape(d)
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &self.0[..])
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Shape(SmallVec::from_slice(d))
    }
}
impl From<Vec<usize>> for Shape {
    fn from(d: Vec<usize>) -> Self {
        Shape(SmallVec::from_vec(d))
    }
}
impl From<&Vec<usize>> for Shape {
    fn from(d: &Vec<usize>) -> Self {
        Shape(SmallVec::from_slice(d))
    }
}
impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Self {
        Shape(SmallVec::from_slice(&d))
    }
}
impl From<&Shape> for Shape {
    fn from(s: &Shape) -> Self {
        s.clone()
    }
}

/// The NumPy broadcast of two shapes: align from the right; each pair of dims
/// must be equal or one of them 1.
pub fn broadcast_shapes(op: &str, a: &Shape, b: &Shape) -> Result<Shape> {
    let n = a.ndim().max(b.ndim());
    let mut out: SmallVec<[usize; 4]> = SmallVec::from_elem(0, n);
    for i in 0..n {
        let da = if i < n - a.ndim() {
            1
        } else {
            a.0[i - (n - a.ndim())]
        };
        let db = if i < n - b.ndim() {
            1
        } else {
            b.0[i - (n - b.ndim())]
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape(
                op,
                &[a.dims(), b.dims()],
                format!("cannot broadcast: dim {da} vs {db}"),
            ));
        };
    }
    let out = Shape(out);
    out.checked_numel(op)?;
    Ok(out)
}

/// Strides for reading a tensor of shape `from` as if broadcast to `to`
/// (0 where a dim is broadcast). `from` must broadcast to `to`.
pub(crate) fn broadcast_strides(from: &Shape, to: &Shape) -> SmallVec<[usize; 4]> {
    let fs = from.strides();
    let offset = to.ndim() - from.ndim();
    let mut s: SmallVec<[usize; 4]> = SmallVec::from_elem(0, to.ndim());
    for i in 0..from.ndim() {
        if from.0[i] != 1 || to.0[i + offset] == 1 {
            s[i + offset] = fs[i];
        }
    }
    s
}

/// Whether `from` can be broadcast to exactly `to`.
pub fn broadcasts_to(from: &Shape, to: &Shape) -> bool {
    if from.ndim() > to.ndim() {
        return false;
    }
    let off = to.ndim() - from.ndim();
    from.0
        .iter()
        .enumerate()
        .all(|(i, &d)| d == 1 || d == to.0[i + off])
}
