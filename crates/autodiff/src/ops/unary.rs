//! Elementwise ops of one input. Rule: `dx = g · f'(x)`, written with the
//! output `y` where that is cheaper (exp, sigmoid, tanh, sqrt).

use super::zip;
use crate::error::Result;
use crate::tape::Var;
use lossgraph_tensor::{Float, Tensor};
use smallvec::smallvec;

impl<T: Float> Var<T> {
    fn unary(
        &self,
        op: &str,
        y: Tensor<T>,
        dx: impl Fn(&Tensor<T>) -> Result<Tensor<T>> + 'static,
    ) -> Result<Var<T>> {
        self.record(op, y, &[self], move |g, _| Ok(smallvec![Some(dx(g)?)]))
    }

    /// `−x`; rule `−g`.
    pub fn neg(&self) -> Result<Var<T>> {
        self.unary("neg", self.value().neg(), |g| Ok(g.neg()))
    }
    /// `|x|`; rule `g·sign(x)` (0 at 0, as PyTorch).
    pub fn abs(&self) -> Result<Var<T>> {
        let x = self.value();
        self.unary("abs", x.abs(), move |g| zip(g, &x, |g, x| g * sign(x)))
    }
    /// `sign(x)`; its gradient is 0 everywhere it exists.
    pub fn sign(&self) -> Result<Var<T>> {
        self.unary("sign", self.value().sign(), |g| {
            Ok(Tensor::zeros(g.shape())?)
        })
    }
    /// `eˣ`; rule `g·y`.
    pub fn exp(&self) -> Result<Var<T>> {
        let y = self.value().exp();
        let yc = y.clone();
        self.unary("exp", y, move |g| Ok(g.mul(&yc)?))
    }
    /// `eˣ − 1`; rule `g·(y + 1)`.
    pub fn expm1(&self) -> Result<Var<T>> {
        let y = self.value().expm1();
        let yc = y.clone();
        self.unary("expm1", y, move |g| zip(g, &yc, |g, y| g * (y + T::one())))
    }
    /// `ln x`; rule `g/x`.
    pub fn log(&self) -> Result<Var<T>> {
        let x = self.value();
        self.unary("log", x.log(), move |g| Ok(g.div(&x)?))
    }
    /// `ln(1 + x)`; rule `g/(1 + x)`.
    pub fn log1p(&self) -> Result<Var<T>> {
        let x = self.value();
        self.unary("log1p", x.log1p(), move |g| {
            zip(g, &x, |g, x| g / (T::one() + x))
        })
    }
    /// `√x`; rule `g/(2y)`.
    pub fn sqrt(&self) -> Result<Var<T>> {
        let y = self.value().sqrt();
        let yc = y.clone();
        self.unary("sqrt", y, move |g| zip(g, &yc, |g, y| g / (y + y)))
    }
    /// `tanh x`; rule `g·(1 − y²)`.
    pub fn tanh(&self) -> Result<Var<T>> {
        let y = self.value().tanh();
        let yc = y.clone();
        self.unary("tanh", y, move |g| {
            zip(g, &yc, |g, y| g * (T::one() - y * y))
        })
    }
    /// `σ(x) = 1/(1 + e^−x)`; rule `g·y·(1 − y)`.
    pub fn sigmoid(&self) -> Result<Var<T>> {
        let y = self.value().sigmoid();
        let yc = y.clone();
        self.unary("sigmoid", y, move |g| {
            zip(g, &yc, |g, y| g * y * (T::one() - y))
        })
    }
    /// `max(x, 0)`; rule `g·[x > 0]`.
    pub fn relu(&self) -> Result<Var<T>> {
        let x = self.value();
        self.unary("relu", x.relu(), move |g| {
            zip(g, &x, |g, x| if x > T::zero() { g } else { T::zero() })
        })
    }
    /// `x²`; rule `2x·g`.
    pub fn square(&self) -> Result<Var<T>> {
        let x = self.value();
        self.unary("square", x.square(), move |g| {
            zip(g, &x, |g, x| (x + x) * g)
        })
    }
    /// `xⁿ`; rule `g·n·xⁿ⁻¹`.
    pub fn powi(&self, n: i32) -> Result<Var<T>> {
        let x = self.value();
        let nf = T::of(n as f64);
        self.unary("powi", x.powi(n), move |g| {
            zip(g, &x, |g, x| {
                if n == 0 {
                    T::zero()
                } else {
                    g * nf * x.powi(n - 1)
                }
            })
        })
    }
    /// `xᵖ`; rule `g·p·xᵖ⁻¹`.
    pub fn powf(&self, p: T) -> Result<Var<T>> {
        let x = self.value();
        self.unary("powf", x.powf(p), move |g| {
            zip(g, &x, |g, x| {
                if p == T::zero() {
                    T::zero()
                } else {
                    g * p * x.powf(p - T::one())
                }
            })
        })
    }
    /// `x + s` for a constant `s`; rule `g`.
    pub fn add_scalar(&self, s: T) -> Result<Var<T>> {
        self.unary("add_scalar", self.value().add_scalar(s), |g| Ok(g.clone()))
    }
    /// `x · s` for a constant `s`; rule `g·s`.
    pub fn mul_scalar(&self, s: T) -> Result<Var<T>> {
        self.unary("mul_scalar", self.value().mul_scalar(s), move |g| {
            Ok(g.mul_scalar(s))
        })
    }
    /// Clamp into `[lo, hi]`; rule `g` strictly inside `(lo, hi)`, 0 at the
    /// bounds and outside (PyTorch 2.15's convention for scalar bounds: its
    /// `clamp`, `clamp_min` and `clamp_max` pass nothing at a bound).
    pub fn clamp(&self, lo: T, hi: T) -> Result<Var<T>> {
        let x = self.value();
        self.unary("clamp", x.clamp(lo, hi), move |g| {
            zip(g, &x, |g, x| if x > lo && x < hi { g } else { T::zero() })
        })
    }
}

#[inline]
fn sign<T: Float>(x: T) -> T {
    if x > T::zero() {
        T::one()
    } else if x < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}
