//! `GET /metrics` on a standalone server: after a create, writes, a flush and searches, the
//! key series exist with plausible values, in the Prometheus text format.

// Tests drive real processes and servers in real time.
#![allow(clippy::disallowed_methods)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;
use tower::ServiceExt;

/// One sample: metric name, labels as `key="value"` pairs, value.
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("label pair");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            Sample { name: name.to_owned(), labels, value: value.parse().expect("sample value") }
        })
        .collect()
}

/// Sum of the samples of `name` whose labels include every `(key, value)` of `with`;
/// `None` if there is no such sample.
fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| with.iter().all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v)))
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

#[tokio::test]
async fn metrics_cover_requests_wal_flush_storage_cache_and_shards() {
    let t = common::start(|_| {}).await;
    t.create("docs", 3, "cosine").await;
    let rows = json!({"rows": [
        {"id": 1, "vector": [1.0, 0.0, 0.0]},
        {"id": 2, "vector": [0.0, 1.0, 0.0]},
        {"id": 3, "vector": [0.0, 0.0, 1.0]},
    ]});
    t.ok("POST", "/v1/collections/docs/upsert", Some(rows)).await;
    t.ok("POST", "/v1/collections/docs/flush", None).await;
    for _ in 0..2 {
        t.ok("POST", "/v1/collections/docs/search", Some(json!({"vector": [1.0, 0.1, 0.0], "top_k": 2}))).await;
    }
    assert_eq!(t.call("GET", "/no/such/route", None).await.0, StatusCode::NOT_FOUND);

    let resp = t.server.router.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let content_type = resp.headers()[header::CONTENT_TYPE].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    let s = parse(&text);
    let get =
        |name: &str, with: &[(&str, &str)]| sum(&s, name, with).unwrap_or_else(|| panic!("{name} {with:?}:\n{text}"));

    // HTTP, by route template: never the raw path.
    let upsert = [("route", "/v1/collections/{name}/upsert"), ("method", "POST"), ("status", "200")];
    assert!(get("strata_http_requests_total", &upsert) >= 1.0);
    assert_eq!(get("strata_http_requests_total", &[("route", "/v1/collections/{name}/search")]), 2.0);
    assert_eq!(get("strata_http_requests_total", &[("route", "unmatched"), ("status", "404")]), 1.0);
    assert!(!text.contains("route=\"/v1/collections/docs"), "raw paths must not become labels");
    assert!(get("strata_http_request_seconds_count", &[("route", "/v1/collections/{name}/upsert")]) >= 1.0);

    // WAL: rows land in both shards, one commit each at least.
    let commits = get("strata_wal_commits_total", &[]);
    assert!(commits >= 1.0);
    assert_eq!(get("strata_wal_ops_total", &[]), 3.0);
    assert_eq!(get("strata_wal_commit_seconds_count", &[]), commits);
    assert!(get("strata_wal_commit_bytes_sum", &[]) > 0.0);

    // Flush: every operation flushed, backlog back to zero in every shard written here.
    assert!(get("strata_flush_seconds_count", &[]) >= 1.0);
    assert_eq!(get("strata_flush_rows_total", &[]), 3.0);
    assert_eq!(get("strata_ingest_backlog_rows", &[("collection", "docs")]), 0.0);
    assert_eq!(get("strata_ingest_backlog_bytes", &[("collection", "docs")]), 0.0);

    // Object store: the WAL, segments and manifests were put; reads happened.
    assert!(get("strata_object_store_requests_total", &[("op", "put"), ("outcome", "ok")]) >= 1.0);
    assert!(get("strata_object_store_written_bytes_total", &[]) > 0.0);
    assert!(get("strata_object_store_request_seconds_count", &[("op", "put")]) >= 1.0);

    // Query node: both shards loaded (search fans out), rows and segments per shard.
    assert_eq!(get("strata_query_shard_rows", &[("collection", "docs")]), 3.0);
    assert!(get("strata_query_shard_segments", &[("collection", "docs")]) >= 1.0);
    assert!(get("strata_query_shards_assigned", &[]) >= get("strata_query_shards_serving", &[]));

    // Cache: the flushed segments were read through it by the query role.
    let reads = get("strata_cache_hits_total", &[("tier", "memory")])
        + get("strata_cache_hits_total", &[("tier", "disk")])
        + get("strata_cache_misses_total", &[]);
    assert!(reads >= 1.0, "{text}");
    assert!(get("strata_cache_served_bytes_total", &[]) > 0.0);
    get("strata_cache_fetched_bytes_total", &[]);

    // Coordination: this node writes the shards it wrote to.
    assert!(get("strata_coord_leases_held", &[("kind", "writer")]) >= 1.0);
    get("strata_coord_handoffs_total", &[("kind", "writer")]);
    get("strata_compactions_total", &[]);

    // Counters copied in at scrape time stay put on a second scrape.
    let again = t.server.router.clone().oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let again = String::from_utf8(axum::body::to_bytes(again.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap();
    let s2 = parse(&again);
    assert!(sum(&s2, "strata_cache_served_bytes_total", &[]).unwrap() >= get("strata_cache_served_bytes_total", &[]));
    assert_eq!(sum(&s2, "strata_http_requests_total", &[("route", "/metrics")]), Some(1.0));
    t.server.stop().await;
}
