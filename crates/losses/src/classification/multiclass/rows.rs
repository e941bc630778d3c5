//! What the multiclass losses share: the checks on a `[..., C]` input and its
//! `[...]` class ids, per-class option vectors and the row loops, which
//! split over rayon when the input is large. Their means divide by a
//! denominator of their own (a weight total, the items not ignored) through
//! [`crate::common::reduce_over`] and [`crate::common::Upstream::over`].

use lossgraph_autodiff::{Result, Tape, Var};
use lossgraph_tensor::parallel::{for_each_row_mut, PAR_THRESHOLD};
use lossgraph_tensor::simd::{self, vectorized};
use lossgraph_tensor::{Error, Float, Shape, Tensor};
use rayon::prelude::*;

/// The layout of a `[..., C]` input: `rows` rows of `classes` values, and the
/// shape `[...]` of the unreduced loss.
#[derive(Debug, Clone)]
pub(crate) struct Rows {
    /// Number of rows (product of the leading dims).
    pub rows: usize,
    /// Size of the class axis, `C ≥ 1`.
    pub classes: usize,
    /// The leading dims `[...]`: the shape of a `"none"` output.
    pub batch: Shape,
}

/// Split `x: [..., C]` into rows.
///
/// # Errors
/// `ShapeMismatch` for a 0-d input or an empty class axis.
pub(crate) fn rows_of(op: &str, x: &Shape, what: &str) -> Result<Rows> {
    let dims = x.dims();
    let Some((&classes, lead)) = dims.split_last() else {
        return Err(Error::shape(op, &[dims], format!("{what} must be [..., C], not 0-d")).into());
    };
    if classes == 0 {
        return Err(Error::shape(op, &[dims], format!("{what} has an empty class axis")).into());
    }
    Ok(Rows {
        rows: lead.iter().product(),
        classes,
        batch: Shape::from(lead),
    })
}

/// Check `x: [..., C]` against class ids `target: [...]`: every id lies in
/// `[0, C)` or equals `ignore` (when the op has an `ignore_index`).
///
/// # Errors
/// `ShapeMismatch` when `target`'s shape is not `x`'s without its last axis;
/// `InvalidTarget` for an id out of range.
pub(crate) fn check_ids(
    op: &str,
    x: &Shape,
    target: &Tensor<i64>,
    ignore: Option<i64>,
) -> Result<Rows> {
    let r = rows_of(op, x, "the input")?;
    if target.shape() != &r.batch {
        return Err(Error::shape(
            op,
            &[x.dims(), target.dims()],
            "target must have the input's shape without its last (class) axis",
        )
        .into());
    }
    let c = r.classes as i64;
    if let Some((pos, &bad)) = target
        .as_slice()
        .iter()
        .enumerate()
        .find(|(_, &y)| Some(y) != ignore && !(0..c).contains(&y))
    {
        let also = ignore.map_or(String::new(), |i| format!(" and is not ignore_index {i}"));
        return Err(Error::target(
            op,
            format!("class id {bad} at position {pos} is outside [0, {c}){also}"),
        )
        .into());
    }
    Ok(r)
}

/// The class of id `y`, or `None` when it is `ignore` (ids are checked first).
#[inline]
pub(crate) fn class_of(y: i64, ignore: Option<i64>) -> Option<usize> {
    if Some(y) == ignore {
        None
    } else {
        usize::try_from(y).ok()
    }
}

/// A per-class option (`weight`, `alpha`) cast to `T`.
///
/// # Errors
/// `ShapeMismatch` when its length is not `classes`.
pub(crate) fn per_class<T: Float>(
    op: &str,
    name: &str,
    v: Option<&[f64]>,
    classes: usize,
) -> Result<Option<Vec<T>>> {
    match v {
        None => Ok(None),
        Some(v) if v.len() == classes => Ok(Some(v.iter().map(|&w| T::of(w)).collect())),
        Some(v) => Err(Error::shape(
            op,
            &[&[v.len()], &[classes]],
            format!(
                "{name} must have one entry per class ({classes}), not {}",
                v.len()
            ),
        )
        .into()),
    }
}

/// The per-class vector at class `c` (1 when absent).
#[inline]
pub(crate) fn at<T: Float>(v: &Option<Vec<T>>, c: usize) -> T {
    v.as_ref().map_or(T::one(), |v| v[c])
}

/// Elements per block of the blocked row kernels (64 KiB of `f32`): a block
/// holds `max(1, BLOCK_ELEMS / C)` rows.
const BLOCK_ELEMS: usize = 1 << 14;

/// Rows per block of the blocked row kernels for rows of `classes` values.
pub(crate) fn rows_per_block(classes: usize) -> usize {
    (BLOCK_ELEMS / classes.max(1)).max(1)
}

/// Run `f(first_row, block_of_buf, block_of_a, block_of_b)` over blocks of
/// [`rows_per_block`] rows: `buf` holds `classes` values per row (when
/// present), `a` and `b` one value per row. Over rayon when large.
pub(crate) fn row_blocks<E: Send, A: Send, B: Send>(
    classes: usize,
    buf: Option<&mut [E]>,
    a: &mut [A],
    b: &mut [B],
    f: impl Fn(usize, Option<&mut [E]>, &mut [A], &mut [B]) + Sync + Send,
) {
    let rows = a.len();
    debug_assert_eq!(rows, b.len());
    if rows == 0 {
        return;
    }
    if rows.saturating_mul(classes) < PAR_THRESHOLD {
        return f(0, buf, a, b);
    }
    let rpb = rows_per_block(classes);
    let blocks: Vec<Option<&mut [E]>> = match buf {
        Some(buf) => buf.chunks_mut(rpb * classes).map(Some).collect(),
        None => (0..rows.div_ceil(rpb)).map(|_| None).collect(),
    };
    blocks
        .into_par_iter()
        .zip(a.par_chunks_mut(rpb))
        .zip(b.par_chunks_mut(rpb))
        .enumerate()
        .for_each(|(k, ((buf, a), b))| f(k * rpb, buf, a, b));
}

/// Run `f(first_row, block)` over blocks of [`rows_per_block`] rows of a
/// buffer of `classes` values per row, over rayon when large.
pub(crate) fn buf_blocks<E: Send>(
    classes: usize,
    buf: &mut [E],
    f: impl Fn(usize, &mut [E]) + Sync + Send,
) {
    if buf.is_empty() || classes == 0 {
        return;
    }
    if buf.len() < PAR_THRESHOLD {
        return f(0, buf);
    }
    let rpb = rows_per_block(classes);
    buf.par_chunks_mut(rpb * classes)
        .enumerate()
        .for_each(|(k, b)| f(k * rpb, b));
}

/// `f(i)` for every row `i < rows`, over rayon when `rows · width` is large.
pub(crate) fn map_rows<R: Send>(
    rows: usize,
    width: usize,
    f: impl Fn(usize) -> R + Sync + Send,
) -> Vec<R> {
    if rows > 1 && rows.saturating_mul(width) >= PAR_THRESHOLD {
        (0..rows).into_par_iter().map(f).collect()
    } else {
        (0..rows).map(f).collect()
    }
}

/// A `[rows, classes]`-sized gradient (shaped `shape`) whose row `i` is
/// written by `f(i, row)`, starting from zeros.
pub(crate) fn grad_rows<T: Float>(
    shape: &Shape,
    classes: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) -> Result<Tensor<T>> {
    let mut buf = lossgraph_tensor::pool::take_zeroed(shape.numel());
    for_each_row_mut(&mut buf, classes, f);
    Ok(Tensor::from_vec(buf, shape)?)
}

/// Row `i` of a row-major buffer of width `c`.
#[inline]
pub(crate) fn row<T>(x: &[T], i: usize, c: usize) -> &[T] {
    &x[i * c..(i + 1) * c]
}

/// For the naive twins: each row's class id from the ids and the options
/// alone, `None` where it is `ignore_index`. The twins call the fused op's
/// constructor for its validation only (so both flavors refuse the same
/// inputs) and take every value they compute from here and the options, so
/// that a bug in the fused op's bookkeeping (weights, the ignore test, the
/// mean's denominator) cannot agree with itself.
pub(crate) fn naive_classes(ids: &Tensor<i64>, ignore_index: Option<i64>) -> Vec<Option<usize>> {
    ids.as_slice()
        .iter()
        .map(|&y| (Some(y) != ignore_index).then_some(y as usize))
        .collect()
}

/// Entry `k` of optional per-class weights (1 when there are none).
pub(crate) fn class_weight(weights: &Option<Vec<f64>>, k: usize) -> f64 {
    weights.as_ref().map_or(1.0, |w| w[k])
}

/// A constant `[..., C]` tensor (for naive twins) whose row `i` is filled by
/// `f(i, row)` from zeros, recorded on `tape`.
pub(crate) fn constant_rows<T: Float>(
    tape: &Tape<T>,
    shape: &Shape,
    classes: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) -> Result<Var<T>> {
    Ok(tape.constant(grad_rows(shape, classes, f)?))
}

/// The log-sum-exp of one row kept as two parts, `lse = max + log_sum` with
/// `log_sum = log Σ_c e^{z_c − max}` in `[0, log C]`.
///
/// Kept apart because adding them rounds: in f32, `lse` of logits near 7000
/// carries an absolute error of ~2e-4, which would become the relative error
/// of a loss near 1 and of every probability. `z_k − max` is exact for the
/// classes that matter, so `−log p_k = (max − z_k) + log_sum` and
/// `p_k = e^{(z_k − max) − log_sum}` keep full precision.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Lse<T> {
    /// The row's largest logit (NaN if any is NaN).
    pub max: T,
    /// `log Σ_c e^{z_c − max}` (0 when `max` is not finite).
    pub log_sum: T,
}

impl<T: Float> Lse<T> {
    /// The parts of row `z`'s log-sum-exp (vectorised: [`simd::max`],
    /// [`simd::sum_exp_shift`]).
    pub fn of(z: &[T]) -> Self {
        vectorized(
            #[inline(always)]
            || Self::of_inline(z),
        )
    }
    /// [`Lse::of`] for callers already inside a [`vectorized`] region.
    #[inline(always)]
    pub fn of_inline(z: &[T]) -> Self {
        let max = simd::max(z);
        if !max.is_finite() {
            return Lse {
                max,
                log_sum: T::zero(),
            };
        }
        let s = simd::sum_exp_shift(z, max);
        Lse {
            max,
            log_sum: s.ln(),
        }
    }
    /// `−log softmax(z)_k = lse − z_k`.
    #[inline]
    pub fn nlp(self, zk: T) -> T {
        (self.max - zk) + self.log_sum
    }
    /// `softmax(z)_k = e^{z_k − lse}` ([`Float::fast_exp`]).
    #[inline(always)]
    pub fn p(self, zk: T) -> T {
        ((zk - self.max) - self.log_sum).fast_exp()
    }
}

/// `Σ_{k≠y} f(z_k)` over row `z`: the slices before and after `y`, each a
/// vectorisable multi-accumulator sum (call inside [`vectorized`], with `f`
/// marked `#[inline(always)]`).
#[inline(always)]
pub(crate) fn sum_others<T: Float>(z: &[T], y: usize, f: impl Fn(T) -> T) -> T {
    simd::sum_map(&z[..y], &f) + simd::sum_map(&z[y + 1..], &f)
}

/// The softmax of one row seen from its true class `y`, without cancellation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrueClass<T> {
    /// The row's log-sum-exp.
    pub lse: Lse<T>,
    /// `log p_y`.
    pub log_p: T,
    /// `p_y`.
    pub p: T,
    /// `1 − p_y`, summed from the other classes (`Σ_{c≠y} p_c`), so it keeps
    /// its relative precision when `p_y` is close to 1.
    pub q: T,
}

/// [`TrueClass`] of row `z` for class `y < z.len()`.
///
/// With `m = max z`, `s_y = e^{z_y − m}` and `s_o = Σ_{c≠y} e^{z_c − m}`:
/// `p_y = s_y/(s_y + s_o)`, `1 − p_y = s_o/(s_y + s_o)`, and
/// `log p_y = −log1p(s_o/s_y)` when `y` holds most of the mass (so a tiny
/// `log p_y` keeps its digits), else `(z_y − m) − log(s_y + s_o)`.
///
/// Vectorised (call it inside [`vectorized`]): the max and the sum over the
/// other classes (the slices before and after `y`) are multi-accumulator
/// loops of [`Float::fast_exp`]; the few per-row logs are exact.
#[inline(always)]
pub(crate) fn true_class<T: Float>(z: &[T], y: usize) -> TrueClass<T> {
    let m = simd::max(z);
    let zy = z[y];
    let sy = (zy - m).fast_exp();
    let so = simd::sum_exp_shift(&z[..y], m) + simd::sum_exp_shift(&z[y + 1..], m);
    let s = sy + so;
    let lse = Lse {
        max: m,
        log_sum: s.ln(),
    };
    let log_p = if sy >= so {
        -(so / sy).ln_1p()
    } else {
        -lse.nlp(zy)
    };
    TrueClass {
        lse,
        log_p,
        p: sy / s,
        q: so / s,
    }
}
