//! Regression losses: `pred [*]` against `target [*]`, residual `r = pred − target`.
//!
//! | op | assumes | gradient w.r.t. `pred` |
//! |---|---|---|
//! | [`mse`] | Gaussian noise; estimates the mean | `2r`, unbounded |
//! | [`mae`] | Laplace noise; estimates the median | `sign r` |
//! | [`huber`] | Gaussian core, heavy tails beyond `δ` | `clamp(r, −δ, δ)` |
//! | [`smooth_l1`] | as `huber`, slope 1 in the tails | `clamp(r/β, −1, 1)` |
//! | [`log_cosh`] | smooth Huber-like, scale 1 | `tanh r` |
//! | [`quantile`] | none; estimates the `τ`-quantile(s) | `−τ` or `1 − τ` |
//! | [`gaussian_nll`] | Gaussian with a predicted variance | `r / var` |
//! | [`poisson_nll`] | counts with a predicted (log-)rate | `λ − target` |

mod gaussian_nll;
mod huber;
mod log_cosh;
mod mae;
mod mse;
mod poisson_nll;
mod quantile;
mod smooth_l1;
mod util;

pub use gaussian_nll::{gaussian_nll, GaussianNllOptions};
pub use huber::{huber, HuberOptions};
pub use log_cosh::{log_cosh, LogCoshOptions};
pub use mae::{mae, MaeOptions};
pub use mse::{mse, MseOptions};
pub use poisson_nll::{poisson_nll, PoissonNllOptions};
pub use quantile::{quantile, QuantileOptions};
pub use smooth_l1::{smooth_l1, SmoothL1Options};

use crate::registry::{Args, Flavor};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::{Error, Float};

/// Naive twins of this family.
pub mod naive {
    pub use super::gaussian_nll::gaussian_nll_naive as gaussian_nll;
    pub use super::huber::huber_naive as huber;
    pub use super::log_cosh::log_cosh_naive as log_cosh;
    pub use super::mae::mae_naive as mae;
    pub use super::mse::mse_naive as mse;
    pub use super::poisson_nll::poisson_nll_naive as poisson_nll;
    pub use super::quantile::quantile_naive as quantile;
    pub use super::smooth_l1::smooth_l1_naive as smooth_l1;
}

/// Build a regression op from registry arguments; `None` for other ops.
pub(crate) fn build<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Option<Result<Var<T>>> {
    Some(match a.op() {
        "mse" => build_mse(a, flavor),
        "mae" => build_mae(a, flavor),
        "huber" => build_huber(a, flavor),
        "smooth_l1" => build_smooth_l1(a, flavor),
        "log_cosh" => build_log_cosh(a, flavor),
        "quantile" => build_quantile(a, flavor),
        "gaussian_nll" => build_gaussian_nll(a, flavor),
        "poisson_nll" => build_poisson_nll(a, flavor),
        _ => return None,
    })
}

fn build_mse<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = MseOptions {
        reduction: a.reduction()?,
        denominator: a.denominator()?,
    };
    let (p, t) = (a.real("pred")?, a.real("target")?);
    match flavor {
        Flavor::Fused => mse(&p, &t, &o),
        Flavor::Naive => naive::mse(&p, &t, &o),
    }
}

fn build_mae<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = MaeOptions {
        reduction: a.reduction()?,
        denominator: a.denominator()?,
    };
    let (p, t) = (a.real("pred")?, a.real("target")?);
    match flavor {
        Flavor::Fused => mae(&p, &t, &o),
        Flavor::Naive => naive::mae(&p, &t, &o),
    }
}

fn build_huber<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = HuberOptions {
        delta: a.num("delta", 1.0)?,
        reduction: a.reduction()?,
        denominator: a.denominator()?,
    };
    let (p, t) = (a.real("pred")?, a.real("target")?);
    match flavor {
        Flavor::Fused => huber(&p, &t, &o),
        Flavor::Naive => naive::huber(&p, &t, &o),
    }
}

fn build_smooth_l1<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = SmoothL1Options {
        beta: a.num("beta", 1.0)?,
        reduction: a.reduction()?,
        denominator: a.denominator()?,
    };
    let (p, t) = (a.real("pred")?, a.real("target")?);
    match flavor {
        Flavor::Fused => smooth_l1(&p, &t, &o),
        Flavor::Naive => naive::smooth_l1(&p, &t, &o),
    }
}

fn build_log_cosh<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = LogCoshOptions {
        reduction: a.reduction()?,
        denominator: a.denominator()?,
    };
    let (p, t) = (a.real("pred")?, a.real("target")?);
    match flavor {
        Flavor::Fused => log_cosh(&p, &t, &o),
        Flavor::Naive => naive::log_cosh(&p, &t, &o),
    }
}

fn build_quantile<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let both = a.call.options.contains_key("tau") && a.call.options.contains_key("taus");
    let o = QuantileOptions {
        tau: a.num("tau", 0.5)?,
        taus: a.list("taus")?,
        reduction: a.reduction()?,
        denominator: a.denominator()?,
    };
    if both {
        return Err(Error::option("quantile", "taus", "give `tau` or `taus`, not both").into());
    }
    let (p, t) = (a.real("pred")?, a.real("target")?);
    match flavor {
        Flavor::Fused => quantile(&p, &t, &o),
        Flavor::Naive => naive::quantile(&p, &t, &o),
    }
}

fn build_gaussian_nll<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = GaussianNllOptions {
        eps: a.num("eps", 1e-6)?,
        full: a.flag("full", false)?,
        reduction: a.reduction()?,
        denominator: a.denominator()?,
    };
    let (p, t, v) = (a.real("pred")?, a.real("target")?, a.real("var")?);
    match flavor {
        Flavor::Fused => gaussian_nll(&p, &t, &v, &o),
        Flavor::Naive => naive::gaussian_nll(&p, &t, &v, &o),
    }
}

fn build_poisson_nll<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = PoissonNllOptions {
        log_input: a.flag("log_input", true)?,
        full: a.flag("full", false)?,
        eps: a.num("eps", 1e-8)?,
        reduction: a.reduction()?,
        denominator: a.denominator()?,
    };
    let (p, t) = (a.real("pred")?, a.real("target")?);
    match flavor {
        Flavor::Fused => poisson_nll(&p, &t, &o),
        Flavor::Naive => naive::poisson_nll(&p, &t, &o),
    }
}

#[cfg(test)]
mod tests {
    use crate::registry::{build, Call, Flavor, InputValue, OptValue};
    use lossgraph_autodiff::{ErrorKind, Tape};
    use lossgraph_tensor::Tensor;

    fn quantile_call(options: &[(&str, OptValue)]) -> Call {
        let mut call = Call {
            op: "quantile".into(),
            ..Default::default()
        };
        for (k, v) in options {
            call.options.insert(k.to_string(), v.clone());
        }
        let pred = Tensor::from_vec(vec![0.0, 1.0, 2.0, 3.0], [2, 2]).unwrap();
        let target = Tensor::from_vec(vec![1.0, 2.0], [2]).unwrap();
        call.inputs.insert("pred".into(), InputValue::Real(pred));
        call.inputs
            .insert("target".into(), InputValue::Real(target));
        call
    }

    #[test]
    fn quantile_takes_tau_or_taus_not_both() {
        let taus = ("taus", OptValue::List(vec![0.2, 0.8]));
        let tau = ("tau", OptValue::Num(0.5));
        for flavor in [Flavor::Fused, Flavor::Naive] {
            let tape = Tape::<f64>::new();
            let ok = build(&tape, &quantile_call(std::slice::from_ref(&taus)), flavor).unwrap();
            // rows: u = (1, 0) → 0.2·1 + 0; u = (0, −1) → 0 + 0.2·1
            assert!((ok.output.item().unwrap() - 0.1).abs() < 1e-12);
            let both = build(&tape, &quantile_call(&[taus.clone(), tau.clone()]), flavor);
            assert_eq!(both.err().map(|e| e.kind()), Some(ErrorKind::InvalidOption));
        }
    }
}
