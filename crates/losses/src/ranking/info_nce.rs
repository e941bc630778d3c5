//! InfoNCE: each query must pick out its own key among all keys of the batch,
//! `ℓᵢ = −log softmax(sim(qᵢ, K)/τ)ᵢ = lseⱼ(Sᵢⱼ) − Sᵢᵢ`, `S = sim(Q, K)/τ`.
//!
//! Row `i` of `key` is query `i`'s positive; every other row is a negative, so
//! the batch itself is the set of negatives and its composition is part of the
//! loss. `sim` is the cosine similarity by default (rows are L2-normalised
//! first, as `F.normalize`, with norms clamped at 1e-12), else the dot product.
//! A small temperature sharpens the softmax and concentrates the gradient on
//! the hardest negatives; the log-sum-exp form keeps `S/τ` of any size finite.
//! `symmetric` also scores each key against all queries (CLIP) and averages the
//! two directions per pair.

use super::for_row_blocks;
use crate::common::{
    check_option, eager_inputs, filled, grads_as_tensors_of, max_abs_map2, no_batchmean,
    norm_from_sum_sq, pow2_scale, reduce, reduce_naive, scaled_sum_sq2, slots, unfilled, Reduction,
    UnitGrads, Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::simd::{self, vectorized};
use lossgraph_tensor::{Error, Float, Shape, Tensor};
use std::mem::MaybeUninit;

const OP: &str = "info_nce";
/// `F.normalize`'s floor on a row norm.
const NORM_EPS: f64 = 1e-12;

/// Options of [`info_nce`].
#[derive(Debug, Clone, PartialEq)]
pub struct InfoNceOptions {
    /// How pairs are combined (default `mean`).
    pub reduction: Reduction,
    /// The softmax temperature τ (default 0.1, > 0).
    pub temperature: f64,
    /// Cosine similarity (default true); false uses the plain dot product.
    pub normalize: bool,
    /// Also the key→query direction, averaged with query→key (default false).
    pub symmetric: bool,
}

impl Default for InfoNceOptions {
    fn default() -> Self {
        InfoNceOptions {
            reduction: Reduction::Mean,
            temperature: 0.1,
            normalize: true,
            symmetric: false,
        }
    }
}

fn validate<T: Float>(q: &Var<T>, k: &Var<T>, o: &InfoNceOptions) -> Result<()> {
    no_batchmean(OP, o.reduction)?;
    let t = o.temperature;
    check_option(OP, "temperature", t, t > 0.0 && t.is_finite(), "(0, ∞)")?;
    let (dq, dk) = (q.dims(), k.dims());
    if dq != dk || dq.len() != 2 {
        return Err(Error::shape(OP, &[&dq, &dk], "query and key must be [N, D] alike").into());
    }
    Ok(())
}

/// Rows of `x` (`[N, D]`) divided by their norms clamped at `NORM_EPS`;
/// returns the normalised tensor and the unclamped norms. Blocks of rows
/// over rayon, each row's norm a vectorised sum; a sum of squares that
/// overflows (rows of 1e20 in f32) is redone scaled ([`norm_from_sum_sq`]),
/// so x̂ and the norm stay finite and accurate at any magnitude.
fn normalize_rows<T: Float>(x: &Tensor<T>) -> Result<(Tensor<T>, Vec<T>)> {
    let d = x.shape().last_dim();
    let rows = x.dims()[0];
    let eps = T::of(NORM_EPS);
    let xs = x.as_slice();
    let mut out = unfilled(rows * d);
    let mut norms = unfilled(rows);
    for_row_blocks(
        rows,
        d,
        [
            (Some(slots(&mut out, rows * d)), d),
            (Some(slots(&mut norms, rows)), 1),
        ],
        |r, [o, nr]| {
            let (o, nr) = (o.unwrap_or_default(), nr.unwrap_or_default());
            let xs = &xs[r.start * d..r.end * d];
            vectorized(
                #[inline(always)]
                || {
                    for (i, n_out) in nr.iter_mut().enumerate() {
                        let (x, o) = (&xs[i * d..(i + 1) * d], &mut o[i * d..(i + 1) * d]);
                        let ss = simd::sum_map(
                            x,
                            #[inline(always)]
                            |v| v * v,
                        );
                        // a sum of squares that overflowed: the norm from a
                        // scaled sum (one compare per row otherwise; one that
                        // underflowed is below eps, where the clamp decides)
                        let n = if ss <= T::max_value() {
                            ss.sqrt()
                        } else {
                            norm_from_sum_sq(ss, x, x, |v, _| v).0
                        };
                        if !n.is_infinite() {
                            let c = n.max(eps);
                            for j in 0..d {
                                o[j] = MaybeUninit::new(x[j] / c);
                            }
                        } else {
                            // a norm past the largest float (finite rows):
                            // x/‖x‖ as (x/s)/‖x/s‖ with s a power of two
                            let sc = pow2_scale(max_abs_map2(x, x, |v, _| v)).unwrap_or(T::one());
                            let ns = scaled_sum_sq2(x, x, sc, |v, _| v).sqrt();
                            for j in 0..d {
                                o[j] = MaybeUninit::new((x[j] / sc) / ns);
                            }
                        }
                        *n_out = MaybeUninit::new(n);
                    }
                },
            )
        },
    );
    // SAFETY: the blocks cover every row and each row wrote its norm and all
    // of its elements.
    unsafe {
        filled(&mut out, rows * d);
        filled(&mut norms, rows);
    }
    Ok((Tensor::from_vec(out, x.shape().clone())?, norms))
}

/// Back through `x̂ = x / max(‖x‖, eps)`, in place on the gradient `g` of
/// `x̂` (`[N, D]` row-major): `(g − x̂(x̂·g))/‖x‖`, or `g/eps` where the norm
/// is below eps (the clamp then passes no gradient to the norm, as
/// `clamp_min`).
fn normalize_backward<T: Float>(xhat: &Tensor<T>, norms: &[T], g: &mut [T]) {
    let d = xhat.shape().last_dim();
    let eps = T::of(NORM_EPS);
    let xh = xhat.as_slice();
    let rows = norms.len();
    for_row_blocks(rows, d, [(Some(g), d)], |r, [g]| {
        let g = g.unwrap_or_default();
        let (xh, norms) = (&xh[r.start * d..r.end * d], &norms[r]);
        vectorized(
            #[inline(always)]
            || {
                for (i, &n) in norms.iter().enumerate() {
                    let (x, g) = (&xh[i * d..(i + 1) * d], &mut g[i * d..(i + 1) * d]);
                    if n < eps {
                        g.iter_mut().for_each(|g| *g /= eps);
                    } else {
                        let dot = simd::sum_map2(
                            x,
                            g,
                            #[inline(always)]
                            |x, g| x * g,
                        );
                        for j in 0..d {
                            g[j] = (g[j] - x[j] * dot) / n;
                        }
                    }
                }
            },
        )
    });
}

/// `log Σⱼ e^{x_j}` of a row with its max `m` (`m` itself when `m` is not
/// finite, as `logsumexp_row`), from the vectorised [`simd::sum_exp_shift`].
#[inline(always)]
fn lse_of_row<T: Float>(x: &[T], m: T) -> T {
    if m.is_finite() {
        m + simd::sum_exp_shift(x, m).fast_ln()
    } else {
        m
    }
}

/// log-sum-exp of every column of a row-major `[n, n]` matrix (the
/// symmetric direction only): a running max, then a running sum of
/// exponentials, each a vectorised loop across the columns of a row.
fn column_lse<T: Float>(s: &[T], n: usize) -> Vec<T> {
    vectorized(
        #[inline(always)]
        || {
            let mut m = vec![T::neg_infinity(); n];
            for row in s.chunks_exact(n.max(1)) {
                for (m, &x) in m.iter_mut().zip(row) {
                    // NaN sticks: once m is NaN nothing is larger
                    *m = if x > *m || x.is_nan() { x } else { *m };
                }
            }
            let mut sum = vec![T::zero(); n];
            for row in s.chunks_exact(n.max(1)) {
                for ((acc, &m), &x) in sum.iter_mut().zip(&m).zip(row) {
                    *acc += (x - m).fast_exp();
                }
            }
            m.iter()
                .zip(sum)
                .map(|(&m, s)| if m.is_finite() { m + s.fast_ln() } else { m })
                .collect()
        },
    )
}

/// Per-pair losses and the optional gradients `[dq, dk]`.
type LossAndGrads<T> = (Vec<T>, Vec<Option<Vec<T>>>);

/// The fused op. Forward and backward share [`InfoNce::pass`]: normalise the
/// rows, `S = q̂k̂ᵀ/τ` through gemm, then one pass over the rows of `S` (blocks
/// of rows over rayon, vectorised `fast_exp`) for the log-sum-exps, the
/// losses and, when gradients are wanted, `∂ℓ/∂S` written in place over `S`;
/// then two gemms and the normalisation's backward. With `sum`/`mean` and a
/// gradient wanted, forward runs it for an upstream gradient of 1
/// ([`eager_inputs`]) and backward only rescales; otherwise backward runs it
/// again with the real upstream gradients (nothing is saved but those).
struct InfoNce<T> {
    inv_t: T,
    normalize: bool,
    symmetric: bool,
    reduction: Reduction,
    /// Which inputs get their gradient in forward.
    eager: Option<Vec<bool>>,
}

impl<T: Float> InfoNce<T> {
    /// The operand as used (normalised when asked) and its row norms (empty
    /// without `normalize`).
    fn operand(&self, x: &Tensor<T>) -> Result<(Tensor<T>, Vec<T>)> {
        if self.normalize {
            normalize_rows(x)
        } else {
            Ok((x.clone(), Vec::new()))
        }
    }

    /// The loss of every pair and, when `up` is given, the gradients
    /// `[dq, dk]` of the inputs in `need` for those upstream gradients.
    fn pass(
        &self,
        q: &Tensor<T>,
        k: &Tensor<T>,
        up: Option<Upstream<'_, T>>,
        need: &[bool],
    ) -> Result<LossAndGrads<T>> {
        let n = q.dims()[0];
        let want = |i: usize| up.is_some() && need.get(i).copied().unwrap_or(false);
        let grads = want(0) || want(1);
        let (qh, q_norms) = self.operand(q)?;
        let (kh, k_norms) = self.operand(k)?;
        let mut s = qh.matmul_nt(&kh)?.into_vec();
        let (inv_t, sym) = (self.inv_t, self.symmetric);
        // dS = w·uᵢ(P − I) [+ w·uⱼ(Pᶜ − I)]: ∂/∂(q̂k̂ᵀ) is ∂/∂S times 1/τ
        let w = if sym { T::of(0.5) } else { T::one() } * inv_t;
        let up = up.unwrap_or(Upstream::Same(T::one()));
        let mut row_lse = vec![T::zero(); n];
        let mut diag = vec![T::zero(); n];
        // Rows of S: scale by 1/τ, max, log-sum-exp. Without the symmetric
        // term and with gradients, also P = e^{S − lse} and dS in place,
        // while the row is in cache (one exp per element).
        let in_place = grads && !sym;
        for_row_blocks(
            n,
            n,
            [
                (Some(&mut s[..]), n),
                (Some(&mut row_lse[..]), 1),
                (Some(&mut diag[..]), 1),
            ],
            |r, [sr, lr, dr]| {
                let (sr, lr, dr) = (
                    sr.unwrap_or_default(),
                    lr.unwrap_or_default(),
                    dr.unwrap_or_default(),
                );
                let up = up.range(r.clone());
                vectorized(
                    #[inline(always)]
                    || {
                        for (i, row) in sr.chunks_exact_mut(n).enumerate() {
                            let gi = r.start + i;
                            row.iter_mut().for_each(|v| *v *= inv_t);
                            let m = simd::max(row);
                            dr[i] = row[gi];
                            if !in_place {
                                lr[i] = lse_of_row(row, m);
                                continue;
                            }
                            let c = w * up.at(i);
                            if m.is_finite() {
                                row.iter_mut().for_each(|v| *v = (*v - m).fast_exp());
                                let total = simd::sum(row);
                                lr[i] = m + total.fast_ln();
                                let inv = T::one() / total;
                                let p_ii = row[gi] * inv;
                                row.iter_mut().for_each(|v| *v = c * (*v * inv));
                                row[gi] = c * (p_ii - T::one());
                            } else {
                                // a non-finite row (non-finite inputs): as
                                // logsumexp_row, lse = max, and P = e^{S − lse}
                                lr[i] = m;
                                let x = row[gi];
                                row.iter_mut().for_each(|v| *v = c * (*v - m).fast_exp());
                                row[gi] = c * ((x - m).fast_exp() - T::one());
                            }
                        }
                    },
                )
            },
        );
        let col_lse = if sym { column_lse(&s, n) } else { Vec::new() };
        let half = T::of(0.5);
        let loss: Vec<T> = (0..n)
            .map(|i| {
                let d = diag[i];
                if sym {
                    half * ((row_lse[i] - d) + (col_lse[i] - d))
                } else {
                    row_lse[i] - d
                }
            })
            .collect();
        if !grads {
            return Ok((loss, vec![None, None]));
        }
        if sym {
            // dS from the kept S: both softmaxes, two exps per element
            let (row_lse, col_lse) = (&row_lse, &col_lse);
            for_row_blocks(n, n, [(Some(&mut s[..]), n)], |r, [sr]| {
                let sr = sr.unwrap_or_default();
                let ur = up.range(r.clone());
                vectorized(
                    #[inline(always)]
                    || {
                        for (i, row) in sr.chunks_exact_mut(n).enumerate() {
                            let gi = r.start + i;
                            let (ui, lse) = (ur.at(i), row_lse[gi]);
                            for (j, v) in row.iter_mut().enumerate() {
                                let delta = if gi == j { T::one() } else { T::zero() };
                                let pr = (*v - lse).fast_exp() - delta;
                                let pc = (*v - col_lse[j]).fast_exp() - delta;
                                *v = w * (ui * pr + up.at(j) * pc);
                            }
                        }
                    },
                )
            });
        }
        let dz = Tensor::from_vec(s, [n, n])?;
        // ∂/∂q̂ = dS·k̂, ∂/∂k̂ = dSᵀ·q̂, then back through the normalisation
        let back = |g: Tensor<T>, xh: &Tensor<T>, norms: &[T]| {
            let mut g = g.into_vec();
            if self.normalize {
                normalize_backward(xh, norms, &mut g);
            }
            g
        };
        let dq = want(0)
            .then(|| dz.matmul(&kh).map(|g| back(g, &qh, &q_norms)))
            .transpose()?;
        let dk = want(1)
            .then(|| dz.matmul_tn(&qh).map(|g| back(g, &kh, &k_norms)))
            .transpose()?;
        Ok((loss, vec![dq, dk]))
    }
}

impl<T: Float> CustomOp<T> for InfoNce<T> {
    type Saved = UnitGrads<T>;
    fn name(&self) -> &str {
        OP
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, UnitGrads<T>)> {
        let n = x[0].dims()[0];
        let one = Tensor::scalar(T::one());
        let (loss, grads) = match &self.eager {
            Some(need) => {
                let up = Upstream::new(&one, self.reduction, n);
                self.pass(x[0], x[1], Some(up), need)?
            }
            None => self.pass(x[0], x[1], None, &[])?,
        };
        let out = reduce(loss, Shape::from([n]), self.reduction, n)?;
        Ok((out, UnitGrads::new(self.eager.is_some().then_some(grads))))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, UnitGrads<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let x = &cx.inputs;
        let grads = match cx.saved.take_scaled(cx.grad_output, cx.needs_grad) {
            Some(g) => g,
            None => {
                let up = Upstream::new(cx.grad_output, self.reduction, x[0].dims()[0]);
                self.pass(&x[0], &x[1], Some(up), cx.needs_grad)?.1
            }
        };
        grads_as_tensors_of(grads, &[x[0].shape(), x[1].shape()])
    }
}

/// InfoNCE `cross_entropy(sim(query, key)/τ, arange(N))`, reduced; `"none"`
/// gives one loss per pair, `[N]`.
///
/// Gradient: with `P` the row softmax of `S` (and `Pᶜ` the column softmax when
/// symmetric), `∂ℓ/∂S = U(P − I)` (averaged with `(Pᶜ − I)U` when
/// symmetric, `U = diag(upstream)`); then `∂/∂q̂ = (∂ℓ/∂S)k̂/τ`,
/// `∂/∂k̂ = (∂ℓ/∂S)ᵀq̂/τ`, and back through the normalisation
/// `∂/∂x = (g − x̂(x̂·g))/‖x‖`.
///
/// Options: `temperature` (0.1, > 0), `normalize` (true), `symmetric` (false),
/// `reduction` (`mean`).
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{info_nce, InfoNceOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let q = tape.leaf(Tensor::from_vec(vec![1.0, 0.0, 0.0, 2.0], [2, 2])?);
/// let k = tape.leaf(Tensor::from_vec(vec![3.0, 0.0, 0.0, 1.0], [2, 2])?);
/// let o = InfoNceOptions { temperature: 1.0, ..Default::default() };
/// let loss = info_nce(&q, &k, &o)?;
/// // cosine similarities are the identity: ℓ = log(e + 1) − 1 for each row
/// assert!((loss.item()? - ((1f64.exp() + 1.0).ln() - 1.0)).abs() < 1e-12);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` unless `query` and `key` are both `[N, D]` of one shape;
/// `InvalidOption` for a temperature that is not finite and > 0, or `batchmean`.
pub fn info_nce<T: Float>(query: &Var<T>, key: &Var<T>, opts: &InfoNceOptions) -> Result<Var<T>> {
    validate(query, key, opts)?;
    let op = InfoNce {
        inv_t: T::of(1.0 / opts.temperature),
        normalize: opts.normalize,
        symmetric: opts.symmetric,
        reduction: opts.reduction,
        eager: eager_inputs(opts.reduction, &[query, key]),
    };
    query.tape().clone().apply(op, &[query, key])
}

/// The naive twin of [`info_nce`], from primitive ops: `x / sqrt(sum(x²))`,
/// `matmul_nt`, `log_softmax` and `gather` of the diagonal.
///
/// # Errors
/// As [`info_nce`].
pub fn info_nce_naive<T: Float>(
    query: &Var<T>,
    key: &Var<T>,
    opts: &InfoNceOptions,
) -> Result<Var<T>> {
    validate(query, key, opts)?;
    let n = query.dims()[0];
    let unit = |x: &Var<T>| -> Result<Var<T>> {
        if opts.normalize {
            x.div(&x.square()?.sum(1, true)?.sqrt()?)
        } else {
            Ok(x.clone())
        }
    };
    let s = unit(query)?
        .matmul_nt(&unit(key)?)?
        .mul_scalar(T::of(1.0 / opts.temperature))?;
    let diag = Tensor::<i64>::arange_i64(n)?.reshape([n, 1])?;
    let ce = |s: &Var<T>| s.log_softmax()?.gather(1, &diag)?.reshape([n])?.neg();
    let mut loss = ce(&s)?;
    if opts.symmetric {
        loss = loss
            .add(&ce(&s.transpose(0, 1)?)?)?
            .mul_scalar(T::of(0.5))?;
    }
    reduce_naive(loss, opts.reduction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, Case};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::ErrorKind;

    #[test]
    fn info_nce_gradcheck_and_twin() {
        let variants = [
            (0.1, true, false),
            (0.5, true, true),
            (1.0, false, false),
            (0.7, false, true),
        ];
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            for (temperature, normalize, symmetric) in variants {
                let o = InfoNceOptions {
                    reduction,
                    temperature,
                    normalize,
                    symmetric,
                };
                for (shape, seed) in [([5, 3], 1), ([8, 6], 2)] {
                    check_family(
                        &Case::normal(2, &shape, seed),
                        |v| info_nce(&v[0], &v[1], &o),
                        |v| info_nce_naive(&v[0], &v[1], &o),
                    );
                }
            }
        }
    }

    /// τ = 1e-3 in f32: the naive twin still works in log-softmax form, so
    /// compare the fused f32 result with f64 at a small temperature instead.
    #[test]
    fn f32_small_temperature_matches_f64() {
        let o = InfoNceOptions {
            temperature: 1e-3,
            ..Default::default()
        };
        let c = Case::normal(2, &[6, 4], 7);
        let tape = Tape::<f64>::new();
        let q = tape.leaf(c.inputs[0].clone());
        let k = tape.leaf(c.inputs[1].clone());
        let want = info_nce(&q, &k, &o).unwrap().item().unwrap();
        let tape = Tape::<f32>::new();
        let q = tape.leaf(c.inputs[0].cast());
        let k = tape.leaf(c.inputs[1].cast());
        let loss = info_nce(&q, &k, &o).unwrap();
        let g = loss.backward().unwrap();
        assert!(g.get(&q).unwrap().all_finite() && g.get(&k).unwrap().all_finite());
        let got = loss.item().unwrap() as f64;
        assert!(
            (got - want).abs() <= 1e-3 * (1.0 + want.abs()),
            "{got} vs {want}"
        );
    }

    #[test]
    fn zero_row_is_finite() {
        // a zero query row: its norm is clamped, similarity 0, no NaN
        let tape = Tape::<f64>::new();
        let q = tape.leaf(Tensor::from_vec(vec![0.0, 0.0, 1.0, 1.0], [2, 2]).unwrap());
        let k = tape.leaf(Tensor::from_vec(vec![1.0, 0.0, 0.0, 1.0], [2, 2]).unwrap());
        let loss = info_nce(&q, &k, &InfoNceOptions::default()).unwrap();
        let g = loss.backward().unwrap();
        assert!(loss.value().all_finite());
        assert!(g.get(&q).unwrap().all_finite() && g.get(&k).unwrap().all_finite());
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let a = tape.leaf(Tensor::zeros([3, 2]).unwrap());
        let b = tape.leaf(Tensor::zeros([4, 2]).unwrap());
        let flat = tape.leaf(Tensor::zeros([6]).unwrap());
        let o = InfoNceOptions::default();
        let kind = |r: Result<Var<f64>>| r.unwrap_err().kind();
        assert_eq!(kind(info_nce(&a, &b, &o)), ErrorKind::ShapeMismatch);
        assert_eq!(kind(info_nce(&flat, &flat, &o)), ErrorKind::ShapeMismatch);
        for t in [0.0, -0.5, f64::INFINITY, f64::NAN] {
            let bad = InfoNceOptions {
                temperature: t,
                ..o.clone()
            };
            assert_eq!(kind(info_nce(&a, &a, &bad)), ErrorKind::InvalidOption);
        }
        let bm = InfoNceOptions {
            reduction: Reduction::BatchMean,
            ..o
        };
        assert_eq!(kind(info_nce(&a, &a, &bm)), ErrorKind::InvalidOption);
    }
}
