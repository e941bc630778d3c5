//! Multiclass losses on a class axis, which is the LAST axis: logits (or
//! log-probabilities, or scores) `[..., C]` with class ids `[...]` (`i64`),
//! any number of leading dims (`[B, T, V]` language-model logits with
//! `[B, T]` targets work as they are).
//!
//! - [`cross_entropy`]: `−log softmax(z)_y` (or against probabilities), with
//!   class weights, `ignore_index` and label smoothing, as PyTorch.
//! - [`nll`]: `−w_y·log_probs_y` on log-probabilities the caller made.
//! - [`softmax_focal`]: cross-entropy scaled by `(1 − p_y)^γ`.
//! - [`brier`]: squared distance of `softmax(z)` from the one-hot target.
//! - [`multi_margin`]: multiclass hinge on raw scores.
//!
//! Every fused op works row by row in logit space (one max-shifted pass per
//! row), saves at most a few numbers per row, and splits rows over rayon for
//! large inputs.

mod brier;
mod cross_entropy;
mod multi_margin;
mod nll;
mod rows;
mod softmax_focal;

pub use brier::{brier, BrierOptions};
pub use cross_entropy::{cross_entropy, CrossEntropyOptions, CrossEntropyTarget};
pub use multi_margin::{multi_margin, MultiMarginOptions};
pub use nll::{nll, NllOptions};
pub use softmax_focal::{softmax_focal, SoftmaxFocalOptions};

use crate::registry::{Args, Flavor};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::{Error, Float};

/// Naive twins of this family.
pub mod naive {
    pub use super::brier::brier_naive as brier;
    pub use super::cross_entropy::cross_entropy_naive as cross_entropy;
    pub use super::multi_margin::multi_margin_naive as multi_margin;
    pub use super::nll::nll_naive as nll;
    pub use super::softmax_focal::softmax_focal_naive as softmax_focal;
}

/// Build an op of this family from registry arguments; `None` for other ops.
pub(crate) fn build<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Option<Result<Var<T>>> {
    Some(match a.op() {
        "cross_entropy" => build_cross_entropy(a, flavor),
        "nll" => build_nll(a, flavor),
        "softmax_focal" => build_softmax_focal(a, flavor),
        "brier" => build_brier(a, flavor),
        "multi_margin" => build_multi_margin(a, flavor),
        _ => return None,
    })
}

/// A per-class tensor option as `f64`s (the values already cast to `T`).
fn class_vec<T: Float>(a: &mut Args<T>, name: &str) -> Result<Option<Vec<f64>>> {
    Ok(a.tensor(name)?
        .map(|t| t.as_slice().iter().map(|v| v.as_f64()).collect()))
}

fn build_cross_entropy<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = CrossEntropyOptions {
        weight: class_vec(a, "weight")?,
        ignore_index: a.int("ignore_index", -100)?,
        label_smoothing: a.num("label_smoothing", 0.0)?,
        reduction: a.reduction()?,
        denominator: a.denominator()?,
    };
    let logits = a.real("logits")?;
    // an i64 target holds class ids, a real one probabilities
    if a.is_int("target") {
        let t = a.ids("target")?;
        match flavor {
            Flavor::Fused => cross_entropy(&logits, &t, &o),
            Flavor::Naive => naive::cross_entropy(&logits, &t, &o),
        }
    } else {
        let t = a.real("target")?;
        match flavor {
            Flavor::Fused => cross_entropy(&logits, &t, &o),
            Flavor::Naive => naive::cross_entropy(&logits, &t, &o),
        }
    }
}

fn build_nll<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = NllOptions {
        weight: class_vec(a, "weight")?,
        ignore_index: a.int("ignore_index", -100)?,
        reduction: a.reduction()?,
        denominator: a.denominator()?,
    };
    let (lp, t) = (a.real("log_probs")?, a.ids("target")?);
    match flavor {
        Flavor::Fused => nll(&lp, &t, &o),
        Flavor::Naive => naive::nll(&lp, &t, &o),
    }
}

fn build_softmax_focal<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = SoftmaxFocalOptions {
        gamma: a.num("gamma", 2.0)?,
        alpha: class_vec(a, "alpha")?,
        ignore_index: a.int("ignore_index", -100)?,
        reduction: a.reduction()?,
    };
    let (z, t) = (a.real("logits")?, a.ids("target")?);
    match flavor {
        Flavor::Fused => softmax_focal(&z, &t, &o),
        Flavor::Naive => naive::softmax_focal(&z, &t, &o),
    }
}

fn build_brier<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = BrierOptions {
        reduction: a.reduction()?,
    };
    let (z, t) = (a.real("logits")?, a.ids("target")?);
    match flavor {
        Flavor::Fused => brier(&z, &t, &o),
        Flavor::Naive => naive::brier(&z, &t, &o),
    }
}

fn build_multi_margin<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let p = a.int("p", 1)?;
    let o = MultiMarginOptions {
        p: u32::try_from(p)
            .ok()
            .filter(|p| *p == 1 || *p == 2)
            .ok_or_else(|| {
                Error::option("multi_margin", "p", format!("p must be 1 or 2, not {p}"))
            })?,
        margin: a.num("margin", 1.0)?,
        weight: class_vec(a, "weight")?,
        reduction: a.reduction()?,
    };
    let (s, t) = (a.real("scores")?, a.ids("target")?);
    match flavor {
        Flavor::Fused => multi_margin(&s, &t, &o),
        Flavor::Naive => naive::multi_margin(&s, &t, &o),
    }
}
