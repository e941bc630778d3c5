//! Probabilistic losses: divergences between distributions.
//!
//! - [`kl_div`]: `p (log p − x)` for log-probability inputs, PyTorch's `F.kl_div`
//!   (with its `batchmean` reduction).
//! - [`kl_logits`]: the distillation KL between teacher and student logits at a
//!   temperature, fused through per-row log-sum-exps.
//! - [`gaussian_kl`]: the VAE regulariser `KL(N(μ, e^logvar) ‖ N(0, 1))`.

mod gaussian_kl;
mod kl_div;
mod kl_logits;

pub use gaussian_kl::{gaussian_kl, GaussianKlOptions};
pub use kl_div::{kl_div, KlDivOptions};
pub use kl_logits::{kl_logits, KlLogitsOptions};

use crate::registry::{Args, Flavor};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::Float;

/// Naive twins of this family.
pub mod naive {
    pub use super::gaussian_kl::gaussian_kl_naive as gaussian_kl;
    pub use super::kl_div::kl_div_naive as kl_div;
    pub use super::kl_logits::kl_logits_naive as kl_logits;
}

/// Build a probabilistic op from registry arguments; `None` for other ops.
pub(crate) fn build<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Option<Result<Var<T>>> {
    Some(match a.op() {
        "kl_div" => build_kl_div(a, flavor),
        "kl_logits" => build_kl_logits(a, flavor),
        "gaussian_kl" => build_gaussian_kl(a, flavor),
        _ => return None,
    })
}

fn build_kl_div<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = KlDivOptions {
        reduction: a.reduction()?,
        log_target: a.flag("log_target", false)?,
    };
    let (x, t) = (a.real("input")?, a.real("target")?);
    match flavor {
        Flavor::Fused => kl_div(&x, &t, &o),
        Flavor::Naive => naive::kl_div(&x, &t, &o),
    }
}

fn build_kl_logits<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = KlLogitsOptions {
        reduction: a.reduction()?,
        temperature: a.num("temperature", 1.0)?,
    };
    let (s, t) = (a.real("student")?, a.real("teacher")?);
    match flavor {
        Flavor::Fused => kl_logits(&s, &t, &o),
        Flavor::Naive => naive::kl_logits(&s, &t, &o),
    }
}

fn build_gaussian_kl<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = GaussianKlOptions {
        reduction: a.reduction()?,
    };
    let (mu, lv) = (a.real("mu")?, a.real("logvar")?);
    match flavor {
        Flavor::Fused => gaussian_kl(&mu, &lv, &o),
        Flavor::Naive => naive::gaussian_kl(&mu, &lv, &o),
    }
}
