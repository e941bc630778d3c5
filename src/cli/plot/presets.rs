//! Ready-made views. Three are sweeps like any command line (regression,
//! focal, margins); two draw something a single swept scalar cannot show and
//! build their inputs here, still calling the ops by name through the
//! registry and reading gradients from the tape: `temperature` (one softmax
//! row at several temperatures) and `reductions` (which item gets how much
//! gradient under a token mean and a per-row mean).

use super::draw::{Figure, Panel, Series};
use super::sweep::{same_points, sweep_figure, Curve, Sweep};
use super::wire::Axis;
use super::{err, R};
use crate::autodiff::{Tape, Var};
use crate::losses::registry::{build_from_vars, Call, Flavor, InputValue, OptValue};
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// The presets of `--preset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// mse, mae, huber δ=1, log_cosh, quantile τ=0.9 vs the residual.
    Regression,
    /// bce vs sigmoid_focal γ = 0, 1, 2, 5 vs p_t.
    Focal,
    /// hinge, logistic, squared hinge vs the margin.
    Margins,
    /// softmax over a similarity row at τ = 1, 0.5, 0.1, 0.05.
    Temperature,
    /// gradient per item vs valid items per row: token mean vs per-row mean.
    Reductions,
}

fn curve(op: &str, settings: &[(&str, OptValue)], label: Option<&str>) -> Curve {
    Curve {
        op: op.to_string(),
        squared: false,
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        label: label.map(str::to_string),
    }
}

/// The figure of a preset; `range` overrides its x range.
pub fn figure(p: Preset, points: usize, range: Option<(f64, f64)>) -> R<Figure> {
    use OptValue::Num;
    let sweep = |curves, against, default: (f64, f64), title: &str, notes: Vec<&str>| Sweep {
        curves,
        against: Some(against),
        range: Some(range.unwrap_or(default)),
        loss_range: None,
        grad_range: None,
        title: Some(title.to_string()),
        notes: notes.into_iter().map(str::to_string).collect(),
    };
    match p {
        Preset::Regression => {
            let curves = vec![
                curve("mse", &[], None),
                curve("mae", &[], None),
                curve("huber", &[("delta", Num(1.0))], None),
                curve("log_cosh", &[], None),
                curve("quantile", &[("tau", Num(0.9))], None),
            ];
            let mut s = sweep(
                curves,
                Axis::Residual,
                (-5.0, 5.0),
                "Regression losses vs the residual",
                vec![
                    "Target fixed at 0, so pred = residual.",
                    "The y ranges are fixed so that the slow-growing losses stay \
                     readable: mse (r², gradient 2r) leaves both panels.",
                ],
            );
            s.loss_range = Some((0.0, 6.0));
            s.grad_range = Some((-3.0, 3.0));
            sweep_figure(&s, points)
        }
        Preset::Focal => {
            let mut curves = vec![curve("bce", &[], None)];
            for g in [0.0, 1.0, 2.0, 5.0] {
                curves.push(curve(
                    "sigmoid_focal",
                    &[("gamma", Num(g)), ("alpha", Num(-1.0))],
                    Some(&format!("sigmoid_focal γ={g} (α off)")),
                ));
            }
            let mut s = sweep(
                curves,
                Axis::PT,
                (0.01, 0.99),
                "Focal loss: bce vs sigmoid_focal against p_t",
                vec![
                    "Target 1. bce takes p_t as its probability; sigmoid_focal takes \
                     the logit log(p/(1−p)) built on the tape, so both gradients are ∂ℓ/∂p_t.",
                    "alpha = −1 turns α-balancing off, so γ = 0 is exactly bce.",
                ],
            );
            s.loss_range = Some((0.0, 4.7));
            s.grad_range = Some((-12.0, 0.5));
            sweep_figure(&s, points)
        }
        Preset::Margins => {
            let mut sq = curve(
                "hinge",
                &[],
                Some("squared hinge max(0, 1 − m)² (hinge, then square)"),
            );
            sq.squared = true;
            let curves = vec![
                curve("hinge", &[], Some("hinge max(0, 1 − m)")),
                curve(
                    "bce_with_logits",
                    &[],
                    Some("logistic log(1 + e^−m) (bce_with_logits)"),
                ),
                sq,
            ];
            let mut s = sweep(
                curves,
                Axis::Margin,
                (-3.0, 3.0),
                "Margin losses vs the margin m = y·s",
                vec![
                    "logistic: bce_with_logits with target 1 (y = +1) on the margin.",
                    "squared hinge is composed, not a catalog op: the hinge op, \
                     then square, on the tape; its gradient is the chain rule through both.",
                ],
            );
            s.loss_range = Some((0.0, 8.0));
            sweep_figure(&s, points)
        }
        Preset::Temperature => temperature(range),
        Preset::Reductions => reductions(range),
    }
}

/// The similarity row of the temperature preset: candidate 0 is the positive.
const SIMS: [f64; 12] = [
    0.8, 0.75, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3,
];

/// For each τ: softmax(s/τ) and ∂(−log softmax(s/τ)_0)/∂s by the tape through
/// info_nce, with a query e₀ and keys s_j·e₀ (normalize off), so that the
/// similarity of query 0 to key j is exactly s_j.
fn temperature(range: Option<(f64, f64)>) -> R<Figure> {
    let k = SIMS.len();
    let (mut probs, mut grads) = (Vec::new(), Vec::new());
    for tau in [1.0, 0.5, 0.1, 0.05] {
        let tape = Tape::<f64>::new();
        let s = tape.leaf(Tensor::from_vec(SIMS.to_vec(), [k]).map_err(err)?);
        // keys [K, 2] = [s_j, 0]; queries [K, 2]: row 0 = e₀, the rest 0
        let zeros = tape.constant(Tensor::zeros([k, 1]).map_err(err)?);
        let key = Var::concat(&[&s.reshape([k, 1]).map_err(err)?, &zeros], 1).map_err(err)?;
        let mut q = vec![0.0; 2 * k];
        q[0] = 1.0;
        let query = tape.constant(Tensor::from_vec(q, [k, 2]).map_err(err)?);
        let mut options = BTreeMap::new();
        options.insert("temperature".to_string(), OptValue::Num(tau));
        options.insert("normalize".to_string(), OptValue::Bool(false));
        options.insert("reduction".to_string(), OptValue::Str("none".into()));
        let vars: BTreeMap<String, Var<f64>> = [
            ("query".to_string(), query.clone()),
            ("key".to_string(), key.clone()),
        ]
        .into();
        let call = Call {
            op: "info_nce".to_string(),
            options,
            inputs: vars
                .iter()
                .map(|(n, v)| (n.clone(), InputValue::Real(v.value())))
                .collect(),
        };
        let out = build_from_vars(&tape, &call, Flavor::Fused, vars).map_err(err)?;
        // the positive's loss: row 0 of the unreduced [K]
        let loss0 = out.output.narrow(0, 0, 1).map_err(err)?;
        let l0 = loss0.value().to_vec()[0];
        let g = loss0.backward().map_err(err)?.get_or_zeros(&s).to_vec();
        let p = Tensor::from_vec(SIMS.iter().map(|v| v / tau).collect(), [k])
            .map_err(err)?
            .softmax()
            .to_vec();
        // the tape agrees with the textbook: ∂ℓ/∂s_j = (p_j − [j = 0])/τ
        for (j, (&gj, &pj)) in g.iter().zip(&p).enumerate() {
            let want = (pj - if j == 0 { 1.0 } else { 0.0 }) / tau;
            if (gj - want).abs() > 1e-9 * (1.0 + want.abs()) {
                return Err(format!(
                    "info_nce gradient disagrees with (p − onehot)/τ at τ = {tau}, j = {j}: {gj} vs {want}"
                ));
            }
        }
        let label = format!("τ = {tau} (loss −log p₀ = {l0:.3})");
        // negatives joined by a line, the positive (candidate 0) a triangle
        let series = |v: &[f64]| Series {
            label: label.clone(),
            points: SIMS
                .iter()
                .copied()
                .zip(v.iter().copied())
                .skip(1)
                .collect(),
            dashed: false,
            markers: true,
            extra: vec![(SIMS[0], v[0])],
        };
        probs.push(series(&p));
        grads.push(series(&g));
    }
    Ok(Figure {
        title: "Temperature: the softmax over one similarity row at τ = 1, 0.5, 0.1, 0.05"
            .to_string(),
        x_label: "similarity s_j of candidate j (triangle: the positive, s = 0.8; dots: negatives)"
            .to_string(),
        x_range: range.unwrap_or((-0.35, 0.85)),
        top: Panel {
            caption: "probability of each candidate, softmax(s/τ)_j".to_string(),
            y_label: "softmax(s/τ)_j".to_string(),
            series: probs,
            y_range: Some((0.0, 1.0)),
        },
        bottom: Panel {
            caption: "gradient of the positive's InfoNCE loss on each similarity (tape)"
                .to_string(),
            y_label: "∂ℓ/∂s_j".to_string(),
            series: grads,
            y_range: None,
        },
        notes: vec![
            "One query, 12 candidates: the positive (s = 0.8, triangles) and 11 \
             negatives (dots, joined by lines), one of them hard (s = 0.75)."
                .to_string(),
            "ℓ = −log softmax(s/τ)₀, the InfoNCE loss of that query: info_nce \
             with normalize=false, query e₀, keys s_j·e₀, so its logits are s/τ."
                .to_string(),
            "Gradient by the tape's backward through info_nce; it equals \
             (p_j − [j = positive])/τ: the positive is pulled up, each negative \
             pushed down by its probability, all scaled by 1/τ. Small τ \
             puts the weight on the hardest negatives."
                .to_string(),
        ],
    })
}

/// Rows and items of the reductions preset.
const ROWS: usize = 16;

/// The gradient each valid item gets from masked_mean (token mean),
/// masked_mean per_row, and weighted_mean with weights mask/n_row, in a batch
/// whose row r has r + 1 valid items.
fn reductions(range: Option<(f64, f64)>) -> R<Figure> {
    let (r, l) = (ROWS, ROWS);
    let valid = |row: usize| row + 1;
    let mut mask = vec![0.0; r * l];
    let mut weights = vec![0.0; r * l];
    for row in 0..r {
        for j in 0..valid(row) {
            mask[row * l + j] = 1.0;
            weights[row * l + j] = 1.0 / valid(row) as f64;
        }
    }
    let cases: [(&str, &str, &str, Vec<f64>, bool); 3] = [
        (
            "masked_mean (token mean)",
            "masked_mean",
            "mask",
            mask.clone(),
            false,
        ),
        (
            "masked_mean per_row (mean of row means)",
            "masked_mean",
            "mask",
            mask.clone(),
            true,
        ),
        (
            "weighted_mean, weights mask/n",
            "weighted_mean",
            "weights",
            weights,
            false,
        ),
    ];
    let (mut per_row, mut per_item) = (Vec::new(), Vec::new());
    for (label, op, second, data, row_mean) in cases {
        let tape = Tape::<f64>::new();
        let values = tape.leaf(Tensor::zeros([r, l]).map_err(err)?);
        let other = tape.constant(Tensor::from_vec(data, [r, l]).map_err(err)?);
        let mut options = BTreeMap::new();
        if op == "masked_mean" {
            options.insert("per_row".to_string(), OptValue::Bool(row_mean));
        }
        let vars: BTreeMap<String, Var<f64>> = [
            ("values".to_string(), values.clone()),
            (second.to_string(), other),
        ]
        .into();
        let call = Call {
            op: op.to_string(),
            options,
            inputs: vars
                .iter()
                .map(|(n, v)| (n.clone(), InputValue::Real(v.value())))
                .collect(),
        };
        let out = build_from_vars(&tape, &call, Flavor::Fused, vars).map_err(err)?;
        let g = out
            .output
            .backward()
            .map_err(err)?
            .get_or_zeros(&values)
            .to_vec();
        let (mut rows, mut items) = (Vec::new(), Vec::new());
        for row in 0..r {
            let n = valid(row) as f64;
            let gs = &g[row * l..row * l + l];
            rows.push((n, gs.iter().sum::<f64>()));
            items.push((n, gs[0]));
        }
        let mut label = label.to_string();
        let twin = per_item
            .iter()
            .zip(&per_row)
            .find(|(a, b): &(&Series, &Series)| {
                same_points(&a.points, &items) && same_points(&b.points, &rows)
            });
        let dashed = twin.is_some();
        if let Some((a, _)) = twin {
            label = format!("{label} (= {})", a.label);
        }
        per_row.push(Series {
            label: label.clone(),
            points: rows,
            dashed,
            markers: true,
            extra: vec![],
        });
        per_item.push(Series {
            label,
            points: items,
            dashed,
            markers: true,
            extra: vec![],
        });
    }
    let total: usize = (0..r).map(valid).sum();
    Ok(Figure {
        title: "Reductions: token mean vs per-row mean, gradient by row length".to_string(),
        x_label: format!("n = valid items in the row (row r has r + 1 of {l}; {r} rows)"),
        x_range: range.unwrap_or((0.5, r as f64 + 0.5)),
        top: Panel {
            caption: "total gradient a row receives (its share of the loss)".to_string(),
            y_label: "Σ_j ∂L/∂ℓ_rj".to_string(),
            series: per_row,
            y_range: None,
        },
        bottom: Panel {
            caption: "gradient each valid item receives".to_string(),
            y_label: "∂L/∂ℓ_rj".to_string(),
            series: per_item,
            y_range: None,
        },
        notes: vec![
            format!(
                "A batch of {r} rows × {l} items (e.g. sequences of tokens); the mask \
                 keeps the first n = r + 1 items of row r, {total} in all. Each point \
                 is a row."
            ),
            format!(
                "Token mean: every valid item gets 1/{total}, so long rows dominate. \
                 Per-row mean: each row gets 1/{r} in all, split among its n items \
                 (1/(n·{r}) each), so items of short rows weigh more."
            ),
            "weighted_mean with weights 1/n on valid items is the per-row mean \
             written as a weighted mean. Gradients: the tape's backward through \
             each op built by name."
                .to_string(),
        ],
    })
}
