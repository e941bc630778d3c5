//! Check mode: catch the loss mistakes that produce no NaN.
//!
//! Off by default. Turn it on for one tape with
//! [`Tape::set_check_mode`](crate::Tape::set_check_mode), or for every new
//! tape of a process with the environment variable `LOSSGRAPH_CHECK=1`. It
//! never changes a value or a gradient: each check that fires records a
//! typed [`Warning`] on the tape ([`Tape::warnings`](crate::Tape::warnings))
//! and prints it to stderr the first time its site (kind and ops) is seen in
//! the process, so a training loop that repeats a mistake prints it once.
//!
//! Off, a check costs one test of the tape's flag per op. On, the checks
//! that look at values scan a loss's inputs once (the cost is measured in
//! `docs/checks.md`).
//!
//! Where each check lives:
//! - checks on what a tape op was given (the log of a softmax, a mean
//!   averaged again): here, in [`primitive`], called by the tape for every
//!   op it records;
//! - the dominant term: here, in [`dominant_term`], called by `backward`
//!   and by anything else that has per-term gradient norms;
//! - checks on a loss's inputs (probabilities given as logits, padding,
//!   class ids, weights): in the losses crate, which knows what each input
//!   means, through [`Tape::warn`](crate::Tape::warn).
//!
//! ```
//! use lossgraph_autodiff::{Tape, Warning};
//! use lossgraph_tensor::Tensor;
//! let tape = Tape::<f64>::new();
//! tape.set_check_mode(true);
//! let z = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0], [1, 3])?);
//! let logp = z.softmax()?.log()?; // log_softmax was meant
//! assert!(matches!(tape.warnings()[..], [Warning::LogOfSoftmax { .. }]));
//! # Ok::<(), lossgraph_autodiff::Error>(())
//! ```

mod warning;

pub use warning::Warning;

use lossgraph_tensor::{Float, Tensor};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, OnceLock};

/// The environment variable that turns check mode on for every new tape.
pub const CHECK_ENV: &str = "LOSSGRAPH_CHECK";

/// Check 9 fires when one term's share of the gradient norm is above this.
pub const DOMINANT_SHARE: f64 = 0.9;

/// Whether `LOSSGRAPH_CHECK` asks for check mode: any value but empty, `0`,
/// `false` or `off`. Read once per process.
pub fn env_default() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| match std::env::var(CHECK_ENV) {
        Ok(v) => !matches!(v.trim(), "" | "0" | "false" | "off"),
        Err(_) => false,
    })
}

/// Print `w` to stderr unless a warning of the same site was printed before
/// in this process.
pub(crate) fn print_once(w: &Warning) {
    if first_at_site(&w.site()) {
        eprintln!("lossgraph check: {w}");
    }
}

/// Whether `site` is seen for the first time in this process.
fn first_at_site(site: &str) -> bool {
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    // a poisoned lock only means another thread panicked while printing
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    seen.insert(site.to_string())
}

/// What check mode keeps on a tape besides its warnings: which nodes hold a
/// mean (for check 6) and which are loss terms (for check 9).
#[derive(Default)]
pub(crate) struct Notes {
    /// The warnings found so far.
    pub warnings: Vec<Warning>,
    /// Nodes whose one value is a mean: the op that averaged, and the
    /// divisors that would average it again (the batch size and the item
    /// counts of what was averaged).
    pub means: BTreeMap<usize, Mean>,
    /// One-element outputs of custom ops (fused losses), by node: their op
    /// name. These are the terms check 9 compares.
    pub terms: BTreeMap<usize, String>,
}

/// A node that holds a mean (see [`Notes::means`]).
#[derive(Debug, Clone)]
pub(crate) struct Mean {
    pub op: String,
    pub divisors: Vec<usize>,
}

impl Mean {
    /// A mean made by `op` over an input of `dims`: dividing it again by the
    /// batch size (axis 0), the number of rows or the number of elements
    /// averages twice.
    pub fn over(op: &str, dims: &[usize]) -> Mean {
        let numel: usize = dims.iter().product();
        let rows = numel / dims.last().copied().filter(|&c| c > 0).unwrap_or(1);
        let mut divisors: Vec<usize> = [dims.first().copied().unwrap_or(1), rows, numel]
            .into_iter()
            .filter(|&d| d > 1)
            .collect();
        divisors.dedup();
        Mean {
            op: op.to_string(),
            divisors,
        }
    }
}

/// What the tape tells [`primitive`] about one input of the op it recorded.
pub(crate) struct Input<'a, T: Float> {
    pub id: usize,
    pub op: &'a str,
    pub value: &'a Tensor<T>,
}

/// Checks 2 (log of a softmax) and 6 (a mean averaged again) on a primitive
/// op `op` just recorded as node `id` with output `out`; also notes a new
/// one-value mean for later ops. Returns the warning, if any.
pub(crate) fn primitive<T: Float>(
    notes: &mut Notes,
    id: usize,
    op: &str,
    inputs: &[Input<'_, T>],
    out: &Tensor<T>,
) -> Option<Warning> {
    let first = inputs.first()?;
    if op == "log" && first.op == "softmax" {
        let minus_inf = out
            .as_slice()
            .iter()
            .filter(|v| v.as_f64() == f64::NEG_INFINITY)
            .count();
        return Some(Warning::LogOfSoftmax {
            node: id,
            minus_inf,
        });
    }
    let averaging = matches!(op, "mean_all" | "mean");
    if averaging && out.numel() == 1 {
        let warning = notes.means.get(&first.id).map(|m| Warning::ReducedTwice {
            first: m.op.clone(),
            second: op.to_string(),
            divisor: 1.0,
        });
        notes.means.insert(id, Mean::over(op, first.value.dims()));
        return warning;
    }
    if matches!(op, "mul_scalar" | "div" | "mul") && out.numel() == 1 {
        // the loss is whichever input holds a noted mean; the factor it was
        // scaled by is read off the values, so every spelling of "/ n" counts
        let (loss, m) = inputs
            .iter()
            .find_map(|x| notes.means.get(&x.id).map(|m| (x, m)))?;
        let (before, after) = (loss.value.as_slice()[0], out.as_slice()[0]);
        let divisor = before.as_f64() / after.as_f64();
        let hit = m
            .divisors
            .iter()
            .any(|&d| (divisor - d as f64).abs() <= 1e-4 * d as f64);
        if hit {
            return Some(Warning::ReducedTwice {
                first: m.op.clone(),
                second: op.to_string(),
                divisor: divisor.round(),
            });
        }
    }
    None
}

/// Check 9 for any set of terms: given each term's label and the norm of
/// its weighted gradient, the warning when one term's share `‖gᵢ‖ / Σⱼ ‖gⱼ‖`
/// is above [`DOMINANT_SHARE`]. Fewer than two terms, or no gradient at
/// all, is never a warning.
///
/// `backward` calls it in check mode for the loss terms of one tape; a
/// multi-term objective that computes per-term gradients can call it with
/// its own labels and record the result with [`Tape::warn`](crate::Tape::warn).
///
/// ```
/// use lossgraph_autodiff::check::dominant_term;
/// let norms = vec![("recon".to_string(), 19.0), ("kl".to_string(), 1.0)];
/// let w = dominant_term(&norms).expect("recon carries 95%");
/// assert!(w.evidence().contains("95.0%"));
/// assert!(dominant_term(&[("a".to_string(), 8.0), ("b".to_string(), 2.0)]).is_none());
/// ```
pub fn dominant_term(norms: &[(String, f64)]) -> Option<Warning> {
    if norms.len() < 2 {
        return None;
    }
    let total: f64 = norms.iter().map(|(_, n)| n).sum();
    if !(total > 0.0 && total.is_finite()) {
        return None;
    }
    let (term, top) = norms.iter().max_by(|a, b| a.1.total_cmp(&b.1))?;
    let share = top / total;
    (share > DOMINANT_SHARE).then(|| Warning::DominantTerm {
        term: term.clone(),
        share,
        norms: norms.to_vec(),
    })
}

/// Labels for loss terms named by their ops: the op name, with `#k` (its
/// position among the terms of that name, from 1) when several share it.
/// The same labels each step, so a warning prints once per site.
pub(crate) fn term_labels<'a>(ops: impl Iterator<Item = &'a str> + Clone) -> Vec<String> {
    let all: Vec<&str> = ops.collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    all.iter()
        .map(|op| {
            let k = seen.entry(op).or_insert(0);
            *k += 1;
            if all.iter().filter(|o| *o == op).count() > 1 {
                format!("{op}#{k}")
            } else {
                op.to_string()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_prints_once() {
        assert!(first_at_site("test:a_site_prints_once"));
        assert!(!first_at_site("test:a_site_prints_once"));
        assert!(first_at_site("test:a_site_prints_once:other"));
    }

    #[test]
    fn mean_divisors_are_batch_rows_and_elements() {
        assert_eq!(
            Mean::over("ce", &[8, 16, 100]).divisors,
            vec![8, 128, 12800]
        );
        assert_eq!(Mean::over("mse", &[32]).divisors, vec![32]);
        assert!(Mean::over("mse", &[1]).divisors.is_empty());
        assert!(Mean::over("mse", &[]).divisors.is_empty());
    }

    #[test]
    fn term_labels_number_repeated_ops() {
        let l = term_labels(["mse", "kl", "mse"].into_iter());
        assert_eq!(l, vec!["mse#1", "kl", "mse#2"]);
    }

    #[test]
    fn dominant_term_share_is_of_the_norms() {
        let w = dominant_term(&[("a".into(), 9.5), ("b".into(), 0.5)]).unwrap();
        match w {
            Warning::DominantTerm { term, share, .. } => {
                assert_eq!(term, "a");
                assert!((share - 0.95).abs() < 1e-12);
            }
            other => panic!("{other:?}"),
        }
        // exactly 90% is not above 90%
        assert!(dominant_term(&[("a".into(), 9.0), ("b".into(), 1.0)]).is_none());
        assert!(dominant_term(&[("a".into(), 1.0)]).is_none());
        assert!(dominant_term(&[("a".into(), 0.0), ("b".into(), 0.0)]).is_none());
    }
}
