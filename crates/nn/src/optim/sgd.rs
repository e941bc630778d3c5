//! Stochastic gradient descent, as `torch.optim.SGD`.

use super::{check_range, Optimizer, Slots};
use crate::params::{ParamGrads, ParamStore};
use lossgraph_autodiff::Result;
use lossgraph_tensor::Float;

/// Options of [`Sgd`]; the defaults are PyTorch's (with `lr = 1e-3`, as
/// PyTorch's own default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdOptions {
    /// Learning rate (≥ 0).
    pub lr: f64,
    /// Momentum factor μ (≥ 0; 0 turns momentum off).
    pub momentum: f64,
    /// Dampening τ of the momentum (≥ 0).
    pub dampening: f64,
    /// L2 penalty λ added to the gradient (≥ 0).
    pub weight_decay: f64,
    /// Nesterov momentum (needs μ > 0 and τ = 0).
    pub nesterov: bool,
}

impl Default for SgdOptions {
    fn default() -> Self {
        SgdOptions {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

/// SGD with optional momentum, Nesterov momentum and weight decay; per step,
/// for each parameter `p` with gradient `g`:
///
/// ```text
/// g ← g + λ·p                         (weight decay)
/// b ← g               on the first step,
/// b ← μ·b + (1 − τ)·g  after          (momentum μ > 0)
/// g ← g + μ·b  (Nesterov)   or   g ← b
/// p ← p − lr·g
/// ```
///
/// ```
/// use lossgraph_nn::{Optimizer, ParamStore, Sgd, SgdOptions};
/// use lossgraph_tensor::Tensor;
/// let mut params = ParamStore::<f64>::new();
/// params.add("w", Tensor::from_vec(vec![1.0, -2.0], [2])?)?;
/// let mut opt = Sgd::new(SgdOptions { lr: 0.1, ..Default::default() })?;
/// let (_, grads) = params.value_and_grad(|b| b.vars()[0].square()?.sum_all())?;
/// opt.step(&mut params, &grads)?; // p − 0.1·2p
/// assert_eq!(params.get("w").unwrap().to_vec(), vec![0.8, -1.6]);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Sgd<T: Float> {
    opts: SgdOptions,
    buffers: Slots<Vec<T>>,
}

impl<T: Float> Sgd<T> {
    /// A validated SGD.
    ///
    /// # Errors
    /// `InvalidOption` for a negative or non-finite `lr`, `momentum`,
    /// `dampening` or `weight_decay`, and for `nesterov` without momentum or
    /// with dampening.
    pub fn new(opts: SgdOptions) -> Result<Self> {
        let op = "Sgd";
        check_range(op, "lr", opts.lr, 0.0, None)?;
        check_range(op, "momentum", opts.momentum, 0.0, None)?;
        check_range(op, "dampening", opts.dampening, 0.0, None)?;
        check_range(op, "weight_decay", opts.weight_decay, 0.0, None)?;
        if opts.nesterov && (opts.momentum <= 0.0 || opts.dampening != 0.0) {
            return Err(lossgraph_tensor::Error::option(
                op,
                "nesterov",
                "Nesterov momentum needs momentum > 0 and zero dampening",
            )
            .into());
        }
        Ok(Sgd {
            opts,
            buffers: Slots::default(),
        })
    }
    /// The options.
    pub fn options(&self) -> &SgdOptions {
        &self.opts
    }
}

impl<T: Float> Optimizer<T> for Sgd<T> {
    fn step(&mut self, params: &mut ParamStore<T>, grads: &ParamGrads<T>) -> Result<()> {
        self.buffers.prepare("Sgd::step", params, grads)?;
        let o = self.opts;
        let (lr, mu, wd) = (T::of(o.lr), T::of(o.momentum), T::of(o.weight_decay));
        let keep = T::one() - T::of(o.dampening);
        let decayed = |p: T, g: T| if o.weight_decay != 0.0 { g + wd * p } else { g };
        for i in 0..params.len() {
            let Some(g) = grads.slot(i) else { continue };
            let p = params.param_mut(i).make_mut();
            if o.momentum == 0.0 {
                for (p, &g) in p.iter_mut().zip(g.as_slice()) {
                    *p -= lr * decayed(*p, g);
                }
                continue;
            }
            let buf = self.buffers.get_mut(i);
            let first = buf.is_none();
            let b = buf.get_or_insert_with(|| vec![T::zero(); p.len()]);
            for ((p, &g), b) in p.iter_mut().zip(g.as_slice()).zip(b.iter_mut()) {
                let d = decayed(*p, g);
                *b = if first { d } else { mu * *b + keep * d };
                let step = if o.nesterov { d + mu * *b } else { *b };
                *p -= lr * step;
            }
        }
        Ok(())
    }
    fn lr(&self) -> f64 {
        self.opts.lr
    }
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_range("Sgd::set_lr", "lr", lr, 0.0, None)?;
        self.opts.lr = lr;
        Ok(())
    }
}
