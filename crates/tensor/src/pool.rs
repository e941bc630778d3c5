//! Reuse of large tensor buffers from one training step to the next.
//!
//! A training loop makes the same large buffers every step: activations,
//! a loss's gradient, the optimiser's temporaries. With the system
//! allocator each one of at least 128 KiB is a fresh `mmap` (glibc's
//! threshold), so every step pays a page fault per 4 KiB page written
//! — for the 131 MB gradient of a `[1024, 32000]` cross-entropy that is
//! most of the step. PyTorch avoids it with a caching allocator; this
//! module is ours, small and explicit:
//!
//! - when the last tensor holding a buffer of at least
//!   [`MIN_POOLED_BYTES`] drops, the buffer goes into the pool (a free list
//!   per element type and capacity) instead of back to the system;
//! - kernels ask the pool for their outputs ([`take`], [`take_empty`],
//!   [`take_zeroed`]) and get a freed buffer of the same size when there is
//!   one (capacity between `n` and `n + n/4`), a fresh one when not;
//! - the pool holds at most [`cap_bytes`] (default [`DEFAULT_CAP_BYTES`],
//!   1 GiB); a buffer that would pass the cap is freed as usual.
//!
//! What it costs: the pool keeps memory that a step freed until the next
//! step asks for it, so in a steady loop peak RSS is the step's own peak
//! (the same buffers go round); in a program that stops training and does
//! something else, up to the cap stays reserved until [`release`] is
//! called. It is on by default; `LOSSGRAPH_POOL=off` (or `0`) turns it off,
//! `LOSSGRAPH_POOL_MB=<n>` sets the cap, and [`set_cap_bytes`] does either
//! from code.
//!
//! ```
//! use lossgraph_tensor::{pool, Tensor};
//! let x = Tensor::<f32>::randn([1 << 20], 0.0, 1.0, 7)?;
//! let before = pool::stats();
//! for _ in 0..3 {
//!     // each step's 4 MiB output is the buffer the last step dropped
//!     let y = x.exp();
//!     drop(y);
//! }
//! let after = pool::stats();
//! assert!(after.hits >= before.hits + 2);
//! pool::release(); // hand everything pooled back to the system
//! assert_eq!(pool::stats().pooled_bytes, 0);
//! # Ok::<(), lossgraph_tensor::Error>(())
//! ```

use crate::float::Element;
use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Buffers smaller than this are left to the system allocator, which
/// serves them from its own free lists without page faults.
pub const MIN_POOLED_BYTES: usize = 128 << 10;
/// The default bound on the bytes the pool holds.
pub const DEFAULT_CAP_BYTES: usize = 1 << 30;

/// What the pool holds and how often it served a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Bytes held in free buffers now.
    pub pooled_bytes: usize,
    /// The most bytes it has held at once.
    pub peak_pooled_bytes: usize,
    /// The current cap ([`cap_bytes`]).
    pub cap_bytes: usize,
    /// Requests of at least [`MIN_POOLED_BYTES`] served by a freed buffer.
    pub hits: u64,
    /// Requests of that size that needed a fresh allocation.
    pub misses: u64,
    /// Freed buffers let go to the system because the pool was full.
    pub refused: u64,
}

/// The process's pool, which tensors use.
static GLOBAL: Pool = Pool::new();

/// The pool's counters and size now.
pub fn stats() -> PoolStats {
    GLOBAL.stats()
}

/// The most bytes the pool holds: `LOSSGRAPH_POOL_MB` MiB, 0 when
/// `LOSSGRAPH_POOL` is `off` or `0`, [`DEFAULT_CAP_BYTES`] otherwise, unless
/// [`set_cap_bytes`] said otherwise.
pub fn cap_bytes() -> usize {
    GLOBAL.cap_bytes()
}

/// Set the cap (0 turns the pool off), releasing what no longer fits.
pub fn set_cap_bytes(bytes: usize) {
    GLOBAL.set_cap_bytes(bytes)
}

/// Hand every pooled buffer back to the system.
pub fn release() {
    GLOBAL.release()
}

/// A buffer of `n` elements whose contents are unspecified (a freed
/// buffer's old values, or zeros): for kernels that write every element.
/// In debug builds the elements are set to [`Element::poison`] first, so
/// an element a kernel forgot to write shows up in tests.
pub fn take<T: Element>(n: usize) -> Vec<T> {
    let mut v = match GLOBAL.reuse::<T>(n) {
        Some(mut v) => {
            if v.len() > n {
                v.truncate(n);
            } else {
                v.resize(n, T::default());
            }
            v
        }
        // `vec!` of zero bits asks for zeroed memory, which fresh pages
        // already are: no pass over the buffer here
        None => vec![T::default(); n],
    };
    if cfg!(debug_assertions) {
        v.fill(T::poison());
    }
    v
}

/// An empty vector with room for at least `n` elements, for kernels that
/// `extend` or `push` their output.
pub fn take_empty<T: Element>(n: usize) -> Vec<T> {
    match GLOBAL.reuse::<T>(n) {
        Some(mut v) => {
            v.clear();
            v
        }
        None => Vec::with_capacity(n),
    }
}

/// A buffer of `n` zeros (`T::default()`).
pub fn take_zeroed<T: Element>(n: usize) -> Vec<T> {
    match GLOBAL.reuse::<T>(n) {
        Some(mut v) => {
            v.clear();
            v.resize(n, T::default());
            v
        }
        None => vec![T::default(); n],
    }
}

/// A freed buffer with room for `n` elements, if the pool has one.
pub(crate) fn reuse<T: Element>(n: usize) -> Option<Vec<T>> {
    GLOBAL.reuse(n)
}

/// Give a buffer back: kept when it is large and fits under the cap,
/// freed otherwise. Tensor storage calls this when it drops; a kernel may
/// call it for a large temporary of its own.
pub fn recycle<T: Element>(v: Vec<T>) {
    GLOBAL.recycle(v)
}

/// A pool of freed buffers. The crate has one ([`GLOBAL`]); the type is
/// separate so that tests can count on a pool no other test uses.
struct Pool {
    free: Mutex<FreeLists>,
    /// The cap in bytes; `UNSET` until the environment is first read.
    cap: AtomicUsize,
    hits: AtomicU64,
    misses: AtomicU64,
    refused: AtomicU64,
    peak_bytes: AtomicUsize,
}

/// The free buffers: a list per (element type, capacity), newest last (the
/// one most likely still in cache is handed out first).
struct FreeLists {
    lists: BTreeMap<(TypeId, usize), FreeList>,
    bytes: usize,
}

/// Freed buffers of one element type and capacity.
#[derive(Default)]
struct FreeList {
    /// Bytes per buffer (capacity × element size).
    buf_bytes: usize,
    /// Each a `Vec<T>` of the key's type.
    bufs: Vec<Box<dyn Any + Send>>,
}

const UNSET: usize = usize::MAX;

impl Pool {
    const fn new() -> Self {
        Pool {
            free: Mutex::new(FreeLists {
                lists: BTreeMap::new(),
                bytes: 0,
            }),
            cap: AtomicUsize::new(UNSET),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            peak_bytes: AtomicUsize::new(0),
        }
    }

    fn stats(&self) -> PoolStats {
        PoolStats {
            pooled_bytes: self.lock().bytes,
            peak_pooled_bytes: self.peak_bytes.load(Ordering::Relaxed),
            cap_bytes: self.cap_bytes(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }

    fn cap_bytes(&self) -> usize {
        match self.cap.load(Ordering::Relaxed) {
            UNSET => {
                let cap = cap_from_env(
                    std::env::var("LOSSGRAPH_POOL").ok().as_deref(),
                    std::env::var("LOSSGRAPH_POOL_MB").ok().as_deref(),
                );
                // another thread may have set it meanwhile: keep theirs
                let _ = self
                    .cap
                    .compare_exchange(UNSET, cap, Ordering::Relaxed, Ordering::Relaxed);
                self.cap.load(Ordering::Relaxed)
            }
            cap => cap,
        }
    }

    fn set_cap_bytes(&self, bytes: usize) {
        self.cap.store(bytes.min(UNSET - 1), Ordering::Relaxed);
        let dropped = {
            let mut free = self.lock();
            let mut dropped = Vec::new();
            while free.bytes > bytes {
                // the largest buffers first: fewest to free
                let Some(mut entry) = free.lists.last_entry() else {
                    break;
                };
                let list = entry.get_mut();
                let buf_bytes = list.buf_bytes;
                let buf = list.bufs.pop();
                if list.bufs.is_empty() {
                    entry.remove();
                }
                if let Some(buf) = buf {
                    free.bytes -= buf_bytes;
                    dropped.push(buf);
                }
            }
            dropped
        };
        // freed outside the lock: unmapping a large block takes a while
        drop(dropped);
    }

    fn release(&self) {
        let lists = {
            let mut free = self.lock();
            free.bytes = 0;
            std::mem::take(&mut free.lists)
        };
        drop(lists);
    }

    fn recycle<T: Element>(&self, v: Vec<T>) {
        let bytes = v.capacity() * std::mem::size_of::<T>();
        if bytes < MIN_POOLED_BYTES {
            return;
        }
        let cap = self.cap_bytes();
        if cap == 0 {
            return;
        }
        let key = (TypeId::of::<T>(), v.capacity());
        let refused = {
            let mut free = self.lock();
            if free.bytes + bytes > cap {
                Some(v)
            } else {
                free.bytes += bytes;
                self.peak_bytes.fetch_max(free.bytes, Ordering::Relaxed);
                let list = free.lists.entry(key).or_default();
                list.buf_bytes = bytes;
                list.bufs.push(Box::new(v));
                None
            }
        };
        if refused.is_some() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        drop(refused);
    }

    /// A freed buffer of `T` with capacity in `n ..= n + n/4` (more would
    /// hold memory the request does not use), if the pool has one and the
    /// request is large enough to be pooled.
    fn reuse<T: Element>(&self, n: usize) -> Option<Vec<T>> {
        let bytes = n.checked_mul(std::mem::size_of::<T>())?;
        if bytes < MIN_POOLED_BYTES || self.cap_bytes() == 0 {
            return None;
        }
        let tid = TypeId::of::<T>();
        let found = {
            let mut free = self.lock();
            let key = free
                .lists
                .range((tid, n)..=(tid, n + n / 4))
                .map(|(k, _)| *k)
                .next();
            key.and_then(|key| {
                let list = free.lists.get_mut(&key)?;
                let buf = list.bufs.pop();
                let buf_bytes = list.buf_bytes;
                if list.bufs.is_empty() {
                    free.lists.remove(&key);
                }
                if buf.is_some() {
                    free.bytes -= buf_bytes;
                }
                buf
            })
        };
        let v = found.and_then(|b| b.downcast::<Vec<T>>().ok()).map(|b| *b);
        let counter = if v.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        v
    }

    /// The free lists, also after a thread panicked while holding them
    /// (they are only buffers and a byte count, consistent between
    /// statements).
    fn lock(&self) -> MutexGuard<'_, FreeLists> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The cap the two variables ask for. A value that does not parse keeps
/// the default: a typo in an environment variable should not change how
/// much memory a program holds.
fn cap_from_env(pool: Option<&str>, mb: Option<&str>) -> usize {
    if matches!(pool.map(str::trim), Some("off" | "0" | "false" | "no")) {
        return 0;
    }
    mb.and_then(|m| m.trim().parse::<usize>().ok())
        .map_or(DEFAULT_CAP_BYTES, |m| m.saturating_mul(1 << 20))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIG: usize = MIN_POOLED_BYTES / 4; // f32 elements of a poolable buffer

    /// A private pool with the default cap, so that no other test's
    /// buffers are counted.
    fn pool() -> Pool {
        let p = Pool::new();
        p.set_cap_bytes(DEFAULT_CAP_BYTES);
        p
    }

    #[test]
    fn env_values_give_the_cap() {
        assert_eq!(cap_from_env(None, None), DEFAULT_CAP_BYTES);
        assert_eq!(cap_from_env(Some("off"), Some("64")), 0);
        assert_eq!(cap_from_env(Some("0"), None), 0);
        assert_eq!(cap_from_env(Some("on"), Some("64")), 64 << 20);
        assert_eq!(cap_from_env(None, Some("lots")), DEFAULT_CAP_BYTES);
    }

    #[test]
    fn a_dropped_buffer_is_handed_out_again() {
        let p = pool();
        let v = vec![1.0f32; BIG + 100];
        let ptr = v.as_ptr();
        p.recycle(v);
        assert_eq!(p.stats().pooled_bytes, (BIG + 100) * 4);
        // a slightly smaller request fits the same buffer
        let w = p.reuse::<f32>(BIG).unwrap();
        assert_eq!(w.as_ptr(), ptr);
        assert_eq!((p.stats().pooled_bytes, p.stats().hits), (0, 1));
        // another element type never gets it
        p.recycle(w);
        assert!(p.reuse::<i64>(BIG / 2).is_none());
        assert_eq!(p.stats().pooled_bytes, (BIG + 100) * 4);
        assert_eq!(p.stats().misses, 1);
    }

    #[test]
    fn small_and_much_smaller_requests_do_not_reuse() {
        let p = pool();
        p.recycle(vec![1.0f32; 100]);
        assert_eq!(p.stats().pooled_bytes, 0, "small buffers go to the system");
        p.recycle(vec![1.0f32; 2 * BIG]);
        // half the size: a fresh buffer rather than holding twice the memory
        assert!(p.reuse::<f32>(BIG).is_none());
        assert!(p.reuse::<f32>(2 * BIG - 2 * BIG / 5).is_some());
        assert_eq!(p.stats().pooled_bytes, 0);
    }

    #[test]
    fn the_cap_bounds_what_is_held_and_zero_turns_it_off() {
        let p = pool();
        p.set_cap_bytes(3 * BIG * 4);
        for _ in 0..5 {
            p.recycle(vec![0.0f32; BIG]);
        }
        assert_eq!(p.stats().pooled_bytes, 3 * BIG * 4);
        assert_eq!(p.stats().refused, 2);
        p.set_cap_bytes(BIG * 4);
        assert_eq!(p.stats().pooled_bytes, BIG * 4, "lowering the cap releases");
        p.set_cap_bytes(0);
        assert_eq!(p.stats().pooled_bytes, 0);
        p.recycle(vec![0.0f32; BIG]);
        assert_eq!(p.stats().pooled_bytes, 0);
        assert!(p.reuse::<f32>(BIG).is_none());
        p.set_cap_bytes(DEFAULT_CAP_BYTES);
        p.recycle(vec![0.0f32; BIG]);
        p.release();
        assert_eq!(p.stats().pooled_bytes, 0);
        assert_eq!(p.stats().peak_pooled_bytes, 3 * BIG * 4);
    }

    #[test]
    fn the_module_functions_give_what_they_say() {
        // the global pool: other tests use it at the same time, so only
        // what a concurrent user cannot change is asserted
        recycle(vec![5.0f64; BIG]);
        let z = take_zeroed::<f64>(BIG);
        assert!(z.len() == BIG && z.iter().all(|&v| v == 0.0));
        recycle(z);
        let e = take_empty::<f64>(BIG);
        assert!(e.is_empty() && e.capacity() >= BIG);
        let t = take::<f64>(BIG + 3);
        assert_eq!(t.len(), BIG + 3);
        if cfg!(debug_assertions) {
            assert!(t.iter().all(|v| v.is_nan()), "debug builds poison");
        }
    }

    #[test]
    fn threads_share_the_pool_without_losing_count() {
        let p = pool();
        std::thread::scope(|s| {
            for t in 0..4 {
                let p = &p;
                s.spawn(move || {
                    for i in 0..200 {
                        let n = BIG + (t * 7 + i) % 3;
                        let mut v = p.reuse::<f32>(n).unwrap_or_else(|| vec![0.0; n]);
                        v.fill(t as f32);
                        assert!(v.iter().all(|&x| x == t as f32));
                        p.recycle(v);
                    }
                });
            }
        });
        let st = p.stats();
        // every buffer came back, and each was counted once
        assert!(st.pooled_bytes > 0 && st.hits > 0, "{st:?}");
        assert_eq!(st.hits + st.misses, 800);
        let recount: usize = p
            .lock()
            .lists
            .values()
            .map(|l| l.buf_bytes * l.bufs.len())
            .sum();
        assert_eq!(recount, st.pooled_bytes);
        // none was lost or duplicated: each fresh buffer is back, once
        let held: usize = p.lock().lists.values().map(|l| l.bufs.len()).sum();
        assert_eq!(held as u64, st.misses);
    }
}
