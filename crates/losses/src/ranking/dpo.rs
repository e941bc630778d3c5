//! Direct preference optimisation: a pairwise loss on how much more the policy
//! than a frozen reference prefers the chosen answer over the rejected one.
//!
//! With sequence log-probabilities `pc, pr` (policy, chosen / rejected) and
//! `rc, rr` (reference), the implicit reward margin is
//! `h = (pc − rc) − (pr − rr)`, and three variants (as in TRL) turn it into a
//! loss:
//!
//! - `sigmoid` (DPO): `−(1−ε) log σ(βh) − ε log σ(−βh)`; `ε` is the
//!   probability that a preference label is flipped (cDPO). Computed as
//!   `(1−ε)·softplus(−βh) + ε·softplus(βh)`, finite for any finite margin.
//! - `hinge` (SLiC): `max(0, 1 − βh)`; gradient 0 at the corner.
//! - `ipo`: `(h − 1/(2β))²`, which pulls `h` to a finite target instead of
//!   pushing it to infinity; `β` plays IPO's regulariser `τ`.
//!
//! `label_smoothing` only changes the `sigmoid` variant (TRL ignores it for
//! the others too). Gradients reach all four inputs: the reference ones are
//! usually constants, but a caller may track them.

use super::pointwise::{logistic, Pointwise};
use crate::common::{check_option, reduce_naive_with, same_shape, Reduction};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::{Error, Float};

/// Which DPO-family loss to apply to the reward margin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DpoVariant {
    /// `−(1−ε) log σ(βh) − ε log σ(−βh)` (the DPO paper; default).
    #[default]
    Sigmoid,
    /// `max(0, 1 − βh)` (SLiC).
    Hinge,
    /// `(h − 1/(2β))²` (IPO).
    Ipo,
}

impl DpoVariant {
    /// Parse `"sigmoid" | "hinge" | "ipo"`.
    ///
    /// # Errors
    /// `InvalidOption` for any other string.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "sigmoid" => DpoVariant::Sigmoid,
            "hinge" => DpoVariant::Hinge,
            "ipo" => DpoVariant::Ipo,
            _ => {
                return Err(Error::option(
                    "dpo",
                    "variant",
                    format!("unknown variant {s:?} (expected sigmoid, hinge or ipo)"),
                )
                .into())
            }
        })
    }
}

/// Options of [`dpo`].
#[derive(Debug, Clone, PartialEq)]
pub struct DpoOptions {
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
    /// Inverse temperature of the margin (default 0.1, > 0).
    pub beta: f64,
    /// Flip probability of the labels, for `sigmoid` (default 0.0, in [0, 1]).
    pub label_smoothing: f64,
    /// The loss applied to the margin (default `sigmoid`).
    pub variant: DpoVariant,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

impl Default for DpoOptions {
    fn default() -> Self {
        DpoOptions {
            reduction: Reduction::Mean,
            beta: 0.1,
            label_smoothing: 0.0,
            variant: DpoVariant::Sigmoid,
            denominator: None,
        }
    }
}

fn check_options(o: &DpoOptions) -> Result<()> {
    check_option(
        "dpo",
        "beta",
        o.beta,
        o.beta > 0.0 && o.beta.is_finite(),
        "(0, ∞)",
    )?;
    let e = o.label_smoothing;
    check_option(
        "dpo",
        "label_smoothing",
        e,
        (0.0..=1.0).contains(&e),
        "[0, 1]",
    )
}

/// DPO loss of the margin `h = (pc − rc) − (pr − rr)`, reduced; the variant
/// picks `sigmoid`, `hinge` or `ipo` (see the module docs for each formula).
///
/// Gradient: with `ℓ'(h)` the variant's derivative —
/// `β(−(1−ε)σ(−βh) + εσ(βh))`, `−β·[1 − βh > 0]` or `2(h − 1/(2β))` —
/// `∂ℓ/∂pc = ∂ℓ/∂rr = ℓ'(h)` and `∂ℓ/∂pr = ∂ℓ/∂rc = −ℓ'(h)`.
///
/// Options: `beta` (0.1, > 0), `label_smoothing` (0.0, in [0, 1]), `variant`
/// (`sigmoid`), `reduction` (`mean`).
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{dpo, DpoOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let pc = tape.leaf(Tensor::from_vec(vec![-10.0], [1])?);
/// let pr = tape.leaf(Tensor::from_vec(vec![-12.0], [1])?);
/// let rc = tape.constant(Tensor::from_vec(vec![-11.0], [1])?);
/// let rr = tape.constant(Tensor::from_vec(vec![-11.0], [1])?);
/// let loss = dpo(&pc, &pr, &rc, &rr, &DpoOptions::default())?;
/// // h = 1 − (−1) = 2, ℓ = −log σ(0.2)
/// assert!((loss.item()? - 0.598139).abs() < 1e-6);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when the four shapes differ; `InvalidOption` for
/// `beta ≤ 0`, `label_smoothing` outside [0, 1] or `batchmean`.
pub fn dpo<T: Float>(
    policy_chosen: &Var<T>,
    policy_rejected: &Var<T>,
    ref_chosen: &Var<T>,
    ref_rejected: &Var<T>,
    opts: &DpoOptions,
) -> Result<Var<T>> {
    check_options(opts)?;
    let beta = T::of(opts.beta);
    let eps = T::of(opts.label_smoothing);
    let target = T::of(0.5 / opts.beta);
    let (zero, one, two) = (T::zero(), T::one(), T::of(2.0));
    let inputs = [policy_chosen, policy_rejected, ref_chosen, ref_rejected];
    let r = opts.reduction;
    // One op per variant, so that each vectorised loop holds only its own
    // formula; all closures are branch-free and inlined into the loops of
    // `Pointwise`. Every input's partial is ±ℓ'(h): [ℓ', −ℓ', −ℓ', ℓ'].
    #[inline(always)]
    fn margin<T: Float>([pc, pr, rc, rr]: [T; 4]) -> T {
        (pc - rc) - (pr - rr)
    }
    #[inline(always)]
    fn spread<T: Float>(d: T) -> [T; 4] {
        [d, -d, -d, d]
    }
    match opts.variant {
        // (1−ε)·softplus(−βh) + ε·softplus(βh); ℓ' = β(εσ(βh) − (1−ε)σ(−βh)).
        // Loss and gradient share one exp and one log1p (`logistic`).
        DpoVariant::Sigmoid => Pointwise::new(
            "dpo",
            r,
            #[inline(always)]
            move |x: [T; 4]| {
                let l = logistic(beta * margin(x));
                (one - eps) * l.softplus_neg + eps * l.softplus
            },
            #[inline(always)]
            move |x: [T; 4]| {
                let l = logistic(beta * margin(x));
                spread(beta * (eps * l.sigmoid - (one - eps) * l.sigmoid_neg))
            },
        )
        .over(opts.denominator)
        .apply(inputs),
        // max(0, 1 − βh); ℓ' = −β where 1 − βh > 0, else 0
        DpoVariant::Hinge => Pointwise::new(
            "dpo",
            r,
            #[inline(always)]
            move |x: [T; 4]| (one - beta * margin(x)).max(zero),
            #[inline(always)]
            move |x: [T; 4]| {
                let on = one - beta * margin(x) > zero;
                spread(if on { -beta } else { zero })
            },
        )
        .over(opts.denominator)
        .apply(inputs),
        // (h − 1/(2β))²; ℓ' = 2(h − 1/(2β))
        DpoVariant::Ipo => Pointwise::new(
            "dpo",
            r,
            #[inline(always)]
            move |x: [T; 4]| {
                let d = margin(x) - target;
                d * d
            },
            #[inline(always)]
            move |x: [T; 4]| spread(two * (margin(x) - target)),
        )
        .over(opts.denominator)
        .apply(inputs),
    }
}

/// The naive twin of [`dpo`], from primitive ops: `log(sigmoid(·))` for the
/// sigmoid variant, `relu` for hinge, `square` for ipo.
///
/// # Errors
/// As [`dpo`].
pub fn dpo_naive<T: Float>(
    policy_chosen: &Var<T>,
    policy_rejected: &Var<T>,
    ref_chosen: &Var<T>,
    ref_rejected: &Var<T>,
    opts: &DpoOptions,
) -> Result<Var<T>> {
    check_options(opts)?;
    crate::common::no_batchmean("dpo", opts.reduction)?;
    crate::common::check_denominator("dpo", opts.denominator, opts.reduction)?;
    let s = policy_chosen.shape();
    for x in [policy_rejected, ref_chosen, ref_rejected] {
        same_shape("dpo", &s, &x.shape(), "all four inputs")?;
    }
    let h = policy_chosen
        .sub(ref_chosen)?
        .sub(&policy_rejected.sub(ref_rejected)?)?;
    let z = h.mul_scalar(T::of(opts.beta))?;
    let loss = match opts.variant {
        DpoVariant::Sigmoid => {
            let e = T::of(opts.label_smoothing);
            let win = z.sigmoid()?.log()?.mul_scalar(-(T::one() - e))?;
            let lose = z.neg()?.sigmoid()?.log()?.mul_scalar(-e)?;
            win.add(&lose)?
        }
        DpoVariant::Hinge => z.neg()?.add_scalar(T::one())?.relu()?,
        DpoVariant::Ipo => h.add_scalar(-T::of(0.5 / opts.beta))?.square()?,
    };
    reduce_naive_with(loss, opts.reduction, opts.denominator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, Case, REDUCTIONS};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::{ErrorKind, Tensor};

    /// Log-probabilities around −20 with margins spread over a few units; for
    /// hinge, `|1 − βh| ≥ 0.05` keeps finite differences off the corner.
    fn case(n: usize, seed: u64, beta: f64) -> Case {
        let c = Case::normal(4, &[n], seed);
        let mut x: Vec<Vec<f64>> = c
            .inputs
            .iter()
            .map(|t| t.as_slice().iter().map(|v| 3.0 * v - 20.0).collect())
            .collect();
        let (pc, rest) = x.split_first_mut().unwrap();
        for (i, pc) in pc.iter_mut().enumerate() {
            let h = (*pc - rest[1][i]) - (rest[0][i] - rest[2][i]);
            if (1.0 - beta * h).abs() < 0.05 {
                *pc += 1.0;
            }
        }
        Case::new(
            x.into_iter()
                .map(|v| Tensor::from_vec(v, [n]).unwrap())
                .collect(),
        )
    }

    #[test]
    fn dpo_gradcheck_and_twin() {
        let variants = [
            (DpoVariant::Sigmoid, 0.1, 0.0),
            (DpoVariant::Sigmoid, 0.5, 0.2),
            (DpoVariant::Hinge, 0.3, 0.0),
            (DpoVariant::Ipo, 0.3, 0.0),
        ];
        for (reduction, denominator) in REDUCTIONS {
            for (variant, beta, label_smoothing) in variants {
                let o = DpoOptions {
                    reduction,
                    denominator,
                    beta,
                    label_smoothing,
                    variant,
                };
                for (n, seed) in [(6, 1), (11, 2)] {
                    check_family(
                        &case(n, seed, beta),
                        |v| dpo(&v[0], &v[1], &v[2], &v[3], &o),
                        |v| dpo_naive(&v[0], &v[1], &v[2], &v[3], &o),
                    );
                }
            }
        }
    }

    /// f32 with a margin of ±2000 and β = 1: `log(sigmoid(βh))` gives +inf in
    /// the naive twin; the fused op stays finite and matches f64.
    #[test]
    fn f32_large_margin_stays_finite() {
        let o = DpoOptions {
            reduction: Reduction::None,
            denominator: None,
            beta: 1.0,
            label_smoothing: 0.1,
            variant: DpoVariant::Sigmoid,
        };
        let data = [[-1000.0, 1000.0], [1000.0, -1000.0], [0.0, 0.0], [0.0, 0.0]];
        let run = |naive: bool| {
            let tape = Tape::<f32>::new();
            let v: Vec<_> = data
                .iter()
                .map(|d| tape.leaf(Tensor::from_vec(d.map(|x| x as f32).to_vec(), [2]).unwrap()))
                .collect();
            let f = if naive { dpo_naive } else { dpo };
            let out = f(&v[0], &v[1], &v[2], &v[3], &o).unwrap();
            let g = out.backward_with(Tensor::ones([2]).unwrap()).unwrap();
            (out.value(), g.get_or_zeros(&v[0]))
        };
        assert!(!run(true).0.all_finite());
        let (out, grad) = run(false);
        assert!(out.all_finite() && grad.all_finite());
        // h = ∓2000: ℓ = 0.9·softplus(±2000) + 0.1·softplus(∓2000)
        let want = [1800.0, 200.0];
        for (got, want) in out.as_slice().iter().zip(want) {
            assert!(((*got as f64) - want).abs() <= 1e-3, "{got} vs {want}");
        }
        let want_grad = [-0.9, 0.1];
        for (got, want) in grad.as_slice().iter().zip(want_grad) {
            assert!(((*got as f64) - want).abs() <= 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let a = tape.leaf(Tensor::zeros([3]).unwrap());
        let b = tape.leaf(Tensor::zeros([2]).unwrap());
        let o = DpoOptions::default();
        let kind = |r: Result<Var<f64>>| r.unwrap_err().kind();
        assert_eq!(kind(dpo(&a, &a, &a, &b, &o)), ErrorKind::ShapeMismatch);
        for (beta, label_smoothing) in [(0.0, 0.0), (-1.0, 0.0), (0.1, -0.1), (0.1, 1.5)] {
            let bad = DpoOptions {
                beta,
                label_smoothing,
                ..o.clone()
            };
            assert_eq!(kind(dpo(&a, &a, &a, &a, &bad)), ErrorKind::InvalidOption);
        }
        assert_eq!(
            DpoVariant::parse("kto").unwrap_err().kind(),
            ErrorKind::InvalidOption
        );
    }
}
