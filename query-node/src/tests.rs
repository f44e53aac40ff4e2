//! Query-node tests over real storage code paths (in-memory object store, memory-only
//! cache, in-process coordination).

use std::sync::Arc;

use object_store::memory::InMemory;
use serde_json::json;
use strata_coord::{Coordination, Head, InProcess, shard_key};
use strata_deps::Deps;
use strata_storage::cache::{CacheConfig, SegmentCache};
use strata_storage::catalog::{self, NewCollection};
use strata_storage::paths::ShardPaths;
use strata_storage::wal::{self, WalEntry, WalOp};
use strata_types::time::SystemClock;
use strata_types::{HnswParams, Metric, Row, RowId};

use strata_api::SearchRequest;

use crate::QueryConfig;

async fn deps() -> Deps {
    deps_on(Arc::new(InProcess::new())).await
}

/// The unit tests' infrastructure around `coord`: an in-memory store, the system clock and
/// a memory-only cache (shared with `outage_tests.rs`, which brings a real etcd).
pub(crate) async fn deps_on(coord: Arc<dyn Coordination>) -> Deps {
    Deps {
        store: Arc::new(InMemory::new()),
        coord,
        clock: Arc::new(SystemClock),
        rng: Arc::new(strata_types::random::Random::seeded(7)),
        cache: Arc::new(SegmentCache::open(&CacheConfig { disk_dir: None, ..Default::default() }).await.unwrap()),
        rpc: strata_rpc::RpcClients::new(Default::default()),
        node_id: "test".into(),
        metrics: Default::default(),
    }
}

/// A 2-d L2 collection named `name` with `shards` shards.
pub(crate) fn collection(name: &str, shards: u32) -> NewCollection {
    NewCollection {
        name: name.into(),
        dimension: 2,
        metric: Metric::L2,
        shards,
        replication: 1,
        hnsw: HnswParams::default(),
        attributes: Default::default(),
    }
}

fn upsert(seq: u64, id: u64, v: f32) -> WalEntry {
    let row = Row { id: RowId::Int(id), vector: vec![v, 0.0], attributes: None };
    WalEntry { seq, writer_epoch: 1, commit_id: seq, created_ms: 0, ops: vec![WalOp::Upsert(row)] }
}

fn search(v: f32) -> SearchRequest {
    serde_json::from_value(json!({"vector": [v, 0.0], "top_k": 5})).unwrap()
}

fn ids(r: &strata_api::SearchResponse) -> Vec<RowId> {
    r.results.iter().map(|r| r.id.clone()).collect()
}

/// Object storage is the truth: with no published head (coordination state lost) a strong
/// read still finds every WAL entry by probing storage; with a head, it trusts it.
#[tokio::test]
async fn strong_reads_probe_storage_without_heads_and_follow_published_heads() {
    let deps = deps().await;
    let new = collection("c", 1);
    let def = catalog::create(deps.store.as_ref(), &new, 1, 0).await.unwrap();
    let shard = ShardPaths::new(def.id.clone(), 0);
    wal::put_entry(deps.store.as_ref(), &shard, &upsert(1, 10, 1.0)).await.unwrap();
    wal::put_entry(deps.store.as_ref(), &shard, &upsert(2, 20, 2.0)).await.unwrap();

    let (_tx, rx) = tokio::sync::watch::channel(false);
    let node = crate::start(QueryConfig::default(), deps.clone(), rx).await.unwrap();
    assert_eq!(ids(&node.search("c", search(0.0)).await.unwrap()), [RowId::Int(10), RowId::Int(20)]);

    // A third entry, still without any head: found by probing.
    wal::put_entry(deps.store.as_ref(), &shard, &upsert(3, 30, 0.5)).await.unwrap();
    assert_eq!(ids(&node.search("c", search(0.0)).await.unwrap())[0], RowId::Int(30));

    // Once heads are published, a head beyond what was applied triggers a refresh…
    wal::put_entry(deps.store.as_ref(), &shard, &upsert(4, 40, 0.1)).await.unwrap();
    deps.coord.publish_head(&shard_key(&def.id, 0), Head { wal_seq: 4, manifest_version: 0 }).await.unwrap();
    assert_eq!(ids(&node.search("c", search(0.0)).await.unwrap())[0], RowId::Int(40));
    assert_eq!(
        node.get("c", serde_json::from_value(serde_json::json!({"ids": [40]})).unwrap()).await.unwrap().len(),
        1
    );
}

/// Over several shards, only the merged top-k rows are materialised, after the merge: the
/// vectors and attributes returned are those of the ids returned, in score order, and a
/// search that asks for neither returns neither — whether shards search on the request's
/// worker (small work) or on the search pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_shard_search_returns_the_rows_of_its_final_hits() {
    for inline_search_max_work in [QueryConfig::default().inline_search_max_work, 0] {
        let config = QueryConfig { inline_search_max_work, ..QueryConfig::default() };
        multi_shard_search_returns_the_rows_of_its_final_hits(config).await;
    }
}

async fn multi_shard_search_returns_the_rows_of_its_final_hits(config: QueryConfig) {
    let deps = deps().await;
    let new = collection("m", 3);
    let def = catalog::create(deps.store.as_ref(), &new, 1, 0).await.unwrap();
    let mut seqs = [0u64; 3];
    for id in 0..30u64 {
        let mut attributes = strata_types::Attributes::new();
        attributes.insert("n".into(), json!(id));
        let row = Row { id: RowId::Int(id), vector: vec![id as f32, 1.0], attributes: Some(attributes) };
        let shard = row.id.shard(3);
        seqs[shard as usize] += 1;
        let seq = seqs[shard as usize];
        let entry = WalEntry { seq, writer_epoch: 1, commit_id: seq, created_ms: 0, ops: vec![WalOp::Upsert(row)] };
        wal::put_entry(deps.store.as_ref(), &ShardPaths::new(def.id.clone(), shard), &entry).await.unwrap();
    }
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let node = crate::start(config, deps.clone(), rx).await.unwrap();

    let req = json!({"vector": [10.2, 1.0], "top_k": 4, "include_vector": true, "include_attributes": true});
    let res = node.search("m", serde_json::from_value(req).unwrap()).await.unwrap();
    assert_eq!(ids(&res), [10, 11, 9, 12].map(RowId::Int), "nearest first, across shards");
    for r in &res.results {
        let RowId::Int(id) = r.id else { unreachable!() };
        assert_eq!(r.vector.as_deref(), Some(&[id as f32, 1.0][..]), "the vector of row {id}");
        assert_eq!(r.attributes.as_ref().unwrap()["n"], json!(id), "the attributes of row {id}");
    }
    let bare = node.search("m", search(10.2)).await.unwrap();
    assert_eq!(ids(&bare)[..4], ids(&res)[..]);
    assert!(bare.results.iter().all(|r| r.vector.is_none() && r.attributes.is_none()));
}

/// Garbage collection deletes a shard's first manifest versions once newer ones have
/// existed for its grace period: a query node that starts afterwards (with or without a
/// published head) must still find the newest version and serve its rows.
#[tokio::test]
async fn a_query_node_starting_after_gc_of_the_first_manifests_serves_the_newest() {
    use object_store::ObjectStoreExt;
    use strata_storage::manifest::{self, Manifest, SegmentMeta};
    use strata_storage::segment;

    for publish_head in [false, true] {
        let deps = deps().await;
        let new = collection("g", 1);
        let def = catalog::create(deps.store.as_ref(), &new, 1, 0).await.unwrap();
        let shard = ShardPaths::new(def.id.clone(), 0);
        let rows: Vec<Row> =
            (0..10).map(|i| Row { id: RowId::Int(i), vector: vec![i as f32, 0.0], attributes: None }).collect();
        let built = segment::build(&def, &rows, 1_000).unwrap();
        segment::upload(deps.store.as_ref(), &deps.cache, &shard, "seg-a", &built).await.unwrap();
        let meta = SegmentMeta {
            id: "seg-a".into(),
            rows: 10,
            bytes: built.bytes(),
            min_seq: 1,
            max_seq: 1,
            has_graph: false,
            has_attr_index: false,
            tombstone: None,
            level: 0,
        };
        for version in 1..=3 {
            let m = Manifest { version, flushed_seq: 1, segments: vec![meta.clone()], ..Default::default() };
            manifest::commit(deps.store.as_ref(), &shard, &m).await.unwrap();
        }
        for version in [1, 2] {
            deps.store.delete(&shard.manifest(version)).await.unwrap();
        }
        if publish_head {
            deps.coord.publish_head(&shard_key(&def.id, 0), Head { wal_seq: 1, manifest_version: 3 }).await.unwrap();
        }
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let node = crate::start(QueryConfig::default(), deps.clone(), rx).await.unwrap();
        let found = node.search("g", search(3.2)).await.unwrap();
        assert_eq!(ids(&found), [3, 4, 2, 5, 1].map(RowId::Int), "head published: {publish_head}");
        assert_eq!(node.describe("g").await.unwrap().stats.rows, 10);
    }
}

/// Readiness is about a node's first load: once every shard assigned at start serves, the
/// node stays ready while it loads a collection created later, whose shard is held loading
/// here by reads that never return.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::disallowed_methods)] // waits in real time for the real serving loop
async fn a_ready_node_stays_ready_while_it_loads_a_new_collection() {
    // Once set, reads of shard data of every collection but this one never return.
    let only = Arc::new(std::sync::OnceLock::<String>::new());
    let hold = only.clone();
    let store = strata_test_support::HookedStore::new().before_get(move |path| {
        let parts: Vec<&str> = path.as_ref().split('/').collect();
        let stall = hold.get().is_some_and(|id| parts.len() > 3 && parts[0] == "collections" && parts[1] != id);
        Box::pin(async move {
            if stall {
                std::future::pending::<()>().await;
            }
        })
    });
    let deps = Deps { store: Arc::new(store), ..deps().await };
    let member = strata_coord::Member {
        node_id: deps.node_id.clone(),
        role: strata_coord::Role::Query,
        http_url: "http://127.0.0.1:1".into(),
        grpc_url: "http://127.0.0.1:2".into(),
        started_ms: 0,
    };
    deps.coord.register(member).await.unwrap();
    let first = catalog::create(deps.store.as_ref(), &collection("first", 1), 1, 0).await.unwrap();
    wal::put_entry(deps.store.as_ref(), &ShardPaths::new(first.id.clone(), 0), &upsert(1, 10, 1.0)).await.unwrap();
    let config = QueryConfig { catalog_poll_ms: 50, ..Default::default() };
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let node = crate::start(config, deps.clone(), rx).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !node.is_ready() {
        assert!(std::time::Instant::now() < deadline, "the node never became ready: {:?}", node.load_progress());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    only.set(first.id).unwrap();
    let later = catalog::create(deps.store.as_ref(), &collection("later", 1), 1, 0).await.unwrap();
    wal::put_entry(deps.store.as_ref(), &ShardPaths::new(later.id, 0), &upsert(1, 10, 1.0)).await.unwrap();
    while node.load_progress() != (1, 2) {
        assert!(std::time::Instant::now() < deadline, "the new shard was not assigned: {:?}", node.load_progress());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(node.is_ready(), "a node that finished its first load left readiness to load a new collection");
}
