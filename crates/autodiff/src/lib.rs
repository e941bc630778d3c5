//! # lossgraph-autodiff
//!
//! Reverse-mode automatic differentiation on a tape.
//!
//! - [`Tape`]: an append-only arena of nodes; [`Var`]: a cheap handle to one.
//! - Primitive ops on `Var` (elementwise, broadcasting, reductions, softmax,
//!   matmul, layout, indexing), each with its backward rule beside it in
//!   [`ops`](crate#primitive-ops).
//! - [`CustomOp`]: the public API for a fused op with its own backward; the
//!   loss catalog is written with it.
//! - [`gradcheck`]: finite-difference checks in f64 for any function of vars.
//! - [`check`]: check mode, which names the common loss mistakes that
//!   produce no NaN (typed [`Warning`]s collected on the tape).
//!
//! ```
//! use lossgraph_autodiff::Tape;
//! use lossgraph_tensor::Tensor;
//! let tape = Tape::<f64>::new();
//! let w = tape.leaf(Tensor::from_vec(vec![0.5, -1.0], [2, 1])?);
//! let x = tape.constant(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], [2, 2])?);
//! let loss = x.matmul(&w)?.square()?.mean_all()?;
//! let grads = loss.backward()?;
//! assert_eq!(grads.get(&w).unwrap().dims(), &[2, 1]);
//! # Ok::<(), lossgraph_autodiff::Error>(())
//! ```
//!
//! ## Primitive ops
//! The rules live in `src/ops/`: `unary.rs`, `binary.rs`, `reduce.rs`,
//! `layout.rs`, `linalg.rs`, `index.rs` — each op's forward and backward side
//! by side.

pub mod check;
mod custom;
mod error;
pub mod gradcheck;
mod ops;
mod tape;

pub use check::Warning;
pub use custom::{BackwardCtx, CustomOp};
pub use error::{Error, Phase, Result, TensorSummary};
pub use gradcheck::{
    gradcheck, GradcheckMode, GradcheckOptions, GradcheckReport, Mismatch, F32_MIN_EPS,
};
pub use tape::{Gradients, Grads, Tape, Var};

pub use lossgraph_tensor as tensor;
pub use lossgraph_tensor::{ErrorKind, Float, IndexTensor, Shape, Tensor};
