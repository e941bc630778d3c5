//! The typed warnings of check mode: one variant per misuse, each carrying
//! the numbers that made the check fire. [`Warning::mistake`],
//! [`Warning::evidence`] and [`Warning::fix`] turn a variant into the three
//! sentences a person reads; a program matches the variant instead.

/// A loss mistake that check mode found. It never stops the program: the
/// tape collects it ([`crate::Tape::warnings`]) and prints it once per site.
///
/// New checks may be added, so a `match` needs a wildcard arm.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Warning {
    /// Check 1: a loss that takes logits was given values that look like
    /// probabilities (the sigmoid or softmax applied twice).
    ProbabilitiesAsLogits {
        /// The loss op.
        op: String,
        /// Which of its inputs.
        input: String,
        /// The tape op that made the input when it is `sigmoid` or `softmax`.
        made_by: Option<String>,
        /// How many values were looked at.
        values: usize,
        /// Their smallest and largest value.
        min: f64,
        /// (see `min`)
        max: f64,
        /// For a class axis: how many rows, and the largest `|Σ row − 1|`
        /// (the rows are then all within 1e-3 of summing to 1).
        rows: Option<(usize, f64)>,
    },
    /// Check 2: `nll` or `kl_div` given an input that is not
    /// log-probabilities: positive entries, or rows whose log-sum-exp is
    /// far from 0.
    NotLogProbabilities {
        /// The loss op.
        op: String,
        /// How many values were looked at.
        values: usize,
        /// How many of them are positive (a log-probability is ≤ 0).
        positive: usize,
        /// The largest value.
        max: f64,
        /// The row whose log-sum-exp is farthest from 0, and that log-sum-exp
        /// (a row of log-probabilities has `log Σ e^x = 0`).
        worst_row: Option<(usize, f64)>,
    },
    /// Check 2: `log` applied to the output of `softmax` on the tape, where
    /// the stable `log_softmax` was meant.
    LogOfSoftmax {
        /// The node of the `log`.
        node: usize,
        /// How many of its values underflowed to −∞ (the danger of the form).
        minus_inf: usize,
    },
    /// Check 3: `bce` given probabilities made by `sigmoid` on the tape.
    SigmoidBeforeBce {
        /// The loss op (`bce`).
        op: String,
        /// The node of the `sigmoid`.
        node: usize,
    },
    /// Check 4: class-id targets with a likely padding id that no
    /// `ignore_index` matches, so the padding is averaged in.
    PaddingAveragedIn {
        /// The loss op.
        op: String,
        /// The id that fills the row tails.
        pad_id: i64,
        /// How many targets hold it.
        padded: usize,
        /// How many rows end in a run of it, and how many rows there are.
        rows_padded: usize,
        /// (see `rows_padded`)
        rows: usize,
        /// The op's `ignore_index`.
        ignore_index: i64,
    },
    /// Check 5: the targets of a regression loss are class ids (whole
    /// numbers `0..k`).
    ClassIdsAsRegressionTargets {
        /// The loss op.
        op: String,
        /// How many targets.
        values: usize,
        /// `k`: the targets are exactly the whole numbers `0..k`.
        classes: usize,
    },
    /// Check 6: a loss value that is already a mean, averaged again.
    ReducedTwice {
        /// The op that averaged first (a loss with `mean`, or `mean_all`).
        first: String,
        /// The op that reduced again.
        second: String,
        /// What the second op divided by (1 for a mean of one value).
        divisor: f64,
    },
    /// Check 7: class weights whose mean is far from 1, so they rescale the
    /// gradient as well as rebalance it.
    ClassWeightScale {
        /// The loss op.
        op: String,
        /// The option (`weight`, `alpha`).
        option: String,
        /// How many classes.
        classes: usize,
        /// The mean weight over the classes.
        mean: f64,
        /// The mean weight over this batch's targets: the factor the
        /// gradient is scaled by compared with no weights.
        batch_mean: f64,
    },
    /// Check 8: every target of the batch is ignored or masked out, so the
    /// loss is 0 with zero gradient (PyTorch returns NaN here).
    AllTargetsIgnored {
        /// The loss op.
        op: String,
        /// How many targets.
        targets: usize,
        /// Why each counts as ignored, e.g. "equal ignore_index -100".
        reason: String,
    },
    /// Check 9: one weighted term carries more than
    /// [`DOMINANT_SHARE`](crate::check::DOMINANT_SHARE) of the gradient norm.
    DominantTerm {
        /// The term that dominates (its label in `norms`: a name that stays
        /// the same from step to step, such as `cross_entropy` or `kl#2`).
        term: String,
        /// Its share `‖gᵢ‖ / Σⱼ ‖gⱼ‖` of the terms' gradient norms.
        share: f64,
        /// Every term with the norm of its weighted gradient.
        norms: Vec<(String, f64)>,
    },
}

impl Warning {
    /// The mistake, in one line.
    pub fn mistake(&self) -> &'static str {
        match self {
            Warning::ProbabilitiesAsLogits { .. } => {
                "a logits loss was given probabilities (sigmoid or softmax applied twice)"
            }
            Warning::NotLogProbabilities { .. } => "the input is not log-probabilities",
            Warning::LogOfSoftmax { .. } => "log of a softmax computed by hand",
            Warning::SigmoidBeforeBce { .. } => "bce on probabilities made by sigmoid",
            Warning::PaddingAveragedIn { .. } => "padding targets are averaged into the loss",
            Warning::ClassIdsAsRegressionTargets { .. } => {
                "class ids used as targets of a regression loss"
            }
            Warning::ReducedTwice { .. } => "a loss that is already a mean is reduced again",
            Warning::ClassWeightScale { .. } => "class weights rescale the gradient",
            Warning::AllTargetsIgnored { .. } => "every target of the batch is ignored",
            Warning::DominantTerm { .. } => "one loss term dominates the gradient",
        }
    }

    /// What was seen, with its numbers.
    pub fn evidence(&self) -> String {
        match self {
            Warning::ProbabilitiesAsLogits {
                op,
                input,
                made_by,
                values,
                min,
                max,
                rows,
            } => {
                let mut s = match made_by {
                    Some(m) => format!("`{op}`'s {input} is the output of `{m}` on this tape; "),
                    None => format!("`{op}`'s {input}: "),
                };
                s += &format!("all {values} values in [0, 1] (min {min:.3e}, max {max:.3e})");
                if let Some((n, err)) = rows {
                    s += &format!(" and all {n} rows sum to 1 ± {err:.1e}");
                }
                s
            }
            Warning::NotLogProbabilities {
                op,
                values,
                positive,
                max,
                worst_row,
            } => {
                let mut parts = Vec::new();
                if *positive > 0 {
                    parts.push(format!(
                        "{positive} of {values} values are positive (max {max:.4}); a log-probability is ≤ 0"
                    ));
                }
                if let Some((r, lse)) = worst_row {
                    parts.push(format!(
                        "row {r} has log Σ eˣ = {lse:.4} (its probabilities sum to {:.4}, not 1)",
                        lse.exp()
                    ));
                }
                format!("`{op}`'s input: {}", parts.join("; "))
            }
            Warning::LogOfSoftmax { node, minus_inf } => format!(
                "node #{node} is `log` of a `softmax` output; {minus_inf} of its values underflowed to −∞"
            ),
            Warning::SigmoidBeforeBce { op, node } => {
                format!("`{op}`'s probs are the output of `sigmoid` (node #{node}) on this tape")
            }
            Warning::PaddingAveragedIn {
                op,
                pad_id,
                padded,
                rows_padded,
                rows,
                ignore_index,
            } => format!(
                "`{op}`: id {pad_id} fills the tails of {rows_padded} of {rows} rows \
                 ({padded} targets, never before another id) and ignore_index is {ignore_index}"
            ),
            Warning::ClassIdsAsRegressionTargets {
                op,
                values,
                classes,
            } => format!(
                "`{op}`: all {values} targets are whole numbers, exactly the {classes} values 0..={}",
                classes - 1
            ),
            Warning::ReducedTwice {
                first,
                second,
                divisor,
            } => {
                if *divisor == 1.0 {
                    format!("`{second}` of the one-value output of `{first}`, a mean already")
                } else {
                    format!(
                        "the output of `{first}`, a mean already, divided by {divisor} (by `{second}`)"
                    )
                }
            }
            Warning::ClassWeightScale {
                op,
                option,
                classes,
                mean,
                batch_mean,
            } => format!(
                "`{op}`'s {option} average {mean:.4} over the {classes} classes and {batch_mean:.4} \
                 over this batch's targets: the gradient is {batch_mean:.4}× its unweighted size"
            ),
            Warning::AllTargetsIgnored {
                op,
                targets,
                reason,
            } => format!("`{op}`: all {targets} targets {reason}; the loss is 0 and so is its gradient"),
            Warning::DominantTerm { term, share, norms } => {
                let list = norms
                    .iter()
                    .map(|(t, n)| format!("{t}: {n:.3e}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "{term} carries {:.1}% of the gradient norm (‖weighted gradient‖ per term: {list})",
                    share * 100.0
                )
            }
        }
    }

    /// What to do instead.
    pub fn fix(&self) -> String {
        match self {
            Warning::ProbabilitiesAsLogits { op, .. } => format!(
                "pass the raw scores (before sigmoid/softmax) to `{op}`; it applies the link itself"
            ),
            Warning::NotLogProbabilities { op, .. } => {
                format!("pass log_softmax(logits) to `{op}`, or pass the logits to cross_entropy")
            }
            Warning::LogOfSoftmax { .. } => {
                "use log_softmax (or cross_entropy on the logits): it never takes log 0".to_string()
            }
            Warning::SigmoidBeforeBce { .. } => {
                "pass the sigmoid's input to bce_with_logits: stable where σ rounds to 0 or 1"
                    .to_string()
            }
            Warning::PaddingAveragedIn { pad_id, .. } => {
                format!("set ignore_index: {pad_id} (or mask the padding with masked_mean)")
            }
            Warning::ClassIdsAsRegressionTargets { .. } => {
                "classes have no order or distance: use cross_entropy on one logit per class \
                 (for counts, poisson_nll)"
                    .to_string()
            }
            Warning::ReducedTwice { first, .. } => format!(
                "reduce once: keep `{first}`'s mean as the loss, or use reduction none/sum and \
                 divide by the batch size yourself"
            ),
            Warning::ClassWeightScale { batch_mean, .. } => format!(
                "divide the weights by their mean, or scale the learning rate by {:.4} to keep \
                 the step size",
                1.0 / batch_mean
            ),
            Warning::AllTargetsIgnored { .. } => {
                "check the batch's targets and mask; a batch with no target trains nothing"
                    .to_string()
            }
            Warning::DominantTerm { term, .. } => format!(
                "reweight the terms (or normalise each by its gradient norm): the others barely \
                 move the parameters while {term} dominates"
            ),
        }
    }

    /// Where the warning comes from, for printing it once: its kind and ops.
    pub fn site(&self) -> String {
        let kind = self.kind();
        match self {
            Warning::ProbabilitiesAsLogits { op, input, .. } => format!("{kind}:{op}:{input}"),
            Warning::NotLogProbabilities { op, .. }
            | Warning::SigmoidBeforeBce { op, .. }
            | Warning::PaddingAveragedIn { op, .. }
            | Warning::ClassIdsAsRegressionTargets { op, .. }
            | Warning::AllTargetsIgnored { op, .. } => format!("{kind}:{op}"),
            Warning::ClassWeightScale { op, option, .. } => format!("{kind}:{op}:{option}"),
            Warning::ReducedTwice { first, second, .. } => format!("{kind}:{first}:{second}"),
            Warning::LogOfSoftmax { .. } => kind.to_string(),
            Warning::DominantTerm { term, .. } => format!("{kind}:{term}"),
        }
    }

    /// The variant's name, as a short tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Warning::ProbabilitiesAsLogits { .. } => "ProbabilitiesAsLogits",
            Warning::NotLogProbabilities { .. } => "NotLogProbabilities",
            Warning::LogOfSoftmax { .. } => "LogOfSoftmax",
            Warning::SigmoidBeforeBce { .. } => "SigmoidBeforeBce",
            Warning::PaddingAveragedIn { .. } => "PaddingAveragedIn",
            Warning::ClassIdsAsRegressionTargets { .. } => "ClassIdsAsRegressionTargets",
            Warning::ReducedTwice { .. } => "ReducedTwice",
            Warning::ClassWeightScale { .. } => "ClassWeightScale",
            Warning::AllTargetsIgnored { .. } => "AllTargetsIgnored",
            Warning::DominantTerm { .. } => "DominantTerm",
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {}. Fix: {}",
            self.mistake(),
            self.evidence(),
            self.fix()
        )
    }
}
