//! Attribute filters end to end on a standalone server: filtered search against brute
//! force while rows move from the WAL tail into segments, through compaction and across a
//! restart; query (paged), count, delete and update by filter; attribute types; bad
//! filters refused without changing anything; delete by filter racing with upserts.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use axum::http::StatusCode;
use serde_json::{Value, json};
use strata::config::Config;

const DIM: usize = 8;

/// A deterministic pseudo-random stream (SplitMix64), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn float(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
    fn vector(&mut self) -> Vec<f32> {
        (0..DIM).map(|_| self.float()).collect()
    }
}

/// The model: id → (vector, attributes).
type Rows = BTreeMap<u64, (Vec<f32>, Value)>;

fn attrs(i: u64, rng: &mut Rng) -> Value {
    let tags: Vec<&str> = ["rust", "go", "db"].into_iter().filter(|_| rng.next().is_multiple_of(3)).collect();
    let lang = ["en", "de", "fr", "ja"][(rng.next() % 4) as usize];
    let mut a = json!({
        "cat": (i % 10) as i64,
        "price": (rng.next() % 1000) as f64 / 10.0,
        "lang": lang,
        "tags": tags,
    });
    if i.is_multiple_of(7) {
        a.as_object_mut().unwrap().remove("lang"); // some rows lack an attribute
    }
    a
}

async fn upsert(t: &common::TestServer, model: &mut Rows, ids: impl Iterator<Item = u64>, rng: &mut Rng) {
    let mut batch = Vec::new();
    for i in ids {
        let (v, a) = (rng.vector(), attrs(i, rng));
        batch.push(json!({"id": i, "vector": v, "attributes": a}));
        model.insert(i, (v, a));
    }
    for chunk in batch.chunks(1000) {
        t.ok("POST", "/v1/collections/f/upsert", Some(json!({"rows": chunk}))).await;
    }
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn matches(filter: &Value, attrs: &Value) -> bool {
    let filter = strata_types::filter::Filter::parse(filter).unwrap();
    filter.matches(attrs.as_object())
}

const FILTERS: [&str; 8] = [
    r#"{"cat": 3}"#,
    r#"{"cat": {"$in": [1, 2, 3, 4, 5]}}"#,
    r#"{"price": {"$gte": 10, "$lt": 12.5}}"#,
    r#"{"lang": "en", "tags": {"$contains": "rust"}}"#,
    r#"{"$or": [{"cat": 0}, {"lang": {"$exists": false}}]}"#,
    r#"{"$not": {"cat": {"$lt": 9}}}"#,
    r#"{"lang": {"$nin": ["en", "de"]}, "price": {"$gt": 50}}"#,
    r#"{"cat": {"$ne": 4}}"#,
];

/// Every filtered search returns only matching rows, and recall@10 against brute force
/// over the matching rows is at least 0.95 over all queries and filters.
async fn check_search(t: &common::TestServer, model: &Rows, rng: &mut Rng, phase: &str) {
    let (mut found, mut expected_total) = (0usize, 0usize);
    for f in FILTERS {
        let filter: Value = serde_json::from_str(f).unwrap();
        for _ in 0..5 {
            let q = rng.vector();
            let body = json!({"vector": q, "top_k": 10, "filter": filter, "include_attributes": true});
            let res = t.ok("POST", "/v1/collections/f/search", Some(body)).await;
            let mut truth: Vec<(f32, u64)> =
                model.iter().filter(|(_, (_, a))| matches(&filter, a)).map(|(id, (v, _))| (l2(&q, v), *id)).collect();
            truth.sort_by(|a, b| a.0.total_cmp(&b.0));
            let truth: BTreeSet<u64> = truth.iter().take(10).map(|t| t.1).collect();
            let results = res["results"].as_array().unwrap();
            assert_eq!(results.len(), truth.len(), "{phase}: {f}: wrong result count");
            for r in results {
                let id = r["id"].as_u64().unwrap();
                assert!(matches(&filter, &model[&id].1), "{phase}: {f}: row {id} does not match");
                assert_eq!(r["attributes"], model[&id].1, "{phase}: row {id} attributes");
                found += usize::from(truth.contains(&id));
            }
            expected_total += truth.len();
        }
    }
    let recall = found as f64 / expected_total.max(1) as f64;
    assert!(recall >= 0.95, "{phase}: filtered recall@10 {recall:.3}");
}

async fn check_counts(t: &common::TestServer, model: &Rows, phase: &str) {
    for f in FILTERS {
        let filter: Value = serde_json::from_str(f).unwrap();
        let expected = model.values().filter(|(_, a)| matches(&filter, a)).count() as u64;
        let got = t.ok("POST", "/v1/collections/f/count", Some(json!({"filter": filter}))).await;
        assert_eq!(got["count"].as_u64().unwrap(), expected, "{phase}: count {f}");
    }
}

fn tune(c: &mut Config) {
    c.ingest.graph_min_rows = 300;
    c.compactor.interval_ms = 3_600_000;
    c.compactor.tier_base_rows = 500;
    c.compactor.tier_fanout = 2;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_search_matches_brute_force_across_flush_compaction_and_restart() {
    let t = common::start(tune).await;
    t.create("f", DIM, "l2").await;
    let (mut model, mut rng) = (Rows::new(), Rng(7));

    upsert(&t, &mut model, 0..1500, &mut rng).await;
    check_search(&t, &model, &mut rng, "unflushed").await;
    check_counts(&t, &model, "unflushed").await;

    t.ok("POST", "/v1/collections/f/flush", None).await;
    upsert(&t, &mut model, 1500..3000, &mut rng).await;
    t.ok("POST", "/v1/collections/f/flush", None).await;
    // Replace and delete across segment boundaries, partly unflushed.
    upsert(&t, &mut model, (0..3000).step_by(5), &mut rng).await;
    let deleted: Vec<u64> = (1..3000).step_by(11).collect();
    t.ok("POST", "/v1/collections/f/delete", Some(json!({"ids": deleted}))).await;
    deleted.iter().for_each(|id| {
        model.remove(id);
    });
    check_search(&t, &model, &mut rng, "segments and tail").await;
    check_counts(&t, &model, "segments and tail").await;

    t.ok("POST", "/v1/collections/f/flush", None).await;
    let report = t.server.compactor.run_once().await.unwrap();
    assert!(!report.compactions.is_empty(), "the test must exercise compaction");
    check_search(&t, &model, &mut rng, "compacted").await;
    check_counts(&t, &model, "compacted").await;

    let t = t.restart(tune).await;
    check_search(&t, &model, &mut rng, "restarted").await;
    check_counts(&t, &model, "restarted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_delete_and_update_by_filter() {
    let t = common::start(tune).await;
    t.create("f", DIM, "l2").await;
    let (mut model, mut rng) = (Rows::new(), Rng(11));
    upsert(&t, &mut model, 0..1200, &mut rng).await;
    t.ok("POST", "/v1/collections/f/flush", None).await;
    upsert(&t, &mut model, 1200..1500, &mut rng).await;

    // Query pages cover exactly the matching rows, each once.
    let filter = json!({"cat": {"$in": [1, 2]}});
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let mut body = json!({"filter": filter, "limit": 70});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let page = t.ok("POST", "/v1/collections/f/query", Some(body)).await;
        for r in page["rows"].as_array().unwrap() {
            assert!(r.get("vector").is_none(), "vectors only when asked");
            seen.push(r["id"].as_u64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let expected: Vec<u64> = model.iter().filter(|(_, (_, a))| matches(&filter, a)).map(|(id, _)| *id).collect();
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a row came twice");
    assert_eq!(unique.into_iter().collect::<Vec<_>>(), expected);

    // Update by ids and by filter keeps vectors; null removes an attribute.
    let upd = t
        .ok(
            "POST",
            "/v1/collections/f/update",
            Some(json!({"ids": [5, 1300, 99999], "attributes": {"lang": null, "star": true}})),
        )
        .await;
    assert_eq!(upd["updated"], 2);
    let upd =
        t.ok("POST", "/v1/collections/f/update", Some(json!({"filter": {"cat": 9}, "attributes": {"price": 1}}))).await;
    let nines = model.values().filter(|(_, a)| a["cat"] == 9).count();
    assert_eq!(upd["updated"].as_u64().unwrap() as usize, nines);
    for (id, (_, a)) in model.iter_mut() {
        if [5, 1300].contains(id) {
            a.as_object_mut().unwrap().remove("lang");
            a["star"] = json!(true);
        }
        if a["cat"] == 9 {
            a["price"] = json!(1.0); // price is a float attribute: 1 is stored as 1.0
        }
    }
    let got = t
        .ok(
            "POST",
            "/v1/collections/f/get",
            Some(json!({"ids": [5, 1300, 9, 1209], "include_vector": true, "include_attributes": true})),
        )
        .await;
    for r in got["rows"].as_array().unwrap() {
        let id = r["id"].as_u64().unwrap();
        assert_eq!(r["attributes"], model[&id].1, "row {id}");
        let v: Vec<f32> = serde_json::from_value(r["vector"].clone()).unwrap();
        assert_eq!(v, model[&id].0, "row {id}: the vector must not change");
    }
    // Get with a filter leaves out rows that do not match.
    let got = t.ok("POST", "/v1/collections/f/get", Some(json!({"ids": [5, 6], "filter": {"star": true}}))).await;
    assert_eq!(got["rows"].as_array().unwrap().len(), 1);

    // Delete by filter: the response counts the rows; none is read again.
    let doomed = json!({"$or": [{"cat": 3}, {"tags": {"$contains": "db"}}]});
    let expected = model.values().filter(|(_, a)| matches(&doomed, a)).count();
    let del = t.ok("POST", "/v1/collections/f/delete", Some(json!({"filter": doomed}))).await;
    assert_eq!(del["deleted"].as_u64().unwrap() as usize, expected);
    model.retain(|_, (_, a)| !matches(&doomed, a));
    let left = t.ok("POST", "/v1/collections/f/count", Some(json!({"filter": doomed}))).await;
    assert_eq!(left["count"], 0);
    assert_eq!(t.rows("f").await as usize, model.len());
    check_counts(&t, &model, "after delete by filter").await;
    t.ok("POST", "/v1/collections/f/flush", None).await;
    check_search(&t, &model, &mut rng, "after delete by filter").await;
}

#[tokio::test]
async fn bad_filters_and_attribute_types_are_refused_and_change_nothing() {
    let t = common::start(|_| {}).await;
    let (status, v) = t
        .call(
            "POST",
            "/v1/collections",
            Some(json!({"name": "f", "dimension": 2, "metric": "l2", "attributes": {"price": "float"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let row = |id: u64, a: Value| json!({"id": id, "vector": [1.0, 2.0], "attributes": a});
    t.ok("POST", "/v1/collections/f/upsert", Some(json!({"rows": [row(1, json!({"year": 2020, "price": 3}))]}))).await;

    // A write whose attribute type conflicts is refused whole.
    let (status, v) = t
        .call(
            "POST",
            "/v1/collections/f/upsert",
            Some(json!({"rows": [row(2, json!({"year": 2021})), row(3, json!({"year": "2021"}))]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("\"year\""), "{v}");
    let (status, _) =
        t.call("POST", "/v1/collections/f/upsert", Some(json!({"rows": [row(4, json!({"price": "x"}))]}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(t.rows("f").await, 1, "nothing of a refused batch is written");
    let info = t.ok("GET", "/v1/collections/f", None).await;
    assert_eq!(info["attributes"], json!({"price": "float", "year": "int"}));
    let got = t.ok("POST", "/v1/collections/f/get", Some(json!({"ids": [1], "include_attributes": true}))).await;
    assert_eq!(got["rows"][0]["attributes"]["price"], json!(3.0));

    let bad = [
        (json!([1]), "filter"),
        (json!({"year": {"$between": [1, 2]}}), "$between"),
        (json!({"year": {"$gte": "2020"}}), "filter.year.$gte"),
        (json!({"$and": [{"year": 1}, {"year": null}]}), "filter.$and[1].year"),
        (json!({"year": [1, 2]}), "$in"),
        (json!({"price": {"$contains": "x"}}), "price"),
    ];
    for (filter, says) in bad {
        for (path, body) in [
            ("search", json!({"vector": [1.0, 2.0], "filter": filter})),
            ("count", json!({"filter": filter})),
            ("query", json!({"filter": filter})),
            ("delete", json!({"filter": filter})),
            ("update", json!({"filter": filter, "attributes": {"x": 1}})),
        ] {
            let (status, v) = t.call("POST", &format!("/v1/collections/f/{path}"), Some(body)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {filter}: {v}");
            let message = v["error"]["message"].as_str().unwrap();
            assert!(message.contains(says), "{path} {filter}: {message:?} should name {says:?}");
        }
    }
    let (status, _) =
        t.call("POST", "/v1/collections/f/delete", Some(json!({"ids": [1], "filter": {"year": 1}}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "ids and filter together");
    let (status, _) = t.call("POST", "/v1/collections/f/query", Some(json!({"cursor": "nonsense"}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(t.rows("f").await, 1, "no bad request changed anything");
    let info = t.ok("GET", "/v1/collections/f", None).await;
    assert_eq!(info["attributes"], json!({"price": "float", "year": "int"}), "no bad request typed an attribute");
}

/// Upserts that move rows out of a filter race with a delete by that filter: every row
/// whose acknowledged upsert no longer matches survives, whichever came first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_by_filter_racing_upserts_loses_no_acknowledged_upsert() {
    let t = std::sync::Arc::new(common::start(tune).await);
    t.create("f", 2, "l2").await;
    let row = |id: u64, flag: &str| json!({"id": id, "vector": [id as f32, 1.0], "attributes": {"flag": flag}});
    let rows: Vec<Value> = (0..2000).map(|i| row(i, "drop")).collect();
    t.ok("POST", "/v1/collections/f/upsert", Some(json!({"rows": rows}))).await;
    t.ok("POST", "/v1/collections/f/flush", None).await;

    let writer = {
        let t = t.clone();
        tokio::spawn(async move {
            let mut kept = Vec::new();
            for start in (0..2000u64).step_by(50) {
                let batch: Vec<Value> = (start..start + 25).map(|i| row(i, "keep")).collect();
                t.ok("POST", "/v1/collections/f/upsert", Some(json!({"rows": batch}))).await;
                kept.extend(start..start + 25);
            }
            kept
        })
    };
    let mut deleted = 0;
    for _ in 0..4 {
        let del = t.ok("POST", "/v1/collections/f/delete", Some(json!({"filter": {"flag": "drop"}}))).await;
        deleted += del["deleted"].as_u64().unwrap();
    }
    let kept = writer.await.unwrap();
    let del = t.ok("POST", "/v1/collections/f/delete", Some(json!({"filter": {"flag": "drop"}}))).await;
    deleted += del["deleted"].as_u64().unwrap();
    let got = t.ok("POST", "/v1/collections/f/get", Some(json!({"ids": kept, "include_attributes": true}))).await;
    assert_eq!(got["rows"].as_array().unwrap().len(), 1000, "an acknowledged upsert was deleted");
    assert!(got["rows"].as_array().unwrap().iter().all(|r| r["attributes"]["flag"] == "keep"));
    assert_eq!(t.rows("f").await, 1000, "every row still flagged drop is gone");
    // The 1,000 rows never rewritten are deleted once each; a rewritten one at most once
    // (before its rewrite), never twice.
    assert!((1000..=2000).contains(&deleted), "rows deleted by filter: {deleted}");
}
