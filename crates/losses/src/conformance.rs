//! The conformance runner: reads PyTorch-computed case files (see
//! `tests/conformance/README.md`), runs every case in every dtype it lists
//! through [`crate::registry`], and compares values and gradients.
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
    Ok(Case {
        id,
        call: Call {
            op,
            options,
            inputs,
        },
        expect,
        dtypes,
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

/// The worst element of a comparison, as a message, or None when all pass.
fn compare(
    what: &str,
    actual: &Tensor<f64>,
    expected: &Tensor<f64>,
    dtype: &str,
) -> Option<String> {
    if actual.dims() != expected.dims() {
        return Some(format!(
            "{what}: shape {:?}, expected {:?}",
            actual.dims(),
            expected.dims()
        ));
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

fn run_typed<T: Float>(case: &Case, dtype: &str) -> Option<String> {
    let tape = Tape::<T>::new();
    let built = build(&tape, &case.call, Flavor::Fused);
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
            let mut fails = Vec::new();
            fails.extend(compare("output", &b.output.value().cast(), output, dtype));
            match b.output.backward_with(grad_output.cast()) {
                Err(e) => fails.push(format!("backward error: {e}")),
                Ok(g) => {
                    for (name, want) in grads {
                        let got = b.leaves.get(name).and_then(|v| g.get(v)).map(|t| t.cast());
                        match got {
                            Some(got) => {
                                fails.extend(compare(&format!("grad {name}"), &got, want, dtype))
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
        other => Some(format!("unknown dtype {other}")),
    }));
    let failure = match res {
        Ok(f) => f,
        Err(p) => Some(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    };
    Outcome {
        id: case.id.clone(),
        dtype: dtype.to_string(),
        failure,
        unchecked: unchecked_inputs(case),
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
}
