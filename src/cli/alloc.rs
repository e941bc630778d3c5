//! A counting global allocator: current and peak heap bytes, so `bench` can
//! report the peak extra memory of a call (bytes above the level before it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Whether large blocks are advised to use transparent huge pages.
static HUGE_PAGES: AtomicBool = AtomicBool::new(false);

/// Wraps the system allocator and counts live bytes.
pub struct CountingAlloc;

// SAFETY: every call is forwarded to `System` unchanged; the counters are
// only bookkeeping.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller guarantees a non-zero size.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
            advise_huge(p, layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract (ptr came from this allocator, which
        // is System's, with this layout) is System's contract.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller guarantees a non-zero size.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
            advise_huge(p, layout.size());
        }
        p
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; ptr and layout came from System (all
        // of this allocator's blocks do), as realloc's contract requires.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
                advise_huge(p, new_size);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

fn grew(n: usize) {
    let now = CURRENT.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

/// The huge-page size `advise_huge` works in (x86-64's 2 MiB).
const HUGE_PAGE: usize = 2 << 20;

/// With huge pages on, advise the kernel to back the whole 2 MiB pages inside
/// a block of at least one such page with transparent huge pages
/// (`madvise(MADV_HUGEPAGE)`): pages not yet touched then fault in 2 MiB at a
/// time, and a pass over a large tensor misses the TLB 512 times less often.
/// The advice is a hint; it changes no data and its failure is ignored.
fn advise_huge(p: *mut u8, size: usize) {
    if size < HUGE_PAGE || !HUGE_PAGES.load(Ordering::Relaxed) {
        return;
    }
    let start = (p as usize).next_multiple_of(HUGE_PAGE);
    let end = (p as usize + size) / HUGE_PAGE * HUGE_PAGE;
    if end > start {
        madvise_hugepage(start, end - start);
    }
}

#[cfg(target_os = "linux")]
fn madvise_hugepage(start: usize, len: usize) {
    use std::ffi::{c_int, c_void};
    extern "C" {
        fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int;
    }
    const MADV_HUGEPAGE: c_int = 14;
    // SAFETY: the range lies inside a block the allocator just handed out,
    // and MADV_HUGEPAGE only changes how its pages are backed, not its
    // contents.
    unsafe { madvise(start as *mut c_void, len, MADV_HUGEPAGE) };
}

#[cfg(not(target_os = "linux"))]
fn madvise_hugepage(_start: usize, _len: usize) {}

/// Ask for transparent huge pages for every later block of 2 MiB or more
/// (see `advise_huge`). Returns false where this is not Linux or the kernel
/// has transparent huge pages off (`never`); with `madvise` or `always` in
/// `/sys/kernel/mm/transparent_hugepage/enabled` the advice takes effect.
pub fn huge_pages() -> bool {
    let enabled = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
        .map(|s| !s.contains("[never]"))
        .unwrap_or(false);
    if enabled {
        HUGE_PAGES.store(true, Ordering::Relaxed);
    }
    enabled
}

/// Run `f` and return its result with the peak heap bytes it added above the
/// level at its start.
pub fn peak_during<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let r = f();
    let peak = PEAK.load(Ordering::Relaxed);
    (r, peak.saturating_sub(base))
}

/// Make glibc's malloc keep freed memory for reuse instead of returning it to
/// the kernel (no `mmap` for large blocks, no trimming of the heap top), so
/// repeated calls reuse warm pages instead of faulting in fresh zeroed ones —
/// what a caching allocator (PyTorch's CUDA one, XLA's BFC, jemalloc's
/// retained extents) does. Returns false where this is not glibc.
pub fn retain_heap() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::ffi::c_int;
        extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        const M_TRIM_THRESHOLD: c_int = -1;
        const M_MMAP_MAX: c_int = -4;
        // SAFETY: mallopt only changes malloc's tuning parameters.
        unsafe { mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, c_int::MAX) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
