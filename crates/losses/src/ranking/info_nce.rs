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

use crate::common::{check_option, no_batchmean, reduce, reduce_naive, Reduction, Upstream};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::{logsumexp_row, Error, Float, Shape, Tensor};

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

/// Rows of `x` divided by their norms clamped at `NORM_EPS`; returns the
/// normalised tensor and the unclamped norms.
fn normalize_rows<T: Float>(x: &Tensor<T>) -> Result<(Tensor<T>, Vec<T>)> {
    let d = x.shape().last_dim();
    let rows = x.dims()[0];
    let eps = T::of(NORM_EPS);
    let mut out = Vec::with_capacity(x.numel());
    let mut norms = Vec::with_capacity(rows);
    for i in 0..rows {
        let r = &x.as_slice()[i * d..(i + 1) * d];
        let n = r.iter().map(|&v| v * v).sum::<T>().sqrt();
        let c = n.max(eps);
        out.extend(r.iter().map(|&v| v / c));
        norms.push(n);
    }
    Ok((Tensor::from_vec(out, x.shape().clone())?, norms))
}

/// Back through `x̂ = x / max(‖x‖, eps)`: `(g − x̂(x̂·g))/‖x‖`, or `g/eps`
/// where the norm is below eps (the clamp then passes no gradient to the
/// norm, as `clamp_min`).
fn normalize_backward<T: Float>(xhat: &Tensor<T>, norms: &[T], g: &Tensor<T>) -> Result<Tensor<T>> {
    let d = xhat.shape().last_dim();
    let eps = T::of(NORM_EPS);
    let (xh, gs) = (xhat.as_slice(), g.as_slice());
    let mut out = Vec::with_capacity(xh.len());
    for (i, &n) in norms.iter().enumerate() {
        let r = i * d..(i + 1) * d;
        let (xr, gr) = (&xh[r.clone()], &gs[r]);
        if n < eps {
            out.extend(gr.iter().map(|&g| g / eps));
        } else {
            let dot: T = xr.iter().zip(gr).map(|(&x, &g)| x * g).sum();
            out.extend(xr.iter().zip(gr).map(|(&x, &g)| (g - x * dot) / n));
        }
    }
    Ok(Tensor::from_vec(out, xhat.shape().clone())?)
}

/// log-sum-exp of every column of a row-major `[n, n]` matrix.
fn column_lse<T: Float>(s: &[T], n: usize) -> Vec<T> {
    let mut m = vec![T::neg_infinity(); n];
    for row in s.chunks(n.max(1)) {
        for (m, &x) in m.iter_mut().zip(row) {
            if x > *m || x.is_nan() {
                *m = x;
            }
        }
    }
    let mut sum = vec![T::zero(); n];
    for row in s.chunks(n.max(1)) {
        for ((acc, &m), &x) in sum.iter_mut().zip(&m).zip(row) {
            *acc += (x - m).exp();
        }
    }
    m.iter()
        .zip(sum)
        .map(|(&m, s)| if m.is_finite() { m + s.ln() } else { m })
        .collect()
}

/// What backward needs besides the inputs: the log-sum-exp of each row (and
/// column, when symmetric) of `S`. The normalised rows and `S` itself are
/// recomputed.
struct Saved<T> {
    row_lse: Vec<T>,
    col_lse: Vec<T>,
}

struct InfoNce<T> {
    inv_t: T,
    normalize: bool,
    symmetric: bool,
    reduction: Reduction,
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
    /// `S = q̂ k̂ᵀ / τ`, `[N, N]`.
    fn scores(&self, qh: &Tensor<T>, kh: &Tensor<T>) -> Result<Vec<T>> {
        let inv_t = self.inv_t;
        let mut s = qh.matmul_nt(kh)?.into_vec();
        s.iter_mut().for_each(|v| *v *= inv_t);
        Ok(s)
    }
}

impl<T: Float> CustomOp<T> for InfoNce<T> {
    type Saved = Saved<T>;
    fn name(&self) -> &str {
        OP
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, Saved<T>)> {
        let n = x[0].dims()[0];
        let (qh, _) = self.operand(x[0])?;
        let (kh, _) = self.operand(x[1])?;
        let s = self.scores(&qh, &kh)?;
        let row_lse: Vec<T> = s.chunks(n.max(1)).map(logsumexp_row).collect();
        let col_lse = if self.symmetric {
            column_lse(&s, n)
        } else {
            Vec::new()
        };
        let half = T::of(0.5);
        let loss = (0..n)
            .map(|i| {
                let diag = s[i * n + i];
                if self.symmetric {
                    half * ((row_lse[i] - diag) + (col_lse[i] - diag))
                } else {
                    row_lse[i] - diag
                }
            })
            .collect();
        let out = reduce(loss, Shape::from([n]), self.reduction, n)?;
        Ok((out, Saved { row_lse, col_lse }))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, Saved<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let n = cx.inputs[0].dims()[0];
        let sv = cx.saved;
        let (qh, q_norms) = self.operand(&cx.inputs[0])?;
        let (kh, k_norms) = self.operand(&cx.inputs[1])?;
        // dS = w·uᵢ(softmax_row − I) [+ w·uⱼ(softmax_col − I)], then ∂/∂(q̂k̂ᵀ) = dS/τ
        let mut ds = self.scores(&qh, &kh)?;
        let up = Upstream::new(cx.grad_output, self.reduction, n);
        let w = if self.symmetric { T::of(0.5) } else { T::one() } * self.inv_t;
        for (i, row) in ds.chunks_mut(n.max(1)).enumerate() {
            let (ui, lse) = (up.at(i), sv.row_lse[i]);
            for (j, s) in row.iter_mut().enumerate() {
                let delta = if i == j { T::one() } else { T::zero() };
                let mut g = ui * ((*s - lse).exp() - delta);
                if self.symmetric {
                    g += up.at(j) * ((*s - sv.col_lse[j]).exp() - delta);
                }
                *s = w * g;
            }
        }
        let dz = Tensor::from_vec(ds, [n, n])?;
        let dq = cx.needs_grad[0]
            .then(|| -> Result<Tensor<T>> {
                let g = dz.matmul(&kh)?;
                if self.normalize {
                    normalize_backward(&qh, &q_norms, &g)
                } else {
                    Ok(g)
                }
            })
            .transpose()?;
        let dk = cx.needs_grad[1]
            .then(|| -> Result<Tensor<T>> {
                let g = dz.matmul_tn(&qh)?;
                if self.normalize {
                    normalize_backward(&kh, &k_norms, &g)
                } else {
                    Ok(g)
                }
            })
            .transpose()?;
        Ok(vec![dq, dk])
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
    let diag = Tensor::<i64>::arange_i64(n).reshape([n, 1])?;
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
        let a = tape.leaf(Tensor::zeros([3, 2]));
        let b = tape.leaf(Tensor::zeros([4, 2]));
        let flat = tape.leaf(Tensor::zeros([6]));
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
