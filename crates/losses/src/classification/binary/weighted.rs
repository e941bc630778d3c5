//! What `bce` and `bce_with_logits` share: tensor options (`weight`,
//! `pos_weight`) broadcast to the input's shape, and a fused op for a loss
//! that is `w · f(a, b; pw)` element by element.

use crate::common::{reduce, Reduction, Upstream};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result};
use lossgraph_tensor::{broadcasts_to, Error, Float, Shape, Tensor};

/// `t` materialised at `shape` (NumPy broadcasting), or `None` when absent.
///
/// # Errors
/// `ShapeMismatch` when `t` does not broadcast to `shape` (the option may
/// not enlarge the input).
pub(super) fn broadcast_option<T: Float>(
    op: &str,
    name: &str,
    t: Option<&Tensor<T>>,
    shape: &Shape,
) -> Result<Option<Tensor<T>>> {
    let Some(t) = t else { return Ok(None) };
    if !broadcasts_to(t.shape(), shape) {
        return Err(Error::shape(
            op,
            &[t.dims(), shape.dims()],
            format!("`{name}` must broadcast to the input's shape"),
        )
        .into());
    }
    Ok(Some(t.broadcast_to(shape)?))
}

/// Element `i` of an optional per-element factor (1 when absent).
#[inline]
fn factor<T: Float>(t: Option<&[T]>, i: usize) -> T {
    t.map_or(T::one(), |t| t[i])
}

/// `ℓᵢ = wᵢ · f(aᵢ, bᵢ; pwᵢ)`, reduced. `loss(a, b, pw)` gives `f`,
/// `grad(a, b, pw)` its partials `(∂f/∂a, ∂f/∂b)`. `weight` and `pos_weight`
/// are already broadcast to the input shape (absent means 1). Nothing is
/// saved: backward recomputes from the inputs.
pub(super) struct WeightedPointwise<T: Float, L, G> {
    pub name: &'static str,
    pub reduction: Reduction,
    pub weight: Option<Tensor<T>>,
    pub pos_weight: Option<Tensor<T>>,
    pub loss: L,
    pub grad: G,
}

impl<T, L, G> CustomOp<T> for WeightedPointwise<T, L, G>
where
    T: Float,
    L: Fn(T, T, T) -> T + 'static,
    G: Fn(T, T, T) -> (T, T) + 'static,
{
    type Saved = ();
    fn name(&self) -> &str {
        self.name
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, ())> {
        let (a, b) = (x[0].as_slice(), x[1].as_slice());
        let w = self.weight.as_ref().map(Tensor::as_slice);
        let pw = self.pos_weight.as_ref().map(Tensor::as_slice);
        let loss: Vec<T> = a
            .iter()
            .zip(b)
            .enumerate()
            .map(|(i, (&a, &b))| factor(w, i) * (self.loss)(a, b, factor(pw, i)))
            .collect();
        let n = loss.len();
        Ok((reduce(loss, x[0].shape().clone(), self.reduction, n)?, ()))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, ()>) -> Result<Vec<Option<Tensor<T>>>> {
        let (a, b) = (cx.inputs[0].as_slice(), cx.inputs[1].as_slice());
        let w = self.weight.as_ref().map(Tensor::as_slice);
        let pw = self.pos_weight.as_ref().map(Tensor::as_slice);
        let up = Upstream::new(cx.grad_output, self.reduction, a.len());
        let (mut da, mut db) = (Vec::new(), Vec::new());
        if cx.needs_grad[0] {
            da.reserve_exact(a.len());
        }
        if cx.needs_grad[1] {
            db.reserve_exact(a.len());
        }
        for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
            let (ga, gb) = (self.grad)(x, y, factor(pw, i));
            let u = up.at(i) * factor(w, i);
            if cx.needs_grad[0] {
                da.push(u * ga);
            }
            if cx.needs_grad[1] {
                db.push(u * gb);
            }
        }
        let shape = cx.inputs[0].shape();
        let wrap =
            |need: bool, d: Vec<T>| need.then(|| Tensor::from_vec(d, shape.clone())).transpose();
        Ok(vec![
            wrap(cx.needs_grad[0], da)?,
            wrap(cx.needs_grad[1], db)?,
        ])
    }
}
