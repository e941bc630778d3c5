//! Negative log-likelihood of class ids under given log-probabilities:
//! `ℓ = −w_y·log_probs_y`.
//!
//! The second half of cross-entropy: the caller has already normalised the
//! scores (usually with `log_softmax`). The loss only reads the entry of the
//! true class, so its gradient is `−w_y` there and 0 elsewhere; nothing ties
//! the input to a distribution, and feeding raw logits instead of
//! log-probabilities silently gives a loss that can be driven to −∞.
//! Weighted `"mean"` divides by `Σ w_{y_i}` over non-ignored items, as
//! PyTorch's `F.nll_loss`.

use super::rows::{
    at, check_ids, class_of, class_weight, constant_rows, grad_rows, naive_classes, per_class, Rows,
};
use crate::checks;
use crate::common::{
    check_denominator, mean_denominator, no_batchmean, reduce_naive_over, reduce_over, Reduction,
    Upstream,
};
use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Var};
use lossgraph_tensor::{Float, Shape, Tensor};

const OP: &str = "nll";

/// Options of [`nll`].
#[derive(Debug, Clone, PartialEq)]
pub struct NllOptions {
    /// Per-class weights `w [C]` (default none: every class 1).
    pub weight: Option<Vec<f64>>,
    /// Class id whose items are skipped (default −100).
    pub ignore_index: i64,
    /// How items are combined (default `mean`).
    pub reduction: Reduction,
    /// The mean's denominator from outside (default none: this call's own
    /// count, `Σ w_{y_i}` over the items not ignored): the whole batch's, when this call sees a part of it
    /// (a micro-batch, a data-parallel shard), so that the parts' gradients
    /// add up to the batch's. Only with `reduction = mean`; finite, ≥ 0.
    pub denominator: Option<f64>,
}

impl Default for NllOptions {
    fn default() -> Self {
        NllOptions {
            weight: None,
            ignore_index: -100,
            reduction: Reduction::Mean,
            denominator: None,
        }
    }
}

/// Negative log-likelihood `−w_y·log_probs_y` from `log_probs [..., C]` and
/// class ids `target [...]`; PyTorch's `F.nll_loss` with the class axis last.
///
/// `"none"` gives `[...]` (0 at ignored items); `"mean"` divides the sum by
/// `Σ w_{y_i}` over non-ignored items (0 when that is 0).
///
/// Gradient: `∂ℓ/∂log_probs_c = −w_y·[c = y]`.
///
/// ```
/// use lossgraph_autodiff::Tape;
/// use lossgraph_losses::{nll, NllOptions};
/// use lossgraph_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let lp = tape.leaf(Tensor::from_vec(vec![-0.5, -1.0, -2.0, -0.25], [2, 2])?);
/// let y = Tensor::from_vec(vec![1i64, 0], [2])?;
/// let opts = NllOptions { weight: Some(vec![1.0, 3.0]), ..Default::default() };
/// let loss = nll(&lp, &y, &opts)?;
/// // (3·1.0 + 1·2.0) / (3 + 1)
/// assert!((loss.item()? - 1.25).abs() < 1e-12);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
///
/// # Errors
/// `ShapeMismatch` when `target` is not `log_probs`' shape without its last
/// axis, for 0-d input or `C = 0`, or for `weight` of length ≠ C;
/// `InvalidTarget` for an id outside `[0, C)` that is not `ignore_index`;
/// `InvalidOption` for `batchmean`.
pub fn nll<T: Float>(
    log_probs: &Var<T>,
    target: &Tensor<i64>,
    opts: &NllOptions,
) -> Result<Var<T>> {
    let op = Nll::new(&log_probs.shape(), target, opts)?;
    let tape = log_probs.tape().clone();
    let out = tape.apply(op, &[log_probs])?;
    checks::log_probs(OP, log_probs);
    checks::class_ids(
        &tape,
        OP,
        target,
        opts.ignore_index,
        opts.denominator.is_some(),
    );
    // a weighted mean divides by Σ w_y: the weights' scale cancels
    if let (Some(w), false) = (&opts.weight, opts.reduction.is_mean()) {
        checks::class_weights(&tape, OP, "weight", w, target, Some(opts.ignore_index));
    }
    Ok(out)
}

struct Nll<T> {
    target: Tensor<i64>,
    ignore: i64,
    weight: Option<Vec<T>>,
    /// `Σ w_{y_i}` over non-ignored items.
    denom: T,
    reduction: Reduction,
    rows: Rows,
}

impl<T: Float> Nll<T> {
    fn new(shape: &Shape, ids: &Tensor<i64>, o: &NllOptions) -> Result<Self> {
        no_batchmean(OP, o.reduction)?;
        check_denominator(OP, o.denominator, o.reduction)?;
        let rows = check_ids(OP, shape, ids, Some(o.ignore_index))?;
        let weight = per_class::<T>(OP, "weight", o.weight.as_deref(), rows.classes)?;
        let denom = ids
            .as_slice()
            .iter()
            .filter_map(|&y| class_of(y, Some(o.ignore_index)))
            .map(|y| at(&weight, y))
            .sum();
        let denom = mean_denominator(o.denominator, denom);
        Ok(Nll {
            target: ids.clone(),
            ignore: o.ignore_index,
            weight,
            denom,
            reduction: o.reduction,
            rows,
        })
    }

    fn class(&self, i: usize) -> Option<usize> {
        class_of(self.target.as_slice()[i], Some(self.ignore))
    }
}

impl<T: Float> CustomOp<T> for Nll<T> {
    type Saved = ();
    fn name(&self) -> &str {
        OP
    }
    fn is_mean(&self) -> bool {
        self.reduction.is_mean()
    }

    fn forward(&self, x: &[&Tensor<T>]) -> Result<(Tensor<T>, ())> {
        let (lp, c) = (x[0].as_slice(), self.rows.classes);
        let loss = (0..self.rows.rows)
            .map(|i| match self.class(i) {
                Some(y) => -at(&self.weight, y) * lp[i * c + y],
                None => T::zero(),
            })
            .collect();
        Ok((
            reduce_over(loss, &self.rows.batch, self.reduction, self.denom)?,
            (),
        ))
    }

    fn backward(&self, cx: &BackwardCtx<'_, T, ()>) -> Result<Vec<Option<Tensor<T>>>> {
        let up = Upstream::over(cx.grad_output, self.reduction, self.denom);
        let d = grad_rows(cx.inputs[0].shape(), self.rows.classes, |i, d| {
            if let Some(y) = self.class(i) {
                d[y] = -up.at(i) * at(&self.weight, y);
            }
        })?;
        Ok(vec![Some(d)])
    }
}

/// The naive twin of [`nll`]: `log_probs` times a constant `−w_y·onehot(y)`,
/// summed over the class axis.
///
/// # Errors
/// As [`nll`].
pub fn nll_naive<T: Float>(
    log_probs: &Var<T>,
    target: &Tensor<i64>,
    opts: &NllOptions,
) -> Result<Var<T>> {
    let shape = log_probs.shape();
    // validation only; the rest comes from the ids and the options
    let classes = Nll::<T>::new(&shape, target, opts)?.rows.classes;
    let ids = naive_classes(target, Some(opts.ignore_index));
    let w = |k| class_weight(&opts.weight, k);
    // −w_y at the target class of each kept row; the mean divides by Σ w_y
    let pick = constant_rows(log_probs.tape(), &shape, classes, |i, r| {
        if let Some(y) = ids[i] {
            r[y] = T::of(-w(y));
        }
    })?;
    let denom: f64 = ids.iter().flatten().map(|&y| w(y)).sum();
    let denom = opts.denominator.unwrap_or(denom);
    let loss = log_probs.mul(&pick)?.sum(shape.ndim() - 1, false)?;
    reduce_naive_over(loss, opts.reduction, T::of(denom))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_family, Case};
    use lossgraph_autodiff::{ErrorKind, Tape};

    fn ids(v: &[i64], shape: &[usize]) -> Tensor<i64> {
        Tensor::from_vec(v.to_vec(), shape.to_vec()).unwrap()
    }

    #[test]
    fn nll_gradcheck_and_twin() {
        let cases = [
            (vec![5usize, 3], ids(&[0, -100, 2, 1, 2], &[5])),
            (vec![2, 3, 3], ids(&[2, 1, -100, 0, 0, 1], &[2, 3])),
        ];
        for (seed, (shape, y)) in cases.iter().enumerate() {
            for reduction in [Reduction::None, Reduction::Sum, Reduction::Mean] {
                for weight in [None, Some(vec![0.5, 2.0, 1.25])] {
                    // with mean, also a denominator from outside
                    let denominator = (reduction == Reduction::Mean).then_some(9.5);
                    let o = NllOptions {
                        weight,
                        reduction,
                        denominator: denominator.filter(|_| seed == 1),
                        ..Default::default()
                    };
                    // log_probs from a log_softmax of normals (any reals work)
                    let lp = Tensor::randn(shape.clone(), 0.0, 1.0, seed as u64)
                        .unwrap()
                        .log_softmax();
                    check_family(
                        &Case::new(vec![lp]),
                        |v| nll(&v[0], y, &o),
                        |v| nll_naive(&v[0], y, &o),
                    );
                }
            }
        }
    }

    #[test]
    fn all_ignored_mean_is_zero() {
        let tape = Tape::<f64>::new();
        let lp = tape.leaf(Tensor::randn([2, 3], 0.0, 1.0, 1).unwrap());
        let y = ids(&[4, 4], &[2]);
        let o = NllOptions {
            ignore_index: 4,
            ..Default::default()
        };
        let loss = nll(&lp, &y, &o).unwrap();
        assert_eq!(loss.item().unwrap(), 0.0);
        let g = loss.backward().unwrap();
        assert!(g.get(&lp).unwrap().as_slice().iter().all(|&d| d == 0.0));
    }

    #[test]
    fn errors() {
        let tape = Tape::<f64>::new();
        let lp = tape.leaf(Tensor::zeros([2, 3]).unwrap());
        let d = NllOptions::default();
        let kind = |r: Result<Var<f64>>| r.err().map(|e| e.kind());
        assert_eq!(
            kind(nll(&lp, &ids(&[3, 0], &[2]), &d)),
            Some(ErrorKind::InvalidTarget)
        );
        assert_eq!(
            kind(nll(&lp, &ids(&[0, -2], &[2]), &d)),
            Some(ErrorKind::InvalidTarget)
        );
        assert_eq!(
            kind(nll(&lp, &ids(&[0, 1, 1], &[3]), &d)),
            Some(ErrorKind::ShapeMismatch)
        );
        let w = NllOptions {
            weight: Some(vec![1.0, 2.0]),
            ..Default::default()
        };
        assert_eq!(
            kind(nll(&lp, &ids(&[0, 1], &[2]), &w)),
            Some(ErrorKind::ShapeMismatch)
        );
        let bm = NllOptions {
            reduction: Reduction::BatchMean,
            ..Default::default()
        };
        assert_eq!(
            kind(nll(&lp, &ids(&[0, 1], &[2]), &bm)),
            Some(ErrorKind::InvalidOption)
        );
        assert_eq!(
            kind(nll_naive(&lp, &ids(&[3, 0], &[2]), &d)),
            Some(ErrorKind::InvalidTarget)
        );
    }
}
