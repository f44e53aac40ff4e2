//! Small statistics helpers: nearest-rank percentiles, recall@k and a stderr progress line
//! printer for long phases.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::data::Matrix;

/// Latency summary in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Summary {
    pub(crate) count: usize,
    pub(crate) mean: f64,
    pub(crate) p50: f64,
    pub(crate) p99: f64,
    pub(crate) p999: f64,
    pub(crate) max: f64,
}

/// Nearest-rank percentile (`p` in 0..=100) of an ascending slice; 0 when empty.
pub(crate) fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Summarises samples (any order) in microseconds.
pub(crate) fn summarize(samples_us: &[u64]) -> Summary {
    let mut sorted = samples_us.to_vec();
    sorted.sort_unstable();
    let count = sorted.len();
    let mean = if count == 0 { 0.0 } else { sorted.iter().map(|&v| v as f64).sum::<f64>() / count as f64 };
    Summary {
        count,
        mean,
        p50: percentile(&sorted, 50.0) as f64,
        p99: percentile(&sorted, 99.0) as f64,
        p999: percentile(&sorted, 99.9) as f64,
        max: sorted.last().copied().unwrap_or(0) as f64,
    }
}

/// Mean recall@k: the share of each query's first `k` true neighbours found among its
/// first `k` results. `results[i]` belongs to query `i`; `gt` must have ≥ `k` columns.
pub(crate) fn recall_at_k(results: &[Vec<u64>], gt: &Matrix<u32>, k: usize) -> f64 {
    if results.is_empty() || k == 0 {
        return 0.0;
    }
    let k_gt = k.min(gt.cols);
    let mut hits = 0usize;
    for (i, found) in results.iter().enumerate() {
        let truth = &gt.row(i)[..k_gt];
        hits += found.iter().take(k).filter(|&&id| truth.iter().any(|&t| u64::from(t) == id)).count();
    }
    hits as f64 / (results.len() * k_gt) as f64
}

/// Prints `label: done/total (pct), rate/s, ETA` to stderr every two seconds from a
/// background thread until dropped.
pub(crate) struct Progress {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts reporting on `done` (counted in `unit`). `extra` adds a named counter.
    pub(crate) fn start(
        label: &'static str,
        unit: &'static str,
        total: usize,
        done: Arc<AtomicUsize>,
        extra: Option<(&'static str, Arc<AtomicUsize>)>,
    ) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut last_print = Instant::now();
            while !stop_flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if last_print.elapsed() < Duration::from_secs(2) {
                    continue;
                }
                last_print = Instant::now();
                let n = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                let rate = if secs > 0.0 { n as f64 / secs } else { 0.0 };
                let eta =
                    if rate > 0.0 { format!("{:.0}s", (total.saturating_sub(n)) as f64 / rate) } else { "?".into() };
                let extra = extra
                    .as_ref()
                    .map(|(name, c)| format!(", {} {name}", c.load(Ordering::Relaxed)))
                    .unwrap_or_default();
                eprintln!(
                    "  {label}: {n}/{total} {unit} ({:.1}%), {} {unit}/s, ETA {eta}{extra}",
                    100.0 * n as f64 / total.max(1) as f64,
                    thousands(rate)
                );
            }
        });
        Progress { stop, handle: Some(handle) }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// `1234567.8` → `"1,234,568"`.
pub(crate) fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let digits = format!("{:.0}", v.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if v < 0.0 && digits != "0" { format!("-{out}") } else { out }
}
