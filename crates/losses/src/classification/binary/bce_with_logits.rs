//! Binary cross-entropy on logits:
//! `ℓ = −w·(pw·y·log σ(z) + (1 − y)·log(1 − σ(z)))`.
//!
//! The same Bernoulli likelihood as [`bce`](super::bce), with the sigmoid
//! folded in. Since `−log σ(z) = softplus(−z)` and `−log(1 − σ(z)) =
//! softplus(z)`, the loss is `w·(pw·y·softplus(−z) + (1 − y)·softplus(z))`,
//! two non-negative terms that share one `log1p(e^−|z|)`: no exponential
//! overflows and no probability rounds to 0 or 1, so logits of any
//! magnitude give finite losses and gradients. With `pw = 1` it is
//! `max(z, 0) − z·y + log1p(e^−|z|)`. `pos_weight` (`pw`, one per class on
//! the last axis) scales the positive term to trade recall against precision
//! on imbalanced labels.
//!
//! Gradients: `∂ℓ/∂z = w·((1 − y)·σ(z) − pw·y·σ(−z))` (`= w·(σ(z) − y)` when
//! `pw = 1`) and `∂ℓ/∂y = w·(pw·softplus(−z) − softplus(z))` (`= −w·z` when
//! `pw = 1`). Fails with `InvalidValue` when a target lies outside `[0, 1]`.

use super::weighted::{broadcast_option, Item, WeightedPointwise};
use crate::checks;
use crate::common::{
    check_denominator, check_unit_interval, no_batchmean, reduce_naive_with, same_shape, Reduction,
};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::{Float, Tensor};

/// Options of [`bce_with_logits`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BceWithLogitsOptions<T: Float> {
    /// How items are combined (default `mean`: over every element).
    pub reduction: Reduction,
    /// Per-element weight `w`, broadcast to the input's shape (default none:
    /// `w = 1`). A constant: it gets no gradient.
    pub weight: Option<Tensor<T>>,
    /// Weight `pw` of the positive term, `[C]` broadcast over the last axis
    /// (any shape that broadcasts to the input is accepted; default none:
    /// `pw = 1`). A constant.
    pub pos_weight: Option<Tensor<T>>,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

/// The exponential part of one logit `z`: `e^−|z|` (which never
/// overflows) and `σ(±z)`, from one exponential and one division.
pub(super) struct Sigmoid<T> {
    /// `e^−|z|`, in `(0, 1]`; below f32's normal range it is 0 (the losses
    /// and gradients then differ from the exact ones by less than 1e-38).
    pub e: T,
    /// `u = 1 + e` (rounded), in `[1, 2]`, and `1/u = σ(|z|)`.
    pub u: T,
    pub inv_u: T,
    /// `σ(z)`, `σ(−z)`.
    pub s: T,
    pub sm: T,
}

impl<T: Float> Sigmoid<T> {
    /// `FMA`: see [`Item::eval`]. The sign of `z` picks between computed
    /// values (a select, no branch).
    #[inline(always)]
    pub fn new<const FMA: bool>(z: T) -> Self {
        let one = T::one();
        let e = (-z.abs()).exp_nonpos::<FMA>();
        // σ(|z|) = 1/u and σ(−|z|) = e/u
        let u = one + e;
        let big = one / u;
        let small = e * big;
        let (s, sm) = if z >= T::zero() {
            (big, small)
        } else {
            (small, big)
        };
        Sigmoid {
            e,
            u,
            inv_u: big,
            s,
            sm,
        }
    }
}

/// What the logit-space losses need of one logit `z`, all from one
/// `e^−|z|`: `σ(±z)` and `softplus(±z)`.
pub(super) struct Logit<T> {
    /// `σ(z)`, `σ(−z)`.
    pub s: T,
    pub sm: T,
    /// `softplus(z) = −log(1 − σ(z))`, `softplus(−z) = −log σ(z)`.
    pub sp: T,
    pub sn: T,
}

impl<T: Float> Logit<T> {
    /// One exponential, one log and one division, shared by the loss and
    /// its gradient. `FMA`: see [`Item::eval`].
    #[inline(always)]
    pub fn new<const FMA: bool>(z: T) -> Self {
        let (zero, one) = (T::zero(), T::one());
        let Sigmoid { e, u, inv_u, s, sm } = Sigmoid::new::<FMA>(z);
        // log1p(e^−|z|), which the softplus of either sign adds to
        // max(±z, 0): log u plus what the rounding of u lost, (e − (u − 1))/u
        // (the usual log1p correction; it is e itself once u rounds to 1)
        let l = u.ln_normal::<FMA>() + (e - (u - one)) * inv_u;
        Logit {
            s,
            sm,
            sp: z.max(zero) + l,
            sn: (-z).max(zero) + l,
        }
    }
}

/// The per-element function of [`bce_with_logits`].
struct BceWithLogitsItem;

impl<T: Float> Item<T> for BceWithLogitsItem {
    /// `(ℓ, ∂ℓ/∂z, ∂ℓ/∂y)` of one item,
    /// `ℓ = pw·y·softplus(−z) + (1 − y)·softplus(z)`, from one [`Logit`].
    #[inline(always)]
    fn eval<const FMA: bool>(&self, z: T, y: T, pw: T) -> (T, T, T) {
        item::<T, FMA>(z, y, pw)
    }

    const LOG1P_SPLIT: bool = true;

    /// With `pw = 1` both softplus terms share `log1p(e^−|z|)` with
    /// coefficients `y` and `1 − y`, which add up to 1: the loss is
    /// `y·max(−z, 0) + (1 − y)·max(z, 0) + log1p(e^−|z|)`, and the first two
    /// terms are `max(z, 0) − y·z`. The logit gradient is `σ(z) − y`
    /// ([`sigmoid_minus`]). This is the hot loop of the fused op's `sum` and
    /// `mean`, and it is bound by arithmetic, so it takes the fewest
    /// operations: one exponential, one division, no `σ(z)` of either sign
    /// formed and multiplied by a label.
    #[inline(always)]
    fn eval_log1p_split<const FMA: bool>(&self, z: T, y: T) -> (T, T, T, T) {
        let (zero, one) = (T::zero(), T::one());
        let e = (-z.abs()).exp_nonpos::<FMA>();
        // σ(−|z|) = e/(1 + e), the smaller of σ(±z)
        let small = e / (one + e);
        let zp = z.max(zero);
        // max(z, 0) − y·z, rounded once with a fused multiply-add; without
        // one, the form whose two products cannot cancel
        let rest = if FMA {
            (-y).mul_add(z, zp)
        } else {
            y * (-z).max(zero) + (one - y) * zp
        };
        (rest, e, sigmoid_minus(z, y, small), -z)
    }
}

/// `σ(z) − y` from `small = σ(−|z|)`: `(1 − y) − small` for `z ≥ 0` (where
/// `σ(z) = 1 − small`), `small − y` below. A label of 1 or 0 on the side
/// the logit already favours gives `∓small` exactly, so the gradient keeps
/// its relative precision however confident the logit is.
#[inline(always)]
fn sigmoid_minus<T: Float>(z: T, y: T, small: T) -> T {
    if z >= T::zero() {
        (T::one() - y) - small
    } else {
        small - y
    }
}

/// `∂ℓ/∂z = (1 − y)·σ(z) − pw·y·σ(−z)`, for the per-element loss (the one
/// whose logarithm is gathered takes [`sigmoid_minus`]: the same value at
/// `pw = 1`, to an ulp).
#[inline(always)]
fn grad_logit<T: Float>(y: T, pw: T, s: T, sm: T) -> T {
    (T::one() - y) * s - pw * y * sm
}

#[inline(always)]
fn item<T: Float, const FMA: bool>(z: T, y: T, pw: T) -> (T, T, T) {
    let one = T::one();
    let lg = Logit::new::<FMA>(z);
    let loss = pw * y * lg.sn + (one - y) * lg.sp;
    let dz = grad_logit(y, pw, lg.s, lg.sm);
    // exactly −z without pos_weight (softplus(−z) − softplus(z) rounds)
    let dy = if pw == one { -z } else { pw * lg.sn - lg.sp };
    (loss, dz, dy)
}

/// Binary cross-entropy of logits `w·(pw·y·softplus(−z) + (1 − y)·softplus(z))`,
/// reduced; PyTorch's `F.binary_cross_entropy_with_logits`.
///
/// Gradient: `∂ℓ/∂z = w·((1 − y)·σ(z) − pw·y·σ(−z))`,
/// `∂ℓ/∂y = w·(pw·softplus(−z) − softplus(z))` (`−w·z` when `pw = 1`).
///
/// Options: `reduction` (`mean`), `weight` (none), `pos_weight` (none) — see
/// [`BceWithLogitsOptions`].
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{bce_with_logits, BceWithLogitsOptions, Reduction};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f32>::new();
/// // a logit of 1e4 would make σ round to 1 and log(1 − σ) infinite
/// let logits = tape.leaf(Tensor::from_vec(vec![1e4, 0.0], [2])?);
/// let target = tape.leaf(Tensor::from_vec(vec![0.0, 1.0], [2])?);
/// let opts = BceWithLogitsOptions { reduction: Reduction::None, ..Default::default() };
/// let loss = bce_with_logits(&logits, &target, &opts)?;
/// let v = loss.value().to_vec();
/// assert_eq!(v[0], 1e4); // softplus(1e4), finite
/// assert!((v[1] - std::f32::consts::LN_2).abs() < 1e-7);
/// let g = loss.backward_with(Tensor::ones([2])?)?;
/// assert_eq!(g.get(&logits).unwrap().to_vec(), vec![1.0, -0.5]); // σ(z) − y
/// assert_eq!(g.get(&target).unwrap().to_vec(), vec![-1e4, 0.0]); // −z
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `logits` and `target` differ in shape or `weight` or
/// `pos_weight` does not broadcast to it; `InvalidValue` when a target is
/// outside `[0, 1]`; `InvalidOption` for the `batchmean` reduction.
pub fn bce_with_logits<T: Float>(
    logits: &Var<T>,
    target: &Var<T>,
    opts: &BceWithLogitsOptions<T>,
) -> Result<Var<T>> {
    let (weight, pos_weight) = check_shapes(logits, target, opts)?;
    // the targets' values are checked in the op's forward pass
    let op = WeightedPointwise::new(
        "bce_with_logits",
        opts.reduction,
        weight,
        pos_weight,
        BceWithLogitsItem,
    )
    .in_unit_interval([None, Some("target")])
    .over(opts.denominator);
    let out = op.apply(logits, target)?;
    checks::logits("bce_with_logits", "logits", logits, false);
    Ok(out)
}

/// The option tensors broadcast to a checked input shape.
type Broadcast<T> = (Option<Tensor<T>>, Option<Tensor<T>>);

/// The checks of [`bce_with_logits`] but the targets' values; returns
/// `weight` and `pos_weight` at the input's shape.
fn check_shapes<T: Float>(
    logits: &Var<T>,
    target: &Var<T>,
    opts: &BceWithLogitsOptions<T>,
) -> Result<Broadcast<T>> {
    const OP: &str = "bce_with_logits";
    no_batchmean(OP, opts.reduction)?;
    check_denominator(OP, opts.denominator, opts.reduction)?;
    let shape = logits.shape();
    same_shape(OP, &shape, &target.shape(), "logits and target")?;
    let weight = broadcast_option(OP, "weight", opts.weight.as_ref(), &shape)?;
    let pos_weight = broadcast_option(OP, "pos_weight", opts.pos_weight.as_ref(), &shape)?;
    Ok((weight, pos_weight))
}

/// Every check of [`bce_with_logits`] (the naive twin runs them up front).
fn validate<T: Float>(
    logits: &Var<T>,
    target: &Var<T>,
    opts: &BceWithLogitsOptions<T>,
) -> Result<Broadcast<T>> {
    let broadcast = check_shapes(logits, target, opts)?;
    check_unit_interval("bce_with_logits", "target", &target.value())?;
    Ok(broadcast)
}

/// The naive twin of [`bce_with_logits`], the textbook way: `p = σ(z)`, then
/// `−w·(pw·y·log p + (1 − y)·log(1 − p))`. Overflows to `inf`/`NaN` once `σ`
/// rounds to 0 or 1 (|z| ≳ 17 in f32, ≳ 37 in f64).
///
/// # Errors
/// As [`bce_with_logits`].
pub fn bce_with_logits_naive<T: Float>(
    logits: &Var<T>,
    target: &Var<T>,
    opts: &BceWithLogitsOptions<T>,
) -> Result<Var<T>> {
    let (weight, pos_weight) = validate(logits, target, opts)?;
    let tape = logits.tape();
    let p = logits.sigmoid()?;
    let log_p = p.log()?;
    let log_q = p.neg()?.add_scalar(T::one())?.log()?;
    let mut pos = target.mul(&log_p)?;
    if let Some(pw) = pos_weight {
        pos = pos.mul(&tape.constant(pw))?;
    }
    let neg = target.neg()?.add_scalar(T::one())?.mul(&log_q)?;
    let mut loss = pos.add(&neg)?.neg()?;
    if let Some(w) = weight {
        loss = loss.mul(&tape.constant(w))?;
    }
    reduce_naive_with(loss, opts.reduction, opts.denominator)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{eval_in, uniform};
    use super::*;
    use crate::testing::{assert_close, check_family, check_twins, Case, REDUCTIONS};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::ErrorKind;

    /// Logits N(0, 3²) and soft targets inside (0, 1).
    fn case(shape: &[usize], seed: u64) -> Case {
        Case::new(vec![
            Tensor::randn(shape.to_vec(), 0.0, 3.0, seed).unwrap(),
            uniform(shape, 0.02, 0.98, seed + 100),
        ])
    }

    fn opts(reduction: Reduction) -> BceWithLogitsOptions<f64> {
        BceWithLogitsOptions {
            reduction,
            ..Default::default()
        }
    }

    #[test]
    fn bce_with_logits_gradcheck_and_twin() {
        for (reduction, denominator) in REDUCTIONS {
            let o = BceWithLogitsOptions {
                denominator,
                ..opts(reduction)
            };
            for (shape, seed) in [(&[7][..], 1), (&[3, 4][..], 2)] {
                check_family(
                    &case(shape, seed),
                    |v| bce_with_logits(&v[0], &v[1], &o),
                    |v| bce_with_logits_naive(&v[0], &v[1], &o),
                );
            }
        }
    }

    #[test]
    fn bce_with_logits_weights_gradcheck_and_twin() {
        // weight alone, pos_weight alone ([C] and [1]), and both
        let w = || Some(uniform(&[3, 1], 0.1, 2.0, 3));
        let pw = || Some(uniform(&[4], 0.2, 4.0, 4));
        let variants = [
            (w(), None),
            (None, pw()),
            (None, Some(Tensor::from_slice(&[3.0]))),
            (w(), pw()),
        ];
        for (k, (weight, pos_weight)) in variants.into_iter().enumerate() {
            for (reduction, denominator) in [REDUCTIONS[0], REDUCTIONS[2], REDUCTIONS[3]] {
                let o = BceWithLogitsOptions {
                    reduction,
                    denominator,
                    weight: weight.clone(),
                    pos_weight: pos_weight.clone(),
                };
                for shape in [&[3, 4][..], &[2, 3, 4][..]] {
                    check_family(
                        &case(shape, 10 + k as u64),
                        |v| bce_with_logits(&v[0], &v[1], &o),
                        |v| bce_with_logits_naive(&v[0], &v[1], &o),
                    );
                }
            }
        }
    }

    #[test]
    fn bce_with_logits_hard_labels_twin() {
        let z = Tensor::randn([2, 5], 0.0, 3.0, 5).unwrap();
        let y = uniform(&[2, 5], 0.0, 1.0, 6).map(|v| v.round());
        let o = BceWithLogitsOptions {
            pos_weight: Some(uniform(&[5], 0.5, 3.0, 7)),
            ..opts(Reduction::Sum)
        };
        check_twins(
            &Case::new(vec![z, y]),
            |v| bce_with_logits(&v[0], &v[1], &o),
            |v| bce_with_logits_naive(&v[0], &v[1], &o),
        );
    }

    #[test]
    fn unit_pos_weight_is_no_pos_weight() {
        let c = case(&[3, 4], 8);
        let plain = opts(Reduction::None);
        let unit = BceWithLogitsOptions {
            pos_weight: Some(Tensor::ones([4]).unwrap()),
            ..opts(Reduction::None)
        };
        check_twins(
            &c,
            |v| bce_with_logits(&v[0], &v[1], &plain),
            |v| bce_with_logits(&v[0], &v[1], &unit),
        );
    }

    /// f32 logits of ±100 and ±1e4: the naive twin gives inf/NaN, the fused op
    /// stays finite and matches the f64 value.
    #[test]
    fn bce_with_logits_f32_stable_where_naive_is_not() {
        let z = Tensor::from_slice(&[100.0, -100.0, 1e4, -1e4, 100.0, -1e4]);
        let y = Tensor::from_slice(&[0.0, 1.0, 0.5, 0.25, 1.0, 0.0]);
        for pos_weight in [None, Some(Tensor::from_slice(&[2.5]))] {
            let o32 = BceWithLogitsOptions::<f32> {
                reduction: Reduction::None,
                denominator: None,
                weight: None,
                pos_weight: pos_weight.as_ref().map(|t| t.cast()),
            };
            let o64 = BceWithLogitsOptions::<f64> {
                reduction: Reduction::None,
                denominator: None,
                weight: None,
                pos_weight,
            };
            let (naive, _, _) = eval_in(|a, b| bce_with_logits_naive(a, b, &o32), &z, &y);
            assert!(!naive.all_finite(), "the naive twin should overflow here");
            let (out, gz, gy) = eval_in(|a, b| bce_with_logits(a, b, &o32), &z, &y);
            let (out64, gz64, gy64) = eval_in(|a, b| bce_with_logits(a, b, &o64), &z, &y);
            assert!(out.all_finite() && gz.all_finite() && gy.all_finite());
            assert_close("f32 loss", &out, &out64, 1e-6);
            assert_close("f32 grad logits", &gz, &gz64, 1e-6);
            assert_close("f32 grad target", &gy, &gy64, 1e-6);
        }
        // and the f64 values are the exact ones: softplus(±z) at these logits
        let (out64, _, _) = eval_in(|a, b| bce_with_logits(a, b, &opts(Reduction::None)), &z, &y);
        let want = Tensor::from_slice(&[100.0, 100.0, 5e3, 2.5e3, 0.0, 0.0]);
        assert_close("f64 loss", &out64, &want, 1e-15);
    }

    /// The `sum`/`mean` pass computes the logit gradient as `σ(z) − y` from
    /// `σ(−|z|)` alone (`sigmoid_minus`): with hard labels on the side the
    /// logit favours, it is `∓σ(−|z|)`, tiny, and keeps its relative
    /// precision in f32; elsewhere it is within a few ulp of the exact value.
    #[test]
    fn summed_logit_gradient_keeps_relative_precision() {
        let z = [30.0, -30.0, 17.0, -17.0, 0.0, -0.0, 2.5, -2.5, 80.0, 1e4];
        let y = [1.0, 0.0, 1.0, 0.0, 0.3, 0.7, 0.999, 0.001, 0.25, 1.0];
        // σ(z) − y in f64, from e^−|z| with no cancellation
        let want: Vec<f64> = z
            .iter()
            .zip(&y)
            .map(|(&z, &y): (&f64, &f64)| {
                let small = (-z.abs()).exp() / (1.0 + (-z.abs()).exp());
                if z >= 0.0 {
                    (1.0 - y) - small
                } else {
                    small - y
                }
            })
            .collect();
        let (zt, yt) = (Tensor::from_slice(&z), Tensor::from_slice(&y));
        let o32 = BceWithLogitsOptions::<f32> {
            reduction: Reduction::Sum,
            ..Default::default()
        };
        let (_, g32, _) = eval_in(|a, b| bce_with_logits(a, b, &o32), &zt, &yt);
        let (_, g64, _) = eval_in(
            |a, b| bce_with_logits(a, b, &opts(Reduction::Sum)),
            &zt,
            &yt,
        );
        for (i, w) in want.iter().enumerate() {
            let (g32, g64) = (g32.as_slice()[i], g64.as_slice()[i]);
            assert!(
                (g64 - w).abs() <= 1e-15 * w.abs(),
                "f64 [{i}]: {g64:e} vs {w:e}"
            );
            // f32 holds y = 0.999 and 0.001 to 3e-8, which the gradient
            // ±0.0749… inherits; elsewhere a few ulp
            let w32 = (w.abs() as f32) as f64;
            assert!(
                (g32 - w).abs() <= 1e-6 * w32.max(1e-30),
                "f32 [{i}]: {g32:e} vs {w:e}"
            );
        }
    }

    /// `sum` without weights gathers the `log1p` terms of many elements
    /// into one logarithm (`weighted::add_log1p`); `none` takes each
    /// element's own. Over several blocks and a ragged tail, with logits
    /// from 0 (where every term is `log 2`, the largest) to ±1e4, the two
    /// agree in f64 to rounding and in f32 with the f64 value.
    #[test]
    fn gathered_logs_match_per_element_losses() {
        let n = 5003;
        let mut z = Tensor::randn([n], 0.0, 4.0, 21).unwrap().to_vec();
        z[..700].fill(0.0);
        for (i, v) in z[700..760].iter_mut().enumerate() {
            *v = if i % 2 == 0 { 1e4 } else { -1e4 };
        }
        let z = Tensor::from_vec(z, [n]).unwrap();
        let y = uniform(&[n], 0.0, 1.0, 22);
        let (each, _, _) = eval_in(|a, b| bce_with_logits(a, b, &opts(Reduction::None)), &z, &y);
        let want: f64 = each.to_vec().iter().sum();
        let (sum64, _, _) = eval_in(|a, b| bce_with_logits(a, b, &opts(Reduction::Sum)), &z, &y);
        let got = sum64.to_vec()[0];
        assert!((got - want).abs() <= 1e-12 * want, "f64: {got} vs {want}");
        let o32 = BceWithLogitsOptions::<f32> {
            reduction: Reduction::Sum,
            ..Default::default()
        };
        let (sum32, _, _) = eval_in(|a, b| bce_with_logits(a, b, &o32), &z, &y);
        let got = sum32.to_vec()[0];
        assert!((got - want).abs() <= 1e-6 * want, "f32: {got} vs {want}");
        // every term log 2: the lanes' products reach their largest
        let (zero, half) = (Tensor::zeros([n]).unwrap(), Tensor::full([n], 0.5).unwrap());
        let (sum64, _, _) = eval_in(
            |a, b| bce_with_logits(a, b, &opts(Reduction::Sum)),
            &zero,
            &half,
        );
        let want = n as f64 * std::f64::consts::LN_2;
        let got = sum64.to_vec()[0];
        assert!(
            (got - want).abs() <= 1e-13 * want,
            "log 2 × n: {got} vs {want}"
        );
    }

    #[test]
    fn empty_input_mean_is_zero() {
        let empty = Tensor::<f64>::zeros([0, 3]).unwrap();
        let o = BceWithLogitsOptions {
            pos_weight: Some(Tensor::ones([3]).unwrap()),
            ..opts(Reduction::Mean)
        };
        for f in [bce_with_logits::<f64>, bce_with_logits_naive::<f64>] {
            let (out, gz, gy) = eval_in(|a, b| f(a, b, &o), &empty, &empty);
            assert_eq!(out.to_vec(), vec![0.0]);
            assert_eq!((gz.dims(), gy.dims()), (&[0, 3][..], &[0, 3][..]));
        }
    }

    #[test]
    fn bce_with_logits_errors() {
        let tape = Tape::<f64>::new();
        let leaf = |d: &[f64]| tape.leaf(Tensor::from_slice(d));
        let kind = |r: Result<Var<f64>>| r.err().map(|e| e.kind());
        let (z, y) = (leaf(&[0.3, -2.0]), leaf(&[1.0, 0.0]));
        let o = opts(Reduction::Mean);
        assert_eq!(
            kind(bce_with_logits(&z, &leaf(&[1.0, 1.5]), &o)),
            Some(ErrorKind::InvalidValue)
        );
        assert_eq!(
            kind(bce_with_logits(&z, &leaf(&[1.0]), &o)),
            Some(ErrorKind::ShapeMismatch)
        );
        let bad_pw = BceWithLogitsOptions {
            pos_weight: Some(Tensor::from_slice(&[1.0, 2.0, 3.0])),
            ..o.clone()
        };
        assert_eq!(
            kind(bce_with_logits(&z, &y, &bad_pw)),
            Some(ErrorKind::ShapeMismatch)
        );
        let bad_w = BceWithLogitsOptions {
            weight: Some(Tensor::ones([2, 2]).unwrap()),
            ..o.clone()
        };
        assert_eq!(
            kind(bce_with_logits(&z, &y, &bad_w)),
            Some(ErrorKind::ShapeMismatch)
        );
        assert_eq!(
            kind(bce_with_logits(&z, &y, &opts(Reduction::BatchMean))),
            Some(ErrorKind::InvalidOption)
        );
        assert_eq!(
            kind(bce_with_logits_naive(&z, &leaf(&[-0.5, 0.0]), &o)),
            Some(ErrorKind::InvalidValue)
        );
    }
}
