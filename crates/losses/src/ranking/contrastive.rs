//! Contrastive pair loss: `ℓ = s·d² + (1−s)·max(0, m − d)²` with
//! `d = ‖u − v‖₂` the distance between two embeddings and `s ∈ {0, 1}` whether
//! the pair is similar.
//!
//! Similar pairs are pulled together with a quadratic pull; dissimilar pairs are
//! pushed apart until they are `m` apart, then left alone. Only distances
//! matter, so the scale of the embeddings (and whether they are normalised)
//! decides what a margin means. At `d = 0` the direction of `u − v` is
//! undefined; the gradient there is 0 (PyTorch's norm gradient at 0).

use crate::common::{check_option, no_batchmean, reduce, reduce_naive, Reduction, Upstream};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::{Error, Float, Tensor};

const OP: &str = "contrastive";

/// Options of [`contrastive`].
#[derive(Debug, Clone, PartialEq)]
pub struct ContrastiveOptions {
    /// How pairs are combined (default `mean`).
    pub reduction: Reduction,
    /// The distance beyond which dissimilar pairs cost nothing (default 1.0).
    pub margin: f64,
}

impl Default for ContrastiveOptions {
    fn default() -> Self {
        ContrastiveOptions {
            reduction: Reduction::Mean,
            margin: 1.0,
        }
    }
}

/// Check options, shapes (`u`, `v` of `[..., D]`, `similar` of `[...]`) and
/// labels (each 0 or 1; NaN passes through).
fn validate<T: Float>(
    u: &Var<T>,
    v: &Var<T>,
    similar: &Var<T>,
    o: &ContrastiveOptions,
) -> Result<()> {
    no_batchmean(OP, o.reduction)?;
    check_option(
        OP,
        "margin",
        o.margin,
        o.margin.is_finite(),
        "finite values",
    )?;
    let (du, dv, ds) = (u.dims(), v.dims(), similar.dims());
    if du != dv || du.is_empty() || ds[..] != du[..du.len() - 1] {
        return Err(Error::shape(
            OP,
            &[&du, &dv, &ds],
            "u and v must be [..., D] alike and similar [...]",
        )
        .into());
    }
    super::check_labels(OP, "similar", &similar.value(), [0.0, 1.0])
}

/// The fused op; saves the squared distance of each pair.
struct Contrastive<T> {
    margin: T,
    reduction: Reduction,
}

impl<T: Float> CustomOp<T> for Contrastive<T> {
    type Saved = Vec<T>;
    fn name(&self) -> &str {
        OP
    }
    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, Vec<T>)> {
        let (u, v, s) = (x[0].as_slice(), x[1].as_slice(), x[2].as_slice());
        let d = x[0].shape().last_dim();
        let mut loss = Vec::with_capacity(s.len());
        let mut sq = Vec::with_capacity(s.len());
        for (i, &s) in s.iter().enumerate() {
            let rows = i * d..(i + 1) * d;
            let d2: T = u[rows.clone()]
                .iter()
                .zip(&v[rows])
                .map(|(&a, &b)| (a - b) * (a - b))
                .sum();
            let gap = (self.margin - d2.sqrt()).max(T::zero());
            loss.push(s * d2 + (T::one() - s) * gap * gap);
            sq.push(d2);
        }
        let n = loss.len();
        Ok((reduce(loss, x[2].shape().clone(), self.reduction, n)?, sq))
    }
    fn backward(&self, cx: &BackwardCtx<'_, T, Vec<T>>) -> Result<Vec<Option<Tensor<T>>>> {
        let (u, v, s) = (
            cx.inputs[0].as_slice(),
            cx.inputs[1].as_slice(),
            cx.inputs[2].as_slice(),
        );
        let d = cx.inputs[0].shape().last_dim();
        let up = Upstream::new(cx.grad_output, self.reduction, s.len());
        let two = T::of(2.0);
        let mut du = vec![T::zero(); u.len()];
        let mut ds = Vec::with_capacity(s.len());
        for (i, (&d2, &s)) in cx.saved.iter().zip(s).enumerate() {
            let dist = d2.sqrt();
            let gap = (self.margin - dist).max(T::zero());
            let g = up.at(i);
            ds.push(g * (d2 - gap * gap));
            // ∂ℓ/∂(u − v) = c·(u − v): 2s from d², −2(1−s)·gap/d from the hinge
            let push = if gap > T::zero() && dist > T::zero() {
                two * (T::one() - s) * gap / dist
            } else {
                T::zero()
            };
            let c = g * (two * s - push);
            let rows = i * d..(i + 1) * d;
            for ((o, &a), &b) in du[rows.clone()]
                .iter_mut()
                .zip(&u[rows.clone()])
                .zip(&v[rows])
            {
                *o = c * (a - b);
            }
        }
        let dv = cx.needs_grad[1].then(|| du.iter().map(|&x| -x).collect::<Vec<T>>());
        let shape = cx.inputs[0].shape();
        Ok(vec![
            cx.needs_grad[0]
                .then(|| Tensor::from_vec(du, shape.clone()))
                .transpose()?,
            dv.map(|d| Tensor::from_vec(d, shape.clone())).transpose()?,
            cx.needs_grad[2]
                .then(|| Tensor::from_vec(ds, cx.inputs[2].shape().clone()))
                .transpose()?,
        ])
    }
}

/// Contrastive pair loss `s·d² + (1−s)·max(0, margin − d)²`, `d = ‖u − v‖₂` per
/// row, reduced; `"none"` gives one loss per pair (`similar`'s shape).
///
/// Gradient, with `r = u − v`: `∂ℓ/∂u = (2s − 2(1−s)·max(0, m − d)/d)·r`
/// (the second term 0 at `d = 0`), `∂ℓ/∂v = −∂ℓ/∂u`,
/// `∂ℓ/∂s = d² − max(0, m − d)²`.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{contrastive, ContrastiveOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let u = tape.leaf(Tensor::from_vec(vec![0.0, 0.0, 0.0, 0.0], [2, 2])?);
/// let v = tape.leaf(Tensor::from_vec(vec![0.3, 0.4, 0.3, 0.4], [2, 2])?);
/// let similar = tape.constant(Tensor::from_vec(vec![1.0, 0.0], [2])?);
/// let loss = contrastive(&u, &v, &similar, &ContrastiveOptions::default())?;
/// // d = 0.5 for both pairs: (0.25 + 0.25) / 2
/// assert!((loss.item()? - 0.25).abs() < 1e-12);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` unless `u` and `v` are `[..., D]` alike and `similar` is
/// `[...]`; `InvalidTarget` for a label other than 0 or 1; `InvalidOption`
/// for a non-finite margin or `batchmean`.
pub fn contrastive<T: Float>(
    u: &Var<T>,
    v: &Var<T>,
    similar: &Var<T>,
    opts: &ContrastiveOptions,
) -> Result<Var<T>> {
    validate(u, v, similar, opts)?;
    let op = Contrastive {
        margin: T::of(opts.margin),
        reduction: opts.reduction,
    };
    u.tape().clone().apply(op, &[u, v, similar])
}

/// The naive twin of [`contrastive`], from primitive ops:
/// `d = sqrt(sum(square(u − v)))`, then the formula (its gradient is NaN at
/// `d = 0`, where `sqrt` has none).
///
/// # Errors
/// As [`contrastive`].
pub fn contrastive_naive<T: Float>(
    u: &Var<T>,
    v: &Var<T>,
    similar: &Var<T>,
    opts: &ContrastiveOptions,
) -> Result<Var<T>> {
    validate(u, v, similar, opts)?;
    let last = u.dims().len() - 1;
    let d2 = u.sub(v)?.square()?.sum(last, false)?;
    let gap = d2.sqrt()?.neg()?.add_scalar(T::of(opts.margin))?.relu()?;
    let dissimilar = similar.neg()?.add_scalar(T::one())?;
    let loss = similar.mul(&d2)?.add(&dissimilar.mul(&gap.square()?)?)?;
    reduce_naive(loss, opts.reduction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, check_twins, Case};
    use lossgraph_autodiff::Tape;
    use lossgraph_tensor::ErrorKind;

    /// Embeddings of `shape` and 0/1 labels. With margin 2.5 (and normal
    /// inputs) most dissimilar pairs sit inside the margin; `|m − d| ≥ 0.05`
    /// keeps finite differences off the hinge.
    fn case(shape: &[usize], seed: u64, margin: f64) -> Case {
        let c = Case::normal(2, shape, seed);
        let d = *shape.last().unwrap();
        let n = c.inputs[0].numel() / d;
        let mut u = c.inputs[0].to_vec();
        let v = c.inputs[1].as_slice();
        for i in 0..n {
            let dist: f64 = (0..d)
                .map(|j| (u[i * d + j] - v[i * d + j]).powi(2))
                .sum::<f64>()
                .sqrt();
            if (margin - dist).abs() < 0.05 {
                u[i * d] += 0.3;
            }
        }
        let s: Vec<f64> = (0..n)
            .map(|i| ((i * 7 + 3) % 3 == 0) as u8 as f64)
            .collect();
        Case::new(vec![
            Tensor::from_vec(u, shape.to_vec()).unwrap(),
            c.inputs[1].clone(),
            Tensor::from_vec(s, shape[..shape.len() - 1].to_vec()).unwrap(),
        ])
    }

    /// Gradcheck perturbs every input, and a perturbed label is no longer 0
    /// or 1, so gradcheck runs on `u`, `v` with the labels held constant; the
    /// twin check then compares all three gradients, the label's included.
    #[test]
    fn contrastive_gradcheck_and_twin() {
        for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
            for margin in [1.0, 2.5] {
                let o = ContrastiveOptions { reduction, margin };
                for (shape, seed) in [(&[6, 3][..], 1), (&[2, 4, 5][..], 2)] {
                    let c = case(shape, seed, margin);
                    let s = c.inputs[2].clone();
                    let label = |v: &[Var<f64>]| v[0].tape().constant(s.clone());
                    check_family(
                        &Case::new(c.inputs[..2].to_vec()),
                        |v| contrastive(&v[0], &v[1], &label(v), &o),
                        |v| contrastive_naive(&v[0], &v[1], &label(v), &o),
                    );
                    check_twins(
                        &c,
                        |v| contrastive(&v[0], &v[1], &v[2], &o),
                        |v| contrastive_naive(&v[0], &v[1], &v[2], &o),
                    );
                }
            }
        }
    }

    #[test]
    fn zero_distance_has_zero_gradient() {
        let tape = Tape::<f64>::new();
        let u = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 1.0, 2.0], [2, 2]).unwrap());
        let v = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 1.0, 2.0], [2, 2]).unwrap());
        let s = tape.leaf(Tensor::from_vec(vec![0.0, 1.0], [2]).unwrap());
        let o = ContrastiveOptions {
            reduction: Reduction::Sum,
            margin: 1.5,
        };
        let loss = contrastive(&u, &v, &s, &o).unwrap();
        assert_eq!(loss.item().unwrap(), 2.25);
        let g = loss.backward().unwrap();
        assert_eq!(g.get(&u).unwrap().to_vec(), vec![0.0; 4]);
        assert_eq!(g.get(&v).unwrap().to_vec(), vec![0.0; 4]);
        assert_eq!(g.get(&s).unwrap().to_vec(), vec![-2.25, -2.25]);
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let u = tape.leaf(Tensor::zeros([3, 2]));
        let v = tape.leaf(Tensor::zeros([3, 3]));
        let s = tape.leaf(Tensor::zeros([3]));
        let s4 = tape.leaf(Tensor::zeros([4]));
        let half = tape.leaf(Tensor::full([3], 0.5));
        let o = ContrastiveOptions::default();
        let kind = |r: Result<Var<f64>>| r.unwrap_err().kind();
        assert_eq!(kind(contrastive(&u, &v, &s, &o)), ErrorKind::ShapeMismatch);
        assert_eq!(kind(contrastive(&u, &u, &s4, &o)), ErrorKind::ShapeMismatch);
        assert_eq!(
            kind(contrastive(&u, &u, &half, &o)),
            ErrorKind::InvalidTarget
        );
        let bad = ContrastiveOptions {
            margin: f64::NAN,
            ..o.clone()
        };
        assert_eq!(
            kind(contrastive(&u, &u, &s, &bad)),
            ErrorKind::InvalidOption
        );
        let bm = ContrastiveOptions {
            reduction: Reduction::BatchMean,
            ..o
        };
        assert_eq!(kind(contrastive(&u, &u, &s, &bm)), ErrorKind::InvalidOption);
    }
}
