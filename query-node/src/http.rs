//! REST endpoints of the query role: list and describe collections, search, get rows.

use axum::Extension;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use strata_api::openapi::{JsonBodyErrors, NOT_FOUND, ServerErrors};
use strata_api::vector_encoding::VectorInput;
use strata_api::{
    Access, ApiJson, ApiResult, BoundedStaleness, CollectionDescription, CollectionInfo, CollectionStats,
    ConsistencyLevel, ConsistencySchema, CountRequest, CountResponse, ErrorBody, FilterSchema, GetRequest, GetResponse,
    ListResponse, QueryRequest, QueryResponse, ResultRow, ScanRequest, ScanResponse, ScanRow, SearchRequest,
    SearchResponse, ShardInfo,
};
use strata_types::filter::AttrType;
use utoipa::OpenApi;

use crate::QueryNode;

#[derive(OpenApi)]
#[openapi(
    paths(list_collections, describe_collection, search, get_rows, scan, query, count),
    components(schemas(
        QueryRequest,
        QueryResponse,
        CountRequest,
        CountResponse,
        AttrType,
        FilterSchema,
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
        ConsistencySchema,
        ConsistencyLevel,
        BoundedStaleness,
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
        .route("/v1/collections/{name}/query", post(query))
        .route("/v1/collections/{name}/count", post(count))
        .with_state(node)
}

/// List active collections (with an API key limited to some collections, only those).
#[utoipa::path(get, path = "/v1/collections", tag = "collections",
    responses((status = 200, description = "the active collections", body = ListResponse), ServerErrors))]
async fn list_collections(
    State(node): State<QueryNode>,
    access: Option<Extension<Access>>,
) -> ApiResult<Json<ListResponse>> {
    let mut collections = node.list().await?;
    collections.retain(|c| Access::may_see(access.as_deref(), &c.name));
    Ok(Json(ListResponse { collections }))
}

/// Describe a collection: definition, rows, segments, bytes and WAL backlog per shard.
#[utoipa::path(get, path = "/v1/collections/{name}", tag = "collections", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, description = "the collection's definition and statistics", body = CollectionDescription),
        (status = 404, description = NOT_FOUND, body = ErrorBody), ServerErrors))]
async fn describe_collection(
    State(node): State<QueryNode>,
    Path(name): Path<String>,
) -> ApiResult<Json<CollectionDescription>> {
    Ok(Json(node.describe(&name).await?))
}

/// Nearest-neighbour search.
#[utoipa::path(post, path = "/v1/collections/{name}/search", tag = "rows", params(("name" = String, Path, description = "collection name")), request_body = SearchRequest,
    responses((status = 200, description = "the nearest rows, best first", body = SearchResponse), JsonBodyErrors,
        (status = 404, description = NOT_FOUND, body = ErrorBody), ServerErrors))]
async fn search(
    State(node): State<QueryNode>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SearchRequest>,
) -> ApiResult<Json<SearchResponse>> {
    Ok(Json(node.search(&name, req).await?))
}

/// Fetch rows by id, as fresh as `consistency` asks (default strong).
#[utoipa::path(post, path = "/v1/collections/{name}/get", tag = "rows", params(("name" = String, Path, description = "collection name")), request_body = GetRequest,
    responses((status = 200, description = "the rows that exist, in request order", body = GetResponse), JsonBodyErrors,
        (status = 404, description = NOT_FOUND, body = ErrorBody), ServerErrors))]
async fn get_rows(
    State(node): State<QueryNode>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<GetRequest>,
) -> ApiResult<Json<GetResponse>> {
    let rows = node.get(&name, req).await?;
    Ok(Json(GetResponse { rows }))
}

/// Page through the live rows of one shard in id order (strongly consistent per page);
/// used by `strata export`. Rows deleted or replaced between pages are seen as of each
/// page's read.
#[utoipa::path(post, path = "/v1/collections/{name}/scan", tag = "rows", params(("name" = String, Path, description = "collection name")), request_body = ScanRequest,
    responses((status = 200, description = "one page of the shard's rows", body = ScanResponse), JsonBodyErrors,
        (status = 404, description = NOT_FOUND, body = ErrorBody), ServerErrors))]
async fn scan(
    State(node): State<QueryNode>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<ScanRequest>,
) -> ApiResult<Json<ScanResponse>> {
    let page = node.scan(&name, req).await?;
    let rows = page
        .rows
        .into_iter()
        .map(|r| ScanRow { id: r.id, vector: r.vector.unwrap_or_default(), attributes: r.attributes })
        .collect();
    Ok(Json(ScanResponse { rows, next_after: page.next_after }))
}

/// Rows matching a filter, across every shard, a page at a time (strongly consistent per
/// page). Pass `next_cursor` back as `cursor` for the next page.
#[utoipa::path(post, path = "/v1/collections/{name}/query", tag = "rows", params(("name" = String, Path, description = "collection name")), request_body = QueryRequest,
    responses((status = 200, description = "one page of matching rows", body = QueryResponse), JsonBodyErrors,
        (status = 404, description = NOT_FOUND, body = ErrorBody), ServerErrors))]
async fn query(
    State(node): State<QueryNode>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<QueryRequest>,
) -> ApiResult<Json<QueryResponse>> {
    Ok(Json(node.query(&name, req).await?))
}

/// Count the rows matching a filter (every row without one).
#[utoipa::path(post, path = "/v1/collections/{name}/count", tag = "rows", params(("name" = String, Path, description = "collection name")), request_body = CountRequest,
    responses((status = 200, description = "the number of matching rows", body = CountResponse), JsonBodyErrors,
        (status = 404, description = NOT_FOUND, body = ErrorBody), ServerErrors))]
async fn count(
    State(node): State<QueryNode>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<CountRequest>,
) -> ApiResult<Json<CountResponse>> {
    Ok(Json(node.count(&name, req).await?))
}
