//! Log-cosh loss: `ℓ = log(cosh r)`, `r = pred − target`.
//!
//! A smooth robust loss: `≈ ½r²` near 0 and `≈ |r| − log 2` far out, with
//! gradient `tanh r` bounded by 1 and second derivative `1 − tanh² r`
//! everywhere — Huber-like without a threshold to pick or a kink. Its scale
//! is fixed at 1, so residuals should be standardised. The textbook formula
//! overflows: `cosh r` is infinite beyond `|r| ≈ 89` in f32 (710 in f64)
//! although the loss is only about `|r|`; this op never forms `cosh r`.

use crate::common::{reduce_naive_with, Elementwise, Reduction};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::Float;

/// Options of [`log_cosh`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LogCoshOptions {
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
    /// The `mean`'s denominator from outside (default none: every element
    /// counts one) — the whole batch's element count, when this call sees
    /// a part of it (a micro-batch, a data-parallel shard), so that the
    /// parts' gradients add up to the batch's. Only with `reduction =
    /// mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

/// `k = e^{−|r|} − 1 ∈ (−1, 0]`, the one exponential the loss and its
/// gradient are each built from. They run as separate passes over the data
/// (the gradient pass streams its output), so each computes `k` once.
#[inline(always)]
fn em1_neg_abs<T: Float>(r: T) -> T {
    (-r.abs()).fast_exp_m1()
}

/// `log(cosh r)` without overflow or cancellation, branch-free (both
/// arguments are computed and one selected, so a loop of it vectorises),
/// from `k = e^{−a} − 1`, `a = |r|`, and one `log1p`.
///
/// For `a ≥ 1`: `a − log 2 + log1p(e^{−2a})`, `e^{−2a} = (1 + k)²` (no
/// overflow for any `r`; once `e^{−a}` is below f32's resolution near 1 the
/// term it loses is below `e^{−2a}`, far under an ulp of the loss). Below 1
/// that form cancels (`a − log 2 + log(2 − …)` to get `≈ ½r²`), so there it
/// uses `log1p(cosh a − 1)` with `cosh a − 1 = k²/(2(1 + k))`, accurate to a
/// few ulps down to the smallest residuals (`k ≈ −a` there, without
/// cancellation).
#[inline(always)]
fn log_cosh_stable<T: Float>(r: T) -> T {
    let a = r.abs();
    let k = em1_neg_abs(r);
    let e = T::one() + k; // e^{−a}
    let near = a < T::one();
    let arg = if near {
        k * k / (T::of(2.0) * e)
    } else {
        e * e
    };
    let base = if near { T::zero() } else { a - T::LN_2() };
    base + arg.fast_ln_1p()
}

/// `tanh r` from the same `k = e^{−|r|} − 1`: with `e^{−2|r|} − 1 =
/// k(2 + k)` (no cancellation), `tanh |r| = −k(2 + k)/(2 + k(2 + k))`,
/// signed as `r`.
#[inline(always)]
fn tanh_from_k<T: Float>(r: T) -> T {
    let k = em1_neg_abs(r);
    let d = k * (T::of(2.0) + k);
    (-d / (T::of(2.0) + d)).copysign(r)
}

/// Log-cosh loss of `pred − target`, reduced.
///
/// `ℓ = log(cosh r)`, computed stably (the value of
/// `|r| + log1p(e^(−2|r|)) − log 2`). Gradient: `∂ℓ/∂pred = tanh r`,
/// `∂ℓ/∂target = −tanh r`. Finite for every finite residual, in f32 too.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{log_cosh, LogCoshOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f32>::new();
/// let pred = tape.leaf(Tensor::from_vec(vec![1000.0f32], [1])?);
/// let target = tape.constant(Tensor::zeros([1])?);
/// let loss = log_cosh(&pred, &target, &LogCoshOptions::default())?;
/// // cosh(1000) overflows, log(cosh(1000)) = 1000 − log 2 does not
/// assert!((loss.item()? - (1000.0 - 2f32.ln())).abs() < 1e-3);
/// assert_eq!(loss.backward()?.get(&pred).unwrap().to_vec(), vec![1.0]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `pred` and `target` differ in shape; `InvalidOption`
/// for `batchmean`.
pub fn log_cosh<T: Float>(pred: &Var<T>, target: &Var<T>, opts: &LogCoshOptions) -> Result<Var<T>> {
    Elementwise::new(
        "log_cosh",
        opts.reduction,
        #[inline(always)]
        |p: T, t: T| log_cosh_stable(p - t),
        #[inline(always)]
        |p: T, t: T| {
            let g = tanh_from_k(p - t);
            (g, -g)
        },
    )
    .over(opts.denominator)
    .apply(pred, target)
}

/// The naive twin of [`log_cosh`]: `log((exp(r) + exp(−r)) / 2)` with
/// primitive ops. Overflows to `inf` (and a NaN gradient) once `e^|r|` does.
///
/// # Errors
/// As [`log_cosh`].
pub fn log_cosh_naive<T: Float>(
    pred: &Var<T>,
    target: &Var<T>,
    opts: &LogCoshOptions,
) -> Result<Var<T>> {
    crate::common::no_batchmean("log_cosh", opts.reduction)?;
    crate::common::check_denominator("log_cosh", opts.denominator, opts.reduction)?;
    crate::common::same_shape(
        "log_cosh",
        &pred.shape(),
        &target.shape(),
        "pred and target",
    )?;
    let r = pred.sub(target)?;
    let cosh = r.exp()?.add(&r.neg()?.exp()?)?.mul_scalar(T::of(0.5))?;
    reduce_naive_with(cosh.log()?, opts.reduction, opts.denominator)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, Case, REDUCTIONS};
    use lossgraph_autodiff::{ErrorKind, Tape};
    use lossgraph_tensor::Tensor;

    #[test]
    fn log_cosh_gradcheck_and_twin() {
        for (reduction, denominator) in REDUCTIONS {
            let o = LogCoshOptions {
                reduction,
                denominator,
            };
            for (shape, seed) in [(&[7][..], 8), (&[3, 5][..], 9)] {
                check_family(
                    &Case::regression(shape, seed),
                    |v| log_cosh(&v[0], &v[1], &o),
                    |v| log_cosh_naive(&v[0], &v[1], &o),
                );
            }
            // residuals of a few units, both branches of the stable form
            let p = Tensor::from_vec(vec![3.0, -2.5, 0.999, -1.001, 6.0, 0.01], [6]).unwrap();
            check_family(
                &Case::new(vec![p, Tensor::zeros([6]).unwrap()]),
                |v| log_cosh(&v[0], &v[1], &o),
                |v| log_cosh_naive(&v[0], &v[1], &o),
            );
        }
    }

    /// `log(cosh r)` to 50 digits (mpmath), rounded to f64.
    const TABLE: [(f64, f64); 12] = [
        (0.0, 0.0),
        (1e-30, 5e-61),
        (1e-08, 5e-17),
        (0.0003, 4.4999999325000006e-08),
        (0.1, 0.0049916888216465305),
        (0.5, 0.12011450695827752),
        (0.99, 0.4261859945156674),
        (1.0, 0.4337808304830272),
        (1.5, 0.8554401710137968),
        (20.0, 19.306852819440056),
        (-7.0, 6.306853650968428),
        (10000.0, 9999.30685281944),
    ];

    #[test]
    fn log_cosh_stable_form_is_accurate() {
        for (r, want) in TABLE {
            let got = log_cosh_stable(r);
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want,
                "r = {r}: {got:e} vs {want:e}"
            );
            // f32: a few ulps of the f32 result, small residuals included (below
            // f32's normal range the value underflows, as it must)
            // (the f64 form is the reference for the f32 input)
            let x = r as f32;
            let got32 = log_cosh_stable(x) as f64;
            let want32 = log_cosh_stable(x as f64);
            assert!(
                (got32 - want32).abs()
                    <= 4.0 * f32::EPSILON as f64 * want32 + f32::MIN_POSITIVE as f64,
                "f32 r = {r}: {got32:e} vs {want32:e}"
            );
        }
    }

    #[test]
    fn gradient_is_tanh_to_a_few_ulps() {
        let mut rs: Vec<f64> = (-400..=400).map(|i| i as f64 * 0.05).collect();
        rs.extend([
            1e-30, 1e-8, 1e-3, 0.3, 0.999, 1.001, 9.0, 17.0, 40.0, 1e4, 1e30,
        ]);
        for r in rs.iter().flat_map(|&r| [r, -r]) {
            let want = r.tanh();
            let got = tanh_from_k(r);
            assert!(
                (got - want).abs() <= 4.0 * f64::EPSILON * want.abs(),
                "r = {r}: {got:e} vs {want:e}"
            );
            let x = r as f32;
            let want32 = (x as f64).tanh();
            let got32 = tanh_from_k(x) as f64;
            assert!(
                (got32 - want32).abs() <= 4.0 * f32::EPSILON as f64 * want32.abs(),
                "f32 r = {r}: {got32:e} vs {want32:e}"
            );
        }
    }

    #[test]
    fn log_cosh_f32_stays_finite_where_naive_overflows() {
        let r = [100.0f32, -100.0, 1e4, 0.5];
        let tape = Tape::<f32>::new();
        let p = tape.leaf(Tensor::from_vec(r.to_vec(), [4]).unwrap());
        let t = tape.leaf(Tensor::zeros([4]).unwrap());
        let o = LogCoshOptions {
            reduction: Reduction::Sum,
            denominator: None,
        };
        let naive = log_cosh_naive(&p, &t, &o).unwrap();
        assert!(
            !naive.item().unwrap().is_finite(),
            "cosh(100) overflows f32"
        );
        let gn = naive.backward().unwrap();
        assert!(gn.get(&p).unwrap().as_slice()[0].is_nan());

        let fused = log_cosh(&p, &t, &o).unwrap();
        // the same op in f64 (where cosh(100) is still finite, and the naive
        // twin agrees there)
        let tape64 = Tape::<f64>::new();
        let p64 =
            tape64.leaf(Tensor::from_vec(r.iter().map(|&x| x as f64).collect(), [4]).unwrap());
        let t64 = tape64.leaf(Tensor::zeros([4]).unwrap());
        let want = log_cosh(&p64, &t64, &o).unwrap().item().unwrap();
        let n64 = log_cosh_naive(
            &p64.narrow(0, 0, 2).unwrap(),
            &t64.narrow(0, 0, 2).unwrap(),
            &o,
        );
        assert!(
            (n64.unwrap().item().unwrap() - 2.0 * (100.0 - std::f64::consts::LN_2)).abs() < 1e-12
        );
        let got = fused.item().unwrap() as f64;
        assert!(got.is_finite());
        assert!((got - want).abs() <= 1e-6 * want.abs(), "{got} vs {want}");
        let g = fused.backward().unwrap();
        let g = g.get(&p).unwrap().to_vec();
        assert_eq!(&g[..3], &[1.0, -1.0, 1.0]);
        assert!((g[3] as f64 - 0.5f64.tanh()).abs() < 1e-7);
    }

    #[test]
    fn log_cosh_errors() {
        let tape = Tape::<f64>::new();
        let p = tape.leaf(Tensor::zeros([2, 3]).unwrap());
        let t = tape.leaf(Tensor::zeros([3, 2]).unwrap());
        let e = log_cosh(&p, &t, &LogCoshOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
        let e = log_cosh_naive(&p, &t, &LogCoshOptions::default()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ShapeMismatch);
    }
}
