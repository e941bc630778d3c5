//! When to go parallel. Small kernels stay serial: rayon's fork/join costs
//! microseconds, which is more than a few thousand flops.

use crate::float::Element;
use rayon::prelude::*;
use std::cell::Cell;

/// Element count above which elementwise kernels split over rayon.
pub const PAR_THRESHOLD: usize = 1 << 15;
/// Chunk size for parallel elementwise work.
pub const PAR_CHUNK: usize = 1 << 13;

/// `out[i] = f(a[i])`, in parallel for large inputs, into a pooled buffer.
pub(crate) fn map<T: Copy + Sync, U: Element>(a: &[T], f: impl Fn(T) -> U + Sync) -> Vec<U> {
    let mut out = crate::pool::take(a.len());
    if a.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(PAR_CHUNK)
            .zip(a.par_chunks(PAR_CHUNK))
            .for_each(|(o, x)| {
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = f(x);
                }
            });
    } else {
        for (o, &x) in out.iter_mut().zip(a) {
            *o = f(x);
        }
    }
    out
}

/// `out[i] = f(a[i])` like [`map`], with each chunk's loop compiled for the
/// widest instruction set the CPU has ([`crate::simd::vectorized`]), for
/// an `f` built from the branch-free polynomials (`Float::fast_exp` and
/// kin), which then run 8 or 16 lanes at a time. Mark `f`
/// `#[inline(always)]` so it is compiled inside the wrapper.
pub(crate) fn map_vectorized<T: Copy + Sync, U: Element>(
    a: &[T],
    f: impl Fn(T) -> U + Sync,
) -> Vec<U> {
    map_chunks(a, |x, o| {
        crate::simd::vectorized(
            #[inline(always)]
            || {
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = f(x);
                }
            },
        )
    })
}

/// `f(input_chunk, output_chunk)` over fixed chunks of `a` and of a pooled
/// output buffer of its length, in parallel for large inputs; `f` writes
/// every element of its output chunk.
pub(crate) fn map_chunks<T: Sync, U: Element>(
    a: &[T],
    f: impl Fn(&[T], &mut [U]) + Sync,
) -> Vec<U> {
    let mut out = crate::pool::take(a.len());
    if a.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(PAR_CHUNK)
            .zip(a.par_chunks(PAR_CHUNK))
            .for_each(|(o, x)| f(x, o));
    } else {
        f(a, &mut out);
    }
    out
}

/// `out[i] = f(a[i], b[i])` for equal-length slices, in parallel for large
/// inputs, into a pooled buffer.
pub(crate) fn zip_map<T: Copy + Sync, U: Element>(
    a: &[T],
    b: &[T],
    f: impl Fn(T, T) -> U + Sync,
) -> Vec<U> {
    debug_assert_eq!(a.len(), b.len());
    let mut out = crate::pool::take(a.len());
    let run = |o: &mut [U], x: &[T], y: &[T]| {
        for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
            *o = f(x, y);
        }
    };
    if a.len() >= PAR_THRESHOLD {
        out.par_chunks_mut(PAR_CHUNK)
            .zip(a.par_chunks(PAR_CHUNK).zip(b.par_chunks(PAR_CHUNK)))
            .for_each(|(o, (x, y))| run(o, x, y));
    } else {
        run(&mut out, a, b);
    }
    out
}

/// Run `f(row_index, row)` over the rows of a row-major buffer, in parallel
/// when the buffer is large.
pub fn for_each_row_mut<T: Send>(
    buf: &mut [T],
    row_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    if row_len == 0 {
        return;
    }
    if buf.len() >= PAR_THRESHOLD {
        buf.par_chunks_mut(row_len)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    } else {
        buf.chunks_mut(row_len)
            .enumerate()
            .for_each(|(i, r)| f(i, r));
    }
}

thread_local! {
    /// Set inside [`serial_products`]: matrix products on this thread use
    /// one thread.
    static SERIAL_PRODUCTS: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` with the matrix products it makes on this thread single-threaded.
///
/// For independent products run side by side (`rayon::join`, one per
/// core): each then keeps its core, instead of both splitting over every
/// thread and handing work back and forth between them.
pub fn serial_products<R>(f: impl FnOnce() -> R) -> R {
    let before = SERIAL_PRODUCTS.with(|s| s.replace(true));
    let r = f();
    SERIAL_PRODUCTS.with(|s| s.set(before));
    r
}

/// Whether products on this thread should use one thread
/// ([`serial_products`]).
pub(crate) fn products_serial() -> bool {
    SERIAL_PRODUCTS.with(|s| s.get())
}
