//! Synthetic data (clustered Gaussians) and exact ground truth by brute force.
//!
//! The generator is deterministic for a given seed whatever the number of threads: rows are
//! produced in fixed-size chunks, each from its own RNG seeded by (seed, chunk index).
//! Ground truth scans every base vector (or a given subset of rows) for every query, spread
//! over `std::thread`s.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};

use rand::{RngExt, SeedableRng, rngs::StdRng};

use super::data::{Matrix, Metric};
use super::stats::Progress;

/// Number of cluster centres (fewer if there are fewer rows).
const CENTRES: usize = 1000;
/// Centres are drawn from N(0, 1) per coordinate; points add N(0, CLUSTER_SIGMA²).
const CLUSTER_SIGMA: f32 = 0.5;
/// Queries are base points plus N(0, QUERY_SIGMA²) per coordinate.
const QUERY_SIGMA: f32 = 0.2;
/// Rows generated from one RNG stream.
const CHUNK: usize = 4096;

/// A standard normal sample (Box–Muller).
pub(crate) fn gaussian(rng: &mut StdRng) -> f32 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
}

fn threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

pub(crate) fn chunk_rng(seed: u64, stream: u64, chunk: usize) -> StdRng {
    // SplitMix-style mixing so neighbouring chunks get unrelated streams.
    let mut z = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (chunk as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

/// Fills `out` (rows of `dim`) chunk by chunk in parallel; `fill(rng, rows)`.
fn parallel_chunks<F>(out: &mut [f32], dim: usize, seed: u64, stream: u64, fill: F)
where
    F: Fn(&mut StdRng, &mut [f32]) + Sync,
{
    let work = std::sync::Mutex::new(out.chunks_mut(CHUNK * dim).enumerate());
    std::thread::scope(|s| {
        for _ in 0..threads() {
            s.spawn(|| {
                loop {
                    let next = work.lock().expect("chunk iterator lock").next();
                    let Some((idx, rows)) = next else { break };
                    let mut rng = chunk_rng(seed, stream, idx);
                    fill(&mut rng, rows);
                }
            });
        }
    });
}

/// `n` base vectors around `min(1000, n)` centres, and `nq` queries that are perturbed base
/// points. Same seed, same data.
pub(crate) fn generate(n: usize, dim: usize, nq: usize, seed: u64) -> (Matrix<f32>, Matrix<f32>) {
    let centres_n = CENTRES.min(n).max(1);
    let mut rng = chunk_rng(seed, 0, 0);
    let centres: Vec<f32> = (0..centres_n * dim).map(|_| gaussian(&mut rng)).collect();

    let mut base = vec![0f32; n * dim];
    parallel_chunks(&mut base, dim, seed, 1, |rng, rows| {
        for row in rows.chunks_mut(dim) {
            let c = rng.random_range(0..centres_n);
            let centre = &centres[c * dim..(c + 1) * dim];
            for (x, m) in row.iter_mut().zip(centre) {
                *x = m + CLUSTER_SIGMA * gaussian(rng);
            }
        }
    });

    let mut queries = vec![0f32; nq * dim];
    parallel_chunks(&mut queries, dim, seed, 2, |rng, rows| {
        for row in rows.chunks_mut(dim) {
            let b = rng.random_range(0..n);
            for (x, v) in row.iter_mut().zip(&base[b * dim..(b + 1) * dim]) {
                *x = v + QUERY_SIGMA * gaussian(rng);
            }
        }
    });
    (Matrix { rows: n, cols: dim, data: base }, Matrix { rows: nq, cols: dim, data: queries })
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorise the loop.
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for i in 0..8 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| (x - y) * (x - y)).sum();
    acc.iter().sum::<f32>() + tail
}

fn normalised(m: &Matrix<f32>) -> Vec<f32> {
    let mut out = m.data.clone();
    for row in out.chunks_mut(m.cols) {
        let norm = dot(row, row).sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|x| *x /= norm);
        }
    }
    out
}

/// The vectors as the metric scores them: a normalised copy for cosine, else borrowed.
pub(crate) fn scored_vectors(m: &Matrix<f32>, metric: Metric) -> Cow<'_, [f32]> {
    match metric {
        Metric::Cosine => Cow::Owned(normalised(m)),
        Metric::Dot | Metric::L2 => Cow::Borrowed(&m.data[..]),
    }
}

/// Dot product of two equally long vectors (the ground truth's own kernel).
pub(crate) fn dot_product(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b)
}

/// CPU time this thread has used so far, in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`).
pub(crate) fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `clock_gettime` only writes the timespec we pass.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The rows one brute-force task scores: every base row, or the listed ones.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rows<'a> {
    All,
    Only(&'a [u32]),
}

/// Exact top-`k` per task, best first (ties: lower row id first), in parallel over
/// `std::thread`s. Task `t` scores query `task(t).0` against the rows `task(t).1`. Returns
/// `tasks × k` ids (`u32::MAX` pads tasks with fewer than `k` rows) and the CPU time of
/// each task's scan on its thread, in nanoseconds.
pub(crate) fn top_k_tasks<'r>(
    base: &Matrix<f32>,
    queries: &Matrix<f32>,
    metric: Metric,
    k: usize,
    tasks: usize,
    task: &(dyn Fn(usize) -> (usize, Rows<'r>) + Sync),
) -> (Vec<u32>, Vec<u64>) {
    let dim = base.cols;
    let base_data = scored_vectors(base, metric);
    let query_data = scored_vectors(queries, metric);
    // Higher key is better for every metric.
    let key = |q: &[f32], b: &[f32]| match metric {
        Metric::Cosine | Metric::Dot => dot(q, b),
        Metric::L2 => -l2_sq(q, b),
    };
    let mut out = vec![u32::MAX; tasks * k];
    let mut cpu = vec![0u64; tasks];
    if k == 0 {
        return (out, cpu);
    }
    let next = AtomicUsize::new(0);
    let done = std::sync::Arc::new(AtomicUsize::new(0));
    let progress = (tasks * base.rows >= 50_000_000)
        .then(|| Progress::start("ground truth", "queries", tasks, done.clone(), None));
    let rows_out: Vec<std::sync::Mutex<(&mut [u32], &mut u64)>> =
        out.chunks_mut(k).zip(cpu.iter_mut()).map(std::sync::Mutex::new).collect();
    std::thread::scope(|s| {
        for _ in 0..threads() {
            s.spawn(|| {
                let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
                loop {
                    let t = next.fetch_add(1, Ordering::Relaxed);
                    if t >= tasks {
                        break;
                    }
                    let (qi, rows) = task(t);
                    let started = thread_cpu_ns();
                    let q = &query_data[qi * dim..(qi + 1) * dim];
                    best.clear();
                    let mut consider = |bi: u32| {
                        let b = &base_data[bi as usize * dim..(bi as usize + 1) * dim];
                        let score = key(q, b);
                        if best.len() == k {
                            let (ws, wi) = best[k - 1];
                            if score < ws || (score == ws && bi > wi) {
                                return;
                            }
                        }
                        // Insertion keeps `best` sorted by score desc, then id asc.
                        let pos = best.partition_point(|&(s, i)| s > score || (s == score && i < bi));
                        best.insert(pos, (score, bi));
                        best.truncate(k);
                    };
                    match rows {
                        Rows::All => (0..base.rows as u32).for_each(&mut consider),
                        Rows::Only(list) => list.iter().copied().for_each(&mut consider),
                    }
                    let spent = thread_cpu_ns().saturating_sub(started);
                    let mut slot = rows_out[t].lock().expect("gt row lock");
                    for (dst, &(_, id)) in slot.0.iter_mut().zip(&best) {
                        *dst = id;
                    }
                    *slot.1 = spent;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    drop(rows_out);
    drop(progress);
    (out, cpu)
}

/// Exact top-`k` base rows for every query, best first (ties: lower row id first).
pub(crate) fn ground_truth(base: &Matrix<f32>, queries: &Matrix<f32>, metric: Metric, k: usize) -> Matrix<u32> {
    let k = k.min(base.rows);
    let (out, _) = top_k_tasks(base, queries, metric, k, queries.rows, &|q| (q, Rows::All));
    Matrix { rows: queries.rows, cols: k, data: out }
}
