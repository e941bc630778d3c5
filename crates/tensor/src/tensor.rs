//! [`Tensor`]: contiguous row-major storage shared behind an `Arc`, plus a shape.
//! The storage gives its buffer to the [`crate::pool`] when the last tensor
//! holding it drops.

use crate::error::{Error, Result};
use crate::float::{Element, Float};
use crate::shape::Shape;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal, Uniform};
use std::fmt;
use std::sync::Arc;

/// An n-dimensional array in row-major order.
///
/// The storage is shared: `clone`, `reshape` and making a tensor a tape leaf
/// copy no data. Kernels never mutate shared storage; they allocate their
/// output (or mutate in place only when the storage is not shared).
#[derive(Clone)]
pub struct Tensor<T> {
    data: Arc<Storage<T>>,
    shape: Shape,
}

/// A tensor's buffer, which goes back to the [`crate::pool`] when dropped.
/// `recycle` is [`crate::pool::recycle`] for `T` (a function pointer, so
/// `Tensor<T>` itself needs no bound on `T`).
struct Storage<T> {
    buf: Vec<T>,
    recycle: fn(Vec<T>),
}

impl<T: Element> Storage<T> {
    fn new(buf: Vec<T>) -> Self {
        Storage {
            buf,
            recycle: crate::pool::recycle::<T>,
        }
    }
}

impl<T> Drop for Storage<T> {
    fn drop(&mut self) {
        (self.recycle)(std::mem::take(&mut self.buf));
    }
}

/// A copy (for copy-on-write through [`Tensor::make_mut`]) into a pooled buffer.
impl<T: Element> Clone for Storage<T> {
    fn clone(&self) -> Self {
        let mut buf = crate::pool::take_empty(self.buf.len());
        buf.extend_from_slice(&self.buf);
        Storage::new(buf)
    }
}

impl<T> std::ops::Deref for Storage<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.buf
    }
}

/// Integer tensors hold class ids and indices.
pub type IndexTensor = Tensor<i64>;

impl<T: Element> Tensor<T> {
    /// A tensor from row-major `data` and a `shape` whose element count must
    /// equal `data.len()`.
    ///
    /// ```
    /// use lossgraph_tensor::Tensor;
    /// let t = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2])?;
    /// assert_eq!(t.dims(), &[2, 2]);
    /// # Ok::<(), lossgraph_tensor::Error>(())
    /// ```
    ///
    /// # Errors
    /// `ShapeMismatch` when the shape's element count differs from `data.len()`
    /// or overflows `usize`.
    pub fn from_vec(data: Vec<T>, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if shape.checked_numel("from_vec")? != data.len() {
            return Err(Error::shape(
                "from_vec",
                &[shape.dims(), &[data.len()]],
                format!(
                    "shape holds {} elements but {} were given",
                    shape.numel(),
                    data.len()
                ),
            ));
        }
        Ok(Tensor {
            data: Arc::new(Storage::new(data)),
            shape,
        })
    }

    /// Internal constructor for kernels that built `data` for `shape`.
    pub(crate) fn from_parts(data: Vec<T>, shape: Shape) -> Self {
        debug_assert_eq!(shape.numel(), data.len());
        Tensor {
            data: Arc::new(Storage::new(data)),
            shape,
        }
    }

    /// A 1-D tensor holding `data`.
    pub fn from_slice(data: &[T]) -> Self {
        Self::from_parts(data.to_vec(), Shape::from([data.len()]))
    }

    /// A 0-dimensional tensor holding one value.
    pub fn scalar(v: T) -> Self {
        Self::from_parts(vec![v], Shape::scalar())
    }

    /// A tensor of `shape` with every element `v`.
    ///
    /// ```
    /// use lossgraph_tensor::{ErrorKind, Tensor};
    /// assert_eq!(Tensor::full([2], 3i64)?.to_vec(), vec![3, 3]);
    /// // a shape whose element count wraps, and one no allocator can give
    /// let wraps = Tensor::full([1usize << 32, 1 << 32], 0.0f32).unwrap_err();
    /// assert_eq!(wraps.kind(), ErrorKind::ShapeMismatch);
    /// let huge = Tensor::full([1usize << 60], 0.0f32).unwrap_err();
    /// assert_eq!(huge.kind(), ErrorKind::OutOfMemory);
    /// # Ok::<(), lossgraph_tensor::Error>(())
    /// ```
    ///
    /// # Errors
    /// `ShapeMismatch` when the element count overflows `usize`;
    /// `OutOfMemory` when the allocator refuses the buffer.
    pub fn full(shape: impl Into<Shape>, v: T) -> Result<Self> {
        let shape = shape.into();
        Ok(Self::from_parts(
            crate::alloc::try_filled("full", &shape, v)?,
            shape,
        ))
    }

    /// A tensor shaped like `self` with every element `v`. Infallible in the
    /// element count: `self`'s shape already holds a buffer.
    pub fn full_like(&self, v: T) -> Self {
        let mut buf = crate::pool::take_empty(self.numel());
        buf.resize(self.numel(), v);
        Self::from_parts(buf, self.shape.clone())
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }
    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }
    /// Number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.ndim()
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }
    /// The elements in row-major order.
    pub fn as_slice(&self) -> &[T] {
        &self.data
    }
    /// A copy of the elements in row-major order.
    pub fn to_vec(&self) -> Vec<T> {
        self.data.to_vec()
    }
    /// The elements, taking the storage without a copy when it is not shared.
    pub fn into_vec(self) -> Vec<T> {
        match Arc::try_unwrap(self.data) {
            // the buffer leaves the tensor, and so the pool's reach
            Ok(mut storage) => std::mem::take(&mut storage.buf),
            Err(shared) => shared.to_vec(),
        }
    }
    /// Mutable access to the elements, copying the storage first if it is shared.
    pub fn make_mut(&mut self) -> &mut [T] {
        Arc::make_mut(&mut self.data).buf.as_mut_slice()
    }
    /// Whether two tensors share one storage (no copy was made between them).
    pub fn shares_storage(&self, other: &Tensor<T>) -> bool {
        Arc::ptr_eq(&self.data, &other.data)
    }
    /// How many tensors share this storage.
    pub fn storage_refs(&self) -> usize {
        Arc::strong_count(&self.data)
    }

    /// The single element of a one-element tensor.
    ///
    /// # Errors
    /// `ShapeMismatch` when the tensor does not hold exactly one element.
    pub fn item(&self) -> Result<T> {
        if self.numel() == 1 {
            Ok(self.data[0])
        } else {
            Err(Error::shape(
                "item",
                &[self.dims()],
                "item() needs a tensor with exactly one element",
            ))
        }
    }

    /// The same data under a new shape with the same element count (no copy).
    ///
    /// # Errors
    /// `ShapeMismatch` when the element counts differ (or the new one
    /// overflows `usize`).
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if shape.checked_numel("reshape")? != self.numel() {
            return Err(Error::shape(
                "reshape",
                &[self.dims(), shape.dims()],
                "reshape must keep the number of elements",
            ));
        }
        Ok(Tensor {
            data: self.data.clone(),
            shape,
        })
    }

    /// Elementwise map into a tensor of another element type.
    pub fn map<U: Element>(&self, f: impl Fn(T) -> U + Sync + Send) -> Tensor<U> {
        Tensor::from_parts(crate::parallel::map(&self.data, f), self.shape.clone())
    }
}

impl<T: Float> Tensor<T> {
    /// Zeros of `shape`.
    ///
    /// # Errors
    /// As [`Tensor::full`]: `ShapeMismatch` when the element count overflows,
    /// `OutOfMemory` when the buffer cannot be allocated.
    pub fn zeros(shape: impl Into<Shape>) -> Result<Self> {
        Self::full(shape, T::zero())
    }
    /// Ones of `shape`.
    ///
    /// # Errors
    /// As [`Tensor::full`].
    pub fn ones(shape: impl Into<Shape>) -> Result<Self> {
        Self::full(shape, T::one())
    }
    /// Zeros shaped like `self` (infallible in the element count, as
    /// [`Tensor::full_like`]).
    pub fn zeros_like(&self) -> Self {
        self.full_like(T::zero())
    }
    /// Ones shaped like `self`.
    pub fn ones_like(&self) -> Self {
        self.full_like(T::one())
    }
    /// `[0, 1, …, n−1]` as a 1-D tensor.
    ///
    /// # Errors
    /// `OutOfMemory` when `n` elements cannot be allocated.
    pub fn arange(n: usize) -> Result<Self> {
        let shape = Shape::from([n]);
        let mut data = crate::alloc::try_with_capacity("arange", &shape)?;
        data.extend((0..n).map(|i| T::of(i as f64)));
        Ok(Self::from_parts(data, shape))
    }
    /// Uniform samples in `[low, high)` from a seeded generator.
    ///
    /// # Errors
    /// `InvalidOption` unless `low < high` and both are finite.
    pub fn rand_uniform(shape: impl Into<Shape>, low: f64, high: f64, seed: u64) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Self::rand_uniform_with(shape, low, high, &mut rng)
    }
    /// Uniform samples in `[low, high)` from the caller's generator.
    ///
    /// # Errors
    /// `InvalidOption` unless `low < high` and both are finite.
    pub fn rand_uniform_with<R: rand::Rng + ?Sized>(
        shape: impl Into<Shape>,
        low: f64,
        high: f64,
        rng: &mut R,
    ) -> Result<Self> {
        let shape = shape.into();
        let dist = Uniform::new(low, high)
            .map_err(|e| Error::option("rand_uniform", "low/high", e.to_string()))?;
        let mut data = crate::alloc::try_with_capacity("rand_uniform", &shape)?;
        data.extend((0..shape.numel()).map(|_| T::of(dist.sample(rng))));
        Ok(Self::from_parts(data, shape))
    }
    /// Normal samples with `mean` and `std` from a seeded generator.
    ///
    /// # Errors
    /// `InvalidOption` when `std` is negative or not finite.
    pub fn randn(shape: impl Into<Shape>, mean: f64, std: f64, seed: u64) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Self::randn_with(shape, mean, std, &mut rng)
    }
    /// Normal samples with `mean` and `std` from the caller's generator.
    ///
    /// # Errors
    /// `InvalidOption` when `std` is negative or not finite.
    pub fn randn_with<R: rand::Rng + ?Sized>(
        shape: impl Into<Shape>,
        mean: f64,
        std: f64,
        rng: &mut R,
    ) -> Result<Self> {
        let shape = shape.into();
        if !(std >= 0.0 && std.is_finite() && mean.is_finite()) {
            return Err(Error::option(
                "randn",
                "std",
                format!("need a finite mean and std >= 0, got {mean}, {std}"),
            ));
        }
        let dist =
            Normal::new(mean, std).map_err(|e| Error::option("randn", "std", e.to_string()))?;
        let mut data = crate::alloc::try_with_capacity("randn", &shape)?;
        data.extend((0..shape.numel()).map(|_| T::of(dist.sample(rng))));
        Ok(Self::from_parts(data, shape))
    }

    /// A copy in another real type (`f64` → `f32` rounds).
    pub fn cast<U: Float>(&self) -> Tensor<U> {
        self.map(|v| U::of(v.as_f64()))
    }
    /// Whether every element is finite.
    pub fn all_finite(&self) -> bool {
        self.data.iter().all(|v| v.is_finite())
    }
    /// (min, max, count of non-finite) over the finite elements; `None` for
    /// min/max when no element is finite.
    pub fn value_range(&self) -> (Option<f64>, Option<f64>, usize) {
        let mut lo: Option<f64> = None;
        let mut hi: Option<f64> = None;
        let mut bad = 0;
        for &v in self.data.iter() {
            if v.is_finite() {
                let v = v.as_f64();
                lo = Some(lo.map_or(v, |l| l.min(v)));
                hi = Some(hi.map_or(v, |h| h.max(v)));
            } else {
                bad += 1;
            }
        }
        (lo, hi, bad)
    }
}

impl Tensor<i64> {
    /// `[0, 1, …, n−1]` as class ids.
    ///
    /// # Errors
    /// `OutOfMemory` when `n` elements cannot be allocated.
    pub fn arange_i64(n: usize) -> Result<Self> {
        let shape = Shape::from([n]);
        let mut data = crate::alloc::try_with_capacity("arange_i64", &shape)?;
        data.extend(0..n as i64);
        Ok(Self::from_parts(data, shape))
    }
}

impl<T: Element> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOW: usize = 8;
        write!(f, "Tensor<{}>{:?} ", T::DTYPE, self.shape)?;
        if self.numel() <= SHOW {
            write!(f, "{:?}", &self.data[..])
        } else {
            write!(f, "{:?}…", &self.data[..SHOW])
        }
    }
}

impl<T: Element> PartialEq for Tensor<T> {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.as_slice() == other.as_slice()
    }
}
