//! Reads while etcd is unavailable (decision 0011): object storage is the truth, so a 30 s
//! etcd outage — 15 s stalled (SIGSTOP), then 15 s dead (killed), then restarted with its
//! data — fails no read. Strong and eventual searches and gets, through both query nodes
//! (shards are spread over them, so reads also cross nodes over gRPC), must all answer 200,
//! complete, with every row acknowledged before the outage found.
//!
//! Writes meanwhile are refused with 503 and `Retry-After` (nothing can be acknowledged
//! without publishing its head), never answered otherwise; every write acknowledged is
//! readable afterwards, and writes are accepted again once etcd is back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{Api, DIM, rows, top_id, vector_of};
use crate::harness::{Cluster, Role};
use crate::{SETTLE, write_segments_and_tail};

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

/// What the writer task saw.
#[derive(Default)]
struct Writes {
    acked: Vec<u64>,
    /// 503s and 429s, each with `Retry-After`.
    refused: usize,
    /// Requests that got no answer within the client's 10 s.
    unanswered: usize,
    /// Anything else: a 503 without `Retry-After`, another status.
    wrong: Vec<String>,
}

/// Upserts batches of 5 new ids (from 100,001) through `url` until `stop`.
async fn writer(url: String, stop: Arc<AtomicBool>) -> Writes {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut writes = Writes::default();
    let mut next = 100_001u64;
    while !stop.load(Ordering::Relaxed) {
        let ids: Vec<u64> = (next..next + 5).collect();
        next += 5;
        let sent = client.post(format!("{url}/v1/collections/c/upsert")).json(&rows(&ids)).send().await;
        let Ok(resp) = sent else {
            writes.unanswered += 1;
            continue;
        };
        let status = resp.status().as_u16();
        let retry_after = resp.headers().get("retry-after").is_some();
        match status {
            200 => writes.acked.extend(ids),
            503 | 429 if retry_after => {
                writes.refused += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ => writes.wrong.push(format!("{status} (Retry-After: {retry_after}): {:?}", resp.text().await)),
        }
    }
    writes
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
    write_segments_and_tail(&c, "c", &ids, ROWS as usize / 2).await;
    c.wait_settled("query-1", 4, SETTLE).await;

    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> =
        c.urls(Role::Query).into_iter().map(|url| tokio::spawn(reader(c.api.clone(), url, stop.clone()))).collect();
    let writes = tokio::spawn(writer(c.urls(Role::Ingest)[0].clone(), stop.clone()));
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
    let writes = writes.await.unwrap();
    println!(
        "writes: {} ids acknowledged, {} batches refused with Retry-After, {} unanswered, {} wrong",
        writes.acked.len(),
        writes.refused,
        writes.unanswered,
        writes.wrong.len()
    );
    assert!(writes.wrong.is_empty(), "writes answered wrongly: {:?}", &writes.wrong[..writes.wrong.len().min(5)]);
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
    let after: Vec<u64> = (900_001..=900_050).collect();
    let ingest = c.urls(Role::Ingest);
    let targets = || ingest.clone();
    let body = rows(&after);
    let accepted = c.api.post_retrying(&targets, "/v1/collections/c/upsert", &body, Instant::now() + SETTLE).await;
    accepted.unwrap_or_else(|e| panic!("writes were not accepted again after the outage: {e}"));
    let all: Vec<u64> = ids.iter().chain(&writes.acked).chain(&after).copied().collect();
    crate::assert_all_readable(&c, "c", &all).await;
}
