//! Sigmoid focal loss: `ℓ = α_t·(1 − p_t)^γ·bce_with_logits(z, y)`, with
//! `p = σ(z)`, `p_t = p·y + (1 − p)(1 − y)`, `α_t = α·y + (1 − α)(1 − y)`.
//!
//! Binary cross-entropy reweighted for dense detection, where a flood of easy
//! negatives would otherwise dominate: the factor `(1 − p_t)^γ` shrinks the
//! loss of items the model already gets right, and `α_t` rebalances the two
//! classes (`α < 0` turns it off; `γ = 0` and no `α` is plain BCE). It also
//! amplifies hard items, mislabeled ones included.
//!
//! Computed in logit space: `1 − p_t = y·σ(−z) + (1 − y)·σ(z)` is a sum of
//! non-negative terms (no `1 − p_t` cancellation) and the cross-entropy is
//! `y·softplus(−z) + (1 − y)·softplus(z)`. With `q = 1 − p_t` and `c` the
//! cross-entropy, the derivative of `q^γ·c` is `γ·q^γ·(q′/q)·c + q^γ·c′`:
//! the ratios `σ(z)σ(−z)/q ≤ 1` and `c/q` are formed instead of `q^(γ−1)`,
//! which overflows as `q → 0` when `γ < 1`, and the term is 0 when `γ = 0`
//! or `q` underflows to 0 (its limit there). Gradients for logits and
//! targets; a target outside `[0, 1]` is `InvalidValue`.

use super::bce_with_logits::Logit;
use super::weighted::{Item, WeightedPointwise};
use crate::checks;
use crate::common::{
    check_denominator, check_option, check_unit_interval, no_batchmean, reduce_naive_with,
    same_shape, Reduction,
};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::Float;

/// Options of [`sigmoid_focal`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SigmoidFocalOptions {
    /// How items are combined (default `mean`: over every element).
    pub reduction: Reduction,
    /// Weight of the positive class, `α_t = α·y + (1 − α)(1 − y)`; a negative
    /// value means no α weighting (default 0.25; finite).
    pub alpha: f64,
    /// Focusing exponent `γ` (default 2.0; finite, ≥ 0).
    pub gamma: f64,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

impl Default for SigmoidFocalOptions {
    fn default() -> Self {
        SigmoidFocalOptions {
            reduction: Reduction::default(),
            alpha: 0.25,
            gamma: 2.0,
            denominator: None,
        }
    }
}

/// The per-element function of [`sigmoid_focal`], with `pow(q) = q^γ`;
/// `alpha` is `None` without α weighting.
struct FocalItem<T, P> {
    alpha: Option<T>,
    gamma: T,
    pow: P,
}

impl<T: Float, P: Fn(T) -> T + Send + Sync + 'static> Item<T> for FocalItem<T, P> {
    /// `(ℓ, ∂ℓ/∂z, ∂ℓ/∂y)` of one item from one [`Logit`] (one `exp`, one
    /// `log`, one division) and one `q^γ` (`pow(q)`), shared by the loss and
    /// both partials. The conditions are selects between computed values, so
    /// the vectorised loops that inline this have no branch.
    #[inline(always)]
    fn eval<const FMA: bool>(&self, z: T, y: T, _: T) -> (T, T, T) {
        item::<T, FMA>(z, y, self.alpha, self.gamma, &self.pow)
    }
}

#[inline(always)]
fn item<T: Float, const FMA: bool>(
    z: T,
    y: T,
    alpha: Option<T>,
    gamma: T,
    pow: &impl Fn(T) -> T,
) -> (T, T, T) {
    let (zero, one) = (T::zero(), T::one());
    let lg = Logit::new::<FMA>(z);
    let ny = one - y;
    // q = 1 − p_t and the cross-entropy c, sums of non-negative terms
    let q = y * lg.sm + ny * lg.s;
    let ce = y * lg.sn + ny * lg.sp;
    // α_t and ∂α_t/∂y
    let (at, dat) = match alpha {
        Some(a) => (a * y + (one - a) * ny, a + a - one),
        None => (one, zero),
    };
    let qg = pow(q);
    // γ·q^(γ−1)·(∂q/∂z)·c and γ·q^(γ−1)·(∂q/∂y)·c, through bounded ratios;
    // 0 when γ = 0 or q underflowed to 0 (the limit there)
    let k = gamma * qg;
    let fz = k * (lg.s * lg.sm / q) * (ny - y) * ce;
    let fy = k * (ce / q) * (lg.sm - lg.s);
    let live = gamma > zero && q > zero;
    let (fz, fy) = if live { (fz, fy) } else { (zero, zero) };
    let dce_dz = ny * lg.s - y * lg.sm;
    let dz = at * (fz + qg * dce_dz);
    let dy = at * (fy - qg * z) + dat * qg * ce;
    (at * qg * ce, dz, dy)
}

/// Sigmoid focal loss `α_t·(1 − p_t)^γ·bce_with_logits(z, y)` of logits,
/// reduced; torchvision's `sigmoid_focal_loss`.
///
/// Gradient, with `q = 1 − p_t`, `c` the cross-entropy:
/// `∂ℓ/∂z = α_t·(γ·q^(γ−1)·(1 − 2y)·σ(z)σ(−z)·c + q^γ·((1 − y)σ(z) − yσ(−z)))`,
/// `∂ℓ/∂y = α_t·(γ·q^(γ−1)·(σ(−z) − σ(z))·c − q^γ·z) + (2α − 1)·q^γ·c`
/// (the last term only with α weighting).
///
/// Options: `reduction` (`mean`), `alpha` (0.25; < 0: none), `gamma` (2.0) —
/// see [`SigmoidFocalOptions`].
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{sigmoid_focal, SigmoidFocalOptions, Reduction};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// // an easy negative (z = −3) and a hard positive (z = −3)
/// let logits = tape.leaf(Tensor::from_vec(vec![-3.0, -3.0], [2])?);
/// let target = tape.constant(Tensor::from_vec(vec![0.0, 1.0], [2])?);
/// let opts = SigmoidFocalOptions { reduction: Reduction::None, ..Default::default() };
/// let loss = sigmoid_focal(&logits, &target, &opts)?.value().to_vec();
/// let p = 1.0 / (1.0 + 3f64.exp());
/// let (easy, hard) = (0.75 * p * p * -(1.0 - p).ln(), 0.25 * (1.0 - p).powi(2) * -p.ln());
/// assert!((loss[0] - easy).abs() < 1e-15 && (loss[1] - hard).abs() < 1e-14);
/// assert!(loss[1] > 100.0 * loss[0]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `logits` and `target` differ in shape;
/// `InvalidValue` when a target is outside `[0, 1]`; `InvalidOption` when
/// `gamma` is negative or not finite, `alpha` is not finite, or for
/// `batchmean`.
pub fn sigmoid_focal<T: Float>(
    logits: &Var<T>,
    target: &Var<T>,
    opts: &SigmoidFocalOptions,
) -> Result<Var<T>> {
    check_shapes(logits, target, opts)?;
    let gamma = T::of(opts.gamma);
    let alpha = (opts.alpha >= 0.0).then(|| T::of(opts.alpha));
    // q² for the default γ = 2 (one multiply instead of the exp and log of a
    // general power, which would double the op's cost); its own copy of the
    // loops, so that neither copy carries the other's work
    let r = opts.reduction;
    if opts.gamma == 2.0 {
        fused(
            logits,
            target,
            r,
            opts.denominator,
            alpha,
            gamma,
            #[inline(always)]
            |q| q * q,
        )
    } else {
        fused(
            logits,
            target,
            r,
            opts.denominator,
            alpha,
            gamma,
            #[inline(always)]
            move |q| q.fast_powf(gamma),
        )
    }
}

/// Record the fused op with `pow(q) = q^γ`: the family's fused op with no
/// weight and no pos_weight (`w = pw = 1`).
fn fused<T: Float>(
    logits: &Var<T>,
    target: &Var<T>,
    reduction: Reduction,
    denominator: Option<f64>,
    alpha: Option<T>,
    gamma: T,
    pow: impl Fn(T) -> T + Send + Sync + 'static,
) -> Result<Var<T>> {
    let item = FocalItem { alpha, gamma, pow };
    let out = WeightedPointwise::new("sigmoid_focal", reduction, None, None, item)
        // the targets' values are checked in the op's forward pass
        .in_unit_interval([None, Some("target")])
        .over(denominator)
        .apply(logits, target)?;
    checks::logits("sigmoid_focal", "logits", logits, false);
    Ok(out)
}

/// Checks shared by [`sigmoid_focal`] and its twin.
/// Every check of [`sigmoid_focal`] (the naive twin runs them up front).
fn validate<T: Float>(logits: &Var<T>, target: &Var<T>, opts: &SigmoidFocalOptions) -> Result<()> {
    check_shapes(logits, target, opts)?;
    check_unit_interval("sigmoid_focal", "target", &target.value())
}

/// The checks of [`sigmoid_focal`] but the targets' values.
fn check_shapes<T: Float>(
    logits: &Var<T>,
    target: &Var<T>,
    opts: &SigmoidFocalOptions,
) -> Result<()> {
    const OP: &str = "sigmoid_focal";
    no_batchmean(OP, opts.reduction)?;
    check_denominator(OP, opts.denominator, opts.reduction)?;
    let g = opts.gamma;
    check_option(OP, "gamma", g, g >= 0.0 && g.is_finite(), "[0, ∞)")?;
    let a = opts.alpha;
    check_option(OP, "alpha", a, a.is_finite(), "finite numbers")?;
    same_shape(OP, &logits.shape(), &target.shape(), "logits and target")
}

/// The naive twin of [`sigmoid_focal`], as torchvision writes it but with the
/// textbook cross-entropy: `p = σ(z)`, `c = −(y·log p + (1 − y)·log(1 − p))`,
/// `α_t·(1 − p_t)^γ·c`. Gives `NaN` once `σ` rounds to 0 or 1.
///
/// # Errors
/// As [`sigmoid_focal`].
pub fn sigmoid_focal_naive<T: Float>(
    logits: &Var<T>,
    target: &Var<T>,
    opts: &SigmoidFocalOptions,
) -> Result<Var<T>> {
    validate(logits, target, opts)?;
    let one = T::one();
    let p = logits.sigmoid()?;
    let not_p = p.neg()?.add_scalar(one)?;
    let not_y = target.neg()?.add_scalar(one)?;
    let ce = target
        .mul(&p.log()?)?
        .add(&not_y.mul(&not_p.log()?)?)?
        .neg()?;
    let p_t = p.mul(target)?.add(&not_p.mul(&not_y)?)?;
    let modulator = p_t.neg()?.add_scalar(one)?.powf(T::of(opts.gamma))?;
    let mut loss = modulator.mul(&ce)?;
    if opts.alpha >= 0.0 {
        let a = T::of(opts.alpha);
        // α·y + (1 − α)(1 − y) = (2α − 1)·y + (1 − α)
        let alpha_t = target.mul_scalar(a + a - one)?.add_scalar(one - a)?;
        loss = alpha_t.mul(&loss)?;
    }
    reduce_naive_with(loss, opts.reduction, opts.denominator)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{eval_in, uniform};
    use super::*;
    use crate::classification::binary::{bce_with_logits, BceWithLogitsOptions};
    use crate::testing::{assert_close, check_family, check_twins, Case, REDUCTIONS};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::{ErrorKind, Tensor};

    /// Logits N(0, 2²) and soft targets inside (0, 1).
    fn case(shape: &[usize], seed: u64) -> Case {
        Case::new(vec![
            Tensor::randn(shape.to_vec(), 0.0, 2.0, seed).unwrap(),
            uniform(shape, 0.02, 0.98, seed + 100),
        ])
    }

    /// (alpha, gamma): the default, no α with γ = 0, the conformance mix,
    /// γ < 1 (where q^(γ−1) is unbounded), and a large γ.
    const VARIANTS: [(f64, f64); 5] = [
        (0.25, 2.0),
        (-1.0, 0.0),
        (0.6, 1.5),
        (0.25, 0.5),
        (0.9, 3.0),
    ];

    #[test]
    fn sigmoid_focal_gradcheck_and_twin() {
        for (k, (alpha, gamma)) in VARIANTS.into_iter().enumerate() {
            for (reduction, denominator) in REDUCTIONS {
                let o = SigmoidFocalOptions {
                    reduction,
                    denominator,
                    alpha,
                    gamma,
                };
                for (shape, seed) in [(&[7][..], 1), (&[3, 4][..], 2)] {
                    check_family(
                        &case(shape, seed + 10 * k as u64),
                        |v| sigmoid_focal(&v[0], &v[1], &o),
                        |v| sigmoid_focal_naive(&v[0], &v[1], &o),
                    );
                }
            }
        }
    }

    #[test]
    fn sigmoid_focal_hard_labels_twin() {
        for (alpha, gamma) in VARIANTS {
            let z = Tensor::randn([2, 6], 0.0, 3.0, 5).unwrap();
            let y = uniform(&[2, 6], 0.0, 1.0, 6).map(|v| v.round());
            let o = SigmoidFocalOptions {
                reduction: Reduction::Sum,
                denominator: None,
                alpha,
                gamma,
            };
            check_twins(
                &Case::new(vec![z, y]),
                |v| sigmoid_focal(&v[0], &v[1], &o),
                |v| sigmoid_focal_naive(&v[0], &v[1], &o),
            );
        }
    }

    #[test]
    fn gamma_zero_without_alpha_is_bce_with_logits() {
        let o = SigmoidFocalOptions {
            reduction: Reduction::None,
            denominator: None,
            alpha: -1.0,
            gamma: 0.0,
        };
        let b = BceWithLogitsOptions {
            reduction: Reduction::None,
            ..Default::default()
        };
        check_twins(
            &case(&[4, 5], 7),
            |v| sigmoid_focal(&v[0], &v[1], &o),
            |v| bce_with_logits(&v[0], &v[1], &b),
        );
    }

    /// f32 logits of ±100 and ±1e4: the naive twin gives NaN, the fused op
    /// stays finite and matches the f64 value.
    #[test]
    fn sigmoid_focal_f32_stable_where_naive_is_not() {
        let z = Tensor::from_slice(&[100.0, -100.0, 1e4, -1e4, 100.0, -1e4, 30.0]);
        let y = Tensor::from_slice(&[0.0, 1.0, 0.5, 0.25, 1.0, 0.0, 0.0]);
        for (alpha, gamma) in VARIANTS {
            let o = SigmoidFocalOptions {
                reduction: Reduction::None,
                denominator: None,
                alpha,
                gamma,
            };
            let (naive, _, _) = eval_in::<f32>(|a, b| sigmoid_focal_naive(a, b, &o), &z, &y);
            assert!(!naive.all_finite(), "the naive twin should overflow here");
            let (out, gz, gy) = eval_in::<f32>(|a, b| sigmoid_focal(a, b, &o), &z, &y);
            let (out64, gz64, gy64) = eval_in::<f64>(|a, b| sigmoid_focal(a, b, &o), &z, &y);
            assert!(out.all_finite() && gz.all_finite() && gy.all_finite());
            assert!(out64.all_finite() && gz64.all_finite() && gy64.all_finite());
            assert_close("f32 loss", &out, &out64, 1e-6);
            assert_close("f32 grad logits", &gz, &gz64, 1e-6);
            assert_close("f32 grad target", &gy, &gy64, 1e-6);
        }
        // f64 values by hand at the default options: a wrong-side logit of
        // magnitude |z| costs α_t·|z| (q = 1), a right-side one costs ~0
        let (out64, _, _) = eval_in::<f64>(
            |a, b| {
                let o = SigmoidFocalOptions {
                    reduction: Reduction::None,
                    ..Default::default()
                };
                sigmoid_focal(a, b, &o)
            },
            &Tensor::from_slice(&[100.0, -1e4, 1e4]),
            &Tensor::from_slice(&[0.0, 1.0, 1.0]),
        );
        let want = Tensor::from_slice(&[75.0, 2500.0, 0.0]);
        assert_close("f64 loss", &out64, &want, 1e-15);
    }

    #[test]
    fn underflowing_one_minus_p_t_has_zero_gradient() {
        // q = 1 − p_t underflows to exactly 0 in f64: loss and gradients are 0
        for gamma in [0.0, 0.5, 2.0] {
            let o = SigmoidFocalOptions {
                reduction: Reduction::None,
                denominator: None,
                alpha: 0.25,
                gamma,
            };
            let z = Tensor::from_slice(&[1000.0, -1000.0]);
            let y = Tensor::from_slice(&[1.0, 0.0]);
            let (out, gz, gy) = eval_in::<f64>(|a, b| sigmoid_focal(a, b, &o), &z, &y);
            assert_eq!(out.to_vec(), vec![0.0, 0.0]);
            assert_eq!(gz.to_vec(), vec![0.0, 0.0]);
            // ∂ℓ/∂y at γ = 0 is α_t·(−z) + (2α − 1)·c = ∓α_t·1000; else 0
            let want_gy = if gamma == 0.0 {
                vec![-250.0, 750.0]
            } else {
                vec![0.0, 0.0]
            };
            assert_eq!(gy.to_vec(), want_gy);
        }
    }

    #[test]
    fn sigmoid_focal_errors() {
        let tape = Tape::<f64>::new();
        let leaf = |d: &[f64]| tape.leaf(Tensor::from_slice(d));
        let kind = |r: Result<Var<f64>>| r.err().map(|e| e.kind());
        let (z, y) = (leaf(&[0.3, -2.0]), leaf(&[1.0, 0.0]));
        let o = SigmoidFocalOptions::default();
        for (alpha, gamma) in [
            (0.25, -0.5),
            (0.25, f64::NAN),
            (0.25, f64::INFINITY),
            (f64::NAN, 2.0),
        ] {
            let bad = SigmoidFocalOptions { alpha, gamma, ..o };
            assert_eq!(
                kind(sigmoid_focal(&z, &y, &bad)),
                Some(ErrorKind::InvalidOption)
            );
        }
        let batchmean = SigmoidFocalOptions {
            reduction: Reduction::BatchMean,
            ..o
        };
        assert_eq!(
            kind(sigmoid_focal(&z, &y, &batchmean)),
            Some(ErrorKind::InvalidOption)
        );
        assert_eq!(
            kind(sigmoid_focal(&z, &leaf(&[1.0, 2.0]), &o)),
            Some(ErrorKind::InvalidValue)
        );
        assert_eq!(
            kind(sigmoid_focal(&z, &leaf(&[1.0]), &o)),
            Some(ErrorKind::ShapeMismatch)
        );
        assert_eq!(
            kind(sigmoid_focal_naive(&z, &leaf(&[-1.0, 0.0]), &o)),
            Some(ErrorKind::InvalidValue)
        );
    }
}
