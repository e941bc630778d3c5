//! Reductions and the softmax family. Rules broadcast the (keepdim) output
//! gradient back over the reduced axis.

use crate::error::Result;
use crate::tape::Var;
use lossgraph_tensor::{Float, Tensor};
use smallvec::smallvec;

impl<T: Float> Var<T> {
    fn reduction(
        &self,
        op: &str,
        axis: usize,
        y: Tensor<T>,
        dx: impl Fn(Tensor<T>) -> Result<Tensor<T>> + 'static,
    ) -> Result<Var<T>> {
        let keep = self.value().reduced_shape(axis, true);
        self.record(op, y, &[self], move |g, _| {
            Ok(smallvec![Some(dx(g.reshape(&keep)?)?)])
        })
    }

    /// Sum along `axis`; rule: broadcast `g` back over the axis.
    pub fn sum(&self, axis: usize, keepdim: bool) -> Result<Var<T>> {
        let x = self.value();
        let shape = x.shape().clone();
        self.reduction("sum", axis, x.sum(axis, keepdim)?, move |g| {
            Ok(g.broadcast_to(&shape)?)
        })
    }
    /// Mean along `axis`; rule: `g/n` broadcast back.
    pub fn mean(&self, axis: usize, keepdim: bool) -> Result<Var<T>> {
        let x = self.value();
        x.shape().check_axis("mean", axis)?;
        let shape = x.shape().clone();
        let inv_n = T::one() / T::of(x.dims()[axis] as f64);
        self.reduction("mean", axis, x.mean(axis, keepdim)?, move |g| {
            Ok(g.mul_scalar(inv_n).broadcast_to(&shape)?)
        })
    }
    /// Maximum along `axis`; the gradient goes to the first maximal element.
    pub fn max(&self, axis: usize, keepdim: bool) -> Result<Var<T>> {
        let x = self.value();
        let y = x.max(axis, keepdim)?;
        // the winners are found when backward asks (the value is shared,
        // not copied), so a forward without gradients does not pay for them
        self.reduction("max", axis, y, move |g| {
            let idx = x.argmax(axis, true)?;
            Ok(Tensor::scatter_add(x.shape(), axis, &idx, &g)?)
        })
    }
    /// Minimum along `axis`; the gradient goes to the first minimal element.
    pub fn min(&self, axis: usize, keepdim: bool) -> Result<Var<T>> {
        let x = self.value();
        let y = x.min(axis, keepdim)?;
        self.reduction("min", axis, y, move |g| {
            let idx = x.argmin(axis, true)?;
            Ok(Tensor::scatter_add(x.shape(), axis, &idx, &g)?)
        })
    }
    /// `log Σ eˣ` along `axis`; rule `g · softmax(x)` along the axis.
    pub fn logsumexp(&self, axis: usize, keepdim: bool) -> Result<Var<T>> {
        let x = self.value();
        let lse = x.logsumexp(axis, true)?;
        let y = lse.reshape(x.reduced_shape(axis, keepdim))?;
        self.reduction("logsumexp", axis, y, move |g| {
            Ok(x.sub(&lse)?.exp().mul(&g)?)
        })
    }
    /// Index of the first maximum along `axis` — an integer result, no gradient.
    ///
    /// # Errors
    /// `InvalidOption` when `axis` is out of range.
    pub fn argmax(&self, axis: usize, keepdim: bool) -> Result<Tensor<i64>> {
        Ok(self.value().argmax(axis, keepdim)?)
    }

    /// Sum of every element (a 0-d var); rule: `g` everywhere.
    pub fn sum_all(&self) -> Result<Var<T>> {
        let x = self.value();
        let shape = x.shape().clone();
        self.record("sum_all", x.sum_all(), &[self], move |g, _| {
            Ok(smallvec![Some(Tensor::full(shape.clone(), g.item()?)?)])
        })
    }
    /// Mean of every element (a 0-d var); rule: `g/n` everywhere.
    pub fn mean_all(&self) -> Result<Var<T>> {
        let x = self.value();
        let shape = x.shape().clone();
        let n = T::of(x.numel() as f64);
        self.record("mean_all", x.mean_all(), &[self], move |g, _| {
            Ok(smallvec![Some(Tensor::full(shape.clone(), g.item()? / n)?)])
        })
    }

    /// Softmax along the last axis; rule `y ⊙ (g − Σ g⊙y)`.
    pub fn softmax(&self) -> Result<Var<T>> {
        let y = self.value().softmax();
        let yc = y.clone();
        self.record("softmax", y, &[self], move |g, _| {
            Ok(smallvec![Some(yc.softmax_backward(g)?)])
        })
    }
    /// Log-softmax along the last axis; rule `g − softmax(x) ⊙ Σ g`.
    pub fn log_softmax(&self) -> Result<Var<T>> {
        let y = self.value().log_softmax();
        let yc = y.clone();
        self.record("log_softmax", y, &[self], move |g, _| {
            Ok(smallvec![Some(yc.log_softmax_backward(g)?)])
        })
    }
}
