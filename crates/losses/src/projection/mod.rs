//! Fused projection + loss: the last linear layer and the loss in one op, so
//! the logits it would produce are computed block by block and never held
//! whole (`linear_cross_entropy`).

mod linear_cross_entropy;

pub use linear_cross_entropy::{linear_cross_entropy, LinearCrossEntropyOptions};

use crate::common::check_option;
use crate::registry::{Args, Flavor};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::Float;

/// Naive twins of this family.
pub mod naive {
    pub use super::linear_cross_entropy::linear_cross_entropy_naive as linear_cross_entropy;
}

/// Build an op of this family from registry arguments; `None` for other ops.
pub(crate) fn build<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Option<Result<Var<T>>> {
    Some(match a.op() {
        "linear_cross_entropy" => build_linear_cross_entropy(a, flavor),
        _ => return None,
    })
}

fn build_linear_cross_entropy<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let d = LinearCrossEntropyOptions::default();
    let chunk = a.int("chunk", d.chunk as i64)?;
    check_option(
        "linear_cross_entropy",
        "chunk",
        chunk as f64,
        chunk >= 1,
        "integers ≥ 1",
    )?;
    let o = LinearCrossEntropyOptions {
        reduction: a.reduction()?,
        ignore_index: a.int("ignore_index", d.ignore_index)?,
        label_smoothing: a.num("label_smoothing", d.label_smoothing)?,
        chunk: usize::try_from(chunk).unwrap_or(usize::MAX),
        denominator: a.denominator()?,
    };
    let (hidden, weight) = (a.real("hidden")?, a.real("weight")?);
    let bias = if a.has("bias") {
        Some(a.real("bias")?)
    } else {
        None
    };
    let target = a.ids("target")?;
    match flavor {
        Flavor::Fused => linear_cross_entropy(&hidden, &weight, bias.as_ref(), &target, &o),
        Flavor::Naive => naive::linear_cross_entropy(&hidden, &weight, bias.as_ref(), &target, &o),
    }
}
