//! The x axes of `lossgraph plot` and how one scalar `x` becomes an op's
//! inputs. `x` is a leaf on the tape and every input that depends on it is
//! built from it with tape ops (a sigmoid, a logit, a concat), so the gradient
//! the chart shows is `∂loss/∂x` as the tape's backward computes it.

use crate::autodiff::{Tape, Var};
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// What the x axis is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Axis {
    /// pred − target (regression ops; target fixed, 0 unless set).
    Residual,
    /// The prediction itself, target fixed (regression ops).
    Pred,
    /// A logit: z for binary ops with target 1, the true-class logit for
    /// class-axis ops (the other logits 0).
    Logit,
    /// y·s for hinge-like ops (y = +1), the score gap for ranking and
    /// preference ops.
    Margin,
    /// The probability of the true class; the op's logit is log(p/(1−p)).
    #[value(name = "p_t")]
    PT,
    /// The mean μ of gaussian_kl (logvar fixed).
    Mu,
    /// A distance between embeddings (contrastive, triplet).
    Distance,
}

impl Axis {
    /// The name `--against` takes.
    pub fn name(self) -> &'static str {
        match self {
            Axis::Residual => "residual",
            Axis::Pred => "pred",
            Axis::Logit => "logit",
            Axis::Margin => "margin",
            Axis::PT => "p_t",
            Axis::Mu => "mu",
            Axis::Distance => "distance",
        }
    }
    /// The range drawn when `--range` is absent.
    pub fn default_range(self) -> (f64, f64) {
        match self {
            Axis::Residual => (-5.0, 5.0),
            Axis::Pred | Axis::Mu => (-3.0, 3.0),
            Axis::Logit => (-6.0, 6.0),
            Axis::Margin => (-4.0, 4.0),
            Axis::PT => (0.01, 0.99),
            Axis::Distance => (0.0, 3.0),
        }
    }
}

const REGRESSION: &[&str] = &[
    "mse",
    "mae",
    "huber",
    "smooth_l1",
    "log_cosh",
    "quantile",
    "gaussian_nll",
    "poisson_nll",
];
const BINARY: &[&str] = &["bce", "bce_with_logits", "sigmoid_focal"];
const CLASS_AXIS: &[&str] = &[
    "cross_entropy",
    "nll",
    "softmax_focal",
    "brier",
    "multi_margin",
    "linear_cross_entropy",
];

/// The fixed inputs of `op` that a setting may change, with their defaults.
/// They are not options of the op but values of its other inputs.
pub fn params(op: &str) -> &'static [(&'static str, f64)] {
    match op {
        "gaussian_nll" => &[("target", 0.0), ("var", 1.0)],
        "poisson_nll" => &[("target", 2.0)],
        o if REGRESSION.contains(&o) => &[("target", 0.0)],
        o if BINARY.contains(&o) => &[("target", 1.0)],
        o if CLASS_AXIS.contains(&o) => &[("classes", 3.0)],
        "kl_logits" | "kl_div" => &[("classes", 3.0), ("teacher", 2.0)],
        "gaussian_kl" => &[("logvar", 0.0)],
        "contrastive" => &[("similar", 1.0)],
        "triplet" => &[("d_neg", 2.0)],
        _ => &[],
    }
}

/// The axes `op` can be drawn against; the first is its default.
pub fn axes(op: &str) -> &'static [Axis] {
    match op {
        "poisson_nll" => &[Axis::Pred, Axis::Residual],
        o if REGRESSION.contains(&o) => &[Axis::Residual, Axis::Pred],
        "bce" | "sigmoid_focal" => &[Axis::PT, Axis::Logit, Axis::Margin],
        "bce_with_logits" => &[Axis::Logit, Axis::Margin, Axis::PT],
        o if CLASS_AXIS.contains(&o) => &[Axis::Logit, Axis::PT, Axis::Margin],
        "hinge" | "margin_ranking" | "bradley_terry" | "dpo" => &[Axis::Margin, Axis::Logit],
        "kl_logits" | "kl_div" => &[Axis::Logit],
        "gaussian_kl" => &[Axis::Mu],
        "contrastive" | "triplet" => &[Axis::Distance],
        _ => &[],
    }
}

/// What `x` means for `op` on `axis`, for the axis label. `p` holds the fixed
/// values (defaults merged); `shown` lists the ones named here because no
/// curve's legend names them.
pub fn describe(op: &str, axis: Axis, p: &BTreeMap<String, f64>, shown: &[String]) -> String {
    let v = |k: &str| fmt_num(p.get(k).copied().unwrap_or(f64::NAN));
    let when = |k: &str, text: String| {
        if shown.iter().any(|s| s == k) {
            text
        } else {
            String::new()
        }
    };
    let class_note = || when("classes", format!(", {} classes", v("classes")));
    match (op, axis) {
        (_, Axis::Residual) => format!(
            "residual pred − target{}",
            when("target", format!(" (target {})", v("target")))
        ),
        ("poisson_nll", Axis::Pred) => format!(
            "pred = log-rate{}",
            when("target", format!(" (target {})", v("target")))
        ),
        (_, Axis::Pred) => format!(
            "pred{}",
            when("target", format!(" (target {})", v("target")))
        ),
        ("kl_logits" | "kl_div", Axis::Logit) => format!(
            "student logit z₀{} (teacher logits [{}, 0, …])",
            class_note(),
            v("teacher")
        ),
        (o, Axis::Logit) if CLASS_AXIS.contains(&o) => {
            format!("true-class logit z_y (others 0{})", class_note())
        }
        (o, Axis::PT) if CLASS_AXIS.contains(&o) => {
            format!(
                "p_y, softmax prob. of the true class (others equal{})",
                class_note()
            )
        }
        (_, Axis::PT) => "p_t, probability of the true class (target 1)".to_string(),
        ("hinge", _) => "margin y·s (y = +1)".to_string(),
        ("margin_ranking", _) => "gap a − b (target +1)".to_string(),
        ("bradley_terry", _) => "score gap chosen − rejected".to_string(),
        ("dpo", _) => "preference margin h = (pc − rc) − (pr − rr)".to_string(),
        (o, Axis::Margin) if CLASS_AXIS.contains(&o) => {
            format!("margin s_y − max other (others 0{})", class_note())
        }
        (_, Axis::Margin) => "margin y·z (y = +1)".to_string(),
        (_, Axis::Logit) => "logit z (target 1)".to_string(),
        (_, Axis::Mu) => format!("μ{}", when("logvar", format!(" (logvar {})", v("logvar")))),
        ("contrastive", _) => "distance ‖u − v‖".to_string(),
        ("triplet", _) => format!(
            "distance ‖a − p‖{}",
            when("d_neg", format!(" (‖a − n‖ = {})", v("d_neg")))
        ),
        (_, Axis::Distance) => "distance".to_string(),
    }
}

/// A number as a label shows it: no trailing `.0`.
pub fn fmt_num(v: f64) -> String {
    format!("{v}")
}

/// The inputs of one call built from `x`.
pub struct Wired {
    /// Real inputs as vars (those that depend on `x` and constants).
    pub vars: BTreeMap<String, Var<f64>>,
    /// Integer inputs (class ids).
    pub ints: BTreeMap<String, Tensor<i64>>,
}

impl Wired {
    fn new() -> Self {
        Wired {
            vars: BTreeMap::new(),
            ints: BTreeMap::new(),
        }
    }
    fn var(&mut self, name: &str, v: Var<f64>) -> &mut Self {
        self.vars.insert(name.to_string(), v);
        self
    }
}

type R<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn constant(tape: &Tape<f64>, data: Vec<f64>, shape: &[usize]) -> R<Var<f64>> {
    Ok(tape.constant(Tensor::from_vec(data, shape.to_vec()).map_err(err)?))
}

/// `log(p/(1−p))` on the tape.
fn logit_of(p: &Var<f64>) -> R<Var<f64>> {
    let one_minus = p.neg().and_then(|q| q.add_scalar(1.0)).map_err(err)?;
    p.log()
        .and_then(|a| one_minus.log().and_then(|b| a.sub(&b)))
        .map_err(err)
}

/// `[x, 0, …, 0]` as a `[1, C]` row on the tape.
fn class_row(x: &Var<f64>, classes: usize) -> R<Var<f64>> {
    if classes < 2 {
        return Err(format!("classes must be at least 2, got {classes}"));
    }
    let rest = constant(x.tape(), vec![0.0; classes - 1], &[classes - 1])?;
    Var::concat(&[x, &rest], 0)
        .and_then(|r| r.reshape([1, classes]))
        .map_err(err)
}

/// Build `op`'s inputs from `x` (a `[1]` leaf) for `axis`, with fixed values
/// `p` (defaults merged).
///
/// # Errors
/// A message when `op` cannot be drawn against `axis` or a fixed value is
/// out of place.
pub fn wire(op: &str, axis: Axis, x: &Var<f64>, p: &BTreeMap<String, f64>) -> R<Wired> {
    if !axes(op).contains(&axis) {
        return Err(unsupported(op, axis));
    }
    let tape = x.tape().clone();
    let get = |k: &str| p.get(k).copied().unwrap_or(f64::NAN);
    let c = |v: f64| constant(&tape, vec![v], &[1]);
    let mut w = Wired::new();
    match op {
        o if REGRESSION.contains(&o) => {
            let t = get("target");
            let pred = match axis {
                Axis::Residual => x.add_scalar(t).map_err(err)?,
                _ => x.clone(),
            };
            w.var("pred", pred).var("target", c(t)?);
            if op == "gaussian_nll" {
                w.var("var", c(get("var"))?);
            }
        }
        o if BINARY.contains(&o) => {
            let t = get("target");
            let name = if op == "bce" { "probs" } else { "logits" };
            let input = match (op, axis) {
                (_, Axis::PT) if t != 1.0 => {
                    return Err(format!("{op}: the p_t axis fixes target 1, not {t}"))
                }
                ("bce", Axis::PT) => x.clone(),
                ("bce", _) => x.sigmoid().map_err(err)?,
                (_, Axis::PT) => logit_of(x)?,
                _ => x.clone(),
            };
            w.var(name, input).var("target", c(t)?);
        }
        o if CLASS_AXIS.contains(&o) => {
            let classes = class_count(get("classes"))?;
            let z = match axis {
                // softmax_0 = p when z_0 = log(p/(1−p)) + log(C−1), others 0
                Axis::PT => logit_of(x)?
                    .add_scalar(((classes - 1) as f64).ln())
                    .map_err(err)?,
                _ => x.clone(),
            };
            let row = class_row(&z, classes)?;
            w.ints.insert(
                "target".to_string(),
                Tensor::from_vec(vec![0i64], [1]).map_err(err)?,
            );
            match op {
                "nll" => {
                    w.var("log_probs", row.log_softmax().map_err(err)?);
                }
                "multi_margin" => {
                    w.var("scores", row);
                }
                "linear_cross_entropy" => {
                    // hidden [1, 1] = x, weight [C, 1] = e₀: logits [x, 0, …]
                    let mut e0 = vec![0.0; classes];
                    e0[0] = 1.0;
                    let hidden = z.reshape([1, 1]).map_err(err)?;
                    w.var("hidden", hidden)
                        .var("weight", constant(&tape, e0, &[classes, 1])?);
                }
                _ => {
                    w.var("logits", row);
                }
            }
        }
        "hinge" => {
            w.var("scores", x.clone()).var("target", c(1.0)?);
        }
        "margin_ranking" => {
            w.var("a", x.clone())
                .var("b", c(0.0)?)
                .var("target", c(1.0)?);
        }
        "bradley_terry" => {
            w.var("chosen", x.clone()).var("rejected", c(0.0)?);
        }
        "dpo" => {
            w.var("policy_chosen", x.clone())
                .var("policy_rejected", c(0.0)?)
                .var("ref_chosen", c(0.0)?)
                .var("ref_rejected", c(0.0)?);
        }
        "kl_logits" | "kl_div" => {
            let classes = class_count(get("classes"))?;
            let mut teacher = vec![0.0; classes];
            teacher[0] = get("teacher");
            let student = class_row(x, classes)?;
            let teacher_t = Tensor::from_vec(teacher, [1, classes]).map_err(err)?;
            if op == "kl_logits" {
                w.var("student", student)
                    .var("teacher", tape.constant(teacher_t));
            } else {
                // kl_div takes log-probabilities and probabilities
                w.var("input", student.log_softmax().map_err(err)?)
                    .var("target", tape.constant(teacher_t.softmax()));
            }
        }
        "gaussian_kl" => {
            w.var("mu", x.reshape([1, 1]).map_err(err)?)
                .var("logvar", constant(&tape, vec![get("logvar")], &[1, 1])?);
        }
        "contrastive" => {
            w.var("u", x.reshape([1, 1]).map_err(err)?)
                .var("v", constant(&tape, vec![0.0], &[1, 1])?)
                .var("similar", c(get("similar"))?);
        }
        "triplet" => {
            w.var("anchor", constant(&tape, vec![0.0], &[1, 1])?)
                .var("positive", x.reshape([1, 1]).map_err(err)?)
                .var("negative", constant(&tape, vec![get("d_neg")], &[1, 1])?);
        }
        _ => return Err(unsupported(op, axis)),
    }
    Ok(w)
}

fn class_count(v: f64) -> R<usize> {
    if v.fract() == 0.0 && (2.0..=4096.0).contains(&v) {
        Ok(v as usize)
    } else {
        Err(format!(
            "classes must be a whole number in [2, 4096], got {v}"
        ))
    }
}

/// The message for an op that cannot be drawn against an axis.
pub fn unsupported(op: &str, axis: Axis) -> String {
    let ok: Vec<&str> = axes(op).iter().map(|a| a.name()).collect();
    match op {
        "info_nce" => "info_nce is not drawn over one scalar; see --preset temperature \
            (the softmax over a similarity row)"
            .to_string(),
        "masked_mean" | "weighted_mean" => {
            format!("{op} is a reduction, not a pointwise loss; see --preset reductions")
        }
        _ if ok.is_empty() => format!("{op}: not an op of the catalog"),
        _ => format!(
            "{op} cannot be drawn against {}; it can be drawn against: {}",
            axis.name(),
            ok.join(", ")
        ),
    }
}
