//! The measured phases against the server: concurrent ingest, flush (indexing) and query
//! runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use strata_types::Consistency;

use super::client::{Api, Upsert, VectorEncoding, WireVector, stats_summary};
use super::data::{Dataset, Matrix};
use super::filter_data::RowAttributes;
use super::stats::{Progress, Summary, recall_at_k, summarize, thousands};

/// Results of the ingest phase.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct IngestResult {
    pub(crate) vectors: usize,
    pub(crate) requests: usize,
    pub(crate) batch: usize,
    pub(crate) clients: usize,
    /// 429 answers (each retried after a back-off).
    pub(crate) throttled_429: usize,
    pub(crate) seconds: f64,
    /// Acknowledged vectors per second.
    pub(crate) vectors_per_sec: f64,
    /// Client-side latency of the acknowledged attempt of each request.
    pub(crate) ack_latency_us: Summary,
}

/// Results of the flush phase.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct IndexResult {
    /// Duration of `POST /flush` alone.
    pub(crate) flush_seconds: f64,
    /// From the first upsert to flush completion.
    pub(crate) total_seconds: f64,
    /// Vectors per second from WAL to searchable HNSW segments (`vectors / total_seconds`).
    pub(crate) vectors_per_sec: f64,
    pub(crate) rows_after_flush: Option<u64>,
    pub(crate) segments_after_flush: Option<u64>,
}

/// One (ef, client threads) search run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SearchResult {
    /// The read consistency, as `--consistency` writes it.
    pub(crate) consistency: String,
    pub(crate) ef: usize,
    pub(crate) threads: usize,
    /// Searches in the measured pass (queries × `--repeat`).
    pub(crate) queries: usize,
    pub(crate) recall: f64,
    pub(crate) qps: f64,
    pub(crate) seconds: f64,
    pub(crate) client_latency_us: Summary,
    /// `took_us` reported by the server.
    pub(crate) server_took_us: Summary,
    /// CPU time the searching server process spent per query over the measured pass
    /// (user + system; includes HTTP and JSON, and any background work meanwhile).
    pub(crate) server_cpu_us_per_query: Option<f64>,
}

/// Serialises rows `[start, end)` as an upsert body with ids = row numbers.
#[cfg(test)]
pub(crate) fn upsert_body(base: &Matrix<f32>, start: usize, end: usize, encoding: VectorEncoding) -> Vec<u8> {
    upsert_body_with(base, None, start, end, encoding)
}

/// `upsert_body`, with each row's `u` and `band` attributes when `attrs` is given.
pub(crate) fn upsert_body_with(
    base: &Matrix<f32>,
    attrs: Option<&RowAttributes>,
    start: usize,
    end: usize,
    encoding: VectorEncoding,
) -> Vec<u8> {
    #[derive(Serialize)]
    struct Attrs {
        u: i32,
        band: i32,
    }
    #[derive(Serialize)]
    struct Row<'a> {
        id: u64,
        vector: WireVector<'a>,
        #[serde(skip_serializing_if = "Option::is_none")]
        attributes: Option<Attrs>,
    }
    #[derive(Serialize)]
    struct Body<'a> {
        rows: Vec<Row<'a>>,
    }
    let rows = (start..end)
        .map(|i| Row {
            id: i as u64,
            vector: WireVector::new(base.row(i), encoding),
            attributes: attrs.map(|a| Attrs { u: a.u.values[i], band: a.band.values[i] }),
        })
        .collect();
    serde_json::to_vec(&Body { rows }).expect("vectors serialise")
}

/// Upserts every base vector (with its attributes, if given) in batches of `batch` with
/// `clients` concurrent requests, backing off and retrying on 429.
pub(crate) async fn ingest(
    api: &Api,
    collection: &str,
    data: Arc<Dataset>,
    attrs: Option<Arc<RowAttributes>>,
    batch: usize,
    clients: usize,
    encoding: VectorEncoding,
) -> Result<IngestResult> {
    let n = data.base.rows;
    let batches = n.div_ceil(batch);
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let throttled = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let progress = Progress::start("ingest", "vectors", n, done.clone(), Some(("throttled (429)", throttled.clone())));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (api, data, attrs, name) = (api.clone(), data.clone(), attrs.clone(), collection.to_owned());
        let (next, done, throttled, failed) = (next.clone(), done.clone(), throttled.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches || failed.load(Ordering::Relaxed) {
                    return Ok::<_, anyhow::Error>(latencies);
                }
                let (start, end) = (b * batch, ((b + 1) * batch).min(n));
                let body = upsert_body_with(&data.base, attrs.as_deref(), start, end, encoding);
                let mut backoff = Duration::from_millis(20);
                loop {
                    match api.upsert(&name, body.clone()).await {
                        Ok(Upsert::Acked(took)) => {
                            latencies.push(took.as_micros() as u64);
                            done.fetch_add(end - start, Ordering::Relaxed);
                            break;
                        }
                        Ok(Upsert::Throttled) => {
                            throttled.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(Duration::from_secs(2));
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e.context(format!("upserting rows {start}..{end}")));
                        }
                    }
                }
            }
        }));
    }
    let mut latencies = Vec::with_capacity(batches);
    for t in tasks {
        latencies.extend(t.await.context("ingest task panicked")??);
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(progress);
    Ok(IngestResult {
        vectors: n,
        requests: latencies.len(),
        batch,
        clients,
        throttled_429: throttled.load(Ordering::Relaxed),
        seconds,
        vectors_per_sec: n as f64 / seconds.max(1e-9),
        ack_latency_us: summarize(&latencies),
    })
}

/// Calls flush, printing the collection's stats every few seconds while it runs.
pub(crate) async fn flush(api: &Api, collection: &str, vectors: usize, ingest_started: Instant) -> Result<IndexResult> {
    let started = Instant::now();
    let poll_api = api.clone();
    let poll_name = collection.to_owned();
    let poller = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(3)).await;
            if let Ok(Some(desc)) = poll_api.describe(&poll_name).await {
                let (rows, segments, backlog) = stats_summary(&desc);
                let show = |v: Option<u64>| v.map_or("?".to_owned(), |v| v.to_string());
                eprintln!(
                    "  flush: {:.0}s, rows {}, segments {}, WAL backlog {} entries",
                    started.elapsed().as_secs_f64(),
                    show(rows),
                    show(segments),
                    show(backlog)
                );
            }
        }
    });
    let flushed = api.flush(collection).await;
    poller.abort();
    flushed?;
    let flush_seconds = started.elapsed().as_secs_f64();
    let total_seconds = ingest_started.elapsed().as_secs_f64();
    let (rows, segments, _) = match api.describe(collection).await? {
        Some(desc) => stats_summary(&desc),
        None => (None, None, None),
    };
    if let Some(rows) = rows.filter(|&r| r != vectors as u64) {
        eprintln!("  warning: the collection reports {rows} rows after flush; {vectors} were upserted");
    }
    Ok(IndexResult {
        flush_seconds,
        total_seconds,
        vectors_per_sec: vectors as f64 / total_seconds.max(1e-9),
        rows_after_flush: rows,
        segments_after_flush: segments,
    })
}

/// Measurements of one pass over the queries.
struct Pass {
    ids: Vec<Vec<u64>>,
    client_us: Vec<u64>,
    server_us: Vec<u64>,
    seconds: f64,
}

/// What one search run asks of the server.
#[derive(Clone, Debug)]
pub(crate) struct QuerySpec {
    pub(crate) collection: String,
    pub(crate) k: usize,
    pub(crate) ef: usize,
    pub(crate) consistency: Consistency,
    /// Concurrent client tasks.
    pub(crate) threads: usize,
    /// Times the measured pass runs through the queries (`--repeat`): more searches per
    /// measurement make the server-CPU figure steadier on a small query set.
    pub(crate) repeat: usize,
}

/// Runs every query `repeat` times with `spec.threads` concurrent clients; the ids of a
/// query are those of its last run.
async fn query_pass(api: &Api, spec: &QuerySpec, queries: Arc<Matrix<f32>>, repeat: usize) -> Result<Pass> {
    let nq = queries.rows;
    let searches = nq * repeat.max(1);
    let QuerySpec { k, ef, consistency, threads, .. } = *spec;
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let progress = Progress::start("search", "queries", searches, done.clone(), None);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..threads.max(1) {
        let (api, queries, name) = (api.clone(), queries.clone(), spec.collection.clone());
        let (next, done) = (next.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= searches {
                    return Ok::<_, anyhow::Error>(out);
                }
                let q = i % nq;
                let t = Instant::now();
                let answer = api
                    .search(&name, queries.row(q), k, ef, consistency)
                    .await
                    .with_context(|| format!("query {q} (ef {ef})"))?;
                out.push((q, t.elapsed().as_micros() as u64, answer));
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut ids = vec![Vec::new(); nq];
    let mut client_us = Vec::with_capacity(searches);
    let mut server_us = Vec::with_capacity(searches);
    let mut results = Vec::with_capacity(threads);
    for t in tasks {
        results.push(t.await.context("search task panicked")?);
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(progress);
    for r in results {
        for (q, us, answer) in r? {
            client_us.push(us);
            server_us.extend(answer.took_us);
            ids[q] = answer.ids;
        }
    }
    Ok(Pass { ids, client_us, server_us, seconds })
}

/// A warm-up pass, then a measured pass; recall against `gt`.
pub(crate) async fn search(
    api: &Api,
    spec: &QuerySpec,
    queries: Arc<Matrix<f32>>,
    gt: &Matrix<u32>,
) -> Result<SearchResult> {
    let QuerySpec { k, ef, threads, repeat, .. } = *spec;
    query_pass(api, spec, queries.clone(), 1).await?;
    let cpu_before = api.server_cpu_seconds().await;
    let pass = query_pass(api, spec, queries.clone(), repeat).await?;
    let searches = queries.rows * repeat.max(1);
    let cpu_after = api.server_cpu_seconds().await;
    let server_cpu_us_per_query = match (cpu_before, cpu_after) {
        (Some(a), Some(b)) if searches > 0 => Some((b - a).max(0.0) * 1e6 / searches as f64),
        _ => None,
    };
    if pass.ids.iter().all(Vec::is_empty) {
        eprintln!("  warning: every search returned no results; is the collection empty?");
    }
    let result = SearchResult {
        consistency: super::consistency_name(spec.consistency),
        ef,
        threads,
        queries: searches,
        recall: recall_at_k(&pass.ids, gt, k),
        qps: searches as f64 / pass.seconds.max(1e-9),
        seconds: pass.seconds,
        client_latency_us: summarize(&pass.client_us),
        server_took_us: summarize(&pass.server_us),
        server_cpu_us_per_query,
    };
    eprintln!(
        "  {} ef={ef} clients={threads}: recall@{k}={:.4}, {} QPS, client p50 {:.2} ms p99 {:.2} ms, server p50 {:.2} ms, \
         server CPU {} µs/query",
        result.consistency,
        result.recall,
        thousands(result.qps),
        result.client_latency_us.p50 / 1000.0,
        result.client_latency_us.p99 / 1000.0,
        result.server_took_us.p50 / 1000.0,
        result.server_cpu_us_per_query.map_or("?".to_owned(), |us| format!("{us:.0}")),
    );
    Ok(result)
}
