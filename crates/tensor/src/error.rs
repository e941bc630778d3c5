//! The error type of the tensor crate.
//!
//! The first four kinds are the ones `LOSSES.md` and the conformance cases name;
//! every variant carries the op that raised it and enough detail (shapes,
//! offending values) to fix the call without a debugger.

use thiserror::Error;

/// The kind of an [`Error`], for callers (and the conformance runner) that match
/// on the category rather than the detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Shapes that do not fit together.
    ShapeMismatch,
    /// A class index outside `[0, C)` or a label outside an op's label set.
    InvalidTarget,
    /// An option (or axis, or argument) outside its range.
    InvalidOption,
    /// A value outside its domain, e.g. a probability outside `[0, 1]`.
    InvalidValue,
    /// A buffer too large to allocate (its size came from a shape).
    OutOfMemory,
    /// A parameter id, gradients or an optimizer's state used with a
    /// parameter store they do not belong to (`lossgraph-nn`).
    StoreMismatch,
    /// Anything else (autodiff misuse, I/O, failed checks).
    Other,
}

/// Errors raised by tensor constructors and kernels.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Error {
    /// Shapes that do not fit together; `shapes` lists the shapes involved.
    #[error("{op}: shape mismatch {shapes:?}: {reason}")]
    ShapeMismatch {
        op: String,
        shapes: Vec<Vec<usize>>,
        reason: String,
    },
    /// A class index or label outside the op's set.
    #[error("{op}: invalid target: {reason}")]
    InvalidTarget { op: String, reason: String },
    /// An option, axis or argument outside its range.
    #[error("{op}: invalid option `{option}`: {reason}")]
    InvalidOption {
        op: String,
        option: String,
        reason: String,
    },
    /// A value outside the domain the op requires.
    #[error("{op}: invalid value: {reason}")]
    InvalidValue { op: String, reason: String },
    /// The allocator refused a buffer for a tensor of `shape`: its element
    /// count fits in `usize`, the memory (count × `elem_bytes`) does not exist.
    #[error("{op}: cannot allocate a tensor of shape {shape:?} ({} bytes)", .shape.iter().fold(*.elem_bytes as u128, |b, &d| b.saturating_mul(d as u128)))]
    OutOfMemory {
        op: String,
        shape: Vec<usize>,
        elem_bytes: usize,
    },
}

impl Error {
    /// The category of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ShapeMismatch { .. } => ErrorKind::ShapeMismatch,
            Error::InvalidTarget { .. } => ErrorKind::InvalidTarget,
            Error::InvalidOption { .. } => ErrorKind::InvalidOption,
            Error::InvalidValue { .. } => ErrorKind::InvalidValue,
            Error::OutOfMemory { .. } => ErrorKind::OutOfMemory,
        }
    }

    /// A [`Error::ShapeMismatch`] for `op` naming the shapes involved.
    pub fn shape(op: &str, shapes: &[&[usize]], reason: impl Into<String>) -> Self {
        Error::ShapeMismatch {
            op: op.to_string(),
            shapes: shapes.iter().map(|s| s.to_vec()).collect(),
            reason: reason.into(),
        }
    }

    /// A [`Error::InvalidOption`] for `op`.
    pub fn option(op: &str, option: &str, reason: impl Into<String>) -> Self {
        Error::InvalidOption {
            op: op.to_string(),
            option: option.to_string(),
            reason: reason.into(),
        }
    }

    /// A [`Error::InvalidTarget`] for `op`.
    pub fn target(op: &str, reason: impl Into<String>) -> Self {
        Error::InvalidTarget {
            op: op.to_string(),
            reason: reason.into(),
        }
    }

    /// A [`Error::InvalidValue`] for `op`.
    pub fn value(op: &str, reason: impl Into<String>) -> Self {
        Error::InvalidValue {
            op: op.to_string(),
            reason: reason.into(),
        }
    }
}

/// Result with the tensor crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
