//! # lossgraph-losses
//!
//! The loss catalog of `LOSSES.md`. Every loss is a fused op — a numerically
//! stable forward (log-sum-exp, log1p, softplus forms) and a hand-derived
//! backward — recorded on the tape through the public
//! [`CustomOp`](lossgraph_autodiff::CustomOp) API, the same one users have.
//! Each has a naive twin in [`naive`], composed from primitive ops, so the two
//! can be checked against each other and benchmarked.
//!
//! Families: [`regression`], [`classification`], [`probabilistic`],
//! [`ranking`] (contrastive, ranking and preference), [`reductions`] and
//! [`projection`] (`linear_cross_entropy`). [`registry`] calls any op by name.

pub mod catalog;
mod checks;
pub mod classification;
pub mod common;
pub mod conformance;
pub mod probabilistic;
pub mod projection;
pub mod ranking;
pub mod reductions;
pub mod registry;
pub mod regression;
#[doc(hidden)]
pub mod testing;

pub use classification::*;
pub use common::Reduction;
pub use probabilistic::*;
pub use projection::*;
pub use ranking::*;
pub use reductions::*;
pub use regression::*;

/// The naive twins, under the same names as the fused ops.
pub mod naive {
    pub use crate::classification::naive::*;
    pub use crate::probabilistic::naive::*;
    pub use crate::projection::naive::*;
    pub use crate::ranking::naive::*;
    pub use crate::reductions::naive::*;
    pub use crate::regression::naive::*;
}
