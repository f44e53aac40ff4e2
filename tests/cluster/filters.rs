//! Attribute filters across a multi-process cluster: filters travel to the shards other
//! query nodes serve (gRPC `SearchShard`, `ScanShard`, `CountShard`), deletes and updates
//! by filter reach each shard's writer on whichever ingest node holds it (gRPC `Mutate`),
//! and attribute types registered through one ingest node hold on the other.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::client::{DIM, top_id, vector_of};
use super::harness::{Cluster, Role};
use super::{SETTLE, flush};

fn attrs(id: u64) -> Value {
    let tags: Vec<&str> = if id.is_multiple_of(3) { vec!["red"] } else { vec!["blue", "green"] };
    json!({"m": (id % 10) as i64, "tags": tags})
}

async fn count(c: &Cluster, url: &str, filter: Value) -> u64 {
    let resp = c.api.post_ok(&format!("{url}/v1/collections/f/count"), &json!({"filter": filter})).await;
    assert!(resp["partial"] != true, "partial count via {url}: {resp}");
    resp["count"].as_u64().unwrap()
}

async fn search(c: &Cluster, url: &str, id: u64, filter: Value) -> Value {
    let body = json!({"vector": vector_of(id), "top_k": 10, "filter": filter, "include_attributes": true});
    let resp = c.api.post_ok(&format!("{url}/v1/collections/f/search"), &body).await;
    assert!(resp["partial"] != true, "partial search via {url}: {resp}");
    resp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filters_deletes_and_updates_across_the_cluster() {
    let Some(mut c) = Cluster::start("t-filters", &[("STRATA__INGEST__FLUSH_ROWS", "500")]) else { return };
    c.start_nodes(2, 2, 0).await;
    // One replica per shard: each query node must ask the other for half the shards.
    c.create_collection("f", DIM, 4, 1).await;
    c.wait_settled("query-1", 4, SETTLE).await;
    let (ingest, query) = (c.urls(Role::Ingest), c.urls(Role::Query));

    let ids: Vec<u64> = (1..=2_000).collect();
    for (i, chunk) in ids.chunks(250).enumerate() {
        let rows: Vec<Value> =
            chunk.iter().map(|&id| json!({"id": id, "vector": vector_of(id), "attributes": attrs(id)})).collect();
        let url = format!("{}/v1/collections/f/upsert", ingest[i % 2]);
        c.api.post_ok(&url, &json!({"rows": rows})).await;
    }
    // A type registered through one ingest node holds on the other.
    let bad = json!({"rows": [{"id": 9_999, "vector": vector_of(9_999), "attributes": {"m": "x"}}]});
    for url in &ingest {
        let (status, resp) = c.api.call("POST", &format!("{url}/v1/collections/f/upsert"), Some(&bad)).await.unwrap();
        assert_eq!(status, 400, "type conflict via {url}: {resp}");
    }

    for phase in ["unflushed", "flushed"] {
        for url in &query {
            assert_eq!(count(&c, url, json!({"m": 7})).await, 200, "{phase} via {url}");
            assert_eq!(count(&c, url, json!({"tags": {"$contains": "red"}})).await, 666, "{phase} via {url}");
            for id in (7..=2_000).step_by(170) {
                // A filter the row matches finds it first; one it does not never returns it.
                let m = (id % 10) as i64;
                assert_eq!(top_id(&search(&c, url, id, json!({"m": m})).await), Some(id), "{phase} via {url}");
                let other = search(&c, url, id, json!({"m": {"$ne": m}})).await;
                let results = other["results"].as_array().unwrap();
                assert_eq!(results.len(), 10, "{phase} via {url}: {other}");
                assert!(results.iter().all(|r| r["id"] != id && r["attributes"]["m"] != m), "{phase}: {other}");
            }
        }
        flush(&c, "f").await;
    }

    // Query pages through both query nodes give the same, complete set.
    for url in &query {
        let (mut seen, mut cursor) = (BTreeSet::new(), None::<String>);
        loop {
            let mut body = json!({"filter": {"m": {"$in": [1, 2]}}, "limit": 97});
            if let Some(c) = &cursor {
                body["cursor"] = json!(c);
            }
            let page = c.api.post_ok(&format!("{url}/v1/collections/f/query"), &body).await;
            for r in page["rows"].as_array().unwrap() {
                assert!(seen.insert(r["id"].as_u64().unwrap()), "a row came twice via {url}");
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        let expected: BTreeSet<u64> = ids.iter().copied().filter(|id| [1, 2].contains(&(id % 10))).collect();
        assert_eq!(seen, expected, "query via {url}");
    }

    // Delete and update by filter through different ingest nodes: each shard's part runs
    // on its writer, wherever that is.
    let del = c.api.post_ok(&format!("{}/v1/collections/f/delete", ingest[1]), &json!({"filter": {"m": 3}})).await;
    assert_eq!(del["deleted"], 200, "{del}");
    let upd = c
        .api
        .post_ok(
            &format!("{}/v1/collections/f/update", ingest[0]),
            &json!({"filter": {"m": 4}, "attributes": {"star": true}}),
        )
        .await;
    assert_eq!(upd["updated"], 200, "{upd}");
    for url in &query {
        assert_eq!(count(&c, url, json!({"m": 3})).await, 0, "deleted rows via {url}");
        assert_eq!(count(&c, url, json!({"star": true, "m": 4})).await, 200, "updated rows via {url}");
        assert_eq!(count(&c, url, json!({})).await, 1_800, "rows via {url}");
        // Updated rows keep their vectors: searching with one finds it first.
        assert_eq!(top_id(&search(&c, url, 14, json!({"star": true})).await), Some(14));
        let found = search(&c, url, 13, json!({})).await;
        assert!(found["results"].as_array().unwrap().iter().all(|r| r["attributes"]["m"] != 3), "{found}");
    }
}
