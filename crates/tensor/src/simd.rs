//! Vectorisable math for hot loops, and runtime choice of instruction set.
//!
//! - [`exp_f32`], [`ln_f32`] and [`ln_1p_f32`]: branch-free polynomials (the
//!   Cephes `expf`/`logf` coefficients, about 1 ulp), and [`expm1_f32`] and
//!   [`tanh_f32`] built on them (a few ulp) written with selects
//!   instead of branches, so a loop of them compiles to SIMD code. They are
//!   what [`Float::fast_exp`](crate::Float::fast_exp) and friends use for
//!   `f32`; for `f64` those are the exact `std` functions (the f64 paths are
//!   the reference the fused-vs-naive tests hold to 1e-10).
//! - [`vectorized`]: runs a closure compiled for AVX-512 or AVX2+FMA when the
//!   CPU has them (`is_x86_feature_detected!` at run time), else for the
//!   x86-64 baseline; on other architectures it just calls the closure. One
//!   build runs on every x86-64 and uses the widest vectors it finds. The
//!   closure must be inlined into the per-ISA wrapper for its loops to be
//!   compiled for that ISA: mark it `#[inline(always)]` and keep the loops in
//!   `#[inline(always)]` helpers such as the ones here.
//! - Row kernels ([`max`], [`sum`], [`exp_shift_sum`], …) that keep 64
//!   independent accumulators ([`L`]), so reductions vectorise without
//!   reassociation by the compiler (which it may not do for floats); a
//!   row's last elements go through padded vectors, not scalar steps.
//!
//! [`exp_f32`], [`ln_f32`] and [`ln_1p_f32`] (and what is built on them) use
//! no fused multiply-add, so they give the same bits whichever instruction
//! set runs them. The softmax kernels ([`exp_shift_sum`] and kin, built on
//! [`exp_neg_f32`]) use FMA on the AVX2 and AVX-512 paths (the same bits on
//! both) and plain multiplies and adds on the baseline path, where results
//! may differ in the last bit.

use crate::float::Float;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Lanes of the multi-accumulator reductions: four AVX-512 `f32` vectors.
/// With 16 (one vector) LLVM's loop vectoriser took the 16 sums for 8
/// separate reductions and ran them two lanes wide (`xmm`); from 64 on it
/// emits full-width vectors, and the reductions ran about 3× faster.
const L: usize = 64;

/// Width of the padded vectors that finish a row kernel's last `< L`
/// elements: one AVX-512 `f32` vector (`L` is a multiple of it).
const W: usize = 16;

/// Bytes per cache line (x86-64 and most others).
const LINE: usize = 64;

/// The instruction sets [`vectorized`] compiles its closure for, narrowest
/// first (so `Ord` compares widths).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    /// The x86-64 baseline (SSE2), or plain code on other architectures.
    Baseline,
    /// AVX2 with FMA.
    Avx2,
    /// AVX-512 (F, BW, DQ, VL) with AVX2 and FMA.
    Avx512,
}

impl Isa {
    /// Every instruction set, narrowest first (the order of the variants).
    pub const ALL: [Isa; 3] = [Isa::Baseline, Isa::Avx2, Isa::Avx512];
    /// Its name in reports and in `LOSSGRAPH_ISA`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
    /// Parse a name of [`Isa::name`].
    pub fn from_name(name: &str) -> Option<Isa> {
        Isa::ALL.into_iter().find(|i| i.name() == name)
    }
}

/// The environment variable that caps the instruction set: `baseline`,
/// `avx2` or `avx512`. The kernels then run the widest path at or below it
/// that the CPU has, so a test run can reach every path a CPU supports
/// (`.ci/run` runs the kernel and loss tests once per path). Read once, at
/// the first call of [`vectorized`]; matrix products (the `gemm` crate)
/// choose their own kernels and are not capped.
pub const ISA_ENV: &str = "LOSSGRAPH_ISA";

/// The widest instruction set the CPU has, by feature detection.
pub fn detected_isa() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let avx2 = has!("avx2") && has!("fma");
        if avx2 && has!("avx512f") && has!("avx512bw") && has!("avx512dq") && has!("avx512vl") {
            return Isa::Avx512;
        }
        if avx2 {
            return Isa::Avx2;
        }
    }
    Isa::Baseline
}

/// The instruction set [`vectorized`] uses: [`detected_isa`], capped by
/// [`ISA_ENV`] when it is set. Decided once per process (an atomic load
/// after that). An unknown value of the variable is reported once on
/// stderr and ignored.
#[inline(always)]
pub fn isa() -> Isa {
    use std::sync::atomic::{AtomicU8, Ordering};
    // 0: not decided yet; else 1 + the Isa's index
    static CHOSEN: AtomicU8 = AtomicU8::new(0);
    match CHOSEN.load(Ordering::Relaxed) {
        0 => {
            let detected = detected_isa();
            let chosen = match std::env::var(ISA_ENV) {
                Ok(v) => match Isa::from_name(v.trim()) {
                    Some(cap) => cap.min(detected),
                    None => {
                        eprintln!(
                            "lossgraph: {ISA_ENV}={v:?} is not one of baseline, avx2, avx512; \
                             using {}",
                            detected.name()
                        );
                        detected
                    }
                },
                Err(_) => detected,
            };
            CHOSEN.store(1 + chosen as u8, Ordering::Relaxed);
            chosen
        }
        k => Isa::ALL[usize::from(k - 1).min(Isa::ALL.len() - 1)],
    }
}

/// Run `f` compiled for the widest instruction set allowed ([`isa`]).
///
/// Mark the closure `#[inline(always)]` (`vectorized(#[inline(always)] || …)`)
/// so that it, and the `#[inline(always)]` kernels it calls, are compiled
/// inside the wrapper that enables AVX-512 or AVX2.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        match isa() {
            // SAFETY: `isa` is never above `detected_isa`, which found the
            // features each wrapper enables.
            Isa::Avx512 => return unsafe { x86::avx512(f) },
            // SAFETY: as above.
            Isa::Avx2 => return unsafe { x86::avx2(f) },
            Isa::Baseline => {}
        }
    }
    f()
}

/// Outputs of at least this many bytes are written with streaming stores
/// ([`streams`]): a quarter of the 32 MiB L3 cache of the machine the
/// kernels were tuned on, so that an output small enough to stay cached for
/// the op that reads it next is written the usual way.
pub const STREAM_MIN_BYTES: usize = 8 << 20;

/// Elements per block of a streamed output: the block is computed into a
/// scratch buffer of this many elements (4 KiB of `f32`), which stays in the
/// L1 cache, then copied out with [`copy_streaming`]. A multiple of 16, so
/// that blocks that start on a cache line end on one.
pub const STREAM_BLOCK: usize = 1024;

/// Whether an output of `n` elements of `T` is written with streaming stores:
/// at least [`STREAM_MIN_BYTES`], and on x86-64 (elsewhere the copy out of
/// the scratch block would be a plain copy, all cost and no gain).
pub fn streams<T>(n: usize) -> bool {
    cfg!(target_arch = "x86_64") && n.saturating_mul(size_of::<T>()) >= STREAM_MIN_BYTES
}

/// The blocks in which to write an output of `n` elements with streaming
/// stores: a first short one up to the output's first cache-line boundary
/// (`head` elements, from [`line_offset`]), then [`STREAM_BLOCK`]s, which
/// then start on cache lines, so that only the first and last lines of the
/// output are written with plain stores.
pub fn stream_blocks(head: usize, n: usize) -> impl Iterator<Item = Range<usize>> {
    let first = head.min(n);
    let lead = (first > 0).then_some(0..first);
    let rest = (first..n)
        .step_by(STREAM_BLOCK)
        .map(move |s| s..(s + STREAM_BLOCK).min(n));
    lead.into_iter().chain(rest)
}

/// Elements from `p` to the next 64-byte (cache-line) boundary, 0 when `p`
/// is on one.
pub fn line_offset<T>(p: *const T) -> usize {
    let per_line = (LINE / size_of::<T>().max(1)).max(1);
    p.align_offset(LINE).min(per_line)
}

/// Copy `src` into `dst` with non-temporal ("streaming") stores where the
/// CPU has them: the bytes go to memory without the destination's lines
/// being read into the cache first (a plain store reads each line before
/// it overwrites it, so writing a fresh buffer costs a read as well as a
/// write) and without evicting what is cached. Only whole cache lines are
/// streamed; the part of `dst` before its first line boundary and after its
/// last is written with plain stores, so that no line is written both ways.
/// Call [`stream_fence`] once after the last copy into an output, not after
/// each (a fence waits for the streamed lines to reach memory: one per block
/// made the whole write slower than plain stores). Elsewhere, a plain copy.
///
/// Inlined, with 16-byte stores (SSE2, in every x86-64), so that it needs no
/// call (which would spill the vector registers of an AVX-512 loop) and no
/// CPU-feature check. Where it pays: a kernel that reads its inputs in one
/// pass over a chunk and writes the output from cache in a second (the
/// elementwise losses, ~15% faster at 4M elements); where it did not: a
/// single pass that reads and streams at once (`bce_with_logits`), and
/// `cross_entropy`'s rows (see docs/performance.md).
///
/// # Panics
/// If `dst` is shorter than `src` (a bug in the caller, not a user error).
#[inline(always)]
pub fn copy_streaming<T: Copy>(src: &[T], dst: &mut [MaybeUninit<T>]) {
    let n = src.len();
    let dst = &mut dst[..n];
    let mut head = 0;
    let mut body = 0;
    #[cfg(target_arch = "x86_64")]
    if LINE.is_multiple_of(size_of::<T>()) {
        let per_line = LINE / size_of::<T>();
        head = line_offset(dst.as_ptr()).min(n);
        body = (n - head) / per_line * per_line;
        let (s, d) = (
            src[head..].as_ptr().cast::<u8>(),
            dst[head..].as_mut_ptr().cast::<u8>(),
        );
        let bytes = body * size_of::<T>();
        let mut i = 0;
        while i < bytes {
            // SAFETY: s + i and d + i stay within the body (whole lines of
            // both slices); d + i is 16-byte aligned (d is on a line); SSE2
            // is part of x86-64; the stores write initialised copies of T.
            #[cfg(not(miri))]
            unsafe {
                use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_stream_si128};
                _mm_stream_si128(d.add(i).cast::<__m128i>(), _mm_loadu_si128(s.add(i).cast()));
            }
            // Miri cannot run the streaming store (inline assembly): the
            // same 16 bytes through plain pointer copies, so that Miri still
            // checks the addresses and alignment above.
            // SAFETY: as above.
            #[cfg(miri)]
            unsafe {
                // u128 is 16-byte aligned: the write checks d + i is too
                let v = s.add(i).cast::<[u8; 16]>().read_unaligned();
                d.add(i).cast::<u128>().write(u128::from_ne_bytes(v));
            }
            i += 16;
        }
    }
    for (o, &v) in dst[..head].iter_mut().zip(&src[..head]) {
        o.write(v);
    }
    for (o, &v) in dst[head + body..].iter_mut().zip(&src[head + body..]) {
        o.write(v);
    }
}

/// Order the streaming stores of [`copy_streaming`] before the stores that
/// follow (once, after the last copy into an output, before it is handed
/// on).
#[inline(always)]
pub fn stream_fence() {
    #[cfg(all(target_arch = "x86_64", not(miri)))]
    // SAFETY: SSE is part of x86-64; a fence has no other effect.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    /// # Safety
    /// The CPU must have every feature enabled here (AVX-512 F/BW/DQ/VL,
    /// AVX2, FMA, BMI1/2, LZCNT, POPCNT): [`super::isa`] returns `Avx512`
    /// only when [`super::detected_isa`] found them.
    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
    pub(super) unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
        f()
    }

    /// # Safety
    /// The CPU must have AVX2, FMA, BMI1/2, LZCNT and POPCNT: [`super::isa`]
    /// returns `Avx2` or above only when [`super::detected_isa`] found them.
    #[target_feature(enable = "avx2,fma,bmi1,bmi2,lzcnt,popcnt")]
    pub(super) unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
        f()
    }
}

/// `eˣ` in `f32`, branch-free: `x = n·ln 2 + r` with `|r| ≤ ½ln 2`
/// (Cody–Waite, two-part `ln 2`), a degree-7 polynomial for `eʳ` (Cephes
/// `expf`), and `2ⁿ` built from exponent bits in two factors so that results
/// down to the subnormal range round once. Within ~1 ulp for normal results;
/// `+∞` above `ln(f32::MAX)`, `0` below ~−103.97, NaN stays NaN.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // adding 1.5·2²³ rounds a float of magnitude < 2²² to an integer
    const SHIFT: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const HI: f32 = 89.0;
    const LO: f32 = -104.0;
    // clamp with selects that keep NaN (both comparisons are false for it)
    let x = if x > HI { HI } else { x };
    let x = if x < LO { LO } else { x };
    let t = x * LOG2E + SHIFT;
    let n = t - SHIFT;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let p = p * (r * r) + r + 1.0;
    // n ∈ [−150, 128] sits in the low mantissa bits of t
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let n1 = ni >> 1;
    let n2 = ni.wrapping_sub(n1);
    let s1 = f32::from_bits((n1.wrapping_add(127) as u32).wrapping_shl(23));
    let s2 = f32::from_bits((n2.wrapping_add(127) as u32).wrapping_shl(23));
    (p * s1) * s2
}

/// `log m` for `m = u/2ᵏ ∈ [√½, √2)` plus `(k + k_off)·ln 2` (Cephes
/// `logf`); `u` must be positive, finite and normal — callers select the
/// special cases. With `FMA` the polynomial uses fused multiply-adds (see
/// [`fmadd`]).
#[inline(always)]
fn ln_core<const FMA: bool>(u: f32, k_off: i32) -> f32 {
    const SQRT_HALF_BITS: i32 = 0x3F35_04F3;
    let ix = (u.to_bits() as i32).wrapping_sub(SQRT_HALF_BITS);
    let k = (ix >> 23) + k_off;
    let m = f32::from_bits(((ix & 0x007F_FFFF) + SQRT_HALF_BITS) as u32);
    let f = m - 1.0;
    let z = f * f;
    let mut p = 7.037_683_6e-2f32;
    p = fmadd::<FMA>(p, f, -1.151_461e-1);
    p = fmadd::<FMA>(p, f, 1.167_699_9e-1);
    p = fmadd::<FMA>(p, f, -1.242_014_1e-1);
    p = fmadd::<FMA>(p, f, 1.424_932_3e-1);
    p = fmadd::<FMA>(p, f, -1.666_805_8e-1);
    p = fmadd::<FMA>(p, f, 2.000_071_4e-1);
    p = fmadd::<FMA>(p, f, -2.499_999_4e-1);
    p = fmadd::<FMA>(p, f, 3.333_333e-1);
    let kf = k as f32;
    let y = fmadd::<FMA>(f, z * p, kf * -2.121_944_4e-4) - 0.5 * z;
    fmadd::<FMA>(kf, 0.693_359_4, f + y)
}

/// `log x` in `f32` for positive, finite, normal `x` only (no special
/// cases: other inputs give meaningless values), with fused multiply-adds
/// when `FMA` (see [`fmadd`]); ~1 ulp. For hot loops whose argument is
/// known to lie in such a range (`1 + e` with `e ∈ [0, 1]`, say).
#[inline(always)]
pub fn ln_normal_f32<const FMA: bool>(x: f32) -> f32 {
    ln_core::<FMA>(x, 0)
}

/// Special values of `log u`: `+∞` at `+∞`, `−∞` at 0, NaN below 0 or NaN.
#[inline(always)]
fn ln_special(u: f32, v: f32) -> f32 {
    let v = if u == f32::INFINITY { u } else { v };
    if u > 0.0 {
        v
    } else if u == 0.0 {
        f32::NEG_INFINITY
    } else {
        f32::NAN
    }
}

/// `log x` in `f32`, branch-free (~1 ulp; subnormal `x` is scaled by 2²⁴
/// first).
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    let small = x < f32::MIN_POSITIVE;
    let xs = if small { x * 16_777_216.0 } else { x };
    let k_off = if small { -24 } else { 0 };
    ln_special(x, ln_core::<false>(xs, k_off))
}

/// `log(1 + x)` in `f32`, branch-free and accurate near 0: with `u = 1 + x`
/// rounded, `log1p x ≈ log u + (x − (u − 1))/u` (the second term restores
/// what the rounding of `u` lost; it is `x` itself once `u` rounds to 1).
#[inline(always)]
pub fn ln_1p_f32(x: f32) -> f32 {
    let u = 1.0 + x;
    let c = if x < 1.0e7 { (x - (u - 1.0)) / u } else { 0.0 };
    let r = ln_special(u, ln_core::<false>(u, 0) + c);
    // log1p(±0) = ±0 (the sum above rounds −0 to +0)
    if x == 0.0 {
        x
    } else {
        r
    }
}

/// `eˣ − 1` in `f32`, branch-free and accurate near 0: a degree-8 Taylor
/// polynomial for `|x| < ½` (truncation below 2·10⁻⁸ relative), else
/// [`exp_f32`]`(x) − 1`, which loses at most a couple of bits there (the
/// result is at least 0.39 in magnitude). Within ~3 ulp; `−1` as `x → −∞`,
/// `+∞` above `ln(f32::MAX)`, NaN stays NaN.
#[inline(always)]
pub fn expm1_f32(x: f32) -> f32 {
    let mut p = 1.0f32 / 40_320.0;
    p = p * x + 1.0 / 5_040.0;
    p = p * x + 1.0 / 720.0;
    p = p * x + 1.0 / 120.0;
    p = p * x + 1.0 / 24.0;
    p = p * x + 1.0 / 6.0;
    p = p * x + 0.5;
    // expm1 has the sign of x: copysign keeps it at x = −0, where
    // −0 + (+0) would round to +0
    let near = (x + (x * x) * p).copysign(x);
    let far = exp_f32(x) - 1.0;
    if x.abs() < 0.5 {
        near
    } else {
        far
    }
}

/// `tanh x` in `f32`, branch-free: `−e/(2 + e)` with `e = eᵗ − 1` for
/// `t = −2|x|` ([`expm1_f32`], so no cancellation near 0), signed as `x`.
/// Within ~4 ulp; `±1` for large `|x|`, NaN stays NaN.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    let e = expm1_f32(-2.0 * x.abs());
    let t = -e / (2.0 + e);
    t.copysign(x)
}

/// The largest element, NaN if any element is NaN; `−∞` for an empty slice.
///
/// A row of at least `W` elements goes to [`max_long`], a function of its
/// own (see there why).
#[inline(always)]
pub fn max<T: Float>(x: &[T]) -> T {
    if x.len() < W {
        // a short row: a plain loop beats a call and folding L lanes
        let (mut m, mut nan) = (T::neg_infinity(), false);
        for &v in x {
            m = m.max(v);
            nan |= v.is_nan();
        }
        return if nan { T::nan() } else { m };
    }
    max_long(x)
}

/// [`max`] of a row of at least `W` elements, in `L` lanes: each keeps its
/// max with one compare-and-select (`v > m` is false for a NaN `v`, so a
/// NaN is skipped there) and catches a NaN in a second float lane.
///
/// Not inlined, and vectorised on its own: inlined into a large kernel
/// (cross_entropy's row loop), LLVM kept the lanes in memory, with a masked
/// store and a reload for every vector, and this pass took about a fifth
/// of that kernel's samples under `perf`. On its own the lanes stay in
/// registers: three instructions per vector. The tail is one chunk padded
/// with −∞ and the fold is [`fold_pairwise`], so that every index into the
/// lanes is a constant. The call and the feature check cost a few
/// nanoseconds a row.
#[inline(never)]
fn max_long<T: Float>(x: &[T]) -> T {
    #[inline(always)]
    fn step<T: Float>(acc: &mut T, nan: &mut T, v: T) {
        *acc = if v > *acc { v } else { *acc };
        *nan = if v.is_nan() { v } else { *nan };
    }
    vectorized(
        #[inline(always)]
        || {
            let mut acc = [T::neg_infinity(); L];
            // a lane is NaN once any element of that lane was NaN, else 0
            let mut nan = [T::zero(); L];
            let chunks = x.chunks_exact(L);
            let rest = chunks.remainder();
            for c in chunks {
                for j in 0..L {
                    step(&mut acc[j], &mut nan[j], c[j]);
                }
            }
            for j in 0..L {
                let v = rest.get(j).copied().unwrap_or(T::neg_infinity());
                step(&mut acc[j], &mut nan[j], v);
            }
            // `acc` holds no NaN, so the order of the fold does not matter
            let m = fold_pairwise(&mut acc, |a, b| if b > a { b } else { a });
            // each lane is 0 or NaN: their sum is NaN when any is
            let nan = fold_pairwise(&mut nan, |a, b| a + b);
            if nan.is_nan() {
                T::nan()
            } else {
                m
            }
        },
    )
}

/// Elements per block of the mapped reductions: `f` fills a stack buffer of
/// this many values (a plain map loop, which vectorises whatever `f` is),
/// then the buffer is added into the `L` accumulators.
const BLOCK: usize = 256;

/// `acc[j] += Σ_k v[k·L + j]` over the whole chunks of `L` in `v`; returns the
/// elements past the last whole chunk.
#[inline(always)]
fn add_lanes<'a, T: Float>(acc: &mut [T; L], v: &'a [T]) -> &'a [T] {
    let chunks = v.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..L {
            acc[j] += c[j];
        }
    }
    rest
}

/// `Σ f(x_i)` with `L` accumulators (a fixed summation order, vectorisable).
#[inline(always)]
pub fn sum_map<T: Float>(x: &[T], f: impl Fn(T) -> T) -> T {
    sum_map2(x, x, |v, _| f(v))
}

/// `Σ f(a_i, b_i)` with `L` accumulators, over `a.len()` elements (`b` at
/// least as long). The values go through a stack buffer, block by block, so
/// that evaluating `f` is a plain map loop, free of the `L` accumulators
/// (which the summing loop alone holds). Measured: no slower than summing in
/// the map loop for `mse`; not measured separately for larger `f`.
#[inline(always)]
pub fn sum_map2<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T) -> T {
    let b = &b[..a.len()];
    let mut acc = [T::zero(); L];
    let mut buf = [T::zero(); BLOCK];
    let mut tail = T::zero();
    for (x, y) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let k = x.len();
        let (out, y) = (&mut buf[..k], &y[..k]);
        for i in 0..k {
            out[i] = f(x[i], y[i]);
        }
        for &v in add_lanes(&mut acc, out) {
            tail += v;
        }
    }
    fold_lanes(acc) + tail
}

/// Add the `L` lanes pairwise.
#[inline(always)]
fn fold_lanes<T: Float>(mut acc: [T; L]) -> T {
    fold_pairwise(&mut acc, |a, b| a + b)
}

/// Fold the `L` lanes pairwise with `f` (lane `j` with lane `j + L/2`, and
/// so on), leaving the result in lane 0. Every index is a constant: in a
/// build of [`max`]'s loop on its own, a fold by a loop over the lanes made
/// LLVM store the lanes to memory on every step of the loop; this one did
/// not.
#[inline(always)]
fn fold_pairwise<T: Copy>(acc: &mut [T; L], f: impl Fn(T, T) -> T) -> T {
    #[inline(always)]
    fn half<T: Copy, const H: usize>(acc: &mut [T; L], f: &impl Fn(T, T) -> T) {
        for j in 0..H {
            acc[j] = f(acc[j], acc[j + H]);
        }
    }
    const { assert!(L == 64) };
    half::<T, 32>(acc, &f);
    half::<T, 16>(acc, &f);
    half::<T, 8>(acc, &f);
    half::<T, 4>(acc, &f);
    half::<T, 2>(acc, &f);
    half::<T, 1>(acc, &f);
    acc[0]
}

/// `Σ x_i` (`L` accumulators).
#[inline(always)]
pub fn sum<T: Float>(x: &[T]) -> T {
    if x.len() < L {
        // no whole chunk: the same sum as below without folding L zeros
        return x.iter().fold(T::zero(), |s, &v| s + v);
    }
    let mut acc = [T::zero(); L];
    let rest = add_lanes(&mut acc, x);
    let mut s = fold_lanes(acc);
    for &v in rest {
        s += v;
    }
    s
}

/// `Σ x_i` accumulated in `f64`, in `L` lanes, each element widened first.
///
/// For `f32` input the sum before its final rounding is off by at most
/// `(n/L + 6)·2⁻⁵³·Σ|x|`, far under one `f32` ulp for any length memory
/// holds; a serial `f32` loop is off by up to `n·2⁻²⁴·Σ|x|` (9% for the
/// mean of 10M equal values). For `f64` input this is [`sum`]'s order of
/// additions. The blocks of a long sum are combined by the caller
/// (`Tensor::sum_all`'s summation tree).
#[inline(always)]
pub fn sum_f64<T: Float>(x: &[T]) -> f64 {
    let mut acc = [0.0f64; L];
    let chunks = x.chunks_exact(L);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..L {
            acc[j] += c[j].as_f64();
        }
    }
    let mut s = fold_lanes(acc);
    for &v in rest {
        s += v.as_f64();
    }
    s
}

/// A sum over many slices kept in `L` lanes (element `i` of each slice
/// into lane `i mod L`) and summed across once, by [`LaneSum::total`].
///
/// For a kernel that sums a small block at a time: a sum across lanes is a
/// chain of dependent additions, and such a chain after every block holds
/// up the retirement of the work behind it; lane-wise additions do not.
/// The order of the additions depends only on the slices, so the result
/// is as reproducible as [`sum`]'s.
#[derive(Clone, Copy, Debug)]
pub struct LaneSum<T> {
    lanes: [T; L],
}

impl<T: Float> Default for LaneSum<T> {
    fn default() -> Self {
        LaneSum {
            lanes: [T::zero(); L],
        }
    }
}

impl<T: Float> LaneSum<T> {
    /// Add `v` lane-wise.
    #[inline(always)]
    pub fn add(&mut self, v: &[T]) {
        let tail = add_lanes(&mut self.lanes, v);
        for (l, &x) in self.lanes.iter_mut().zip(tail) {
            *l += x;
        }
    }

    /// The sum of everything added.
    #[inline(always)]
    pub fn total(self) -> T {
        fold_lanes(self.lanes)
    }
}

/// Where a kernel writes a value: an initialised element, or a slot of an
/// output being built without a zero fill first.
pub trait Store<T> {
    /// Write `v` here.
    fn store(&mut self, v: T);
}

impl<T: Copy> Store<T> for T {
    #[inline(always)]
    fn store(&mut self, v: T) {
        *self = v;
    }
}

impl<T: Copy> Store<T> for MaybeUninit<T> {
    #[inline(always)]
    fn store(&mut self, v: T) {
        *self = MaybeUninit::new(v);
    }
}

/// Whether the vectorised paths of [`vectorized`] run (AVX2 and FMA, with or
/// without AVX-512): the softmax kernels below then evaluate their
/// polynomial with fused multiply-adds.
#[inline(always)]
pub fn has_fma() -> bool {
    isa() >= Isa::Avx2
}

/// `a·b + c`, fused when `FMA` (instantiate `FMA = true` only where the
/// code runs with FMA enabled, i.e. inside [`vectorized`] when [`has_fma`];
/// elsewhere it would be a library call).
#[inline(always)]
fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `eˣ` in `f32` for the terms `e^{z − max}` of a softmax (`x ≤ 0`; correct
/// up to `x ≤ 88`): [`exp_f32`]'s polynomial with a single scaling by `2ⁿ`,
/// and results below `f32::MIN_POSITIVE` (`x < −87.34`) flushed to 0 (they
/// are less than 10⁻³⁸ of the row's largest term). With `FMA` the range
/// reduction and the polynomial use fused multiply-adds: fewer
/// instructions than [`exp_f32`], within ~1 ulp either way.
#[inline(always)]
pub fn exp_neg_f32<const FMA: bool>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const SHIFT: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // ln(f32::MIN_POSITIVE); and the largest x with n ≤ 127
    const LO: f32 = -87.336_54;
    const HI: f32 = 88.37;
    let xc = if x > HI { HI } else { x };
    let xc = if xc < LO { LO } else { xc };
    let t = fmadd::<FMA>(xc, LOG2E, SHIFT);
    let n = t - SHIFT;
    let r = fmadd::<FMA>(n, -LN2_LO, fmadd::<FMA>(n, -LN2_HI, xc));
    let mut p = 1.987_569_1e-4f32;
    p = fmadd::<FMA>(p, r, 1.398_199_9e-3);
    p = fmadd::<FMA>(p, r, 8.333_452e-3);
    p = fmadd::<FMA>(p, r, 4.166_579_6e-2);
    p = fmadd::<FMA>(p, r, 1.666_666_5e-1);
    p = fmadd::<FMA>(p, r, 0.5);
    let p = fmadd::<FMA>(p, r * r, r) + 1.0;
    // n ∈ [−126, 127]: 2ⁿ is a normal float
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let v = p * f32::from_bits((ni.wrapping_add(127) as u32).wrapping_shl(23));
    // below the normal range (−∞ included) the result is 0; NaN stays NaN
    if x < LO {
        0.0
    } else {
        v
    }
}

/// `out_i = e^{x_i − m}` ([`Float::exp_nonpos`]; `m` is the max of `x`) and
/// the sum of the `out_i`; writes `out[..x.len()]`.
#[inline(always)]
pub fn exp_shift_sum<T: Float>(x: &[T], m: T, out: &mut [impl Store<T>]) -> T {
    exp_shift_sum_ahead(x, m, out, &[])
}

/// [`exp_shift_sum`] that also asks the CPU to fetch `ahead` (say, the next
/// row) into cache, every cache line of it, so memory stays busy while
/// this row's exponentials are computed from cache.
#[inline(always)]
pub fn exp_shift_sum_ahead<T: Float>(x: &[T], m: T, out: &mut [impl Store<T>], ahead: &[T]) -> T {
    if has_fma() {
        exp_shift_sum_k::<T, true>(x, m, out, ahead)
    } else {
        exp_shift_sum_k::<T, false>(x, m, out, ahead)
    }
}

#[inline(always)]
fn exp_shift_sum_k<T: Float, const FMA: bool>(
    x: &[T],
    m: T,
    out: &mut [impl Store<T>],
    ahead: &[T],
) -> T {
    let out = &mut out[..x.len()];
    let mut acc = [T::zero(); L];
    let (cx, co) = (x.chunks_exact(L), out.chunks_exact_mut(L));
    let rx = cx.remainder();
    for (k, (x, o)) in cx.zip(co).enumerate() {
        // every cache line of the next L elements of `ahead`
        for a in ahead
            .iter()
            .skip(k * L)
            .take(L)
            .step_by(LINE / size_of::<T>())
        {
            prefetch(a);
        }
        for j in 0..L {
            let e = (x[j] - m).exp_nonpos::<FMA>();
            o[j].store(e);
            acc[j] += e;
        }
    }
    // the rest in padded vectors of W: one vector exp each instead of up
    // to L − 1 scalar ones (a row of 1000 would spend as long on its last
    // 40 elements as on the first 960); padded lanes are not summed
    let n = x.len() - rx.len();
    for (k, (x, o)) in rx.chunks(W).zip(out[n..].chunks_mut(W)).enumerate() {
        let mut v = [m; W];
        v[..x.len()].copy_from_slice(x);
        let mut e = [T::zero(); W];
        let acc = &mut acc[k * W..(k + 1) * W];
        for j in 0..W {
            e[j] = (v[j] - m).exp_nonpos::<FMA>();
            acc[j] += if j < x.len() { e[j] } else { T::zero() };
        }
        for (o, &e) in o.iter_mut().zip(&e) {
            o.store(e);
        }
    }
    fold_lanes(acc)
}

/// Hint that the cache line holding `v` will be read soon (no effect on
/// results; nothing where the architecture has no such hint here).
#[inline(always)]
pub fn prefetch<T>(v: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults and has no effect on memory contents;
    // `v` is a valid reference anyway. SSE is part of the x86-64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((v as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// `Σ e^{x_i − m}` ([`Float::exp_nonpos`]; `m` the max of `x`) without
/// storing the terms.
#[inline(always)]
pub fn sum_exp_shift<T: Float>(x: &[T], m: T) -> T {
    if has_fma() {
        sum_map(x, |v| (v - m).exp_nonpos::<true>())
    } else {
        sum_map(x, |v| (v - m).exp_nonpos::<false>())
    }
}

/// `e_i ← e^{z_i − e_i}` ([`Float::exp_nonpos`]): the exps of a block of
/// short rows, with each row's max spread over its slots of `e` first.
#[inline(always)]
pub fn exp_sub_from<T: Float>(e: &mut [T], z: &[T]) {
    if has_fma() {
        e.iter_mut()
            .zip(z)
            .for_each(|(e, &z)| *e = (z - *e).exp_nonpos::<true>());
    } else {
        e.iter_mut()
            .zip(z)
            .for_each(|(e, &z)| *e = (z - *e).exp_nonpos::<false>());
    }
}

/// Dispatched [`max`] for callers outside a [`vectorized`] region.
pub fn max_of<T: Float>(x: &[T]) -> T {
    vectorized(
        #[inline(always)]
        || max(x),
    )
}

/// Dispatched [`sum`] for callers outside a [`vectorized`] region.
pub fn sum_of<T: Float>(x: &[T]) -> T {
    vectorized(
        #[inline(always)]
        || sum(x),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        if a == b {
            return 0;
        }
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    /// Slices of every length up to 200, added one after another, sum to
    /// what one sum over their concatenation gives (integers: exact).
    #[test]
    fn lane_sum_adds_every_element_once() {
        let mut lanes = LaneSum::default();
        let mut all = Vec::new();
        for n in 0..200 {
            let v: Vec<f64> = (0..n)
                .map(|i| (i * 7 % 13) as f64 - 6.0 + n as f64)
                .collect();
            lanes.add(&v);
            all.extend(v);
        }
        assert_eq!(lanes.total(), all.iter().sum::<f64>());
        assert_eq!(LaneSum::<f32>::default().total(), 0.0);
    }

    /// Every length from 0 to 300 elements at every offset of the
    /// destination within a cache line: the plain head and tail and the
    /// streamed middle together copy each element once, exactly.
    #[test]
    fn copy_streaming_copies_every_element() {
        let src: Vec<f32> = (0..300).map(|i| i as f32 * 1.5 - 7.0).collect();
        let src64: Vec<f64> = src.iter().map(|&v| f64::from(v) / 3.0).collect();
        for offset in 0..16 {
            for n in 0..=src.len() - offset {
                let mut dst = vec![MaybeUninit::new(f32::NAN); offset + n];
                copy_streaming(&src[..n], &mut dst[offset..]);
                // SAFETY: every slot was initialised (NaN, then the copy).
                let got: Vec<f32> = dst.iter().map(|v| unsafe { v.assume_init() }).collect();
                assert!(got[..offset].iter().all(|v| v.is_nan()), "before the copy");
                assert_eq!(&got[offset..], &src[..n], "n = {n}, offset = {offset}");
            }
        }
        let mut dst = vec![MaybeUninit::new(0.0); 299];
        copy_streaming(&src64[1..], &mut dst);
        // SAFETY: as above.
        let got: Vec<f64> = dst.iter().map(|v| unsafe { v.assume_init() }).collect();
        assert_eq!(got, &src64[1..]);
    }

    /// The blocks cover `0..n` once, in order; after the head, every block
    /// starts on a cache line of the output; and `streams` draws its line
    /// at `STREAM_MIN_BYTES`.
    #[test]
    fn stream_blocks_tile_the_output_on_cache_lines() {
        let buf = vec![0f32; 3 * STREAM_BLOCK + 40];
        for offset in 0..20 {
            let out = &buf[offset..];
            let head = line_offset(out.as_ptr());
            assert!(head < 16);
            for n in [0, 1, head, head + 1, STREAM_BLOCK, out.len()] {
                let n = n.min(out.len());
                let mut next = 0;
                for r in stream_blocks(head, n) {
                    assert_eq!(r.start, next, "offset {offset}, n {n}");
                    assert!(r.end > r.start && r.len() <= STREAM_BLOCK);
                    if r.start > 0 {
                        assert_eq!(line_offset(out[r.start..].as_ptr()), 0);
                    }
                    next = r.end;
                }
                assert_eq!(next, n, "offset {offset}, n {n}");
            }
        }
        let elems = STREAM_MIN_BYTES / 4;
        assert_eq!(streams::<f32>(elems), cfg!(target_arch = "x86_64"));
        assert!(!streams::<f32>(elems - 1));
        assert_eq!(streams::<f64>(elems / 2), cfg!(target_arch = "x86_64"));
        assert!(!streams::<f64>(elems / 2 - 1));
    }

    #[test]
    fn exp_matches_std_within_2_ulp() {
        let mut worst = 0;
        let mut x = -87.0f32;
        while x < 88.7 {
            let want = (x as f64).exp() as f32;
            let got = exp_f32(x);
            worst = worst.max(ulps(got, want));
            x += 0.000_731;
        }
        assert!(worst <= 2, "worst {worst} ulp");
    }

    #[test]
    fn exp_special_values() {
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-200.0), 0.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert!(exp_f32(88.72).is_finite());
        assert!(exp_f32(f32::NAN).is_nan());
        // subnormal results round once, close to the true value
        let want = (-95.0f64).exp();
        assert!(
            (exp_f32(-95.0) as f64 - want).abs() <= 2e-45,
            "{}",
            exp_f32(-95.0)
        );
    }

    #[test]
    fn ln_and_ln_1p_match_std() {
        let mut worst = 0;
        let mut x = 1e-30f32;
        while x < 1e30 {
            worst = worst.max(ulps(ln_f32(x), (x as f64).ln() as f32));
            x *= 1.013;
        }
        assert!(worst <= 2, "ln: worst {worst} ulp");
        let mut worst = 0;
        let mut x = -0.999f32;
        while x < 1e6 {
            worst = worst.max(ulps(ln_1p_f32(x), (x as f64).ln_1p() as f32));
            x = if x < 1.0 { x + 1.3e-5 } else { x * 1.01 };
        }
        assert!(worst <= 2, "ln_1p: worst {worst} ulp");
        let mut x = 1e-38f32;
        while x < 1e-3 {
            assert!(ulps(ln_1p_f32(x), (x as f64).ln_1p() as f32) <= 1, "{x}");
            assert!(ulps(ln_1p_f32(-x), (-x as f64).ln_1p() as f32) <= 1, "{x}");
            x *= 1.7;
        }
    }

    #[test]
    fn expm1_and_tanh_match_std() {
        let mut worst = (0, 0);
        let mut x = -30.0f32;
        while x < 30.0 {
            worst.0 = worst.0.max(ulps(expm1_f32(x), (x as f64).exp_m1() as f32));
            worst.1 = worst.1.max(ulps(tanh_f32(x), (x as f64).tanh() as f32));
            x += 0.000_377;
        }
        assert!(
            worst.0 <= 3 && worst.1 <= 4,
            "worst (expm1, tanh) {worst:?} ulp"
        );
        let mut x = 1e-38f32;
        while x < 1e-2 {
            for v in [x, -x] {
                assert!(ulps(expm1_f32(v), (v as f64).exp_m1() as f32) <= 1, "{v}");
                assert!(ulps(tanh_f32(v), (v as f64).tanh() as f32) <= 2, "{v}");
            }
            x *= 1.7;
        }
        assert_eq!(expm1_f32(0.0), 0.0);
        assert_eq!(expm1_f32(f32::NEG_INFINITY), -1.0);
        assert_eq!(expm1_f32(100.0), f32::INFINITY);
        assert!(expm1_f32(f32::NAN).is_nan() && tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(-1e30), -1.0);
        assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn fast_powf_for_probabilities() {
        for &q in &[0.0f32, 1e-30, 1e-6, 0.1, 0.5, 0.999, 1.0] {
            for &g in &[0.0f32, 0.5, 1.0, 2.0, 5.0] {
                let want = (q as f64).powf(g as f64);
                let got = q.fast_powf(g) as f64;
                assert!(
                    (got - want).abs() <= 1e-6 * want + 1e-45,
                    "{q}^{g}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn exp_neg_matches_std_within_2_ulp() {
        for fma in [false, true] {
            if fma && !has_fma() {
                continue;
            }
            let mut worst = 0;
            let mut x = -87.3f32;
            while x < 88.3 {
                let want = (x as f64).exp() as f32;
                let got = if fma {
                    vectorized(|| exp_neg_f32::<true>(x))
                } else {
                    exp_neg_f32::<false>(x)
                };
                worst = worst.max(ulps(got, want));
                x += 0.000_913;
            }
            assert!(worst <= 2, "fma {fma}: worst {worst} ulp");
        }
        assert_eq!(exp_neg_f32::<false>(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_neg_f32::<false>(-90.0), 0.0);
        assert_eq!(exp_neg_f32::<false>(0.0), 1.0);
        assert!(exp_neg_f32::<false>(f32::NAN).is_nan());
    }

    #[test]
    fn ln_special_values() {
        assert_eq!(ln_f32(1.0), 0.0);
        assert_eq!(ln_f32(0.0), f32::NEG_INFINITY);
        assert_eq!(ln_f32(f32::INFINITY), f32::INFINITY);
        assert!(ln_f32(-1.0).is_nan() && ln_f32(f32::NAN).is_nan());
        assert_eq!(ln_1p_f32(0.0), 0.0);
        assert_eq!(ln_1p_f32(-1.0), f32::NEG_INFINITY);
        assert_eq!(ln_1p_f32(f32::INFINITY), f32::INFINITY);
        assert!(ulps(ln_1p_f32(f32::MAX), f32::MAX.ln()) <= 1);
        assert!(ulps(ln_f32(1e-40), (1e-40f64).ln() as f32) <= 2);
        assert!(ln_1p_f32(-2.0).is_nan() && ln_1p_f32(f32::NAN).is_nan());
    }

    #[test]
    fn reductions_agree_with_plain_loops() {
        for n in [0usize, 1, 5, 16, 17, 100, 1000] {
            let x: Vec<f64> = (0..n).map(|i| ((i * 37 % 101) as f64) - 50.0).collect();
            let want_max = x.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(max_of(&x), want_max);
            let want_sum: f64 = x.iter().sum();
            assert_eq!(sum_of(&x), want_sum); // integers: exact in any order
            let m = if n == 0 { 0.0 } else { want_max };
            let mut out = vec![0.0; n];
            let s = vectorized(|| exp_shift_sum(&x, m, &mut out[..]));
            let want: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
            assert_eq!(out, want);
            assert!((s - want.iter().sum::<f64>()).abs() <= 1e-13 * s.max(1.0));
            assert!((sum_exp_shift(&x, m) - s).abs() <= 1e-13 * s.max(1.0));
        }
        let mut x = vec![1.0f32; 40];
        x[33] = f32::NAN;
        assert!(max_of(&x).is_nan());
        x[33] = f32::INFINITY;
        assert_eq!(max_of(&x), f32::INFINITY);
        assert!(max_of(&[1.0f32, f32::NAN, 2.0]).is_nan()); // the short-row loop
                                                            // a NaN in the L-wide body and in the padded tail of a longer row
        for at in [10, 130] {
            let mut x = vec![-3.0f32; 150];
            x[at] = f32::NAN;
            assert!(max_of(&x).is_nan());
        }
        // all below 0, the max in each group of lanes and in the tail
        for n in [16, 64, 150, 1000] {
            for at in (0..n).step_by(7) {
                let mut x: Vec<f32> = (0..n).map(|i| -5.0 - i as f32).collect();
                x[at] = -1.5;
                assert_eq!(max_of(&x), -1.5, "n {n}, at {at}");
                let mut x: Vec<f64> = (0..n).map(|i| -5.0 - i as f64).collect();
                x[at] = -1.5;
                assert_eq!(max_of(&x), -1.5, "n {n}, at {at}");
            }
        }
    }

    #[test]
    fn f32_row_kernels_fill_every_slot_and_sum_only_real_lanes() {
        // lengths around the L-wide body and the W-wide padded tail
        for n in [1usize, 15, 16, 17, 63, 64, 65, 100, 1000] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32) * 0.25 - 12.0)
                .collect();
            let m = max_of(&x);
            assert_eq!(m, x.iter().copied().fold(f32::NEG_INFINITY, f32::max));
            let mut out = vec![f32::NAN; n];
            let s = vectorized(|| exp_shift_sum(&x, m, &mut out[..]));
            let mut want_sum = 0.0f64;
            for (&o, &v) in out.iter().zip(&x) {
                let want = ((v - m) as f64).exp();
                want_sum += want;
                assert!(
                    (o as f64 - want).abs() <= 4e-7 * want,
                    "n {n}: {o} vs {want}"
                );
            }
            assert!(
                (s as f64 - want_sum).abs() <= 1e-6 * want_sum,
                "n {n}: {s} vs {want_sum}"
            );
        }
    }
}
