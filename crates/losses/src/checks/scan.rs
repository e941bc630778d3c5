//! The numeric evidence behind the input checks: plain scans over slices,
//! each returning what it found (or `None` as soon as it is clear there is
//! nothing to find, so correct input usually costs a few elements).

use crate::common::first_where;
use lossgraph_tensor::Float;

/// Row sums within this of 1 count as "sums to 1" (f32 softmax rows are
/// within ~1e-6).
pub(crate) const ROW_SUM_TOL: f64 = 1e-3;
/// A log-probability row whose log-sum-exp is farther than this from 0 has
/// probabilities that do not sum to 1 (by more than 1%).
pub(crate) const LSE_TOL: f64 = 1e-2;
/// How many rows the log-sum-exp check looks at: a mistake in the input
/// shows in every row, so the first ones suffice.
pub(crate) const LSE_ROWS: usize = 64;

/// `(min, max)` when every value lies in `[0, 1]`; `None` at the first that
/// does not (or NaN), and for no value at all.
pub(crate) fn unit_range<T: Float>(x: &[T]) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in x.iter().map(|v| v.as_f64()) {
        if !(0.0..=1.0).contains(&v) {
            return None;
        }
        lo = lo.min(v);
        hi = hi.max(v);
    }
    (!x.is_empty()).then_some((lo, hi))
}

/// The largest `|Σ row − 1|` over rows of `c` values (`c > 0`).
pub(crate) fn worst_row_sum<T: Float>(x: &[T], c: usize) -> f64 {
    x.chunks_exact(c)
        .map(|r| (r.iter().map(|v| v.as_f64()).sum::<f64>() - 1.0).abs())
        .fold(0.0, f64::max)
}

/// How many values are positive beyond rounding (`> 1e-6`), and the largest
/// value. Log-probabilities have none, and are cleared by one vectorised
/// count ([`first_where`]); the count and the maximum are taken only then.
pub(crate) fn positives<T: Float>(x: &[T]) -> (usize, f64) {
    let tol = T::of(1e-6);
    if first_where(x, move |v| v > tol).is_none() {
        return (0, f64::NAN);
    }
    x.iter()
        .map(|v| v.as_f64())
        .fold((0, f64::NEG_INFINITY), |(n, m), v| {
            (n + usize::from(v > 1e-6), m.max(v))
        })
}

/// Of the rows' log-sum-exps `lse`, the one farthest from 0, when that is
/// more than [`LSE_TOL`] (non-finite ones are skipped: anomaly mode's
/// business).
pub(crate) fn worst_lse<T: Float>(lse: &[T]) -> Option<(usize, f64)> {
    lse.iter()
        .map(|v| v.as_f64())
        .enumerate()
        .filter(|(_, v)| v.is_finite())
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
        .filter(|(_, v)| v.abs() > LSE_TOL)
}

/// A likely padding id in class-id rows of length `t` (see [`padding`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Padding {
    pub id: i64,
    /// How many targets hold it.
    pub count: usize,
    /// How many rows end in a run of it.
    pub rows_padded: usize,
    pub rows: usize,
}

/// The id that pads rows of length `t`: every one of its occurrences lies in
/// a run that ends a row (it never comes before another id), at least two
/// rows end in it, and some row ends in a run of two or more (so a
/// one-token end-of-sequence id, which also ends rows, is not taken for
/// padding). `skip` (the `ignore_index`) is never a candidate. Of several,
/// the one that fills the most targets.
pub(crate) fn padding(ids: &[i64], t: usize, skip: Option<i64>) -> Option<Padding> {
    if t < 2 || ids.len() < 2 * t {
        return None;
    }
    // per candidate id: (targets in tail runs, rows padded, longest run)
    let mut tails: Vec<(i64, usize, usize, usize)> = Vec::new();
    for row in ids.chunks_exact(t) {
        let last = row[t - 1];
        if Some(last) == skip {
            continue;
        }
        let run = row.iter().rev().take_while(|&&v| v == last).count();
        match tails.iter_mut().find(|c| c.0 == last) {
            Some(c) => {
                c.1 += run;
                c.2 += 1;
                c.3 = c.3.max(run);
            }
            None => tails.push((last, run, 1, run)),
        }
    }
    tails
        .into_iter()
        .filter(|&(id, in_tails, rows, longest)| {
            // every occurrence is in a tail run
            rows >= 2 && longest >= 2 && ids.iter().filter(|&&v| v == id).count() == in_tails
        })
        .max_by_key(|c| c.1)
        .map(|(id, count, rows_padded, _)| Padding {
            id,
            count,
            rows_padded,
            rows: ids.len() / t,
        })
}

/// `k` when the values are whole numbers that are exactly `0, 1, …, k − 1`
/// with `k ≥ 3` (two values are as likely a binary target as class ids);
/// `None` at the first value that is not a whole number in `[0, 1024)`.
pub(crate) fn class_id_values<T: Float>(x: &[T]) -> Option<usize> {
    const MAX_CLASSES: usize = 1024;
    let mut seen = vec![false; MAX_CLASSES];
    for v in x.iter().map(|v| v.as_f64()) {
        if !(v >= 0.0 && v < MAX_CLASSES as f64 && v.fract() == 0.0) {
            return None;
        }
        seen[v as usize] = true;
    }
    let k = seen.iter().take_while(|&&s| s).count();
    let contiguous = seen[k..].iter().all(|&s| !s);
    (k >= 3 && contiguous).then_some(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_range_stops_at_the_first_value_outside() {
        assert_eq!(unit_range(&[0.25f64, 1.0, 0.0]), Some((0.0, 1.0)));
        assert_eq!(unit_range(&[0.5f64, -0.1]), None);
        assert_eq!(unit_range(&[0.5f32, f32::NAN]), None);
        assert_eq!(unit_range::<f64>(&[]), None);
    }

    #[test]
    fn row_sums_and_log_sum_exps() {
        assert!(worst_row_sum(&[0.2f64, 0.8, 0.5, 0.5], 2) < 1e-15);
        assert!((worst_row_sum(&[0.2f64, 0.7], 2) - 0.1).abs() < 1e-12);
        assert_eq!(worst_lse(&[1e-7f64, -1e-3]), None);
        assert_eq!(worst_lse(&[0.0f64, -0.5, f64::INFINITY]), Some((1, -0.5)));
        assert_eq!(positives(&[-1.0f64, 0.0, 1e-9]).0, 0);
        assert_eq!(positives(&[-1.0f64, 0.0, 2.0, 1e-9]), (1, 2.0));
    }

    #[test]
    fn padding_fills_row_tails_only() {
        // rows of 5; 0 pads rows 1 and 2
        let ids = [3, 4, 1, 2, 5, 3, 1, 0, 0, 0, 2, 2, 1, 0, 0];
        let p = padding(&ids, 5, Some(-100)).unwrap();
        assert_eq!((p.id, p.count, p.rows_padded, p.rows), (0, 5, 2, 3));
        // the same rows with 0 ignored: nothing else pads
        assert_eq!(padding(&ids, 5, Some(0)), None);
        // 0 also inside a row: a real class, not padding
        let ids = [0, 4, 1, 2, 5, 3, 1, 0, 0, 0, 2, 2, 1, 0, 0];
        assert_eq!(padding(&ids, 5, None), None);
        // an end-of-sequence id (9) that ends every row once: not padding
        let ids = [3, 4, 1, 2, 9, 3, 1, 2, 7, 9];
        assert_eq!(padding(&ids, 5, None), None);
        // the same id repeated to fill a shorter row: padding (the pad id
        // is the end-of-sequence id, as in some tokenizers)
        let ids = [3, 4, 1, 2, 9, 3, 1, 9, 9, 9];
        assert_eq!(padding(&ids, 5, None).map(|p| p.id), Some(9));
    }

    #[test]
    fn class_ids_are_whole_numbers_from_zero() {
        assert_eq!(class_id_values(&[0.0f64, 2.0, 1.0, 2.0]), Some(3));
        assert_eq!(class_id_values(&[0.0f64, 1.0, 1.0]), None, "binary");
        assert_eq!(class_id_values(&[1.0f64, 2.0, 3.0]), None, "not from 0");
        assert_eq!(class_id_values(&[0.0f64, 1.0, 3.0]), None, "a gap");
        assert_eq!(class_id_values(&[0.0f64, 1.0, 2.5]), None);
        assert_eq!(class_id_values(&[0.0f64, 1.0, 2.0, 5000.0]), None);
    }
}
