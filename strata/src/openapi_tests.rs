//! The OpenAPI document against OpenAPI's rules that a schema validator does not check,
//! against the rules this project sets itself (every response described, every error with
//! the `ErrorBody` schema) and against the router (every route documented, every
//! documented route served). `scripts/check_openapi.sh` adds the validator and a generated
//! client.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use strata_api::MAX_BULK_ROWS;
use strata_rpc::MAX_SCAN_ROWS;
use strata_types::consistency::MAX_STALENESS_MS;
use strata_types::{MAX_DIMENSION, MAX_SHARDS, MAX_STRING_ID_BYTES};
use tower::ServiceExt;

use super::document;
use crate::config::Config;
use crate::standalone::Standalone;

const ERROR_BODY: &str = "#/components/schemas/ErrorBody";
const METHODS: [&str; 5] = ["get", "post", "put", "delete", "patch"];

/// Operations that take no input and never answer with the error body (`/readyz`'s 503 is
/// plain text): no error response to document with it.
const INFALLIBLE: [&str; 7] = [
    "GET /healthz",
    "GET /readyz",
    "GET /metrics",
    "GET /openapi.json",
    "GET /ui",
    "GET /v1/node",
    "GET /v1/cluster/nodes",
];

fn default_document() -> Value {
    document(&Default::default(), &Default::default())
}

/// Every operation as ("METHOD /path", operation).
fn operations(doc: &Value) -> Vec<(String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            assert!(METHODS.contains(&method.as_str()), "{path}: unexpected key {method}");
            out.push((format!("{} {path}", method.to_uppercase()), op));
        }
    }
    out
}

/// Every `$ref` in the document.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

fn error_body(response: &Value) -> bool {
    response["content"]["application/json"]["schema"]["$ref"] == ERROR_BODY
}

#[test]
fn every_operation_is_described_and_every_reference_resolves() {
    let doc = default_document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    for (op_name, op) in operations(&doc) {
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{op_name}: no operationId"));
        assert!(ids.insert(id.to_owned()), "{op_name}: operationId {id} is used twice");
        assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{op_name}: no summary");
        assert_eq!(op["tags"].as_array().map(Vec::len), Some(1), "{op_name}: one tag");
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{op_name}: no responses"));
        assert!(responses.keys().any(|s| s.starts_with('2')), "{op_name}: no success response");
        for (status, response) in responses {
            let description = response["description"].as_str().unwrap_or_default();
            assert!(!description.trim().is_empty(), "{op_name} {status}: no description");
        }
        // Path parameters: exactly those of the template.
        let path = op_name.split_once(' ').unwrap().1;
        let in_template: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let declared: BTreeSet<&str> =
            params.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect();
        assert_eq!(in_template, declared, "{op_name}: path parameters");
        for p in &params {
            assert!(p["description"].as_str().is_some_and(|d| !d.is_empty()), "{op_name}: {p} has no description");
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(all.contains(&ERROR_BODY));
    for r in all {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("{r}: not a local reference"));
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
}

#[test]
fn every_operation_documents_its_errors_with_the_error_body() {
    let doc = default_document();
    for (op_name, op) in operations(&doc) {
        let responses = op["responses"].as_object().unwrap();
        let errors: Vec<(&String, &Value)> =
            responses.iter().filter(|(s, _)| s.starts_with('4') || s.starts_with('5')).collect();
        // A JSON error is always the error body (`/readyz`'s 503 is plain text).
        for (status, response) in &errors {
            if response["content"].get("application/json").is_some() {
                assert!(error_body(response), "{op_name} {status}: not the error body");
            }
        }
        let takes_input = op.get("requestBody").is_some() || op["parameters"].as_array().is_some_and(|p| !p.is_empty());
        if INFALLIBLE.contains(&op_name.as_str()) {
            assert!(!takes_input, "{op_name} takes input, so it can be refused");
            continue;
        }
        assert!(errors.iter().any(|(_, r)| error_body(r)), "{op_name}: no error response with the error body");
        if takes_input {
            let refusal = errors.iter().any(|(s, r)| s.starts_with('4') && error_body(r));
            assert!(refusal, "{op_name}: takes input but documents no 4xx with the error body");
        }
        if op.get("requestBody").is_some() {
            for status in ["400", "413", "415"] {
                assert!(responses.get(status).is_some_and(error_body), "{op_name}: a JSON body can get {status}");
            }
        }
        for status in ["429", "503"] {
            if let Some(response) = responses.get(status) {
                assert!(response["headers"].get("Retry-After").is_some(), "{op_name} {status}: Retry-After");
            }
        }
    }
}

/// The routes the router sets up, read from the source of every router (axum cannot list
/// them): ("METHOD /path").
fn routes_in_source() -> BTreeSet<String> {
    let sources = [
        include_str!("http.rs"),
        include_str!("admin.rs"),
        include_str!("ui.rs"),
        include_str!("../../ingest-node/src/http.rs"),
        include_str!("../../query-node/src/http.rs"),
    ];
    let mut routes = BTreeSet::new();
    for source in sources {
        for (_, rest) in source.match_indices(".route(\"").map(|(i, _)| source.split_at(i + ".route(\"".len())) {
            let (path, rest) = rest.split_once('"').unwrap();
            // The method router: up to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let end = rest
                .char_indices()
                .find_map(|(i, c)| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    (depth == 0).then_some(i)
                })
                .unwrap();
            let methods = &rest[..end];
            let mut found = 0;
            for method in METHODS {
                let call = format!("{method}(");
                let called = methods.match_indices(&call).any(|(i, _)| {
                    let before = methods[..i].chars().next_back();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                });
                if called {
                    routes.insert(format!("{} {path}", method.to_uppercase()));
                    found += 1;
                }
            }
            assert!(found > 0, "no method found for route {path}: {methods}");
        }
    }
    routes
}

#[test]
fn every_route_the_router_sets_up_is_documented() {
    let routes = routes_in_source();
    assert!(routes.len() > 20, "{routes:?}");
    let documented: BTreeSet<String> = operations(&default_document()).into_iter().map(|(name, _)| name).collect();
    assert_eq!(routes, documented, "routes (left) and documented operations (right) differ");
}

#[test]
fn fixed_bounds_are_the_ones_the_code_enforces() {
    let doc = default_document();
    let schemas = &doc["components"]["schemas"];
    let field = |schema: &str, property: &str| &schemas[schema]["properties"][property];
    let create = |p| field("CreateCollectionRequest", p);
    assert_eq!((&create("dimension")["minimum"], &create("dimension")["maximum"]), (&1.into(), &MAX_DIMENSION.into()));
    assert_eq!((&create("shards")["minimum"], &create("shards")["maximum"]), (&1.into(), &MAX_SHARDS.into()));
    assert_eq!(field("ScanRequest", "limit")["maximum"], MAX_SCAN_ROWS);
    assert_eq!(field("QueryRequest", "limit")["maximum"], MAX_SCAN_ROWS);
    assert_eq!(field("BulkRequest", "rows")["maxItems"], MAX_BULK_ROWS);
    assert_eq!(field("UpsertRequest", "rows")["minItems"], 1);
    assert_eq!(schemas["Consistency"]["oneOf"][1]["$ref"], "#/components/schemas/BoundedStaleness");
    assert_eq!(schemas["BoundedStaleness"]["additionalProperties"], false);
    let bounded = &schemas["BoundedStaleness"]["properties"]["max_staleness_ms"];
    assert_eq!(bounded["maximum"], MAX_STALENESS_MS, "{bounded}");
    let string_id = &schemas["RowId"]["oneOf"][1];
    assert_eq!((&string_id["minLength"], &string_id["maxLength"]), (&1.into(), &MAX_STRING_ID_BYTES.into()));
    let attr_type = &schemas["AttrType"];
    let names = attr_type["x-enum-varnames"].as_array().map(Vec::len);
    assert_eq!(names, attr_type["enum"].as_array().map(Vec::len), "one generator name per value: {attr_type}");
    let hnsw = &schemas["HnswParams"]["properties"];
    assert_eq!((&hnsw["m"]["minimum"], &hnsw["m"]["maximum"]), (&4.into(), &64.into()));
    // The configurable ones, at their defaults.
    let (ingest, query) = (strata_ingest::IngestConfig::default(), strata_query::QueryConfig::default());
    assert_eq!(field("SearchRequest", "top_k")["maximum"], query.max_top_k);
    assert_eq!(field("SearchRequest", "ef")["maximum"], query.max_ef);
    assert_eq!(field("GetRequest", "ids")["maxItems"], query.max_get_ids);
    for schema in ["DeleteRequest", "UpdateRequest"] {
        assert_eq!(field(schema, "ids")["maxItems"], ingest.max_batch_rows, "{schema}");
    }
}

/// A documented operation the router does not serve would hit the fallback (404 "no
/// route") or the 405 handler; a node serves the document with its own limits.
#[tokio::test]
async fn every_documented_operation_is_served_and_the_served_document_has_the_nodes_limits() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config { data_dir: dir.path().to_path_buf(), ..Default::default() };
    config.cache.memory_bytes = 64 << 20;
    config.cache.disk_bytes = 64 << 20;
    config.query.max_top_k = 77;
    config.ingest.max_batch_rows = 123;
    let server = Standalone::start(config).await.unwrap();
    let call = |method: &str, path: &str| {
        let req = Request::builder().method(method).uri(path).body(Body::empty()).unwrap();
        let router = server.router.clone();
        async move {
            let resp = router.oneshot(req).await.unwrap();
            let status = resp.status();
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
            (status, serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null))
        }
    };
    let (status, served) = call("GET", "/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let schemas = &served["components"]["schemas"];
    assert_eq!(schemas["SearchRequest"]["properties"]["top_k"]["maximum"], 77);
    assert_eq!(schemas["UpsertRequest"]["properties"]["rows"]["maxItems"], 123);
    for (op_name, _) in operations(&served) {
        let (method, path) = op_name.split_once(' ').unwrap();
        let path = path.replace("{name}", "missing").replace("{id}", "missing");
        let (status, body) = call(method, &path).await;
        let fallback = status == StatusCode::METHOD_NOT_ALLOWED
            || body["error"]["message"].as_str().is_some_and(|m| m.starts_with("no route"));
        assert!(!fallback, "{op_name} is documented but not served: {status} {body}");
    }
    server.stop().await;
}

/// API keys are in the document: the bearer scheme, a 401 and a 403 on every operation a
/// key guards, and no security requirement on the paths open by default.
#[test]
fn api_keys_are_documented() {
    let doc = default_document();
    assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
    let public = crate::auth::AuthConfig::default().public_paths;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in METHODS {
            let Some(operation) = item.get(method) else { continue };
            if public.contains(path) {
                assert_eq!(operation["security"], serde_json::json!([]), "{method} {path} is public");
                continue;
            }
            for status in ["401", "403"] {
                let schema = &operation["responses"][status]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema, ERROR_BODY, "{method} {path} lacks its {status}");
            }
        }
    }
}
