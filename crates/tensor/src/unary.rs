//! Elementwise functions of one tensor.

use crate::float::Float;
use crate::tensor::Tensor;

/// The transcendental functions: in `f32` the branch-free polynomials of
/// [`crate::simd`] (exp and log within 2 ulp of the correctly rounded
/// value, expm1 and log1p within 2, tanh within 3, sigmoid and softplus
/// within 4: `tests/unary_accuracy.rs`), run through the SIMD dispatcher;
/// in `f64` the `std` functions (the f64 paths are the reference).
macro_rules! unary_vectorized {
    ($($(#[$doc:meta])* $name:ident => |$x:ident| $body:expr;)*) => {
        impl<T: Float> Tensor<T> {
            $(
                $(#[$doc])*
                pub fn $name(&self) -> Tensor<T> {
                    Tensor::from_parts(
                        crate::parallel::map_vectorized(
                            self.as_slice(),
                            #[inline(always)]
                            |$x: T| $body,
                        ),
                        self.shape().clone(),
                    )
                }
            )*
        }
    };
}

unary_vectorized! {
    /// `eˣ`.
    exp => |x| x.fast_exp();
    /// `eˣ − 1`, accurate near 0.
    expm1 => |x| x.fast_exp_m1();
    /// Natural log.
    log => |x| x.fast_ln();
    /// `log(1 + x)`, accurate near 0.
    log1p => |x| x.fast_ln_1p();
    /// Hyperbolic tangent.
    tanh => |x| x.fast_tanh();
    /// Logistic sigmoid `1/(1+e^−x)`, without overflow for any sign of x.
    sigmoid => |x| fast_sigmoid(x);
}

/// [`sigmoid`] through the polynomials, both arms computed and one selected
/// (so a loop of it vectorises): `1/(1 + e^−x)` for `x ≥ 0`, `eˣ/(1 + eˣ)`
/// below, which keeps the tiny values of large negative `x`.
#[inline(always)]
fn fast_sigmoid<T: Float>(x: T) -> T {
    let e = (-x.abs()).fast_exp();
    let big = T::one() / (T::one() + e);
    let small = e / (T::one() + e);
    if x >= T::zero() {
        big
    } else {
        small
    }
}

// The rest: plain arithmetic and selects, through the same dispatcher
// (memory-bound, but the widest loads and stores still pay).
unary_vectorized! {
    /// `−x`.
    neg => |x| -x;
    /// `|x|`.
    abs => |x| x.abs();
    /// The sign: −1, 0 or +1 (0 at 0, NaN stays NaN).
    sign => |x| if x > T::zero() { T::one() } else if x < T::zero() { -T::one() } else { x * T::zero() };
    /// Square root.
    sqrt => |x| x.sqrt();
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
    /// `xᵖ` for a real power. In `f32`, `e^{p·log x}` from the polynomials
    /// for `x ≥ 0` (within `4 + 2·|p·log x|` ulp, `tests/unary_accuracy.rs`;
    /// `x⁰ = 1` everywhere); a negative `x` takes `std`'s `powf` (a real
    /// value for an integer `p`, NaN otherwise). `f64` is `std`'s `powf`.
    pub fn powf(&self, p: T) -> Tensor<T> {
        let out = crate::parallel::map_chunks(self.as_slice(), |x, o| {
            crate::simd::vectorized(
                #[inline(always)]
                || {
                    for (o, &x) in o.iter_mut().zip(x) {
                        *o = x.fast_powf(p);
                    }
                },
            );
            // the polynomial's log is NaN below 0 (and −0 keeps its sign
            // only in std's powf): redo those elements
            for (o, &x) in o.iter_mut().zip(x) {
                if x.is_sign_negative() {
                    *o = x.powf(p);
                }
            }
        });
        Tensor::from_parts(out, self.shape().clone())
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
    /// Elementwise `log(1 + eˣ)`, stable for any magnitude (in `f32`
    /// through the polynomials, as the transcendental functions above).
    pub fn softplus(&self) -> Tensor<T> {
        Tensor::from_parts(
            crate::parallel::map_vectorized(
                self.as_slice(),
                #[inline(always)]
                |x: T| x.max(T::zero()) + (-x.abs()).fast_exp().fast_ln_1p(),
            ),
            self.shape().clone(),
        )
    }
}
