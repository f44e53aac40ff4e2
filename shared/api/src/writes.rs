//! Writes in the REST API: upsert, delete, flush and bulk import.

use serde::{Deserialize, Serialize};
use strata_types::{Attributes, Row, RowId};
use utoipa::ToSchema;

/// One row of an upsert.
#[derive(Clone, Debug, PartialEq, Deserialize, ToSchema)]
#[schema(as = Row)]
#[serde(deny_unknown_fields)]
pub struct UpsertRow {
    pub id: RowId,
    /// An array of numbers, or base64 of the little-endian f32 bytes (see
    /// [`crate::vector_encoding`]).
    #[serde(deserialize_with = "crate::vector_encoding::deserialize")]
    #[schema(value_type = crate::vector_encoding::VectorInput)]
    pub vector: Vec<f32>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Attributes>,
}

impl From<UpsertRow> for Row {
    fn from(r: UpsertRow) -> Row {
        Row { id: r.id, vector: r.vector, attributes: r.attributes }
    }
}

/// Body of `POST /v1/collections/{name}/upsert`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpsertRequest {
    /// Rows to insert or replace: 1 to `ingest.max_batch_rows` (default 10,000), unique ids.
    #[schema(min_items = 1)]
    pub rows: Vec<UpsertRow>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UpsertResponse {
    /// Rows durably written.
    pub upserted: usize,
}

/// Body of `POST /v1/collections/{name}/delete`: `ids` or `filter`, not both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    /// Ids to delete: 1 to `ingest.max_batch_rows` (default 10,000), unique; unknown ids
    /// are ignored.
    #[serde(default)]
    #[schema(min_items = 1)]
    pub ids: Option<Vec<RowId>>,
    /// Delete every row matching this filter at the time of the request (rows written
    /// after it are kept, even if they match).
    #[serde(default)]
    #[schema(value_type = Option<crate::FilterSchema>)]
    pub filter: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeleteResponse {
    /// By ids: the ids given. By filter: the rows that matched and were deleted.
    pub deleted: usize,
}

/// Body of `POST /v1/collections/{name}/update`: changes attributes of existing rows
/// without resending their vectors. `ids` or `filter`, not both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    /// Rows to update: 1 to `ingest.max_batch_rows` (default 10,000) ids; ids that do not
    /// exist are skipped.
    #[serde(default)]
    #[schema(min_items = 1)]
    pub ids: Option<Vec<RowId>>,
    /// Update every row matching this filter at the time of the request.
    #[serde(default)]
    #[schema(value_type = Option<crate::FilterSchema>)]
    pub filter: Option<serde_json::Value>,
    /// Attributes to set (at least one); a `null` value removes the attribute. Others are
    /// kept.
    #[schema(schema_with = attribute_patch)]
    pub attributes: Attributes,
}

/// The schema of [`UpdateRequest::attributes`]: an object with at least one key.
fn attribute_patch() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Object)
        .min_properties(Some(1))
        .description(Some("Attributes to set (at least one); a `null` value removes the attribute. Others are kept."))
        .build()
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UpdateResponse {
    /// Rows found and durably updated.
    pub updated: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FlushResponse {
    pub flushed: bool,
}

/// Largest number of rows in one bulk request.
pub const MAX_BULK_ROWS: usize = 1_000_000;

/// One row of a bulk request; the vector is base64 of little-endian `f32` values.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRow {
    pub id: RowId,
    /// Base64 (standard alphabet, padded) of `dimension` little-endian `f32` values.
    pub vector: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Attributes>,
}

/// Body of `POST /v1/collections/{name}/bulk`: rows of ONE shard (`RowId::shard`: FNV-1a
/// stable hash of the id modulo the shard count).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// A shard of the collection: 0 to its shard count − 1.
    #[serde(deserialize_with = "strata_types::integer::deserialize")]
    pub shard: u32,
    /// 1 to 1,000,000 rows with unique ids, all of `shard`.
    #[schema(min_items = 1, max_items = 1_000_000)]
    pub rows: Vec<BulkRow>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BulkResponse {
    pub shard: u32,
    /// Rows written into the new segment.
    pub imported: usize,
    pub segment: String,
    pub manifest_version: u64,
}
