//! Every REST endpoint, end to end through the real router, storage, cache and roles; and
//! every kind of bad input, checking the error and that nothing of the request was written.

// Tests drive real processes and servers in real time.
#![allow(clippy::disallowed_methods)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

fn ids(v: &Value, key: &str) -> Vec<Value> {
    v[key].as_array().unwrap().iter().map(|r| r["id"].clone()).collect()
}

#[tokio::test]
async fn every_endpoint_works_end_to_end() {
    let t = common::start(|_| {}).await;
    assert_eq!(t.call("GET", "/healthz", None).await.0, StatusCode::OK);
    let node = t.ok("GET", "/v1/node", None).await;
    assert!(node["cpu_seconds"].as_f64().is_some_and(|s| s > 0.0), "the process's CPU time: {node}");
    assert_eq!(t.call("GET", "/readyz", None).await.0, StatusCode::OK);
    t.create("docs", 3, "cosine").await;
    let listed = t.ok("GET", "/v1/collections", None).await;
    assert_eq!(listed["collections"][0]["name"], "docs");
    assert_eq!(listed["collections"][0]["hnsw"]["m"], 16);

    let rows = json!({"rows": [
        {"id": 1, "vector": [1.0, 0.0, 0.0], "attributes": {"lang": "en", "year": 2024, "score": 0.5, "ok": true}},
        {"id": "doc-2", "vector": [0.0, 1.0, 0.0]},
        {"id": 3, "vector": [0.0, 0.0, 1.0], "attributes": {"lang": "de"}},
    ]});
    assert_eq!(t.ok("POST", "/v1/collections/docs/upsert", Some(rows)).await["upserted"], 3);
    assert_eq!(t.rows("docs").await, 3);

    // Strong reads see acknowledged writes at once, before any flush.
    let hit = t
        .ok(
            "POST",
            "/v1/collections/docs/search",
            Some(json!({"vector": [0.9, 0.1, 0.0], "top_k": 2, "include_attributes": true})),
        )
        .await;
    assert_eq!(ids(&hit, "results"), [json!(1), json!("doc-2")]);
    assert!(hit["results"][0]["score"].as_f64().unwrap() > 0.99);
    assert_eq!(hit["results"][0]["attributes"]["year"], 2024);
    assert!(hit["results"][0].get("vector").is_none());
    assert!(hit["took_us"].as_u64().is_some());

    let got = t
        .ok(
            "POST",
            "/v1/collections/docs/get",
            Some(json!({"ids": ["doc-2", 1, 99], "include_vector": true, "include_attributes": true})),
        )
        .await;
    assert_eq!(ids(&got, "rows"), [json!("doc-2"), json!(1)]);
    assert_eq!(got["rows"][0]["vector"], json!([0.0, 1.0, 0.0]));
    assert_eq!(got["rows"][1]["attributes"], json!({"lang": "en", "year": 2024, "score": 0.5, "ok": true}));

    // Flush into a segment: answers stay the same, attributes survive the columnar format.
    t.ok("POST", "/v1/collections/docs/flush", None).await;
    let d = t.ok("GET", "/v1/collections/docs", None).await;
    assert_eq!(d["stats"]["rows"], 3);
    assert!(d["stats"]["segments"].as_u64().unwrap() >= 1);
    assert!(d["stats"]["shards"].as_array().unwrap().iter().all(|s| s["wal_backlog_entries"] == 0));
    let got = t.ok("POST", "/v1/collections/docs/get", Some(json!({"ids": [1, 3], "include_attributes": true}))).await;
    assert_eq!(got["rows"][0]["attributes"]["score"], 0.5);
    assert_eq!(got["rows"][1]["attributes"], json!({"lang": "de"}));

    // Replace and delete after the flush: newest write wins, deleted rows never come back.
    t.ok("POST", "/v1/collections/docs/upsert", Some(json!({"rows": [{"id": 3, "vector": [1.0, 0.05, 0.0]}]}))).await;
    t.ok("POST", "/v1/collections/docs/delete", Some(json!({"ids": [1]}))).await;
    let hit = t.ok("POST", "/v1/collections/docs/search", Some(json!({"vector": [1.0, 0.0, 0.0], "top_k": 3}))).await;
    assert_eq!(ids(&hit, "results"), [json!(3), json!("doc-2")]);
    t.ok("POST", "/v1/collections/docs/flush", None).await;
    let hit = t
        .ok(
            "POST",
            "/v1/collections/docs/search",
            Some(json!({"vector": [1.0, 0.0, 0.0], "top_k": 3, "consistency": "eventual"})),
        )
        .await;
    assert_eq!(ids(&hit, "results"), [json!(3), json!("doc-2")]);
    assert_eq!(t.rows("docs").await, 2);
    // An integral float is an integer, as JSON Schema's `integer` (the document's) has it.
    let body = json!({"vector": [1.0, 0.0, 0.0], "top_k": 3.0, "ef": 64.0, "consistency": {"max_staleness_ms": 0.0}});
    let hit = t.ok("POST", "/v1/collections/docs/search", Some(body)).await;
    assert_eq!(ids(&hit, "results"), [json!(3), json!("doc-2")]);

    // The OpenAPI document describes every endpoint.
    let doc = t.ok("GET", "/openapi.json", None).await;
    for path in [
        "/v1/collections",
        "/v1/collections/{name}",
        "/v1/collections/{name}/upsert",
        "/v1/collections/{name}/delete",
        "/v1/collections/{name}/get",
        "/v1/collections/{name}/search",
        "/v1/collections/{name}/flush",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    // `consistency` is a level name or a bound, wherever it is accepted.
    let schemas = &doc["components"]["schemas"];
    let consistency = schemas["Consistency"].to_string();
    assert!(consistency.contains("max_staleness_ms") && consistency.contains("ConsistencyLevel"), "{consistency}");
    for request in ["SearchRequest", "GetRequest", "CountRequest"] {
        let field = &schemas[request]["properties"]["consistency"];
        assert_eq!(field["$ref"], "#/components/schemas/Consistency", "{request}: {field}");
    }

    // Drop: gone, and a new collection with the same name starts empty.
    assert_eq!(t.ok("DELETE", "/v1/collections/docs", None).await["dropped"], "docs");
    let (status, err) = t.call("POST", "/v1/collections/docs/search", Some(json!({"vector": [1.0, 0.0, 0.0]}))).await;
    assert_eq!((status, err["error"]["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
    t.create("docs", 3, "l2").await;
    assert_eq!(t.rows("docs").await, 0);
    t.server.stop().await;
}

/// A request: method, path, optional JSON body.
type Call<'a> = (&'a str, &'a str, Option<Value>);

#[tokio::test]
async fn bad_input_is_refused_with_a_clear_4xx_and_nothing_is_written() {
    let t = common::start(|c| c.ingest.max_batch_rows = 5).await;
    t.create("c", 2, "l2").await;
    t.ok("POST", "/v1/collections/c/upsert", Some(json!({"rows": [{"id": 1, "vector": [0.0, 0.0]}]}))).await;

    let upsert = |rows: Value| ("POST", "/v1/collections/c/upsert", Some(json!({ "rows": rows })));
    let too_many: Vec<Value> = (10..16).map(|i| json!({"id": i, "vector": [1.0, 1.0]})).collect();
    let cases: Vec<(&str, Call, StatusCode, &str)> = vec![
        (
            "wrong dimension",
            upsert(json!([{"id": 7, "vector": [1.0, 2.0]}, {"id": 8, "vector": [1.0]}])),
            StatusCode::BAD_REQUEST,
            "dimension 1",
        ),
        ("infinite value", upsert(json!([{"id": 7, "vector": [1.0, 1e39]}])), StatusCode::BAD_REQUEST, "finite"),
        ("empty batch", upsert(json!([])), StatusCode::BAD_REQUEST, "empty"),
        ("oversized batch", upsert(Value::Array(too_many)), StatusCode::BAD_REQUEST, "limit"),
        (
            "duplicate ids",
            upsert(json!([{"id": 7, "vector": [1.0, 1.0]}, {"id": 7, "vector": [2.0, 2.0]}])),
            StatusCode::BAD_REQUEST,
            "more than once",
        ),
        (
            "negative id",
            upsert(json!([{"id": -3, "vector": [1.0, 1.0]}])),
            StatusCode::BAD_REQUEST,
            "at rows[0].id: an id must not be negative, got -3",
        ),
        (
            "fractional id",
            upsert(json!([{"id": 1.5, "vector": [1.0, 1.0]}])),
            StatusCode::BAD_REQUEST,
            "an id is an integer or a string, got the number 1.5",
        ),
        (
            "id of the wrong type",
            upsert(json!([{"id": [1], "vector": [1.0, 1.0]}])),
            StatusCode::BAD_REQUEST,
            "expected an id: an integer in 0..=18446744073709551615 or a non-empty string",
        ),
        (
            "bulk into an unknown collection",
            ("POST", "/v1/collections/nope/bulk", Some(json!({"shard": 0, "rows": []}))),
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "wrong method",
            ("PUT", "/v1/collections/c/search", Some(json!({}))),
            StatusCode::METHOD_NOT_ALLOWED,
            "PUT is not allowed on /v1/collections/c/search",
        ),
        ("empty string id", upsert(json!([{"id": "", "vector": [1.0, 1.0]}])), StatusCode::BAD_REQUEST, "empty string"),
        (
            "nested attribute",
            upsert(json!([{"id": 7, "vector": [1.0, 1.0], "attributes": {"a": {"b": 1}}}])),
            StatusCode::BAD_REQUEST,
            "string, number",
        ),
        ("unknown field", upsert(json!([{"id": 7, "vectors": [1.0, 1.0]}])), StatusCode::BAD_REQUEST, "unknown field"),
        (
            "unknown collection",
            ("POST", "/v1/collections/nope/upsert", Some(json!({"rows": [{"id": 1, "vector": [1.0, 1.0]}]}))),
            StatusCode::NOT_FOUND,
            "does not exist",
        ),
        (
            "search wrong dimension",
            ("POST", "/v1/collections/c/search", Some(json!({"vector": [1.0]}))),
            StatusCode::BAD_REQUEST,
            "dimension",
        ),
        (
            "top_k zero",
            ("POST", "/v1/collections/c/search", Some(json!({"vector": [1.0, 1.0], "top_k": 0}))),
            StatusCode::BAD_REQUEST,
            "top_k",
        ),
        (
            "fractional top_k",
            ("POST", "/v1/collections/c/search", Some(json!({"vector": [1.0, 1.0], "top_k": 85.5}))),
            StatusCode::BAD_REQUEST,
            "at top_k: expected a non-negative integer, got 85.5",
        ),
        (
            "wait_ms out of range",
            ("POST", "/v1/cluster/rebalance?wait_ms=60001", None),
            StatusCode::BAD_REQUEST,
            "wait_ms must be in 0..=60000, got 60001",
        ),
        (
            "malformed wait_ms",
            ("DELETE", "/v1/cluster/nodes/standalone?wait_ms=soon", None),
            StatusCode::BAD_REQUEST,
            "malformed query string",
        ),
        (
            "removing the standalone node",
            ("DELETE", "/v1/cluster/nodes/standalone", None),
            StatusCode::CONFLICT,
            "it is the only node",
        ),
        (
            "draining the standalone node",
            ("POST", "/v1/cluster/nodes/standalone/drain", None),
            StatusCode::CONFLICT,
            "it is the only node",
        ),
        (
            "ef too large",
            ("POST", "/v1/collections/c/search", Some(json!({"vector": [1.0, 1.0], "ef": 100000}))),
            StatusCode::BAD_REQUEST,
            "ef",
        ),
        (
            "bad consistency",
            ("POST", "/v1/collections/c/search", Some(json!({"vector": [1.0, 1.0], "consistency": "maybe"}))),
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            "negative max_staleness_ms",
            (
                "POST",
                "/v1/collections/c/search",
                Some(json!({"vector": [1.0, 1.0], "consistency": {"max_staleness_ms": -1}})),
            ),
            StatusCode::BAD_REQUEST,
            "at consistency: max_staleness_ms must be an integer in 0..=3600000, got -1",
        ),
        (
            "fractional max_staleness_ms",
            ("POST", "/v1/collections/c/count", Some(json!({"consistency": {"max_staleness_ms": 2.5}}))),
            StatusCode::BAD_REQUEST,
            "at consistency: max_staleness_ms must be an integer",
        ),
        (
            "huge max_staleness_ms",
            ("POST", "/v1/collections/c/get", Some(json!({"ids": [1], "consistency": {"max_staleness_ms": 1e20}}))),
            StatusCode::BAD_REQUEST,
            "at consistency: max_staleness_ms must be an integer",
        ),
        (
            "max_staleness_ms beside another key",
            (
                "POST",
                "/v1/collections/c/search",
                Some(json!({"vector": [1.0, 1.0], "consistency": {"max_staleness_ms": 5, "strict": true}})),
            ),
            StatusCode::BAD_REQUEST,
            "at consistency: expected \"strong\", \"eventual\" or {\"max_staleness_ms\": N}",
        ),
        (
            "get without ids",
            ("POST", "/v1/collections/c/get", Some(json!({"ids": []}))),
            StatusCode::BAD_REQUEST,
            "ids",
        ),
        (
            "delete duplicate ids",
            ("POST", "/v1/collections/c/delete", Some(json!({"ids": [1, 1]}))),
            StatusCode::BAD_REQUEST,
            "more than once",
        ),
        (
            "zero dimension",
            ("POST", "/v1/collections", Some(json!({"name": "z", "dimension": 0, "metric": "l2"}))),
            StatusCode::BAD_REQUEST,
            "dimension",
        ),
        (
            "bad metric",
            ("POST", "/v1/collections", Some(json!({"name": "z", "dimension": 2, "metric": "hamming"}))),
            StatusCode::BAD_REQUEST,
            "malformed JSON",
        ),
        (
            "bad name",
            ("POST", "/v1/collections", Some(json!({"name": "../x", "dimension": 2, "metric": "l2"}))),
            StatusCode::BAD_REQUEST,
            "collection name",
        ),
        (
            "bad hnsw",
            (
                "POST",
                "/v1/collections",
                Some(json!({"name": "z", "dimension": 2, "metric": "l2", "hnsw": {"m": 1000}})),
            ),
            StatusCode::BAD_REQUEST,
            "hnsw.m",
        ),
        (
            "existing name",
            ("POST", "/v1/collections", Some(json!({"name": "c", "dimension": 2, "metric": "l2"}))),
            StatusCode::CONFLICT,
            "already exists",
        ),
    ];
    for (what, (method, path, body), status, needle) in cases {
        let (got, v) = t.call(method, path, body).await;
        assert_eq!(got, status, "{what}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_else(|| panic!("{what}: no error message in {v}"));
        assert!(v["error"]["code"].is_string(), "{what}: {v}");
        assert!(message.contains(needle), "{what}: {message:?} lacks {needle:?}");
    }

    // Malformed JSON and a missing content type.
    let (status, v) = t
        .raw(
            Request::post("/v1/collections/c/upsert")
                .header("content-type", "application/json")
                .body(Body::from("{\"rows\": ["))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("malformed JSON"));
    let (status, v) = t.raw(Request::post("/v1/collections/c/upsert").body(Body::from("{}")).unwrap()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");

    // Nothing of any refused request was written: only the first row exists.
    assert_eq!(t.rows("c").await, 1);
    let got = t.ok("POST", "/v1/collections/c/get", Some(json!({"ids": [7, 8, 10, 11]}))).await;
    assert_eq!(got["rows"], json!([]));
    let names: Vec<_> = t.ok("GET", "/v1/collections", None).await["collections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].clone())
        .collect();
    assert_eq!(names, [json!("c")]);
    t.server.stop().await;
}

#[tokio::test]
async fn writes_get_429_when_the_unflushed_backlog_is_over_its_bound() {
    let t = common::start(|c| {
        c.ingest.backlog_max_rows = 10;
        c.ingest.flush_rows = 1_000_000;
        c.ingest.flush_age_ms = 3_600_000;
    })
    .await;
    let one_shard = json!({"name": "c", "dimension": 2, "metric": "l2", "shards": 1});
    assert_eq!(t.call("POST", "/v1/collections", Some(one_shard)).await.0, StatusCode::CREATED);
    let batch = |start: u64| json!({"rows": (start..start + 6).map(|i| json!({"id": i, "vector": [1.0, 2.0]})).collect::<Vec<_>>()});
    t.ok("POST", "/v1/collections/c/upsert", Some(batch(0))).await;
    t.ok("POST", "/v1/collections/c/upsert", Some(batch(6))).await;
    let (status, v) = t.call("POST", "/v1/collections/c/upsert", Some(batch(12))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "resource_exhausted");
    assert!(v["error"]["message"].as_str().unwrap().contains("backlog"), "{v}");
    // Once the flush drains the backlog, writes are accepted again.
    t.ok("POST", "/v1/collections/c/flush", None).await;
    t.ok("POST", "/v1/collections/c/upsert", Some(batch(12))).await;
    assert_eq!(t.rows("c").await, 18);
    t.server.stop().await;
}

/// A batch is split per shard and each shard's part commits on its own: when one part is
/// refused (here 429, its shard's backlog over the bound) after another committed, the
/// error body names the committed shards and ids, and exactly those rows are stored.
#[tokio::test]
async fn a_batch_refused_after_a_partial_commit_names_the_committed_rows() {
    let t = common::start(|c| {
        c.ingest.backlog_max_rows = 10;
        c.ingest.flush_rows = 1_000_000;
        c.ingest.flush_age_ms = 3_600_000;
    })
    .await;
    t.create("c", 2, "l2").await;
    let of_shard = |shard: u32| (0u64..).filter(move |&i| strata_types::RowId::Int(i).shard(2) == shard);
    let rows =
        |ids: &[u64]| json!({"rows": ids.iter().map(|i| json!({"id": i, "vector": [1.0, 2.0]})).collect::<Vec<_>>()});
    let full: Vec<u64> = of_shard(0).take(10).collect();
    t.ok("POST", "/v1/collections/c/upsert", Some(rows(&full))).await;

    let refused: Vec<u64> = of_shard(0).skip(10).take(3).collect();
    let accepted: Vec<u64> = of_shard(1).take(3).collect();
    let batch: Vec<u64> = refused.iter().chain(&accepted).copied().collect();
    let (status, v) = t.call("POST", "/v1/collections/c/upsert", Some(rows(&batch))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert_eq!(v["error"]["code"], "resource_exhausted", "{v}");
    assert_eq!(v["error"]["committed_shards"], json!([1]), "{v}");
    assert_eq!(v["error"]["committed_ids"], json!(accepted), "{v}");

    let got = t.ok("POST", "/v1/collections/c/get", Some(json!({"ids": batch}))).await;
    let mut stored: Vec<u64> = got["rows"].as_array().unwrap().iter().map(|r| r["id"].as_u64().unwrap()).collect();
    stored.sort_unstable();
    assert_eq!(stored, accepted, "exactly the committed part is stored");
    // An error with nothing committed has no such fields.
    let (status, v) = t.call("POST", "/v1/collections/c/upsert", Some(rows(&refused))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{v}");
    assert!(v["error"].get("committed_shards").is_none() && v["error"].get("committed_ids").is_none(), "{v}");
    t.server.stop().await;
}

/// Vectors may be sent as base64 of their little-endian f32 bytes, in upserts and searches,
/// mixed with JSON arrays; bad base64 is a 400 that writes nothing. A multi-threaded runtime
/// so that large bodies take the `block_in_place` parse path, as in the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vectors_may_be_base64_and_bad_base64_is_refused() {
    use strata_api::BLOCKING_PARSE_BYTES;
    use strata_api::vector_encoding::encode_base64_f32 as b64;

    let t = common::start(|_| {}).await;
    t.create("b", 3, "l2").await;
    let exact = [0.25f32, -0.5, 3.0e-7];
    let rows = json!({"rows": [
        {"id": 1, "vector": "AACAPwAAAAAAAAAA"},
        {"id": 2, "vector": [0.0, 1.0, 0.0]},
        {"id": 3, "vector": b64(&exact)},
    ]});
    assert_eq!(t.ok("POST", "/v1/collections/b/upsert", Some(rows)).await["upserted"], 3);
    let got = t.ok("POST", "/v1/collections/b/get", Some(json!({"ids": [1, 3], "include_vector": true}))).await;
    assert_eq!(got["rows"][0]["vector"], json!([1.0, 0.0, 0.0]));
    let stored: Vec<f32> =
        got["rows"][1]["vector"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    assert_eq!(stored, exact, "base64 must carry the exact f32 values");

    let by_b64 =
        t.ok("POST", "/v1/collections/b/search", Some(json!({"vector": b64(&[0.9, 0.1, 0.0]), "top_k": 2}))).await;
    let by_json = t.ok("POST", "/v1/collections/b/search", Some(json!({"vector": [0.9, 0.1, 0.0], "top_k": 2}))).await;
    assert_eq!(ids(&by_b64, "results"), [json!(1), json!(3)]);
    assert_eq!(by_b64["results"], by_json["results"]);

    let good = json!({"id": 10, "vector": [1.0, 1.0, 1.0]});
    let upsert = |bad: Value| ("POST", "/v1/collections/b/upsert", Some(json!({"rows": [good.clone(), bad]})));
    let search = |v: Value| ("POST", "/v1/collections/b/search", Some(json!({ "vector": v })));
    let cases: Vec<(&str, Call, &str)> = vec![
        ("partial float", upsert(json!({"id": 11, "vector": "AACA"})), "not a multiple of 4"),
        ("wrong dimension", upsert(json!({"id": 11, "vector": b64(&[1.0, 0.0])})), "dimension 2"),
        ("bad character", upsert(json!({"id": 11, "vector": "AACA*wAAAAAAAAAA"})), "invalid base64"),
        ("bad padding", upsert(json!({"id": 11, "vector": "AACAPwAAAAAAAAA"})), "invalid base64"),
        ("non-finite", upsert(json!({"id": 11, "vector": b64(&[1.0, f32::NAN, 0.0])})), "finite"),
        ("search partial float", search(json!("AACAPwA=")), "not a multiple of 4"),
        ("search bad character", search(json!("AAC?PwAAAAAAAAAA")), "invalid base64"),
        ("search wrong dimension", search(json!(b64(&[1.0; 4]))), "dimension 4"),
        ("neither form", search(json!({"x": 1})), "array of numbers or a base64 string"),
    ];
    for (what, (method, path, body), needle) in cases {
        let (status, v) = t.call(method, path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {v}");
        assert_eq!(v["error"]["code"], "invalid_argument", "{what}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{what}: {message:?} lacks {needle:?}");
    }
    assert_eq!(t.rows("b").await, 3, "a refused batch must write nothing");

    // Bodies over the blocking-parse threshold work, and fail cleanly, the same way.
    t.create("big", 256, "l2").await;
    let row =
        |i: u64| json!({"id": i, "vector": (0..256).map(|j| (i * 256 + j) as f32 * 1.234_567e-3).collect::<Vec<_>>()});
    let mut rows: Vec<Value> = (0..100).map(row).collect();
    assert!(json!({ "rows": rows }).to_string().len() >= BLOCKING_PARSE_BYTES);
    rows.push(json!({"id": 100, "vector": "AACA"}));
    let (status, v) = t.call("POST", "/v1/collections/big/upsert", Some(json!({ "rows": rows }))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("rows[100].vector"), "{v}");
    rows.pop();
    assert_eq!(t.ok("POST", "/v1/collections/big/upsert", Some(json!({ "rows": rows }))).await["upserted"], 100);
    assert_eq!(t.rows("big").await, 100);

    // The OpenAPI document says a vector is an array of numbers or a base64 string.
    let doc = t.ok("GET", "/openapi.json", None).await;
    let schema = doc["components"]["schemas"]["VectorInput"].to_string();
    assert!(schema.contains("array") && schema.contains("string"), "{schema}");
    assert_eq!(doc["components"]["schemas"]["Row"]["properties"]["vector"]["$ref"], "#/components/schemas/VectorInput");
    t.server.stop().await;
}

/// The id of the top hit of a search for `vector` at `consistency`.
async fn top_hit(t: &common::TestServer, vector: [f32; 2], consistency: &Value) -> Value {
    let body = json!({"vector": vector, "top_k": 1, "consistency": consistency});
    t.ok("POST", "/v1/collections/v/search", Some(body)).await["results"][0]["id"].clone()
}

/// At the default settings, an acknowledged write is seen by a strong read at once, by a
/// `{"max_staleness_ms": N}` read within N (plus a refresh), and by an eventual read once
/// the background refresher has confirmed the shard (every `eventual_max_lag_ms / 2`,
/// i.e. within 1 s plus a refresh).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledged_write_is_seen_within_each_levels_bound() {
    let t = common::start(|_| {}).await;
    t.create("v", 2, "l2").await;
    t.ok("POST", "/v1/collections/v/upsert", Some(json!({"rows": [{"id": 0, "vector": [0.0, 0.0]}]}))).await;
    assert_eq!(top_hit(&t, [0.0, 0.0], &json!("strong")).await, 0);
    assert_eq!(top_hit(&t, [0.0, 0.0], &json!("eventual")).await, 0, "the strong read refreshed the shards");
    // Each level looks for its own new row; the bound is what the level promises, with
    // slack for a loaded test machine.
    let slack = std::time::Duration::from_millis(1_500);
    let levels = [(json!("strong"), 0), (json!({"max_staleness_ms": 300}), 300), (json!("eventual"), 1_000)];
    for (i, (consistency, bound_ms)) in levels.into_iter().enumerate() {
        let id = 10 + i as u64;
        let row = json!({"rows": [{"id": id, "vector": [id as f32, 0.0]}]});
        t.ok("POST", "/v1/collections/v/upsert", Some(row)).await;
        let acked = std::time::Instant::now();
        let mut reads = 0;
        while top_hit(&t, [id as f32, 0.0], &consistency).await != id {
            reads += 1;
            let waited = acked.elapsed();
            assert!(bound_ms > 0, "a strong read missed an acknowledged write");
            assert!(waited < std::time::Duration::from_millis(bound_ms) + slack, "{consistency}: {waited:?}");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        eprintln!("{consistency}: seen after {:?} ({reads} reads missed it)", acked.elapsed());
    }
    t.server.stop().await;
}

/// A relaxed read answers from the node's in-memory state: with a long
/// `eventual_max_lag_ms` (the background refresher far away), an eventual or loosely bounded
/// search, get and count keep answering the state confirmed by the last strong read, a
/// tight bound refreshes first, and what that refresh found is then served to every level.
#[tokio::test]
async fn relaxed_reads_serve_the_confirmed_state_until_their_bound_passes() {
    let t = common::start(|c| c.query.eventual_max_lag_ms = 600_000).await;
    t.create("v", 2, "l2").await;
    t.ok("POST", "/v1/collections/v/upsert", Some(json!({"rows": [{"id": 0, "vector": [0.0, 0.0]}]}))).await;
    let (eventual, loose, tight) =
        (json!("eventual"), json!({"max_staleness_ms": 600_000}), json!({"max_staleness_ms": 0}));
    assert_eq!(top_hit(&t, [5.0, 0.0], &json!("strong")).await, 0);

    t.ok("POST", "/v1/collections/v/upsert", Some(json!({"rows": [{"id": 5, "vector": [5.0, 0.0]}]}))).await;
    let count = |c: &Value| json!({"consistency": c});
    let get = |c: &Value| json!({"ids": [5], "consistency": c});
    for relaxed in [&eventual, &loose] {
        assert_eq!(top_hit(&t, [5.0, 0.0], relaxed).await, 0, "{relaxed} search");
        assert_eq!(t.ok("POST", "/v1/collections/v/count", Some(count(relaxed))).await["count"], 1, "{relaxed}");
        assert_eq!(t.ok("POST", "/v1/collections/v/get", Some(get(relaxed))).await["rows"], json!([]), "{relaxed}");
    }
    assert_eq!(top_hit(&t, [5.0, 0.0], &tight).await, 5, "a bound of 0 ms refreshes first");
    assert_eq!(t.ok("POST", "/v1/collections/v/count", Some(count(&tight))).await["count"], 2);
    for relaxed in [&eventual, &loose] {
        assert_eq!(top_hit(&t, [5.0, 0.0], relaxed).await, 5, "{relaxed} after the refresh");
        assert_eq!(t.ok("POST", "/v1/collections/v/get", Some(get(relaxed))).await["rows"][0]["id"], 5);
    }
    t.server.stop().await;
}

#[tokio::test]
async fn a_too_large_body_and_a_wrong_method_get_json_errors_that_say_why() {
    let t = common::start(|c| c.max_request_bytes = 2_000).await;
    t.create("c", 2, "l2").await;
    let rows: Vec<Value> = (0..100).map(|i| json!({"id": i, "vector": [1.0, 2.0]})).collect();
    let (status, v) = t.call("POST", "/v1/collections/c/upsert", Some(json!({ "rows": rows }))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{v}");
    assert_eq!(v["error"]["code"], "payload_too_large", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("limit of 2000 bytes (`max_request_bytes`)"), "{message}");
    assert_eq!(t.rows("c").await, 0, "a refused body must write nothing");

    let req = Request::delete("/v1/collections/c/search").body(Body::empty()).unwrap();
    let resp = t.server.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers().get("allow").map(|v| v.to_str().unwrap()), Some("POST"), "{:?}", resp.headers());
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "method_not_allowed", "{v}");
    t.server.stop().await;
}
