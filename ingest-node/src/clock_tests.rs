//! Time-dependent behaviour of the ingest role on a [`ManualClock`]: the flush-age trigger
//! fires exactly when the clock says the oldest unflushed write is `flush_age_ms` old —
//! not before, however long the test takes in real time.

// Waiting for the background flush to land is bounded in real time.
#![allow(clippy::disallowed_methods)]

use std::sync::Arc;
use std::time::Duration;

use object_store::memory::InMemory;
use strata_coord::InProcess;
use strata_storage::manifest;
use strata_storage::paths::ShardPaths;
use strata_types::time::ManualClock;
use strata_types::{Row, RowId};
use tokio::sync::watch;

use crate::test_deps;

use crate::IngestConfig;

/// Lets the node's tasks run on the current real time without moving the manual clock.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tail_is_flushed_once_the_clock_says_it_is_flush_age_old() {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let deps =
        test_deps::deps(Arc::new(InMemory::new()), Arc::new(InProcess::new()), clock.clone(), "ingest-clock", 1).await;
    let config = IngestConfig { flush_age_ms: 30_000, ..IngestConfig::default() };
    let (_shutdown, rx) = watch::channel(false);
    let node = crate::start(config, deps.clone(), rx).await.unwrap();
    let def = node.create_collection(crate::routing_tests::new_collection()).await.unwrap();
    let rows = (0..10).map(|i| Row { id: RowId::Int(i), vector: vec![i as f32, 1.0], attributes: None }).collect();
    node.upsert("c", rows).await.unwrap();
    let shard = ShardPaths::new(def.id.clone(), 0);
    let flushed = async || manifest::load_latest(deps.store.as_ref(), &shard, None).await.unwrap().flushed_seq;

    // Just short of the age: the writer's tick fires, but the tail is young enough.
    clock.advance(Duration::from_millis(29_900));
    settle().await;
    assert_eq!(flushed().await, 0, "nothing flushed at 29.9 s");

    // Past it: the next tick (every 200 ms of the clock) starts the flush.
    clock.advance(Duration::from_millis(300));
    for _ in 0..200 {
        if flushed().await == 1 {
            break;
        }
        settle().await;
    }
    assert_eq!(flushed().await, 1, "the tail was flushed once 30 s had passed on the clock");
    let m = manifest::load_latest(deps.store.as_ref(), &shard, None).await.unwrap();
    assert_eq!((m.segments.len(), m.rows()), (1, 10));
    assert_eq!(m.created_ms, 1_700_000_000_000 + 30_200, "stamped with the clock's wall time");
}
