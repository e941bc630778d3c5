//! The catalog as data: for each op of `LOSSES.md`, its family, its PyTorch
//! equivalent, how to sample valid inputs of a given size, and the option
//! sets that change its formula ("option families").
//!
//! Used by the property tests, `lossgraph gradcheck` and `lossgraph bench`,
//! which all need valid random inputs for any op by name.

use crate::registry::{Call, InputValue, OptValue};
use lossgraph_tensor::Tensor;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;

/// One op of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct OpInfo {
    /// The op name.
    pub name: &'static str,
    /// Its family (a guide page).
    pub family: &'static str,
    /// Its PyTorch equivalent, if any.
    pub pytorch: Option<&'static str>,
}

/// Every op, in `LOSSES.md` order.
pub const CATALOG: &[OpInfo] = &[
    OpInfo {
        name: "mse",
        family: "regression",
        pytorch: Some("F.mse_loss"),
    },
    OpInfo {
        name: "mae",
        family: "regression",
        pytorch: Some("F.l1_loss"),
    },
    OpInfo {
        name: "huber",
        family: "regression",
        pytorch: Some("F.huber_loss"),
    },
    OpInfo {
        name: "smooth_l1",
        family: "regression",
        pytorch: Some("F.smooth_l1_loss"),
    },
    OpInfo {
        name: "log_cosh",
        family: "regression",
        pytorch: None,
    },
    OpInfo {
        name: "quantile",
        family: "regression",
        pytorch: None,
    },
    OpInfo {
        name: "gaussian_nll",
        family: "regression",
        pytorch: Some("F.gaussian_nll_loss"),
    },
    OpInfo {
        name: "poisson_nll",
        family: "regression",
        pytorch: Some("F.poisson_nll_loss"),
    },
    OpInfo {
        name: "bce",
        family: "classification",
        pytorch: Some("F.binary_cross_entropy"),
    },
    OpInfo {
        name: "bce_with_logits",
        family: "classification",
        pytorch: Some("F.binary_cross_entropy_with_logits"),
    },
    OpInfo {
        name: "cross_entropy",
        family: "classification",
        pytorch: Some("F.cross_entropy"),
    },
    OpInfo {
        name: "nll",
        family: "classification",
        pytorch: Some("F.nll_loss"),
    },
    OpInfo {
        name: "hinge",
        family: "classification",
        pytorch: None,
    },
    OpInfo {
        name: "multi_margin",
        family: "classification",
        pytorch: Some("F.multi_margin_loss"),
    },
    OpInfo {
        name: "sigmoid_focal",
        family: "classification",
        pytorch: Some("torchvision.ops.sigmoid_focal_loss"),
    },
    OpInfo {
        name: "softmax_focal",
        family: "classification",
        pytorch: None,
    },
    OpInfo {
        name: "brier",
        family: "classification",
        pytorch: None,
    },
    OpInfo {
        name: "kl_div",
        family: "probabilistic",
        pytorch: Some("F.kl_div"),
    },
    OpInfo {
        name: "kl_logits",
        family: "probabilistic",
        pytorch: None,
    },
    OpInfo {
        name: "gaussian_kl",
        family: "probabilistic",
        pytorch: None,
    },
    OpInfo {
        name: "contrastive",
        family: "contrastive and ranking",
        pytorch: None,
    },
    OpInfo {
        name: "triplet",
        family: "contrastive and ranking",
        pytorch: Some("F.triplet_margin_loss"),
    },
    OpInfo {
        name: "info_nce",
        family: "contrastive and ranking",
        pytorch: None,
    },
    OpInfo {
        name: "margin_ranking",
        family: "contrastive and ranking",
        pytorch: Some("F.margin_ranking_loss"),
    },
    OpInfo {
        name: "bradley_terry",
        family: "preference",
        pytorch: None,
    },
    OpInfo {
        name: "dpo",
        family: "preference",
        pytorch: None,
    },
    OpInfo {
        name: "masked_mean",
        family: "reductions",
        pytorch: None,
    },
    OpInfo {
        name: "weighted_mean",
        family: "reductions",
        pytorch: None,
    },
    OpInfo {
        name: "linear_cross_entropy",
        family: "projection",
        pytorch: None,
    },
];

/// The size of a sampled problem: `n` items (rows) of width `c` (classes,
/// features or elements per row). `linear_cross_entropy` uses `c` as the
/// vocabulary and `hidden` as the hidden width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Items (rows).
    pub n: usize,
    /// Width: classes, features, elements per row.
    pub c: usize,
    /// Hidden width (linear_cross_entropy only).
    pub hidden: usize,
}

impl Size {
    /// `n` rows of width `c` (hidden width 8).
    pub fn new(n: usize, c: usize) -> Self {
        Size { n, c, hidden: 8 }
    }
}

/// Draws inputs for a [`Call`].
struct Sampler {
    rng: rand::rngs::StdRng,
    inputs: BTreeMap<String, InputValue>,
}

impl Sampler {
    fn put(
        &mut self,
        name: &str,
        shape: &[usize],
        f: impl FnMut(&mut rand::rngs::StdRng) -> f64,
    ) -> &mut Self {
        let n: usize = shape.iter().product();
        let mut f = f;
        let data: Vec<f64> = (0..n).map(|_| f(&mut self.rng)).collect();
        // sampled values are rounded to f32 so the same inputs run in both dtypes
        let data = data.into_iter().map(|v| v as f32 as f64).collect();
        let t = Tensor::from_vec(data, shape.to_vec()).expect("sampler shapes are consistent");
        self.inputs.insert(name.to_string(), InputValue::Real(t));
        self
    }
    fn normal(&mut self, name: &str, shape: &[usize]) -> &mut Self {
        self.put(name, shape, |r| {
            // Box–Muller: two uniforms give a standard normal
            let (u, v): (f64, f64) = (r.random_range(1e-12..1.0), r.random_range(0.0..1.0));
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
    }
    fn uniform(&mut self, name: &str, shape: &[usize], lo: f64, hi: f64) -> &mut Self {
        self.put(name, shape, |r| r.random_range(lo..hi))
    }
    fn binary(&mut self, name: &str, shape: &[usize]) -> &mut Self {
        self.put(name, shape, |r| if r.random_bool(0.5) { 1.0 } else { 0.0 })
    }
    fn signs(&mut self, name: &str, shape: &[usize]) -> &mut Self {
        self.put(name, shape, |r| if r.random_bool(0.5) { 1.0 } else { -1.0 })
    }
    fn ids(&mut self, name: &str, shape: &[usize], classes: usize) -> &mut Self {
        let n: usize = shape.iter().product();
        let data: Vec<i64> = (0..n)
            .map(|_| self.rng.random_range(0..classes.max(1) as i64))
            .collect();
        let t = Tensor::from_vec(data, shape.to_vec()).expect("sampler shapes are consistent");
        self.inputs.insert(name.to_string(), InputValue::Int(t));
        self
    }
    /// Rows that are probability distributions (softmax of normals).
    fn prob_rows(&mut self, name: &str, shape: &[usize], log: bool) -> &mut Self {
        self.normal(name, shape);
        if let Some(InputValue::Real(t)) = self.inputs.get(name) {
            let p = if log { t.log_softmax() } else { t.softmax() };
            let p = p.map(|v| v as f32 as f64);
            self.inputs.insert(name.to_string(), InputValue::Real(p));
        }
        self
    }
}

/// Valid random inputs for `op` at `size`, seeded. Values stay a step away
/// from the edges of their domains (probabilities in [0.05, 0.95], weights
/// ≥ 0.05) so that finite differences do not step outside them. `None` for an unknown op.
///
/// Options that change which inputs exist (quantile's `taus`, cross_entropy's
/// soft targets via `soft_targets`) are read from `options`.
pub fn sample_inputs(
    op: &str,
    size: Size,
    options: &BTreeMap<String, OptValue>,
    seed: u64,
) -> Option<BTreeMap<String, InputValue>> {
    let mut s = Sampler {
        rng: rand::rngs::StdRng::seed_from_u64(seed),
        inputs: BTreeMap::new(),
    };
    let (n, c) = (size.n, size.c);
    let nc = [n, c];
    match op {
        "mse" | "mae" | "huber" | "smooth_l1" | "log_cosh" => {
            s.normal("pred", &nc).normal("target", &nc);
        }
        "quantile" => match options.get("taus") {
            Some(OptValue::List(t)) => {
                s.normal("pred", &[n, t.len()]).normal("target", &[n]);
            }
            _ => {
                s.normal("pred", &nc).normal("target", &nc);
            }
        },
        "gaussian_nll" => {
            s.normal("pred", &nc)
                .normal("target", &nc)
                .uniform("var", &nc, 0.1, 2.0);
        }
        "poisson_nll" => {
            if matches!(options.get("log_input"), Some(OptValue::Bool(false))) {
                s.uniform("pred", &nc, 0.2, 4.0);
            } else {
                s.normal("pred", &nc);
            }
            // counts, kept away from 1 where the Stirling term switches on
            s.put("target", &nc, |r| {
                [0.0, 2.0, 3.0, 5.0][r.random_range(0..4)]
            });
        }
        "bce" => {
            s.uniform("probs", &nc, 0.05, 0.95)
                .uniform("target", &nc, 0.05, 0.95);
        }
        "bce_with_logits" | "sigmoid_focal" => {
            s.normal("logits", &nc).uniform("target", &nc, 0.05, 0.95);
        }
        "cross_entropy" => {
            s.normal("logits", &nc);
            if matches!(options.get("soft_targets"), Some(OptValue::Bool(true))) {
                s.prob_rows("target", &nc, false);
            } else {
                s.ids("target", &[n], c);
            }
        }
        "nll" => {
            s.prob_rows("log_probs", &nc, true).ids("target", &[n], c);
        }
        "softmax_focal" | "brier" => {
            s.normal("logits", &nc).ids("target", &[n], c);
        }
        "multi_margin" => {
            s.normal("scores", &nc).ids("target", &[n], c);
        }
        "hinge" => {
            s.normal("scores", &nc).signs("target", &nc);
        }
        "kl_div" => {
            s.prob_rows("input", &nc, true)
                .prob_rows("target", &nc, false);
        }
        "kl_logits" => {
            s.normal("student", &nc).normal("teacher", &nc);
        }
        "gaussian_kl" => {
            s.normal("mu", &nc).uniform("logvar", &nc, -1.0, 1.0);
        }
        "contrastive" => {
            s.normal("u", &nc).normal("v", &nc).binary("similar", &[n]);
        }
        "triplet" => {
            s.normal("anchor", &nc)
                .normal("positive", &nc)
                .normal("negative", &nc);
        }
        "info_nce" => {
            s.normal("query", &nc).normal("key", &nc);
        }
        "margin_ranking" => {
            s.normal("a", &[n]).normal("b", &[n]).signs("target", &[n]);
        }
        "bradley_terry" => {
            s.normal("chosen", &[n]).normal("rejected", &[n]);
        }
        "dpo" => {
            for k in [
                "policy_chosen",
                "policy_rejected",
                "ref_chosen",
                "ref_rejected",
            ] {
                s.uniform(k, &[n], -3.0, 0.0);
            }
        }
        "masked_mean" => {
            s.normal("values", &nc).binary("mask", &nc);
        }
        "weighted_mean" => {
            s.normal("values", &nc).uniform("weights", &nc, 0.05, 1.0);
        }
        "linear_cross_entropy" => {
            let h = size.hidden;
            s.normal("hidden", &[n, h])
                .uniform("weight", &[c, h], -0.5, 0.5)
                .normal("bias", &[c])
                .ids("target", &[n], c);
        }
        _ => return None,
    }
    Some(s.inputs)
}

fn opts(pairs: &[(&str, OptValue)]) -> BTreeMap<String, OptValue> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// The option sets that change `op`'s formula (the default set first). The
/// pseudo-option `soft_targets` selects cross_entropy's probability targets;
/// [`call`] removes it before the op sees the options.
pub fn option_families(op: &str) -> Vec<BTreeMap<String, OptValue>> {
    use OptValue::{Bool, List, Num, Str};
    let none = || ("reduction", Str("none".into()));
    let sum = || ("reduction", Str("sum".into()));
    // a mean over a part of a batch, divided by the whole batch's count
    let denominator = || ("denominator", Num(7.5));
    let mut v = vec![opts(&[])];
    let more: Vec<BTreeMap<String, OptValue>> = match op {
        "mse" | "mae" | "log_cosh" => vec![opts(&[none()]), opts(&[sum()])],
        "huber" => vec![
            opts(&[("delta", Num(0.5)), none()]),
            opts(&[("delta", Num(2.0)), sum()]),
        ],
        "smooth_l1" => vec![
            opts(&[("beta", Num(0.5)), none()]),
            opts(&[("beta", Num(0.0))]),
        ],
        "quantile" => vec![
            opts(&[("tau", Num(0.9)), none()]),
            opts(&[("taus", List(vec![0.1, 0.5, 0.9]))]),
        ],
        "gaussian_nll" => vec![opts(&[("full", Bool(true)), none()])],
        "poisson_nll" => vec![
            opts(&[("log_input", Bool(false))]),
            opts(&[("full", Bool(true)), none()]),
        ],
        "bce" | "bce_with_logits" => vec![opts(&[sum()]), opts(&[none()])],
        "cross_entropy" => vec![
            opts(&[("label_smoothing", Num(0.1))]),
            opts(&[("soft_targets", Bool(true)), none()]),
            opts(&[("ignore_index", Num(0.0)), sum()]),
            opts(&[("ignore_index", Num(0.0)), denominator()]),
            opts(&[("soft_targets", Bool(true)), denominator()]),
        ],
        "nll" => vec![opts(&[none()]), opts(&[denominator()])],
        "brier" => vec![opts(&[none()])],
        "hinge" => vec![opts(&[("margin", Num(0.5)), none()])],
        "multi_margin" => vec![
            opts(&[("p", Num(2.0)), none()]),
            opts(&[("margin", Num(0.5))]),
        ],
        "sigmoid_focal" => vec![
            opts(&[("gamma", Num(0.0)), none()]),
            opts(&[("alpha", Num(-1.0)), ("gamma", Num(1.0))]),
        ],
        "softmax_focal" => vec![
            opts(&[("gamma", Num(0.0)), none()]),
            opts(&[("gamma", Num(1.0))]),
        ],
        "kl_div" => vec![
            opts(&[("reduction", Str("batchmean".into()))]),
            opts(&[("log_target", Bool(true)), none()]),
        ],
        "kl_logits" => vec![opts(&[("temperature", Num(2.0)), none()])],
        "gaussian_kl" | "bradley_terry" | "triplet" => vec![opts(&[none()])],
        "contrastive" => vec![opts(&[("margin", Num(2.0)), none()])],
        "info_nce" => vec![
            opts(&[("symmetric", Bool(true))]),
            opts(&[
                ("normalize", Bool(false)),
                ("temperature", Num(1.0)),
                none(),
            ]),
        ],
        "margin_ranking" => vec![opts(&[("margin", Num(0.5)), none()])],
        "dpo" => vec![
            opts(&[("label_smoothing", Num(0.1)), none()]),
            opts(&[("variant", Str("hinge".into()))]),
            opts(&[("variant", Str("ipo".into()))]),
        ],
        "masked_mean" => vec![
            opts(&[("per_row", Bool(true))]),
            opts(&[denominator()]),
            opts(&[("per_row", Bool(true)), denominator()]),
        ],
        "weighted_mean" => vec![
            opts(&[("eps", Num(1e-3))]),
            opts(&[("eps", Num(1e-3)), denominator()]),
        ],
        "linear_cross_entropy" => vec![
            opts(&[("label_smoothing", Num(0.1)), none()]),
            opts(&[("chunk", Num(2.0))]),
            opts(&[
                ("chunk", Num(2.0)),
                ("ignore_index", Num(0.0)),
                denominator(),
            ]),
        ],
        _ => vec![],
    };
    v.extend(more);
    // the elementwise ops' mean over a part of a batch: every element counts
    // one, the count from outside (with `taus`, quantile's own kernel)
    if ELEMENTWISE_MEAN.contains(&op) {
        v.push(match op {
            "quantile" => opts(&[("taus", List(vec![0.2, 0.7])), denominator()]),
            _ => opts(&[denominator()]),
        });
    }
    v
}

/// The ops whose `mean` counts every element, and which take the
/// `denominator` option for it.
pub const ELEMENTWISE_MEAN: &[&str] = &[
    "mse",
    "mae",
    "huber",
    "smooth_l1",
    "log_cosh",
    "quantile",
    "gaussian_nll",
    "poisson_nll",
    "bce",
    "bce_with_logits",
    "sigmoid_focal",
    "hinge",
    "margin_ranking",
    "bradley_terry",
    "dpo",
];

/// A ready [`Call`] of `op` with `options` (pseudo-options removed) and
/// sampled inputs of `size`. `None` for an unknown op.
pub fn call(op: &str, options: &BTreeMap<String, OptValue>, size: Size, seed: u64) -> Option<Call> {
    let inputs = sample_inputs(op, size, options, seed)?;
    let mut options = options.clone();
    options.remove("soft_targets");
    Some(Call {
        op: op.to_string(),
        options,
        inputs,
    })
}

/// Real inputs that hold discrete labels (±1, {0, 1}): they are
/// differentiable, but a finite-difference step moves them off the label set,
/// which the op rejects. Gradient checks hold them constant.
pub fn label_inputs(op: &str) -> &'static [&'static str] {
    match op {
        "hinge" | "margin_ranking" => &["target"],
        "contrastive" => &["similar"],
        "masked_mean" => &["mask"],
        _ => &[],
    }
}

/// Real inputs that are data in a training step (targets, masks, weights, a
/// teacher's or a frozen reference model's outputs): gradients flow to the
/// other inputs. Benchmarks hold these constant, as training does; the ops
/// still differentiate them when asked (gradient checks do).
pub fn data_inputs(op: &str) -> &'static [&'static str] {
    match op {
        "masked_mean" => &["mask"],
        "weighted_mean" => &["weights"],
        "contrastive" => &["similar"],
        "kl_logits" => &["teacher"],
        "dpo" => &["ref_chosen", "ref_rejected"],
        _ => &["target"],
    }
}

/// Options rendered as `key=value` pairs, for tables.
pub fn describe(options: &BTreeMap<String, OptValue>) -> String {
    if options.is_empty() {
        return "defaults".to_string();
    }
    options
        .iter()
        .map(|(k, v)| match v {
            OptValue::Num(x) => format!("{k}={x}"),
            OptValue::Bool(b) => format!("{k}={b}"),
            OptValue::Str(s) => format!("{k}={s}"),
            OptValue::List(l) => format!("{k}={l:?}"),
            OptValue::Tensor(t) => format!("{k}=tensor{:?}", t.dims()),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{build, Flavor};
    use lossgraph_autodiff::{ErrorKind, Tape};

    /// Every op of [`ELEMENTWISE_MEAN`] takes `denominator` through the
    /// registry: its `mean` is the `sum` over it, fused and naive, gradients
    /// included; a negative, NaN or infinite one, or one with another
    /// reduction than `mean`, is `InvalidOption` in both flavors.
    #[test]
    fn elementwise_means_take_a_denominator() {
        use OptValue::{Num, Str};
        let d = 7.5;
        for &op in ELEMENTWISE_MEAN {
            let with = |extra: &[(&str, OptValue)]| {
                let mut o = option_families(op).pop().unwrap();
                o.remove("denominator");
                for (k, v) in extra {
                    o.insert(k.to_string(), v.clone());
                }
                call(op, &o, Size::new(4, 3), 11).unwrap()
            };
            for flavor in [Flavor::Fused, Flavor::Naive] {
                let run = |c: &Call| {
                    let tape = Tape::<f64>::new();
                    let b = build(&tape, c, flavor)?;
                    let g = b.output.backward()?;
                    let grads: Vec<Vec<f64>> = b
                        .leaves
                        .values()
                        .map(|v| g.get_or_zeros(v).to_vec())
                        .collect();
                    Ok::<_, lossgraph_autodiff::Error>((b.output.item()?, grads))
                };
                let (sum, gsum) = run(&with(&[("reduction", Str("sum".into()))])).unwrap();
                let (mean, gmean) = run(&with(&[("denominator", Num(d))])).unwrap();
                assert!(
                    (mean - sum / d).abs() <= 1e-12 * sum.abs().max(1.0),
                    "{op} {flavor:?}"
                );
                for (a, b) in gsum.iter().flatten().zip(gmean.iter().flatten()) {
                    assert!(
                        (b - a / d).abs() <= 1e-12 * a.abs().max(1.0),
                        "{op} {flavor:?}"
                    );
                }
                let bad = [
                    vec![("denominator", Num(-1.0))],
                    vec![("denominator", Num(f64::NAN))],
                    vec![("denominator", Num(f64::INFINITY))],
                    vec![("denominator", Num(d)), ("reduction", Str("sum".into()))],
                    vec![("denominator", Num(d)), ("reduction", Str("none".into()))],
                    vec![("denominator", Str("all".into()))],
                ];
                for b in bad {
                    let e = run(&with(&b)).unwrap_err();
                    assert_eq!(e.kind(), ErrorKind::InvalidOption, "{op} {flavor:?} {b:?}");
                }
            }
        }
    }
}
