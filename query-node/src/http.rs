//! REST endpoints of the query role: list and describe collections, search, get rows.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use strata_shared::api::CollectionInfo;
use strata_shared::http::{ApiJson, ApiResult, ErrorBody};
use strata_shared::types::RowId;
use strata_shared::vector_encoding::VectorInput;
use utoipa::{OpenApi, ToSchema};

use crate::QueryNode;
use crate::api::{
    CollectionDescription, CollectionStats, Consistency, ResultRow, SearchRequest, SearchResponse, ShardInfo,
};

/// Body of `POST /v1/collections/{name}/get`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetRequest {
    pub ids: Vec<RowId>,
    #[serde(default)]
    pub include_vector: bool,
    #[serde(default)]
    pub include_attributes: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GetResponse {
    /// The rows that exist, in request order.
    pub rows: Vec<ResultRow>,
}

/// Body of `POST /v1/collections/{name}/scan`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    pub shard: u32,
    /// Continue after this id (the previous page's `next_after`); absent for the first page.
    #[serde(default)]
    pub after: Option<RowId>,
    /// Rows per page, 1..=10,000. Default 1,000.
    #[serde(default = "default_scan_limit")]
    pub limit: u32,
}

fn default_scan_limit() -> u32 {
    1000
}

/// One scanned row: always with its vector; attributes when it has any.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScanRow {
    pub id: RowId,
    pub vector: Vec<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<strata_shared::types::Attributes>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScanResponse {
    /// Live rows of the shard ordered by id (integers before strings).
    pub rows: Vec<ScanRow>,
    /// Pass as `after` for the next page; null when the shard has no more rows.
    pub next_after: Option<RowId>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ListResponse {
    pub collections: Vec<CollectionInfo>,
}

#[derive(OpenApi)]
#[openapi(
    paths(list_collections, describe_collection, search, get_rows, scan),
    components(schemas(
        GetRequest,
        GetResponse,
        ScanRequest,
        ScanRow,
        ScanResponse,
        ListResponse,
        SearchRequest,
        VectorInput,
        SearchResponse,
        ResultRow,
        Consistency,
        CollectionDescription,
        CollectionStats,
        ShardInfo,
        CollectionInfo,
        ErrorBody
    ))
)]
pub struct QueryApi;

pub fn router(node: QueryNode) -> Router {
    Router::new()
        .route("/v1/collections", get(list_collections))
        .route("/v1/collections/{name}", get(describe_collection))
        .route("/v1/collections/{name}/search", post(search))
        .route("/v1/collections/{name}/get", post(get_rows))
        .route("/v1/collections/{name}/scan", post(scan))
        .with_state(node)
}

/// List active collections.
#[utoipa::path(get, path = "/v1/collections", responses((status = 200, body = ListResponse)))]
async fn list_collections(State(node): State<QueryNode>) -> ApiResult<Json<ListResponse>> {
    Ok(Json(ListResponse { collections: node.list().await? }))
}

/// Describe a collection: definition, rows, segments, bytes and WAL backlog per shard.
#[utoipa::path(get, path = "/v1/collections/{name}", params(("name" = String, Path)),
    responses((status = 200, body = CollectionDescription), (status = 404, body = ErrorBody)))]
async fn describe_collection(
    State(node): State<QueryNode>,
    Path(name): Path<String>,
) -> ApiResult<Json<CollectionDescription>> {
    Ok(Json(node.describe(&name).await?))
}

/// Nearest-neighbour search.
#[utoipa::path(post, path = "/v1/collections/{name}/search", params(("name" = String, Path)), request_body = SearchRequest,
    responses((status = 200, body = SearchResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn search(
    State(node): State<QueryNode>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SearchRequest>,
) -> ApiResult<Json<SearchResponse>> {
    Ok(Json(node.search(&name, req).await?))
}

/// Fetch rows by id (strongly consistent).
#[utoipa::path(post, path = "/v1/collections/{name}/get", params(("name" = String, Path)), request_body = GetRequest,
    responses((status = 200, body = GetResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_rows(
    State(node): State<QueryNode>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<GetRequest>,
) -> ApiResult<Json<GetResponse>> {
    let rows = node.get(&name, &req.ids, req.include_vector, req.include_attributes).await?;
    Ok(Json(GetResponse { rows }))
}

/// Page through the live rows of one shard in id order (strongly consistent per page);
/// used by `strata export`. Rows deleted or replaced between pages are seen as of each
/// page's read.
#[utoipa::path(post, path = "/v1/collections/{name}/scan", params(("name" = String, Path)), request_body = ScanRequest,
    responses((status = 200, body = ScanResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn scan(
    State(node): State<QueryNode>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<ScanRequest>,
) -> ApiResult<Json<ScanResponse>> {
    let page = node.scan(&name, req.shard, req.after, req.limit).await?;
    let rows = page
        .rows
        .into_iter()
        .map(|r| ScanRow { id: r.id, vector: r.vector.unwrap_or_default(), attributes: r.attributes })
        .collect();
    Ok(Json(ScanResponse { rows, next_after: page.next_after }))
}
