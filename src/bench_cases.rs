//! The benchmark cases shared by `lossgraph bench` and
//! `cargo bench --bench losses`: which ops at which sizes, how their f32
//! inputs are prepared, and one forward + backward run of the fused op or its
//! naive twin. Both front ends read the list and the run from here, so the two
//! always measure the same pairs the same way; each keeps its own timing loop
//! and report.

use crate::autodiff::{Tape, Var};
use crate::losses::catalog::{call, data_inputs, Size};
use crate::losses::registry::{build_from_vars, real_inputs, Call, Flavor, InputValue, OptValue};
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// One benchmark: an op, its size and options.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The op name of `LOSSES.md`.
    pub op: &'static str,
    /// The sampled problem size.
    pub size: Size,
    /// Options by name; an absent option takes its default.
    pub options: BTreeMap<String, OptValue>,
}

/// `op` on `n` rows of width `c`, default options.
pub fn spec(op: &'static str, n: usize, c: usize) -> Spec {
    Spec {
        op,
        size: Size::new(n, c),
        options: BTreeMap::new(),
    }
}

/// The default rows: the sizes the performance targets are stated at
/// (LM-sized logits, 4M-element regression batches, a 32k-vocabulary
/// projection).
pub fn default_specs() -> Vec<Spec> {
    let m4 = (4096, 1024); // 4M elements
    let mut v = vec![
        spec("cross_entropy", 1024, 32000),
        spec("cross_entropy", 8192, 1000),
        spec("cross_entropy", 65536, 10),
    ];
    for op in [
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
        "kl_div",
        "masked_mean",
        "weighted_mean",
    ] {
        v.push(spec(op, m4.0, m4.1));
    }
    for op in ["nll", "softmax_focal", "brier", "multi_margin", "kl_logits"] {
        v.push(spec(op, 1024, 1000));
    }
    v.push(spec("gaussian_kl", 4096, 1024));
    v.push(spec("contrastive", 8192, 128));
    v.push(spec("triplet", 8192, 128));
    v.push(spec("info_nce", 1024, 256));
    for op in ["margin_ranking", "bradley_terry", "dpo"] {
        v.push(spec(op, 1 << 20, 1));
    }
    let mut lce = spec("linear_cross_entropy", 1024, 32000);
    lce.size.hidden = 1024;
    v.push(lce);
    v
}

/// A spec made ready to run: the call and its real inputs in f32.
pub struct Prepared {
    /// The call; its real inputs are emptied (see [`prepare`]), its integer
    /// inputs (class ids) kept.
    pub call: Call,
    /// The real inputs in f32, by name, sorted.
    pub inputs: Vec<(String, Tensor<f32>)>,
    /// The shape for tables: the first real input's dims, or
    /// `[n, hidden]x[c, hidden]` for `linear_cross_entropy`.
    pub shape: String,
}

/// Sample `s`'s inputs with `seed` and cast the real ones to f32, once, so
/// that every run only wraps them as leaves. The f64 copies in the call are
/// replaced by empty tensors: at these sizes they would hold twice the memory
/// of the f32 inputs for nothing, and the op reads the leaves, not them.
pub fn prepare(s: &Spec, seed: u64) -> Result<Prepared, String> {
    let mut c =
        call(s.op, &s.options, s.size, seed).ok_or_else(|| format!("unknown op {}", s.op))?;
    let inputs: Vec<(String, Tensor<f32>)> = real_inputs(&c)
        .into_iter()
        .map(|n| {
            let t = match &c.inputs[&n] {
                InputValue::Real(t) => t.cast::<f32>(),
                InputValue::Int(_) => unreachable!("real inputs only"),
            };
            (n, t)
        })
        .collect();
    // the f64 copies are not needed any more: keep only what the op reads
    for (n, _) in &inputs {
        c.inputs
            .insert(n.clone(), InputValue::Real(Tensor::from_slice(&[])));
    }
    let shape = match s.op {
        "linear_cross_entropy" => format!(
            "[{}, {}]x[{}, {}]",
            s.size.n, s.size.hidden, s.size.c, s.size.hidden
        ),
        _ => format!(
            "{:?}",
            inputs
                .first()
                .map(|(_, t)| t.dims().to_vec())
                .unwrap_or_default()
        ),
    };
    Ok(Prepared {
        call: c,
        inputs,
        shape,
    })
}

/// One forward + backward on a fresh tape (leaves are Arc clones of the
/// prepared f32 tensors: no copy), with a ones cotangent; returns the bytes of
/// the gradients, so that a caller measuring memory can tell them from scratch.
/// As in a training step, the data inputs ([`data_inputs`]: targets, masks,
/// a teacher's logits) are constants and the others are leaves that get a
/// gradient.
pub fn run_once(
    c: &Call,
    flavor: Flavor,
    inputs: &[(String, Tensor<f32>)],
) -> Result<usize, String> {
    let tape = Tape::<f32>::new();
    let vars: BTreeMap<String, Var<f32>> = inputs
        .iter()
        .map(|(n, t)| {
            let v = if data_inputs(&c.op).contains(&n.as_str()) {
                tape.constant(t.clone())
            } else {
                tape.leaf(t.clone())
            };
            (n.clone(), v)
        })
        .collect();
    let b = build_from_vars(&tape, c, flavor, vars.clone()).map_err(|e| e.to_string())?;
    let out = b.output.value();
    let g = b
        .output
        .backward_with(out.ones_like())
        .map_err(|e| e.to_string())?;
    let bytes = vars
        .values()
        .filter_map(|v| g.get(v))
        .map(|t| t.numel() * std::mem::size_of::<f32>())
        .sum();
    std::hint::black_box(&g);
    Ok(bytes)
}
