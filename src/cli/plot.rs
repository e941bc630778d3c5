//! `lossgraph plot`: draw losses and their gradients over a range of one
//! scalar, several ops or option values on one chart.
//!
//! Each point is one call of the op by name through the registry, on a fresh
//! tape: the swept scalar `x` is a leaf, the op's inputs are built from it
//! (see `wire`), and the gradient drawn is what the tape's backward gives for
//! `x` — never a hand-written derivative.

mod draw;
mod presets;
mod sweep;
mod wire;

use super::{SUCCESS, USAGE};
use crate::losses::catalog::CATALOG;
use crate::losses::registry::OptValue;
use draw::{Figure, Layout};
use std::collections::BTreeMap;
use std::path::PathBuf;
use sweep::{axis_of, eval, sweep_figure, Curve, Sweep};
use wire::Axis;

/// Draw losses and their gradients (from the tape) over a range.
///
/// Each OP is drawn twice: its loss (top panel) and the gradient of that loss
/// with respect to the x-axis quantity (bottom panel, or right with
/// --layout side). Every point is a call of the op by name through the
/// registry on a fresh tape; x is a leaf, the op's inputs are built from it
/// with tape ops, and the gradient is the tape's backward — no hand-written
/// formula. Legends name each curve; a curve equal to an earlier one is drawn
/// dashed and says so.
///
/// OP syntax:  NAME[:KEY=V[,V...]]...    e.g.  huber:delta=0.5,1,2
///   Several values for one key draw one curve each (all combinations when
///   several keys have several values). Values: numbers, true/false, or
///   strings (dpo:variant=sigmoid,hinge,ipo). NAME^2 draws the op's loss
///   squared, composed on the tape (the op, then square): hinge^2 is the
///   squared hinge.
///   A KEY is an option of the op (as in LOSSES.md), or one of the fixed
///   inputs the chart holds still:
///     target   regression ops (default 0; poisson_nll 2), binary ops (1)
///     var      gaussian_nll (default 1)
///     classes  class-axis ops, kl_logits, kl_div: number of classes (3)
///     teacher  kl_logits, kl_div: teacher logits [teacher, 0, ...] (2)
///     logvar   gaussian_kl (0)
///     similar  contrastive: 1 similar pair, 0 dissimilar (1)
///     d_neg    triplet: the distance anchor-negative (2)
///
/// --opt KEY=V[,V...] applies a setting to every OP that accepts it (an OP's
/// own :KEY=... wins). An OP that rejects it (not its option, or out of its
/// range) is drawn once with its own settings and a note on stderr; if no OP
/// accepts it, the command fails.
///
/// Axes (--against; without it each op uses its own default, listed first):
///   residual  pred − target, target fixed (regression ops)
///   pred      the prediction itself, target fixed (regression; poisson_nll's
///             default: pred is the log-rate, target 2)
///   logit     z for binary ops with target 1; for class-axis ops
///             (cross_entropy, nll, softmax_focal, brier, multi_margin,
///             linear_cross_entropy) the true-class logit, the others 0;
///             kl_logits/kl_div: one student logit, teacher fixed
///   margin    y·s with y = +1 (hinge, bce_with_logits as logistic), the score
///             gap for margin_ranking and bradley_terry, the preference
///             margin h = (pc − rc) − (pr − rr) for dpo
///   p_t       probability of the true class (target 1): bce takes it as is,
///             the logit ops take z = log(p/(1−p)), so the gradient is ∂ℓ/∂p
///   mu        μ of gaussian_kl, logvar fixed
///   distance  ‖u − v‖ for contrastive; ‖a − p‖ for triplet, ‖a − n‖ fixed
/// Default ranges: residual −5,5; pred, mu −3,3; logit −6,6; margin −4,4;
/// p_t 0.01,0.99; distance 0,3.
///
/// Presets (--preset NAME; they pick ops, axis and range themselves):
///   regression   mse, mae, huber δ=1, log_cosh, quantile τ=0.9 over
///                residuals −5..5
///   focal        bce vs sigmoid_focal γ = 0, 1, 2, 5 (α off) against p_t
///   margins      hinge, logistic (bce_with_logits with target 1 on the
///                margin) and squared hinge (hinge then square, composed on
///                the tape) against the margin y·s
///   temperature  the softmax over one fixed similarity row of 12 candidates
///                (candidate 0 the positive, similarity 0.8; 11 negatives)
///                at τ = 1, 0.5, 0.1, 0.05. Top: each candidate's probability
///                softmax(s/τ)_j against its similarity s_j. Bottom: the
///                gradient of the positive's InfoNCE loss −log softmax(s/τ)_0
///                with respect to each similarity s_j, by the tape's backward
///                through info_nce (normalize=false, one query e₀ and keys
///                s_j·e₀, so the similarities are exactly s)
///   reductions   16 rows of 16 items, row r with r+1 valid items, through
///                masked_mean (token mean), masked_mean per_row (mean of row
///                means) and weighted_mean with weights mask/n_row. Top: the
///                total gradient a row receives (its share of the loss).
///                Bottom: the gradient each valid item receives. Both against
///                the number of valid items n in the item's row.
///
/// Output: --out FILE.png or FILE.svg (plotters, by the extension).
///
/// Examples:
///   lossgraph plot --preset regression --out regression.png
///   lossgraph plot mse huber:delta=0.5,1,2 --against residual --range -3,3 --out h.svg
///   lossgraph plot sigmoid_focal --opt gamma=0,1,2,5 --opt alpha=-1 --out f.png
///   lossgraph plot bce sigmoid_focal:alpha=-1 --opt gamma=0,2 --against p_t --out f.png
///   lossgraph plot cross_entropy:label_smoothing=0,0.1 brier --against logit --out ce.svg
///   lossgraph plot gaussian_nll:var=0.5,1,2 poisson_nll:target=2 --range -3,3 --out l.png
///   lossgraph plot hinge hinge^2 bce_with_logits --against margin --out m.png
///   lossgraph plot --preset temperature --layout side --out t.svg
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Ops to draw: NAME[:KEY=V[,V...]]... (see above).
    #[arg(value_name = "OP")]
    ops: Vec<String>,
    /// A setting for every op that accepts it: KEY=V[,V...] (repeatable).
    #[arg(long = "opt", value_name = "KEY=V[,V...]", allow_hyphen_values = true)]
    opts: Vec<String>,
    /// The x axis (default: each op's own).
    #[arg(long, value_enum)]
    against: Option<Axis>,
    /// A ready-made view (ignores OPs and --opt).
    #[arg(long, value_enum)]
    preset: Option<presets::Preset>,
    /// The x range, LO,HI (e.g. -5,5).
    #[arg(long, value_name = "LO,HI", allow_hyphen_values = true)]
    range: Option<String>,
    /// Fix the loss panel's y range, LO,HI (default: fit the curves).
    #[arg(long = "loss-range", value_name = "LO,HI", allow_hyphen_values = true)]
    loss_range: Option<String>,
    /// Fix the gradient panel's y range, LO,HI (default: fit the curves).
    #[arg(long = "grad-range", value_name = "LO,HI", allow_hyphen_values = true)]
    grad_range: Option<String>,
    /// Points per curve.
    #[arg(long, default_value_t = 401)]
    points: usize,
    /// Panels stacked (loss on top) or side by side.
    #[arg(long, value_enum, default_value = "stacked")]
    layout: Layout,
    /// Size of the two panels in pixels, WxH (the legend adds width).
    #[arg(long, value_name = "WxH")]
    size: Option<String>,
    /// Title (default: the ops and the axis).
    #[arg(long)]
    title: Option<String>,
    /// A line of explanation under the legend (repeatable).
    #[arg(long = "note", value_name = "TEXT")]
    notes: Vec<String>,
    /// Output file, .png or .svg.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Errors of the plot command are messages for the user.
type R<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// One OP argument: name, squared, settings with their values.
struct OpSpec {
    op: String,
    squared: bool,
    settings: Vec<(String, Vec<OptValue>)>,
}

fn parse_value(s: &str) -> OptValue {
    match s {
        "true" => OptValue::Bool(true),
        "false" => OptValue::Bool(false),
        _ => s
            .parse::<f64>()
            .map_or_else(|_| OptValue::Str(s.to_string()), OptValue::Num),
    }
}

/// `KEY=V[,V...]`.
fn parse_setting(s: &str) -> R<(String, Vec<OptValue>)> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: a setting is KEY=V[,V...]"))?;
    if k.is_empty() || v.is_empty() {
        return Err(format!("{s:?}: a setting is KEY=V[,V...]"));
    }
    Ok((k.to_string(), v.split(',').map(parse_value).collect()))
}

fn parse_op(s: &str) -> R<OpSpec> {
    let mut parts = s.split(':');
    let head = parts.next().unwrap_or_default();
    let (name, squared) = match head.strip_suffix("^2") {
        Some(n) => (n, true),
        None => (head, false),
    };
    if !CATALOG.iter().any(|o| o.name == name) {
        let names: Vec<&str> = CATALOG.iter().map(|o| o.name).collect();
        return Err(format!(
            "unknown op {name:?}; the ops are: {}",
            names.join(", ")
        ));
    }
    let settings = parts.map(parse_setting).collect::<R<Vec<_>>>()?;
    Ok(OpSpec {
        op: name.to_string(),
        squared,
        settings,
    })
}

fn parse_pair(s: &str, what: &str) -> R<(f64, f64)> {
    let bad = || {
        format!(
            "{what} {s:?}: expected LO,HI with LO < HI, both finite, HI − LO finite and \
             resolvable at their size"
        )
    };
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    let (a, b): (f64, f64) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if draw::drawable(a, b) {
        Ok((a, b))
    } else {
        Err(bad())
    }
}

fn parse_size(s: &str) -> R<(u32, u32)> {
    let bad = || format!("--size {s:?}: expected WxH, e.g. 900x800");
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if (200..=8000).contains(&w) && (200..=8000).contains(&h) {
        Ok((w, h))
    } else {
        Err(bad())
    }
}

/// All combinations of the settings' values, in order.
fn combinations(settings: &[(String, Vec<OptValue>)]) -> Vec<Vec<(String, OptValue)>> {
    let mut out: Vec<Vec<(String, OptValue)>> = vec![vec![]];
    for (k, vals) in settings {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                vals.iter().map(move |v| {
                    let mut p = prefix.clone();
                    p.push((k.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    out
}

/// Curves from the command line: each OP's settings, with the `--opt`
/// settings it accepts, expanded into one curve per combination.
fn curves_from_cli(
    specs: &[OpSpec],
    globals: &[(String, Vec<OptValue>)],
    against: Option<Axis>,
    x_probe: Option<f64>,
) -> R<Vec<Curve>> {
    let mut accepted: Vec<Vec<(String, Vec<OptValue>)>> = Vec::new();
    let mut rejections: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut taken: BTreeMap<String, bool> = BTreeMap::new();
    for spec in specs {
        let axis = axis_of(&spec.op, against)?;
        let x = x_probe.unwrap_or_else(|| {
            let (a, b) = axis.default_range();
            0.5 * (a + b)
        });
        let mut settings = spec.settings.clone();
        for (k, vals) in globals {
            let t = taken.entry(k.clone()).or_insert(false);
            if settings.iter().any(|(s, _)| s == k) {
                *t = true; // the op's own setting wins
                continue;
            }
            let first: Vec<(String, OptValue)> = settings
                .iter()
                .map(|(s, v)| (s.clone(), v[0].clone()))
                .collect();
            let probe = vals.iter().try_for_each(|v| {
                let mut s = first.clone();
                s.push((k.clone(), v.clone()));
                let c = Curve {
                    op: spec.op.clone(),
                    squared: spec.squared,
                    settings: s,
                    label: None,
                };
                eval(&c, axis, x).map(|_| ())
            });
            match probe {
                Ok(()) => {
                    *t = true;
                    settings.push((k.clone(), vals.clone()));
                }
                Err(e) => rejections.entry(k.clone()).or_default().push(e),
            }
        }
        accepted.push(settings);
    }
    for (k, t) in &taken {
        let why = rejections.get(k).cloned().unwrap_or_default();
        if !t {
            return Err(format!("--opt {k}: no op accepts it: {}", why.join("; ")));
        }
        for w in why {
            eprintln!("lossgraph plot: note: --opt {k} not applied where rejected: {w}");
        }
    }
    let count = accepted.iter().try_fold(0usize, |total, settings| {
        let n = settings
            .iter()
            .try_fold(1usize, |n, (_, vals)| n.checked_mul(vals.len()))?;
        total.checked_add(n)
    });
    match count {
        Some(n) if n <= MAX_CURVES => {}
        _ => {
            return Err(format!(
                "the settings expand to more than {MAX_CURVES} curves: give fewer values"
            ))
        }
    }
    let mut curves = Vec::new();
    for (spec, settings) in specs.iter().zip(accepted) {
        for s in combinations(&settings) {
            curves.push(Curve {
                op: spec.op.clone(),
                squared: spec.squared,
                settings: s,
                label: None,
            });
        }
    }
    Ok(curves)
}

/// The most points per curve: a figure is at most a few thousand pixels
/// wide, and the sweep holds every point of every curve.
const MAX_POINTS: usize = 100_000;
/// The most curves one command may expand to (the product of the settings'
/// value counts); beyond it the legend and the colours stop meaning much.
const MAX_CURVES: usize = 64;

fn figure(args: &Args) -> R<Figure> {
    if !(2..=MAX_POINTS).contains(&args.points) {
        return Err(format!(
            "--points {}: expected 2 to {MAX_POINTS}",
            args.points
        ));
    }
    let range = args
        .range
        .as_deref()
        .map(|r| parse_pair(r, "--range"))
        .transpose()?;
    let loss_range = args
        .loss_range
        .as_deref()
        .map(|r| parse_pair(r, "--loss-range"))
        .transpose()?;
    let grad_range = args
        .grad_range
        .as_deref()
        .map(|r| parse_pair(r, "--grad-range"))
        .transpose()?;
    let mut fig = if let Some(p) = args.preset {
        if !args.ops.is_empty() || !args.opts.is_empty() {
            return Err("a preset picks its own ops: drop the OPs and --opt".to_string());
        }
        if args.against.is_some() {
            return Err("a preset picks its own axis: drop --against".to_string());
        }
        presets::figure(p, args.points, range)?
    } else {
        if args.ops.is_empty() {
            return Err("name one or more ops, or a --preset".to_string());
        }
        let specs = args
            .ops
            .iter()
            .map(|s| parse_op(s))
            .collect::<R<Vec<_>>>()?;
        let globals = args
            .opts
            .iter()
            .map(|s| parse_setting(s))
            .collect::<R<Vec<_>>>()?;
        let probe = range.map(|(a, b)| 0.5 * (a + b));
        let curves = curves_from_cli(&specs, &globals, args.against, probe)?;
        let sweep = Sweep {
            curves,
            against: args.against,
            range,
            loss_range: None,
            grad_range: None,
            title: None,
            notes: vec![],
        };
        sweep_figure(&sweep, args.points)?
    };
    if loss_range.is_some() {
        fig.top.y_range = loss_range;
    }
    if grad_range.is_some() {
        fig.bottom.y_range = grad_range;
    }
    if let Some(t) = &args.title {
        fig.title = t.clone();
    }
    // the user's notes go first, above the standard ones
    let mut notes = args.notes.clone();
    notes.append(&mut fig.notes);
    fig.notes = notes;
    Ok(fig)
}

pub fn run(args: Args) -> u8 {
    let size = match args.size.as_deref().map(parse_size).transpose() {
        Ok(s) => s.unwrap_or(match args.layout {
            Layout::Stacked => (960, 860),
            Layout::Side => (1400, 560),
        }),
        Err(e) => {
            eprintln!("lossgraph plot: {e}");
            return USAGE;
        }
    };
    let res = figure(&args).and_then(|fig| {
        draw::render(&fig, &args.out, size, args.layout)?;
        Ok(fig.top.series.len())
    });
    match res {
        Ok(n) => {
            let curves = if n == 1 { "curve" } else { "curves" };
            println!("wrote {} ({n} {curves})", args.out.display());
            SUCCESS
        }
        Err(e) => {
            eprintln!("lossgraph plot: {e}");
            USAGE
        }
    }
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

    #[test]
    fn settings_expand_into_curves() {
        let specs = vec![
            parse_op("huber:delta=0.5,1").unwrap(),
            parse_op("mse").unwrap(),
        ];
        let globals = vec![parse_setting("target=0,1").unwrap()];
        let curves = curves_from_cli(&specs, &globals, None, None).unwrap();
        assert_eq!(curves.len(), 6);
        assert_eq!(curves[0].label(), "huber delta=0.5, target=0");
    }

    #[test]
    fn an_option_no_op_takes_is_an_error() {
        let specs = vec![parse_op("mse").unwrap()];
        let globals = vec![parse_setting("gamma=2").unwrap()];
        assert!(curves_from_cli(&specs, &globals, None, None).is_err());
        // but an op that takes it gets it, and the other is drawn once
        let specs = vec![parse_op("bce").unwrap(), parse_op("sigmoid_focal").unwrap()];
        let curves = curves_from_cli(&specs, &globals, None, None).unwrap();
        assert_eq!(curves.len(), 2);
        assert_eq!(curves[1].label(), "sigmoid_focal gamma=2");
    }

    #[test]
    fn unknown_ops_and_axes_are_errors() {
        assert!(parse_op("msee").is_err());
        let c = curve("mse", &[]);
        assert!(eval(&c, Axis::Logit, 0.0).is_err());
        assert!(eval(&curve("info_nce", &[]), Axis::Logit, 0.0).is_err());
    }
}
