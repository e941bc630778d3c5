//! Binary classification losses: one independent yes/no decision per
//! element, scored by a probability ([`bce`]), a logit ([`bce_with_logits`],
//! [`sigmoid_focal`]) or a signed score against ±1 labels ([`hinge`]).
//!
//! Inputs are `[*]` of any shape; the target has the input's shape and
//! `"none"` keeps it. Every real input, targets included, gets a gradient.

mod bce;
mod bce_with_logits;
mod hinge;
mod sigmoid_focal;
mod weighted;

pub use bce::{bce, BceOptions};
pub use bce_with_logits::{bce_with_logits, BceWithLogitsOptions};
pub use hinge::{hinge, HingeOptions};
pub use sigmoid_focal::{sigmoid_focal, SigmoidFocalOptions};

use crate::registry::{Args, Flavor};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::Float;

/// Naive twins of this family.
pub mod naive {
    pub use super::bce::bce_naive as bce;
    pub use super::bce_with_logits::bce_with_logits_naive as bce_with_logits;
    pub use super::hinge::hinge_naive as hinge;
    pub use super::sigmoid_focal::sigmoid_focal_naive as sigmoid_focal;
}

/// Build an op of this family from registry arguments; `None` for other ops.
pub(crate) fn build<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Option<Result<Var<T>>> {
    Some(match a.op() {
        "bce" => build_bce(a, flavor),
        "bce_with_logits" => build_bce_with_logits(a, flavor),
        "hinge" => build_hinge(a, flavor),
        "sigmoid_focal" => build_sigmoid_focal(a, flavor),
        _ => return None,
    })
}

fn build_bce<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = BceOptions {
        reduction: a.reduction()?,
        denominator: a.denominator()?,
        weight: a.tensor("weight")?,
    };
    let (p, t) = (a.real("probs")?, a.real("target")?);
    match flavor {
        Flavor::Fused => bce(&p, &t, &o),
        Flavor::Naive => naive::bce(&p, &t, &o),
    }
}

fn build_bce_with_logits<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let o = BceWithLogitsOptions {
        reduction: a.reduction()?,
        denominator: a.denominator()?,
        weight: a.tensor("weight")?,
        pos_weight: a.tensor("pos_weight")?,
    };
    let (z, t) = (a.real("logits")?, a.real("target")?);
    match flavor {
        Flavor::Fused => bce_with_logits(&z, &t, &o),
        Flavor::Naive => naive::bce_with_logits(&z, &t, &o),
    }
}

fn build_hinge<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let d = HingeOptions::default();
    let o = HingeOptions {
        reduction: a.reduction()?,
        denominator: a.denominator()?,
        margin: a.num("margin", d.margin)?,
    };
    let (s, t) = (a.real("scores")?, a.real("target")?);
    match flavor {
        Flavor::Fused => hinge(&s, &t, &o),
        Flavor::Naive => naive::hinge(&s, &t, &o),
    }
}

fn build_sigmoid_focal<T: Float>(a: &mut Args<T>, flavor: Flavor) -> Result<Var<T>> {
    let d = SigmoidFocalOptions::default();
    let o = SigmoidFocalOptions {
        reduction: a.reduction()?,
        denominator: a.denominator()?,
        alpha: a.num("alpha", d.alpha)?,
        gamma: a.num("gamma", d.gamma)?,
    };
    let (z, t) = (a.real("logits")?, a.real("target")?);
    match flavor {
        Flavor::Fused => sigmoid_focal(&z, &t, &o),
        Flavor::Naive => naive::sigmoid_focal(&z, &t, &o),
    }
}

/// Test helpers shared by the family's tests.
#[cfg(test)]
pub(crate) mod test_util {
    use lossgraph_autodiff::{Result, Tape, Var};
    use lossgraph_tensor::{Float, Tensor};

    /// Values uniform in `[lo, hi)`, seeded.
    pub fn uniform(shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor<f64> {
        Tensor::rand_uniform(shape.to_vec(), lo, hi, seed).unwrap()
    }

    /// Run `f(a, b)` in `T` on leaves cast from `a`, `b`, backpropagate ones,
    /// and return the output and both gradients in f64.
    pub fn eval_in<T: Float>(
        f: impl Fn(&Var<T>, &Var<T>) -> Result<Var<T>>,
        a: &Tensor<f64>,
        b: &Tensor<f64>,
    ) -> (Tensor<f64>, Tensor<f64>, Tensor<f64>) {
        let tape = Tape::<T>::new();
        let (va, vb) = (tape.leaf(a.cast()), tape.leaf(b.cast()));
        let out = f(&va, &vb).unwrap();
        let g = out
            .backward_with(Tensor::ones(out.shape()).unwrap())
            .unwrap();
        (
            out.value().cast(),
            g.get_or_zeros(&va).cast(),
            g.get_or_zeros(&vb).cast(),
        )
    }
}
