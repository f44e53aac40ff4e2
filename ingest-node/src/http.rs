//! REST endpoints of the ingest role: collection create/drop, upsert, delete, flush.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};
use strata_api::openapi::{JsonBodyErrors, NOT_FOUND, ServerErrors, WriteErrors};
use strata_api::vector_encoding::VectorInput;
use strata_api::{
    ApiJson, ApiResult, BulkRequest, BulkResponse, BulkRow, CollectionInfo, CreateCollectionRequest, DeleteRequest,
    DeleteResponse, DropResponse, ErrorBody, FilterSchema, FlushResponse, UpdateRequest, UpdateResponse, UpsertRequest,
    UpsertResponse, UpsertRow,
};
use strata_storage::catalog::NewCollection;
use strata_types::Error;
use strata_types::filter::AttrType;
use strata_types::{HnswParams, Metric, Row, RowId};
use utoipa::OpenApi;

use crate::IngestNode;

#[derive(OpenApi)]
#[openapi(
    paths(create_collection, drop_collection, upsert, delete_rows, update_rows, flush, crate::bulk::bulk_import),
    components(schemas(
        CreateCollectionRequest,
        UpsertRequest,
        UpsertResponse,
        DeleteRequest,
        DeleteResponse,
        UpdateRequest,
        UpdateResponse,
        AttrType,
        FilterSchema,
        FlushResponse,
        DropResponse,
        BulkRequest,
        BulkRow,
        BulkResponse,
        CollectionInfo,
        ErrorBody,
        UpsertRow,
        VectorInput,
        RowId,
        Metric,
        HnswParams
    ))
)]
pub struct IngestApi;

/// The ingest role's routes.
pub fn router(node: IngestNode) -> Router {
    Router::new()
        .route("/v1/collections", post(create_collection))
        .route("/v1/collections/{name}", delete(drop_collection))
        .route("/v1/collections/{name}/upsert", post(upsert))
        .route("/v1/collections/{name}/delete", post(delete_rows))
        .route("/v1/collections/{name}/update", post(update_rows))
        .route("/v1/collections/{name}/flush", post(flush))
        .route("/v1/collections/{name}/bulk", post(crate::bulk::bulk_import))
        .with_state(node)
}

/// Create a collection.
#[utoipa::path(post, path = "/v1/collections", tag = "collections", request_body = CreateCollectionRequest,
    responses((status = 201, description = "the collection, created", body = CollectionInfo), JsonBodyErrors,
        (status = 409, description = "an active collection already has this name", body = ErrorBody), ServerErrors))]
async fn create_collection(
    State(node): State<IngestNode>,
    ApiJson(req): ApiJson<CreateCollectionRequest>,
) -> ApiResult<(StatusCode, Json<CollectionInfo>)> {
    let new = NewCollection {
        name: req.name,
        dimension: req.dimension,
        metric: req.metric,
        shards: req.shards,
        replication: req.replication,
        hnsw: req.hnsw,
        attributes: req.attributes,
    };
    let def = node.create_collection(new).await?;
    Ok((StatusCode::CREATED, Json(CollectionInfo::from(&def))))
}

/// Drop a collection and (after the garbage-collection grace period) its data.
#[utoipa::path(delete, path = "/v1/collections/{name}", tag = "collections", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, description = "dropped: gone from every read at once", body = DropResponse),
        (status = 404, description = NOT_FOUND, body = ErrorBody), ServerErrors))]
async fn drop_collection(State(node): State<IngestNode>, Path(name): Path<String>) -> ApiResult<Json<DropResponse>> {
    let def = node.drop_collection(&name).await?;
    Ok(Json(DropResponse { dropped: def.name }))
}

/// Insert or replace rows. Acknowledged once durable in object storage.
///
/// The batch is split by shard; each shard's part commits atomically (all its rows or
/// none) and independently of the others. An error after some parts committed lists them
/// in `error.committed_shards` and `error.committed_ids` (durable and visible); retrying
/// the whole batch is safe, since writes are idempotent.
#[utoipa::path(post, path = "/v1/collections/{name}/upsert", tag = "rows", params(("name" = String, Path, description = "collection name")), request_body = UpsertRequest,
    responses((status = 200, description = "every row is durable and visible", body = UpsertResponse), JsonBodyErrors,
        (status = 404, description = NOT_FOUND, body = ErrorBody), ServerErrors, WriteErrors))]
async fn upsert(
    State(node): State<IngestNode>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UpsertRequest>,
) -> ApiResult<Json<UpsertResponse>> {
    let upserted = node.upsert(&name, req.rows.into_iter().map(Row::from).collect()).await?;
    Ok(Json(UpsertResponse { upserted }))
}

/// Delete rows by id, or every row matching a filter. Acknowledged once durable in object
/// storage.
///
/// The batch is split by shard; each shard's part commits atomically (all its rows or
/// none) and independently of the others. An error after some parts committed lists them
/// in `error.committed_shards` and `error.committed_ids` (durable and visible); retrying
/// the whole batch is safe, since writes are idempotent.
#[utoipa::path(post, path = "/v1/collections/{name}/delete", tag = "rows", params(("name" = String, Path, description = "collection name")), request_body = DeleteRequest,
    responses((status = 200, description = "the deletes are durable and visible", body = DeleteResponse), JsonBodyErrors,
        (status = 404, description = NOT_FOUND, body = ErrorBody), ServerErrors, WriteErrors))]
async fn delete_rows(
    State(node): State<IngestNode>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<DeleteRequest>,
) -> ApiResult<Json<DeleteResponse>> {
    let deleted = match (req.ids, req.filter) {
        (Some(ids), None) => node.delete(&name, ids).await?,
        (None, Some(filter)) => node.delete_where(&name, &filter).await? as usize,
        _ => return Err(Error::invalid("give exactly one of ids and filter").into()),
    };
    Ok(Json(DeleteResponse { deleted }))
}

/// Set or remove attributes of rows selected by id or filter, keeping their vectors.
/// Acknowledged once durable in object storage.
///
/// The batch is split by shard; each shard's part commits atomically (all its rows or
/// none) and independently of the others. An error after some parts committed lists them
/// in `error.committed_shards` and `error.committed_ids` (durable and visible); retrying
/// the whole batch is safe, since writes are idempotent.
#[utoipa::path(post, path = "/v1/collections/{name}/update", tag = "rows", params(("name" = String, Path, description = "collection name")), request_body = UpdateRequest,
    responses((status = 200, description = "the changes are durable and visible", body = UpdateResponse), JsonBodyErrors,
        (status = 404, description = NOT_FOUND, body = ErrorBody), ServerErrors, WriteErrors))]
async fn update_rows(
    State(node): State<IngestNode>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UpdateRequest>,
) -> ApiResult<Json<UpdateResponse>> {
    let updated = node.update(&name, req).await? as usize;
    Ok(Json(UpdateResponse { updated }))
}

/// Flush every shard's WAL tail into segments; returns when done.
#[utoipa::path(post, path = "/v1/collections/{name}/flush", tag = "collections", params(("name" = String, Path, description = "collection name")),
    responses((status = 200, description = "every write acknowledged before the request is in segments", body = FlushResponse),
        (status = 404, description = NOT_FOUND, body = ErrorBody), ServerErrors))]
async fn flush(State(node): State<IngestNode>, Path(name): Path<String>) -> ApiResult<Json<FlushResponse>> {
    node.flush(&name).await?;
    Ok(Json(FlushResponse { flushed: true }))
}
