//! Per-term gradient pressure: how hard each weighted term pushes on a chosen
//! set of shared parameters, and whether the terms push the same way.
//!
//! From the k term gradients `g_j = ∇_θ (λ_j L_j)` restricted to the shared
//! parameters θ (one backward each; see [`super::Objective::step`]):
//!
//! - `grad_norm_j = ‖g_j‖`, the pressure of term j;
//! - `share_j = ‖g_j‖ / Σ_k ‖g_k‖`, its share of the pressure (shares of the
//!   norms, which sum to 1; with conflicting terms `Σ_k ‖g_k‖` exceeds the
//!   norm of the total gradient, reported as `total_norm`);
//! - `cos(g_i, g_j)`, negative where two terms pull apart (PCGrad's test for
//!   conflicting gradients).

use std::fmt;

/// One term's values and gradient pressure at the shared parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TermPressure {
    /// The term's name.
    pub name: String,
    /// Its weight λ this step (for uncertainty weighting, `½e^{−s}`).
    pub weight: f64,
    /// The raw value `L_j`.
    pub raw: f64,
    /// The weighted value `λ_j L_j`.
    pub weighted: f64,
    /// `‖∇_θ λ_j L_j‖` over the shared parameters.
    pub grad_norm: f64,
    /// `grad_norm / Σ_k grad_norm_k` (0 when every norm is 0).
    pub share: f64,
}

/// What one diagnosed step found.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics {
    /// The label of the shared parameters (e.g. `trunk.2`).
    pub at: String,
    /// Per term, in the objective's order.
    pub terms: Vec<TermPressure>,
    /// `‖Σ_j g_j‖`: the norm of the total gradient at the shared parameters.
    pub total_norm: f64,
    /// `cosines[i][j] = cos(g_i, g_j)` (0 where either gradient is 0).
    pub cosines: Vec<Vec<f64>>,
}

/// Two terms whose gradients at the shared parameters point apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// One term.
    pub a: String,
    /// The other.
    pub b: String,
    /// Their cosine (< 0).
    pub cosine: f64,
}

/// The reading of a [`Diagnostics`], as data; `Display` writes it as a
/// sentence: "term `box` contributes 97% of the gradient norm at `trunk.2`
/// (λ = 0.1, raw value 41.3)".
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The term with the largest share.
    pub term: String,
    /// Its share of the gradient norm, in [0, 1].
    pub share: f64,
    /// The label of the shared parameters.
    pub at: String,
    /// Its weight λ.
    pub weight: f64,
    /// Its raw value.
    pub raw: f64,
    /// Pairs of terms with a negative cosine, most opposed first.
    pub conflicts: Vec<Conflict>,
}

impl Diagnostics {
    /// Build from the per-term values and the Gram matrix of the term
    /// gradients at the shared parameters (`gram[i][j] = ⟨g_i, g_j⟩`).
    pub(crate) fn from_gram(
        at: &str,
        names: &[String],
        weights: &[f64],
        raws: &[f64],
        gram: &[Vec<f64>],
    ) -> Self {
        let k = names.len();
        let norms: Vec<f64> = (0..k).map(|j| gram[j][j].max(0.0).sqrt()).collect();
        let sum: f64 = norms.iter().sum();
        let total_sq: f64 = gram.iter().flatten().sum();
        let terms = (0..k)
            .map(|j| TermPressure {
                name: names[j].clone(),
                weight: weights[j],
                raw: raws[j],
                weighted: weights[j] * raws[j],
                grad_norm: norms[j],
                share: if sum > 0.0 { norms[j] / sum } else { 0.0 },
            })
            .collect();
        let cosines = (0..k)
            .map(|i| {
                (0..k)
                    .map(|j| {
                        let d = norms[i] * norms[j];
                        if d > 0.0 {
                            (gram[i][j] / d).clamp(-1.0, 1.0)
                        } else {
                            0.0
                        }
                    })
                    .collect()
            })
            .collect();
        Diagnostics {
            at: at.to_string(),
            terms,
            total_norm: total_sq.max(0.0).sqrt(),
            cosines,
        }
    }

    /// The largest term gradient norm over the smallest (∞ when the smallest
    /// is 0 and the largest is not; 1 for one term): how far apart the terms'
    /// pressures are.
    pub fn norm_ratio(&self) -> f64 {
        let norms = self.terms.iter().map(|t| t.grad_norm);
        let max = norms.clone().fold(0.0, f64::max);
        let min = norms.fold(f64::INFINITY, f64::min);
        if max == 0.0 {
            1.0
        } else {
            max / min
        }
    }

    /// The term with the largest share, and the conflicting pairs.
    pub fn verdict(&self) -> Verdict {
        let top = self
            .terms
            .iter()
            .fold(None::<&TermPressure>, |best, t| match best {
                Some(b) if b.share >= t.share => Some(b),
                _ => Some(t),
            });
        let mut conflicts = Vec::new();
        for i in 0..self.terms.len() {
            for j in i + 1..self.terms.len() {
                if self.cosines[i][j] < 0.0 {
                    conflicts.push(Conflict {
                        a: self.terms[i].name.clone(),
                        b: self.terms[j].name.clone(),
                        cosine: self.cosines[i][j],
                    });
                }
            }
        }
        conflicts.sort_by(|x, y| x.cosine.total_cmp(&y.cosine));
        // an objective has at least one term (checked when it is built)
        let top = top.cloned().unwrap_or(TermPressure {
            name: String::new(),
            weight: 0.0,
            raw: 0.0,
            weighted: 0.0,
            grad_norm: 0.0,
            share: 0.0,
        });
        Verdict {
            term: top.name,
            share: top.share,
            at: self.at.clone(),
            weight: top.weight,
            raw: top.raw,
            conflicts,
        }
    }

    /// Print the table and the verdict to standard output.
    pub fn print(&self) {
        println!("{self}");
    }
}

/// A number to about three significant digits, trailing zeros dropped, as
/// a person reads it.
fn sig3(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 || !x.is_finite() {
        format!("{x}")
    } else if !(1e-3..1e5).contains(&a) {
        format!("{x:.2e}")
    } else {
        let decimals = (2 - a.log10().floor() as i32).max(0) as usize;
        let s = format!("{x:.decimals$}");
        // 0.100 reads as 0.1, 8.00 as 8
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "term `{}` contributes {:.0}% of the gradient norm at `{}` (λ = {}, raw value {})",
            self.term,
            100.0 * self.share,
            self.at,
            sig3(self.weight),
            sig3(self.raw)
        )?;
        for c in &self.conflicts {
            write!(
                f,
                "\nterms `{}` and `{}` conflict at `{}` (cosine {:.2})",
                c.a, c.b, self.at, c.cosine
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:>10} {:>11} {:>11} {:>11} {:>6}",
            "term", "λ", "raw", "weighted", "‖∇‖", "share"
        )?;
        for t in &self.terms {
            writeln!(
                f,
                "{:<12} {:>10} {:>11} {:>11} {:>11} {:>5.1}%",
                t.name,
                sig3(t.weight),
                sig3(t.raw),
                sig3(t.weighted),
                sig3(t.grad_norm),
                100.0 * t.share
            )?;
        }
        write!(f, "{}", self.verdict())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shares_cosines_and_verdict_from_a_gram_matrix() {
        // g_a = (3, 0), g_b = (−4, 0): norms 3 and 4, cosine −1
        let gram = vec![vec![9.0, -12.0], vec![-12.0, 16.0]];
        let d = Diagnostics::from_gram(
            "trunk",
            &names(&["a", "b"]),
            &[1.0, 0.5],
            &[3.0, 8.0],
            &gram,
        );
        assert!((d.terms[0].share - 3.0 / 7.0).abs() < 1e-15);
        assert!((d.terms[1].share - 4.0 / 7.0).abs() < 1e-15);
        assert_eq!(d.terms[1].weighted, 4.0);
        assert!((d.total_norm - 1.0).abs() < 1e-15); // ‖(−1, 0)‖
        assert_eq!(d.cosines[0][1], -1.0);
        assert!((d.norm_ratio() - 4.0 / 3.0).abs() < 1e-15);
        let v = d.verdict();
        assert_eq!((v.term.as_str(), v.at.as_str()), ("b", "trunk"));
        assert_eq!(v.conflicts.len(), 1);
        assert_eq!(
            v.to_string(),
            "term `b` contributes 57% of the gradient norm at `trunk` (λ = 0.5, raw value 8)\n\
             terms `a` and `b` conflict at `trunk` (cosine -1.00)"
        );
    }

    #[test]
    fn zero_gradients_give_zero_shares_not_nan() {
        let gram = vec![vec![0.0, 0.0], vec![0.0, 0.0]];
        let d = Diagnostics::from_gram("t", &names(&["a", "b"]), &[1.0, 1.0], &[0.0, 0.0], &gram);
        assert!(d.terms.iter().all(|t| t.share == 0.0 && t.grad_norm == 0.0));
        assert_eq!(d.cosines, vec![vec![0.0; 2]; 2]);
        assert_eq!(d.norm_ratio(), 1.0);
        assert!(d.verdict().conflicts.is_empty());
    }

    #[test]
    fn three_significant_digits() {
        assert_eq!(sig3(41.3), "41.3");
        assert_eq!(sig3(0.1), "0.1");
        assert_eq!(sig3(0.123456), "0.123");
        assert_eq!(sig3(1234.0), "1234");
        assert_eq!(sig3(2.5e-7), "2.50e-7");
    }
}
