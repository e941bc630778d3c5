//! Elementwise functions of one tensor.

use crate::float::Float;
use crate::tensor::Tensor;

macro_rules! unary {
    ($($(#[$doc:meta])* $name:ident => |$x:ident| $body:expr;)*) => {
        impl<T: Float> Tensor<T> {
            $(
                $(#[$doc])*
                pub fn $name(&self) -> Tensor<T> {
                    self.map(|$x: T| $body)
                }
            )*
        }
    };
}

unary! {
    /// `−x`.
    neg => |x| -x;
    /// `|x|`.
    abs => |x| x.abs();
    /// The sign: −1, 0 or +1 (0 at 0, NaN stays NaN).
    sign => |x| if x > T::zero() { T::one() } else if x < T::zero() { -T::one() } else { x * T::zero() };
    /// `eˣ`.
    exp => |x| x.exp();
    /// `eˣ − 1`, accurate near 0.
    expm1 => |x| x.exp_m1();
    /// Natural log.
    log => |x| x.ln();
    /// `log(1 + x)`, accurate near 0.
    log1p => |x| x.ln_1p();
    /// Square root.
    sqrt => |x| x.sqrt();
    /// Hyperbolic tangent.
    tanh => |x| x.tanh();
    /// Logistic sigmoid `1/(1+e^−x)`, computed without overflow for any sign of x.
    sigmoid => |x| sigmoid(x);
    /// `max(x, 0)`.
    relu => |x| if x > T::zero() { x } else { T::zero() };
    /// `x²`.
    square => |x| x * x;
    /// `1/x`.
    recip => |x| x.recip();
}

/// The logistic function, stable for large |x|: for x < 0 it uses `eˣ/(1+eˣ)`
/// so that `e^−x` never overflows.
#[inline]
pub fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

/// `log(1 + eˣ)` without overflow: `max(x, 0) + log1p(e^−|x|)`.
#[inline]
pub fn softplus<T: Float>(x: T) -> T {
    x.max(T::zero()) + (-x.abs()).exp().ln_1p()
}

impl<T: Float> Tensor<T> {
    /// `xⁿ` for an integer power.
    pub fn powi(&self, n: i32) -> Tensor<T> {
        self.map(move |x| x.powi(n))
    }
    /// `xᵖ` for a real power.
    pub fn powf(&self, p: T) -> Tensor<T> {
        self.map(move |x| x.powf(p))
    }
    /// `x + s`.
    pub fn add_scalar(&self, s: T) -> Tensor<T> {
        self.map(move |x| x + s)
    }
    /// `x · s`.
    pub fn mul_scalar(&self, s: T) -> Tensor<T> {
        self.map(move |x| x * s)
    }
    /// Clamp into `[lo, hi]` (either bound may be ±∞).
    pub fn clamp(&self, lo: T, hi: T) -> Tensor<T> {
        self.map(move |x| {
            if x < lo {
                lo
            } else if x > hi {
                hi
            } else {
                x
            }
        })
    }
    /// Elementwise `log(1 + eˣ)`, stable for any magnitude.
    pub fn softplus(&self) -> Tensor<T> {
        self.map(softplus)
    }
}
