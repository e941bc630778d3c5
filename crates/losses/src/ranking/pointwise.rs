//! A fused op for losses that are `f(x₀, …, x_{K−1})` element by element over
//! `K` same-shaped inputs (`margin_ranking` has three, `dpo` four) — the
//! `K`-input sibling of [`crate::common::Elementwise`]. Nothing is saved:
//! backward recomputes the partial derivatives from the inputs.

use crate::common::{no_batchmean, reduce, same_shape, Reduction, Upstream};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::{Float, Tensor};

/// `loss(x)` gives one item's loss, `grad(x)` its partials `∂ℓ/∂xₖ`.
pub(crate) struct Pointwise<T, L, G, const K: usize> {
    name: &'static str,
    reduction: Reduction,
    loss: L,
    grad: G,
    _t: std::marker::PhantomData<T>,
}

impl<T, L, G, const K: usize> Pointwise<T, L, G, K>
where
    T: Float,
    L: Fn([T; K]) -> T + 'static,
    G: Fn([T; K]) -> [T; K] + 'static,
{
    /// A pointwise loss named `name`.
    pub(crate) fn new(name: &'static str, reduction: Reduction, loss: L, grad: G) -> Self {
        Pointwise {
            name,
            reduction,
            loss,
            grad,
            _t: std::marker::PhantomData,
        }
    }

    /// Check the reduction and that every input has the first one's shape,
    /// then record the op on the first input's tape.
    ///
    /// # Errors
    /// `ShapeMismatch` when shapes differ; `InvalidOption` for batchmean.
    pub(crate) fn apply(self, inputs: [&Var<T>; K]) -> Result<Var<T>> {
        no_batchmean(self.name, self.reduction)?;
        let first = inputs[0].shape();
        for x in &inputs[1..] {
            same_shape(self.name, &first, &x.shape(), "all inputs")?;
        }
        let tape = inputs[0].tape().clone();
        tape.apply(self, &inputs)
    }
}

/// The `K` values at position `i`.
#[inline]
fn at<T: Float, const K: usize>(x: &[&[T]; K], i: usize) -> [T; K] {
    std::array::from_fn(|k| x[k][i])
}

impl<T, L, G, const K: usize> CustomOp<T> for Pointwise<T, L, G, K>
where
    T: Float,
    L: Fn([T; K]) -> T + 'static,
    G: Fn([T; K]) -> [T; K] + 'static,
{
    type Saved = ();
    fn name(&self) -> &str {
        self.name
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, ())> {
        let xs: [&[T]; K] = std::array::from_fn(|k| x[k].as_slice());
        let n = xs[0].len();
        let loss: Vec<T> = (0..n).map(|i| (self.loss)(at(&xs, i))).collect();
        Ok((reduce(loss, x[0].shape().clone(), self.reduction, n)?, ()))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, ()>) -> Result<Vec<Option<Tensor<T>>>> {
        let xs: [&[T]; K] = std::array::from_fn(|k| cx.inputs[k].as_slice());
        let n = xs[0].len();
        let up = Upstream::new(cx.grad_output, self.reduction, n);
        let mut d: Vec<Option<Vec<T>>> = cx
            .needs_grad
            .iter()
            .map(|&need| need.then(|| Vec::with_capacity(n)))
            .collect();
        for i in 0..n {
            let g = (self.grad)(at(&xs, i));
            let u = up.at(i);
            for (dk, gk) in d.iter_mut().zip(g) {
                if let Some(dk) = dk {
                    dk.push(u * gk);
                }
            }
        }
        let shape = cx.inputs[0].shape();
        d.into_iter()
            .map(|dk| dk.map(|v| Tensor::from_vec(v, shape.clone())).transpose())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Into::into)
    }
}
