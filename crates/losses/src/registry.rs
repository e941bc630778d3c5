//! Every op of the catalog by name, with options and inputs given as data.
//!
//! This is how the conformance runner, the `lossgraph` command (gradcheck,
//! bench, plot) and property tests call any loss without knowing its Rust
//! signature: `build(tape, &call, Flavor::Fused)` records the op (or its naive
//! twin) on `tape` and returns its output and its real inputs as leaves.

use crate::common::Reduction;
use lossgraph_autodiff::{Result, Tape, Var};
use lossgraph_tensor::{Error, Float, Tensor};
use std::collections::BTreeMap;

/// An option value as the case files write it.
#[derive(Debug, Clone, PartialEq)]
pub enum OptValue {
    /// A number (integers included).
    Num(f64),
    /// A boolean.
    Bool(bool),
    /// A string (`reduction`, `variant`).
    Str(String),
    /// A list of numbers (`taus`).
    List(Vec<f64>),
    /// A tensor (class weights and the like), stored in f64 and cast.
    Tensor(Tensor<f64>),
}

/// An input as the case files write it.
#[derive(Debug, Clone, PartialEq)]
pub enum InputValue {
    /// A real tensor (differentiable), stored in f64 and cast to the run's dtype.
    Real(Tensor<f64>),
    /// An integer tensor (class ids; never differentiable).
    Int(Tensor<i64>),
}

/// Which implementation to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The fused op with its hand-written backward.
    Fused,
    /// The naive twin composed from primitive ops.
    Naive,
}

/// One call of one op: its name, options and named inputs.
#[derive(Debug, Clone, Default)]
pub struct Call {
    /// The op name of `LOSSES.md`.
    pub op: String,
    /// Options by name; an absent option takes its default.
    pub options: BTreeMap<String, OptValue>,
    /// Inputs by name.
    pub inputs: BTreeMap<String, InputValue>,
}

/// What [`build`] recorded.
pub struct Built<T: Float> {
    /// The op's output.
    pub output: Var<T>,
    /// The real inputs, as leaves that require a gradient, by name.
    pub leaves: BTreeMap<String, Var<T>>,
}

/// The names of `call`'s real (differentiable) inputs, sorted.
pub fn real_inputs(call: &Call) -> Vec<String> {
    call.inputs
        .iter()
        .filter(|(_, v)| matches!(v, InputValue::Real(_)))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Record `call` on `tape` as the fused op or its naive twin.
///
/// # Errors
/// The op's own errors; `InvalidOption` for an unknown op, an option of the
/// wrong type or an unknown option; `ShapeMismatch` for a missing input.
pub fn build<T: Float>(tape: &Tape<T>, call: &Call, flavor: Flavor) -> Result<Built<T>> {
    build_from_vars(tape, call, flavor, BTreeMap::new())
}

/// As [`build`], but real inputs named in `vars` are taken from there (vars of
/// `tape`) instead of being made from `call.inputs` — how `gradcheck` feeds
/// its perturbed leaves to an op called by name.
///
/// # Errors
/// As [`build`].
pub fn build_from_vars<T: Float>(
    tape: &Tape<T>,
    call: &Call,
    flavor: Flavor,
    vars: BTreeMap<String, Var<T>>,
) -> Result<Built<T>> {
    let mut args = Args::new(tape, call);
    args.leaves = vars;
    let output = match crate::regression::build(&mut args, flavor)
        .or_else(|| crate::classification::build(&mut args, flavor))
        .or_else(|| crate::probabilistic::build(&mut args, flavor))
        .or_else(|| crate::ranking::build(&mut args, flavor))
        .or_else(|| crate::reductions::build(&mut args, flavor))
        .or_else(|| crate::projection::build(&mut args, flavor))
    {
        Some(out) => out?,
        None => {
            return Err(Error::option(&call.op, "op", format!("unknown op {:?}", call.op)).into())
        }
    };
    args.finish()?;
    Ok(Built {
        output,
        leaves: args.leaves,
    })
}

/// Typed access to a call's options and inputs, for the family builders.
/// Every option read is remembered so that an unknown option is an error.
pub struct Args<'a, T: Float> {
    /// The tape to record on.
    pub tape: &'a Tape<T>,
    /// The call.
    pub call: &'a Call,
    leaves: BTreeMap<String, Var<T>>,
    used: Vec<String>,
}

impl<'a, T: Float> Args<'a, T> {
    fn new(tape: &'a Tape<T>, call: &'a Call) -> Self {
        Args {
            tape,
            call,
            leaves: BTreeMap::new(),
            used: Vec::new(),
        }
    }
    /// The op name.
    pub fn op(&self) -> &str {
        &self.call.op
    }
    fn finish(&self) -> Result<()> {
        if let Some(k) = self.call.options.keys().find(|k| !self.used.contains(k)) {
            return Err(Error::option(&self.call.op, k, "unknown option for this op").into());
        }
        Ok(())
    }
    fn opt(&mut self, name: &str) -> Option<&'a OptValue> {
        self.used.push(name.to_string());
        self.call.options.get(name)
    }
    fn wrong(&self, name: &str, want: &str) -> lossgraph_autodiff::Error {
        Error::option(&self.call.op, name, format!("expected {want}")).into()
    }
    /// A number option, or `default`.
    ///
    /// # Errors
    /// `InvalidOption` when present but not a number.
    pub fn num(&mut self, name: &str, default: f64) -> Result<f64> {
        match self.opt(name) {
            None => Ok(default),
            Some(OptValue::Num(v)) => Ok(*v),
            Some(_) => Err(self.wrong(name, "a number")),
        }
    }
    /// A number option that has no default, if present.
    ///
    /// # Errors
    /// `InvalidOption` when present but not a number.
    pub fn maybe_num(&mut self, name: &str) -> Result<Option<f64>> {
        match self.opt(name) {
            None => Ok(None),
            Some(OptValue::Num(v)) => Ok(Some(*v)),
            Some(_) => Err(self.wrong(name, "a number")),
        }
    }
    /// The `denominator` option (none by default): the whole batch's count
    /// for a `mean` computed over a part of it.
    ///
    /// # Errors
    /// `InvalidOption` when present but not a number.
    pub fn denominator(&mut self) -> Result<Option<f64>> {
        self.maybe_num("denominator")
    }
    /// An integer option, or `default`.
    ///
    /// # Errors
    /// `InvalidOption` when present but not an integer.
    pub fn int(&mut self, name: &str, default: i64) -> Result<i64> {
        match self.opt(name) {
            None => Ok(default),
            Some(OptValue::Num(v)) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(*v as i64),
            Some(_) => Err(self.wrong(name, "an integer")),
        }
    }
    /// A boolean option, or `default`.
    ///
    /// # Errors
    /// `InvalidOption` when present but not a boolean.
    pub fn flag(&mut self, name: &str, default: bool) -> Result<bool> {
        match self.opt(name) {
            None => Ok(default),
            Some(OptValue::Bool(v)) => Ok(*v),
            Some(_) => Err(self.wrong(name, "a boolean")),
        }
    }
    /// A string option, or `default`.
    ///
    /// # Errors
    /// `InvalidOption` when present but not a string.
    pub fn string(&mut self, name: &str, default: &str) -> Result<String> {
        match self.opt(name) {
            None => Ok(default.to_string()),
            Some(OptValue::Str(v)) => Ok(v.clone()),
            Some(_) => Err(self.wrong(name, "a string")),
        }
    }
    /// A list-of-numbers option, if present.
    ///
    /// # Errors
    /// `InvalidOption` when present but not a list.
    pub fn list(&mut self, name: &str) -> Result<Option<Vec<f64>>> {
        match self.opt(name) {
            None => Ok(None),
            Some(OptValue::List(v)) => Ok(Some(v.clone())),
            Some(_) => Err(self.wrong(name, "a list of numbers")),
        }
    }
    /// A tensor option cast to `T`, if present.
    ///
    /// # Errors
    /// `InvalidOption` when present but not a tensor.
    pub fn tensor(&mut self, name: &str) -> Result<Option<Tensor<T>>> {
        match self.opt(name) {
            None => Ok(None),
            Some(OptValue::Tensor(t)) => Ok(Some(t.cast())),
            Some(_) => Err(self.wrong(name, "a tensor")),
        }
    }
    /// The `reduction` option (default `mean`).
    ///
    /// # Errors
    /// `InvalidOption` for an unknown reduction.
    pub fn reduction(&mut self) -> Result<Reduction> {
        let s = self.string("reduction", "mean")?;
        Reduction::parse(&self.call.op.clone(), &s)
    }
    /// A real input as a leaf that requires a gradient (made once per name).
    ///
    /// # Errors
    /// `ShapeMismatch` when missing; `InvalidValue` when it is an integer tensor.
    pub fn real(&mut self, name: &str) -> Result<Var<T>> {
        if let Some(v) = self.leaves.get(name) {
            return Ok(v.clone());
        }
        match self.call.inputs.get(name) {
            Some(InputValue::Real(t)) => {
                let v = self.tape.leaf(t.cast());
                self.leaves.insert(name.to_string(), v.clone());
                Ok(v)
            }
            Some(InputValue::Int(_)) => Err(Error::value(
                &self.call.op,
                format!("input `{name}` must be real, not i64"),
            )
            .into()),
            None => Err(Error::shape(&self.call.op, &[], format!("missing input `{name}`")).into()),
        }
    }
    /// Whether an input is present.
    pub fn has(&self, name: &str) -> bool {
        self.call.inputs.contains_key(name)
    }
    /// Whether an input is an integer tensor.
    pub fn is_int(&self, name: &str) -> bool {
        matches!(self.call.inputs.get(name), Some(InputValue::Int(_)))
    }
    /// An integer input (class ids).
    ///
    /// # Errors
    /// `ShapeMismatch` when missing; `InvalidTarget` when it is real.
    pub fn ids(&mut self, name: &str) -> Result<Tensor<i64>> {
        match self.call.inputs.get(name) {
            Some(InputValue::Int(t)) => Ok(t.clone()),
            Some(InputValue::Real(_)) => Err(Error::target(
                &self.call.op,
                format!("input `{name}` must be i64 class ids"),
            )
            .into()),
            None => Err(Error::shape(&self.call.op, &[], format!("missing input `{name}`")).into()),
        }
    }
}
