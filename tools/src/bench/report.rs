//! The benchmark report: the machine description, the machine-readable JSON shape
//! (`--json-out`) and the markdown comparison of Strata with hnswlib printed on stdout.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::filtered::FilteredReport;
use super::phases::{IndexResult, IngestResult, SearchResult};
use super::stats::thousands;

/// The machine the bench ran on.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Machine {
    pub(crate) nproc: usize,
    pub(crate) cpu_model: String,
    pub(crate) total_ram_bytes: u64,
    pub(crate) os: String,
}

impl Machine {
    pub(crate) fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let total_ram_bytes = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        Machine {
            nproc: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            cpu_model,
            total_ram_bytes,
            os: std::env::consts::OS.to_owned(),
        }
    }
}

/// The data set as benchmarked.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct DatasetInfo {
    pub(crate) name: String,
    pub(crate) vectors: usize,
    pub(crate) dim: usize,
    pub(crate) queries: usize,
    pub(crate) metric: &'static str,
    /// `"file"` or `"computed"` (exact brute force in the tool).
    pub(crate) ground_truth: &'static str,
}

/// The run's parameters.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Config {
    pub(crate) url: String,
    pub(crate) collection: String,
    pub(crate) shards: u32,
    pub(crate) m: u32,
    pub(crate) ef_construction: u32,
    pub(crate) ef: Vec<usize>,
    pub(crate) k: usize,
    pub(crate) batch: usize,
    pub(crate) clients: usize,
    pub(crate) query_threads: Vec<usize>,
    /// The `--consistency` levels, comma-separated.
    pub(crate) consistency: String,
    pub(crate) skip_ingest: bool,
    /// `"json"` or `"base64"`: how requests carried vectors.
    pub(crate) vector_encoding: &'static str,
}

/// Everything measured; written as JSON by `--json-out`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Report {
    pub(crate) machine: Machine,
    pub(crate) dataset: DatasetInfo,
    pub(crate) config: Config,
    pub(crate) ingest: Option<IngestResult>,
    pub(crate) indexing: Option<IndexResult>,
    pub(crate) search: Vec<SearchResult>,
    /// `GET /v1/node` after the search runs.
    pub(crate) server: Option<Value>,
    /// The reference script's JSON.
    pub(crate) reference: Option<Value>,
    pub(crate) reference_error: Option<String>,
    /// `--filtered`: filtered search and delete by filter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) filtered: Option<FilteredReport>,
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / (1u64 << 30) as f64)
}

fn mib(bytes: f64) -> String {
    format!("{:.0} MiB", bytes / (1u64 << 20) as f64)
}

fn ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() { format!("{:.2}×", a / b) } else { "—".to_owned() }
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, key| v.get(key))?.as_f64()
}

/// The reference's entry for `ef`.
fn reference_search(reference: &Value, ef: usize) -> Option<&Value> {
    reference.get("search")?.as_array()?.iter().find(|e| e.get("ef").and_then(Value::as_u64) == Some(ef as u64))
}

impl Report {
    /// The Strata run compared with the single-threaded reference: one client if measured,
    /// else the fewest clients measured.
    fn baseline_threads(&self) -> Option<usize> {
        self.search.iter().map(|s| s.threads).min()
    }

    /// The markdown report.
    pub(crate) fn markdown(&self) -> String {
        let mut o = String::new();
        let d = &self.dataset;
        let c = &self.config;
        let m = &self.machine;
        let _ = writeln!(
            o,
            "## Strata vs hnswlib — {} ({} × {}, {}, {} queries, k={})\n",
            d.name,
            thousands(d.vectors as f64),
            d.dim,
            d.metric,
            d.queries,
            c.k
        );
        let _ = writeln!(
            o,
            "Machine: {} CPUs ({}), {} RAM, {}. HNSW M={}, ef_construction={}; Strata: {} shard(s), \
             batch {}, {} ingest clients, {} vectors, {} reads; ground truth: {}.\n",
            m.nproc,
            m.cpu_model,
            gib(m.total_ram_bytes as f64),
            m.os,
            c.m,
            c.ef_construction,
            c.shards,
            c.batch,
            c.clients,
            c.vector_encoding,
            c.consistency,
            d.ground_truth
        );
        self.build_table(&mut o);
        self.compare_table(&mut o);
        self.strata_table(&mut o);
        if let Some(err) = &self.reference_error {
            let _ = writeln!(o, "hnswlib reference: not run ({err}).\n");
        }
        if let Some(f) = &self.filtered {
            let _ = writeln!(o, "{}", f.markdown(self.reference.as_ref(), self.reference_error.as_deref()));
        }
        let _ = writeln!(
            o,
            "Strata latencies are client-side over HTTP/JSON (the client shares the machine with the \
             server); `server` is the `took_us` the server reports. hnswlib runs in-process: QPS and \
             latency are single-threaded `knn_query` calls."
        );
        o
    }

    fn build_table(&self, o: &mut String) {
        let r = self.reference.as_ref();
        let _ = writeln!(o, "| Build | Strata | hnswlib | Strata / hnswlib |\n|---|---|---|---|");
        if let Some(i) = &self.ingest {
            let _ = writeln!(
                o,
                "| Ingest, acknowledged | {} vectors/s ({} requests, {} × 429) | — | — |",
                thousands(i.vectors_per_sec),
                i.requests,
                i.throttled_429
            );
            let _ = writeln!(
                o,
                "| Write-ack latency p50 / p99 | {} / {} ms | — | — |",
                ms(i.ack_latency_us.p50),
                ms(i.ack_latency_us.p99)
            );
        }
        let ref_rate = r.and_then(|r| num(r, &["build_vectors_per_sec"]));
        let ref_cell = match (ref_rate, r.and_then(|r| num(r, &["build_seconds"]))) {
            (Some(rate), Some(secs)) => {
                let threads = r.and_then(|r| num(r, &["threads"])).unwrap_or(0.0);
                format!("{} vectors/s ({threads:.0} threads, {secs:.1} s)", thousands(rate))
            }
            _ => "—".to_owned(),
        };
        match &self.indexing {
            Some(ix) => {
                let _ = writeln!(
                    o,
                    "| Indexing: ingest start → flushed HNSW segments | {} vectors/s ({:.1} s; flush {:.1} s) | {ref_cell} | {} |",
                    thousands(ix.vectors_per_sec),
                    ix.total_seconds,
                    ix.flush_seconds,
                    ref_rate.map_or("—".to_owned(), |rr| ratio(ix.vectors_per_sec, rr))
                );
            }
            None => {
                let _ = writeln!(o, "| Indexing | (ingest skipped) | {ref_cell} | — |");
            }
        }
        let server_peak = self.server.as_ref().and_then(|s| num(s, &["peak_rss_bytes"]));
        let server_now = self.server.as_ref().and_then(|s| num(s, &["rss_bytes"]));
        let ref_peak = r.and_then(|r| num(r, &["peak_rss_bytes"]));
        let _ = writeln!(
            o,
            "| Peak RSS | {} (server process since its start; now {}) | {} (python process, incl. data) | — |\n",
            server_peak.map_or("—".to_owned(), mib),
            server_now.map_or("—".to_owned(), mib),
            ref_peak.map_or("—".to_owned(), mib)
        );
    }

    fn compare_table(&self, o: &mut String) {
        let Some(threads) = self.baseline_threads() else { return };
        let _ = writeln!(
            o,
            "| ef | recall@{k} Strata / hnswlib | QPS Strata ({threads} client{s}) / hnswlib (1 thread) | \
             p50 ms Strata / hnswlib | p99 ms Strata / hnswlib | Strata server p50 / p99 ms |\n|---|---|---|---|---|---|",
            k = self.config.k,
            s = if threads == 1 { "" } else { "s" }
        );
        let first_level = self.search.first().map(|s| s.consistency.as_str());
        for s in self.search.iter().filter(|s| s.threads == threads && Some(s.consistency.as_str()) == first_level) {
            let r = self.reference.as_ref().and_then(|r| reference_search(r, s.ef));
            let rv = |path: &[&str]| r.and_then(|r| num(r, path));
            let pair =
                |a: String, b: Option<f64>, f: fn(f64) -> String| format!("{a} / {}", b.map_or("—".to_owned(), f));
            let _ = writeln!(
                o,
                "| {} | {} | {} ({}) | {} | {} | {} / {} |",
                s.ef,
                pair(format!("{:.4}", s.recall), rv(&["recall"]), |v| format!("{v:.4}")),
                pair(thousands(s.qps), rv(&["qps"]), thousands),
                rv(&["qps"]).map_or("—".to_owned(), |q| ratio(s.qps, q)),
                pair(ms(s.client_latency_us.p50), rv(&["latency_us", "p50"]), ms),
                pair(ms(s.client_latency_us.p99), rv(&["latency_us", "p99"]), ms),
                ms(s.server_took_us.p50),
                ms(s.server_took_us.p99),
            );
        }
        o.push('\n');
    }

    fn strata_table(&self, o: &mut String) {
        if self.search.is_empty() {
            return;
        }
        let _ = writeln!(
            o,
            "| Strata consistency | ef | clients | recall@{} | QPS | client p50 / p99 / p99.9 ms | \
             server p50 / p99 / p99.9 ms | server CPU µs/query |\n|---|---|---|---|---|---|---|---|",
            self.config.k
        );
        for s in &self.search {
            let (cl, sv) = (&s.client_latency_us, &s.server_took_us);
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.4} | {} | {} / {} / {} | {} / {} / {} | {} |",
                s.consistency,
                s.ef,
                s.threads,
                s.recall,
                thousands(s.qps),
                ms(cl.p50),
                ms(cl.p99),
                ms(cl.p999),
                ms(sv.p50),
                ms(sv.p99),
                ms(sv.p999),
                s.server_cpu_us_per_query.map_or("—".to_owned(), |us| format!("{us:.0}"))
            );
        }
        if let Some(r) = &self.reference {
            let batch: Vec<String> = r
                .get("search")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| Some(format!("ef {}: {}", e.get("ef")?, thousands(num(e, &["batch_qps"])?))))
                .collect();
            if !batch.is_empty() {
                let threads = num(r, &["threads"]).unwrap_or(0.0);
                let _ = writeln!(o, "\nhnswlib batched QPS ({threads:.0} threads): {}.", batch.join(", "));
            }
        }
        o.push('\n');
    }
}
