//! Starting a shard writer: a start that fails after taking the writer lease gives the
//! lease back, so another node can take the shard instead of the two forwarding its writes
//! to each other until the lease expires.

use std::sync::Arc;

use object_store::memory::InMemory;
use object_store::{ObjectStoreExt, PutPayload};
use strata_coord::{Coordination, InProcess, LeaseKind, shard_key};
use strata_storage::paths::ShardPaths;
use strata_types::time::SystemClock;
use strata_types::{CollectionDef, HnswParams, Metric};
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
