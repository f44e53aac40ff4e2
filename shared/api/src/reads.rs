//! Reads in the REST API: search, get and scan.

use serde::{Deserialize, Serialize};
use strata_types::{Attributes, RowId};
use utoipa::ToSchema;

// The OpenAPI form of a filter: requests carry it as plain JSON, which the server parses
// with `strata_types::filter::Filter::parse`.
/// An attribute filter, a JSON object: `{"attr": value}` is equality; `{"attr": {"$op": operand, ...}}` needs
/// every operator to hold, with `$eq $ne $gt $gte $lt $lte` (a scalar), `$in $nin` (an
/// array), `$exists` (a boolean) and `$contains` (a string, for string-list attributes);
/// several keys in one object must all hold; `$and` and `$or` take arrays of filters,
/// `$not` a filter. Comparisons with a missing attribute are false (`$ne` and `$nin`
/// included); ints and floats compare numerically, strings by bytes. A malformed filter,
/// an unknown operator or an operand of the wrong type is a 400 naming the part.
#[derive(ToSchema)]
#[schema(as = Filter, value_type = Object, example = json!({"lang": "en", "year": {"$gte": 2020, "$lt": 2025}, "tags": {"$contains": "rust"}}))]
pub struct FilterSchema(pub serde_json::Value);

pub use strata_types::Consistency;

// The OpenAPI form of `Consistency`, whose serde form is written by hand (it validates the
// bound and names the field when it is wrong).
/// How fresh a read must be: `"strong"` (default) sees every write acknowledged before the
/// request; `"eventual"` serves each query node's in-memory state, kept within
/// `query.eventual_max_lag_ms` (default 1 s) of acknowledged writes by a background
/// refresher, without any request to etcd or object storage on the request path;
/// `{"max_staleness_ms": N}` (N in 0..=3600000) serves that state if it was confirmed
/// current at most N ms ago and refreshes first otherwise.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
#[schema(as = Consistency, example = json!({"max_staleness_ms": 500}))]
pub enum ConsistencySchema {
    Level(ConsistencyLevel),
    Bounded(BoundedStaleness),
}

/// `{"max_staleness_ms": N}`, alone in its object.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BoundedStaleness {
    /// How old the served state may be, in milliseconds: 0..=3600000.
    #[schema(maximum = 3_600_000)]
    pub max_staleness_ms: u64,
}

/// The named consistency levels.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConsistencyLevel {
    Strong,
    Eventual,
}

/// Body of `POST /v1/collections/{name}/search`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query: an array of numbers, or base64 of its little-endian f32 bytes.
    #[serde(deserialize_with = "crate::vector_encoding::deserialize")]
    #[schema(value_type = crate::vector_encoding::VectorInput)]
    pub vector: Vec<f32>,
    /// Number of results: 1 to `query.max_top_k` (default 1,000; the served document states
    /// this server's). Default 10.
    #[serde(default = "default_top_k", deserialize_with = "strata_types::integer::deserialize")]
    #[schema(minimum = 1, default = 10)]
    pub top_k: usize,
    /// Candidate list size of the graph search, 1 to `query.max_ef` (default 4,096);
    /// default: the collection's `hnsw.ef`. Raised to `top_k` if smaller.
    #[serde(default, deserialize_with = "strata_types::integer::option::deserialize")]
    #[schema(minimum = 1)]
    pub ef: Option<usize>,
    #[serde(default)]
    #[schema(value_type = ConsistencySchema)]
    pub consistency: Consistency,
    #[serde(default)]
    pub include_vector: bool,
    #[serde(default)]
    pub include_attributes: bool,
    /// Only rows whose attributes match this filter (see the README's "Filters"), e.g.
    /// `{"lang": "en", "year": {"$gte": 2020}}`. Applied inside the index search, so
    /// `top_k` results come back whenever that many rows match.
    #[serde(default)]
    #[schema(value_type = Option<FilterSchema>)]
    pub filter: Option<serde_json::Value>,
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

/// Body of `POST /v1/collections/{name}/get`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GetRequest {
    /// 1 to `query.max_get_ids` ids (default 10,000).
    #[schema(min_items = 1)]
    pub ids: Vec<RowId>,
    #[serde(default)]
    #[schema(value_type = ConsistencySchema)]
    pub consistency: Consistency,
    #[serde(default)]
    pub include_vector: bool,
    #[serde(default)]
    pub include_attributes: bool,
    /// Only those of the rows that match this filter.
    #[serde(default)]
    #[schema(value_type = Option<FilterSchema>)]
    pub filter: Option<serde_json::Value>,
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
    /// A shard of the collection: 0 to its shard count − 1.
    #[serde(deserialize_with = "strata_types::integer::deserialize")]
    pub shard: u32,
    /// Continue after this id (the previous page's `next_after`); absent for the first page.
    #[serde(default)]
    pub after: Option<RowId>,
    /// Rows per page, 1..=10,000. Default 1,000.
    #[serde(default = "default_scan_limit", deserialize_with = "strata_types::integer::deserialize")]
    #[schema(minimum = 1, maximum = 10_000, default = 1000)]
    pub limit: u32,
    /// Only rows matching this filter.
    #[serde(default)]
    #[schema(value_type = Option<FilterSchema>)]
    pub filter: Option<serde_json::Value>,
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
    pub attributes: Option<Attributes>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ScanResponse {
    /// Live rows of the shard ordered by id (integers before strings).
    pub rows: Vec<ScanRow>,
    /// Pass as `after` for the next page; null when the shard has no more rows.
    pub next_after: Option<RowId>,
}

/// Body of `POST /v1/collections/{name}/query`: rows matching a filter, across every
/// shard, paged with a cursor.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// Only rows matching this filter; absent: every row.
    #[serde(default)]
    #[schema(value_type = Option<FilterSchema>)]
    pub filter: Option<serde_json::Value>,
    /// Rows per page, 1..=10,000. Default 100.
    #[serde(default = "default_query_limit", deserialize_with = "strata_types::integer::deserialize")]
    #[schema(minimum = 1, maximum = 10_000, default = 100)]
    pub limit: u32,
    /// The previous page's `next_cursor`; absent for the first page.
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub include_vector: bool,
    /// Default true.
    #[serde(default = "yes")]
    pub include_attributes: bool,
}

fn default_query_limit() -> u32 {
    100
}

fn yes() -> bool {
    true
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueryResponse {
    /// Matching rows, shard by shard, each shard's in id order.
    pub rows: Vec<ResultRow>,
    /// Pass as `cursor` for the next page; absent after the last page. Each page is
    /// strongly consistent; rows changed between pages are seen as of each page's read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Body of `POST /v1/collections/{name}/count`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountRequest {
    /// Count only rows matching this filter; absent: every row.
    #[serde(default)]
    #[schema(value_type = Option<FilterSchema>)]
    pub filter: Option<serde_json::Value>,
    #[serde(default)]
    #[schema(value_type = ConsistencySchema)]
    pub consistency: Consistency,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CountResponse {
    pub count: u64,
    /// True when some shards could not be counted; `count` is then of the others.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub partial: bool,
}
