#![warn(missing_docs)]
//! # lossgraph-nn
//!
//! A small neural-network layer over the lossgraph tape:
//!
//! - [`ParamStore`]: named parameters that persist across steps; each step
//!   [`bind`](ParamStore::bind)s them to a fresh tape as leaves (no copy).
//! - Layers: [`Linear`], [`Mlp`], [`Sequential`] and the activations
//!   [`relu`], [`gelu`] (tanh approximation), [`tanh`], [`sigmoid`].
//! - [`Init`]: seeded Xavier/Glorot and Kaiming/He, uniform and normal.
//! - Optimizers with PyTorch's update rules: [`Sgd`] (momentum, Nesterov,
//!   weight decay), [`Adam`], [`AdamW`]; [`clip_grad_norm`]; a
//!   [`CosineSchedule`] with linear warm-up.
//! - Data: [`train_test_split`] and [`Batches`] (seeded), [`select_rows`].
//! - [`Objective`]: weighted multi-term losses with per-term gradient
//!   diagnostics and balancing (fixed, uncertainty weighting, GradNorm).
//! - Exact reductions over parts of a batch: [`GradAccumulator`],
//!   [`accumulate`] (micro-batches) and [`data_parallel`] (rayon shards),
//!   with the global denominator summed before the loss.
//! - [`checkpoint`]: save and load in the safetensors format, bit-exact and
//!   all or nothing.
//!
//! Errors are [`lossgraph_autodiff::Error`] throughout (checkpoint I/O and
//! format problems are its `Io` variant); nothing here panics on user input.
//!
//! A complete training loop — fit `y = 2x + 1` with one `Linear` and MSE:
//!
//! ```
//! use lossgraph_losses::{mse, MseOptions};
//! use lossgraph_nn::{Init, Linear, Module, Optimizer, ParamStore, Sgd, SgdOptions};
//! use lossgraph_tensor::Tensor;
//!
//! let x = Tensor::from_vec((0..16).map(|i| i as f32 / 16.0).collect(), [16, 1])?;
//! let y = x.mul_scalar(2.0).add_scalar(1.0);
//!
//! let mut params = ParamStore::<f32>::new();
//! let fc = Linear::new(&mut params, "fc", 1, 1, Init::xavier_uniform(), 0)?;
//! let mut opt = Sgd::new(SgdOptions { lr: 0.5, momentum: 0.9, ..Default::default() })?;
//!
//! let mut last = f32::INFINITY;
//! for _step in 0..200 {
//!     // a fresh tape per step; it is dropped before the update
//!     let (loss, grads) = params.value_and_grad(|p| {
//!         let pred = fc.forward(p, &p.tape().constant(x.clone()))?;
//!         mse(&pred, &p.tape().constant(y.clone()), &MseOptions::default())
//!     })?;
//!     opt.step(&mut params, &grads)?;
//!     last = loss;
//! }
//! assert!(last < 1e-4);
//! let w = params.value(fc.weight())?.item()?;
//! let b = params.value(fc.bias())?.item()?;
//! assert!((w - 2.0).abs() < 0.05 && (b - 1.0).abs() < 0.05);
//! # Ok::<(), lossgraph_autodiff::Error>(())
//! ```

mod accumulate;
pub mod checkpoint;
mod clip;
mod data;
mod init;
mod layers;
pub mod objective;
mod optim;
mod params;
mod schedule;

pub use accumulate::{accumulate, data_parallel, global_denominator, GradAccumulator};
pub use clip::clip_grad_norm;
pub use data::{select_rows, train_test_split, Batches};
pub use init::{fans, gain, FanMode, Init};
pub use layers::{gelu, relu, sigmoid, tanh, Activation, Linear, Mlp, Module, Sequential};
pub use objective::{GradNormOptions, Objective, Shared, Step, TermValue};
pub use optim::{Adam, AdamOptions, AdamW, AdamWOptions, Optimizer, Sgd, SgdOptions};
pub use params::{Bound, Param, ParamGrads, ParamId, ParamStore};
pub use schedule::CosineSchedule;
