//! The primitive ops on [`crate::Var`], each with its backward rule right
//! below its forward. Grouped by kind; every rule is a line or two.

mod binary;
mod index;
mod layout;
mod linalg;
mod reduce;
mod unary;

use crate::error::Result;
use lossgraph_tensor::{Float, Shape, Tensor};

/// Sum a broadcast gradient back to an input's shape.
pub(crate) fn unbroadcast<T: Float>(g: Tensor<T>, shape: &Shape) -> Result<Tensor<T>> {
    Ok(g.sum_to_shape(shape)?)
}

/// `f(g, x)` elementwise over equal shapes (a gradient and a saved value).
pub(crate) fn zip<T: Float>(
    g: &Tensor<T>,
    x: &Tensor<T>,
    f: impl Fn(T, T) -> T + Sync + Send,
) -> Result<Tensor<T>> {
    Ok(lossgraph_tensor::broadcast_map("rule", g, x, f)?)
}
