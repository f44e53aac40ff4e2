//! Reads while etcd is stalled (SIGSTOP) or down (killed): a real etcd, the in-memory
//! object store. Strong reads fall back to probing object storage and still see every
//! write whose head was published; eventual reads answer too (decision 0011).

// These tests run against a real etcd, in real time.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;

use serde_json::json;
use strata_coord::etcd::{Etcd, EtcdConfig};
use strata_coord::{Head, shard_key};
use strata_storage::catalog;
use strata_storage::paths::ShardPaths;
use strata_storage::wal::{self, WalEntry, WalOp};
use strata_test_support::{EtcdServer, require_etcd};
use strata_types::metrics::sample;
use strata_types::time::SystemClock;
use strata_types::{Row, RowId};

use crate::{QueryConfig, QueryNode};

fn upsert(seq: u64, id: u64) -> WalEntry {
    let row = Row { id: RowId::Int(id), vector: vec![id as f32, 0.0], attributes: None };
    WalEntry { seq, writer_epoch: 1, commit_id: seq, created_ms: 0, ops: vec![WalOp::Upsert(row)] }
}

/// A strong and an eventual search (row `id` is the nearest to its own vector) and a get
/// (strongly consistent) all find row `id`.
async fn reads_find(node: &QueryNode, id: u64) {
    for consistency in ["strong", "eventual"] {
        let req = json!({"vector": [id as f32, 0.0], "top_k": 1, "consistency": consistency});
        let found = node.search("c", serde_json::from_value(req).unwrap()).await.unwrap();
        assert_eq!(found.results[0].id, RowId::Int(id), "{consistency} search");
    }
    let rows = node.get("c", serde_json::from_value(json!({"ids": [id]})).unwrap()).await.unwrap();
    assert_eq!(rows.len(), 1, "get of {id}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_fall_back_to_object_storage_while_etcd_is_stalled_or_down() {
    if !require_etcd() {
        return;
    }
    let mut server = EtcdServer::start().unwrap();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let config = EtcdConfig {
        endpoints: vec![server.endpoint()],
        cluster: format!("outage{}-{nanos}", std::process::id()),
        session_ttl_s: 2,
        connect_timeout_ms: 5000,
        request_timeout_ms: 5000,
        ..EtcdConfig::default()
    };
    let coord = Etcd::connect(config, Arc::new(SystemClock)).await.unwrap();
    let mut deps = crate::tests::deps_on(coord).await;
    deps.node_id = "q1".into();
    let new = crate::tests::collection("c", 1);
    let def = catalog::create(deps.store.as_ref(), &new, 1, 0).await.unwrap();
    let shard = ShardPaths::new(def.id.clone(), 0);
    let key = shard_key(&def.id, 0);
    // What a writer does before acknowledging: the WAL object, then the head.
    let write = async |seq: u64| {
        wal::put_entry(deps.store.as_ref(), &shard, &upsert(seq, seq * 10)).await.unwrap();
        deps.coord.publish_head(&key, Head { wal_seq: seq, manifest_version: 0 }).await.unwrap();
    };
    write(1).await;
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let node = crate::start(QueryConfig::default(), deps.clone(), rx).await.unwrap();
    reads_find(&node, 10).await;

    // Acknowledged just before etcd stalls: the node has not applied it yet.
    write(2).await;
    server.pause();
    reads_find(&node, 20).await;
    reads_find(&node, 10).await;
    // A write the node cannot learn of from a head: found by probing storage.
    wal::put_entry(deps.store.as_ref(), &shard, &upsert(3, 30)).await.unwrap();
    let req = json!({"vector": [30.0, 0.0], "top_k": 1});
    assert_eq!(node.search("c", serde_json::from_value(req).unwrap()).await.unwrap().results[0].id, RowId::Int(30));

    // Down rather than stalled.
    server.resume();
    server.stop();
    wal::put_entry(deps.store.as_ref(), &shard, &upsert(4, 40)).await.unwrap();
    reads_find(&node, 40).await;
    assert!(node.describe("c").await.unwrap().stats.rows >= 4);

    node.export_metrics();
    let fallbacks = sample(&deps.metrics.render(), "strata_query_head_fallbacks_total").unwrap_or(0.0);
    assert!(fallbacks >= 2.0, "reads fell back to storage {fallbacks} times");

    // Back: heads are trusted again, and reads still see everything.
    server.restart().unwrap();
    wal::put_entry(deps.store.as_ref(), &shard, &upsert(5, 50)).await.unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while deps.coord.publish_head(&key, Head { wal_seq: 5, manifest_version: 0 }).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "etcd did not come back");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    reads_find(&node, 50).await;
}
