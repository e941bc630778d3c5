//! # lossgraph
//!
//! An autodiff tensor engine in which every loss function is a graph op.
//! This facade re-exports the workspace crates; most programs need only the
//! [`prelude`].

pub use lossgraph_autodiff as autodiff;
pub use lossgraph_losses as losses;
pub use lossgraph_nn as nn;
pub use lossgraph_tensor as tensor;

pub mod bench_cases;
pub mod bench_primitives;
pub mod cli;
pub mod doors;

/// The types most programs use.
pub mod prelude {
    pub use lossgraph_autodiff::{
        gradcheck, CustomOp, Error, GradcheckOptions, Gradients, Result, Tape, Var, Warning,
    };
    pub use lossgraph_tensor::{Float, IndexTensor, Shape, Tensor};
}

/// The README, included so that its snippets are compiled and run as doctests.
#[doc = include_str!("../README.md")]
pub mod readme {}

/// The guide: one page per loss family, numerical stability, writing your
/// own fused op, check mode, and the classic exercises answered in code. The pages live in `docs/`; they are included here so
/// that every Rust snippet in them is compiled and run as a doctest.
pub mod guide {
    #[doc = include_str!("../docs/regression.md")]
    pub mod regression {}
    #[doc = include_str!("../docs/classification.md")]
    pub mod classification {}
    #[doc = include_str!("../docs/probabilistic.md")]
    pub mod probabilistic {}
    #[doc = include_str!("../docs/contrastive-and-ranking.md")]
    pub mod contrastive_and_ranking {}
    #[doc = include_str!("../docs/preference.md")]
    pub mod preference {}
    #[doc = include_str!("../docs/reductions-and-masking.md")]
    pub mod reductions_and_masking {}
    #[doc = include_str!("../docs/objectives-and-scale.md")]
    pub mod objectives_and_scale {}
    #[doc = include_str!("../docs/numerical-stability.md")]
    pub mod numerical_stability {}
    #[doc = include_str!("../docs/custom-ops.md")]
    pub mod custom_ops {}
    #[doc = include_str!("../docs/checks.md")]
    pub mod checks {}
    #[doc = include_str!("../docs/exercises.md")]
    pub mod exercises {}
}
