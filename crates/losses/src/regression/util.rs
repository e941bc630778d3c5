//! Small helpers shared by the regression losses.

use lossgraph_tensor::Float;

/// The sign of `x`: −1, 0 or +1, with 0 at 0 (the subgradient PyTorch uses
/// for `|x|`); NaN stays NaN.
#[inline]
pub(crate) fn sign<T: Float>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        x * T::zero()
    }
}
