//! Starting and stopping shard writers: a start that fails after taking the writer lease
//! gives the lease back, so another node can take the shard instead of the two forwarding
//! its writes to each other until the lease expires; a node's stop releases its leases
//! without flushing.

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::{ObjectStoreExt, PutPayload};
use strata_coord::{Coordination, InProcess, LeaseKind, shard_key};
use strata_storage::paths::ShardPaths;
use strata_storage::{manifest, wal};
use strata_types::time::SystemClock;
use strata_types::{CollectionDef, ErrorKind, HnswParams, Metric, Row, RowId};
use tokio::sync::watch;

use crate::test_deps;

use crate::IngestConfig;
use crate::metrics::IngestMetrics;
use crate::writer::ShardWriter;

#[tokio::test]
async fn a_writer_that_fails_to_start_releases_its_lease() {
    let store: Arc<InMemory> = Arc::new(InMemory::new());
    let coord = Arc::new(InProcess::new());
    let deps = test_deps::deps(store.clone(), coord.clone(), Arc::new(SystemClock), "ingest-a", 7).await;
    let def = Arc::new(CollectionDef {
        id: "c-1".into(),
        name: "c".into(),
        dimension: 2,
        metric: Metric::L2,
        shards: 1,
        replication: 1,
        hnsw: HnswParams::default(),
        created_at_ms: 0,
        attributes: Default::default(),
    });
    // A damaged manifest: recovery cannot read the shard's state.
    let paths = ShardPaths::new(def.id.clone(), 0);
    store.put(&paths.manifest(1), PutPayload::from_static(b"not a manifest")).await.unwrap();
    let metrics = Arc::new(IngestMetrics::register(&deps.metrics));
    let (_shutdown, rx) = watch::channel(false);
    let started = ShardWriter::start(deps, metrics, def.clone(), 0, Arc::new(IngestConfig::default()), rx).await;
    assert!(started.is_err(), "a damaged manifest must fail the start");

    let key = shard_key(&def.id, 0);
    let other = coord.try_acquire(LeaseKind::Writer, &key, "ingest-b").await.unwrap();
    assert!(other.is_some_and(|l| l.holder == "ingest-b"), "the failed writer kept its lease");
}

/// A stop answers what is in hand, releases the writer lease and flushes nothing: the
/// acknowledged writes are in the WAL, where the shard's next writer finds them; writes
/// after the stop are refused with a retryable error, never taken by a new writer here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_releases_its_writer_leases_without_flushing() {
    let store: Arc<InMemory> = Arc::new(InMemory::new());
    let coord = Arc::new(InProcess::new());
    let deps = test_deps::deps(store.clone(), coord.clone(), Arc::new(SystemClock), "ingest-a", 7).await;
    let (shutdown, rx) = watch::channel(false);
    let node = crate::start(IngestConfig::default(), deps, rx).await.unwrap();
    let def = node.create_collection(crate::routing_tests::new_collection()).await.unwrap();
    let rows = |from: u64| {
        (from..from + 100).map(|i| Row { id: RowId::Int(i), vector: vec![i as f32, 1.0], attributes: None })
    };
    for batch in 0..5 {
        node.upsert("c", rows(batch * 100).collect()).await.unwrap();
    }
    let key = shard_key(&def.id, 0);
    assert!(
        coord.try_acquire(LeaseKind::Writer, &key, "ingest-b").await.unwrap().is_none(),
        "the writer holds its lease"
    );

    shutdown.send_replace(true);
    node.stopped().await;
    let taken = coord.try_acquire(LeaseKind::Writer, &key, "ingest-b").await.unwrap();
    assert!(taken.is_some_and(|l| l.holder == "ingest-b"), "the stopped writer kept its lease");
    let refused = node.upsert("c", rows(1_000).collect()).await.expect_err("a write after the stop");
    assert_eq!(refused.kind(), ErrorKind::Retryable, "{refused}");

    let paths = ShardPaths::new(def.id.clone(), 0);
    let manifest = manifest::load_latest(store.as_ref(), &paths, None).await.unwrap();
    assert_eq!(manifest.flushed_seq, 0, "a stop must not flush");
    let tail = wal::read_from(store.as_ref(), &paths, 1, usize::MAX).await.unwrap();
    let ops: usize = tail.iter().map(|e| e.ops.len()).sum();
    assert_eq!(ops, 500, "every acknowledged row is in the WAL");
}
