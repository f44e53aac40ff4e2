//! Multi-process cluster tests: real `strata` ingest, query and compactor processes over a
//! real etcd and a real S3 server (SeaweedFS), started per test by `cluster/harness.rs`.
//!
//! Here: writes and searches across the cluster, a query-node failure with two replicas
//! (no query fails), and a joining query node that takes shards from object storage with
//! no bytes between nodes. Failover time after a query- or ingest-node kill at default
//! settings (and its measurement) is in `cluster/failover.rs`; write availability and
//! durability under failures (ingest kill, etcd wipe, paused writer) are in
//! `cluster/writes.rs`; bulk import and export across nodes in `cluster/tools.rs`;
//! attribute filters (search, count, query, delete and update by filter) in
//! `cluster/filters.rs`; graceful stop (SIGTERM) with a large backlog in `cluster/stop.rs`;
//! reads through a 30 s etcd outage in `cluster/etcd_outage.rs`; idle object-store traffic in
//! `cluster/idle.rs`; drain and remove of ingest and query nodes, and `partial` results, in
//! `cluster/drain.rs`; every node answering the whole REST API in `cluster/endpoint.rs`; node-to-node
//! gRPC over mutual TLS in `cluster/tls.rs`.
//!
//! Skipped with a note when etcd / SeaweedFS are not installed, unless
//! `STRATA_REQUIRE_SERVERS=1` (then they fail); `scripts/test.sh` installs both.

// Tests drive real processes and servers in real time.
#![allow(clippy::disallowed_methods)]

#[path = "cluster/client.rs"]
mod client;
#[path = "cluster/drain.rs"]
mod drain;
#[path = "cluster/endpoint.rs"]
mod endpoint;
#[path = "cluster/etcd_outage.rs"]
mod etcd_outage;
#[path = "cluster/failover.rs"]
mod failover;
#[path = "cluster/filters.rs"]
mod filters;
#[path = "cluster/harness.rs"]
mod harness;
#[path = "cluster/idle.rs"]
mod idle;
#[path = "cluster/stop.rs"]
mod stop;
#[path = "cluster/tls.rs"]
mod tls;
#[path = "cluster/tools.rs"]
mod tools;
#[path = "cluster/wipes.rs"]
mod wipes;
#[path = "cluster/writes.rs"]
mod writes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use client::{DIM, rows, top_id};
use harness::{Cluster, Role};
use serde_json::{Value, json};

/// Bound on a cluster settling after start, a join or a failure.
const SETTLE: Duration = Duration::from_secs(30);

/// Upserts `ids` in batches of `batch`, alternating over the ingest nodes; no retries.
async fn write(c: &Cluster, collection: &str, ids: &[u64], batch: usize) {
    let ingest = c.urls(Role::Ingest);
    for (i, chunk) in ids.chunks(batch).enumerate() {
        let url = format!("{}/v1/collections/{collection}/upsert", ingest[i % ingest.len()]);
        let resp = c.api.post_ok(&url, &rows(chunk)).await;
        assert_eq!(resp["upserted"], chunk.len(), "upsert through {url}: {resp}");
    }
}

/// Upserts `ids` in batches of 100: the first `flushed` of them flushed into segments, the
/// rest left in the WAL tail, so reads cover both.
async fn write_segments_and_tail(c: &Cluster, collection: &str, ids: &[u64], flushed: usize) {
    write(c, collection, &ids[..flushed], 100).await;
    flush(c, collection).await;
    write(c, collection, &ids[flushed..], 100).await;
}

async fn flush(c: &Cluster, collection: &str) {
    let url = format!("{}/v1/collections/{collection}/flush", c.urls(Role::Ingest)[0]);
    c.api.post_ok(&url, &json!({})).await;
}

/// Searches query node `url` with the stored vector of each of `ids`: every search must
/// succeed, be complete and find that id first.
async fn assert_exact_matches(c: &Cluster, url: &str, collection: &str, ids: impl Iterator<Item = u64>) {
    for id in ids {
        let (status, resp) = c.api.search_for(url, collection, id).await.unwrap();
        assert_eq!(status, 200, "search via {url}: {resp}");
        assert!(resp["partial"] != true, "partial search via {url}: {resp}");
        assert_eq!(top_id(&resp), Some(id), "search via {url} with the vector of {id} did not find it first: {resp}");
    }
}

/// Every id in `ids` is returned by `get` on every running query node.
async fn assert_all_readable(c: &Cluster, collection: &str, ids: &[u64]) {
    for url in c.urls(Role::Query) {
        let found = c.api.get_ids(&url, collection, ids).await;
        let missing: Vec<u64> = ids.iter().copied().filter(|i| !found.contains(i)).collect();
        assert!(
            missing.is_empty(),
            "get via {url} misses {} of {} rows, e.g. {:?}",
            missing.len(),
            ids.len(),
            &missing[..missing.len().min(20)]
        );
    }
}

/// Shards served (state `serving`) per query node.
fn serving_counts(shards: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for s in shards {
        for r in s["serving"].as_array().unwrap() {
            if r["state"] == "serving" {
                *counts.entry(r["node"].as_str().unwrap().to_owned()).or_default() += 1;
            }
        }
    }
    counts
}

/// The assignment part of `/v1/cluster/shards`: (shard, writer, serving replicas + states).
fn assignment(shards: &[Value]) -> Vec<(u64, Value, Value)> {
    shards.iter().map(|s| (s["shard"].as_u64().unwrap(), s["writer"].clone(), s["serving"].clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_and_searches_across_the_cluster() {
    let Some(mut c) = Cluster::start("t1-across", &[("STRATA__INGEST__FLUSH_ROWS", "400")]) else { return };
    c.start_nodes(2, 3, 1).await;
    c.create_collection("c", DIM, 4, 2).await;
    c.wait_settled("query-1", 4, SETTLE).await;

    let ids: Vec<u64> = (1..=2_000).collect();
    write(&c, "c", &ids, 100).await;
    for url in c.urls(Role::Query) {
        assert_exact_matches(&c, &url, "c", (1..=2_000).step_by(41)).await;
    }
    assert_all_readable(&c, "c", &ids).await;

    flush(&c, "c").await;
    for url in c.urls(Role::Query) {
        let described = c.api.get_ok(&format!("{url}/v1/collections/c")).await;
        assert_eq!(described["stats"]["rows"], 2_000, "describe via {url}: {described}");
        for shard in described["stats"]["shards"].as_array().unwrap() {
            assert_eq!(shard["wal_backlog_ops"], 0, "after flush, via {url}: {shard}");
        }
    }
    // Still exact after the flush (segments now, not the WAL tail).
    assert_exact_matches(&c, &c.url("query-2"), "c", (7..=2_000).step_by(97)).await;

    let shards = c.shards("query-3").await;
    assert_eq!(shards.len(), 4, "{shards:?}");
    for s in &shards {
        let serving = s["serving"].as_array().unwrap();
        assert!(s["writer"].is_string() && s["writer"] == s["writer_owner"], "shard without its writer: {s}");
        assert_eq!(serving.len(), 2, "shard not served by 2 replicas: {s}");
        assert!(serving.iter().all(|r| r["state"] == "serving"), "replica not serving: {s}");
        assert_eq!(s["settled"], true, "{s}");
    }
    let writers: std::collections::BTreeSet<&str> = shards.iter().filter_map(|s| s["writer"].as_str()).collect();
    println!("writers: {writers:?}; serving per query node: {:?}", serving_counts(&shards));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_node_kill_with_two_replicas_fails_no_query() {
    let Some(mut c) = Cluster::start("t2-r2kill", &[]) else { return };
    c.start_nodes(1, 3, 0).await;
    c.create_collection("c", DIM, 4, 2).await;
    c.wait_settled("query-1", 4, SETTLE).await;
    let ids: Vec<u64> = (1..=400).collect();
    write_segments_and_tail(&c, "c", &ids, 300).await;
    let shards = c.wait_settled("query-1", 4, SETTLE).await;

    // The router must not serve every shard itself, or it would never call the victim:
    // with 3 nodes and 2 replicas the least loaded node misses some shard, and that shard
    // is served by the two others, one of them the victim.
    let counts = serving_counts(&shards);
    let router = c.ids(Role::Query).into_iter().min_by_key(|q| counts.get(q).copied().unwrap_or(0)).unwrap();
    assert!(counts.get(&router).copied().unwrap_or(0) < 4, "{counts:?}");
    let victim = c.ids(Role::Query).into_iter().find(|q| *q != router).unwrap();
    println!("router {router}, victim {victim}, serving counts {counts:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let killed_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let searcher = {
        let (api, url, stop, killed_at) = (c.api.clone(), c.url(&router), stop.clone(), killed_at.clone());
        tokio::spawn(async move {
            let (mut before, mut after, mut failures) = (0usize, 0usize, Vec::new());
            let mut id = 0u64;
            while !stop.load(Ordering::Relaxed) {
                id = id % 400 + 1;
                let outcome = api.search_for(&url, "c", id).await;
                match &outcome {
                    Ok((200, resp)) if resp["partial"] != true && top_id(resp) == Some(id) => {}
                    _ => failures.push(format!("search for {id}: {outcome:?}")),
                }
                if killed_at.lock().unwrap().is_some() { after += 1 } else { before += 1 }
            }
            (before, after, failures)
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.kill(&victim);
    *killed_at.lock().unwrap() = Some(Instant::now());
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    let (before, after, failures) = searcher.await.unwrap();
    println!("searches: {before} before the kill, {after} in the 5 s after; failures: {}", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} searches failed or were partial, e.g. {:?}",
        failures.len(),
        before + after,
        &failures[..failures.len().min(5)]
    );
    assert!(before > 5 && after > 20, "too few searches ran: {before} before, {after} after the kill");

    let settled_in = Instant::now();
    let shards = c.wait_settled(&router, 4, SETTLE).await;
    println!(
        "settled on live nodes {:?} after the kill (+{:?} after the search window)",
        serving_counts(&shards),
        settled_in.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn joining_query_node_takes_shards_without_bytes_between_nodes() {
    let Some(mut c) = Cluster::start("t4-join", &[]) else { return };
    // Two ingest nodes: writes are forwarded between them, so the rpc counters are live.
    c.start_nodes(2, 2, 0).await;
    c.create_collection("c", DIM, 8, 2).await;
    c.wait_settled("query-1", 8, SETTLE).await;
    let ids: Vec<u64> = (1..=800).collect();
    write(&c, "c", &ids, 100).await;
    flush(&c, "c").await;
    c.wait_settled("query-1", 8, SETTLE).await;

    let counters = |v: &Value| (v["rpc_calls"].clone(), v["rpc_bytes_in"].clone(), v["rpc_bytes_out"].clone());
    let mut before = BTreeMap::new();
    for id in c.ids(Role::Ingest).into_iter().chain(c.ids(Role::Query)) {
        before.insert(id.clone(), counters(&c.api.node_info(&c.url(&id)).await));
    }
    assert!(
        before.values().any(|(_, bytes_in, _)| bytes_in.as_u64() > Some(0)),
        "rpc counters never moved: {before:?}"
    );

    let joined = c.add(Role::Query).await;
    let started = Instant::now();
    let url = format!("{}/v1/cluster/rebalance?wait_ms=30000", c.url(&joined));
    let rebalance = c.api.post_ok(&url, &json!({})).await;
    assert_eq!(rebalance["converged"], true, "rebalance did not converge: {rebalance}");
    let shards = c.wait_settled("query-1", 8, SETTLE).await;
    println!("join converged in {:?} (rebalance says {} ms)", started.elapsed(), rebalance["took_ms"]);

    let counts = serving_counts(&shards);
    assert!(counts.get(&joined).copied().unwrap_or(0) > 0, "{joined} serves no shard: {counts:?}");
    let info = c.api.node_info(&c.url(&joined)).await;
    let cache = &info["cache"];
    assert!(
        cache["bytes_fetched"].as_u64().unwrap() > 0 || cache["misses"].as_u64().unwrap() > 0,
        "{joined} serves shards but fetched nothing from object storage: {info}"
    );
    assert_eq!(info["rpc_bytes_in"], 0, "{joined} received node-to-node bytes while joining: {info}");
    assert_eq!(info["rpc_bytes_out"], 0, "{joined} sent node-to-node bytes while joining: {info}");
    for (id, was) in &before {
        let now = counters(&c.api.node_info(&c.url(id)).await);
        assert_eq!(&now, was, "node {id}: rpc (calls, bytes in, bytes out) changed during the join");
    }
    println!("serving per node {counts:?}; {joined} cache {cache}");

    // No flapping: the assignment stays as it is.
    let stable = assignment(&shards);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        for via in ["query-1", joined.as_str()] {
            let now = assignment(&c.shards(via).await);
            assert_eq!(now, stable, "assignment changed after convergence (seen via {via})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_exact_matches(&c, &c.url(&joined), "c", (1..=800).step_by(37)).await;
}
