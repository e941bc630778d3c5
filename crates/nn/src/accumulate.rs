//! Gradients summed over micro-batches or data-parallel shards so that the
//! result is the full batch's gradient, exactly.
//!
//! A mean over a batch split into parts is not the mean of the parts' means
//! when the parts hold different numbers of valid items (tokens that are not
//! padding, rows with any unmasked item, total weight): a part with 3 valid
//! tokens would weigh as much as one with 300. The exact rule has two
//! phases, and it is the same whether the parts run one after another on one
//! machine (gradient accumulation) or at once on many (data parallelism):
//!
//! 1. **before the loss**: add up the parts' denominators — the global
//!    count `D` of valid items over the whole batch (across machines, an
//!    all-reduce of one number);
//! 2. each part computes `Σ_part ℓ / D` — its *sum* over the global
//!    denominator (the losses' `denominator` option) — and its gradient;
//! 3. **after the backward**: add up the parts' gradients (across machines,
//!    the all-reduce of the gradients that DDP or Horovod already does).
//!
//! Since `Σ_parts Σ_part ℓ / D = Σ_batch ℓ / D`, the sum of the parts'
//! gradients is the full batch's gradient, up to the rounding of a sum taken
//! in another order. [`accumulate`] runs the parts one after another,
//! [`data_parallel`] runs them on rayon workers, each with its own tape —
//! the model for many machines; both go through [`GradAccumulator`], which
//! a caller with their own loop can use directly.

use crate::params::{Bound, ParamGrads, ParamStore};
use lossgraph_autodiff::{Result, Var};
use lossgraph_tensor::Float;
use rayon::prelude::*;

/// Sums the gradients (and loss values) of parts of one batch, in the order
/// they are added.
///
/// ```
/// use lossgraph_nn::{GradAccumulator, ParamStore};
/// use lossgraph_tensor::Tensor;
/// let mut params = ParamStore::<f64>::new();
/// let w = params.add("w", Tensor::from_vec(vec![1.0, 2.0], [2])?)?;
/// let mut acc = GradAccumulator::new();
/// for k in [1.0, 3.0] {
///     // a part whose loss is k·Σw², as if it held k items of that weight
///     acc.add(params.value_and_grad(|p| p.var(w)?.square()?.sum_all()?.mul_scalar(k))?)?;
/// }
/// let (value, grads) = acc.finish()?;
/// assert_eq!(value, 4.0 * 5.0);
/// assert_eq!(grads.get(w).unwrap().to_vec(), vec![8.0, 16.0]); // 4·2w
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct GradAccumulator<T: Float> {
    value: f64,
    grads: Option<ParamGrads<T>>,
}

impl<T: Float> GradAccumulator<T> {
    /// An empty accumulator.
    pub fn new() -> Self {
        GradAccumulator {
            value: 0.0,
            grads: None,
        }
    }
    /// Add one part's loss value and gradients (as
    /// [`ParamStore::value_and_grad`] returns them).
    ///
    /// # Errors
    /// As [`ParamGrads::add`]: gradients of another store, slot count or
    /// shape. Nothing is added on error.
    pub fn add(&mut self, (value, grads): (T, ParamGrads<T>)) -> Result<()> {
        match &mut self.grads {
            Some(sum) => sum.add(&grads)?,
            slot @ None => *slot = Some(grads),
        }
        self.value += value.as_f64();
        Ok(())
    }
    /// The summed value and gradients.
    ///
    /// # Errors
    /// `InvalidOption` when no part was added (there is no gradient to give).
    pub fn finish(self) -> Result<(f64, ParamGrads<T>)> {
        match self.grads {
            Some(g) => Ok((self.value, g)),
            None => Err(lossgraph_tensor::Error::option(
                "GradAccumulator::finish",
                "parts",
                "no part was added",
            )
            .into()),
        }
    }
}

/// Phase 1: the global denominator, `Σ count(part)` — what each part's loss
/// must divide its sum by.
///
/// # Errors
/// `count`'s errors; `InvalidOption` when a count is negative or not finite.
pub fn global_denominator<B>(parts: &[B], count: impl Fn(&B) -> Result<f64>) -> Result<f64> {
    let counts = parts.iter().map(count).collect::<Result<Vec<f64>>>()?;
    sum_counts(&counts)
}

/// `Σ counts`, each checked.
fn sum_counts(counts: &[f64]) -> Result<f64> {
    let mut d = 0.0;
    for (i, &c) in counts.iter().enumerate() {
        if !(c.is_finite() && c >= 0.0) {
            return Err(lossgraph_tensor::Error::option(
                "global_denominator",
                "count",
                format!("part {i} counts {c} items; a count must be finite and >= 0"),
            )
            .into());
        }
        d += c;
    }
    Ok(d)
}

/// Gradient accumulation over micro-batches, exact: the global denominator
/// first ([`global_denominator`]), then for each part in order a fresh tape,
/// `loss(params, part, denominator)` and its backward, and the gradients
/// summed. `loss` must return the part's *sum* over `denominator` — for the
/// catalog's means, the op with `denominator: Some(d)`.
///
/// Returns the summed loss (the full batch's) and gradients.
///
/// # Errors
/// `count`'s and `loss`'s errors, those of the backward passes, and
/// `InvalidOption` for no part or a bad count. Nothing is kept on error.
pub fn accumulate<T: Float, B>(
    params: &ParamStore<T>,
    parts: &[B],
    count: impl Fn(&B) -> Result<f64>,
    loss: impl Fn(&Bound<T>, &B, f64) -> Result<Var<T>>,
) -> Result<(f64, ParamGrads<T>)> {
    let d = global_denominator(parts, count)?;
    let mut acc = GradAccumulator::new();
    for part in parts {
        acc.add(params.value_and_grad(|p| loss(p, part, d))?)?;
    }
    acc.finish()
}

/// Data parallelism on one machine, the model for many: each part (shard)
/// runs on a rayon worker with its own tape. The counts are summed before any
/// loss (the first all-reduce), each worker computes its part's gradient with
/// that global denominator, and the gradients are summed in shard order
/// after (the second all-reduce; in a fixed order, so the result does not
/// depend on the thread count). Same contract and result as [`accumulate`].
///
/// # Errors
/// As [`accumulate`]; when several parts fail, the first part's error.
pub fn data_parallel<T: Float, B: Sync>(
    params: &ParamStore<T>,
    parts: &[B],
    count: impl Fn(&B) -> Result<f64> + Sync,
    loss: impl Fn(&Bound<T>, &B, f64) -> Result<Var<T>> + Sync,
) -> Result<(f64, ParamGrads<T>)> {
    let counts = parts.par_iter().map(&count).collect::<Result<Vec<f64>>>()?;
    let d = sum_counts(&counts)?;
    let results: Vec<Result<(T, ParamGrads<T>)>> = parts
        .par_iter()
        .map(|part| params.value_and_grad(|p| loss(p, part, d)))
        .collect();
    let mut acc = GradAccumulator::new();
    for r in results {
        acc.add(r?)?;
    }
    acc.finish()
}
