//! Reads while etcd is unavailable (decision 0011): object storage is the truth, so a 30 s
//! etcd outage — 15 s stalled (SIGSTOP), then 15 s dead (killed), then restarted with its
//! data — fails no read. Strong and eventual searches and gets, through both query nodes
//! (shards are spread over them, so reads also cross nodes over gRPC), must all answer 200,
//! complete, with every row acknowledged before the outage found.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{Api, DIM, top_id, vector_of};
use crate::harness::{Cluster, Role};
use crate::{SETTLE, flush, write};

/// Rows written (and acknowledged) before the outage.
const ROWS: u64 = 600;

/// What one reader task saw: reads answered, and the failures (empty when all is well).
#[derive(Default)]
struct Reads {
    ok: usize,
    failures: Vec<String>,
}

/// Reads through `url` until `stop`, cycling over the ids: a strong search, an eventual
/// search (each must find the id first, complete) and a get of 20 ids (all found).
async fn reader(api: Api, url: String, stop: Arc<AtomicBool>) -> Reads {
    let mut reads = Reads::default();
    let mut id = 0u64;
    while !stop.load(Ordering::Relaxed) {
        id = id % ROWS + 1;
        for consistency in ["strong", "eventual"] {
            let body = json!({"vector": vector_of(id), "top_k": 3, "consistency": consistency});
            let outcome = api.call("POST", &format!("{url}/v1/collections/c/search"), Some(&body)).await;
            match &outcome {
                Ok((200, resp)) if resp["partial"] != true && top_id(resp) == Some(id) => reads.ok += 1,
                _ => reads.failures.push(format!("{consistency} search for {id} via {url}: {outcome:?}")),
            }
        }
        let ids: Vec<u64> = (0..20).map(|i| (id + i * 29) % ROWS + 1).collect();
        let body = json!({"ids": ids});
        let outcome = api.call("POST", &format!("{url}/v1/collections/c/get"), Some(&body)).await;
        match &outcome {
            Ok((200, resp)) if resp["rows"].as_array().is_some_and(|r| r.len() == ids.len()) => reads.ok += 1,
            _ => reads.failures.push(format!("get of {ids:?} via {url}: {outcome:?}")),
        }
    }
    reads
}

/// `strata_query_head_fallbacks_total` on the node at `url`.
async fn fallbacks(url: &str) -> f64 {
    let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("strata_query_head_fallbacks_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_survive_a_30s_etcd_outage() {
    let Some(mut c) = Cluster::start("t-etcd-outage", &[]) else { return };
    c.start_nodes(1, 2, 0).await;
    c.create_collection("c", DIM, 4, 1).await;
    c.wait_settled("query-1", 4, SETTLE).await;
    // Half in segments, half in the WAL tail.
    let ids: Vec<u64> = (1..=ROWS).collect();
    write(&c, "c", &ids[..ROWS as usize / 2], 100).await;
    flush(&c, "c").await;
    write(&c, "c", &ids[ROWS as usize / 2..], 100).await;
    c.wait_settled("query-1", 4, SETTLE).await;

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> =
        c.urls(Role::Query).into_iter().map(|url| tokio::spawn(reader(c.api.clone(), url, stop.clone()))).collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let outage = Instant::now();
    c.etcd.pause();
    tokio::time::sleep(Duration::from_secs(15)).await;
    c.etcd.resume();
    c.etcd.stop();
    tokio::time::sleep(Duration::from_secs(15)).await;
    c.etcd.restart().unwrap();
    let outage = outage.elapsed();
    // And while the nodes' sessions are re-formed after it.
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.store(true, Ordering::Relaxed);

    let (mut ok, mut failures) = (0, Vec::new());
    for r in readers {
        let r = r.await.unwrap();
        ok += r.ok;
        failures.extend(r.failures);
    }
    let mut fell_back = 0.0;
    for url in c.urls(Role::Query) {
        fell_back += fallbacks(&url).await;
    }
    println!(
        "etcd outage of {outage:?}: {ok} reads answered, {} failed; {fell_back} shard refreshes fell back to storage",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} reads failed, e.g. {:#?}",
        failures.len(),
        ok + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(ok > 200, "too few reads ran: {ok}");
    assert!(fell_back > 0.0, "no read fell back to object storage");

    // The cluster re-forms, and everything written before is still readable everywhere.
    c.wait_settled("query-1", 4, SETTLE).await;
    crate::assert_all_readable(&c, "c", &ids).await;
}
