//! One endpoint (decision 0016): every node answers the whole REST API. Writes sent to a
//! query node or the compactor reach the shard writers on the ingest nodes; reads sent to
//! an ingest node or the compactor reach the query nodes; and a node without the query
//! role never loads a shard itself — with no query node left, its reads are a retryable
//! 503, not an answer from data it loaded.

use std::time::Duration;

use serde_json::json;

use crate::client::{DIM, rows, top_id};
use crate::harness::{Cluster, Role};

const SETTLE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_node_answers_the_whole_api() {
    let Some(mut c) = Cluster::start("t-endpoint", &[]) else { return };
    c.start_nodes(2, 2, 1).await;
    let (ingest, query, compactor) = (c.url("ingest-1"), c.url("query-1"), c.url("compactor-1"));

    // A collection created through a query node.
    let create = json!({"name": "c", "dimension": DIM, "metric": "l2", "shards": 4, "replication": 1});
    let (status, resp) = c.api.call("POST", &format!("{query}/v1/collections"), Some(&create)).await.unwrap();
    assert_eq!(status, 201, "create through a query node: {resp}");
    c.wait_settled("query-1", 4, SETTLE).await;

    // Writes through a query node and the compactor: each shard's part goes to its writer.
    let ids: Vec<u64> = (1..=600).collect();
    for (i, chunk) in ids.chunks(100).enumerate() {
        let via = if i % 2 == 0 { &query } else { &compactor };
        let resp = c.api.post_ok(&format!("{via}/v1/collections/c/upsert"), &rows(chunk)).await;
        assert_eq!(resp["upserted"], chunk.len(), "upsert through {via}: {resp}");
    }
    let resp = c.api.post_ok(&format!("{query}/v1/collections/c/delete"), &json!({"ids": [1, 2, 3]})).await;
    assert_eq!(resp["deleted"], 3, "delete through a query node: {resp}");
    let patch = json!({"ids": [10, 11], "attributes": {"tag": "x"}});
    let resp = c.api.post_ok(&format!("{compactor}/v1/collections/c/update"), &patch).await;
    assert_eq!(resp["updated"], 2, "update through the compactor: {resp}");
    c.api.post_ok(&format!("{query}/v1/collections/c/flush"), &json!({})).await;

    // The writes landed on the ingest nodes: every shard has a running ingest writer.
    for s in c.shards("ingest-1").await {
        assert!(s["writer"].as_str().is_some_and(|w| w.starts_with("ingest-")), "shard without an ingest writer: {s}");
    }

    // Reads through every node, the ingest and compactor ones forwarding to query nodes.
    let live: Vec<u64> = ids[3..].to_vec();
    for via in [&ingest, &compactor, &query] {
        for id in live.iter().copied().step_by(53) {
            let (status, resp) = c.api.search_for(via, "c", id).await.unwrap();
            assert_eq!(status, 200, "search through {via}: {resp}");
            assert!(resp["partial"] != true, "partial search through {via}: {resp}");
            assert_eq!(top_id(&resp), Some(id), "search through {via} with the vector of {id}: {resp}");
        }
        assert_eq!(c.api.get_ids(via, "c", &ids).await.into_iter().collect::<Vec<_>>(), live, "get through {via}");
        let count = c.api.post_ok(&format!("{via}/v1/collections/c/count"), &json!({"filter": {"tag": "x"}})).await;
        assert_eq!(count["count"], 2, "count through {via}: {count}");
        let described = c.api.get_ok(&format!("{via}/v1/collections/c")).await;
        assert_eq!(described["stats"]["rows"], live.len(), "describe through {via}: {described}");
    }

    // A node without the query role forwards; it never loads a shard itself. With every
    // query node gone, its reads are retryable 503s, while writes still go through.
    for q in c.ids(Role::Query) {
        c.kill(&q);
    }
    let (status, resp) = c.api.search_for(&ingest, "c", 100).await.unwrap();
    assert_eq!(status, 503, "search through an ingest node with no query node: {resp}");
    assert_eq!(resp["error"]["code"], "unavailable", "{resp}");
    let resp = c.api.post_ok(&format!("{compactor}/v1/collections/c/upsert"), &rows(&[1])).await;
    assert_eq!(resp["upserted"], 1, "upsert through the compactor with no query node: {resp}");
    let info = c.api.node_info(&ingest).await;
    assert_eq!(info["cache"]["bytes_fetched"], 0, "the ingest node loaded segments: {info}");
}
