//! The public custom-op API: a forward that may save intermediates and a
//! hand-written backward that receives them. The losses crate is written with
//! this API alone — the same one a user has.

use crate::error::{Error, Result};
use crate::tape::{Tape, Var};
use lossgraph_tensor::{Float, Tensor};

/// What a custom op's backward receives.
pub struct BackwardCtx<'a, T: Float, S> {
    /// The op's input values, in the order they were passed to `apply`.
    pub inputs: &'a [Tensor<T>],
    /// The op's output value.
    pub output: &'a Tensor<T>,
    /// What forward saved for backward.
    pub saved: &'a S,
    /// The gradient of the final output with respect to this op's output.
    pub grad_output: &'a Tensor<T>,
    /// For each input, whether it needs a gradient (skip work where not).
    pub needs_grad: &'a [bool],
}

/// A differentiable op with its own forward and backward, recorded on the
/// tape as one node.
///
/// Non-differentiable arguments (class ids, options) live in the op value
/// itself; the real-valued inputs are `Var`s passed to [`Tape::apply`].
///
/// ```
/// use lossgraph_autodiff::{BackwardCtx, CustomOp, Result, Tape};
/// use lossgraph_tensor::Tensor;
///
/// /// y = Σ xᵢ³, saving x² for backward.
/// struct SumCubes;
/// impl CustomOp<f64> for SumCubes {
///     type Saved = Tensor<f64>;
///     fn name(&self) -> &str { "sum_cubes" }
///     fn forward(&self, x: &[&Tensor<f64>]) -> Result<(Tensor<f64>, Tensor<f64>)> {
///         let sq = x[0].square();
///         Ok((sq.mul(x[0])?.sum_all(), sq))
///     }
///     fn backward(&self, cx: &BackwardCtx<'_, f64, Tensor<f64>>) -> Result<Vec<Option<Tensor<f64>>>> {
///         let g = cx.grad_output.item()?;
///         Ok(vec![Some(cx.saved.mul_scalar(3.0 * g))])
///     }
/// }
///
/// let tape = Tape::new();
/// let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0], [2])?);
/// let y = tape.apply(SumCubes, &[&x])?;
/// assert_eq!(y.item()?, 9.0);
/// assert_eq!(y.backward()?.get(&x).unwrap().to_vec(), vec![3.0, 12.0]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
pub trait CustomOp<T: Float>: 'static {
    /// What forward keeps for backward (a per-row log-sum-exp, a mask…).
    /// Keep it no larger than backward needs: it lives until the tape drops.
    type Saved: 'static;

    /// The op's name, for errors and anomaly reports.
    fn name(&self) -> &str;

    /// Compute the output and the saved intermediates.
    ///
    /// # Errors
    /// Whatever input check the op makes (shapes, targets, values).
    fn forward(&self, inputs: &[&Tensor<T>]) -> Result<(Tensor<T>, Self::Saved)>;

    /// For check mode: whether the output is a mean over items (a loss with
    /// reduction `mean`), so that averaging it again can be caught. The
    /// default is `false`.
    fn is_mean(&self) -> bool {
        false
    }

    /// Return one gradient per input (`None` where `needs_grad` is false).
    /// The default has no backward rule: backpropagating through the op into
    /// an input that requires a gradient is then an error, never a zero.
    ///
    /// # Errors
    /// [`Error::NoBackward`] by default.
    fn backward(&self, ctx: &BackwardCtx<'_, T, Self::Saved>) -> Result<Vec<Option<Tensor<T>>>> {
        let _ = ctx;
        Err(Error::NoBackward {
            op: self.name().to_string(),
        })
    }
}

impl<T: Float> Tape<T> {
    /// Run a custom op on `inputs` and record it as one node.
    ///
    /// # Errors
    /// The op's forward errors; [`Error::TapeMismatch`] when an input lives
    /// on another tape.
    pub fn apply<Op: CustomOp<T>>(&self, op: Op, inputs: &[&Var<T>]) -> Result<Var<T>> {
        if let Some(v) = inputs.iter().find(|v| !v.tape().same(self)) {
            let _ = v;
            return Err(Error::TapeMismatch {
                op: op.name().to_string(),
            });
        }
        let values: Vec<Tensor<T>> = inputs.iter().map(|v| v.value()).collect();
        let refs: Vec<&Tensor<T>> = values.iter().collect();
        let (output, saved) = op.forward(&refs)?;
        let name = op.name().to_string();
        // check mode's note on the output (a loss term, a mean), made after
        // it is recorded; `None` when check mode is off
        let note = self
            .check_mode()
            .then(|| (op.is_mean(), values.first().map(|v| v.dims().to_vec())));
        let tracked = self.grad_enabled() && inputs.iter().any(|v| v.requires_grad());
        let out = if tracked {
            self.record_tracked(op, name.clone(), output, saved, values, inputs)?
        } else {
            // nothing will call backward: drop what forward saved right away
            drop(saved);
            self.record(&name, output, inputs, None)?
        };
        if let Some((is_mean, dims)) = note {
            let mean_of = is_mean.then_some(dims.as_deref().unwrap_or(&[]));
            self.note_custom(&out, &name, mean_of);
        }
        Ok(out)
    }

    /// Record a custom op whose output needs a backward rule: the rule keeps
    /// the inputs, the output and what forward saved.
    fn record_tracked<Op: CustomOp<T>>(
        &self,
        op: Op,
        name: String,
        output: Tensor<T>,
        saved: Op::Saved,
        values: Vec<Tensor<T>>,
        inputs: &[&Var<T>],
    ) -> Result<Var<T>> {
        let out = output.clone();
        let rule = move |g: &Tensor<T>, needs: &[bool]| {
            let ctx = BackwardCtx {
                inputs: &values,
                output: &out,
                saved: &saved,
                grad_output: g,
                needs_grad: needs,
            };
            Ok(op.backward(&ctx)?.into_iter().collect())
        };
        self.record(&name, output, inputs, Some(Box::new(rule)))
    }
}
