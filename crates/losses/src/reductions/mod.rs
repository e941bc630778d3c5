//! Reductions as ops: means whose denominator is part of the loss's contract.
//!
//! - [`masked_mean`]: the mean over the items a 0/1 mask keeps, over every kept
//!   item or row by row (`per_row`).
//! - [`weighted_mean`]: the mean under non-negative weights, normalised by
//!   their sum.
//!
//! Both take no `reduction` option: their output is always a 0-d scalar.
//! Both are differentiable in the mask / weights as well as in the values.

mod masked_mean;
mod weighted_mean;

pub use masked_mean::{masked_mean, MaskedMeanOptions};
pub use weighted_mean::{weighted_mean, WeightedMeanOptions};

use crate::registry::{Args, Flavor};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::Float;

/// Naive twins of this family.
pub mod naive {
    pub use super::masked_mean::masked_mean_naive as masked_mean;
    pub use super::weighted_mean::weighted_mean_naive as weighted_mean;
}

/// Build a reduction op from registry arguments; `None` for other ops.
pub(crate) fn build<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Option<Result<Var<T>>> {
    Some(match a.op() {
        "masked_mean" => build_masked_mean(a, flavor),
        "weighted_mean" => build_weighted_mean(a, flavor),
        _ => return None,
    })
}

fn build_masked_mean<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = MaskedMeanOptions {
        eps: a.num("eps", 0.0)?,
        per_row: a.flag("per_row", false)?,
        denominator: a.denominator()?,
    };
    let v = a.real("values")?;
    // an integer 0/1 mask is accepted as a constant (it has no gradient)
    let m = if a.is_int("mask") {
        let ids = a.ids("mask")?;
        a.tape.constant(ids.map(|x| T::of(x as f64)))
    } else {
        a.real("mask")?
    };
    match flavor {
        Flavor::Fused => masked_mean(&v, &m, &o),
        Flavor::Naive => naive::masked_mean(&v, &m, &o),
    }
}

fn build_weighted_mean<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = WeightedMeanOptions {
        eps: a.num("eps", 0.0)?,
        denominator: a.denominator()?,
    };
    let (v, w) = (a.real("values")?, a.real("weights")?);
    match flavor {
        Flavor::Fused => weighted_mean(&v, &w, &o),
        Flavor::Naive => naive::weighted_mean(&v, &w, &o),
    }
}
