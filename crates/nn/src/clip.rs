//! Gradient clipping by global norm, as `torch.nn.utils.clip_grad_norm_`.

use crate::params::ParamGrads;
use lossgraph_autodiff::Result;
use lossgraph_tensor::Float;

/// Scale all gradients together so that their global L2 norm is at most
/// `max_norm`; returns the norm before clipping.
///
/// With `n = √(Σ g²)` over every element of every gradient, each gradient is
/// multiplied by `min(1, max_norm / (n + 1e-6))` — PyTorch's formula, so a
/// norm just under `max_norm` is left alone. The norm is accumulated in f64.
/// A non-finite norm is returned as is and the gradients are scaled by the
/// (then meaningless) factor, as PyTorch does with `error_if_nonfinite=False`;
/// check the returned norm to skip such a step.
///
/// ```
/// use lossgraph_nn::{clip_grad_norm, ParamStore};
/// use lossgraph_tensor::Tensor;
/// let mut params = ParamStore::<f64>::new();
/// params.add("w", Tensor::from_vec(vec![1.5, 2.0], [2])?)?;
/// let (_, mut grads) = params.value_and_grad(|b| b.vars()[0].square()?.sum_all())?;
/// let norm = clip_grad_norm(&mut grads, 1.0)?; // the gradient 2w = [3, 4]
/// assert_eq!(norm, 5.0);
/// assert!((grads.global_norm() - 1.0).abs() < 1e-6);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `InvalidOption` when `max_norm` is negative or not finite.
pub fn clip_grad_norm<T: Float>(grads: &mut ParamGrads<T>, max_norm: f64) -> Result<f64> {
    crate::optim::check_range("clip_grad_norm", "max_norm", max_norm, 0.0, None)?;
    let norm = grads.global_norm();
    // not f64::min, which would drop a NaN that PyTorch's clamp keeps
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 || coef.is_nan() {
        grads.scale(T::of(coef));
    }
    Ok(norm)
}
