//! Issue 11, item 1: a shard must never stay unwritable after etcd loses its data. etcd is
//! wiped ten times in one run while writers keep writing; after each wipe every shard must
//! accept writes again (a fresh batch spread over all shards is acknowledged within the
//! writers' retry deadline) and every write acknowledged so far must be readable.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::client::{DIM, rows};
use crate::harness::{Cluster, Role};
use crate::writes::{Writers, assert_acked_readable, writer};
use crate::{SETTLE, assert_all_readable};

const WIPES: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_wiped_ten_times_under_writes_leaves_every_shard_writable_and_loses_nothing() {
    let Some(mut c) = Cluster::start("t-wipes", &[("STRATA__INGEST__FLUSH_ROWS", "500")]) else { return };
    c.start_nodes(2, 1, 0).await;
    c.create_collection("c", DIM, 4, 1).await;
    c.wait_settled("query-1", 4, SETTLE).await;

    let w = Arc::new(Writers::default());
    let ingest = c.urls(Role::Ingest);
    let tasks: Vec<_> = (0..2u64)
        .map(|t| {
            let urls = ingest.clone();
            tokio::spawn(writer(c.api.clone(), t, w.clone(), move || urls.clone()))
        })
        .collect();

    let mut probes = Vec::new();
    for wipe in 0..WIPES {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let wiped = Instant::now();
        tokio::task::block_in_place(|| c.etcd.restart_wiped()).expect("restart etcd wiped");
        c.wait_members(SETTLE).await;
        // 40 fresh ids land on every one of the 4 shards (a shard missing them all has
        // probability ~4e-5); the batch must be acknowledged through some ingest node.
        let ids: Vec<u64> = (0..40).map(|i| 50_000_000 + wipe as u64 * 100 + i).collect();
        let targets = || c.urls(Role::Ingest);
        let deadline = Instant::now() + Duration::from_secs(20);
        let probe = c.api.post_retrying(&targets, "/v1/collections/c/upsert", &rows(&ids), deadline).await;
        probe.unwrap_or_else(|e| panic!("after wipe {wipe}, a write to every shard was not acknowledged: {e}"));
        probes.extend(ids);
        c.wait_settled("query-1", 4, SETTLE).await;
        let acked = w.acked.lock().unwrap().clone();
        assert_acked_readable(&c, &c.url("query-1"), &acked).await;
        assert_all_readable(&c, "c", &probes).await;
        println!(
            "wipe {wipe}: writable and readable again after {:?}; {} ids acknowledged",
            wiped.elapsed(),
            acked.len()
        );
    }

    w.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let unacked = w.unacked.lock().unwrap().clone();
    assert!(unacked.is_empty(), "batches no ingest node acknowledged within 20 s: {unacked:?}");
    let acked = w.acked.lock().unwrap().clone();
    assert!(acked.len() >= 500, "too few writes went through the wipes: {}", acked.len());
    assert_acked_readable(&c, &c.url("query-1"), &acked).await;
}
