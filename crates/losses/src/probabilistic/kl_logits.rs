//! Distillation KL between two sets of logits:
//! `ℓ = T² · KL(softmax(teacher/T) ‖ softmax(student/T))` per row of the last
//! axis.
//!
//! With `a = teacher/T`, `b = student/T`, `q = softmax(a)`, `p = softmax(b)`:
//! `KL = Σ_c q_c (log q_c − log p_c)`, where `log q = a − lse(a)` and
//! `log p = b − lse(b)` come from a max-shifted log-sum-exp, so logits of any
//! magnitude (±1e4 in f32) give a finite loss; the textbook route (softmax,
//! then log) takes `log 0 = −∞` there and returns NaN. Classes with `q_c = 0`
//! contribute 0. For close distributions (a KL under ¼, e.g. tiny logits or
//! student ≈ teacher) the KL and `p − q` are formed from second-order terms
//! instead, so a KL of 1e-60 is not buried in the rounding of two terms of
//! size 1e-30 (`near_kl`). The `T²` factor keeps the gradient's scale independent of
//! the temperature (Hinton et al.).
//!
//! Gradients: `∂ℓ/∂student_c = T (p_c − q_c)`,
//! `∂ℓ/∂teacher_c = T q_c (log q_c − log p_c − KL)`, the latter formed from
//! logit differences relative to the teacher's most likely class so that
//! teacher logits near 1e4 keep their precision ([`RowState`]). Forward saves
//! a few numbers per row; backward recomputes `p` and `q`
//! from the logits (or, with `sum`/`mean`, forward writes the gradients for
//! an upstream gradient of 1 while each row is in cache, and backward
//! rescales them).

use super::gaussian_kl::exp_m1_minus;
use crate::checks;
use crate::common::{
    check_option, eager_inputs, fill_two_grads, grads_as_tensors, no_batchmean, reduce, rows_map2,
    same_shape, Reduction, UnitGrads, Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::simd::{self, vectorized};
use lossgraph_tensor::{Error, Float, Shape, Tensor};
use std::mem::MaybeUninit;

/// Options of [`kl_logits`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KlLogitsOptions {
    /// How rows are combined (default `mean`, over rows).
    pub reduction: Reduction,
    /// Softmax temperature `T` (default 1.0, must be finite and > 0).
    pub temperature: f64,
}

impl Default for KlLogitsOptions {
    fn default() -> Self {
        KlLogitsOptions {
            reduction: Reduction::Mean,
            temperature: 1.0,
        }
    }
}

/// Distillation loss `T² · KL(softmax(teacher/T) ‖ softmax(student/T))` per
/// row of the last axis, reduced.
///
/// Gradient: `∂ℓ/∂student = T (p − q)`, `∂ℓ/∂teacher = T q (log q − log p − KL)`
/// with `q = softmax(teacher/T)`, `p = softmax(student/T)`.
///
/// Options: `reduction` (`mean` over rows; `"none"` gives `[...]`),
/// `temperature` (1.0).
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{kl_logits, KlLogitsOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f32>::new();
/// // logits far beyond what exp() can hold in f32
/// let student = tape.leaf(Tensor::from_vec(vec![1e4, 0.0, -1e4], [1, 3])?);
/// let teacher = tape.leaf(Tensor::from_vec(vec![-1e4, 0.0, 1e4], [1, 3])?);
/// let loss = kl_logits(&student, &teacher, &KlLogitsOptions::default())?;
/// assert_eq!(loss.item()?, 2e4); // log q − log p = 0 − (−2e4) on the teacher's class
/// let g = loss.backward()?;
/// assert_eq!(g.get(&student).unwrap().to_vec(), vec![1.0, 0.0, -1.0]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `InvalidOption` for a temperature that is not finite and > 0 or for
/// `batchmean`; `ShapeMismatch` when the shapes differ or the inputs are 0-d.
pub fn kl_logits<T: Float>(
    student: &Var<T>,
    teacher: &Var<T>,
    opts: &KlLogitsOptions,
) -> Result<Var<T>> {
    let layout = validate(student, teacher, opts)?;
    let op = KlLogits {
        reduction: opts.reduction,
        temperature: opts.temperature,
        layout,
        eager: eager_inputs(opts.reduction, &[student, teacher]),
    };
    let out = student.tape().clone().apply(op, &[student, teacher])?;
    checks::logits("kl_logits", "student", student, true);
    checks::logits("kl_logits", "teacher", teacher, true);
    Ok(out)
}

/// Rows of the last axis: `rows` rows of `c` classes; `out` the `[...]` shape.
struct Rows {
    rows: usize,
    c: usize,
    out: Shape,
}

fn validate<T: Float>(s: &Var<T>, t: &Var<T>, opts: &KlLogitsOptions) -> Result<Rows> {
    let (temp, op) = (opts.temperature, "kl_logits");
    check_option(
        op,
        "temperature",
        temp,
        temp > 0.0 && temp.is_finite(),
        "(0, ∞)",
    )?;
    no_batchmean(op, opts.reduction)?;
    let shape = s.shape();
    same_shape(op, &shape, &t.shape(), "student and teacher")?;
    let dims = shape.dims();
    let Some((&c, lead)) = dims.split_last() else {
        return Err(Error::shape(op, &[dims], "logits need a class axis [..., C]").into());
    };
    Ok(Rows {
        rows: lead.iter().product(),
        c,
        out: Shape::from(lead),
    })
}

/// The fused op. Rows are spread over rayon in blocks; each row is a few
/// vectorised passes while it is in cache (two maxima, two sums of
/// exponentials, the KL sum, then the gradients). With `sum` or `mean` and
/// an input that needs a gradient, forward also writes the gradients for an
/// upstream gradient of 1 ([`eager_inputs`]) and backward only rescales
/// them; otherwise backward recomputes them from the saved per-row numbers.
struct KlLogits {
    reduction: Reduction,
    temperature: f64,
    layout: Rows,
    /// Which inputs get their gradient in forward.
    eager: Option<Vec<bool>>,
}

/// Per row, what forward computes once and backward reuses.
///
/// Every log-probability is formed from a *difference* of logits, never as
/// `x/T − lse` (two numbers near 1e4 for logits near 1e4, whose rounding is
/// then multiplied back by a log-ratio of the same size): `log q_c =
/// (t_c − max t)/T − ln S_t` with `S_t = Σ e^((t_k − max t)/T) ∈ [1, C]`, and
/// likewise for `p`. The teacher gradient needs `d_c − KL` with
/// `d = log q − log p`; written relative to the teacher's most likely class
/// `r` it is `δ_c − Σ_k q_k δ_k` with `δ_c = ((t_c − t_r) − (s_c − s_r))/T`,
/// so `δ_r = 0` exactly and the classes that carry the probability mass see
/// no cancellation between two terms near `KL`.
#[derive(Debug, Clone, Copy)]
struct RowState<T> {
    /// `max student`, `max teacher` (= `t_r`).
    max_s: T,
    max_t: T,
    /// `ln S_s`, `ln S_t` (each in `[0, ln C]`).
    ln_ss: T,
    ln_st: T,
    /// The student's logit at the teacher's most likely class, `s_r`.
    s_ref: T,
    /// `Σ_k q_k δ_k`.
    q_delta: T,
    /// The unscaled KL, `d_r + Σ_k q_k δ_k` (or, for close distributions,
    /// [`near_kl`]'s form of it).
    kl: T,
    /// For close distributions ([`near_kl`]), `L = log1p(X)`, with which
    /// `p_c − q_c = q_c·expm1(−(x_c + L))` keeps its digits.
    near: Option<T>,
}

impl<T: Float> RowState<T> {
    /// A row's numbers before its sums: both maxima, log-sums and `s_r`.
    fn new(max_s: T, max_t: T, ln_ss: T, ln_st: T, s_ref: T) -> Self {
        let zero = T::zero();
        RowState {
            max_s,
            max_t,
            ln_ss,
            ln_st,
            s_ref,
            q_delta: zero,
            kl: zero,
            near: None,
        }
    }
    /// `p_c` from the student's logit `s_c` (`inv = 1/T`).
    #[inline(always)]
    fn p(&self, sk: T, inv: T) -> T {
        ((sk - self.max_s) * inv - self.ln_ss).fast_exp()
    }
    /// `q_c` from the teacher's logit `t_c`.
    #[inline(always)]
    fn q(&self, tk: T, inv: T) -> T {
        ((tk - self.max_t) * inv - self.ln_st).fast_exp()
    }
    /// `δ_c = ((t_c − t_r) − (s_c − s_r))/T`, exactly 0 at `c = r`.
    #[inline(always)]
    fn delta(&self, sk: T, tk: T, inv: T) -> T {
        ((tk - self.max_t) - (sk - self.s_ref)) * inv
    }
}

/// What forward keeps: the per-row numbers, and the gradients it computed.
struct Saved<T> {
    rows: Vec<RowState<T>>,
    unit: UnitGrads<T>,
}

/// `(max x, ln Σ_c e^((x_c − max x)/T))` with `inv = 1/T` (T > 0 keeps the
/// order); the sum is at least 1 (the max's own term). Vectorised, call
/// inside [`vectorized`]. A non-finite max is returned with a NaN log-sum.
#[inline(always)]
fn max_and_ln_sum<T: Float>(row: &[T], inv: T) -> (T, T) {
    let m = simd::max(row);
    if !m.is_finite() {
        return (m, T::nan());
    }
    let s = simd::sum_map(
        row,
        #[inline(always)]
        |x| ((x - m) * inv).fast_exp(),
    );
    (m, s.fast_ln())
}

/// The first index of `m` in `row` (0 when absent, as for NaN): compares in
/// blocks of 64 that vectorise, then a scalar search inside the block.
#[inline(always)]
fn index_of<T: Float>(row: &[T], m: T) -> usize {
    let mut base = 0;
    for block in row.chunks(64) {
        if block.iter().fold(false, |hit, &x| hit | (x == m)) {
            return base + block.iter().position(|&x| x == m).unwrap_or(0);
        }
        base += block.len();
    }
    0
}

/// Row `(sr, tr)`'s numbers ([`RowState`]); a class with `q_c = 0`
/// contributes 0 (a select on the computed term, so the loop vectorises).
#[inline(always)]
fn row_state<T: Float>(sr: &[T], tr: &[T], inv: T) -> RowState<T> {
    let zero = T::zero();
    if sr.is_empty() {
        // no classes: a KL of 0, and no gradient entries to write
        return RowState::new(zero, zero, zero, zero, zero);
    }
    let (max_s, ln_ss) = max_and_ln_sum(sr, inv);
    let (max_t, ln_st) = max_and_ln_sum(tr, inv);
    let mut st = RowState::new(max_s, max_t, ln_ss, ln_st, sr[index_of(tr, max_t)]);
    st.q_delta = simd::sum_map2(
        sr,
        tr,
        #[inline(always)]
        |sk, tk| {
            let q = st.q(tk, inv);
            let v = q * st.delta(sk, tk, inv);
            if q != zero {
                v
            } else {
                zero
            }
        },
    );
    // d_r = log q_r − log p_r, with log q_r = −ln S_t
    let d_ref = -ln_st - ((st.s_ref - max_s) * inv - ln_ss);
    st.kl = d_ref + st.q_delta;
    if st.kl.abs() < T::of(0.25) {
        if let Some((kl, l)) = near_kl(sr, tr, inv, &st) {
            st.kl = kl;
            st.near = Some(l);
        }
    }
    st
}

/// `X − log1p(X)` for `X > −1`: its series `X²(½ − X/3 + X²/4 − X³/5)` for
/// `|X| < 1e-3` (where the subtraction would cancel), else the subtraction.
#[inline(always)]
fn x_minus_ln_1p<T: Float>(x: T) -> T {
    let series =
        x * x * (T::of(0.5) + x * (T::of(-1.0 / 3.0) + x * (T::of(0.25) + x * T::of(-0.2))));
    if x.abs() < T::of(1e-3) {
        series
    } else {
        x - x.ln_1p()
    }
}

/// The KL of a row whose two distributions are close (`KL < ¼`), where
/// `d_r + Σ q δ` is a difference of two terms far larger than the KL (at
/// logits of 1e-30, two terms of 1e-30 for a KL of 1e-60, and all of it
/// rounding noise). With `x_c = δ_c − Σ_k q_k δ_k` (the teacher gradient's
/// own numbers), `Σ_c p_c = 1` gives `d_r = −Σ q δ + log1p(X)`,
/// `X = Σ_c q_c·expm1(−x_c)`, so `KL = log1p(X) + Σ_c q_c x_c
/// = Σ_c q_c·φ(x_c) − (X − log1p(X))` with `φ(x) = e^{−x} − 1 + x ≥ 0`:
/// every term is second order in `x` and formed without cancellation
/// ([`exp_m1_minus`]), and `X = e^{KL} − 1` is small. Returns the KL and
/// `L = log1p(X)`, or `None` when a term is not finite (a class with a tiny
/// `q_c` far from `p_c`); the caller then keeps the first form.
#[inline(always)]
fn near_kl<T: Float>(sr: &[T], tr: &[T], inv: T, st: &RowState<T>) -> Option<(T, T)> {
    let zero = T::zero();
    let c0 = st.q_delta;
    let phi = simd::sum_map2(
        sr,
        tr,
        #[inline(always)]
        |sk, tk| {
            let q = st.q(tk, inv);
            let v = q * exp_m1_minus(c0 - st.delta(sk, tk, inv));
            if q != zero {
                v
            } else {
                zero
            }
        },
    );
    let x = simd::sum_map2(
        sr,
        tr,
        #[inline(always)]
        |sk, tk| {
            let q = st.q(tk, inv);
            let v = q * (c0 - st.delta(sk, tk, inv)).fast_exp_m1();
            if q != zero {
                v
            } else {
                zero
            }
        },
    );
    let kl = phi - x_minus_ln_1p(x);
    (kl.is_finite() && x.is_finite()).then(|| (kl, x.ln_1p()))
}

/// Row gradients for upstream gradient `u`: `∂/∂student = uT (p − q)`,
/// `∂/∂teacher = uT q (δ − Σ q δ)` (0 where `q = 0`); writes every
/// slot of each present output, one branch-free loop per case.
#[inline(always)]
fn row_grads<T: Float>(
    sr: &[T],
    tr: &[T],
    inv: T,
    ut: T,
    st: RowState<T>,
    ds: Option<&mut [MaybeUninit<T>]>,
    dt: Option<&mut [MaybeUninit<T>]>,
) {
    let n = sr.len();
    let tr = &tr[..n];
    // close distributions: p − q = q·expm1(−(x + L)) (see [`near_kl`]),
    // falling back to p − q where that is not finite
    let dstudent = |sk: T, tk: T| match st.near {
        None => ut * (st.p(sk, inv) - st.q(tk, inv)),
        Some(l) => {
            let (p, q) = (st.p(sk, inv), st.q(tk, inv));
            let x = st.delta(sk, tk, inv) - st.q_delta;
            let v = q * (-(x + l)).fast_exp_m1();
            ut * if v.is_finite() { v } else { p - q }
        }
    };
    let dteacher = |sk: T, tk: T| {
        let q = st.q(tk, inv);
        let d = ut * q * (st.delta(sk, tk, inv) - st.q_delta);
        if q == T::zero() {
            T::zero()
        } else {
            d
        }
    };
    if let Some(ds) = ds {
        let ds = &mut ds[..n];
        for k in 0..n {
            ds[k] = MaybeUninit::new(dstudent(sr[k], tr[k]));
        }
    }
    if let Some(dt) = dt {
        let dt = &mut dt[..n];
        for k in 0..n {
            dt[k] = MaybeUninit::new(dteacher(sr[k], tr[k]));
        }
    }
}

impl KlLogits {
    /// Every row's numbers (from `saved`, or computed when `None`), and the
    /// gradients for upstream gradients `up` of the inputs in `need`.
    fn pass<T: Float>(
        &self,
        s: &[T],
        t: &[T],
        saved: Option<&[RowState<T>]>,
        up: Upstream<'_, T>,
        need: &[bool],
    ) -> (Vec<RowState<T>>, Vec<Option<Vec<T>>>) {
        let (rows, c) = (self.layout.rows, self.layout.c);
        let temp = T::of(self.temperature);
        let inv = T::one() / temp;
        fill_two_grads(rows * c, need, |ds, dt| {
            rows_map2(rows, c, ds, dt, |r, ds, dt| {
                let (sr, tr) = (&s[r * c..(r + 1) * c], &t[r * c..(r + 1) * c]);
                vectorized(
                    #[inline(always)]
                    || {
                        let st = match saved {
                            Some(sv) => sv[r],
                            None => row_state(sr, tr, inv),
                        };
                        if ds.is_some() || dt.is_some() {
                            row_grads(sr, tr, inv, up.at(r) * temp, st, ds, dt);
                        }
                        st
                    },
                )
            })
        })
    }
}

impl<T: Float> CustomOp<T> for KlLogits {
    type Saved = Saved<T>;
    fn name(&self) -> &str {
        "kl_logits"
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, Saved<T>)> {
        let (s, t) = (x[0].as_slice(), x[1].as_slice());
        let rows = self.layout.rows;
        let temp = T::of(self.temperature);
        let one = Tensor::scalar(T::one());
        let up = Upstream::new(&one, self.reduction, rows);
        let need = self.eager.as_deref().unwrap_or(&[]);
        let (states, grads) = self.pass(s, t, None, up, need);
        let loss: Vec<T> = states.iter().map(|st| temp * temp * st.kl).collect();
        let out = reduce(loss, self.layout.out.clone(), self.reduction, rows)?;
        let unit = UnitGrads::new(self.eager.is_some().then_some(grads));
        Ok((out, Saved { rows: states, unit }))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, Saved<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let (s, t) = (cx.inputs[0].as_slice(), cx.inputs[1].as_slice());
        let grads = cx
            .saved
            .unit
            .take_scaled_or(cx.grad_output, cx.needs_grad, || {
                let up = Upstream::new(cx.grad_output, self.reduction, self.layout.rows);
                self.pass(s, t, Some(&cx.saved.rows), up, cx.needs_grad).1
            });
        grads_as_tensors(grads, cx.inputs[0].shape())
    }
}

/// The naive twin of [`kl_logits`]: `q = softmax(teacher/T)`,
/// `p = softmax(student/T)`, then `T² Σ q (log q − log p)` with primitive ops.
/// It takes `log 0 = −∞` once a probability underflows, and returns NaN.
///
/// # Errors
/// As [`kl_logits`].
pub fn kl_logits_naive<T: Float>(
    student: &Var<T>,
    teacher: &Var<T>,
    opts: &KlLogitsOptions,
) -> Result<Var<T>> {
    let layout = validate(student, teacher, opts)?;
    let inv = T::one() / T::of(opts.temperature);
    let q = teacher.mul_scalar(inv)?.softmax()?;
    let p = student.mul_scalar(inv)?.softmax()?;
    let kl = q.mul(&q.log()?.sub(&p.log()?)?)?;
    let axis = student.shape().ndim() - 1;
    let t2 = T::of(opts.temperature * opts.temperature);
    let rows = kl.sum(axis, false)?.mul_scalar(t2)?;
    debug_assert_eq!(rows.shape(), layout.out);
    crate::common::reduce_naive(rows, opts.reduction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_family, check_twins, Case};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::ErrorKind;

    #[test]
    fn kl_logits_gradcheck_and_twin() {
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            for temperature in [1.0, 2.5, 0.5] {
                let o = KlLogitsOptions {
                    reduction,
                    temperature,
                };
                for (shape, seed) in [(&[5][..], 1), (&[3, 4][..], 2), (&[2, 2, 3][..], 3)] {
                    let mut c = Case::normal(2, shape, seed);
                    c.inputs[1] = c.inputs[1].mul_scalar(2.0);
                    check_family(
                        &c,
                        |v| kl_logits(&v[0], &v[1], &o),
                        |v| kl_logits_naive(&v[0], &v[1], &o),
                    );
                }
            }
        }
    }

    /// Logits of ±1e4 in f32: the twin's `log softmax` hits `log 0`; the fused
    /// op stays finite and matches its own f64 value.
    #[test]
    fn f32_extreme_logits_stay_finite() {
        let s = vec![1e4, 0.0, -1e4, 5.0, -3e3, 2e3];
        let t = vec![-1e4, 0.0, 1e4, 1e3, 0.0, -2e3];
        for temperature in [1.0, 3.0] {
            let o = KlLogitsOptions {
                reduction: Reduction::None,
                temperature,
            };
            let run = |tape: &Tape<f32>, naive: bool| {
                let sv = tape.leaf(Tensor::from_vec(s.clone(), [2, 3]).unwrap().cast());
                let tv = tape.leaf(Tensor::from_vec(t.clone(), [2, 3]).unwrap().cast());
                let out = if naive {
                    kl_logits_naive(&sv, &tv, &o)
                } else {
                    kl_logits(&sv, &tv, &o)
                }
                .unwrap();
                let g = out.backward_with(Tensor::ones([2]).unwrap()).unwrap();
                (out.value(), g.get_or_zeros(&sv), g.get_or_zeros(&tv))
            };
            let tape = Tape::<f32>::new();
            let (naive, _, _) = run(&tape, true);
            assert!(!naive.all_finite(), "the twin should overflow: {naive:?}");
            let (out, gs, gt) = run(&tape, false);
            assert!(out.all_finite() && gs.all_finite() && gt.all_finite());

            let t64 = Tape::<f64>::new();
            let (s64, tt64) = (
                t64.leaf(Tensor::from_vec(s.clone(), [2, 3]).unwrap()),
                t64.leaf(Tensor::from_vec(t.clone(), [2, 3]).unwrap()),
            );
            let want = kl_logits(&s64, &tt64, &o).unwrap();
            let g64 = want.backward_with(Tensor::ones([2]).unwrap()).unwrap();
            let close = |got: &Tensor<f32>, want: &Tensor<f64>| {
                for (&g, &w) in got.as_slice().iter().zip(want.as_slice()) {
                    assert!((g as f64 - w).abs() <= 1e-5 + 1e-5 * w.abs(), "{g} vs {w}");
                }
            };
            close(&out, &want.value());
            close(&gs, &g64.get_or_zeros(&s64));
            close(&gt, &g64.get_or_zeros(&tt64));
        }
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let a = tape.leaf(Tensor::zeros([2, 3]).unwrap());
        let b = tape.leaf(Tensor::zeros([3, 2]).unwrap());
        let s0 = tape.leaf(Tensor::scalar(1.0));
        let kind = |r: Result<Var<f64>>| r.err().unwrap().kind();
        let o = KlLogitsOptions::default();
        assert_eq!(kind(kl_logits(&a, &b, &o)), ErrorKind::ShapeMismatch);
        assert_eq!(kind(kl_logits(&s0, &s0, &o)), ErrorKind::ShapeMismatch);
        assert_eq!(kind(kl_logits_naive(&a, &b, &o)), ErrorKind::ShapeMismatch);
        for temperature in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let o = KlLogitsOptions { temperature, ..o };
            assert_eq!(kind(kl_logits(&a, &a, &o)), ErrorKind::InvalidOption);
            assert_eq!(kind(kl_logits_naive(&a, &a, &o)), ErrorKind::InvalidOption);
        }
        let o = KlLogitsOptions {
            reduction: Reduction::BatchMean,
            ..o
        };
        assert_eq!(kind(kl_logits(&a, &a, &o)), ErrorKind::InvalidOption);
    }

    #[test]
    fn equal_logits_give_zero() {
        let tape = Tape::<f64>::new();
        let z = Tensor::randn([4, 5], 0.0, 1.0, 11).unwrap();
        let (s, t) = (tape.leaf(z.clone()), tape.leaf(z));
        let loss = kl_logits(&s, &t, &KlLogitsOptions::default()).unwrap();
        assert!(loss.item().unwrap().abs() < 1e-15);
    }

    #[test]
    fn large_inputs_and_a_second_backward_agree_with_twin() {
        // above the parallel threshold
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            let o = KlLogitsOptions {
                reduction,
                temperature: 2.0,
            };
            let c = Case::normal(2, &[70, 500], 23);
            check_twins(
                &c,
                |v| kl_logits(&v[0], &v[1], &o),
                |v| kl_logits_naive(&v[0], &v[1], &o),
            );
            let tape = Tape::<f64>::new();
            let (s, t) = (
                tape.leaf(c.inputs[0].clone()),
                tape.leaf(c.inputs[1].clone()),
            );
            let out = kl_logits(&s, &t, &o).unwrap();
            let cot = Tensor::full(out.shape(), 0.5).unwrap();
            let g1 = out.backward_with(cot.clone()).unwrap();
            let g2 = out.backward_with(cot).unwrap();
            for v in [&s, &t] {
                assert_close(
                    "second backward",
                    &g2.get_or_zeros(v),
                    &g1.get_or_zeros(v),
                    1e-12,
                );
            }
        }
    }
}
