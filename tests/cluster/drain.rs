//! Drain and remove (`POST /v1/cluster/nodes/{id}/drain`, `DELETE /v1/cluster/nodes/{id}`)
//! of both roles, and `partial: true` search results.
//!
//! - An ingest node drained or removed under a write load hands every writer lease it holds
//!   to the other ingest node (decision 0013); writes fail only with a retryable 503 / 429
//!   (never a transport error or another status), retries succeed, and every acknowledged
//!   write is readable.
//! - A query node drained, then another removed, while searches run: their shards move
//!   (make before break) and no search fails or is partial.
//! - A search is `partial` exactly when a shard has no replica that can answer. A dead
//!   replica alone never causes it: the router's last resort is loading the shard on demand
//!   from object storage (`query-node/src/router.rs`). So the test kills the only replica of
//!   a shard *and* removes that shard's segments from storage, which makes the on-demand
//!   load fail too; the other shards (including the dead node's others) still answer.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::{Value, json};
use strata_test_support::S3Server;
use strata_types::RowId;

use crate::client::{Api, DIM, rows, top_id};
use crate::harness::{Cluster, Role, tick, ttl_s};
use crate::writes::assert_acked_readable;
use crate::{SETTLE, assert_exact_matches, flush, serving_counts, write, write_segments_and_tail};

/// What the writer tasks of an ingest drain saw.
#[derive(Default)]
struct Load {
    acked: Mutex<Vec<u64>>,
    /// Ids acknowledged after the drain (or remove) was requested.
    acked_after: Mutex<Vec<u64>>,
    drained: AtomicBool,
    /// Refusals by status (503, 429): retried.
    refused: Mutex<BTreeMap<u16, usize>>,
    /// Anything else: a transport error or another status. Must stay empty.
    failures: Mutex<Vec<String>>,
    /// Batches still unacknowledged after 20 s of retries. Must stay empty.
    unacked: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// Writes batches of 20 unique ids through `urls()` (rotated per attempt) until `stop`,
/// retrying only 503 / 429; everything else is recorded as a failure and not retried.
async fn load(api: Api, task: u64, l: Arc<Load>, urls: impl Fn() -> Vec<String> + Send + Sync) {
    for batch in 0u64.. {
        if l.stop.load(Ordering::Relaxed) {
            return;
        }
        let ids: Vec<u64> = (0..20).map(|i| task * 1_000_000 + batch * 20 + i).collect();
        let body = rows(&ids);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut backoff = Duration::from_millis(20);
        for attempt in 0usize.. {
            let targets = urls();
            let url = format!("{}/v1/collections/c/upsert", targets[(attempt + batch as usize) % targets.len()]);
            match api.call_within("POST", &url, Some(&body), Duration::from_secs(10)).await {
                Ok((200, resp)) => {
                    assert_eq!(resp["upserted"], ids.len(), "{resp}");
                    l.acked.lock().unwrap().extend(&ids);
                    if l.drained.load(Ordering::Relaxed) {
                        l.acked_after.lock().unwrap().extend(&ids);
                    }
                    break;
                }
                Ok((status @ (503 | 429), _)) => *l.refused.lock().unwrap().entry(status).or_default() += 1,
                other => {
                    l.failures.lock().unwrap().push(format!("{url}: {other:?}"));
                    break;
                }
            }
            if Instant::now() + backoff >= deadline {
                l.unacked.lock().unwrap().push(format!("ids {}..", ids[0]));
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}

/// Writers per shard as `/v1/cluster/shards` shows them.
fn writers(shards: &[Value]) -> Vec<String> {
    shards.iter().map(|s| s["writer"].as_str().unwrap_or("none").to_owned()).collect()
}

/// Two ingest nodes under a write load; the one holding more writer leases is drained
/// (`remove`: removed); every lease must move to the other without a failed write.
async fn ingest_handover(name: &str, remove: bool) {
    let Some(mut c) = Cluster::start(name, &[("STRATA__INGEST__FLUSH_ROWS", "500")]) else { return };
    c.start_nodes(2, 1, 0).await;
    c.create_collection("c", DIM, 6, 1).await;
    let shards = c.wait_settled("query-1", 6, SETTLE).await;
    let mut held: BTreeMap<String, usize> = BTreeMap::new();
    for w in writers(&shards) {
        *held.entry(w).or_default() += 1;
    }
    let victim = held.iter().max_by_key(|(_, n)| **n).map(|(id, _)| id.clone()).unwrap();
    let other = c.ids(Role::Ingest).into_iter().find(|i| *i != victim).unwrap();
    println!("writer leases before: {held:?}; {} {victim}", if remove { "removing" } else { "draining" });

    let l = Arc::new(Load::default());
    // While the victim is only drained it keeps taking writes (it forwards them); once it
    // is removed a client stops sending to it, as a load balancer would.
    let removed = Arc::new(AtomicBool::new(false));
    let (all, rest) = (c.urls(Role::Ingest), vec![c.url(&other)]);
    let tasks: Vec<_> = (0..4u64)
        .map(|t| {
            let (all, rest, removed) = (all.clone(), rest.clone(), removed.clone());
            let urls = move || if removed.load(Ordering::Relaxed) { rest.clone() } else { all.clone() };
            tokio::spawn(load(c.api.clone(), t, l.clone(), urls))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let acked_before = l.acked.lock().unwrap().len();

    l.drained.store(true, Ordering::Relaxed);
    let asked = Instant::now();
    let admin = c.url("query-1");
    if remove {
        let url = format!("{admin}/v1/cluster/nodes/{victim}?wait_ms=30000");
        let (status, body) = c.api.call("DELETE", &url, None).await.unwrap();
        assert_eq!(status, 200, "remove {victim}: {body}");
        removed.store(true, Ordering::Relaxed);
        let nodes = c.api.get_ok(&format!("{admin}/v1/cluster/nodes")).await;
        let listed = nodes["nodes"].as_array().unwrap().iter().any(|n| n["id"] == victim.as_str());
        assert!(!listed, "{victim} still listed after its removal: {nodes}");
    } else {
        let body = c.api.post_ok(&format!("{admin}/v1/cluster/nodes/{victim}/drain"), &json!({})).await;
        assert_eq!(body["draining"], true, "{body}");
    }
    let moved_after = loop {
        let now = writers(&c.shards("query-1").await);
        if now.iter().all(|w| *w == other) {
            break asked.elapsed();
        }
        assert!(asked.elapsed() < SETTLE, "writers still {now:?} {:?} after the request", asked.elapsed());
        tick().await;
    };
    println!("every writer lease on {other} {moved_after:?} after the request");
    tokio::time::sleep(Duration::from_secs(3)).await;
    l.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let acked = l.acked.lock().unwrap().clone();
    let after = l.acked_after.lock().unwrap().len();
    let refused = l.refused.lock().unwrap().clone();
    println!(
        "acknowledged {} ids ({acked_before} before the request, {after} after); refusals retried: {refused:?}",
        acked.len()
    );
    let failures = l.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "writes failed other than with a retryable 503 / 429: {failures:?}");
    let unacked = l.unacked.lock().unwrap().clone();
    assert!(unacked.is_empty(), "batches never acknowledged within 20 s of retries: {unacked:?}");
    assert!(acked_before >= 100 && after >= 100, "too few writes: {acked_before} before, {after} after");

    // The victim writes nothing any more, and the assignment stays put.
    let shards = c.shards("query-1").await;
    assert!(shards.iter().all(|s| s["writer"] == other.as_str() && s["writer_owner"] == other.as_str()), "{shards:?}");
    assert_acked_readable(&c, &c.url("query-1"), &acked).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_drain_under_writes_moves_every_writer_lease() {
    ingest_handover("t-drain-ingest", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_remove_under_writes_moves_every_writer_lease_then_deregisters() {
    ingest_handover("t-remove-ingest", true).await;
}

/// Searches `urls` in turn until `stop`; returns (searches, failures).
async fn search_load(api: Api, urls: Arc<Mutex<Vec<String>>>, stop: Arc<AtomicBool>) -> (usize, Vec<String>) {
    let (mut n, mut failures) = (0usize, Vec::new());
    let mut id = 0u64;
    while !stop.load(Ordering::Relaxed) {
        id = id % 400 + 1;
        let url = {
            let urls = urls.lock().unwrap();
            urls[n % urls.len()].clone()
        };
        let outcome = api.search_for(&url, "c", id).await;
        match &outcome {
            Ok((200, resp)) if resp["partial"] != true && top_id(resp) == Some(id) => {}
            _ => failures.push(format!("search for {id} via {url}: {outcome:?}")),
        }
        n += 1;
    }
    (n, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_drain_and_remove_move_shards_and_fail_no_search() {
    let Some(mut c) = Cluster::start("t-drain-query", &[]) else { return };
    c.start_nodes(1, 3, 0).await;
    c.create_collection("c", DIM, 6, 1).await;
    c.wait_settled("query-1", 6, SETTLE).await;
    let ids: Vec<u64> = (1..=400).collect();
    write_segments_and_tail(&c, "c", &ids, 300).await;
    let before = serving_counts(&c.wait_settled("query-1", 6, SETTLE).await);
    println!("serving before: {before:?}");

    // Searches go to query-1 and the node being drained (a drained node keeps answering).
    let stop = Arc::new(AtomicBool::new(false));
    let targets = Arc::new(Mutex::new(vec![c.url("query-1"), c.url("query-2")]));
    let searcher = tokio::spawn(search_load(c.api.clone(), targets.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let admin = c.url("query-1");
    let drained = c.api.post_ok(&format!("{admin}/v1/cluster/nodes/query-2/drain"), &json!({})).await;
    assert_eq!(drained["draining"], true, "{drained}");
    let started = Instant::now();
    let shards = c.wait_settled("query-1", 6, SETTLE).await;
    let counts = serving_counts(&shards);
    println!("drain of query-2 settled in {:?}: {counts:?}", started.elapsed());
    assert!(!counts.contains_key("query-2"), "drained query-2 still serves: {counts:?}");

    // Remove query-3: it hands its shards over, then leaves the member list.
    let started = Instant::now();
    let url = format!("{admin}/v1/cluster/nodes/query-3?wait_ms=30000");
    let (status, body) = c.api.call("DELETE", &url, None).await.unwrap();
    assert_eq!(status, 200, "remove query-3: {body}");
    let nodes = c.api.get_ok(&format!("{admin}/v1/cluster/nodes")).await;
    assert!(!nodes["nodes"].as_array().unwrap().iter().any(|n| n["id"] == "query-3"), "{nodes}");
    let shards = c.shards("query-1").await;
    let counts = serving_counts(&shards);
    println!("remove of query-3 answered in {:?}: {counts:?}", started.elapsed());
    assert_eq!(counts.get("query-1"), Some(&6), "every shard should be on query-1 now: {counts:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;

    stop.store(true, Ordering::Relaxed);
    let (n, failures) = searcher.await.unwrap();
    println!("{n} searches during drain and remove; {} failed", failures.len());
    assert!(
        failures.is_empty(),
        "{} of {n} searches failed or were partial, e.g. {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(n > 20, "too few searches ran: {n}");
    c.stop("query-3").await;
    assert_exact_matches(&c, &c.url("query-2"), "c", (1..=400).step_by(17)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_is_partial_when_a_shard_has_no_replica_that_can_answer() {
    let Some(mut c) = Cluster::start("t-partial", &[]) else { return };
    c.start_nodes(1, 2, 0).await;
    c.create_collection("c", DIM, 4, 1).await;
    c.wait_settled("query-1", 4, SETTLE).await;
    let ids: Vec<u64> = (1..=400).collect();
    write(&c, "c", &ids, 100).await;
    flush(&c, "c").await;
    let shards = c.wait_settled("query-1", 4, SETTLE).await;

    // Shard 0's only replica is the victim; the survivor has never loaded it.
    let s0 = shards.iter().find(|s| s["shard"] == 0).unwrap();
    let victim = s0["serving"][0]["node"].as_str().unwrap().to_owned();
    let survivor = c.ids(Role::Query).into_iter().find(|q| *q != victim).unwrap();
    let described = c.api.get_ok(&format!("{}/v1/collections/c", c.url(&survivor))).await;
    let collection_id = described["id"].as_str().unwrap_or_else(|| panic!("no id in {described}")).to_owned();
    let removed = delete_segments(&c.s3, &collection_id, 0).await;
    assert!(removed > 0, "shard 0 had no segment objects after the flush");
    c.kill(&victim);
    let killed = Instant::now();

    let in_shard = |shard: u32| ids.iter().copied().filter(move |&i| RowId::Int(i).shard(4) == shard);
    let url = c.url(&survivor);
    for id in in_shard(1).take(3).chain(in_shard(2).take(3)).chain(in_shard(3).take(3)) {
        let (status, resp) = c.api.search_for(&url, "c", id).await.unwrap();
        assert_eq!(status, 200, "search via {survivor}: {resp}");
        assert_eq!(resp["partial"], true, "shard 0 cannot be read, yet the answer is complete: {resp}");
        assert_eq!(resp["failed_shards"], json!([0]), "{resp}");
        assert_eq!(top_id(&resp), Some(id), "the shards that answered must still find {id} first: {resp}");
    }
    println!(
        "partial answers ({victim} killed, shard 0 unreadable) within {:?} of the kill (session TTL {} s)",
        killed.elapsed(),
        ttl_s()
    );
}

/// Deletes every segment object of `shard`; returns how many there were.
async fn delete_segments(s3: &S3Server, collection_id: &str, shard: u32) -> usize {
    let store = AmazonS3Builder::new()
        .with_endpoint(s3.endpoint())
        .with_bucket_name(s3.bucket())
        .with_region("us-east-1")
        .with_access_key_id(S3Server::ACCESS_KEY_ID)
        .with_secret_access_key(S3Server::SECRET_ACCESS_KEY)
        .with_allow_http(true)
        .build()
        .unwrap();
    let dir = Path::from(format!("collections/{collection_id}/{shard}/segments"));
    let metas: Vec<_> = store.list(Some(&dir)).try_collect().await.unwrap();
    for meta in &metas {
        store.delete(&meta.location).await.unwrap();
    }
    metas.len()
}
