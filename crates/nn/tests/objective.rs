//! Multi-term objectives on a synthetic two-task problem: one shared trunk,
//! two noisy regression heads of the same difficulty, the second term
//! measured on a scale ×100 (its mse times 100). The diagnostic must name it;
//! after training on mini-batches, uncertainty weighting and GradNorm must
//! bring the two terms' gradient norms at the trunk within 2× of each other,
//! where fixed weights leave them far apart.
//!
//! Why noisy targets and mini-batches: at a stationary point of the total
//! the term gradients at the trunk cancel (`g_small = −g_big`), so their
//! norms are equal whatever the weights. What the weights set is the
//! pressure while training — on a mini-batch, each term's gradient is
//! mostly its own noise, on its own scale — and that is what the test
//! measures: the mean norm over the last steps of training.

use lossgraph_autodiff::{ErrorKind, Result, Var};
use lossgraph_losses::{mse, MseOptions};
use lossgraph_nn::objective::Diagnostics;
use lossgraph_nn::{
    select_rows, tanh, Adam, AdamOptions, Batches, Bound, GradNormOptions, Init, Linear, Module,
    Objective, Optimizer, ParamStore, Shared,
};
use lossgraph_tensor::Tensor;

const N: usize = 512;
const BATCH: usize = 32;
const NOISE: f64 = 0.3;
const SCALE: f64 = 100.0;

struct Problem {
    x: Tensor<f64>,
    y1: Tensor<f64>,
    y2: Tensor<f64>,
}

impl Problem {
    /// `y_j = tanh(x·u_j) + noise` for two random directions `u_j`.
    fn new() -> Self {
        let x = Tensor::<f64>::randn([N, 8], 0.0, 1.0, 1).unwrap();
        let target = |seed| {
            let u = Tensor::<f64>::randn([8, 1], 0.0, 0.5, seed).unwrap();
            let noise = Tensor::<f64>::randn([N, 1], 0.0, NOISE, seed + 10).unwrap();
            x.matmul(&u).unwrap().map(f64::tanh).add(&noise).unwrap()
        };
        let (y1, y2) = (target(2), target(3));
        Problem { x, y1, y2 }
    }
    /// The rows `rows` as a problem of their own.
    fn rows(&self, rows: &[usize]) -> Self {
        let pick = |t: &Tensor<f64>| select_rows(t, rows).unwrap();
        Problem {
            x: pick(&self.x),
            y1: pick(&self.y1),
            y2: pick(&self.y2),
        }
    }
}

struct Model {
    trunk: Linear,
    head1: Linear,
    head2: Linear,
}

impl Model {
    fn new(params: &mut ParamStore<f64>) -> Self {
        let init = Init::xavier_uniform();
        Model {
            trunk: Linear::new(params, "trunk", 8, 16, init, 10).unwrap(),
            head1: Linear::new(params, "small_head", 16, 1, init, 11).unwrap(),
            head2: Linear::new(params, "big_head", 16, 1, init, 12).unwrap(),
        }
    }
    fn shared(&self) -> Shared {
        Shared::new("trunk", vec![self.trunk.weight(), self.trunk.bias()])
    }
    /// The raw terms: `small = mse(head1, y1)`, `big = 100·mse(head2, y2)`.
    fn terms(&self, p: &Bound<f64>, d: &Problem) -> Result<Vec<Var<f64>>> {
        let t = p.tape();
        let h = tanh(&self.trunk.forward(p, &t.constant(d.x.clone()))?)?;
        let o = MseOptions::default();
        let small = mse(&self.head1.forward(p, &h)?, &t.constant(d.y1.clone()), &o)?;
        let big = mse(&self.head2.forward(p, &h)?, &t.constant(d.y2.clone()), &o)?;
        Ok(vec![small, big.mul_scalar(SCALE)?])
    }
}

/// Train `objective` for `epochs` of mini-batch Adam steps; the last epoch
/// is diagnosed step by step, and its mean per-term gradient norms at the
/// trunk are returned as (small, big), with the last step's diagnostics.
fn train(
    objective: &mut Objective,
    params: &mut ParamStore<f64>,
    m: &Model,
    epochs: u64,
) -> ((f64, f64), Diagnostics) {
    let data = Problem::new();
    let mut opt = Adam::new(AdamOptions {
        lr: 0.01,
        ..Default::default()
    })
    .unwrap();
    let at = m.shared();
    let batches = Batches::new(N, BATCH, 7).unwrap();
    let (mut small, mut big, mut steps, mut last) = (0.0, 0.0, 0.0, None);
    for epoch in 0..epochs {
        let diagnose = (epoch + 1 == epochs).then_some(&at);
        for rows in batches.epoch(epoch) {
            let d = data.rows(&rows);
            let step = objective
                .step(params, diagnose, |p| m.terms(p, &d))
                .unwrap();
            opt.step(params, &step.grads).unwrap();
            if let Some(diag) = step.diagnostics.filter(|_| diagnose.is_some()) {
                small += grad_norm(&diag, "small");
                big += grad_norm(&diag, "big");
                steps += 1.0;
                last = Some(diag);
            }
        }
    }
    ((small / steps, big / steps), last.unwrap())
}

fn grad_norm(d: &Diagnostics, name: &str) -> f64 {
    d.terms.iter().find(|t| t.name == name).unwrap().grad_norm
}

#[test]
fn the_diagnostic_names_the_term_measured_on_the_larger_scale() {
    let mut params = ParamStore::new();
    let m = Model::new(&mut params);
    let mut objective = Objective::fixed(&[("small", 1.0), ("big", 1.0)]).unwrap();
    let d = Problem::new();
    let step = objective
        .step(&params, Some(&m.shared()), |p| m.terms(p, &d))
        .unwrap();
    let diag = step.diagnostics.unwrap();
    let v = diag.verdict();
    assert_eq!((v.term.as_str(), v.at.as_str()), ("big", "trunk"));
    assert!(v.share > 0.9, "{diag}");
    assert!(v.to_string().starts_with("term `big` contributes 9"), "{v}");
    // the table and verdict print, and the values are the step's
    let shares: f64 = diag.terms.iter().map(|t| t.share).sum();
    assert!((shares - 1.0).abs() < 1e-12);
    assert_eq!(diag.terms[1].raw, step.terms[1].raw);
    assert!((step.total - step.terms.iter().map(|t| t.weighted).sum::<f64>()).abs() < 1e-12);
}

#[test]
fn a_diagnosed_step_has_the_same_gradients_as_a_plain_one() {
    let mut params = ParamStore::new();
    let m = Model::new(&mut params);
    let d = Problem::new();
    for mut objective in [
        Objective::fixed(&[("small", 0.3), ("big", 2.0)]).unwrap(),
        Objective::uncertainty(&mut params, &["small", "big"]).unwrap(),
    ] {
        let plain = objective.step(&params, None, |p| m.terms(p, &d)).unwrap();
        let diag = objective
            .step(&params, Some(&m.shared()), |p| m.terms(p, &d))
            .unwrap();
        assert!(plain.diagnostics.is_none() && diag.diagnostics.is_some());
        assert_eq!(plain.total, diag.total);
        for (a, b) in plain.grads.iter().zip(diag.grads.iter()) {
            // a parameter no term depends on has no gradient either way
            let (Some(a), Some(b)) = (a, b) else {
                assert_eq!(a.is_none(), b.is_none());
                continue;
            };
            for (x, y) in a.as_slice().iter().zip(b.as_slice()) {
                assert!((x - y).abs() <= 1e-12 * (1.0 + x.abs()), "{x} vs {y}");
            }
        }
    }
}

#[test]
fn uncertainty_weighting_follows_kendalls_objective() {
    // one term L, s = log σ²: total = ½e^{−s}L + ½s, so ∂/∂s = ½ − ½e^{−s}L
    let mut params = ParamStore::<f64>::new();
    let w = params
        .add("w", Tensor::from_vec(vec![3.0], [1]).unwrap())
        .unwrap();
    let mut objective = Objective::uncertainty(&mut params, &["l"]).unwrap();
    let s = params.id("objective.log_var.l").unwrap();
    params
        .set("objective.log_var.l", Tensor::scalar(0.4))
        .unwrap();
    let step = objective
        .step(&params, None, |p| {
            Ok(vec![p.var(w)?.square()?.sum_all()?])
        })
        .unwrap();
    let (l, e) = (9.0, (-0.4f64).exp());
    assert!((step.total - (0.5 * e * l + 0.2)).abs() < 1e-12);
    assert!((step.terms[0].weight - 0.5 * e).abs() < 1e-15);
    let gs = step.grads.get(s).unwrap().item().unwrap();
    assert!((gs - (0.5 - 0.5 * e * l)).abs() < 1e-12);
    let gw = step.grads.get(w).unwrap().to_vec()[0];
    assert!((gw - 0.5 * e * 6.0).abs() < 1e-12);
    assert_eq!(objective.weights(&params).unwrap(), vec![0.5 * e]);
}

#[test]
fn after_training_balancing_brings_the_norms_within_2x_and_fixed_weights_do_not() {
    let epochs = 60;
    let ratio = |(small, big): (f64, f64)| big / small;

    let mut params = ParamStore::new();
    let m = Model::new(&mut params);
    let mut fixed = Objective::fixed(&[("small", 1.0), ("big", 1.0)]).unwrap();
    let (n_fixed, d_fixed) = train(&mut fixed, &mut params, &m, epochs);

    let mut params = ParamStore::new();
    let m = Model::new(&mut params);
    let mut unc = Objective::uncertainty(&mut params, &["small", "big"]).unwrap();
    let (n_unc, d_unc) = train(&mut unc, &mut params, &m, epochs);

    // GradNorm aims term j at Ḡ·r_j^α, r_j its relative inverse training
    // rate: α > 0 deliberately keeps pressure on the term that trains slower
    // relative to its own start (here `big`), so "within 2×" is the claim
    // for small α; the default α = 1.5 (Chen et al.'s) is measured too, and
    // must leave the norms further apart than α = 0.25 does
    let gradnorm = |alpha| {
        let mut params = ParamStore::new();
        let m = Model::new(&mut params);
        let opts = GradNormOptions {
            alpha,
            ..Default::default()
        };
        let mut gn = Objective::grad_norm(&["small", "big"], m.shared(), opts).unwrap();
        let (norms, d) = train(&mut gn, &mut params, &m, epochs);
        (ratio(norms), d)
    };
    let ((rg0, d_gn0), (rg, d_gn)) = (gradnorm(0.0), gradnorm(0.25));
    let (rg15, d_gn15) = gradnorm(GradNormOptions::default().alpha);

    let (rf, ru) = (ratio(n_fixed), ratio(n_unc));
    eprintln!(
        "mean ‖∇‖ big/small over the last epoch: fixed {rf:.1}, uncertainty {ru:.2}, \
         gradnorm (α = 0) {rg0:.2}, gradnorm (α = 0.25) {rg:.2}, gradnorm (α = 1.5, the default) \
         {rg15:.2}"
    );
    assert!(rf > 20.0, "fixed weights: {rf}\n{d_fixed}");
    assert!((0.5..2.0).contains(&ru), "uncertainty: {ru}\n{d_unc}");
    assert!((0.5..2.0).contains(&rg0), "gradnorm α = 0: {rg0}\n{d_gn0}");
    assert!((0.5..2.0).contains(&rg), "gradnorm α = 0.25: {rg}\n{d_gn}");
    assert!(rg15 > rg && rg15 < rf, "gradnorm α = 1.5: {rg15}\n{d_gn15}");
    assert_eq!(d_fixed.verdict().term, "big");
}

#[test]
fn bad_input_is_a_typed_error_and_changes_nothing() {
    let kind = |r: Result<Objective>| r.unwrap_err().kind();
    assert_eq!(kind(Objective::fixed(&[])), ErrorKind::InvalidOption);
    assert_eq!(
        kind(Objective::fixed(&[("a", 1.0), ("a", 2.0)])),
        ErrorKind::InvalidOption
    );
    assert_eq!(
        kind(Objective::fixed(&[("a", f64::NAN)])),
        ErrorKind::InvalidOption
    );
    assert_eq!(
        kind(Objective::fixed(&[("a", -1.0)])),
        ErrorKind::InvalidOption
    );
    let bad_alpha = GradNormOptions {
        alpha: -1.0,
        ..Default::default()
    };
    let mut params = ParamStore::<f64>::new();
    let m = Model::new(&mut params);
    assert_eq!(
        kind(Objective::grad_norm(&["a"], m.shared(), bad_alpha)),
        ErrorKind::InvalidOption
    );
    assert_eq!(
        kind(Objective::grad_norm(
            &["a"],
            Shared::new("none", vec![]),
            GradNormOptions::default()
        )),
        ErrorKind::InvalidOption
    );

    // a repeated uncertainty objective would add the same parameters twice
    let n = params.len();
    Objective::uncertainty(&mut params, &["a"]).unwrap();
    assert_eq!(
        kind(Objective::uncertainty(&mut params, &["b", "a"])),
        ErrorKind::InvalidOption
    );
    assert_eq!(params.len(), n + 1);

    // a step that builds the wrong number of terms, or a non-scalar one
    let d = Problem::new();
    let mut gn =
        Objective::grad_norm(&["small", "big"], m.shared(), GradNormOptions::default()).unwrap();
    let before = gn.weights(&params).unwrap();
    let e = gn.step(&params, None, |p| Ok(m.terms(p, &d)?[..1].to_vec()));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidOption);
    let e = gn.step(&params, None, |p| {
        let mut t = m.terms(p, &d)?;
        t[0] = p.var(m.trunk.bias())?.clone();
        Ok(t)
    });
    assert!(e.is_err());
    // GradNorm diagnoses at its own parameters only
    let other = Shared::new("head", vec![m.head1.weight()]);
    let e = gn.step(&params, Some(&other), |p| m.terms(p, &d));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidOption);
    assert_eq!(gn.weights(&params).unwrap(), before);
    // and moves its weights after a good step
    gn.step(&params, None, |p| m.terms(p, &d)).unwrap();
    let after = gn.weights(&params).unwrap();
    assert!(after[1] < before[1] && (after[0] + after[1] - 2.0).abs() < 1e-12);
}
