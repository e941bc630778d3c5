//! How the terms are weighted: fixed weights, uncertainty weighting
//! (Kendall, Gal and Cipolla 2018) and GradNorm (Chen et al. 2018).
//!
//! **Uncertainty weighting** gives each term a learnable log-variance
//! `s_j = log σ_j²` (a parameter of the store, stepped by the model's own
//! optimizer) and minimises `Σ_j ½e^{−s_j}·L_j + ½s_j`, the negative
//! log-likelihood of a Gaussian with variance σ_j² (Kendall et al., eq. 5,
//! written in `s` for stability as they advise). At `∂/∂s_j = 0`,
//! `e^{s_j} = L_j`: each term's weight settles at `½/L_j`, which undoes its
//! scale — a term measured in units 100× smaller gets a weight 100× smaller.
//!
//! **GradNorm** keeps one weight per term and moves it so that the terms'
//! gradient norms at shared parameters W, `G_j = ‖∇_W w_j L_j‖`, approach a
//! common target: their mean `Ḡ` times `r_j^α`, where `r_j` is the term's
//! relative inverse training rate (`L_j(t)/L_j(0)` over its mean across
//! terms) — a term that trains slower is given more pressure, α setting how
//! much. The paper minimises `L_grad = Σ_j |G_j − Ḡ·r_j^α|` in the weights,
//! the target held constant; `∂L_grad/∂w_j = sign(G_j − target_j)·G_j/w_j`.
//! Here the step is taken in `log w_j` and divided by `Ḡ`:
//! `log w_j −= lr·sign(G_j − target_j)·G_j/Ḡ`, which keeps the weights
//! positive without the paper's clamp and makes `lr` free of the losses'
//! scale (one rate works whether the gradients are 1e-3 or 1e3); then the
//! weights are renormalised to sum to the number of terms, as in the paper.
//! No second-order gradient is needed: `G_j` is linear in `w_j`.

use super::Shared;
use crate::params::ParamId;
use lossgraph_autodiff::Result;

/// Options of GradNorm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradNormOptions {
    /// α ≥ 0: how strongly a term that trains slower is pushed (default 1.5,
    /// the paper's value for its NYUv2 runs; 0 equalises the norms).
    pub alpha: f64,
    /// The rate of the step in `log w` (default 0.025), > 0.
    pub lr: f64,
}

impl Default for GradNormOptions {
    fn default() -> Self {
        GradNormOptions {
            alpha: 1.5,
            lr: 0.025,
        }
    }
}

/// The weighting rule of an [`Objective`](super::Objective).
#[derive(Debug, Clone)]
pub(crate) enum Weighting {
    /// `λ_j`, constant.
    Fixed(Vec<f64>),
    /// One log-variance parameter per term.
    Uncertainty(Vec<ParamId>),
    /// GradNorm's weights and state.
    GradNorm(GradNorm),
}

/// GradNorm's state: the weights, the shared parameters, and each term's
/// first value (the `L_j(0)` of the training rates).
#[derive(Debug, Clone)]
pub(crate) struct GradNorm {
    pub(crate) shared: Shared,
    pub(crate) opts: GradNormOptions,
    pub(crate) weights: Vec<f64>,
    pub(crate) initial: Option<Vec<f64>>,
}

impl GradNorm {
    /// The weights after one GradNorm step from this step's raw values and
    /// weighted-term gradient norms `g` at the shared parameters, and the
    /// first values (set on the first step). Pure: the caller stores the
    /// result once the whole step has succeeded.
    pub(crate) fn next_weights(&self, raw: &[f64], g: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let k = raw.len() as f64;
        let initial = self.initial.clone().unwrap_or_else(|| raw.to_vec());
        // L_j(t)/L_j(0); a term that started at 0 has nothing to train
        let rate: Vec<f64> = raw
            .iter()
            .zip(&initial)
            .map(|(&l, &l0)| if l0 > 0.0 { l / l0 } else { 1.0 })
            .collect();
        let mean_rate = rate.iter().sum::<f64>() / k;
        let mean_g = g.iter().sum::<f64>() / k;
        if !(mean_g > 0.0 && mean_rate > 0.0 && mean_g.is_finite()) {
            return (self.weights.clone(), initial); // no pressure to balance
        }
        let mut logw: Vec<f64> = self
            .weights
            .iter()
            .zip(g)
            .zip(&rate)
            .map(|((&w, &gj), &r)| {
                let target = mean_g * (r / mean_rate).powf(self.opts.alpha);
                let sign = if gj > target {
                    1.0
                } else if gj < target {
                    -1.0
                } else {
                    0.0
                };
                w.ln() - self.opts.lr * sign * gj / mean_g
            })
            .collect();
        // renormalise to Σ w = k (in log space: subtract log of the mean)
        let max = logw.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let mean_w = logw.iter().map(|l| (l - max).exp()).sum::<f64>() / k;
        let shift = max + mean_w.ln();
        for l in &mut logw {
            *l -= shift;
        }
        (logw.into_iter().map(f64::exp).collect(), initial)
    }
}

/// `InvalidOption` for GradNorm's options out of range.
pub(crate) fn check_grad_norm(o: &GradNormOptions) -> Result<()> {
    if !(o.alpha.is_finite() && o.alpha >= 0.0) {
        return Err(bad("alpha", format!("{} must be finite and >= 0", o.alpha)));
    }
    if !(o.lr.is_finite() && o.lr > 0.0) {
        return Err(bad("lr", format!("{} must be finite and > 0", o.lr)));
    }
    Ok(())
}

pub(crate) fn bad(name: &str, reason: String) -> lossgraph_autodiff::Error {
    lossgraph_tensor::Error::option("Objective", name, reason).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gn(weights: Vec<f64>, alpha: f64) -> GradNorm {
        GradNorm {
            shared: Shared {
                label: "w".into(),
                params: vec![],
            },
            opts: GradNormOptions { alpha, lr: 0.1 },
            weights,
            initial: None,
        }
    }

    #[test]
    fn the_term_above_target_loses_weight_and_the_sum_stays_k() {
        let g = gn(vec![1.0, 1.0], 0.0);
        let (w, init) = g.next_weights(&[1.0, 100.0], &[1.0, 100.0]);
        assert_eq!(init, vec![1.0, 100.0]);
        assert!(w[1] < 1.0 && w[0] > 1.0, "{w:?}");
        assert!((w[0] + w[1] - 2.0).abs() < 1e-12);
        // in log space before renormalising: −lr·(+1)·100/50.5 and −lr·(−1)·1/50.5
        let expect = (0.1 * (100.0 + 1.0) / 50.5f64).exp();
        assert!((w[0] / w[1] - expect).abs() < 1e-12);
    }

    #[test]
    fn a_slower_term_gets_a_higher_target_with_alpha() {
        // equal norms, but term 1 has trained less (rate 1 vs 0.5): with α > 0
        // its target rises above the mean, so its weight goes up
        let mut g = gn(vec![1.0, 1.0], 1.0);
        g.initial = Some(vec![1.0, 1.0]);
        let (w, _) = g.next_weights(&[1.0, 0.5], &[1.0, 1.0]);
        assert!(w[0] > w[1], "{w:?}");
    }

    #[test]
    fn no_gradient_leaves_the_weights() {
        let g = gn(vec![0.5, 1.5], 1.0);
        assert_eq!(g.next_weights(&[1.0, 1.0], &[0.0, 0.0]).0, vec![0.5, 1.5]);
    }
}
