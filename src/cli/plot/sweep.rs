//! One chart over one swept scalar: each curve is an op called by name
//! through the registry at every x, on a fresh tape, and its gradient is what
//! the tape's backward gives for x.

use super::draw::{Figure, Panel, Series};
use super::wire::{self, Axis};
use super::{err, R};
use crate::autodiff::Tape;
use crate::losses::registry::{build_from_vars, Call, Flavor, InputValue, OptValue};
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// One curve: an op (squared or not) with single-valued settings.
#[derive(Debug, Clone)]
pub struct Curve {
    /// The op name.
    pub op: String,
    /// Draw the op's loss squared (composed on the tape).
    pub squared: bool,
    /// Options and fixed inputs, each with one value.
    pub settings: Vec<(String, OptValue)>,
    /// Legend text (default: op and settings).
    pub label: Option<String>,
}

impl Curve {
    /// The legend text.
    pub fn label(&self) -> String {
        if let Some(l) = &self.label {
            return l.clone();
        }
        let name = if self.squared {
            format!("{}²", self.op)
        } else {
            self.op.clone()
        };
        if self.settings.is_empty() {
            return name;
        }
        let s: Vec<String> = self
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={}", show(v)))
            .collect();
        format!("{name} {}", s.join(", "))
    }

    /// Options for the registry, and fixed inputs (defaults merged).
    fn split(&self) -> R<(BTreeMap<String, OptValue>, BTreeMap<String, f64>)> {
        let params = wire::params(&self.op);
        let mut fixed: BTreeMap<String, f64> =
            params.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let mut options = BTreeMap::new();
        for (k, v) in &self.settings {
            if params.iter().any(|(p, _)| p == k) {
                match v {
                    OptValue::Num(x) => {
                        fixed.insert(k.clone(), *x);
                    }
                    _ => return Err(format!("{}: {k} must be a number", self.op)),
                }
            } else {
                options.insert(k.clone(), v.clone());
            }
        }
        Ok((options, fixed))
    }
}

fn show(v: &OptValue) -> String {
    match v {
        OptValue::Num(x) => wire::fmt_num(*x),
        OptValue::Bool(b) => b.to_string(),
        OptValue::Str(s) => s.clone(),
        OptValue::List(l) => format!("{l:?}"),
        OptValue::Tensor(t) => format!("tensor{:?}", t.dims()),
    }
}

/// The loss and `∂loss/∂x` of `curve` at `x` on `axis`, by the tape.
///
/// # Errors
/// The op's own errors (a bad option value), or an op that cannot be drawn
/// against `axis`.
pub fn eval(curve: &Curve, axis: Axis, x: f64) -> R<(f64, f64)> {
    let (options, fixed) = curve.split()?;
    let tape = Tape::<f64>::new();
    let xv = tape.leaf(Tensor::from_vec(vec![x], [1]).map_err(err)?);
    let wired = wire::wire(&curve.op, axis, &xv, &fixed)?;
    let mut inputs = BTreeMap::new();
    for (k, v) in &wired.vars {
        inputs.insert(k.clone(), InputValue::Real(v.value()));
    }
    for (k, t) in wired.ints {
        inputs.insert(k, InputValue::Int(t));
    }
    let call = Call {
        op: curve.op.clone(),
        options,
        inputs,
    };
    let built = build_from_vars(&tape, &call, Flavor::Fused, wired.vars).map_err(err)?;
    let mut out = built.output;
    if curve.squared {
        out = out.square().map_err(err)?;
    }
    if out.shape().numel() != 1 {
        return Err(format!(
            "{}: the output has shape {:?}; a chart needs one value (drop reduction=none?)",
            curve.op,
            out.dims()
        ));
    }
    let loss = out.value().to_vec()[0];
    let grads = out.backward().map_err(err)?;
    let g = grads.get(&xv).map_or(0.0, |t| t.to_vec()[0]);
    Ok((loss, g))
}

/// A chart over one swept scalar: what a preset or the command line asks for.
pub struct Sweep {
    /// The curves (already expanded).
    pub curves: Vec<Curve>,
    /// The axis for every curve, or each op's default.
    pub against: Option<Axis>,
    /// x range (default: the first curve's axis's).
    pub range: Option<(f64, f64)>,
    /// Fixed y range of the loss panel.
    pub loss_range: Option<(f64, f64)>,
    /// Fixed y range of the gradient panel.
    pub grad_range: Option<(f64, f64)>,
    /// Title.
    pub title: Option<String>,
    /// Extra notes under the legend.
    pub notes: Vec<String>,
}

pub fn axis_of(op: &str, against: Option<Axis>) -> R<Axis> {
    match against {
        Some(a) if wire::axes(op).contains(&a) => Ok(a),
        Some(a) => Err(wire::unsupported(op, a)),
        None => wire::axes(op)
            .first()
            .copied()
            .ok_or_else(|| wire::unsupported(op, Axis::Residual)),
    }
}

/// The x label: what x means for each op (deduplicated).
fn x_label(curves: &[Curve], against: Option<Axis>) -> R<String> {
    let mut parts: Vec<String> = Vec::new();
    let mut seen_ops: Vec<&str> = Vec::new();
    for c in curves {
        if seen_ops.contains(&c.op.as_str()) {
            continue;
        }
        seen_ops.push(&c.op);
        let axis = axis_of(&c.op, against)?;
        let (_, fixed) = c.split()?;
        // fixed inputs no curve of this op names in its legend
        let shown: Vec<String> = wire::params(&c.op)
            .iter()
            .map(|(k, _)| k.to_string())
            .filter(|k| {
                !curves
                    .iter()
                    .filter(|d| d.op == c.op)
                    .any(|d| d.settings.iter().any(|(s, _)| s == k))
            })
            .collect();
        let text = wire::describe(&c.op, axis, &fixed, &shown);
        if !parts.contains(&text) {
            parts.push(text);
        }
    }
    Ok(match parts.len() {
        1 => parts.remove(0),
        _ => parts.join("  |  "),
    })
}

/// Whether two curves are the same (within rounding) at every point.
pub fn same_points(a: &[(f64, f64)], b: &[(f64, f64)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(p, q)| {
            let (u, v) = (p.1, q.1);
            (u.is_nan() && v.is_nan()) || (u - v).abs() <= 1e-9 * (1.0 + u.abs().max(v.abs()))
        })
}

/// Evaluate a sweep into a figure.
pub fn sweep_figure(s: &Sweep, n: usize) -> R<Figure> {
    let first = s.curves.first().ok_or("nothing to draw")?;
    let range = match s.range {
        Some(r) => r,
        None => axis_of(&first.op, s.against)?.default_range(),
    };
    if n < 2 {
        return Err("--points must be at least 2".to_string());
    }
    let mut loss_series: Vec<Series> = Vec::new();
    let mut grad_series: Vec<Series> = Vec::new();
    let mut axes_used: Vec<Axis> = Vec::new();
    for c in &s.curves {
        let axis = axis_of(&c.op, s.against)?;
        if axis == Axis::PT && (range.0 <= 0.0 || range.1 >= 1.0) {
            return Err(format!(
                "{}: the p_t axis needs a range inside (0, 1), got {},{}",
                c.op, range.0, range.1
            ));
        }
        if !axes_used.contains(&axis) {
            axes_used.push(axis);
        }
        let (mut lp, mut gp) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for i in 0..n {
            let x = range.0 + (range.1 - range.0) * i as f64 / (n - 1) as f64;
            let (l, g) = eval(c, axis, x).map_err(|e| format!("{} at x = {x}: {e}", c.label()))?;
            lp.push((x, l));
            gp.push((x, g));
        }
        let mut label = c.label();
        let twin = loss_series
            .iter()
            .zip(&grad_series)
            .find(|(l, g)| same_points(&l.points, &lp) && same_points(&g.points, &gp));
        let dashed = twin.is_some();
        if let Some((l, _)) = twin {
            label = format!("{label} (= {})", l.label);
        }
        loss_series.push(Series {
            label: label.clone(),
            points: lp,
            dashed,
            markers: false,
            extra: vec![],
        });
        grad_series.push(Series {
            label,
            points: gp,
            dashed,
            markers: false,
            extra: vec![],
        });
    }
    let names: Vec<&str> = axes_used.iter().map(|a| a.name()).collect();
    let mut ops: Vec<String> = Vec::new();
    for c in &s.curves {
        let name = if c.squared {
            format!("{}²", c.op)
        } else {
            c.op.clone()
        };
        if !ops.contains(&name) {
            ops.push(name);
        }
    }
    let title = s
        .title
        .clone()
        .unwrap_or_else(|| format!("{} vs {}", ops.join(", "), names.join(" / ")));
    let mut notes = s.notes.clone();
    notes.push(
        "Gradient: ∂loss/∂x from the tape's backward through the op built by name \
         from the registry (fused flavour), not a hand formula."
            .to_string(),
    );
    Ok(Figure {
        title,
        x_label: format!("x = {}", x_label(&s.curves, s.against)?),
        x_range: range,
        top: Panel {
            caption: "loss".to_string(),
            y_label: "loss".to_string(),
            series: loss_series,
            y_range: s.loss_range,
        },
        bottom: Panel {
            caption: "gradient ∂loss/∂x (tape backward)".to_string(),
            y_label: "∂loss/∂x".to_string(),
            series: grad_series,
            y_range: s.grad_range,
        },
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(op: &str, settings: &[(&str, OptValue)]) -> Curve {
        Curve {
            op: op.to_string(),
            squared: false,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            label: None,
        }
    }

    /// Spot values against the formulas of LOSSES.md (the chart itself
    /// never uses them: it reads the tape).
    #[test]
    fn eval_matches_the_formulas() {
        let (l, g) = eval(&curve("mse", &[]), Axis::Residual, 1.5).unwrap();
        assert!((l - 2.25).abs() < 1e-12 && (g - 3.0).abs() < 1e-12);
        // huber δ=1 at r = 3: δ(|r| − δ/2) = 2.5, slope δ = 1
        let h = curve("huber", &[("delta", OptValue::Num(1.0))]);
        let (l, g) = eval(&h, Axis::Residual, 3.0).unwrap();
        assert!((l - 2.5).abs() < 1e-12 && (g - 1.0).abs() < 1e-12);
        // bce at p_t = 0.25: −log 0.25, gradient −1/p = −4
        let (l, g) = eval(&curve("bce", &[]), Axis::PT, 0.25).unwrap();
        assert!((l + 0.25f64.ln()).abs() < 1e-9 && (g + 4.0).abs() < 1e-6);
        // sigmoid_focal γ=0, α off, on the p_t axis equals bce
        let f = curve(
            "sigmoid_focal",
            &[
                ("gamma", OptValue::Num(0.0)),
                ("alpha", OptValue::Num(-1.0)),
            ],
        );
        let (l2, g2) = eval(&f, Axis::PT, 0.25).unwrap();
        assert!((l - l2).abs() < 1e-9 && (g - g2).abs() < 1e-6);
        // cross_entropy, true-class logit 0, 3 classes: log 3, gradient 1/3 − 1
        let (l, g) = eval(&curve("cross_entropy", &[]), Axis::Logit, 0.0).unwrap();
        assert!((l - 3f64.ln()).abs() < 1e-12 && (g + 2.0 / 3.0).abs() < 1e-12);
        // the p_t axis of a class-axis op puts softmax_0 at p
        let (l, _) = eval(&curve("cross_entropy", &[]), Axis::PT, 0.7).unwrap();
        assert!((l + 0.7f64.ln()).abs() < 1e-9);
        // dpo ipo with β = 0.5 at h: (h − 1)²
        let d = curve(
            "dpo",
            &[
                ("variant", OptValue::Str("ipo".into())),
                ("beta", OptValue::Num(0.5)),
            ],
        );
        let (l, g) = eval(&d, Axis::Margin, 3.0).unwrap();
        assert!((l - 4.0).abs() < 1e-9 && (g - 4.0).abs() < 1e-9);
    }

    #[test]
    fn squared_hinge_is_composed() {
        let mut c = curve("hinge", &[]);
        c.squared = true;
        let (l, g) = eval(&c, Axis::Margin, -1.0).unwrap();
        // max(0, 1 − m)² at m = −1: 4, gradient −2(1 − m) = −4
        assert!((l - 4.0).abs() < 1e-12 && (g + 4.0).abs() < 1e-12);
    }
}
