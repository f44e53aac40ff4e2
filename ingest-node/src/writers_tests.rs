//! The writer registry starts writers of different shards in parallel (a node taking over
//! a dead node's shards replays their WAL tails at once, decision 0014) and never two
//! writers of one shard.

// The parallel-start test bounds a wait that never ends if starts are serial.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::path::Path;
use strata_coord::InProcess;
use strata_storage::paths::ShardPaths;
use strata_test_support::HookedStore;
use strata_types::time::SystemClock;
use strata_types::{CollectionDef, HnswParams, Metric};
use tokio::sync::{Barrier, watch};

use crate::IngestConfig;
use crate::metrics::IngestMetrics;
use crate::test_deps;
use crate::writers::WriterRegistry;

const SHARDS: u32 = 4;

fn def() -> Arc<CollectionDef> {
    Arc::new(CollectionDef {
        id: "c-1".into(),
        name: "c".into(),
        dimension: 2,
        metric: Metric::L2,
        shards: SHARDS,
        replication: 1,
        hnsw: HnswParams::default(),
        created_at_ms: 0,
        attributes: Default::default(),
    })
}

async fn registry(store: Arc<dyn ObjectStore>) -> (WriterRegistry, watch::Sender<bool>) {
    let deps = test_deps::deps(store, Arc::new(InProcess::new()), Arc::new(SystemClock), "ingest-a", 7).await;
    let metrics = Arc::new(IngestMetrics::register(&deps.metrics));
    let (shutdown, rx) = watch::channel(false);
    (WriterRegistry::new(deps, Arc::new(IngestConfig::default()), metrics, rx), shutdown)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_of_different_shards_recover_at_the_same_time() {
    let def = def();
    // Holds the first WAL read of every shard (sequence 1) until that of every shard has
    // arrived: starts that recover one shard after another never get past it.
    let first_reads: Vec<Path> = (0..SHARDS).map(|s| ShardPaths::new(def.id.clone(), s).wal(1)).collect();
    let barrier = Arc::new(Barrier::new(SHARDS as usize));
    let store = Arc::new(HookedStore::new().before_get(move |path| {
        let barrier = first_reads.contains(path).then(|| barrier.clone());
        Box::pin(async move {
            if let Some(barrier) = barrier {
                barrier.wait().await;
            }
        })
    }));
    let (writers, _shutdown) = registry(store).await;
    let starts = join_all((0..SHARDS).map(|shard| writers.start(&def, shard)));
    let started = tokio::time::timeout(Duration::from_secs(10), starts)
        .await
        .expect("the shards' WAL tails were not read at the same time: starts are serial");
    for (shard, writer) in started.into_iter().enumerate() {
        assert_eq!(writer.unwrap_or_else(|e| panic!("shard {shard}: {e}")).shard, shard as u32);
    }
    assert_eq!(writers.len().await, SHARDS as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_of_one_shard_at_the_same_time_share_one_writer() {
    let def = def();
    let (writers, shutdown) = registry(Arc::new(InMemory::new())).await;
    let started = join_all((0..8).map(|_| writers.start(&def, 0))).await;
    let first = started[0].as_ref().unwrap().clone();
    for writer in &started {
        assert!(Arc::ptr_eq(writer.as_ref().unwrap(), &first), "two writers of one shard were started");
    }
    assert_eq!(writers.len().await, 1);

    // After shutdown: the running writers step down and no new one starts.
    shutdown.send_replace(true);
    writers.stop_all().await;
    assert!(first.is_stopped(), "the writer did not stop");
    let refused = writers.start(&def, 1).await.err().expect("a start after shutdown");
    assert_eq!(refused.kind(), strata_types::ErrorKind::Retryable, "{refused}");
    assert_eq!(writers.len().await, 0);
}
