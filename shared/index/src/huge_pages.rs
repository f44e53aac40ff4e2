//! Transparent huge pages for the large, randomly accessed arrays of a search: segment
//! vectors and graph adjacency.
//!
//! Why: a graph search touches a few hundred rows scattered over hundreds of megabytes,
//! so with 4 KiB pages nearly every vector or neighbour-list load also misses the TLB,
//! and in a virtual machine each of those misses is a two-dimensional page walk. Backing
//! the same memory with 2 MiB pages turns 131,072 pages per 512 MiB into 256, which
//! the TLB holds. Measured on the 1M × 128 benchmark (docs/benchmarks.md).
//!
//! Flow: [`advise`] marks the 2 MiB-aligned interior of a buffer `MADV_HUGEPAGE` (so
//! the kernel may back it with huge pages even where THP is `madvise`-only, the common
//! default) and then asks for `MADV_COLLAPSE` (Linux ≥ 6.1), which copies the already
//! populated 4 KiB pages into huge pages synchronously instead of waiting for
//! `khugepaged`.
//!
//! Invariants: purely advisory. Contents never change, every failure (old kernel, THP
//! disabled, no contiguous memory free) is ignored and leaves the buffer as it was;
//! buffers under 2 MiB and other platforms are left alone.

/// The huge page size on x86_64 and aarch64 Linux (with 4 KiB base pages).
#[cfg(target_os = "linux")]
const HUGE_PAGE: usize = 2 << 20;

/// Asks the kernel to back `buffer`'s whole 2 MiB pages with huge pages (best effort;
/// see the module docs). Cheap to call on small buffers (it returns at once).
pub fn advise<T>(buffer: &[T]) {
    #[cfg(target_os = "linux")]
    {
        let start = buffer.as_ptr() as usize;
        let end = start + std::mem::size_of_val(buffer);
        let first = start.next_multiple_of(HUGE_PAGE);
        let last = end - end % HUGE_PAGE;
        if last <= first {
            return;
        }
        let (addr, len) = (first as *mut libc::c_void, last - first);
        // SAFETY: `addr..addr + len` lies inside `buffer`, which this process owns and
        // keeps alive for the duration of the calls; both advices only change how the
        // kernel backs the pages, never their contents, so no Rust reference is affected.
        unsafe {
            if libc::madvise(addr, len, libc::MADV_HUGEPAGE) == 0 {
                libc::madvise(addr, len, libc::MADV_COLLAPSE);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = buffer;
}

#[cfg(test)]
mod tests {
    #[test]
    fn advising_keeps_contents() {
        // Big enough to hold whole huge pages wherever the allocator puts it.
        let v: Vec<u32> = (0..3 * (1 << 20)).collect();
        super::advise(&v);
        super::advise(&v[..10]);
        super::advise::<u64>(&[]);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u32));
    }
}
