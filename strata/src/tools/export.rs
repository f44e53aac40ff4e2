//! `strata export`: every live row of a collection to Parquet, read shard by shard through
//! `POST /v1/collections/{name}/scan` (ordered by id, paged with `after`), so it works
//! against any node of any cluster. Columns: `id` (u64, or string if any id is a string —
//! then integer ids are written as their decimal text), `vector` (FixedSizeList<f32>) and
//! `attributes` (JSON text, null when a row has none).

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
use strata_shared::types::RowId;

use super::ExportArgs;
use super::client::{Rest, collection_meta};

/// One exported row.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    pub id: RowId,
    pub vector: Vec<f32>,
    pub attributes: Option<Value>,
}

/// Every live row of one shard, in id order, through the scan endpoint.
pub async fn scan_shard(rest: &Rest, collection: &str, shard: u32, page: usize) -> Result<Vec<ExportRow>> {
    let path = format!("/v1/collections/{collection}/scan");
    let mut after: Option<Value> = None;
    let mut out = Vec::new();
    loop {
        let mut body = json!({"shard": shard, "limit": page});
        if let Some(a) = &after {
            body["after"] = a.clone();
        }
        let v = rest.call_retrying("POST", &path, serde_json::to_vec(&body)?).await?;
        for r in v["rows"].as_array().context("scan response has no 'rows'")? {
            let id: RowId = serde_json::from_value(r["id"].clone()).context("bad id in scan response")?;
            let vector: Vec<f32> =
                serde_json::from_value(r["vector"].clone()).context("bad vector in scan response")?;
            let attributes = r.get("attributes").filter(|a| !a.is_null()).cloned();
            out.push(ExportRow { id, vector, attributes });
        }
        match v.get("next_after") {
            Some(next) if !next.is_null() => after = Some(next.clone()),
            _ => return Ok(out),
        }
    }
}

/// Runs `strata export`; returns the number of rows written.
pub async fn run(args: &ExportArgs) -> Result<u64> {
    let rest = Rest::new(&args.url)?;
    let desc = rest
        .describe(&args.collection)
        .await?
        .with_context(|| format!("collection {:?} does not exist", args.collection))?;
    let meta = collection_meta(&desc)?;
    let started = std::time::Instant::now();
    let mut rows = Vec::new();
    for shard in 0..meta.shards {
        rows.extend(scan_shard(&rest, &args.collection, shard, args.page.max(1)).await?);
        if !args.quiet {
            eprint!("\rscanned shard {}/{}: {} rows   ", shard + 1, meta.shards, rows.len());
        }
    }
    let n = rows.len() as u64;
    let (out, dim) = (args.out.clone(), meta.dimension);
    tokio::task::spawn_blocking(move || write_parquet(&out, dim, &rows)).await??;
    if !args.quiet {
        eprintln!("\rexported {n} rows to {} in {:.1}s          ", args.out.display(), started.elapsed().as_secs_f64());
    }
    Ok(n)
}

/// Writes rows to a Parquet file (snappy), 64k rows per record batch.
pub fn write_parquet(path: &std::path::Path, dim: usize, rows: &[ExportRow]) -> Result<()> {
    let string_ids = rows.iter().any(|r| matches!(r.id, RowId::Str(_)));
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", if string_ids { DataType::Utf8 } else { DataType::UInt64 }, false),
        Field::new("vector", DataType::FixedSizeList(item.clone(), dim as i32), false),
        Field::new("attributes", DataType::Utf8, true),
    ]));
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))?;
    for chunk in rows.chunks(65_536) {
        let ids: ArrayRef = if string_ids {
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
                if let RowId::Int(v) = r.id {
                    b.append_value(v);
                }
            }
            Arc::new(b.finish())
        };
        let mut vb = FixedSizeListBuilder::with_capacity(
            Float32Builder::with_capacity(chunk.len() * dim),
            dim as i32,
            chunk.len(),
        )
        .with_field(item.clone());
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
        let batch = RecordBatch::try_new(schema.clone(), vec![ids, Arc::new(vb.finish()), Arc::new(ab.finish())])?;
        writer.write(&batch)?;
    }
    writer.close()?;
    Ok(())
}
