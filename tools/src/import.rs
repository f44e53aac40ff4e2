//! `strata import`: rows of a file into a collection.
//!
//! Plain mode sends upsert batches (JSON with base64 vectors) with up to `--concurrency`
//! requests in flight, retrying 429/503 with backoff. It is resumable:
//! after each acknowledged batch (in file order) the checkpoint file records the
//! collection incarnation, the file's size and the rows acknowledged so far, written
//! atomically (temp file + rename). A re-run continues after the last acknowledged row;
//! a checkpoint for another incarnation or file size is refused. The checkpoint is
//! removed when the import completes.
//!
//! `--bulk` groups rows by shard (`RowId::shard`, the documented stable hash) and sends
//! each shard's rows, `--bulk-rows` at a time with base64 vectors, to
//! `POST /v1/collections/{name}/bulk` on the shard's writer node, which writes one segment
//! per request straight to object storage. A 409 (the shard's writer moved meanwhile)
//! re-reads the routes and sends again. It is not checkpointed: a re-run re-imports
//! everything (bulk rows of the same id replace the earlier copies).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ImportArgs;
use super::client::{CollectionMeta, Rest, collection_meta};
use super::source::{Record, Source};

/// What an import did.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportSummary {
    /// Rows acknowledged by this run.
    pub rows: u64,
    /// Row the run started at (non-zero when resumed from a checkpoint).
    pub resumed_from: u64,
    pub total: u64,
    pub seconds: f64,
    /// Stopped early by `--stop-after` (the checkpoint stays).
    pub interrupted: bool,
}

/// The resumable state of a plain import.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    pub file: String,
    pub file_size: u64,
    pub collection: String,
    pub collection_id: String,
    pub rows_done: u64,
    pub total_rows: u64,
}

pub fn checkpoint_path(args: &ImportArgs) -> PathBuf {
    args.checkpoint.clone().unwrap_or_else(|| {
        let mut name = args.file.as_os_str().to_owned();
        name.push(".strata-import.json");
        PathBuf::from(name)
    })
}

fn write_checkpoint(path: &Path, cp: &Checkpoint) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(&serde_json::to_vec_pretty(cp)?)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// A progress line on stderr, redrawn at most 4 times a second.
struct Progress {
    total: u64,
    base: u64,
    started: Instant,
    last: Option<Instant>,
    quiet: bool,
}

impl Progress {
    fn new(total: u64, base: u64, quiet: bool) -> Self {
        Self { total, base, started: Instant::now(), last: None, quiet }
    }

    fn rate(&self, done: u64) -> f64 {
        (done - self.base) as f64 / self.started.elapsed().as_secs_f64().max(1e-9)
    }

    fn update(&mut self, done: u64) {
        if self.quiet || self.last.is_some_and(|l| l.elapsed() < Duration::from_millis(250)) {
            return;
        }
        self.last = Some(Instant::now());
        let rate = self.rate(done);
        let eta =
            if rate > 0.0 { format!("{:.0}s", (self.total.saturating_sub(done)) as f64 / rate) } else { "?".into() };
        let pct = if self.total > 0 { 100.0 * done as f64 / self.total as f64 } else { 100.0 };
        eprint!("\r{done}/{} rows ({pct:.1}%)  {rate:.0} rows/s  ETA {eta}   ", self.total);
        let _ = std::io::stderr().flush();
    }

    fn finish(&self, done: u64, what: &str) {
        if self.quiet {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64();
        eprintln!(
            "\r{what} {} rows in {secs:.1}s ({:.0} rows/s); {done}/{} rows done                ",
            done - self.base,
            self.rate(done),
            self.total
        );
    }
}

/// Reads `source` from `start` in a blocking thread, handing batches over a channel.
fn spawn_reader(
    source: std::sync::Arc<Source>,
    start: u64,
    batch: usize,
    depth: usize,
) -> (tokio::sync::mpsc::Receiver<Vec<Record>>, tokio::task::JoinHandle<Result<()>>) {
    let (tx, rx) = tokio::sync::mpsc::channel(depth.max(1));
    let handle = tokio::task::spawn_blocking(move || {
        source.for_each_batch(start, batch, |recs| Ok(tx.blocking_send(recs).is_ok()))
    });
    (rx, handle)
}

/// Resolves (or with `--create`, creates) the collection.
async fn collection(rest: &Rest, args: &ImportArgs, source: &Source) -> Result<CollectionMeta> {
    let name = &args.collection;
    let desc = match rest.describe(name).await? {
        Some(d) => d,
        None if args.create => {
            let dimension = match args.dimension {
                Some(d) => d as usize,
                None => source.probe_dimension()?,
            };
            let body = json!({"name": name, "dimension": dimension, "metric": args.metric, "shards": args.shards});
            rest.call("POST", "/v1/collections", Some(serde_json::to_vec(&body)?))
                .await
                .map_err(|e| anyhow!("cannot create collection {name:?}: {e}"))?;
            rest.describe(name).await?.with_context(|| format!("collection {name:?} vanished after creation"))?
        }
        None => bail!("collection {name:?} does not exist; pass --create (with --metric, --shards) to create it"),
    };
    let meta = collection_meta(&desc)?;
    if let Some(d) = source.dimension {
        ensure!(
            d == meta.dimension,
            "{} has vectors of dimension {d}, collection {name:?} has dimension {}",
            args.file.display(),
            meta.dimension
        );
    }
    Ok(meta)
}

/// Runs `strata import` (plain or `--bulk`). `stop_after` interrupts a plain import once
/// at least that many rows are acknowledged (tests use it to simulate a crash).
pub async fn run(args: &ImportArgs, stop_after: Option<u64>) -> Result<ImportSummary> {
    ensure!(args.batch >= 1 && args.concurrency >= 1, "--batch and --concurrency must be at least 1");
    let rest = Rest::new(&args.url)?;
    let source = {
        let (path, idc, vc) = (args.file.clone(), args.id_column.clone(), args.vector_column.clone());
        tokio::task::spawn_blocking(move || Source::open(&path, &idc, &vc)).await??
    };
    let meta = collection(&rest, args, &source).await?;
    if args.bulk {
        return bulk(&rest, args, source, &meta).await;
    }
    let cp_path = checkpoint_path(args);
    let mut cp = Checkpoint {
        file: args.file.display().to_string(),
        file_size: source.file_size,
        collection: args.collection.clone(),
        collection_id: meta.id.clone(),
        rows_done: 0,
        total_rows: source.rows,
    };
    if cp_path.exists() {
        let old: Checkpoint = serde_json::from_slice(&std::fs::read(&cp_path)?)
            .with_context(|| format!("{} is not an import checkpoint", cp_path.display()))?;
        if old.collection != cp.collection || old.collection_id != cp.collection_id {
            bail!(
                "checkpoint {} belongs to collection {:?} (incarnation {}), but {:?} is now incarnation {} — \
                 it was dropped and re-created, or this is another collection; delete the checkpoint to start over",
                cp_path.display(),
                old.collection,
                old.collection_id,
                cp.collection,
                cp.collection_id
            );
        }
        if old.file_size != cp.file_size || old.total_rows != cp.total_rows {
            bail!(
                "checkpoint {} was written for a file of {} bytes / {} rows, but {} has {} bytes / {} rows; \
                 delete the checkpoint to start over",
                cp_path.display(),
                old.file_size,
                old.total_rows,
                args.file.display(),
                cp.file_size,
                cp.total_rows
            );
        }
        cp.rows_done = old.rows_done.min(cp.total_rows);
        if !args.quiet {
            eprintln!("resuming {} after row {} (checkpoint {})", args.file.display(), cp.rows_done, cp_path.display());
        }
    }
    let start = cp.rows_done;
    let source = std::sync::Arc::new(source);
    let (mut rx, reader) = spawn_reader(source, start, args.batch, args.concurrency * 2);
    let path = format!("/v1/collections/{}/upsert", args.collection);
    let batches = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(|recs: Vec<Record>| {
        let (rest, path) = (rest.clone(), path.clone());
        async move {
            let n = recs.len() as u64;
            let rows: Vec<Value> = recs.into_iter().map(row_json).collect();
            let body = serde_json::to_vec(&json!({ "rows": rows }))?;
            rest.call_retrying("POST", &path, body).await?;
            Ok::<u64, anyhow::Error>(n)
        }
    });
    let mut acked = std::pin::pin!(batches.buffered(args.concurrency));
    let mut progress = Progress::new(cp.total_rows, start, args.quiet);
    let mut interrupted = false;
    while let Some(result) = acked.next().await {
        let n = result.with_context(|| format!("import stopped after row {}; re-run to resume", cp.rows_done))?;
        cp.rows_done += n;
        write_checkpoint(&cp_path, &cp)?;
        progress.update(cp.rows_done);
        if stop_after.is_some_and(|s| cp.rows_done - start >= s) {
            interrupted = true;
            break;
        }
    }
    if !interrupted {
        reader.await.map_err(|e| anyhow!("reader failed: {e}"))??;
        ensure!(cp.rows_done == cp.total_rows, "read {} rows, the file declares {}", cp.rows_done, cp.total_rows);
        std::fs::remove_file(&cp_path).ok();
        if args.flush {
            progress.update(cp.rows_done);
            let flush_started = Instant::now();
            rest.call_retrying("POST", &format!("/v1/collections/{}/flush", args.collection), b"{}".to_vec())
                .await
                .context("flushing after the import")?;
            if !args.quiet {
                eprintln!(
                    "\rflushed to segments in {:.1}s                              ",
                    flush_started.elapsed().as_secs_f64()
                );
            }
        }
    }
    progress.finish(cp.rows_done, if interrupted { "interrupted after" } else { "imported" });
    Ok(ImportSummary {
        rows: cp.rows_done - start,
        resumed_from: start,
        total: cp.total_rows,
        seconds: progress.started.elapsed().as_secs_f64(),
        interrupted,
    })
}

fn row_json(r: Record) -> Value {
    // Base64 vectors: parsing them costs the server a fraction of JSON number arrays.
    let mut v = json!({"id": r.id, "vector": encode_vector(&r.vector)});
    if let Some(a) = r.attributes {
        v["attributes"] = Value::Object(a);
    }
    v
}

/// Base64 of the little-endian bytes of `v` (the bulk endpoint's vector form).
pub fn encode_vector(v: &[f32]) -> String {
    strata_api::vector_encoding::encode_base64_f32(v)
}

/// REST base URL of each shard's writer (from `/v1/cluster/shards` and `/v1/cluster/nodes`),
/// falling back to `--url` when the cluster API does not say.
async fn writer_urls(rest: &Rest, meta: &CollectionMeta) -> Vec<String> {
    let mut urls = vec![rest.base.clone(); meta.shards as usize];
    let (Ok(shards), Ok(nodes)) = (rest.get("/v1/cluster/shards").await, rest.get("/v1/cluster/nodes").await) else {
        return urls;
    };
    let node_url: HashMap<&str, &str> = nodes["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["id"].as_str()?, n["http_url"].as_str()?)))
        .collect();
    for s in shards["shards"].as_array().into_iter().flatten() {
        if s["collection_id"].as_str() != Some(&meta.id) {
            continue;
        }
        let (Some(shard), Some(owner)) = (s["shard"].as_u64(), s["writer_owner"].as_str()) else { continue };
        if let (Some(url), Some(slot)) = (node_url.get(owner), urls.get_mut(shard as usize))
            && node_url.len() > 1
        {
            *slot = url.trim_end_matches('/').to_owned();
        }
    }
    urls
}

async fn bulk(rest: &Rest, args: &ImportArgs, source: Source, meta: &CollectionMeta) -> Result<ImportSummary> {
    let per_row = meta.dimension * 16 / 3 + 128;
    let limit = args.bulk_rows.clamp(1, (32 << 20) / per_row);
    let mut routes = BulkRoutes::resolve(rest, meta).await?;
    let total = source.rows;
    let (mut rx, reader) = spawn_reader(std::sync::Arc::new(source), 0, 10_000, 4);
    let path = format!("/v1/collections/{}/bulk", args.collection);
    let mut buffers: Vec<Vec<Value>> = vec![Vec::new(); meta.shards as usize];
    let mut progress = Progress::new(total, 0, args.quiet);
    let mut done = 0u64;
    while let Some(recs) = rx.recv().await {
        for r in recs {
            let shard = r.id.shard(meta.shards) as usize;
            let mut v = json!({"id": r.id, "vector": encode_vector(&r.vector)});
            if let Some(a) = r.attributes {
                v["attributes"] = Value::Object(a);
            }
            buffers[shard].push(v);
            if buffers[shard].len() >= limit {
                done += routes.send(rest, meta, &path, shard, std::mem::take(&mut buffers[shard])).await?;
                progress.update(done);
            }
        }
    }
    reader.await.map_err(|e| anyhow!("reader failed: {e}"))??;
    for (shard, rows) in buffers.into_iter().enumerate() {
        if !rows.is_empty() {
            done += routes.send(rest, meta, &path, shard, rows).await?;
            progress.update(done);
        }
    }
    progress.finish(done, "bulk-imported");
    Ok(ImportSummary {
        rows: done,
        resumed_from: 0,
        total,
        seconds: progress.started.elapsed().as_secs_f64(),
        interrupted: false,
    })
}

/// Where each shard's bulk requests go: its writer node's REST client.
struct BulkRoutes {
    writers: Vec<Rest>,
}

impl BulkRoutes {
    async fn resolve(rest: &Rest, meta: &CollectionMeta) -> Result<Self> {
        let writers = writer_urls(rest, meta).await.iter().map(|u| Rest::new(u)).collect::<Result<_>>()?;
        Ok(Self { writers })
    }

    /// Sends one bulk request of `shard`'s rows; returns the row count. A 409 means the
    /// shard's writer moved (a node joined, left or failed): re-read the routes from the
    /// cluster API and send again, a few times with backoff.
    async fn send(
        &mut self,
        rest: &Rest,
        meta: &CollectionMeta,
        path: &str,
        shard: usize,
        rows: Vec<Value>,
    ) -> Result<u64> {
        let n = rows.len() as u64;
        let body = serde_json::to_vec(&json!({"shard": shard, "rows": rows}))?;
        let mut attempt = 0;
        loop {
            match self.writers[shard].call_retrying("POST", path, body.clone()).await {
                Ok(_) => return Ok(n),
                Err(e) if e.status == Some(reqwest::StatusCode::CONFLICT) && attempt < 5 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    *self = Self::resolve(rest, meta).await?;
                }
                Err(e) => return Err(anyhow!(e).context(format!("bulk import of shard {shard}"))),
            }
        }
    }
}
