//! The OpenAPI 3.1 document: `GET /openapi.json` on every node, `strata openapi` on the
//! command line.
//!
//! It merges each part's `#[derive(OpenApi)]` (the ingest and query roles' REST API, the
//! cluster admin API, the process's own routes in [`crate::http`]), then states the limits
//! that come from configuration ([`limits`]): a node serves its own (`max_top_k`,
//! `max_batch_rows`, …), `strata openapi` prints the defaults. Every operation documents
//! its error responses with the `ErrorBody` schema (`strata_api::openapi`); the tests in
//! `openapi_tests.rs` hold the document to that, to OpenAPI's own rules and to the router,
//! and `scripts/check_openapi.sh` validates it and drives a generated client against a
//! real server.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use strata_ingest::IngestConfig;
use strata_query::QueryConfig;
use utoipa::OpenApi;

/// This route, documented.
#[derive(OpenApi)]
#[openapi(paths(openapi))]
struct DocumentApi;

/// The document for a node with these settings.
pub fn document(ingest: &IngestConfig, query: &QueryConfig) -> Value {
    let mut doc = strata_ingest::http::IngestApi::openapi();
    doc.merge(strata_query::http::QueryApi::openapi());
    doc.merge(crate::admin::AdminApi::openapi());
    doc.merge(crate::http::NodeApi::openapi());
    doc.merge(DocumentApi::openapi());
    doc.info.title = "Strata".to_owned();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.info.description = Some(
        "Distributed vector search on object storage. Every failed request answers \
         `{\"error\": {\"code\", \"message\"}}` (schema `ErrorBody`)."
            .to_owned(),
    );
    let mut doc = serde_json::to_value(doc).expect("the OpenAPI document serializes");
    limits(&mut doc, ingest, query);
    rules::apply(&mut doc);
    api_keys(&mut doc);
    // Names for code generators, which would otherwise make `string` and `string[]` both
    // `STRING` (utoipa cannot put an extension on an enum).
    doc["components"]["schemas"]["AttrType"]["x-enum-varnames"] =
        json!(["bool", "int", "float", "string", "string_list"]);
    doc["tags"] = json!([
        {"name": "collections", "description": "Create, list, describe, flush and drop collections."},
        {"name": "rows", "description": "Write rows (upsert, delete, update, bulk) and read them (search, get, query, count, scan)."},
        {"name": "cluster", "description": "The cluster admin API: members, shard assignment, drain and removal."},
        {"name": "node", "description": "This process: health, readiness, metrics, identity, this document and the admin page."},
    ]);
    doc
}

/// Sets the bounds that come from configuration on the request schemas (the schemas
/// state the fixed ones themselves).
fn limits(doc: &mut Value, ingest: &IngestConfig, query: &QueryConfig) {
    let bounds = [
        ("SearchRequest", "top_k", "maximum", query.max_top_k),
        ("SearchRequest", "ef", "maximum", query.max_ef),
        ("GetRequest", "ids", "maxItems", query.max_get_ids),
        ("UpsertRequest", "rows", "maxItems", ingest.max_batch_rows),
        ("DeleteRequest", "ids", "maxItems", ingest.max_batch_rows),
        ("UpdateRequest", "ids", "maxItems", ingest.max_batch_rows),
    ];
    for (schema, property, keyword, value) in bounds {
        let pointer = format!("/components/schemas/{schema}/properties/{property}");
        let field = doc.pointer_mut(&pointer).unwrap_or_else(|| panic!("the document has no {pointer}"));
        field[keyword] = json!(value);
    }
}

/// API keys (docs/security.md): the bearer scheme, optional at the document's level (a
/// node on loopback may run without keys), and the 401 and 403 of every operation that is
/// not public by default (`auth.public_paths`).
fn api_keys(doc: &mut Value) {
    doc["components"]["securitySchemes"]["api_key"] = json!({
        "type": "http",
        "scheme": "bearer",
        "description": "An API key made by `strata keys new`, sent as `Authorization: Bearer <token>`. \
                        Needed whenever the node has keys configured (always beyond loopback)."
    });
    doc["security"] = json!([{"api_key": []}, {}]);
    let public = crate::auth::AuthConfig::default().public_paths;
    let error = |description: &str| {
        json!({"description": description,
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}})
    };
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let Some(operations) = item.as_object_mut() else { continue };
        for (_method, operation) in operations.iter_mut() {
            if public.contains(path) {
                operation["security"] = json!([]);
                continue;
            }
            let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) else { continue };
            responses.insert(
                "401".to_owned(),
                error("The node checks API keys and the request has none, or an unknown one (`unauthenticated`)."),
            );
            responses.insert(
                "403".to_owned(),
                error("The API key's role or collections do not reach this operation (`permission_denied`)."),
            );
        }
    }
}

/// The document a node serves, serialized once.
pub(crate) fn served(ingest: &IngestConfig, query: &QueryConfig) -> Bytes {
    Bytes::from(serde_json::to_vec(&document(ingest, query)).expect("JSON serializes"))
}

/// This OpenAPI document, with this node's limits.
#[utoipa::path(get, path = "/openapi.json", tag = "node",
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json", body = Object)))]
pub(crate) async fn openapi(State(document): State<Bytes>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document)
}

#[path = "openapi_rules.rs"]
mod rules;

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod tests;
