//! REST types shared by several roles' APIs.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::types::{CollectionDef, HnswParams, Metric};

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
        }
    }
}
