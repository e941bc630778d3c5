//! The error type of the autodiff crate (and of everything built on it).

use lossgraph_tensor::ErrorKind;
use thiserror::Error;

/// Summary of one tensor for anomaly reports: shape and value range.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSummary {
    /// The tensor's dims.
    pub shape: Vec<usize>,
    /// Smallest finite value (None when no value is finite).
    pub min: Option<f64>,
    /// Largest finite value (None when no value is finite).
    pub max: Option<f64>,
    /// How many values are NaN or ±∞.
    pub non_finite: usize,
}

impl std::fmt::Display for TensorSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4e}"));
        write!(
            f,
            "{:?} range [{}, {}], {} non-finite",
            self.shape,
            r(self.min),
            r(self.max),
            self.non_finite
        )
    }
}

/// Where an anomaly was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// In an op's output during the forward pass.
    Forward,
    /// In a gradient an op's backward rule returned.
    Backward,
}

/// Errors from building or differentiating a graph.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// An error from a tensor kernel or a loss's input check (shape, target,
    /// option or value); see [`Error::kind`].
    #[error(transparent)]
    Tensor(#[from] lossgraph_tensor::Error),
    /// A tracked input reached an op with no backward rule.
    #[error("op `{op}` has no backward rule but one of its inputs requires a gradient")]
    NoBackward { op: String },
    /// A backward rule returned no gradient for an input that requires one.
    #[error("op `{op}` returned no gradient for its input {input}, which requires one")]
    MissingGradient { op: String, input: usize },
    /// A backward rule returned the wrong number or shape of gradients.
    #[error("op `{op}` returned a bad gradient: {reason}")]
    BadGradient { op: String, reason: String },
    /// Vars from different tapes were combined.
    #[error("op `{op}`: its inputs live on different tapes")]
    TapeMismatch { op: String },
    /// A parameter id, a set of gradients or an optimizer's state was used
    /// with a parameter store it does not belong to (`lossgraph-nn`).
    #[error("{op}: {reason}")]
    StoreMismatch { op: String, reason: String },
    /// `backward()` without an explicit output gradient needs a one-element output.
    #[error("backward() needs a one-element output, got shape {shape:?}; use backward_with")]
    NotScalar { shape: Vec<usize> },
    /// Anomaly mode found an op that made a NaN or ±∞ from finite values:
    /// in its output (forward), or in a gradient its backward rule returned
    /// from a finite upstream gradient (backward; `output` is then that
    /// gradient, `inputs` the op's forward inputs).
    #[error("{}", anomaly_message(op, *phase, output, inputs))]
    Anomaly {
        op: String,
        phase: Phase,
        output: TensorSummary,
        inputs: Vec<TensorSummary>,
    },
    /// Anomaly mode found a NaN or ±∞ arriving at an op from something no
    /// check had seen: a leaf or a constant (data), an op recorded while the
    /// mode was off, or the output gradient given to `backward_with`.
    #[error(
        "anomaly: op `{op}` received a non-finite value in its input {input}, from {from}: {value}"
    )]
    NonFiniteInput {
        op: String,
        input: usize,
        from: String,
        /// Boxed: the summary would make every `Result` of the crate larger.
        value: Box<TensorSummary>,
    },
    /// A gradient check found analytic and numeric gradients that disagree.
    #[error("gradcheck failed: {0}")]
    GradcheckFailed(String),
    /// An I/O or format error from a loader (checkpoints, data files).
    #[error("{0}")]
    Io(String),
}

fn anomaly_message(
    op: &str,
    phase: Phase,
    output: &TensorSummary,
    inputs: &[TensorSummary],
) -> String {
    let inputs = inputs
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    match phase {
        Phase::Forward => format!(
            "anomaly: op `{op}` produced a non-finite value in Forward from finite inputs; \
             output {output}; inputs: {inputs}"
        ),
        Phase::Backward => format!(
            "anomaly: op `{op}`'s backward rule produced a non-finite gradient in Backward \
             from a finite upstream gradient; gradient {output}; the op's forward inputs: {inputs}"
        ),
    }
}

impl Error {
    /// The category of this error: the four kinds of `LOSSES.md` for input
    /// errors, `Other` for everything else.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Tensor(e) => e.kind(),
            Error::StoreMismatch { .. } => ErrorKind::StoreMismatch,
            _ => ErrorKind::Other,
        }
    }
}

/// Result with the autodiff crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
