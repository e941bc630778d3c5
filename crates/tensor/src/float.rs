//! The element types: [`Element`] for anything a tensor can hold, [`Float`] for
//! the two real types every kernel and op works in.

use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// The name of an element type, for messages and file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    I64,
}

impl Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I64 => "i64",
        })
    }
}

/// Anything a [`crate::Tensor`] can store.
pub trait Element: Copy + Send + Sync + Debug + PartialEq + Default + 'static {
    /// The element type's name.
    const DTYPE: DType;
    /// A value that marks an element no kernel has written yet: debug
    /// builds fill reused buffers with it ([`crate::pool::take`]), so a
    /// kernel that skips an element gives NaN (or `i64::MIN`) in tests
    /// instead of the last step's value.
    fn poison() -> Self {
        Self::default()
    }
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    fn poison() -> Self {
        f32::NAN
    }
}
impl Element for f64 {
    const DTYPE: DType = DType::F64;
    fn poison() -> Self {
        f64::NAN
    }
}
impl Element for i64 {
    const DTYPE: DType = DType::I64;
    fn poison() -> Self {
        i64::MIN
    }
}

/// A real element type: `f32` (training) or `f64` (gradcheck, conformance).
///
/// Built on [`num_traits::Float`] for the math functions; adds lossless-enough
/// conversion to and from `f64` and the matrix-product kernel of each type.
pub trait Float:
    Element
    + num_traits::Float
    + num_traits::FloatConst
    + Display
    + Sum
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
{
    /// Convert from `f64` (rounding to nearest for `f32`).
    fn of(v: f64) -> Self;
    /// Convert to `f64` (exact for both types).
    fn as_f64(self) -> f64;

    /// `eˣ` for hot loops: for `f32` the branch-free polynomial
    /// [`simd::exp_f32`](crate::simd::exp_f32) (~1 ulp), which vectorises;
    /// for `f64` the exact `exp` (the f64 paths are the reference).
    #[inline(always)]
    fn fast_exp(self) -> Self {
        self.exp()
    }
    /// `log x` for hot loops: [`simd::ln_f32`](crate::simd::ln_f32) for
    /// `f32`, the exact `ln` for `f64`.
    #[inline(always)]
    fn fast_ln(self) -> Self {
        self.ln()
    }
    /// `log(1 + x)` for hot loops:
    /// [`simd::ln_1p_f32`](crate::simd::ln_1p_f32) for `f32`, the exact
    /// `ln_1p` for `f64`.
    #[inline(always)]
    fn fast_ln_1p(self) -> Self {
        self.ln_1p()
    }

    /// `eˣ` for the terms `e^{z − max}` of a softmax (`x ≤ 0`; correct up to
    /// `x ≤ 88`): for `f32` [`simd::exp_neg_f32`](crate::simd::exp_neg_f32)
    /// (results below `f32::MIN_POSITIVE` flush to 0; fused multiply-adds
    /// with `FMA`, only where the CPU has them, see
    /// [`simd::has_fma`](crate::simd::has_fma)); for `f64` the exact `exp`.
    #[inline(always)]
    fn exp_nonpos<const FMA: bool>(self) -> Self {
        self.exp()
    }
    /// `log x` for hot loops whose `x` is known to be positive, finite and
    /// normal (no special cases): for `f32`
    /// [`simd::ln_normal_f32`](crate::simd::ln_normal_f32) (fused
    /// multiply-adds with `FMA`, as in [`Self::exp_nonpos`]); for `f64` the
    /// exact `ln`.
    #[inline(always)]
    fn ln_normal<const FMA: bool>(self) -> Self {
        self.ln()
    }
    /// `eˣ − 1` for hot loops: [`simd::expm1_f32`](crate::simd::expm1_f32)
    /// for `f32`, the exact `exp_m1` for `f64`.
    #[inline(always)]
    fn fast_exp_m1(self) -> Self {
        self.exp_m1()
    }
    /// `tanh x` for hot loops: [`simd::tanh_f32`](crate::simd::tanh_f32) for
    /// `f32`, the exact `tanh` for `f64`.
    #[inline(always)]
    fn fast_tanh(self) -> Self {
        self.tanh()
    }
    /// `xᵖ` for `x ≥ 0` in hot loops: for `f32`, `e^{p·log x}` from the
    /// polynomials (`x⁰ = 1`, also at `x = 0`; relative error about
    /// `(1 + |p·log x|)` ulp); for `f64` the exact `powf`.
    #[inline(always)]
    fn fast_powf(self, p: Self) -> Self {
        self.powf(p)
    }
    /// The logistic function `1/(1 + e⁻ˣ)` for hot loops, through
    /// [`Self::fast_exp`] (exact to rounding for `f64`); 0 and 1 at the far
    /// ends, never NaN for finite `x`.
    #[inline(always)]
    fn fast_sigmoid(self) -> Self {
        Self::one() / (Self::one() + (-self).fast_exp())
    }

    /// `C = alpha·A·B + beta·C` for row/column-strided matrices, through the
    /// `gemm` crate (packed SIMD micro-kernels chosen at run time, threads
    /// from the rayon pool once the product is large enough to pay for them).
    ///
    /// # Safety
    /// The pointers and strides must describe valid `m×k`, `k×n` and `m×n`
    /// matrices; `c` must not alias `a` or `b`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    ) {
        // The gemm crate computes dst = alpha·dst + beta·lhs·rhs, with its
        // alpha and beta the other way round from BLAS, and takes column
        // stride before row stride.
        gemm::gemm(
            m,
            n,
            k,
            c,
            csc,
            rsc,
            beta != Self::zero(),
            a,
            csa,
            rsa,
            b,
            csb,
            rsb,
            beta,
            alpha,
            false,
            false,
            false,
            if crate::parallel::products_serial() {
                gemm::Parallelism::None
            } else {
                gemm::Parallelism::Rayon(0)
            },
        )
    }
}

impl Float for f32 {
    #[inline]
    fn of(v: f64) -> Self {
        v as f32
    }
    #[inline]
    fn as_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn fast_exp(self) -> Self {
        crate::simd::exp_f32(self)
    }
    #[inline(always)]
    fn fast_ln(self) -> Self {
        crate::simd::ln_f32(self)
    }
    #[inline(always)]
    fn fast_ln_1p(self) -> Self {
        crate::simd::ln_1p_f32(self)
    }
    #[inline(always)]
    fn exp_nonpos<const FMA: bool>(self) -> Self {
        crate::simd::exp_neg_f32::<FMA>(self)
    }
    #[inline(always)]
    fn ln_normal<const FMA: bool>(self) -> Self {
        crate::simd::ln_normal_f32::<FMA>(self)
    }
    #[inline(always)]
    fn fast_exp_m1(self) -> Self {
        crate::simd::expm1_f32(self)
    }
    #[inline(always)]
    fn fast_tanh(self) -> Self {
        crate::simd::tanh_f32(self)
    }
    #[inline(always)]
    fn fast_powf(self, p: Self) -> Self {
        let r = crate::simd::exp_f32(p * crate::simd::ln_f32(self));
        if p == 0.0 {
            1.0
        } else {
            r
        }
    }
}

impl Float for f64 {
    #[inline]
    fn of(v: f64) -> Self {
        v
    }
    #[inline]
    fn as_f64(self) -> f64 {
        self
    }
}
