//! The data tools against a standalone server listening on 127.0.0.1:0: import of Parquet,
//! .npy and .fvecs files, an interrupted import resumed from its checkpoint, export round
//! trip, scan paging and bulk import.

// Tests drive real processes and servers in real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{FixedSizeListBuilder, Float32Builder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};
use strata_tools::client::Rest;
use strata_tools::{ExportArgs, ImportArgs, export, import};
use strata_types::RowId;

struct Served {
    server: common::TestServer,
    url: String,
}

async fn serve() -> Served {
    let server = common::start(|c| {
        c.ingest.graph_min_rows = 100;
    })
    .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = server.server.router.clone();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Served { server, url }
}

fn args(file: &Path, collection: &str, url: &str) -> ImportArgs {
    ImportArgs {
        file: file.to_owned(),
        collection: collection.into(),
        url: url.into(),
        create: true,
        dimension: None,
        metric: "l2".into(),
        shards: 2,
        batch: 100,
        concurrency: 3,
        id_column: "id".into(),
        vector_column: "vector".into(),
        checkpoint: None,
        bulk: false,
        bulk_rows: 50_000,
        flush: false,
        quiet: true,
    }
}

fn vector_of(i: u64, dim: usize) -> Vec<f32> {
    (0..dim).map(|d| ((i * 31 + d as u64 * 7) % 97) as f32 / 10.0 + 0.5).collect()
}

fn vectors(n: u64, dim: usize, fixed: bool) -> ArrayRef {
    if fixed {
        let mut b = FixedSizeListBuilder::new(Float32Builder::new(), dim as i32);
        for i in 0..n {
            b.values().append_slice(&vector_of(i, dim));
            b.append(true);
        }
        Arc::new(b.finish())
    } else {
        let mut b = arrow_array::builder::ListBuilder::new(Float32Builder::new());
        for i in 0..n {
            b.values().append_slice(&vector_of(i, dim));
            b.append(true);
        }
        Arc::new(b.finish())
    }
}

fn write_parquet(path: &Path, ids: ArrayRef, vectors: ArrayRef, extra: Vec<(&str, ArrayRef)>) {
    let mut fields = vec![
        Field::new("id", ids.data_type().clone(), false),
        Field::new("vector", vectors.data_type().clone(), false),
    ];
    let mut cols = vec![ids, vectors];
    for (name, col) in extra {
        fields.push(Field::new(name, col.data_type().clone(), true));
        cols.push(col);
    }
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    let mut w = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn write_npy(path: &Path, n: u64, dim: usize) {
    let data: Vec<f32> = (0..n).flat_map(|i| vector_of(i, dim)).collect();
    strata_tools::bench::write_f32_npy(path, dim, &data).unwrap();
}

fn write_fvecs(path: &Path, n: u64, dim: usize) {
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend((dim as i32).to_le_bytes());
        bytes.extend(vector_of(i, dim).iter().flat_map(|v| v.to_le_bytes()));
    }
    std::fs::write(path, bytes).unwrap();
}

/// Every live id of a collection with its vector and attributes, via scan paging.
async fn scan_all(url: &str, name: &str, shards: u32, page: usize) -> Vec<export::ExportRow> {
    let rest = Rest::new(url).unwrap();
    let mut all = Vec::new();
    for shard in 0..shards {
        let rows = export::scan_shard(&rest, name, shard, page).await.unwrap();
        let ids: Vec<&RowId> = rows.iter().map(|r| &r.id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "scan of shard {shard} is not strictly ordered");
        assert!(rows.iter().all(|r| r.id.shard(shards) == shard));
        all.extend(rows);
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parquet_import_then_export_round_trips() {
    let s = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.parquet");
    let n = 450u64;
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n as i64));
    let colors: ArrayRef =
        Arc::new(StringArray::from_iter((0..n).map(|i| (i % 3 != 0).then(|| format!("c{}", i % 5)))));
    let ranks: ArrayRef = Arc::new(UInt64Array::from_iter_values((0..n).map(|i| i * 2)));
    write_parquet(&file, ids, vectors(n, 8, true), vec![("color", colors), ("rank", ranks)]);

    let summary = import::run(&args(&file, "pq", &s.url), None).await.unwrap();
    assert_eq!((summary.rows, summary.total, summary.interrupted), (n, n, false));
    assert!(!import::checkpoint_path(&args(&file, "pq", &s.url)).exists(), "a finished import removes its checkpoint");
    assert_eq!(s.server.rows("pq").await, n);
    let got = s
        .server
        .ok(
            "POST",
            "/v1/collections/pq/get",
            Some(json!({"ids": [4], "include_vector": true, "include_attributes": true})),
        )
        .await;
    assert_eq!(got["rows"][0]["attributes"], json!({"color": "c4", "rank": 8}));

    let out = dir.path().join("out.parquet");
    let exported = export::run(&ExportArgs {
        collection: "pq".into(),
        out: out.clone(),
        url: s.url.clone(),
        page: 64,
        quiet: true,
    })
    .await
    .unwrap();
    assert_eq!(exported, n);
    // Read it back: same ids, vectors and attributes.
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&out).unwrap()).unwrap().build().unwrap();
    let mut seen = BTreeSet::new();
    for rb in reader {
        let rb = rb.unwrap();
        assert!(matches!(rb.schema().field(1).data_type(), DataType::FixedSizeList(_, 8)));
        let ids = rb.column(0).as_any().downcast_ref::<UInt64Array>().unwrap();
        let vecs = rb.column(1).as_any().downcast_ref::<arrow_array::FixedSizeListArray>().unwrap();
        let attrs = rb.column(2).as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..rb.num_rows() {
            let id = ids.value(i);
            let v = vecs.value(i);
            let v = v.as_any().downcast_ref::<arrow_array::Float32Array>().unwrap();
            assert_eq!(v.values().to_vec(), vector_of(id, 8));
            let a: Value = serde_json::from_str(attrs.value(i)).unwrap();
            assert_eq!(a["rank"], json!(id * 2));
            assert!(seen.insert(id));
        }
    }
    assert_eq!(seen, (0..n).collect());

    // Re-import the export into a new collection (attributes arrive as a JSON string column).
    let mut again = args(&out, "pq2", &s.url);
    again.batch = 1000;
    import::run(&again, None).await.unwrap();
    assert_eq!(s.server.rows("pq2").await, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn npy_fvecs_and_string_id_list_parquet_import() {
    let s = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("v.npy");
    write_npy(&npy, 250, 6);
    let fvecs = dir.path().join("v.fvecs");
    write_fvecs(&fvecs, 130, 6);
    assert_eq!(import::run(&args(&npy, "npy", &s.url), None).await.unwrap().rows, 250);
    assert_eq!(import::run(&args(&fvecs, "fv", &s.url), None).await.unwrap().rows, 130);
    assert_eq!(s.server.rows("npy").await, 250);
    assert_eq!(s.server.rows("fv").await, 130);
    let got = s.server.ok("POST", "/v1/collections/fv/get", Some(json!({"ids": [129], "include_vector": true}))).await;
    let v: Vec<f32> = serde_json::from_value(got["rows"][0]["vector"].clone()).unwrap();
    assert_eq!(v, vector_of(129, 6));

    let pq = dir.path().join("s.parquet");
    let ids: ArrayRef = Arc::new(StringArray::from_iter_values((0..40).map(|i| format!("doc-{i}"))));
    write_parquet(&pq, ids, vectors(40, 6, false), vec![]);
    import::run(&args(&pq, "strs", &s.url), None).await.unwrap();
    let got = s.server.ok("POST", "/v1/collections/strs/get", Some(json!({"ids": ["doc-7"]}))).await;
    assert_eq!(got["rows"][0]["id"], json!("doc-7"));
    // Mixed ids export as text: the export finds the string ids before writing any row.
    s.server
        .ok("POST", "/v1/collections/strs/upsert", Some(json!({"rows": [{"id": 5, "vector": vec![1.0f32; 6]}]})))
        .await;
    let out = dir.path().join("strs.parquet");
    let exported = export::run(&ExportArgs {
        collection: "strs".into(),
        out: out.clone(),
        url: s.url.clone(),
        page: 7,
        quiet: true,
    })
    .await
    .unwrap();
    assert_eq!(exported, 41);
    let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&out).unwrap()).unwrap().build().unwrap();
    let mut ids = BTreeSet::new();
    for rb in reader {
        let rb = rb.unwrap();
        let col = rb.column(0).as_any().downcast_ref::<StringArray>().expect("string id column");
        ids.extend((0..rb.num_rows()).map(|i| col.value(i).to_owned()));
    }
    assert_eq!(ids.len(), 41);
    assert!(ids.contains("5") && ids.contains("doc-39"), "{ids:?}");

    // Clear errors: wrong dimension, missing column, no collection without --create.
    let mut wrong = args(&npy, "fv", &s.url);
    wrong.create = false;
    write_npy(&npy, 10, 5);
    let e = import::run(&wrong, None).await.unwrap_err().to_string();
    assert!(e.contains("dimension 5"), "{e}");
    let mut missing = args(&pq, "nope", &s.url);
    missing.create = false;
    let e = import::run(&missing, None).await.unwrap_err().to_string();
    assert!(e.contains("does not exist"), "{e}");
    let mut col = args(&pq, "strs", &s.url);
    col.vector_column = "emb".into();
    let e = import::run(&col, None).await.unwrap_err().to_string();
    assert!(e.contains("no vector column \"emb\""), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_import_resumes_from_its_checkpoint() {
    let s = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.npy");
    write_npy(&file, 1000, 4);
    let a = args(&file, "resume", &s.url);
    let first = import::run(&a, Some(300)).await.unwrap();
    assert!(first.interrupted && first.rows >= 300 && first.rows < 1000, "{first:?}");
    let cp_path = import::checkpoint_path(&a);
    let cp: import::Checkpoint = serde_json::from_slice(&std::fs::read(&cp_path).unwrap()).unwrap();
    assert_eq!(cp.rows_done, first.rows);
    // Requests in flight when it stopped may have landed too; resuming re-sends them.
    assert!(s.server.rows("resume").await >= first.rows);

    let second = import::run(&a, None).await.unwrap();
    assert_eq!(second.resumed_from, first.rows);
    assert_eq!(second.rows, 1000 - first.rows);
    assert!(!cp_path.exists());
    let rows = scan_all(&s.url, "resume", 2, 97).await;
    let ids: BTreeSet<RowId> = rows.iter().map(|r| r.id.clone()).collect();
    assert_eq!(rows.len(), 1000, "every row exactly once");
    assert_eq!(ids, (0..1000).map(RowId::Int).collect());

    // A checkpoint for another incarnation of the collection is refused.
    import::run(&a, Some(100)).await.unwrap();
    s.server.ok("DELETE", "/v1/collections/resume", None).await;
    s.server.create("resume", 4, "l2").await;
    let e = import::run(&a, None).await.unwrap_err().to_string();
    assert!(e.contains("incarnation") && e.contains("delete the checkpoint"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_pages_return_every_live_row_once() {
    let s = serve().await;
    s.server.create("sc", 3, "l2").await; // 2 shards
    let id_of = |i: u64| if i.is_multiple_of(4) { json!(format!("k{i}")) } else { json!(i) };
    let rows: Vec<Value> = (0..300).map(|i| json!({"id": id_of(i), "vector": [i as f32, 1.0, 2.0]})).collect();
    s.server.ok("POST", "/v1/collections/sc/upsert", Some(json!({"rows": rows}))).await;
    s.server.ok("POST", "/v1/collections/sc/flush", Some(json!({}))).await;
    // Deletes (some flushed, some in the tail), replacements and new rows in the tail.
    let dels: Vec<Value> = (0..300).filter(|i| i % 7 == 0).map(id_of).collect();
    s.server.ok("POST", "/v1/collections/sc/delete", Some(json!({"ids": dels}))).await;
    let more: Vec<Value> = (250..360).map(|i| json!({"id": id_of(i), "vector": [i as f32, 9.0, 9.0]})).collect();
    s.server.ok("POST", "/v1/collections/sc/upsert", Some(json!({"rows": more}))).await;
    let live: BTreeSet<RowId> =
        (0..360).filter(|i| *i >= 250 || i % 7 != 0).map(|i| serde_json::from_value(id_of(i)).unwrap()).collect();
    for page in [1, 7, 64, 10_000] {
        let rows = scan_all(&s.url, "sc", 2, page).await;
        let ids: Vec<RowId> = rows.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids.len(), live.len(), "page {page}");
        assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), live, "page {page}");
        let r300 = rows.iter().find(|r| r.id == RowId::Int(255)).unwrap();
        assert_eq!(r300.vector, vec![255.0, 9.0, 9.0], "the newest version is scanned");
    }
    let (status, _) = s.server.call("POST", "/v1/collections/sc/scan", Some(json!({"shard": 2, "limit": 10}))).await;
    assert_eq!(status.as_u16(), 400);
    let (status, _) = s.server.call("POST", "/v1/collections/sc/scan", Some(json!({"shard": 0, "limit": 0}))).await;
    assert_eq!(status.as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_import_rows_are_searchable_and_replaceable() {
    let s = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("bulk.parquet");
    let n = 600u64;
    let ids: ArrayRef = Arc::new(UInt64Array::from_iter_values(0..n));
    let tags: ArrayRef = Arc::new(Int64Array::from_iter_values((0..n as i64).map(|i| i % 10)));
    write_parquet(&file, ids, vectors(n, 8, true), vec![("tag", tags)]);
    // An older copy of id 5 in a segment, and a not-yet-flushed WAL write of id 6.
    s.server.create("bk", 8, "l2").await;
    s.server
        .ok("POST", "/v1/collections/bk/upsert", Some(json!({"rows": [{"id": 5, "vector": vec![0.0f32; 8]}]})))
        .await;
    s.server.ok("POST", "/v1/collections/bk/flush", Some(json!({}))).await;
    s.server
        .ok("POST", "/v1/collections/bk/upsert", Some(json!({"rows": [{"id": 6, "vector": vec![7.0f32; 8]}]})))
        .await;

    let mut a = args(&file, "bk", &s.url);
    a.bulk = true;
    a.bulk_rows = 250;
    let summary = import::run(&a, None).await.unwrap();
    assert_eq!(summary.rows, n);
    assert_eq!(s.server.rows("bk").await, n);
    // Bulk is newer than segments (5 replaced), older than the unflushed tail (6 kept).
    let got = s
        .server
        .ok(
            "POST",
            "/v1/collections/bk/get",
            Some(json!({"ids": [5, 6, 7], "include_vector": true, "include_attributes": true})),
        )
        .await;
    let v = |i: usize| serde_json::from_value::<Vec<f32>>(got["rows"][i]["vector"].clone()).unwrap();
    assert_eq!(v(0), vector_of(5, 8));
    assert_eq!(v(1), vec![7.0f32; 8]);
    assert_eq!(got["rows"][2]["attributes"], json!({"tag": 7}));
    s.server.ok("POST", "/v1/collections/bk/flush", Some(json!({}))).await;
    let got = s.server.ok("POST", "/v1/collections/bk/get", Some(json!({"ids": [6], "include_vector": true}))).await;
    assert_eq!(got["rows"][0]["vector"], json!(vec![7.0f32; 8]));
    assert_eq!(s.server.rows("bk").await, n);

    // Search finds a bulk row exactly.
    let hit =
        s.server.ok("POST", "/v1/collections/bk/search", Some(json!({"vector": vector_of(77, 8), "top_k": 1}))).await;
    assert_eq!(hit["results"][0]["id"], json!(77));
    // Upsert over and delete bulk rows.
    s.server
        .ok("POST", "/v1/collections/bk/upsert", Some(json!({"rows": [{"id": 77, "vector": vec![3.0f32; 8]}]})))
        .await;
    s.server.ok("POST", "/v1/collections/bk/delete", Some(json!({"ids": [78]}))).await;
    for round in 0..2 {
        let got =
            s.server.ok("POST", "/v1/collections/bk/get", Some(json!({"ids": [77, 78], "include_vector": true}))).await;
        assert_eq!(got["rows"].as_array().unwrap().len(), 1, "round {round}: {got}");
        assert_eq!(got["rows"][0]["vector"], json!(vec![3.0f32; 8]));
        assert_eq!(s.server.rows("bk").await, n - 1);
        s.server.ok("POST", "/v1/collections/bk/flush", Some(json!({}))).await;
    }
    let rows = scan_all(&s.url, "bk", 2, 100).await;
    assert_eq!(rows.len() as u64, n - 1);

    // A bulk request for the wrong shard, or with a bad vector, is refused.
    let (status, body) = s
        .server
        .call("POST", "/v1/collections/bk/bulk", Some(json!({"shard": 1 - RowId::Int(1).shard(2), "rows": [{"id": 1, "vector": import::encode_vector(&[1.0; 8])}]})))
        .await;
    assert_eq!(status.as_u16(), 400, "{body}");
    let (status, body) = s
        .server
        .call("POST", "/v1/collections/bk/bulk", Some(json!({"shard": RowId::Int(1).shard(2), "rows": [{"id": 1, "vector": import::encode_vector(&[1.0; 7])}]})))
        .await;
    assert_eq!(status.as_u16(), 400, "{body}");
}
