//! `strata bench`: loads a data set into a running Strata server and measures ingest rate,
//! indexing rate (WAL → searchable HNSW segments), recall@k, QPS and latency, then runs the
//! same data through hnswlib (`scripts/hnswlib_reference.py`) and prints a markdown
//! comparison (stdout; progress goes to stderr) and optionally a JSON report.
//!
//! `--index-only` measures the index alone instead (no server): the native HNSW build and
//! single-threaded search in-process, against hnswlib on the same data (`index_only.rs`).
//!
//! Data sources: a `--dataset` directory with `meta.json` and raw little-endian files (the
//! layout of `/work/shared/datasets/debian-minilm`), `--base`/`--queries`/`--gt` files
//! (`.npy`, `.fvecs`, `.ivecs`), or `--synthetic N --dim D` clustered Gaussians. Ground truth
//! missing from the data set is computed exactly by brute force.
//!
//! `--filtered` adds attributes to every row and measures filtered search (recall against
//! exact filtered ground truth, CPU per query, latency) at several selectivities and
//! correlations, against hnswlib's filtered search in the same run, and `--delete-fraction`
//! then times a delete by filter (`filter_data.rs`, `filtered.rs`).

mod client;
pub(crate) mod data;
mod filter_data;
mod filtered;
mod filtered_report;
pub use data::write_f32_npy;
mod index_only;
mod phases;
mod reference;
mod report;
mod stats;
mod synth;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_filtered;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use client::{Api, CollectionSpec, VectorEncoding};
use data::{Dataset, Matrix, Metric};
use phases::QuerySpec;
use reference::{ReferenceSpec, Scratch};
use report::{Config, DatasetInfo, Machine, Report};
use stats::thousands;
use strata_types::Consistency;

/// Parses a `--consistency` level: `strong`, `eventual` or `max_staleness_ms=N`.
fn parse_consistency(text: &str) -> std::result::Result<Consistency, String> {
    let value = match text.strip_prefix("max_staleness_ms=") {
        Some(n) => serde_json::json!({ "max_staleness_ms": n.parse::<u64>().map_err(|e| format!("{text}: {e}"))? }),
        None => serde_json::json!(text),
    };
    Consistency::from_json(&value)
}

/// How a level is written on the command line and in the report.
pub(crate) fn consistency_name(c: Consistency) -> String {
    match c {
        Consistency::MaxStaleness { ms } => format!("max_staleness_ms={ms}"),
        Consistency::Strong | Consistency::Eventual => c.label().to_owned(),
    }
}

/// Arguments of `strata bench` (boxed: the options are large next to other subcommands).
#[derive(Clone, Debug, clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    opts: Box<Options>,
}

/// The options of `strata bench`.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct Options {
    /// Base URL of the Strata server.
    #[arg(long, env = "STRATA_URL", default_value = "http://127.0.0.1:7700")]
    url: String,
    /// Base URL for searches and collection descriptions (e.g. a query node of a cluster,
    /// while --url is an ingest node) [default: --url].
    #[arg(long, value_name = "URL")]
    query_url: Option<String>,
    /// Data-set directory: meta.json plus raw little-endian base/queries/gt files.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["base", "synthetic"])]
    dataset: Option<PathBuf>,
    /// Base vectors (.npy or .fvecs); needs --queries.
    #[arg(long, value_name = "FILE", requires = "queries", conflicts_with = "synthetic")]
    base: Option<PathBuf>,
    /// Query vectors (.npy or .fvecs), with --base.
    #[arg(long, value_name = "FILE", requires = "base")]
    queries: Option<PathBuf>,
    /// Ground-truth neighbour ids (.ivecs or .npy), with --base; computed exactly if absent.
    #[arg(long, value_name = "FILE", requires = "base")]
    gt: Option<PathBuf>,
    /// Generate N clustered-Gaussian base vectors (needs --dim).
    #[arg(long, value_name = "N", requires = "dim")]
    synthetic: Option<usize>,
    /// Dimension of synthetic vectors.
    #[arg(long, value_name = "D", requires = "synthetic")]
    dim: Option<usize>,
    /// Seed of the synthetic generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Metric [default: the data set's; l2 for synthetic data; cosine otherwise].
    #[arg(long, value_enum)]
    metric: Option<Metric>,
    /// Collection to (re)create and benchmark.
    #[arg(long, default_value = "bench")]
    collection: String,
    /// Shards of the collection.
    #[arg(long, default_value_t = 1)]
    shards: u32,
    /// HNSW graph degree.
    #[arg(long, default_value_t = 16)]
    m: u32,
    /// HNSW build candidate list size.
    #[arg(long, default_value_t = 200)]
    ef_construction: u32,
    /// Search candidate list sizes to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "32,64,128")]
    ef: Vec<usize>,
    /// Neighbours per query (recall@k).
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Rows per upsert request.
    #[arg(long, default_value_t = 1000)]
    batch: usize,
    /// Concurrent upsert requests.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Concurrent search clients to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    query_threads: Vec<usize>,
    /// Use at most N queries (synthetic data: generate N, default 1000).
    #[arg(long, value_name = "N")]
    max_queries: Option<usize>,
    /// Run the measured search pass over the queries this many times (a steadier server
    /// CPU figure on small query sets; recall is the same for every run).
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Read consistency of the searches, comma-separated: `strong`, `eventual`,
    /// `max_staleness_ms=N`. With several, the search runs are measured for each level in
    /// turn on the same data (the filtered passes use the first).
    #[arg(long, value_delimiter = ',', value_parser = parse_consistency, default_value = "strong")]
    consistency: Vec<Consistency>,
    /// Reuse the existing collection: no drop, create, ingest or flush.
    #[arg(long)]
    skip_ingest: bool,
    /// Python for the hnswlib reference [default: the venv at $STRATA_BENCH_VENV or
    /// ~/.cache/strata/bench-venv, created and filled from scripts/requirements-bench.txt if needed].
    #[arg(long, value_name = "PYTHON", conflicts_with = "no_reference")]
    reference: Option<PathBuf>,
    /// Run this copy of hnswlib_reference.py instead of the one built into the binary.
    #[arg(long, value_name = "FILE")]
    reference_script: Option<PathBuf>,
    /// Threads hnswlib builds its index with.
    #[arg(long, default_value_t = 2)]
    reference_threads: usize,
    /// Skip the hnswlib reference.
    #[arg(long)]
    no_reference: bool,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// How upsert and search requests carry vectors: JSON arrays of numbers, or base64 of
    /// the little-endian f32 bytes.
    #[arg(long, value_enum, default_value = "json")]
    vector_encoding: VectorEncoding,
    /// Measure the index alone, in-process (no server): build the native HNSW graph, search
    /// it on one thread at every --ef, and compare with hnswlib on the same data.
    #[arg(long, conflicts_with = "skip_ingest")]
    index_only: bool,
    /// Threads the native graph builds with under --index-only.
    #[arg(long, default_value_t = 2)]
    build_threads: usize,
    /// Also measure filtered search: attach attributes `u` (uniform) and `band` (a slab of
    /// space) to every row and search with uncorrelated, correlated and anti-correlated
    /// filters at selectivities 0.001, 0.01, 0.1, 0.5 and 1, at the collection's default
    /// ef and at every --ef, one client, against hnswlib's filtered search.
    #[arg(long, conflicts_with = "index_only")]
    filtered: bool,
    /// With --filtered, last: delete the rows with u < F·1,000,000 by filter, time the
    /// acknowledgement and check that they are gone.
    #[arg(long, value_name = "F", requires = "filtered")]
    delete_fraction: Option<f64>,
    /// The collection's default search ef (hnsw.ef) [default: the largest --ef; with
    /// --filtered: the server's default].
    #[arg(long, value_name = "EF")]
    collection_ef: Option<usize>,
    /// Seconds of timed hnswlib filtered searches per combination (over every ef) before
    /// its remaining queries are skipped (at least 10 queries run).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    filtered_reference_budget: f64,
    /// Seconds to wait, before the filtered passes, for the server to go idle (background
    /// compaction would distort its CPU figures).
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    settle_timeout: u64,
}

impl Options {
    fn validate(&self) -> Result<()> {
        let sources = [self.dataset.is_some(), self.base.is_some(), self.synthetic.is_some()];
        ensure!(
            sources.iter().filter(|&&s| s).count() == 1,
            "choose one data source: --dataset DIR, --base FILE --queries FILE [--gt FILE], or --synthetic N --dim D"
        );
        ensure!(!self.ef.is_empty() && self.ef.iter().all(|&e| e > 0), "--ef needs positive values");
        ensure!(self.k > 0, "--k must be positive");
        ensure!((1..=10_000).contains(&self.batch), "--batch must be within 1..=10000 (the server's limit)");
        ensure!(self.clients > 0, "--clients must be positive");
        ensure!(
            !self.query_threads.is_empty() && self.query_threads.iter().all(|&t| t > 0),
            "--query-threads needs positive values"
        );
        ensure!(self.max_queries != Some(0), "--max-queries must be positive");
        ensure!(self.repeat > 0, "--repeat must be positive");
        ensure!(!self.consistency.is_empty(), "--consistency needs a level");
        if let Some(dim) = self.dim {
            ensure!(dim > 0, "--dim must be positive");
        }
        ensure!(self.synthetic != Some(0), "--synthetic needs at least one vector");
        ensure!(self.build_threads > 0, "--build-threads must be positive");
        if let Some(f) = self.delete_fraction {
            ensure!(f > 0.0 && f <= 1.0, "--delete-fraction must be within (0, 1]");
        }
        ensure!(self.collection_ef != Some(0), "--collection-ef must be positive");
        ensure!(self.filtered_reference_budget > 0.0, "--filtered-reference-budget must be positive");
        Ok(())
    }
}

/// Loads (or generates) the data, settles the metric and the ground truth.
fn prepare_data(args: &Options) -> Result<(Dataset, Metric, &'static str)> {
    let started = Instant::now();
    let mut data = if let Some(dir) = &args.dataset {
        data::load_dir(dir).with_context(|| format!("loading the data set in {}", dir.display()))?
    } else if let (Some(base), Some(queries)) = (&args.base, &args.queries) {
        data::load_files(base, queries, args.gt.as_deref())?
    } else if let (Some(n), Some(dim)) = (args.synthetic, args.dim) {
        let nq = args.max_queries.unwrap_or(1000);
        eprintln!("generating {n} synthetic vectors of dimension {dim} (+{nq} queries, seed {})", args.seed);
        let (base, queries) = synth::generate(n, dim, nq, args.seed);
        Dataset { name: format!("synthetic-{n}x{dim}"), metric: None, base, queries, gt: None, files: None }
    } else {
        bail!("no data source given");
    };
    if let Some(cap) = args.max_queries {
        data.queries.truncate_rows(cap);
        if let Some(gt) = &mut data.gt {
            gt.truncate_rows(cap);
        }
    }
    let metric = match (args.metric, data.metric) {
        (Some(m), Some(d)) if m != d => {
            eprintln!("metric {} overrides the data set's {}; recomputing ground truth", m.as_str(), d.as_str());
            data.gt = None;
            m
        }
        (Some(m), _) => m,
        (None, Some(d)) => d,
        (None, None) => {
            let m = if args.synthetic.is_some() { Metric::L2 } else { Metric::Cosine };
            eprintln!("metric: {} (default; pass --metric to change)", m.as_str());
            m
        }
    };
    if let Some(gt) = &data.gt
        && gt.cols < args.k
    {
        eprintln!("the ground truth has {} neighbours per query, fewer than k={}; recomputing", gt.cols, args.k);
        data.gt = None;
    }
    data.validate()?;
    let source = if data.gt.is_some() { "file" } else { "computed" };
    if data.gt.is_none() {
        eprintln!(
            "computing exact top-{} ground truth for {} queries over {} vectors ({})",
            args.k,
            data.queries.rows,
            data.base.rows,
            metric.as_str()
        );
        data.gt = Some(synth::ground_truth(&data.base, &data.queries, metric, args.k));
    }
    eprintln!(
        "data: {} — {} vectors × {}, {} queries, {} ({:.1}s)",
        data.name,
        thousands(data.base.rows as f64),
        data.dim(),
        data.queries.rows,
        metric.as_str(),
        started.elapsed().as_secs_f64()
    );
    Ok((data, metric, source))
}

/// Generates the attributes, the filters of every combination and their exact ground
/// truth (`--filtered`).
fn prepare_filtered(
    base: &Matrix<f32>,
    queries: &Matrix<f32>,
    metric: Metric,
    k: usize,
    seed: u64,
) -> filtered::FilteredSetup {
    let started = Instant::now();
    let attrs = filter_data::RowAttributes::generate(base, metric, seed);
    let combos = filter_data::combos(&attrs, queries);
    eprintln!(
        "computing exact filtered ground truth: {} combinations × {} queries, scanning only matching rows",
        combos.len(),
        queries.rows
    );
    let truth = filter_data::filtered_ground_truth(base, queries, metric, k, &attrs, &combos);
    let prepare_seconds = started.elapsed().as_secs_f64();
    eprintln!("  attributes, filters and filtered ground truth in {prepare_seconds:.1}s");
    filtered::FilteredSetup { attrs: Arc::new(attrs), combos, truth, prepare_seconds }
}

/// Runs the benchmark.
pub async fn run(args: BenchArgs) -> Result<()> {
    let args = *args.opts;
    args.validate()?;
    if args.index_only {
        let index_args = args.clone();
        let report = tokio::task::spawn_blocking(move || index_only::run(&index_args))
            .await
            .context("the index-only benchmark panicked")??;
        println!("{}", report.markdown());
        return write_json(args.json_out.as_deref(), &report);
    }
    let machine = Machine::detect();
    let prep_args = args.clone();
    let (data, metric, gt_source) =
        tokio::task::spawn_blocking(move || prepare_data(&prep_args)).await.context("data preparation panicked")??;
    let filtered_setup = if args.filtered {
        let (base, queries, k, seed) = (data.base.clone(), data.queries.clone(), args.k, args.seed);
        let setup = tokio::task::spawn_blocking(move || prepare_filtered(&base, &queries, metric, k, seed))
            .await
            .context("filtered preparation panicked")?;
        Some(Arc::new(setup))
    } else {
        None
    };
    let data = Arc::new(data);
    let gt: Matrix<u32> = data.gt.clone().context("ground truth missing")?;
    let queries = Arc::new(data.queries.clone());

    let api = Api::new(&args.url, args.query_url.as_deref(), args.vector_encoding)?;
    api.node().await.context("checking the server")?;
    let name = args.collection.clone();

    let (mut ingest, mut indexing) = (None, None);
    if args.skip_ingest {
        let desc = api.describe(&name).await?.with_context(|| {
            format!(
                "--skip-ingest: collection {name:?} does not exist on {}; run without --skip-ingest first",
                args.url
            )
        })?;
        let (rows, _, _) = client::stats_summary(&desc);
        eprintln!("[1-3/7] reusing collection {name:?} ({} rows)", rows.map_or("?".to_owned(), |r| r.to_string()));
        if let Some(rows) = rows.filter(|&r| r != data.base.rows as u64) {
            eprintln!("  warning: it holds {rows} rows but the data set has {}; recall will suffer", data.base.rows);
        }
    } else {
        eprintln!("[1/7] (re)creating collection {name:?}");
        if api.drop_collection(&name).await? {
            eprintln!("  dropped the existing collection {name:?}");
        }
        let spec = CollectionSpec {
            name: name.clone(),
            dim: data.dim(),
            metric,
            shards: args.shards,
            m: args.m,
            ef_construction: args.ef_construction,
            ef: args
                .collection_ef
                .or_else(|| if args.filtered { None } else { Some(args.ef.iter().copied().max().unwrap_or(64)) }),
            attributes: if args.filtered { vec![("u", "int"), ("band", "int")] } else { Vec::new() },
        };
        api.create_collection(&spec).await?;
        eprintln!(
            "[2/7] ingesting {} vectors: batches of {}, {} concurrent requests, {} vectors",
            data.base.rows,
            args.batch,
            args.clients,
            args.vector_encoding.as_str()
        );
        let started = Instant::now();
        let attrs = filtered_setup.as_ref().map(|f| f.attrs.clone());
        let result =
            phases::ingest(&api, &name, data.clone(), attrs, args.batch, args.clients, args.vector_encoding).await?;
        eprintln!(
            "  {} vectors/s acknowledged; ack p50 {:.1} ms p99 {:.1} ms; {} × 429",
            thousands(result.vectors_per_sec),
            result.ack_latency_us.p50 / 1000.0,
            result.ack_latency_us.p99 / 1000.0,
            result.throttled_429
        );
        ingest = Some(result);
        eprintln!("[3/7] flushing (WAL → HNSW segments)");
        let ix = phases::flush(&api, &name, data.base.rows, started).await?;
        eprintln!(
            "  flush {:.1}s; indexing {} vectors/s (ingest start → flushed)",
            ix.flush_seconds,
            thousands(ix.vectors_per_sec)
        );
        indexing = Some(ix);
    }

    let levels: Vec<String> = args.consistency.iter().map(|c| consistency_name(*c)).collect();
    eprintln!(
        "[4/7] searching: ef {:?} × clients {:?}, consistency {}",
        args.ef,
        args.query_threads,
        levels.join(", ")
    );
    let mut search = Vec::new();
    for &consistency in &args.consistency {
        for &ef in &args.ef {
            for &threads in &args.query_threads {
                let spec =
                    QuerySpec { collection: name.clone(), k: args.k, ef, consistency, threads, repeat: args.repeat };
                search.push(phases::search(&api, &spec, queries.clone(), &gt).await?);
            }
        }
    }

    let mut filtered_report = None;
    if let Some(setup) = &filtered_setup {
        let desc = api.describe(&name).await?.context("the collection disappeared")?;
        let default_ef = filtered::default_ef_of(&desc)?;
        eprintln!("[4b/7] filtered search: waiting for the server to go idle first");
        let idle_cpu_before = filtered::settle(&api, Duration::from_secs(args.settle_timeout)).await;
        eprintln!(
            "  {} combinations × ef [default ({default_ef}), {:?}], 1 client, {} consistency",
            setup.combos.len(),
            args.ef,
            levels[0]
        );
        let spec = filtered::FilteredSpec {
            collection: &name,
            k: args.k,
            efs: &args.ef,
            default_ef,
            consistency: args.consistency[0],
            repeat: args.repeat,
        };
        let runs = filtered::measure(&api, &spec, setup, &queries).await?;
        let idle_cpu_after = filtered::settle(&api, Duration::ZERO).await;
        filtered_report = Some(filtered::FilteredReport {
            k: args.k,
            default_ef,
            seed: args.seed,
            repeat: args.repeat,
            prepare_seconds: setup.prepare_seconds,
            idle_cpu_before,
            idle_cpu_after,
            runs,
            reference_budget_s: args.filtered_reference_budget,
            delete: None,
        });
    }

    eprintln!("[5/7] server memory");
    let server = match api.node().await {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("  warning: {e:#}");
            None
        }
    };

    let (mut reference, mut reference_error) = (None, None);
    if args.no_reference {
        eprintln!("[6/7] hnswlib reference skipped (--no-reference)");
        reference_error = Some("--no-reference".to_owned());
    } else {
        eprintln!("[6/7] hnswlib reference");
        let spec = ReferenceSpec::from_args(&args, metric);
        let (ref_data, ref_gt) = (data.clone(), gt.clone());
        let filtered_inputs = filtered_setup.clone().zip(filtered_report.as_ref().map(|r| r.default_ef));
        let (k, budget) = (args.k, args.filtered_reference_budget);
        let mut filtered_efs = args.ef.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let scratch = Scratch::new()?;
            let filtered = match filtered_inputs {
                Some((setup, default_ef)) => {
                    filtered_efs.push(default_ef);
                    filtered_efs.sort_unstable();
                    filtered_efs.dedup();
                    Some(filtered::write_reference_inputs(&scratch, &setup, &filtered_efs, k, budget)?)
                }
                None => None,
            };
            reference::run(&spec, &ref_data, &ref_gt, &scratch, filtered.as_deref())
        })
        .await
        .context("reference run panicked")?;
        match outcome {
            Ok(v) => reference = Some(v),
            Err(e) => {
                eprintln!("  warning: the hnswlib reference failed: {e:#}");
                reference_error = Some(format!("{e:#}"));
            }
        }
    }

    if let (Some(fraction), Some(setup), Some(report)) =
        (args.delete_fraction, filtered_setup.as_ref(), filtered_report.as_mut())
    {
        eprintln!("[6b/7] delete by filter: u < {}", (fraction * filter_data::U_RANGE as f64).round());
        match filtered::delete_by_filter(&api, &name, &setup.attrs, &queries, args.k, fraction).await {
            Ok(d) => report.delete = Some(d),
            Err(e) => eprintln!("  error: the delete by filter failed: {e:#}"),
        }
    }

    eprintln!("[7/7] report");
    let report = Report {
        machine,
        dataset: DatasetInfo {
            name: data.name.clone(),
            vectors: data.base.rows,
            dim: data.dim(),
            queries: data.queries.rows,
            metric: metric.as_str(),
            ground_truth: gt_source,
        },
        config: Config {
            url: args.url.clone(),
            collection: name,
            shards: args.shards,
            m: args.m,
            ef_construction: args.ef_construction,
            ef: args.ef.clone(),
            k: args.k,
            batch: args.batch,
            clients: args.clients,
            query_threads: args.query_threads.clone(),
            consistency: levels.join(","),
            skip_ingest: args.skip_ingest,
            vector_encoding: args.vector_encoding.as_str(),
        },
        ingest,
        indexing,
        search,
        server,
        reference,
        reference_error,
        filtered: filtered_report,
    };
    println!("{}", report.markdown());
    write_json(args.json_out.as_deref(), &report)
}

/// Writes `report` as pretty JSON to `path`, if given.
fn write_json(path: Option<&std::path::Path>, report: &impl serde::Serialize) -> Result<()> {
    if let Some(path) = path {
        let text = serde_json::to_string_pretty(report).context("serialising the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
