//! Distance kernels: squared Euclidean distance, dot product and in-place L2
//! normalisation over `f32` slices, plus a cache prefetch hint for memory-bound loops.
//!
//! Flow: the first call resolves a [`Kernels`] table once (AVX2+FMA when the CPU has
//! both, otherwise the portable scalar code) and caches it in a `OnceLock`; every later
//! call is one atomic load plus an indirect call. Hot loops (graph search, brute force)
//! fetch the table once via [`kernels`] and call the function pointers directly.
//!
//! Invariants:
//! - both slices of a pair have the same length (checked with `debug_assert!`; in
//!   release the shorter length wins, never out-of-bounds access);
//! - every kernel is deterministic for given inputs, so build-time and search-time
//!   distances of the same pair agree bit for bit;
//! - the AVX2 entry points are only ever installed in the table after runtime
//!   detection, which is what makes calling them sound.

use std::sync::OnceLock;

/// A resolved set of kernels. Plain function pointers so hot loops pay no dispatch
/// beyond one indirect call.
#[derive(Clone, Copy)]
pub(crate) struct Kernels {
    pub(crate) l2_squared: fn(&[f32], &[f32]) -> f32,
    pub(crate) dot: fn(&[f32], &[f32]) -> f32,
}

static KERNELS: OnceLock<Kernels> = OnceLock::new();

/// The best kernels for this CPU, detected once per process.
#[inline]
pub(crate) fn kernels() -> &'static Kernels {
    KERNELS.get_or_init(detect)
}

fn detect() -> Kernels {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            return Kernels { l2_squared: avx2::l2_squared_entry, dot: avx2::dot_entry };
        }
    }
    Kernels { l2_squared: l2_squared_scalar, dot: dot_scalar }
}

/// Squared Euclidean distance `Σ (a_i - b_i)²`.
#[inline]
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    (kernels().l2_squared)(a, b)
}

/// Inner product `Σ a_i · b_i`.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len());
    (kernels().dot)(a, b)
}

/// Scales `v` to unit L2 norm in place. A zero (or non-finite-norm) vector is left
/// unchanged, because there is no direction to keep and dividing would produce NaN.
pub fn normalize(v: &mut [f32]) {
    let norm = dot(v, v).sqrt();
    if norm > 0.0 && norm.is_finite() {
        let inv = 1.0 / norm;
        for x in v.iter_mut() {
            *x *= inv;
        }
    }
}

/// Asks the CPU to start loading every cache line of `v` (a hint: no effect on results,
/// a no-op off x86_64). Lets memory-bound loops overlap the misses of several vectors,
/// adjacency lists or visited marks.
#[inline(always)]
pub(crate) fn prefetch<T>(v: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // One hint per 64-byte line, plus the last element, whose line the stride skips
        // when `v` does not start on a line boundary.
        let step = (64 / size_of::<T>().max(1)).max(1);
        let last = v.len().saturating_sub(1);
        for i in (0..v.len()).step_by(step).chain((!v.is_empty()).then_some(last)) {
            // SAFETY: `i < v.len()`, so the pointer is inside `v`; a prefetch never
            // faults or writes anyway, and SSE (which provides it) is part of the x86_64
            // baseline, so the instruction always exists.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(v.as_ptr().add(i).cast()) }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

/// Portable squared L2. Eight independent accumulators break the add dependency
/// chain so LLVM can keep a full vector register busy without `-ffast-math`.
pub(crate) fn l2_squared_scalar(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        let d = x - y;
        tail += d * d;
    }
    reduce8(acc) + tail
}

/// Portable dot product, same accumulator layout as [`l2_squared_scalar`].
pub(crate) fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let len = a.len().min(b.len());
    let (a, b) = (&a[..len], &b[..len]);
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    reduce8(acc) + tail
}

/// Pairwise reduction (the same tree shape the AVX2 horizontal sum uses).
#[inline]
fn reduce8(acc: [f32; 8]) -> f32 {
    ((acc[0] + acc[4]) + (acc[2] + acc[6])) + ((acc[1] + acc[5]) + (acc[3] + acc[7]))
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Safe entry for the table. Only [`super::detect`] installs it, and only after
    /// confirming AVX2 and FMA at runtime.
    pub(super) fn l2_squared_entry(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: this function is only reachable through the kernel table, which holds
        // it only when `is_x86_feature_detected!` reported both avx2 and fma.
        unsafe { l2_squared(a, b) }
    }

    /// Safe entry for the table; see [`l2_squared_entry`].
    pub(super) fn dot_entry(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: as for `l2_squared_entry`: installed only after avx2+fma detection.
        unsafe { dot(a, b) }
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
        let len = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut acc2 = _mm256_setzero_ps();
        let mut acc3 = _mm256_setzero_ps();
        let mut i = 0;
        // Four accumulators hide the FMA latency (4 cycles) behind independent chains.
        while i + 32 <= len {
            // SAFETY: i + 32 <= len, so every 8-lane unaligned load reads inside both
            // slices; loadu has no alignment requirement.
            unsafe {
                let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                let d1 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)));
                let d2 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i + 16)), _mm256_loadu_ps(pb.add(i + 16)));
                let d3 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i + 24)), _mm256_loadu_ps(pb.add(i + 24)));
                acc0 = _mm256_fmadd_ps(d0, d0, acc0);
                acc1 = _mm256_fmadd_ps(d1, d1, acc1);
                acc2 = _mm256_fmadd_ps(d2, d2, acc2);
                acc3 = _mm256_fmadd_ps(d3, d3, acc3);
            }
            i += 32;
        }
        while i + 8 <= len {
            // SAFETY: i + 8 <= len keeps the unaligned load inside both slices.
            unsafe {
                let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                acc0 = _mm256_fmadd_ps(d, d, acc0);
            }
            i += 8;
        }
        let acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
        let mut sum = hsum(acc);
        for j in i..len {
            let d = a[j] - b[j];
            sum += d * d;
        }
        sum
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let len = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut acc2 = _mm256_setzero_ps();
        let mut acc3 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 32 <= len {
            // SAFETY: i + 32 <= len, so all four 8-lane unaligned loads stay in bounds.
            unsafe {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
                acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), acc1);
                acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 16)), _mm256_loadu_ps(pb.add(i + 16)), acc2);
                acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 24)), _mm256_loadu_ps(pb.add(i + 24)), acc3);
            }
            i += 32;
        }
        while i + 8 <= len {
            // SAFETY: i + 8 <= len keeps the unaligned load inside both slices.
            unsafe {
                acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            }
            i += 8;
        }
        let acc = _mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3));
        let mut sum = hsum(acc);
        for j in i..len {
            sum += a[j] * b[j];
        }
        sum
    }

    /// Horizontal sum of the eight lanes.
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0b01));
        _mm_cvtss_f32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_known_values() {
        let a = [1.0, 2.0, 3.0];
        let b = [4.0, 6.0, 3.0];
        assert_eq!(l2_squared(&a, &b), 25.0);
        assert_eq!(dot(&a, &b), 25.0);
        assert_eq!(l2_squared(&[], &[]), 0.0);
        assert_eq!(dot(&[], &[]), 0.0);
    }

    #[test]
    fn normalize_unit_and_zero() {
        let mut v = [3.0, 4.0];
        normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        let mut z = [0.0f32; 5];
        normalize(&mut z);
        assert_eq!(z, [0.0; 5]);
    }

    #[test]
    fn scalar_matches_dispatched_on_long_input() {
        let a: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.11).cos()).collect();
        let rel = |x: f32, y: f32| (x - y).abs() / x.abs().max(y.abs()).max(1e-6);
        assert!(rel(l2_squared(&a, &b), l2_squared_scalar(&a, &b)) < 1e-4);
        assert!(rel(dot(&a, &b), dot_scalar(&a, &b)) < 1e-4);
    }
}
