//! Collections in the REST API: create, drop, list, describe.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use strata_types::filter::AttrType;
use strata_types::{CollectionDef, HnswParams, Metric};

/// A collection as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CollectionInfo {
    pub name: String,
    /// Unique per incarnation (dropping and re-creating a name gives a new id).
    pub id: String,
    pub dimension: u32,
    pub metric: Metric,
    pub shards: u32,
    pub replication: u32,
    pub hnsw: HnswParams,
    pub created_at_ms: u64,
    /// The type of every attribute: declared at creation or taken from the first value
    /// written.
    #[serde(default)]
    pub attributes: BTreeMap<String, AttrType>,
}

impl From<&CollectionDef> for CollectionInfo {
    fn from(d: &CollectionDef) -> Self {
        Self {
            name: d.name.clone(),
            id: d.id.clone(),
            dimension: d.dimension,
            metric: d.metric,
            shards: d.shards,
            replication: d.replication,
            hnsw: d.hnsw,
            created_at_ms: d.created_at_ms,
            attributes: d.attributes.clone(),
        }
    }
}

/// Body of `POST /v1/collections`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollectionRequest {
    /// 1-64 characters of letters, digits, `_` or `-`, starting with a letter or digit.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", min_length = 1, max_length = 64)]
    pub name: String,
    /// Vector dimension, 1..=4096.
    #[serde(deserialize_with = "strata_types::integer::deserialize")]
    #[schema(minimum = 1, maximum = 4096)]
    pub dimension: u32,
    pub metric: Metric,
    /// Number of shards, 1..=256, fixed at creation. Default 1.
    #[serde(default = "one", deserialize_with = "strata_types::integer::deserialize")]
    #[schema(minimum = 1, maximum = 256, default = 1)]
    pub shards: u32,
    /// Query replicas per shard (cluster mode), 1..=8. Default 1.
    #[serde(default = "one", deserialize_with = "strata_types::integer::deserialize")]
    #[schema(minimum = 1, maximum = 8, default = 1)]
    pub replication: u32,
    #[serde(default)]
    pub hnsw: HnswParams,
    /// Attribute types to fix up front (`bool`, `int`, `float`, `string`, `string[]`),
    /// e.g. `{"price": "float"}` so that `10` and `10.5` are both accepted. Attributes not
    /// declared take the type of the first value written. Optional.
    #[serde(default)]
    pub attributes: BTreeMap<String, AttrType>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DropResponse {
    pub dropped: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ListResponse {
    pub collections: Vec<CollectionInfo>,
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
