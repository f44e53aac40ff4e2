//! The query role's API types: search and get requests and responses, collection
//! descriptions. Their serde form is the REST contract.

use serde::{Deserialize, Serialize};
use strata_shared::api::CollectionInfo;
use strata_shared::types::{Attributes, RowId};
use utoipa::ToSchema;

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Sees every write acknowledged before the request arrived.
    #[default]
    Strong,
    /// May lag acknowledged writes by up to `eventual_max_lag_ms` (default 1 s).
    Eventual,
}

/// Body of `POST /v1/collections/{name}/search`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query: an array of numbers, or base64 of its little-endian f32 bytes.
    #[serde(deserialize_with = "strata_shared::vector_encoding::deserialize")]
    #[schema(value_type = strata_shared::vector_encoding::VectorInput)]
    pub vector: Vec<f32>,
    /// Number of results, 1..=1000. Default 10.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Candidate list size of the graph search; default: the collection's `hnsw.ef`.
    /// Raised to `top_k` if smaller.
    #[serde(default)]
    pub ef: Option<usize>,
    #[serde(default)]
    pub consistency: Consistency,
    #[serde(default)]
    pub include_vector: bool,
    #[serde(default)]
    pub include_attributes: bool,
}

fn default_top_k() -> usize {
    10
}

/// One search result or fetched row.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ResultRow {
    pub id: RowId,
    /// cosine: similarity (higher is closer); dot: inner product (higher is closer);
    /// l2: Euclidean distance (lower is closer). Absent for `get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Attributes>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SearchResponse {
    /// Best first.
    pub results: Vec<ResultRow>,
    /// Server-side time spent on the request, in microseconds.
    pub took_us: u64,
    /// True when some shards could not be searched (no replica answered): the results
    /// are the best of the shards that did. The failed shards are listed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_shards: Vec<u32>,
}

/// Per-shard statistics.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ShardInfo {
    pub shard: u32,
    /// Live rows (segments plus unflushed).
    pub rows: u64,
    pub segments: usize,
    /// Bytes of segment files.
    pub bytes: u64,
    pub manifest_version: u64,
    /// Every WAL entry up to here is in segments.
    pub flushed_seq: u64,
    /// Newest WAL entry.
    pub head_seq: u64,
    /// WAL entries not yet flushed into segments.
    pub wal_backlog_entries: u64,
    /// Operations in those entries.
    pub wal_backlog_ops: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CollectionStats {
    pub rows: u64,
    pub segments: usize,
    pub bytes: u64,
    pub shards: Vec<ShardInfo>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CollectionDescription {
    #[serde(flatten)]
    pub info: CollectionInfo,
    pub stats: CollectionStats,
}
