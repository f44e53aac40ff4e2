//! Graceful stop of a cluster node: SIGTERM with a large unflushed backlog (a flush of it
//! running) ends the process within 10 s, never by flushing; the node gives its writer
//! leases up on the way out, so the other ingest node writes its shards again long before
//! the session TTL would have freed them; writes in flight are answered or refused with a
//! retryable status, and every acknowledged row stays readable. A query node stopped the
//! same way hands its shards to the other query node before its session could expire.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::client::DIM;
use crate::harness::{Cluster, Role};
use crate::writes::{Writers, assert_acked_readable, writer};
use crate::{SETTLE, write};

/// A session TTL far above the stop bound: a shard writable again well before it passed
/// was handed over, not left to expire.
const LONG_TTL_S: u64 = 30;
/// Rows written before the stop: a few flushes' worth per shard.
const BACKLOG: u64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_with_a_large_backlog_exits_within_10_s_and_hands_shards_over() {
    let ttl = LONG_TTL_S.to_string();
    let env = [
        ("STRATA__ETCD__SESSION_TTL_S", ttl.as_str()),
        // A shard flushes 10k rows at a time, so a graph build of that many rows (many
        // seconds in a debug build) is running when the signal comes; age never triggers.
        ("STRATA__INGEST__FLUSH_ROWS", "10000"),
        ("STRATA__INGEST__FLUSH_AGE_MS", "3600000"),
    ];
    let Some(mut c) = Cluster::start("t-stop", &env) else { return };
    c.start_nodes(2, 2, 0).await;
    c.create_collection("c", DIM, 4, 1).await;
    let shards = c.wait_settled("query-1", 4, SETTLE).await;
    // The node to stop: the writer of most shards (at least 2 of the 4).
    let writes = |id: &str| shards.iter().filter(|s| s["writer"] == id).count();
    let (victim, survivor) =
        if writes("ingest-1") >= writes("ingest-2") { ("ingest-1", "ingest-2") } else { ("ingest-2", "ingest-1") };

    let backlog: Vec<u64> = (1..=BACKLOG).collect();
    write(&c, "c", &backlog, 1_000).await;

    // Writers keep going through both nodes while the victim stops: every request is
    // either acknowledged or refused with a retryable status (then retried elsewhere).
    let w = Arc::new(Writers::default());
    let urls = c.urls(Role::Ingest);
    let tasks: Vec<_> = (1..=2u64)
        .map(|t| {
            let urls = urls.clone();
            tokio::spawn(writer(c.api.clone(), t, w.clone(), move || urls.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let signalled = Instant::now();
    let took = c.stop_within(victim, Duration::from_secs(10)).await;
    println!("{victim} exited {took:?} after SIGTERM with a backlog of {BACKLOG} rows");
    println!("segments {victim} built before it stopped: {}", c.node(victim).log_lines("built segment").len());

    // The survivor writes every shard before the victim's session could have expired.
    let handed_over = loop {
        let shards = c.shards("query-1").await;
        if shards.iter().all(|s| s["writer"] == survivor) {
            break signalled.elapsed();
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(LONG_TTL_S / 2),
            "the survivor did not take the stopped node's shards within {} s (session TTL {LONG_TTL_S} s): {shards:?}",
            LONG_TTL_S / 2
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("{survivor} writes every shard {handed_over:?} after the SIGTERM");
    w.mark.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(1)).await;
    w.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let unacked = w.unacked.lock().unwrap().clone();
    assert!(unacked.is_empty(), "batches never acknowledged: {unacked:?}");
    assert!(w.acked_after_mark.load(Ordering::Relaxed) > 0, "no write was acknowledged after the handover");

    let mut acked = w.acked.lock().unwrap().clone();
    acked.extend(&backlog);
    assert_acked_readable(&c, &c.url("query-1"), &acked).await;

    // A query node's stop withdraws its serving records with its session: the other
    // query node serves every shard long before the TTL would have freed them.
    let signalled = Instant::now();
    let took = c.stop_within("query-2", Duration::from_secs(10)).await;
    println!("query-2 exited {took:?} after SIGTERM");
    let served = loop {
        let shards = c.shards("query-1").await;
        let only_query_1 = |s: &serde_json::Value| {
            let serving = s["serving"].as_array().map(Vec::as_slice).unwrap_or_default();
            !serving.is_empty() && serving.iter().all(|r| r["node"] == "query-1" && r["state"] == "serving")
        };
        if shards.iter().all(only_query_1) {
            break signalled.elapsed();
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(LONG_TTL_S / 2),
            "query-1 did not serve the stopped node's shards within {} s (session TTL {LONG_TTL_S} s): {shards:?}",
            LONG_TTL_S / 2
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("query-1 serves every shard {served:?} after the SIGTERM");
    assert_acked_readable(&c, &c.url("query-1"), &acked).await;
}
