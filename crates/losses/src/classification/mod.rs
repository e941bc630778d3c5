//! Classification losses: binary ones on logits or probabilities
//! ([`binary`]) and multiclass ones on a class axis ([`multiclass`]).

pub mod binary;
pub mod multiclass;

pub use binary::*;
pub use multiclass::*;

use crate::registry::{Args, Flavor};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::Float;

/// Naive twins of this family.
pub mod naive {
    pub use super::binary::naive::*;
    pub use super::multiclass::naive::*;
}

/// Build a classification op from registry arguments; `None` for other ops.
pub(crate) fn build<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Option<Result<Var<T>>> {
    binary::build(a, flavor).or_else(|| multiclass::build(a, flavor))
}
