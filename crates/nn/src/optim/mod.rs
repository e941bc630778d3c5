//! Optimizers with PyTorch's update rules: [`Sgd`] (momentum, Nesterov,
//! weight decay), [`Adam`] and [`AdamW`].
//!
//! An optimizer keeps its state (momentum buffers, moment estimates) per
//! parameter position of the one [`ParamStore`] it steps; stepping another
//! store is an error. Each step first checks that the gradients fit the store
//! (same store, one slot per parameter, same shapes), so a bad call changes
//! nothing. A parameter whose gradient is `None` is skipped, state and all.
//!
//! Updates happen in place: a parameter whose storage nothing else shares is
//! not copied (see [`ParamStore::value_and_grad`]).

mod adam;
mod sgd;

pub use adam::{Adam, AdamOptions, AdamW, AdamWOptions};
pub use sgd::{Sgd, SgdOptions};

use crate::params::{ParamGrads, ParamStore};
use lossgraph_autodiff::Result;
use lossgraph_tensor::Float;

/// One update rule over a [`ParamStore`].
pub trait Optimizer<T: Float> {
    /// Apply one update from `grads` to `params` in place.
    ///
    /// # Errors
    /// `StoreMismatch` when `grads` (or this optimizer's state) belongs to
    /// another store; `InvalidOption` when `grads` covers fewer parameters;
    /// `ShapeMismatch` when a gradient's shape differs from its parameter's.
    /// No parameter changes on error.
    fn step(&mut self, params: &mut ParamStore<T>, grads: &ParamGrads<T>) -> Result<()>;
    /// The current learning rate.
    fn lr(&self) -> f64;
    /// Set the learning rate (e.g. from a [`CosineSchedule`](crate::CosineSchedule)).
    ///
    /// # Errors
    /// `InvalidOption` for a negative or non-finite rate.
    fn set_lr(&mut self, lr: f64) -> Result<()>;
}

/// `InvalidOption` for optimizer `op` unless `lo <= v` (and `v < hi` when
/// given) and `v` is finite.
pub(crate) fn check_range(op: &str, name: &str, v: f64, lo: f64, hi: Option<f64>) -> Result<()> {
    let ok = v.is_finite() && v >= lo && hi.is_none_or(|h| v < h);
    if ok {
        return Ok(());
    }
    let want = match hi {
        Some(h) => format!("in [{lo}, {h})"),
        None => format!(">= {lo}"),
    };
    Err(
        lossgraph_tensor::Error::option(op, name, format!("must be finite and {want}, got {v}"))
            .into(),
    )
}

/// Per-parameter state slots bound to one store: created on the first step,
/// grown when the store grows, refused for another store.
#[derive(Debug, Clone)]
pub(crate) struct Slots<S> {
    store: Option<u64>,
    slots: Vec<Option<S>>,
}

impl<S> Default for Slots<S> {
    fn default() -> Self {
        Slots {
            store: None,
            slots: Vec::new(),
        }
    }
}

impl<S> Slots<S> {
    /// Check `grads` fit `params` and these slots, then size the slots.
    pub(crate) fn prepare<T: Float>(
        &mut self,
        op: &str,
        params: &ParamStore<T>,
        grads: &ParamGrads<T>,
    ) -> Result<()> {
        grads.check_fits(op, params)?;
        match self.store {
            Some(tag) if tag != params.tag() => {
                return Err(crate::params::store_err(
                    op,
                    "this optimizer already steps another parameter store \
                     (its moments belong to that store's parameters)",
                ))
            }
            _ => self.store = Some(params.tag()),
        }
        if self.slots.len() < params.len() {
            self.slots.resize_with(params.len(), || None);
        }
        Ok(())
    }
    pub(crate) fn get_mut(&mut self, i: usize) -> &mut Option<S> {
        &mut self.slots[i]
    }
}
