//! What every loss shares: the reduction, option checks, and a fused op for
//! losses that are a function of two same-shaped inputs, element by element.

use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Tape, Var};
use lossgraph_tensor::{Error, Float, Shape, Tensor};

/// How the per-item losses are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Keep the unreduced loss, shaped as the op says.
    None,
    /// Sum of the per-item losses (a 0-d output).
    Sum,
    /// Mean over every item (a 0-d output; 0 when there is no item).
    #[default]
    Mean,
    /// Sum divided by the size of axis 0 (`kl_div` only).
    BatchMean,
}

impl Reduction {
    /// Parse `"none" | "sum" | "mean" | "batchmean"`.
    ///
    /// # Errors
    /// `InvalidOption` for any other string.
    pub fn parse(op: &str, s: &str) -> Result<Self> {
        Ok(match s {
            "none" => Reduction::None,
            "sum" => Reduction::Sum,
            "mean" => Reduction::Mean,
            "batchmean" => Reduction::BatchMean,
            _ => {
                return Err(
                    Error::option(op, "reduction", format!("unknown reduction {s:?}")).into(),
                )
            }
        })
    }
    /// The name as `LOSSES.md` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Sum => "sum",
            Reduction::Mean => "mean",
            Reduction::BatchMean => "batchmean",
        }
    }
}

/// Reject `batchmean` for ops that do not define it.
pub fn no_batchmean(op: &str, r: Reduction) -> Result<()> {
    if r == Reduction::BatchMean {
        return Err(Error::option(op, "reduction", "batchmean is only defined for kl_div").into());
    }
    Ok(())
}

/// Reduce per-item losses of `shape`; `mean` over `count` items (0 when
/// `count` is 0: the project's empty-denominator rule).
pub fn reduce<T: Float>(
    loss: Vec<T>,
    shape: Shape,
    r: Reduction,
    count: usize,
) -> Result<Tensor<T>> {
    Ok(match r {
        Reduction::None => Tensor::from_vec(loss, shape)?,
        Reduction::Sum => Tensor::scalar(loss.into_iter().sum()),
        Reduction::Mean | Reduction::BatchMean => {
            let s: T = loss.into_iter().sum();
            Tensor::scalar(if count == 0 {
                T::zero()
            } else {
                s / T::of(count as f64)
            })
        }
    })
}

/// The gradient reaching each item from the reduced output: `g[i]` for
/// `none`, `g` for `sum`, `g/count` for `mean` (0 when `count` is 0).
#[derive(Clone, Copy)]
pub enum Upstream<'a, T> {
    /// One gradient per item.
    Each(&'a [T]),
    /// The same gradient for every item.
    Same(T),
}

impl<'a, T: Float> Upstream<'a, T> {
    /// Build from the output gradient `g` of a reduction over `count` items.
    pub fn new(g: &'a Tensor<T>, r: Reduction, count: usize) -> Self {
        match r {
            Reduction::None => Upstream::Each(g.as_slice()),
            Reduction::Sum => Upstream::Same(g.as_slice()[0]),
            Reduction::Mean | Reduction::BatchMean => Upstream::Same(if count == 0 {
                T::zero()
            } else {
                g.as_slice()[0] / T::of(count as f64)
            }),
        }
    }
    /// The gradient reaching item `i`.
    #[inline]
    pub fn at(&self, i: usize) -> T {
        match self {
            Upstream::Each(g) => g[i],
            Upstream::Same(g) => *g,
        }
    }
}

/// `ShapeMismatch` unless `a` and `b` have the same shape.
pub fn same_shape(op: &str, a: &Shape, b: &Shape, what: &str) -> Result<()> {
    if a != b {
        return Err(Error::shape(
            op,
            &[a.dims(), b.dims()],
            format!("{what} must have the same shape"),
        )
        .into());
    }
    Ok(())
}

/// `InvalidOption` unless `ok` holds; `range` describes the valid values.
pub fn check_option(op: &str, name: &str, value: f64, ok: bool, range: &str) -> Result<()> {
    if !ok || value.is_nan() {
        return Err(Error::option(op, name, format!("{value} is outside {range}")).into());
    }
    Ok(())
}

/// `InvalidValue` unless every element lies in `[0, 1]` (NaN passes: non-finite
/// inputs propagate rather than error).
pub fn check_unit_interval<T: Float>(op: &str, what: &str, t: &Tensor<T>) -> Result<()> {
    if let Some((i, v)) = t
        .as_slice()
        .iter()
        .enumerate()
        .find(|(_, &v)| v < T::zero() || v > T::one())
    {
        return Err(Error::value(op, format!("{what}[{i}] = {v} is outside [0, 1]")).into());
    }
    Ok(())
}

/// A loss that is `f(a, b)` element by element over two same-shaped inputs,
/// reduced. `loss(a, b)` gives the item's loss, `grad(a, b)` its partial
/// derivatives `(∂/∂a, ∂/∂b)`. Nothing is saved: backward recomputes the
/// derivatives from the inputs, which the tape holds anyway.
pub struct Elementwise<T, L, G> {
    /// Op name for errors.
    pub name: &'static str,
    /// How items are combined.
    pub reduction: Reduction,
    /// Per-item loss.
    pub loss: L,
    /// Per-item partial derivatives.
    pub grad: G,
    /// Marker for the element type.
    pub _t: std::marker::PhantomData<T>,
}

impl<T, L, G> Elementwise<T, L, G>
where
    T: Float,
    L: Fn(T, T) -> T + Send + Sync + 'static,
    G: Fn(T, T) -> (T, T) + Send + Sync + 'static,
{
    /// An elementwise loss named `name`.
    pub fn new(name: &'static str, reduction: Reduction, loss: L, grad: G) -> Self {
        Elementwise {
            name,
            reduction,
            loss,
            grad,
            _t: std::marker::PhantomData,
        }
    }

    /// Check shapes and the reduction, then record the op on `a`'s tape.
    ///
    /// # Errors
    /// `ShapeMismatch` when the shapes differ; `InvalidOption` for batchmean.
    pub fn apply(self, a: &Var<T>, b: &Var<T>) -> Result<Var<T>> {
        no_batchmean(self.name, self.reduction)?;
        same_shape(self.name, &a.shape(), &b.shape(), "both inputs")?;
        let tape: Tape<T> = a.tape().clone();
        tape.apply(self, &[a, b])
    }
}

impl<T, L, G> CustomOp<T> for Elementwise<T, L, G>
where
    T: Float,
    L: Fn(T, T) -> T + Send + Sync + 'static,
    G: Fn(T, T) -> (T, T) + Send + Sync + 'static,
{
    type Saved = ();
    fn name(&self) -> &str {
        self.name
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, ())> {
        let (a, b) = (x[0].as_slice(), x[1].as_slice());
        let loss: Vec<T> = a.iter().zip(b).map(|(&a, &b)| (self.loss)(a, b)).collect();
        let n = loss.len();
        Ok((reduce(loss, x[0].shape().clone(), self.reduction, n)?, ()))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, ()>) -> Result<Vec<Option<Tensor<T>>>> {
        let (a, b) = (cx.inputs[0].as_slice(), cx.inputs[1].as_slice());
        let up = Upstream::new(cx.grad_output, self.reduction, a.len());
        let mut da = if cx.needs_grad[0] {
            Some(Vec::with_capacity(a.len()))
        } else {
            None
        };
        let mut db = if cx.needs_grad[1] {
            Some(Vec::with_capacity(a.len()))
        } else {
            None
        };
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            let (ga, gb) = (self.grad)(x, y);
            let u = up.at(i);
            if let Some(d) = da.as_mut() {
                d.push(u * ga);
            }
            if let Some(d) = db.as_mut() {
                d.push(u * gb);
            }
        }
        let shape = cx.inputs[0].shape();
        Ok(vec![
            da.map(|d| Tensor::from_vec(d, shape.clone())).transpose()?,
            db.map(|d| Tensor::from_vec(d, shape.clone())).transpose()?,
        ])
    }
}

/// Reduce a var of per-item losses with primitive ops (for naive twins).
pub fn reduce_naive<T: Float>(loss: Var<T>, r: Reduction) -> Result<Var<T>> {
    match r {
        Reduction::None => Ok(loss),
        Reduction::Sum => loss.sum_all(),
        Reduction::Mean | Reduction::BatchMean => {
            if loss.shape().numel() == 0 {
                loss.sum_all()
            } else {
                loss.mean_all()
            }
        }
    }
}
