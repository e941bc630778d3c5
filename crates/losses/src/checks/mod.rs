//! Check mode's checks on a loss's inputs (checks 1, 2, 3, 4, 5, 7 and 8 of
//! [`lossgraph_autodiff::check`]; 2's log-of-softmax, 6 and 9 look at tape
//! ops and live in the autodiff crate).
//!
//! Each entry point is called by a loss constructor after its op is
//! recorded (so invalid input has already been refused with its error) and
//! returns at once when check mode is off: one flag test per loss call,
//! nothing in the fused kernels. A check that fires records a
//! [`Warning`] on the tape with [`Tape::warn`].
//!
//! | check | entry point | called by |
//! |---|---|---|
//! | 1 probabilities as logits | [`logits`], [`logit_values`] | cross_entropy, bce_with_logits, sigmoid_focal, softmax_focal, kl_logits, brier, linear_cross_entropy |
//! | 2 not log-probabilities | [`log_probs`] | nll, kl_div |
//! | 3 sigmoid before bce | [`bce_probs`] | bce |
//! | 4 padding averaged in, 8 all ignored | [`class_ids`] | cross_entropy, nll, softmax_focal, linear_cross_entropy |
//! | 5 class ids as regression targets | [`regression_target`] | mse, mae, huber, smooth_l1 |
//! | 7 class weights rescale the gradient | [`class_weights`] | cross_entropy and nll (`sum`, `none`), softmax_focal, multi_margin |
//! | 8 every item masked out | [`all_masked`] | masked_mean, weighted_mean |

mod scan;

use lossgraph_autodiff::{Tape, Var, Warning};
use lossgraph_tensor::{Float, Tensor};

/// Below this many values, a binary logits input in `[0, 1]` is not taken
/// for probabilities on its values alone (a fresh model's logits are about
/// half negative: 16 non-negative ones happen once in 65536).
const BINARY_MIN_VALUES: usize = 16;

/// Check 1: `input` of the logits loss `op` looks like probabilities — it
/// was made by `sigmoid` or `softmax` on the tape, or its values all lie in
/// `[0, 1]` and (with a class axis, the last) every row sums to 1.
pub(crate) fn logits<T: Float>(op: &str, input: &str, logits: &Var<T>, class_axis: bool) {
    if !logits.tape().check_mode() {
        return;
    }
    let made_by = Some(logits.op_name()).filter(|o| o == "sigmoid" || o == "softmax");
    logit_values(
        logits.tape(),
        op,
        input,
        &logits.value(),
        class_axis,
        made_by,
    );
}

/// Check 1 on logit values that are not on the tape
/// (`linear_cross_entropy` computes a few rows of its logits for it).
pub(crate) fn logit_values<T: Float>(
    tape: &Tape<T>,
    op: &str,
    input: &str,
    values: &Tensor<T>,
    class_axis: bool,
    made_by: Option<String>,
) {
    let x = values.as_slice();
    let Some((min, max)) = scan::unit_range(x) else {
        return;
    };
    let c = values.dims().last().copied().unwrap_or(1);
    let rows = if class_axis && c >= 2 {
        let worst = scan::worst_row_sum(x, c);
        let distributions = worst <= scan::ROW_SUM_TOL;
        if !distributions && made_by.is_none() {
            return; // in [0, 1] but not distributions: weak evidence
        }
        distributions.then_some((x.len() / c, worst))
    } else {
        if made_by.is_none() && (class_axis || x.len() < BINARY_MIN_VALUES) {
            return;
        }
        None
    };
    tape.warn(Warning::ProbabilitiesAsLogits {
        op: op.to_string(),
        input: input.to_string(),
        made_by,
        values: x.len(),
        min,
        max,
        rows,
    });
}

/// Check 2: the input of `nll` or `kl_div` is not log-probabilities — a
/// positive value, or (with a last axis of two or more) a row whose
/// log-sum-exp is more than 0.01 from 0.
pub(crate) fn log_probs<T: Float>(op: &str, input: &Var<T>) {
    if !input.tape().check_mode() {
        return;
    }
    let value = input.value();
    let x = value.as_slice();
    let (positive, max) = scan::positives(x);
    let c = value.dims().last().copied().unwrap_or(1);
    let worst_row = if value.ndim() >= 2 && c >= 2 {
        // the first rows' log-sum-exps by the tensor kernel (vectorised)
        let rows = (x.len() / c).min(scan::LSE_ROWS);
        let lse = value
            .reshape([x.len() / c, c])
            .and_then(|v| v.narrow(0, 0, rows))
            .and_then(|v| v.logsumexp(1, false));
        lse.ok().and_then(|l| scan::worst_lse(l.as_slice()))
    } else {
        None
    };
    if positive > 0 || worst_row.is_some() {
        input.tape().warn(Warning::NotLogProbabilities {
            op: op.to_string(),
            values: x.len(),
            positive,
            max,
            worst_row,
        });
    }
}

/// Check 3: `bce`'s probabilities were made by `sigmoid` on the tape.
pub(crate) fn bce_probs<T: Float>(op: &str, probs: &Var<T>) {
    if probs.tape().check_mode() && probs.op_name() == "sigmoid" {
        let node = probs.id();
        probs.tape().warn(Warning::SigmoidBeforeBce {
            op: op.to_string(),
            node,
        });
    }
}

/// Checks 4 and 8 on class-id targets: a padding id that `ignore` does not
/// match (ids with a sequence axis, `[..., T]`), and every id ignored — the
/// latter only when the mean counts this call's own ids (`outside_count` is
/// false): a micro-batch of only ignored ids, under the whole batch's
/// `denominator`, rightly adds nothing.
pub(crate) fn class_ids<T: Float>(
    tape: &Tape<T>,
    op: &str,
    ids: &Tensor<i64>,
    ignore: i64,
    outside_count: bool,
) {
    if !tape.check_mode() {
        return;
    }
    let y = ids.as_slice();
    if !outside_count && !y.is_empty() && y.iter().all(|&v| v == ignore) {
        tape.warn(Warning::AllTargetsIgnored {
            op: op.to_string(),
            targets: y.len(),
            reason: format!("equal ignore_index {ignore}"),
        });
        return;
    }
    let t = if ids.ndim() >= 2 {
        ids.dims().last().copied().unwrap_or(0)
    } else {
        0 // no sequence axis: no row tails to look at
    };
    if let Some(p) = scan::padding(y, t, Some(ignore)) {
        tape.warn(Warning::PaddingAveragedIn {
            op: op.to_string(),
            pad_id: p.id,
            padded: p.count,
            rows_padded: p.rows_padded,
            rows: p.rows,
            ignore_index: ignore,
        });
    }
}

/// Check 5: the targets of the regression loss `op` are class ids.
pub(crate) fn regression_target<T: Float>(op: &str, target: &Var<T>) {
    if !target.tape().check_mode() {
        return;
    }
    let value = target.value();
    if let Some(classes) = scan::class_id_values(value.as_slice()) {
        target.tape().warn(Warning::ClassIdsAsRegressionTargets {
            op: op.to_string(),
            values: value.numel(),
            classes,
        });
    }
}

/// Check 7: per-class weights `w` (option `option` of `op`) whose mean over
/// this batch's targets (ids other than `ignore`) is outside `[½, 2]`: the
/// gradient is scaled by that mean. Call it only where the reduction does
/// not divide by the weights (a weighted `mean` of cross-entropy or nll
/// divides by `Σ w_y`, which cancels the scale).
pub(crate) fn class_weights<T: Float>(
    tape: &Tape<T>,
    op: &str,
    option: &str,
    w: &[f64],
    ids: &Tensor<i64>,
    ignore: Option<i64>,
) {
    if !tape.check_mode() || w.is_empty() {
        return;
    }
    let picked: Vec<f64> = ids
        .as_slice()
        .iter()
        .filter(|&&y| Some(y) != ignore)
        .filter_map(|&y| usize::try_from(y).ok().and_then(|y| w.get(y).copied()))
        .collect();
    if picked.is_empty() {
        return;
    }
    let batch_mean = picked.iter().sum::<f64>() / picked.len() as f64;
    if (0.5..=2.0).contains(&batch_mean) {
        return;
    }
    tape.warn(Warning::ClassWeightScale {
        op: op.to_string(),
        option: option.to_string(),
        classes: w.len(),
        mean: w.iter().sum::<f64>() / w.len() as f64,
        batch_mean,
    });
}

/// Check 8 for a mask or weights: every one is 0, so nothing is averaged.
pub(crate) fn all_masked<T: Float>(op: &str, what: &str, mask: &Var<T>) {
    if !mask.tape().check_mode() {
        return;
    }
    let value = mask.value();
    let m = value.as_slice();
    if !m.is_empty() && m.iter().all(|v| *v == T::zero()) {
        mask.tape().warn(Warning::AllTargetsIgnored {
            op: op.to_string(),
            targets: m.len(),
            reason: format!("have {what} 0"),
        });
    }
}
