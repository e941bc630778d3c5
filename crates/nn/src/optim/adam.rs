//! Adam and AdamW, as `torch.optim.Adam` and `torch.optim.AdamW`.

use super::{check_range, Optimizer, Slots};
use crate::params::{ParamGrads, ParamStore};
use lossgraph_autodiff::Result;
use lossgraph_tensor::Float;

/// Options of [`Adam`]; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamOptions {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates (β₁, β₂) of the moment estimates, each in [0, 1)
    /// (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// L2 penalty λ added to the gradient (default 0).
    pub weight_decay: f64,
}

impl Default for AdamOptions {
    fn default() -> Self {
        AdamOptions {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// Options of [`AdamW`]; the defaults are PyTorch's (as Adam's, but
/// `weight_decay = 0.01`, decoupled).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWOptions {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates (β₁, β₂), each in [0, 1) (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay λ: `p ← p·(1 − lr·λ)` (default 0.01).
    pub weight_decay: f64,
}

impl Default for AdamWOptions {
    fn default() -> Self {
        AdamWOptions {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// First and second moment estimates of one parameter, and its step count.
#[derive(Debug, Clone)]
struct Moments<T> {
    step: i32,
    m: Vec<T>,
    v: Vec<T>,
}

/// The shared Adam core; `decoupled` picks AdamW's weight decay.
#[derive(Debug, Clone)]
struct AdamCore<T: Float> {
    opts: AdamOptions,
    decoupled: bool,
    state: Slots<Moments<T>>,
}

impl<T: Float> AdamCore<T> {
    fn new(op: &str, opts: AdamOptions, decoupled: bool) -> Result<Self> {
        check_range(op, "lr", opts.lr, 0.0, None)?;
        check_range(op, "betas.0", opts.betas.0, 0.0, Some(1.0))?;
        check_range(op, "betas.1", opts.betas.1, 0.0, Some(1.0))?;
        check_range(op, "eps", opts.eps, 0.0, None)?;
        check_range(op, "weight_decay", opts.weight_decay, 0.0, None)?;
        Ok(AdamCore {
            opts,
            decoupled,
            state: Slots::default(),
        })
    }

    fn step(&mut self, op: &str, params: &mut ParamStore<T>, grads: &ParamGrads<T>) -> Result<()> {
        self.state.prepare(op, params, grads)?;
        let o = self.opts;
        let (b1, b2) = o.betas;
        let (wd, eps) = (T::of(o.weight_decay), T::of(o.eps));
        let decay = T::one() - T::of(o.lr * o.weight_decay);
        for i in 0..params.len() {
            let Some(g) = grads.slot(i) else { continue };
            let p = params.param_mut(i).make_mut();
            let s = self.state.get_mut(i).get_or_insert_with(|| Moments {
                step: 0,
                m: vec![T::zero(); p.len()],
                v: vec![T::zero(); p.len()],
            });
            s.step = s.step.saturating_add(1);
            let step_size = T::of(o.lr / (1.0 - b1.powi(s.step)));
            let bc2_sqrt = T::of((1.0 - b2.powi(s.step)).sqrt());
            let (tb1, tb2) = (T::of(1.0 - b1), T::of(1.0 - b2));
            let b2 = T::of(b2);
            let it = p
                .iter_mut()
                .zip(g.as_slice())
                .zip(s.m.iter_mut().zip(s.v.iter_mut()));
            for ((p, &g), (m, v)) in it {
                let mut g = g;
                if o.weight_decay != 0.0 {
                    if self.decoupled {
                        *p *= decay;
                    } else {
                        g += wd * *p;
                    }
                }
                *m += tb1 * (g - *m);
                *v = b2 * *v + tb2 * g * g;
                let denom = v.sqrt() / bc2_sqrt + eps;
                *p -= step_size * (*m / denom);
            }
        }
        Ok(())
    }

    fn set_lr(&mut self, op: &str, lr: f64) -> Result<()> {
        check_range(op, "lr", lr, 0.0, None)?;
        self.opts.lr = lr;
        Ok(())
    }
}

/// Adam with bias correction and optional L2 weight decay; per step `t`:
///
/// ```text
/// g ← g + λ·p                          (weight decay, added to the gradient)
/// m ← β₁·m + (1 − β₁)·g
/// v ← β₂·v + (1 − β₂)·g²
/// p ← p − lr/(1 − β₁ᵗ) · m / (√v/√(1 − β₂ᵗ) + ε)
/// ```
///
/// ```
/// use lossgraph_nn::{Adam, AdamOptions, Optimizer, ParamStore};
/// use lossgraph_tensor::Tensor;
/// let mut params = ParamStore::<f64>::new();
/// params.add("w", Tensor::from_vec(vec![1.0], [1])?)?;
/// let mut opt = Adam::new(AdamOptions { lr: 0.1, ..Default::default() })?;
/// let (_, grads) = params.value_and_grad(|b| b.vars()[0].square()?.sum_all())?;
/// opt.step(&mut params, &grads)?; // the first step moves by ≈ lr
/// assert!((params.get("w").unwrap().to_vec()[0] - 0.9).abs() < 1e-7);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Adam<T: Float>(AdamCore<T>);

impl<T: Float> Adam<T> {
    /// A validated Adam.
    ///
    /// # Errors
    /// `InvalidOption` for a negative or non-finite `lr`, `eps` or
    /// `weight_decay`, or a beta outside [0, 1).
    pub fn new(opts: AdamOptions) -> Result<Self> {
        Ok(Adam(AdamCore::new("Adam", opts, false)?))
    }
    /// The options.
    pub fn options(&self) -> &AdamOptions {
        &self.0.opts
    }
}

impl<T: Float> Optimizer<T> for Adam<T> {
    fn step(&mut self, params: &mut ParamStore<T>, grads: &ParamGrads<T>) -> Result<()> {
        self.0.step("Adam::step", params, grads)
    }
    fn lr(&self) -> f64 {
        self.0.opts.lr
    }
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.0.set_lr("Adam::set_lr", lr)
    }
}

/// AdamW: Adam with decoupled weight decay — the parameter shrinks by
/// `p ← p·(1 − lr·λ)` before the Adam update, and the gradient is left alone.
///
/// ```
/// use lossgraph_nn::{AdamW, AdamWOptions, Optimizer, ParamStore};
/// use lossgraph_tensor::Tensor;
/// let mut params = ParamStore::<f64>::new();
/// params.add("w", Tensor::from_vec(vec![1.0], [1])?)?;
/// let mut opt = AdamW::new(AdamWOptions { lr: 0.1, weight_decay: 0.5, ..Default::default() })?;
/// let (_, grads) = params.value_and_grad(|b| b.vars()[0].square()?.sum_all())?;
/// opt.step(&mut params, &grads)?; // 1·(1 − 0.05) − 0.1
/// assert!((params.get("w").unwrap().to_vec()[0] - 0.85).abs() < 1e-7);
/// # Ok::<(), lossgraph_autodiff::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct AdamW<T: Float>(AdamCore<T>);

impl<T: Float> AdamW<T> {
    /// A validated AdamW.
    ///
    /// # Errors
    /// As [`Adam::new`].
    pub fn new(opts: AdamWOptions) -> Result<Self> {
        let AdamWOptions {
            lr,
            betas,
            eps,
            weight_decay,
        } = opts;
        let core = AdamOptions {
            lr,
            betas,
            eps,
            weight_decay,
        };
        Ok(AdamW(AdamCore::new("AdamW", core, true)?))
    }
    /// The options.
    pub fn options(&self) -> AdamWOptions {
        let AdamOptions {
            lr,
            betas,
            eps,
            weight_decay,
        } = self.0.opts;
        AdamWOptions {
            lr,
            betas,
            eps,
            weight_decay,
        }
    }
}

impl<T: Float> Optimizer<T> for AdamW<T> {
    fn step(&mut self, params: &mut ParamStore<T>, grads: &ParamGrads<T>) -> Result<()> {
        self.0.step("AdamW::step", params, grads)
    }
    fn lr(&self) -> f64 {
        self.0.opts.lr
    }
    fn set_lr(&mut self, lr: f64) -> Result<()> {
        self.0.set_lr("AdamW::set_lr", lr)
    }
}
