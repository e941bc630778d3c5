//! Regression losses: `pred [*]` against `target [*]`, residual `r = pred − target`.

mod mse;

pub use mse::{mse, MseOptions};

use crate::registry::{Args, Flavor};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::Float;

/// Naive twins of this family.
pub mod naive {
    pub use super::mse::mse_naive as mse;
}

/// Build a regression op from registry arguments; `None` for other ops.
pub(crate) fn build<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Option<Result<Var<T>>> {
    Some(match a.op() {
        "mse" => build_mse(a, flavor),
        _ => return None,
    })
}

fn build_mse<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = MseOptions {
        reduction: a.reduction()?,
    };
    let (p, t) = (a.real("pred")?, a.real("target")?);
    match flavor {
        Flavor::Fused => mse(&p, &t, &o),
        Flavor::Naive => naive::mse(&p, &t, &o),
    }
}
