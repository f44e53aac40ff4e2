//! Idle object-store traffic (issue 11, item 3; decision 0012): a settled cluster with no
//! client load makes at most one object-store request per 10 s per node, counted from each
//! node's own `strata_object_store_requests_total`; and changes are still noticed at once:
//! a collection created afterwards is served within seconds and a write to it is readable.

use std::time::{Duration, Instant};

use crate::harness::{Cluster, Role};
use crate::{SETTLE, assert_all_readable, write};

/// The idle window measured.
const WINDOW: Duration = Duration::from_secs(30);

/// Sum of `strata_object_store_requests_total` over every label set, from `/metrics`.
async fn store_requests(url: &str) -> u64 {
    let text = reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("strata_object_store_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_cluster_makes_at_most_one_store_request_per_10_s_per_node() {
    let Some(mut c) = Cluster::start("t-idle", &[]) else { return };
    c.start_nodes(1, 2, 1).await;
    c.create_collection("c", crate::client::DIM, 4, 1).await;
    c.wait_settled("query-1", 4, SETTLE).await;
    write(&c, "c", &(1..=200).collect::<Vec<u64>>(), 100).await;
    crate::flush(&c, "c").await;
    // Let the flush's aftermath (the compactor's visit of the shards it changed) pass.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let nodes: Vec<(String, String)> = [Role::Ingest, Role::Query, Role::Compactor]
        .into_iter()
        .flat_map(|r| c.ids(r))
        .map(|id| (c.url(&id), id))
        .collect();
    let mut before = Vec::new();
    for (url, _) in &nodes {
        before.push(store_requests(url).await);
    }
    tokio::time::sleep(WINDOW).await;
    // One request per 10 s, plus one: the fallback catalog listing (every 60 s,
    // `catalog_poll_ms`) falls into a 30 s window at most once per node.
    let bound = WINDOW.as_secs() / 10 + 1;
    for ((url, id), before) in nodes.iter().zip(before) {
        // Setup made requests, so the series exists: a zero below is a count, not a typo.
        assert!(before > 0, "{id} reports no object-store requests at all");
        let made = store_requests(url).await - before;
        println!("{id}: {made} object-store requests in {WINDOW:?} idle (bound {bound})");
        assert!(made <= bound, "{id} made {made} object-store requests in {WINDOW:?} idle, over {bound}");
    }

    // Changes are still noticed promptly: through the watched catalog version, not a poll.
    let created = Instant::now();
    c.create_collection("d", crate::client::DIM, 2, 1).await;
    c.wait_settled("query-1", 6, Duration::from_secs(5)).await;
    println!("a new collection was served {:?} after its create", created.elapsed());
    let ids: Vec<u64> = (1..=50).collect();
    write(&c, "d", &ids, 50).await;
    assert_all_readable(&c, "d", &ids).await;
}
