//! The conformance runner: reads PyTorch-computed case files (see
//! `tests/conformance/README.md`), runs every case in every dtype it lists
//! through [`crate::registry`], and compares values and gradients.
//!
//! Cases are compared elementwise with [`tolerance`], except cases that carry
//! `"pytorch_f32_error"` (PyTorch's own float32 error on the case's inputs,
//! the extreme-magnitude sweep of `tests/magnitudes/`): those are compared
//! with the norm-wise metric [`norm_error`], f64 against
//! [`F64_NORM_BOUND`] and f32 against [`f32_bound`], `max(K·e_pt, FLOOR)`
//! with `K` = [`F32_ERROR_MULTIPLE`] and `FLOOR` = [`F32_ERROR_FLOOR`].
//! A case that also carries `"f32_strict": true` is held to `FLOOR` alone in
//! f32, whatever PyTorch's error (cases where PyTorch's f32 overflows or
//! loses the value although the true value is finite: PyTorch's error would
//! excuse the same defect in ours).
//!
//! Used by the `conformance` test target and by `lossgraph conformance`.

use crate::registry::{build, Call, Flavor, InputValue, OptValue};
use lossgraph_autodiff::{Error, Tape};
use lossgraph_tensor::{Float, Tensor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

/// One case of a case file.
#[derive(Debug, Clone)]
pub struct Case {
    /// Unique id, e.g. `cross_entropy/weight_ignore_smooth_mean`.
    pub id: String,
    /// The op, options and inputs.
    pub call: Call,
    /// What to check.
    pub expect: Expect,
    /// The dtypes to run it in (`f64`, `f32`).
    pub dtypes: Vec<String>,
    /// PyTorch's own float32 error on this case's inputs, by [`norm_error`]
    /// (field `pytorch_f32_error`): when present, the case is checked
    /// norm-wise against it instead of elementwise.
    pub pytorch_f32_error: Option<ReferenceError>,
    /// Field `f32_strict` (only with `pytorch_f32_error`): the f32 result is
    /// held to [`F32_ERROR_FLOOR`], PyTorch's error is not used.
    pub f32_strict: bool,
}

/// PyTorch's own float32 error on a case's inputs, measured once by the
/// generator with [`norm_error`] against the float64 reference and stored
/// with the case (`{"output": e, "grads": {"name": e, ...}}`; `"inf"` where
/// PyTorch's f32 result was NaN or infinite).
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceError {
    /// The error of PyTorch's f32 output.
    pub output: f64,
    /// The error of each of PyTorch's f32 gradients, by input name.
    pub grads: BTreeMap<String, f64>,
}

/// For a case with `pytorch_f32_error`, the f32 result may be this many times
/// less accurate than PyTorch's f32 (by [`norm_error`]). 4 leaves room for a
/// different but equally sound evaluation order (a fused kernel sums in
/// another order and rounds at other places), not for a less careful formula.
pub const F32_ERROR_MULTIPLE: f64 = 4.0;

/// For a case with `pytorch_f32_error`, an f32 error up to this always
/// passes: about 100 f32 ulps (2⁻²⁴ ≈ 6e-8) of the tensor's largest element,
/// where PyTorch's own error happens to be a fraction of an ulp.
pub const F32_ERROR_FLOOR: f64 = 1e-5;

/// For a case with `pytorch_f32_error`, the bound on the f64 result's
/// [`norm_error`] (against the f64 reference, the same in every mode).
pub const F64_NORM_BOUND: f64 = 1e-9;

/// The bound on an f32 [`norm_error`] given PyTorch's own f32 error there:
/// `max(F32_ERROR_MULTIPLE · pytorch, F32_ERROR_FLOOR)`.
pub fn f32_bound(pytorch: f64) -> f64 {
    (F32_ERROR_MULTIPLE * pytorch).max(F32_ERROR_FLOOR)
}

/// Norm-wise relative error of `actual` against the f64 reference
/// `expected`, robust at every magnitude (both row-major, same length).
///
/// With `r` the reference and `x` the result, per element: `rr` = `r`
/// rounded to the run's dtype (in `"f32"`: `r as f32`, overflow → ±∞,
/// underflow → 0; in `"f64"`: `r` itself). An element with `x == rr`
/// exactly (matching infinities and `0 = 0` included) contributes 0; a NaN,
/// or an infinity where `rr` is finite, contributes +∞; any other contributes
/// `|x − r| / scale`, where `scale` is the largest `|r|` over the elements
/// whose `rr` is finite (`f32::MIN_POSITIVE` when that is 0). The error is
/// the largest contribution (0 for an empty tensor). The generator
/// (`tests/magnitudes/generate.py`, `norm_error`) computes PyTorch's error
/// with the same definition.
pub fn norm_error(actual: &[f64], expected: &[f64], dtype: &str) -> f64 {
    let round = |r: f64| if dtype == "f32" { r as f32 as f64 } else { r };
    let scale = expected
        .iter()
        .filter(|&&r| round(r).is_finite())
        .fold(0.0f64, |m, &r| m.max(r.abs()));
    let scale = if scale > 0.0 {
        scale
    } else {
        f32::MIN_POSITIVE as f64
    };
    let mut worst = 0.0f64;
    for (&x, &r) in actual.iter().zip(expected) {
        let rr = round(r);
        if x == rr {
            continue;
        }
        if x.is_nan() || (x.is_infinite() && rr.is_finite()) {
            return f64::INFINITY;
        }
        let e = (x - r).abs() / scale;
        worst = worst.max(if e.is_nan() { f64::INFINITY } else { e });
    }
    worst
}

/// What a case expects.
#[derive(Debug, Clone)]
pub enum Expect {
    /// Output and gradients, after backpropagating `grad_output`.
    Value {
        /// The cotangent of the output.
        grad_output: Tensor<f64>,
        /// The expected output.
        output: Tensor<f64>,
        /// The expected gradients, by input name.
        grads: BTreeMap<String, Tensor<f64>>,
    },
    /// An error of this kind (`ShapeMismatch`, `InvalidTarget`, …).
    Error(String),
}

/// The result of one case in one dtype.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Case id.
    pub id: String,
    /// `f64` or `f32`.
    pub dtype: String,
    /// None when it passed; else what failed.
    pub failure: Option<String>,
    /// Real inputs of a value case whose gradient the case does not give
    /// (the format allows it: "inputs not named there are not checked"), so
    /// nothing was compared for them; counted in the report, never hidden.
    pub unchecked: Vec<String>,
    /// The kinds of the check-mode warnings the run recorded (cases run
    /// with check mode on; see `docs/checks.md` for the ones that trip).
    pub warnings: Vec<String>,
}

/// Tolerances per dtype: `|actual − expected| ≤ atol + rtol·|expected|`.
pub fn tolerance(dtype: &str) -> (f64, f64) {
    if dtype == "f32" {
        (1e-4, 1e-5)
    } else {
        (1e-9, 1e-12)
    }
}

fn parse_tensor(v: &Value) -> Result<(Vec<usize>, Vec<f64>, bool), String> {
    let shape = v["shape"]
        .as_array()
        .ok_or("tensor without shape")?
        .iter()
        .map(|d| d.as_u64().map(|d| d as usize).ok_or("bad dim"))
        .collect::<Result<Vec<_>, _>>()?;
    let data = v["data"]
        .as_array()
        .ok_or("tensor without data")?
        .iter()
        .map(|x| match x {
            Value::Number(n) => n.as_f64().ok_or("bad number"),
            // non-finite values may be written as strings
            Value::String(s) => s.parse::<f64>().map_err(|_| "bad number string"),
            _ => Err("bad element"),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let int = v.get("dtype").and_then(|d| d.as_str()) == Some("i64");
    Ok((shape, data, int))
}

fn real(v: &Value) -> Result<Tensor<f64>, String> {
    let (shape, data, _) = parse_tensor(v)?;
    Tensor::from_vec(data, shape).map_err(|e| e.to_string())
}

fn parse_case(v: &Value) -> Result<Case, String> {
    let id = v["id"].as_str().ok_or("case without id")?.to_string();
    let op = v["op"].as_str().ok_or("case without op")?.to_string();
    let mut options = BTreeMap::new();
    if let Some(o) = v.get("options").and_then(|o| o.as_object()) {
        for (k, x) in o {
            let ov = match x {
                Value::Bool(b) => OptValue::Bool(*b),
                Value::Number(n) => OptValue::Num(n.as_f64().ok_or("bad number")?),
                Value::String(s) => OptValue::Str(s.clone()),
                Value::Array(a) => OptValue::List(
                    a.iter()
                        .map(|x| x.as_f64().ok_or("bad list"))
                        .collect::<Result<_, _>>()?,
                ),
                Value::Object(_) => OptValue::Tensor(real(x)?),
                Value::Null => return Err(format!("option {k} is null")),
            };
            options.insert(k.clone(), ov);
        }
    }
    let mut inputs = BTreeMap::new();
    for (k, x) in v["inputs"].as_object().ok_or("case without inputs")? {
        let (shape, data, int) = parse_tensor(x)?;
        let iv = if int {
            InputValue::Int(
                Tensor::from_vec(data.iter().map(|&d| d as i64).collect(), shape)
                    .map_err(|e| e.to_string())?,
            )
        } else {
            InputValue::Real(Tensor::from_vec(data, shape).map_err(|e| e.to_string())?)
        };
        inputs.insert(k.clone(), iv);
    }
    let expect = if let Some(kind) = v.get("expect_error") {
        Expect::Error(
            kind.as_str()
                .ok_or("expect_error must be a string")?
                .to_string(),
        )
    } else {
        let e = &v["expected"];
        let mut grads = BTreeMap::new();
        if let Some(g) = e.get("grads").and_then(|g| g.as_object()) {
            for (k, t) in g {
                grads.insert(k.clone(), real(t)?);
            }
        }
        Expect::Value {
            grad_output: real(&v["grad_output"])?,
            output: real(&e["output"])?,
            grads,
        }
    };
    let dtypes = match v.get("dtypes") {
        None => vec!["f64".to_string(), "f32".to_string()],
        Some(d) => {
            let d = d.as_array().ok_or("dtypes must be a list")?;
            if d.is_empty() {
                return Err("dtypes is empty: the case would run nothing".into());
            }
            d.iter()
                .map(|x| x.as_str().map(String::from).ok_or("dtypes must be strings"))
                .collect::<Result<_, _>>()?
        }
    };
    let pytorch_f32_error = match v.get("pytorch_f32_error") {
        None => None,
        Some(p) => Some(parse_reference_error(p, &expect)?),
    };
    let f32_strict = match v.get("f32_strict") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("f32_strict must be true or false".into()),
    };
    if f32_strict && pytorch_f32_error.is_none() {
        return Err("f32_strict without pytorch_f32_error".into());
    }
    Ok(Case {
        id,
        call: Call {
            op,
            options,
            inputs,
        },
        expect,
        dtypes,
        pytorch_f32_error,
        f32_strict,
    })
}

/// A stored error: a number, or `"inf"` (PyTorch's f32 result was NaN or
/// infinite where the reference is finite).
fn error_value(v: &Value) -> Result<f64, String> {
    let e = match v {
        Value::Number(n) => n.as_f64().ok_or("bad number")?,
        Value::String(s) => s.parse::<f64>().map_err(|_| "bad number string")?,
        _ => return Err("pytorch_f32_error values must be numbers".into()),
    };
    if e.is_nan() || e < 0.0 {
        return Err(format!("pytorch_f32_error {e} is not an error"));
    }
    Ok(e)
}

/// `pytorch_f32_error` of a value case: an output error and one error per
/// expected gradient (a gradient without one would go unchecked in f32).
fn parse_reference_error(v: &Value, expect: &Expect) -> Result<ReferenceError, String> {
    let Expect::Value { grads, .. } = expect else {
        return Err("pytorch_f32_error on an error case".into());
    };
    let output = error_value(v.get("output").ok_or("pytorch_f32_error without output")?)?;
    let mut errs = BTreeMap::new();
    if let Some(g) = v.get("grads") {
        for (k, e) in g
            .as_object()
            .ok_or("pytorch_f32_error grads must be an object")?
        {
            errs.insert(k.clone(), error_value(e)?);
        }
    }
    if let Some(k) = grads.keys().find(|k| !errs.contains_key(*k)) {
        return Err(format!("pytorch_f32_error has no error for grad {k}"));
    }
    Ok(ReferenceError {
        output,
        grads: errs,
    })
}

/// Read every `*.json` case file in `dir`, sorted by file name.
///
/// # Errors
/// [`Error::Io`] when the folder or a file cannot be read or parsed.
pub fn load_dir(dir: &Path) -> Result<Vec<Case>, Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).map_err(|e| Error::Io(format!("{}: {e}", f.display())))?;
        let parsed = parse_file(&text).map_err(|e| Error::Io(format!("{}: {e}", f.display())))?;
        cases.extend(parsed);
    }
    if cases.is_empty() {
        return Err(Error::Io(format!("{}: no case files", dir.display())));
    }
    Ok(cases)
}

/// Parse the text of one case file (`{"op", "cases": [...]}`).
///
/// # Errors
/// [`Error::Io`] for text that is not JSON or a case that does not parse.
pub fn parse_file(text: &str) -> Result<Vec<Case>, Error> {
    let v: Value = serde_json::from_str(text).map_err(|e| Error::Io(e.to_string()))?;
    let cases = v["cases"]
        .as_array()
        .ok_or_else(|| Error::Io("no cases".to_string()))?;
    if cases.is_empty() {
        return Err(Error::Io("an empty case list checks nothing".to_string()));
    }
    cases
        .iter()
        .map(|c| parse_case(c).map_err(Error::Io))
        .collect()
}

/// A message when the two shapes differ.
fn shape_mismatch(what: &str, actual: &Tensor<f64>, expected: &Tensor<f64>) -> Option<String> {
    (actual.dims() != expected.dims()).then(|| {
        format!(
            "{what}: shape {:?}, expected {:?}",
            actual.dims(),
            expected.dims()
        )
    })
}

/// The worst element of a comparison, as a message, or None when all pass.
fn compare(
    what: &str,
    actual: &Tensor<f64>,
    expected: &Tensor<f64>,
    dtype: &str,
) -> Option<String> {
    if let Some(m) = shape_mismatch(what, actual, expected) {
        return Some(m);
    }
    let (rtol, atol) = tolerance(dtype);
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&a, &e)) in actual
        .as_slice()
        .iter()
        .zip(expected.as_slice())
        .enumerate()
    {
        let excess = if a.is_nan() && e.is_nan() || a == e {
            0.0
        } else if e.is_infinite() {
            // an infinite expectation is met only by the same infinity (the
            // tolerance atol + rtol·∞ would otherwise pass any finite value)
            f64::INFINITY
        } else {
            let d = (a - e).abs();
            if d.is_nan() {
                f64::INFINITY
            } else {
                d - (atol + rtol * e.abs())
            }
        };
        if excess > 0.0 && worst.is_none_or(|(_, w)| excess > w) {
            worst = Some((i, excess));
        }
    }
    worst.map(|(i, _)| {
        format!(
            "{what}: worst element {i}: expected {:e}, actual {:e}",
            expected.as_slice()[i],
            actual.as_slice()[i]
        )
    })
}

/// Norm-wise comparison of a case with `pytorch_f32_error` (see
/// [`norm_error`]): f64 within [`F64_NORM_BOUND`], f32 within
/// [`f32_bound`] of PyTorch's f32 error `pytorch` on the same tensor, or
/// within [`F32_ERROR_FLOOR`] when `strict` (`f32_strict`).
fn compare_norm(
    what: &str,
    actual: &Tensor<f64>,
    expected: &Tensor<f64>,
    dtype: &str,
    pytorch: f64,
    strict: bool,
) -> Option<String> {
    if let Some(m) = shape_mismatch(what, actual, expected) {
        return Some(m);
    }
    let err = norm_error(actual.as_slice(), expected.as_slice(), dtype);
    let bound = if dtype == "f32" && strict {
        F32_ERROR_FLOOR
    } else if dtype == "f32" {
        f32_bound(pytorch)
    } else {
        F64_NORM_BOUND
    };
    // an infinite error never passes a finite bound, and no error passes a
    // NaN one
    if err <= bound {
        return None;
    }
    let why = if strict && dtype == "f32" {
        "f32_strict: PyTorch's own f32 error, not used"
    } else {
        "PyTorch's own f32 error"
    };
    Some(format!(
        "{what}: norm-wise error {err:.3e} over the bound {bound:.3e} ({why} {pytorch:.3e})"
    ))
}

/// The real inputs of a value case that its expected gradients do not name.
fn unchecked_inputs(case: &Case) -> Vec<String> {
    match &case.expect {
        Expect::Value { grads, .. } => case
            .call
            .inputs
            .iter()
            .filter(|(name, v)| matches!(v, InputValue::Real(_)) && !grads.contains_key(*name))
            .map(|(name, _)| name.clone())
            .collect(),
        Expect::Error(_) => Vec::new(),
    }
}

/// Run a case on a tape in check mode: the failure, if any, and the kinds of
/// the warnings recorded (check mode never changes a value, so every case
/// must pass with it on).
fn run_typed<T: Float>(case: &Case, dtype: &str) -> (Option<String>, Vec<String>) {
    let tape = Tape::<T>::new();
    tape.set_check_mode(true);
    let failure = check_typed(&tape, case, dtype);
    let warnings = tape
        .warnings()
        .iter()
        .map(|w| w.kind().to_string())
        .collect();
    (failure, warnings)
}

fn check_typed<T: Float>(tape: &Tape<T>, case: &Case, dtype: &str) -> Option<String> {
    let built = build(tape, &case.call, Flavor::Fused);
    match (&case.expect, built) {
        (Expect::Error(kind), Err(e)) => {
            let got = format!("{:?}", e.kind());
            (got != *kind).then(|| format!("expected error {kind}, got {got}: {e}"))
        }
        (Expect::Error(kind), Ok(_)) => Some(format!("expected error {kind}, got Ok")),
        (Expect::Value { .. }, Err(e)) => Some(format!("error: {e}")),
        (
            Expect::Value {
                grad_output,
                output,
                grads,
            },
            Ok(b),
        ) => {
            let pt = case.pytorch_f32_error.as_ref();
            // elementwise, or norm-wise against PyTorch's f32 error
            let check = |what: &str, got: &Tensor<f64>, want: &Tensor<f64>, e: Option<f64>| match e
            {
                Some(e) => compare_norm(what, got, want, dtype, e, case.f32_strict),
                None => compare(what, got, want, dtype),
            };
            let mut fails = Vec::new();
            let got = b.output.value().cast();
            fails.extend(check("output", &got, output, pt.map(|p| p.output)));
            match b.output.backward_with(grad_output.cast()) {
                Err(e) => fails.push(format!("backward error: {e}")),
                Ok(g) => {
                    for (name, want) in grads {
                        let got = b.leaves.get(name).and_then(|v| g.get(v)).map(|t| t.cast());
                        match got {
                            Some(got) => {
                                let e = pt.map(|p| p.grads[name]);
                                fails.extend(check(&format!("grad {name}"), &got, want, e))
                            }
                            None => fails.push(format!("grad {name}: no gradient")),
                        }
                    }
                }
            }
            (!fails.is_empty()).then(|| fails.join("; "))
        }
    }
}

/// Run one case in one dtype; a panic is a failure, not a crash.
pub fn run_case(case: &Case, dtype: &str) -> Outcome {
    let res = catch_unwind(AssertUnwindSafe(|| match dtype {
        "f64" => run_typed::<f64>(case, dtype),
        "f32" => run_typed::<f32>(case, dtype),
        other => (Some(format!("unknown dtype {other}")), Vec::new()),
    }));
    let (failure, warnings) = match res {
        Ok(f) => f,
        Err(p) => (
            Some(format!(
                "panicked: {}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
            Vec::new(),
        ),
    };
    Outcome {
        id: case.id.clone(),
        dtype: dtype.to_string(),
        failure,
        unchecked: unchecked_inputs(case),
        warnings,
    }
}

/// Run every case in every dtype it lists.
pub fn run_all(cases: &[Case]) -> Vec<Outcome> {
    cases
        .iter()
        .flat_map(|c| c.dtypes.iter().map(move |d| run_case(c, d)))
        .collect()
}

/// Print one line per failing run, then the closing line; returns whether
/// the run counts as a pass (no failure and at least one run).
pub fn print_report(outcomes: &[Outcome]) -> bool {
    for o in outcomes.iter().filter(|o| o.failure.is_some()) {
        println!(
            "FAIL {} [{}]: {}",
            o.id,
            o.dtype,
            o.failure.as_deref().unwrap_or("")
        );
    }
    let unchecked: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !o.unchecked.is_empty())
        .collect();
    if !unchecked.is_empty() {
        let grads: usize = unchecked.iter().map(|o| o.unchecked.len()).sum();
        println!(
            "unchecked: {grads} gradients of real inputs in {} runs name no expected gradient \
             (the case format allows it; e.g. {} [{}]: {})",
            unchecked.len(),
            unchecked[0].id,
            unchecked[0].dtype,
            unchecked[0].unchecked.join(", ")
        );
    }
    println!("{}", summary(outcomes));
    let failed = outcomes.iter().any(|o| o.failure.is_some());
    !failed && !outcomes.is_empty()
}

/// The closing line: `conformance: N passed, M failed`.
pub fn summary(outcomes: &[Outcome]) -> String {
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    format!(
        "conformance: {} passed, {} failed",
        outcomes.len() - failed,
        failed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One mse case, `[2]` inputs, with `extra` spliced into the case object.
    fn mse_case(expected: &str, extra: &str) -> String {
        format!(
            r#"{{"op": "mse", "cases": [{{"id": "mse/t", "op": "mse", "options": {{"reduction": "sum"}},
            "inputs": {{"pred": {{"shape": [2], "data": [1.0, 2.0]}}, "target": {{"shape": [2], "data": [0.0, 0.0]}}}},
            "grad_output": {{"shape": [], "data": [1.0]}}, "expected": {expected} {extra}}}]}}"#
        )
    }

    const GOOD: &str = r#"{"output": {"shape": [], "data": [5.0]},
        "grads": {"pred": {"shape": [2], "data": [2.0, 4.0]}, "target": {"shape": [2], "data": [-2.0, -4.0]}}}"#;

    fn run(text: &str) -> Vec<Outcome> {
        run_all(&parse_file(text).unwrap())
    }

    #[test]
    fn a_correct_case_passes_in_both_dtypes_with_nothing_unchecked() {
        let out = run(&mse_case(GOOD, ""));
        assert_eq!(out.len(), 2);
        assert!(out
            .iter()
            .all(|o| o.failure.is_none() && o.unchecked.is_empty()));
    }

    #[test]
    fn an_empty_dtype_list_or_case_list_is_an_error() {
        assert!(parse_file(&mse_case(GOOD, r#", "dtypes": []"#)).is_err());
        assert!(parse_file(&mse_case(GOOD, r#", "dtypes": [1]"#)).is_err());
        assert!(parse_file(r#"{"op": "mse", "cases": []}"#).is_err());
    }

    #[test]
    fn an_infinite_expectation_needs_the_same_infinity() {
        let inf = GOOD.replace("[5.0]", r#"["inf"]"#);
        let out = run(&mse_case(&inf, ""));
        assert!(out.iter().all(|o| o.failure.is_some()), "{out:?}");
        let t = |e: f64, a: f64| {
            compare(
                "x",
                &Tensor::from_vec(vec![a], [1]).unwrap(),
                &Tensor::from_vec(vec![e], [1]).unwrap(),
                "f64",
            )
        };
        assert!(t(f64::INFINITY, f64::INFINITY).is_none());
        assert!(t(f64::INFINITY, 1e300).is_some());
        assert!(t(f64::NEG_INFINITY, f64::INFINITY).is_some());
    }

    #[test]
    fn gradients_not_named_are_counted_not_hidden() {
        let only_pred = GOOD.replace(r#", "target": {"shape": [2], "data": [-2.0, -4.0]}"#, "");
        let out = run(&mse_case(&only_pred, ""));
        assert!(out.iter().all(|o| o.failure.is_none()));
        assert!(out.iter().all(|o| o.unchecked == ["target"]), "{out:?}");
        let no_grads = r#"{"output": {"shape": [], "data": [5.0]}}"#;
        let out = run(&mse_case(no_grads, ""));
        assert!(out.iter().all(|o| o.unchecked == ["pred", "target"]));
        // and a wrong gradient still fails
        let wrong = GOOD.replace("[2.0, 4.0]", "[2.0, 4.5]");
        assert!(run(&mse_case(&wrong, ""))
            .iter()
            .all(|o| o.failure.is_some()));
    }

    fn t1(v: &[f64]) -> Tensor<f64> {
        Tensor::from_vec(v.to_vec(), [v.len()]).unwrap()
    }

    const INF: f64 = f64::INFINITY;

    #[test]
    fn norm_error_passes_matching_infinities_zeros_and_rounding() {
        // 1e60 overflows f32: the f32 +∞ is its correctly rounded value
        assert_eq!(norm_error(&[INF, 2.0], &[1e60, 2.0], "f32"), 0.0);
        assert!(
            compare_norm("x", &t1(&[INF, 2.0]), &t1(&[1e60, 2.0]), "f32", 0.0, false).is_none()
        );
        assert_eq!(norm_error(&[-INF], &[-1e60], "f32"), 0.0);
        // 1e-60 underflows f32 to 0; in f64 a 0 there is an error of 1e-60
        // relative to the largest element
        assert_eq!(norm_error(&[0.0, 1.0], &[1e-60, 1.0], "f32"), 0.0);
        assert_eq!(norm_error(&[0.0, 1.0], &[1e-60, 1.0], "f64"), 1e-60);
        // the scale is the largest |r| that is finite in the dtype
        assert_eq!(norm_error(&[1.5, INF], &[2.0, 1e60], "f32"), 0.25);
        // all zero: the scale is f32::MIN_POSITIVE
        let tiny = f32::MIN_POSITIVE as f64;
        assert_eq!(norm_error(&[tiny], &[0.0], "f32"), 1.0);
        assert_eq!(norm_error(&[], &[], "f32"), 0.0);
    }

    #[test]
    fn norm_error_fails_an_infinity_or_nan_where_the_reference_is_finite() {
        // 3e38 is finite in f32
        assert_eq!(norm_error(&[INF, 1.0], &[3e38, 1.0], "f32"), INF);
        assert_eq!(norm_error(&[f64::NAN], &[1.0], "f32"), INF);
        assert_eq!(norm_error(&[f64::NAN], &[1e60], "f32"), INF);
        // the wrong infinity
        assert_eq!(norm_error(&[-INF], &[1e60], "f32"), INF);
        // in f64 1e60 is finite: an f64 infinity there is wrong
        assert_eq!(norm_error(&[INF], &[1e60], "f64"), INF);
        // a finite result where the reference overflows f32 is far off
        assert!(norm_error(&[3e38], &[1e60], "f32") > 1e30);
        // an infinite error fails any finite bound, and a huge PyTorch error
        // does not excuse it
        let m = compare_norm("grad x", &t1(&[INF]), &t1(&[1.0]), "f32", 1e30, false).unwrap();
        assert!(m.contains("grad x") && m.contains("inf"), "{m}");
        assert!(compare_norm("x", &t1(&[INF]), &t1(&[1.0]), "f64", 0.0, false).is_some());
    }

    #[test]
    fn the_f32_bound_is_a_multiple_of_pytorchs_own_error() {
        let r = t1(&[1.0, -0.5, 0.25]);
        let pt = 1e-3;
        // 2x PyTorch's error passes (K = 4)
        let x2 = t1(&[1.0 + 2e-3, -0.5, 0.25]);
        assert!((norm_error(x2.as_slice(), r.as_slice(), "f32") - 2e-3).abs() < 1e-12);
        assert!(compare_norm("output", &x2, &r, "f32", pt, false).is_none());
        // 10x fails, and the message names the tensor, both errors and the bound
        let x10 = t1(&[1.0, -0.5 - 1e-2, 0.25]);
        let m = compare_norm("grad pred", &x10, &r, "f32", pt, false).unwrap();
        for part in ["grad pred", "1.000e-2", "1.000e-3", "4.000e-3"] {
            assert!(m.contains(part), "{part} not in {m}");
        }
        // below the floor anything passes, even where PyTorch is exact
        let x_small = t1(&[1.0 + 5e-6, -0.5, 0.25]);
        assert!(compare_norm("output", &x_small, &r, "f32", 0.0, false).is_none());
        assert!(compare_norm("output", &x2, &r, "f32", 0.0, false).is_some());
        assert_eq!(f32_bound(0.0), F32_ERROR_FLOOR);
        assert_eq!(f32_bound(1.0), F32_ERROR_MULTIPLE);
        // f64 has its own fixed bound
        assert!(compare_norm("output", &x_small, &r, "f64", 1.0, false).is_some());
        assert!(compare_norm(
            "output",
            &t1(&[1.0 + 1e-12, -0.5, 0.25]),
            &r,
            "f64",
            0.0,
            false
        )
        .is_none());
    }

    #[test]
    fn a_case_with_pytorch_f32_error_is_checked_norm_wise() {
        // the output is off by 3e-4 relative: outside the elementwise f32
        // tolerance, inside 4x a PyTorch error of 1e-4, outside 4x 5e-5
        let off = GOOD.replace("[5.0]", "[5.0015]");
        let with = |e_out: &str| {
            format!(
                r#", "dtypes": ["f32"], "pytorch_f32_error": {{"output": {e_out},
                "grads": {{"pred": 0.0, "target": "inf"}}}}"#
            )
        };
        assert!(run(&mse_case(&off, r#", "dtypes": ["f32"]"#))[0]
            .failure
            .is_some());
        let out = run(&mse_case(&off, &with("1e-4")));
        assert!(out[0].failure.is_none(), "{out:?}");
        let out = run(&mse_case(&off, &with("5e-5")));
        let m = out[0].failure.as_deref().unwrap();
        assert!(m.contains("output") && m.contains("5.000e-5"), "{m}");
        // in f64 the same case fails the 1e-9 bound
        let f64_case = mse_case(&off, &with("1e-4")).replace(r#"["f32"]"#, r#"["f64"]"#);
        assert!(run(&f64_case)[0].failure.is_some());
        // every expected gradient needs a stored error
        let missing = r#", "pytorch_f32_error": {"output": 0.0, "grads": {"pred": 0.0}}"#;
        assert!(parse_file(&mse_case(GOOD, missing)).is_err());
        let bad =
            r#", "pytorch_f32_error": {"output": -1.0, "grads": {"pred": 0.0, "target": 0.0}}"#;
        assert!(parse_file(&mse_case(GOOD, bad)).is_err());
        let ok = r#", "pytorch_f32_error": {"output": 0.0, "grads": {"pred": 0.0, "target": 0.0}}"#;
        let out = run(&mse_case(GOOD, ok));
        assert!(
            out.len() == 2 && out.iter().all(|o| o.failure.is_none()),
            "{out:?}"
        );
    }

    #[test]
    fn f32_strict_holds_f32_to_the_floor_whatever_pytorchs_error() {
        // off by 3e-4 relative: passes 4x a PyTorch error of "inf" or 1e-4,
        // fails once f32_strict holds it to the 1e-5 floor
        let off = GOOD.replace("[5.0]", "[5.0015]");
        let with = |strict: &str| {
            format!(
                r#", "dtypes": ["f32"], "pytorch_f32_error": {{"output": "inf",
                "grads": {{"pred": 0.0, "target": 0.0}}}}{strict}"#
            )
        };
        assert!(run(&mse_case(&off, &with("")))[0].failure.is_none());
        let out = run(&mse_case(&off, &with(r#", "f32_strict": true"#)));
        let m = out[0].failure.as_deref().unwrap();
        assert!(m.contains("f32_strict") && m.contains("1.000e-5"), "{m}");
        // a correct result passes, false is the default, and the field needs
        // pytorch_f32_error and a boolean
        assert!(run(&mse_case(GOOD, &with(r#", "f32_strict": true"#)))[0]
            .failure
            .is_none());
        assert!(run(&mse_case(&off, &with(r#", "f32_strict": false"#)))[0]
            .failure
            .is_none());
        assert!(parse_file(&mse_case(GOOD, r#", "f32_strict": true"#)).is_err());
        assert!(parse_file(&mse_case(GOOD, &with(r#", "f32_strict": 1"#))).is_err());
    }
}
