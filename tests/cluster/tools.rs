//! The data tools against a multi-process cluster: `strata import --bulk` routes each
//! shard's rows to that shard's writer (any other ingest node refuses with a 409 naming
//! it), and `strata export` through one query node reads the shards another query node
//! serves over the `ScanShard` RPC.

use std::collections::BTreeSet;
use std::path::Path;

use arrow_array::{Array, FixedSizeListArray, Float32Array, UInt64Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::json;
use strata_tools::{ExportArgs, ImportArgs, export, import};
use strata_types::RowId;

use super::client::{DIM, vector_of};
use super::harness::{Cluster, Role};
use super::{SETTLE, assert_all_readable, assert_exact_matches, serving_counts};

/// A `.npy` file of `n` rows of `vector_of(row)` (an `.npy` import uses row numbers as ids).
fn write_npy(path: &Path, n: u64) {
    let data: Vec<f32> = (0..n).flat_map(vector_of).collect();
    strata_tools::bench::write_f32_npy(path, DIM, &data).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_import_and_export_route_across_nodes() {
    let Some(mut c) = Cluster::start("t6-tools", &[]) else { return };
    c.start_nodes(2, 2, 0).await;
    c.create_collection("bk", DIM, 4, 1).await;
    let shards = c.wait_settled("query-1", 4, SETTLE).await;

    // Every ingest node but a shard's writer refuses its bulk rows, naming the writer.
    for s in &shards {
        let (shard, owner) = (s["shard"].as_u64().unwrap() as u32, s["writer_owner"].as_str().unwrap());
        let id = (0u64..).find(|&i| RowId::Int(i).shard(4) == shard).unwrap();
        let body = json!({"shard": shard, "rows": [{"id": id, "vector": import::encode_vector(&vector_of(id))}]});
        for other in c.ids(Role::Ingest).into_iter().filter(|n| n != owner) {
            let url = format!("{}/v1/collections/bk/bulk", c.url(&other));
            let (status, resp) = c.api.call("POST", &url, Some(&body)).await.unwrap();
            assert_eq!(status, 409, "bulk rows of shard {shard} sent to {other}, not its writer {owner}: {resp}");
            let message = resp["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(owner), "the 409 does not name writer {owner}: {resp}");
        }
    }

    // The CLI, pointed at one ingest node, sends every shard's rows to its writer.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.npy");
    let n = 3_000u64;
    write_npy(&file, n);
    let args = ImportArgs {
        file: file.clone(),
        collection: "bk".into(),
        url: c.urls(Role::Ingest)[0].clone(),
        create: false,
        dimension: None,
        metric: "l2".into(),
        shards: 4,
        batch: 1000,
        concurrency: 2,
        id_column: "id".into(),
        vector_column: "vector".into(),
        checkpoint: None,
        bulk: true,
        bulk_rows: 400,
        flush: false,
        quiet: true,
    };
    let summary = import::run(&args, None).await.unwrap();
    assert_eq!(summary.rows, n);
    let ids: Vec<u64> = (0..n).collect();
    assert_all_readable(&c, "bk", &ids).await;
    for url in c.urls(Role::Query) {
        assert_exact_matches(&c, &url, "bk", (0..n).step_by(97)).await;
    }

    // Export through the query node serving the fewest shards: at least two shards (all
    // four if it serves none) come from the other node over the ScanShard RPC.
    let counts = serving_counts(&c.shards("query-1").await);
    let via = c.ids(Role::Query).into_iter().min_by_key(|id| counts.get(id).copied().unwrap_or(0)).unwrap();
    assert!(counts.get(&via).copied().unwrap_or(0) <= 2, "{counts:?}");
    let out = dir.path().join("export.parquet");
    let exported = export::run(&ExportArgs {
        collection: "bk".into(),
        out: out.clone(),
        url: c.url(&via),
        page: 250,
        quiet: true,
    })
    .await
    .unwrap();
    assert_eq!(exported, n);
    let mut seen = BTreeSet::new();
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&out).unwrap()).unwrap().build().unwrap();
    for batch in reader {
        let batch = batch.unwrap();
        let ids = batch.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
        let vectors = batch.column(1).as_any().downcast_ref::<FixedSizeListArray>().unwrap();
        for i in 0..batch.num_rows() {
            let v = vectors.value(i);
            let v = v.as_any().downcast_ref::<Float32Array>().unwrap();
            assert_eq!(v.values().to_vec(), vector_of(ids.value(i)), "exported vector of {}", ids.value(i));
            assert!(seen.insert(ids.value(i)), "{} exported twice", ids.value(i));
        }
        assert_eq!(vectors.null_count(), 0);
    }
    assert_eq!(seen.len() as u64, n);
}
