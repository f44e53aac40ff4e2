//! `strata bench --index-only`: the vector index alone, in-process, against hnswlib.
//!
//! No server and no HTTP: the native HNSW graph (`Graph::build_with`)
//! is built over the base vectors with `--build-threads` threads, then searched on one
//! thread at every `--ef` (a warm-up pass, then a timed pass, as the reference script
//! does), and `scripts/hnswlib_reference.py` runs on the same vectors, ground truth and
//! parameters in the same invocation. Ratios are only meaningful within one run: the
//! machine this targets is shared and noisy.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;
use strata_index::{Graph, GraphParams, NativeParams, Space, advise_huge_pages, normalize};

use super::data::{Dataset, Matrix, Metric};
use super::reference::{self, ReferenceSpec, Scratch};
use super::report::{DatasetInfo, Machine};
use super::stats::{Summary, recall_at_k, summarize, thousands};
use super::{Options, prepare_data};

/// The native build.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct BuildResult {
    pub(crate) threads: usize,
    pub(crate) seconds: f64,
    pub(crate) vectors_per_sec: f64,
    pub(crate) graph_bytes: usize,
}

/// One `ef` searched single-threaded.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct IndexSearch {
    pub(crate) ef: usize,
    pub(crate) recall: f64,
    pub(crate) qps: f64,
    pub(crate) latency_us: Summary,
}

/// Everything `--index-only` measured; written as JSON by `--json-out`.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct IndexReport {
    pub(crate) machine: Machine,
    pub(crate) dataset: DatasetInfo,
    pub(crate) m: u32,
    pub(crate) ef_construction: u32,
    pub(crate) k: usize,
    pub(crate) build: BuildResult,
    pub(crate) search: Vec<IndexSearch>,
    pub(crate) reference: Option<Value>,
    pub(crate) reference_error: Option<String>,
}

/// The index's space for a bench metric; cosine vectors are normalised (a copy), as
/// segments store them.
fn space_and_vectors(metric: Metric, m: &Matrix<f32>) -> (Space, Cow<'_, [f32]>) {
    let normalised = |m: &Matrix<f32>| {
        let mut v = m.data.clone();
        v.chunks_exact_mut(m.cols).for_each(normalize);
        Cow::Owned(v)
    };
    match metric {
        Metric::L2 => (Space::L2, Cow::Borrowed(&m.data[..])),
        Metric::Dot => (Space::Dot, Cow::Borrowed(&m.data[..])),
        Metric::Cosine => (Space::Cosine, normalised(m)),
    }
}

/// Searches every query once at `ef`; returns the ids and per-query microseconds.
fn search_pass(
    graph: &Graph,
    base: &[f32],
    queries: &[f32],
    dim: usize,
    space: Space,
    k: usize,
    ef: usize,
) -> (Vec<Vec<u64>>, Vec<u64>, f64) {
    let started = Instant::now();
    let mut ids = Vec::with_capacity(queries.len() / dim);
    let mut micros = Vec::with_capacity(queries.len() / dim);
    for q in queries.chunks_exact(dim) {
        let t = Instant::now();
        let hits = graph.search(base, dim, space, q, k, ef, &|_| false);
        micros.push(t.elapsed().as_nanos() as u64 / 1000);
        ids.push(hits.iter().map(|c| u64::from(c.row)).collect());
    }
    (ids, micros, started.elapsed().as_secs_f64())
}

/// Builds, searches and runs the reference (blocking; call off the async runtime).
pub(crate) fn run(args: &Options) -> Result<IndexReport> {
    let machine = Machine::detect();
    let (data, metric, gt_source) = prepare_data(args)?;
    let gt = data.gt.clone().context("ground truth missing")?;
    let dim = data.dim();
    let (space, base) = space_and_vectors(metric, &data.base);
    let (_, queries) = space_and_vectors(metric, &data.queries);

    eprintln!(
        "[1/3] building the native graph: {} vectors, M={}, ef_construction={}, {} threads",
        thousands(data.base.rows as f64),
        args.m,
        args.ef_construction,
        args.build_threads
    );
    let params = GraphParams { m: args.m as usize, ef_construction: args.ef_construction as usize };
    let builder = NativeParams { max_threads: args.build_threads, ..NativeParams::default() };
    let started = Instant::now();
    let graph = Graph::build_with(&base, dim, space, params, builder);
    // As a loaded segment does with its vectors (the graph advises itself).
    advise_huge_pages(&base);
    let seconds = started.elapsed().as_secs_f64();
    let build = BuildResult {
        threads: args.build_threads,
        seconds,
        vectors_per_sec: data.base.rows as f64 / seconds.max(1e-9),
        graph_bytes: graph.memory_bytes(),
    };
    eprintln!("  {} vectors/s ({seconds:.1} s)", thousands(build.vectors_per_sec));

    eprintln!("[2/3] searching on one thread: ef {:?}, k={}", args.ef, args.k);
    let mut search = Vec::new();
    for &ef in &args.ef {
        search_pass(&graph, &base, &queries, dim, space, args.k, ef); // warm-up
        let (ids, micros, secs) = search_pass(&graph, &base, &queries, dim, space, args.k, ef);
        let s = IndexSearch {
            ef,
            recall: recall_at_k(&ids, &gt, args.k),
            qps: ids.len() as f64 / secs.max(1e-9),
            latency_us: summarize(&micros),
        };
        eprintln!(
            "  ef={ef}: recall@{}={:.4}, {} QPS, p50 {:.0} us",
            args.k,
            s.recall,
            thousands(s.qps),
            s.latency_us.p50
        );
        search.push(s);
    }
    // Free the graph (and any normalised copies) before hnswlib loads its own index.
    drop((graph, base, queries));

    let (reference, reference_error) = run_reference(args, &data, &gt, metric);
    Ok(IndexReport {
        machine,
        dataset: DatasetInfo {
            name: data.name.clone(),
            vectors: data.base.rows,
            dim,
            queries: data.queries.rows,
            metric: metric.as_str(),
            ground_truth: gt_source,
        },
        m: args.m,
        ef_construction: args.ef_construction,
        k: args.k,
        build,
        search,
        reference,
        reference_error,
    })
}

fn run_reference(args: &Options, data: &Dataset, gt: &Matrix<u32>, metric: Metric) -> (Option<Value>, Option<String>) {
    if args.no_reference {
        eprintln!("[3/3] hnswlib reference skipped (--no-reference)");
        return (None, Some("--no-reference".to_owned()));
    }
    eprintln!("[3/3] hnswlib reference");
    let spec = ReferenceSpec::from_args(args, metric);
    match Scratch::new().and_then(|scratch| reference::run(&spec, data, gt, &scratch, None)) {
        Ok(v) => (Some(v), None),
        Err(e) => {
            eprintln!("  warning: the hnswlib reference failed: {e:#}");
            (None, Some(format!("{e:#}")))
        }
    }
}

fn ratio(a: f64, b: Option<f64>) -> String {
    b.filter(|b| *b > 0.0).map_or("—".to_owned(), |b| format!("{:.2}×", a / b))
}

impl IndexReport {
    /// The markdown report.
    pub(crate) fn markdown(&self) -> String {
        let (d, m, b) = (&self.dataset, &self.machine, &self.build);
        let r = self.reference.as_ref();
        let num = |path: &[&str]| r.and_then(|r| path.iter().try_fold(r, |v, key| v.get(key))?.as_f64());
        let mut o = String::new();
        let _ = writeln!(
            o,
            "## Index level: Strata native HNSW vs hnswlib — {} ({} × {}, {}, {} queries, k={})\n",
            d.name,
            thousands(d.vectors as f64),
            d.dim,
            d.metric,
            d.queries,
            self.k
        );
        let _ = writeln!(
            o,
            "Machine: {} CPUs ({}), {}. M={}, ef_construction={}; both build with {} threads and search \
             on one thread (warm-up pass, then a timed pass); ground truth: {}.\n",
            m.nproc, m.cpu_model, m.os, self.m, self.ef_construction, b.threads, d.ground_truth
        );
        let ref_rate = num(&["build_vectors_per_sec"]);
        let _ = writeln!(o, "| Build | Strata | hnswlib | Strata / hnswlib |\n|---|---|---|---|");
        let _ = writeln!(
            o,
            "| vectors/s | {} ({:.1} s) | {} | {} |\n",
            thousands(b.vectors_per_sec),
            b.seconds,
            match (ref_rate, num(&["build_seconds"])) {
                (Some(rate), Some(secs)) => format!("{} ({secs:.1} s)", thousands(rate)),
                _ => "—".to_owned(),
            },
            ratio(b.vectors_per_sec, ref_rate)
        );
        let _ = writeln!(
            o,
            "| ef | recall@{k} Strata / hnswlib | QPS Strata / hnswlib | QPS ratio | p50 / p99 µs Strata | p50 / p99 µs hnswlib |\n|---|---|---|---|---|---|",
            k = self.k
        );
        for s in &self.search {
            let entry = r.and_then(|r| {
                r.get("search")?.as_array()?.iter().find(|e| e.get("ef").and_then(Value::as_u64) == Some(s.ef as u64))
            });
            let field = |path: &[&str]| entry.and_then(|e| path.iter().try_fold(e, |v, key| v.get(key))?.as_f64());
            let show = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or("—".to_owned(), f);
            let _ = writeln!(
                o,
                "| {} | {:.4} / {} | {} / {} | {} | {:.0} / {:.0} | {} / {} |",
                s.ef,
                s.recall,
                show(field(&["recall"]), &|v| format!("{v:.4}")),
                thousands(s.qps),
                show(field(&["qps"]), &thousands),
                ratio(s.qps, field(&["qps"])),
                s.latency_us.p50,
                s.latency_us.p99,
                show(field(&["latency_us", "p50"]), &|v| format!("{v:.0}")),
                show(field(&["latency_us", "p99"]), &|v| format!("{v:.0}")),
            );
        }
        if let Some(err) = &self.reference_error {
            let _ = writeln!(o, "\nhnswlib reference: not run ({err}).");
        }
        o
    }
}
