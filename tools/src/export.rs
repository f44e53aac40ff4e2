//! `strata export`: every live row of a collection to Parquet, read shard by shard through
//! `POST /v1/collections/{name}/scan` (ordered by id, paged with `after`), so it works
//! against any node of any cluster. Pages stream into the file: memory holds at most one
//! record batch (64k rows), whatever the collection's size. Columns: `id` (u64, or string
//! if any id is a string — then integer ids are written as their decimal text), `vector`
//! (FixedSizeList<f32>) and `attributes` (JSON text, null when a row has none).

use std::fs::File;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::builder::{FixedSizeListBuilder, Float32Builder, StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{Value, json};
use strata_types::RowId;

use super::ExportArgs;
use super::client::{Rest, collection_meta};

/// One exported row.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    pub id: RowId,
    pub vector: Vec<f32>,
    pub attributes: Option<Value>,
}

/// One page of a shard's scan: its rows and the `after` of the next page (`None` when the
/// shard has no more rows).
pub async fn scan_page(
    rest: &Rest,
    collection: &str,
    shard: u32,
    after: Option<&Value>,
    limit: usize,
) -> Result<(Vec<ExportRow>, Option<Value>)> {
    let mut body = json!({"shard": shard, "limit": limit});
    if let Some(a) = after {
        body["after"] = a.clone();
    }
    let path = format!("/v1/collections/{collection}/scan");
    let v = rest.call_retrying("POST", &path, serde_json::to_vec(&body)?).await?;
    let mut rows = Vec::new();
    for r in v["rows"].as_array().context("scan response has no 'rows'")? {
        let id: RowId = serde_json::from_value(r["id"].clone()).context("bad id in scan response")?;
        let vector: Vec<f32> = serde_json::from_value(r["vector"].clone()).context("bad vector in scan response")?;
        let attributes = r.get("attributes").filter(|a| !a.is_null()).cloned();
        rows.push(ExportRow { id, vector, attributes });
    }
    let next = v.get("next_after").filter(|n| !n.is_null()).cloned();
    Ok((rows, next))
}

/// Every live row of one shard, in id order, through the scan endpoint (held in memory:
/// for tests and small shards; `run` streams instead).
pub async fn scan_shard(rest: &Rest, collection: &str, shard: u32, page: usize) -> Result<Vec<ExportRow>> {
    let (mut out, mut after) = (Vec::new(), None);
    loop {
        let (rows, next) = scan_page(rest, collection, shard, after.as_ref(), page).await?;
        out.extend(rows);
        match next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

/// Whether any shard holds a string id. The scan orders integers before strings, so a
/// one-row page after the largest integer id finds one if there is any.
async fn has_string_ids(rest: &Rest, collection: &str, shards: u32) -> Result<bool> {
    for shard in 0..shards {
        let (rows, _) = scan_page(rest, collection, shard, Some(&json!(u64::MAX)), 1).await?;
        if !rows.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Runs `strata export`; returns the number of rows written. Streams: pages go into the
/// Parquet writer as they arrive, so memory holds one record batch, not the collection.
pub async fn run(args: &ExportArgs) -> Result<u64> {
    let rest = Rest::new(&args.url)?;
    let desc = rest
        .describe(&args.collection)
        .await?
        .with_context(|| format!("collection {:?} does not exist", args.collection))?;
    let meta = collection_meta(&desc)?;
    let started = std::time::Instant::now();
    let string_ids = has_string_ids(&rest, &args.collection, meta.shards).await?;
    let mut sink = ParquetSink::create(&args.out, meta.dimension, string_ids)?;
    let mut written = 0u64;
    for shard in 0..meta.shards {
        let mut after = None;
        loop {
            let (rows, next) = scan_page(&rest, &args.collection, shard, after.as_ref(), args.page.max(1)).await?;
            written += rows.len() as u64;
            // Encoding and compressing a batch is CPU work: off the runtime.
            sink = tokio::task::spawn_blocking(move || {
                let mut sink = sink;
                sink.push(rows).map(|()| sink)
            })
            .await??;
            if !args.quiet {
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                eprint!(
                    "\rshard {}/{}: {written} rows exported ({:.0} rows/s)   ",
                    shard + 1,
                    meta.shards,
                    written as f64 / secs
                );
            }
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
    }
    tokio::task::spawn_blocking(move || sink.finish()).await??;
    if !args.quiet {
        eprintln!(
            "\rexported {written} rows to {} in {:.1}s          ",
            args.out.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(written)
}

/// Rows per record batch (and most rows held before writing).
const BATCH_ROWS: usize = 65_536;

/// A Parquet file being written batch by batch. Columns: `id` (u64, or UTF-8 when
/// `string_ids`: integer ids then as decimal text), `vector` (FixedSizeList<f32>),
/// `attributes` (JSON text, null when a row has none).
pub struct ParquetSink {
    writer: ArrowWriter<File>,
    schema: Arc<Schema>,
    item: Arc<Field>,
    dim: usize,
    string_ids: bool,
    pending: Vec<ExportRow>,
}

impl ParquetSink {
    pub fn create(path: &std::path::Path, dim: usize, string_ids: bool) -> Result<Self> {
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", if string_ids { DataType::Utf8 } else { DataType::UInt64 }, false),
            Field::new("vector", DataType::FixedSizeList(item.clone(), dim as i32), false),
            Field::new("attributes", DataType::Utf8, true),
        ]));
        let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        // One row group per batch: the writer buffers a whole row group in memory (its
        // default is a million rows), so a smaller one is what keeps export memory flat.
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(BATCH_ROWS))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
        Ok(Self { writer, schema, item, dim, string_ids, pending: Vec::new() })
    }

    /// Adds rows, writing a record batch whenever `BATCH_ROWS` have gathered.
    pub fn push(&mut self, rows: Vec<ExportRow>) -> Result<()> {
        self.pending.extend(rows);
        while self.pending.len() >= BATCH_ROWS {
            let rest = self.pending.split_off(BATCH_ROWS);
            let batch = std::mem::replace(&mut self.pending, rest);
            self.write_batch(&batch)?;
        }
        Ok(())
    }

    /// Writes what is pending and the file footer.
    pub fn finish(mut self) -> Result<()> {
        let batch = std::mem::take(&mut self.pending);
        if !batch.is_empty() {
            self.write_batch(&batch)?;
        }
        self.writer.close()?;
        Ok(())
    }

    fn write_batch(&mut self, chunk: &[ExportRow]) -> Result<()> {
        let dim = self.dim;
        let ids: ArrayRef = if self.string_ids {
            let mut b = StringBuilder::new();
            for r in chunk {
                match &r.id {
                    RowId::Str(s) => b.append_value(s),
                    RowId::Int(v) => b.append_value(v.to_string()),
                }
            }
            Arc::new(b.finish())
        } else {
            let mut b = UInt64Builder::with_capacity(chunk.len());
            for r in chunk {
                match &r.id {
                    RowId::Int(v) => b.append_value(*v),
                    RowId::Str(s) => bail!("string id {s:?} in an export of integer ids"),
                }
            }
            Arc::new(b.finish())
        };
        let mut vb = FixedSizeListBuilder::with_capacity(
            Float32Builder::with_capacity(chunk.len() * dim),
            dim as i32,
            chunk.len(),
        )
        .with_field(self.item.clone());
        for r in chunk {
            if r.vector.len() != dim {
                bail!("row {} has a vector of dimension {}, expected {dim}", r.id, r.vector.len());
            }
            vb.values().append_slice(&r.vector);
            vb.append(true);
        }
        let mut ab = StringBuilder::new();
        for r in chunk {
            match &r.attributes {
                Some(a) => ab.append_value(a.to_string()),
                None => ab.append_null(),
            }
        }
        let columns = vec![ids, Arc::new(vb.finish()) as ArrayRef, Arc::new(ab.finish())];
        self.writer.write(&RecordBatch::try_new(self.schema.clone(), columns)?)?;
        Ok(())
    }
}
