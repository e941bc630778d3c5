//! Multi-term objectives: `L = Σ_j λ_j L_j`, named terms, one backward for
//! the total, and on request the gradient pressure of each term.
//!
//! A term's weight is not its influence: a term measured on a 100× larger
//! scale pushes the shared parameters 100× harder under the same λ. An
//! [`Objective`] records the terms a closure builds, weights them (fixed,
//! uncertainty weighting or GradNorm, see [`GradNormOptions`] and the
//! `balance` module docs), and returns the total's gradients — and, when
//! asked, [`Diagnostics`]: per term the raw and weighted value, the norm of
//! the weighted term's gradient at chosen [`Shared`] parameters, its share,
//! the cosines between terms, and a [`Verdict`] a person can read.
//!
//! **Cost of a diagnosed step.** The forward runs once: the tape keeps every
//! node, and a backward can start from any of them, so each weighted term
//! gets its own backward pass from its own node (k passes for k terms,
//! where an undiagnosed step makes one from the total). The total's
//! gradient is not a further pass: backward is linear, so it is the sum of
//! the term gradients. A pass from one term walks only that term's part of
//! the graph — its head and the shared trunk — so the extra cost is about
//! (k − 1) backward passes through the trunk. That is why diagnostics are
//! a per-call request (run them every N steps); GradNorm needs them every
//! step, which is its inherent cost.
//!
//! ```
//! use lossgraph_losses::{mse, MseOptions};
//! use lossgraph_nn::{Objective, ParamStore, Shared};
//! use lossgraph_tensor::Tensor;
//! let mut params = ParamStore::<f64>::new();
//! let w = params.add("w", Tensor::from_vec(vec![0.5], [1])?)?;
//! let mut objective = Objective::fixed(&[("small", 1.0), ("box", 0.1)])?;
//! let at = Shared::new("w", vec![w]);
//! let step = objective.step(&params, Some(&at), |p| {
//!     let w = p.var(w)?;
//!     let t = p.tape();
//!     let small = mse(w, &t.constant(Tensor::from_vec(vec![1.0], [1])?), &MseOptions::default())?;
//!     let big = mse(w, &t.constant(Tensor::from_vec(vec![100.0], [1])?), &MseOptions::default())?;
//!     Ok(vec![small, big])
//! })?;
//! let d = step.diagnostics.unwrap();
//! assert_eq!(d.verdict().term, "box"); // 0.1·2·99.5 against 1·2·0.5
//! println!("{}", d.verdict());
//! # Ok::<(), lossgraph_autodiff::Error>(())
//! ```

mod balance;
mod diagnostics;

pub use balance::GradNormOptions;
pub use diagnostics::{Conflict, Diagnostics, TermPressure, Verdict};

use crate::params::{Bound, ParamGrads, ParamId, ParamStore};
use balance::{bad, check_grad_norm, GradNorm, Weighting};
use lossgraph_autodiff::{Error, Result, Tape, Var};
use lossgraph_tensor::{Float, Tensor};

/// A labelled set of shared parameters at which the terms' gradients are
/// compared (e.g. the last layer of a shared trunk, as GradNorm does).
#[derive(Debug, Clone, PartialEq)]
pub struct Shared {
    /// How the verdict names them (e.g. `trunk.2`).
    pub label: String,
    /// The parameters.
    pub params: Vec<ParamId>,
}

impl Shared {
    /// Parameters `params` under the name `label`.
    pub fn new(label: impl Into<String>, params: Vec<ParamId>) -> Self {
        Shared {
            label: label.into(),
            params,
        }
    }
}

/// One term's values in a step.
#[derive(Debug, Clone, PartialEq)]
pub struct TermValue {
    /// Its name.
    pub name: String,
    /// Its weight this step.
    pub weight: f64,
    /// `L_j`.
    pub raw: f64,
    /// `λ_j L_j`.
    pub weighted: f64,
}

/// What [`Objective::step`] returns.
#[derive(Debug, Clone)]
pub struct Step<T: Float> {
    /// The total (with uncertainty weighting, the `½Σs_j` term included).
    pub total: f64,
    /// Per term, in order.
    pub terms: Vec<TermValue>,
    /// The total's gradients, one slot per parameter.
    pub grads: ParamGrads<T>,
    /// Present when the step was diagnosed (always with GradNorm).
    pub diagnostics: Option<Diagnostics>,
}

/// Named, weighted terms with one backward for their total. See the module
/// docs.
#[derive(Debug, Clone)]
pub struct Objective {
    names: Vec<String>,
    weighting: Weighting,
}

impl Objective {
    /// Fixed weights: `L = Σ λ_j L_j`.
    ///
    /// # Errors
    /// `InvalidOption` for no term, an empty or repeated name, or a weight
    /// that is negative or not finite.
    pub fn fixed(terms: &[(&str, f64)]) -> Result<Self> {
        let names = check_names(terms.iter().map(|t| t.0))?;
        for &(name, w) in terms {
            if !(w.is_finite() && w >= 0.0) {
                return Err(bad(
                    "weight",
                    format!("term `{name}`: {w} must be finite and >= 0"),
                ));
            }
        }
        Ok(Objective {
            names,
            weighting: Weighting::Fixed(terms.iter().map(|t| t.1).collect()),
        })
    }

    /// Uncertainty weighting: `L = Σ ½e^{−s_j}·L_j + ½s_j`, one learnable
    /// log-variance `s_j` per term, added to `params` as
    /// `objective.log_var.<name>` (0-d, starting at 0) for the model's
    /// optimizer to step with everything else.
    ///
    /// # Errors
    /// As [`Self::fixed`] for the names; `InvalidOption` when a parameter of
    /// that name exists already (then `params` is left unchanged).
    pub fn uncertainty<T: Float>(params: &mut ParamStore<T>, names: &[&str]) -> Result<Self> {
        let names = check_names(names.iter().copied())?;
        let key = |n: &str| format!("objective.log_var.{n}");
        if let Some(n) = names.iter().find(|n| params.id(&key(n)).is_some()) {
            return Err(bad(
                "names",
                format!("parameter `{}` exists already", key(n)),
            ));
        }
        let ids = names
            .iter()
            .map(|n| params.add(key(n), Tensor::scalar(T::zero())))
            .collect::<Result<Vec<_>>>()?;
        Ok(Objective {
            names,
            weighting: Weighting::Uncertainty(ids),
        })
    }

    /// GradNorm at the `shared` parameters, weights starting at 1.
    ///
    /// # Errors
    /// As [`Self::fixed`] for the names; `InvalidOption` for options out of
    /// range or no shared parameter.
    pub fn grad_norm(names: &[&str], shared: Shared, opts: GradNormOptions) -> Result<Self> {
        let names = check_names(names.iter().copied())?;
        check_grad_norm(&opts)?;
        if shared.params.is_empty() {
            return Err(bad("shared", "GradNorm needs shared parameters".into()));
        }
        Ok(Objective {
            weighting: Weighting::GradNorm(GradNorm {
                shared,
                opts,
                weights: vec![1.0; names.len()],
                initial: None,
            }),
            names,
        })
    }

    /// The term names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The current weights (uncertainty weighting: `½e^{−s_j}` read from
    /// `params`).
    ///
    /// # Errors
    /// `StoreMismatch` when uncertainty weighting was set up on another store.
    pub fn weights<T: Float>(&self, params: &ParamStore<T>) -> Result<Vec<f64>> {
        match &self.weighting {
            Weighting::Fixed(w) => Ok(w.clone()),
            Weighting::GradNorm(g) => Ok(g.weights.clone()),
            Weighting::Uncertainty(ids) => ids
                .iter()
                .map(|&id| Ok(0.5 * (-params.value(id)?.item()?.as_f64()).exp()))
                .collect(),
        }
    }

    /// One step: a fresh tape with `params` bound, `terms` builds the raw
    /// terms `L_j` (one-element vars, in the objective's order), then the
    /// weighted total and its gradients. With `diagnose` (and always with
    /// GradNorm, at its own shared parameters) each weighted term gets its
    /// own backward and the step reports [`Diagnostics`]; GradNorm then
    /// moves its weights for the next step. The tape is dropped before this
    /// returns.
    ///
    /// # Errors
    /// `terms`' errors; `InvalidOption` when it returns another number of
    /// terms than the objective has; `NotScalar` for a term of more than
    /// one element; `TapeMismatch` for a term on another tape;
    /// `StoreMismatch` for shared parameters of another store; errors of the
    /// backward passes; `InvalidOption` for a GradNorm objective diagnosed at
    /// other parameters than its own. The objective's state is unchanged on error.
    pub fn step<T: Float>(
        &mut self,
        params: &ParamStore<T>,
        diagnose: Option<&Shared>,
        terms: impl FnOnce(&Bound<T>) -> Result<Vec<Var<T>>>,
    ) -> Result<Step<T>> {
        if let (Weighting::GradNorm(g), Some(at)) = (&self.weighting, diagnose) {
            if *at != g.shared {
                return Err(bad(
                    "diagnose",
                    "GradNorm diagnoses at its own shared parameters: pass None or those".into(),
                ));
            }
        }
        let tape = Tape::new();
        let bound = params.bind(&tape);
        let raw_vars = terms(&bound)?;
        self.check_terms(&tape, &raw_vars)?;
        let (weighted, reg, weights) = self.weigh(&bound, &raw_vars)?;
        let mut total = weighted[0].clone();
        for w in weighted[1..].iter().chain(reg.iter()) {
            total = total.add(w)?;
        }
        let raw: Vec<f64> = raw_vars
            .iter()
            .map(|v| Ok(v.item()?.as_f64()))
            .collect::<Result<_>>()?;
        let values = self
            .names
            .iter()
            .zip(&weights)
            .zip(&raw)
            .map(|((name, &weight), &raw)| TermValue {
                name: name.clone(),
                weight,
                raw,
                weighted: weight * raw,
            })
            .collect();
        let at = match (&self.weighting, diagnose) {
            (_, Some(at)) => Some(at),
            (Weighting::GradNorm(g), None) => Some(&g.shared),
            _ => None,
        };
        let (grads, diagnostics) = match at {
            None => (bound.grads(total.backward()?), None),
            Some(at) => {
                let (grads, d) =
                    self.diagnosed(&bound, &weighted, reg.as_ref(), at, &weights, &raw)?;
                (grads, Some(d))
            }
        };
        let total = total.item()?.as_f64();
        drop(bound);
        // the step succeeded: only now may GradNorm's state move
        if let (Weighting::GradNorm(g), Some(d)) = (&mut self.weighting, &diagnostics) {
            let norms: Vec<f64> = d.terms.iter().map(|t| t.grad_norm).collect();
            let (w, init) = g.next_weights(&raw, &norms);
            g.weights = w;
            g.initial = Some(init);
        }
        Ok(Step {
            total,
            terms: values,
            grads,
            diagnostics,
        })
    }

    fn check_terms<T: Float>(&self, tape: &Tape<T>, terms: &[Var<T>]) -> Result<()> {
        if terms.len() != self.names.len() {
            return Err(bad(
                "terms",
                format!(
                    "{} terms built for an objective of {}",
                    terms.len(),
                    self.names.len()
                ),
            ));
        }
        for v in terms {
            if !v.tape().same(tape) {
                return Err(Error::TapeMismatch {
                    op: "Objective::step".into(),
                });
            }
            if v.shape().numel() != 1 {
                return Err(Error::NotScalar { shape: v.dims() });
            }
        }
        Ok(())
    }

    /// The weighted terms `λ_j L_j`, the regulariser of uncertainty
    /// weighting (`½Σs_j`), and the weights' values.
    #[allow(clippy::type_complexity)]
    fn weigh<T: Float>(
        &self,
        bound: &Bound<T>,
        raw: &[Var<T>],
    ) -> Result<(Vec<Var<T>>, Option<Var<T>>, Vec<f64>)> {
        let fixed = |w: &[f64]| -> Result<_> {
            let v = raw
                .iter()
                .zip(w)
                .map(|(l, &w)| l.mul_scalar(T::of(w)))
                .collect::<Result<Vec<_>>>()?;
            Ok((v, None, w.to_vec()))
        };
        match &self.weighting {
            Weighting::Fixed(w) => fixed(w),
            Weighting::GradNorm(g) => fixed(&g.weights),
            Weighting::Uncertainty(ids) => {
                let half = T::of(0.5);
                let (mut weighted, mut weights, mut reg) = (vec![], vec![], None::<Var<T>>);
                for (l, &id) in raw.iter().zip(ids) {
                    let s = bound.var(id)?;
                    let lam = s.neg()?.exp()?.mul_scalar(half)?;
                    weights.push(lam.item()?.as_f64());
                    weighted.push(l.reshape(lam.dims())?.mul(&lam)?);
                    let hs = s.mul_scalar(half)?;
                    reg = Some(match reg {
                        Some(r) => r.add(&hs)?,
                        None => hs,
                    });
                }
                Ok((weighted, reg, weights))
            }
        }
    }

    /// One backward per weighted term (and one for the regulariser), the
    /// total's gradients as their sum, and the diagnostics at `at`.
    fn diagnosed<T: Float>(
        &self,
        bound: &Bound<T>,
        weighted: &[Var<T>],
        reg: Option<&Var<T>>,
        at: &Shared,
        weights: &[f64],
        raw: &[f64],
    ) -> Result<(ParamGrads<T>, Diagnostics)> {
        let per_term = weighted
            .iter()
            .map(|w| Ok(bound.grads(w.backward()?)))
            .collect::<Result<Vec<_>>>()?;
        let k = per_term.len();
        let mut gram = vec![vec![0.0; k]; k];
        for i in 0..k {
            for j in i..k {
                let d = per_term[i].dot_of(&per_term[j], &at.params)?;
                gram[i][j] = d;
                gram[j][i] = d;
            }
        }
        let diagnostics = Diagnostics::from_gram(&at.label, &self.names, weights, raw, &gram);
        let mut total = per_term[0].clone();
        for g in &per_term[1..] {
            total.add(g)?;
        }
        if let Some(r) = reg {
            total.add(&bound.grads(r.backward()?))?;
        }
        Ok((total, diagnostics))
    }
}

/// The names, checked: at least one, none empty, none repeated.
fn check_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<Vec<String>> {
    let names: Vec<String> = names.map(str::to_string).collect();
    if names.is_empty() {
        return Err(bad("terms", "an objective needs at least one term".into()));
    }
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() || names[..i].contains(n) {
            return Err(bad(
                "terms",
                format!("term name {n:?} is empty or repeated"),
            ));
        }
    }
    Ok(names)
}
