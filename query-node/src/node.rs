//! The query node: resolves collection names through the catalog, keeps a [`ShardReader`]
//! per shard, and answers search, get and describe by fanning out over the shards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use strata_shared::api::CollectionInfo;
use strata_shared::catalog::{self, CatalogState};
use strata_shared::coord::{self, shard_key};
use strata_shared::deps::Deps;
use strata_shared::error::{Error, Result};
use strata_shared::segment::store::{prepare_query, score_of};
use strata_shared::types::{Attributes, CollectionDef, RowId};
use tokio::sync::Mutex;
use utoipa::ToSchema;

use crate::config::QueryConfig;
use crate::shard::ShardReader;

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

struct CollectionReader {
    def: Arc<CollectionDef>,
    shards: Vec<Arc<ShardReader>>,
    /// The catalog version this reader was resolved at.
    catalog_version: u64,
}

/// A running query role. Cheap to clone.
#[derive(Clone)]
pub struct QueryNode {
    inner: Arc<Inner>,
}

struct Inner {
    deps: Deps,
    config: QueryConfig,
    collections: Mutex<HashMap<String, Arc<CollectionReader>>>,
}

/// Starts the query role.
pub async fn start(
    config: QueryConfig,
    deps: Deps,
    _shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<QueryNode> {
    Ok(QueryNode { inner: Arc::new(Inner { deps, config, collections: Mutex::new(HashMap::new()) }) })
}

impl QueryNode {
    /// The reader of an active collection. The name's published catalog version tells
    /// whether the cached reader is still current; without one (or when it changed) the
    /// name is resolved from the catalog in object storage, so a dropped or re-created
    /// collection is never served stale.
    async fn collection(&self, name: &str) -> Result<Arc<CollectionReader>> {
        let deps = &self.inner.deps;
        let published = deps.coord.head(&coord::catalog_key(name)).await?.map(|h| h.wal_seq);
        let mut map = self.inner.collections.lock().await;
        if let Some(c) = map.get(name)
            && published.is_some()
            && published == Some(c.catalog_version)
        {
            return Ok(c.clone());
        }
        let store = deps.store.as_ref();
        let not_found = || Error::not_found(format!("collection {name:?} does not exist"));
        catalog::validate_name(name).map_err(|_| not_found())?;
        let entry = catalog::newest_entry(store, name).await?.ok_or_else(not_found)?;
        if entry.state != CatalogState::Active {
            map.remove(name);
            return Err(not_found());
        }
        let def = match map.get(name) {
            Some(c) if c.def.id == entry.collection_id => c.def.clone(),
            _ => Arc::new(catalog::read_definition(store, &entry.collection_id).await?),
        };
        let shards = match map.get(name) {
            Some(c) if c.def.id == def.id => c.shards.clone(),
            _ => (0..def.shards).map(|s| Arc::new(ShardReader::new(deps.clone(), def.clone(), s))).collect(),
        };
        let reader = Arc::new(CollectionReader { def, shards, catalog_version: entry.version });
        map.insert(name.to_owned(), reader.clone());
        Ok(reader)
    }

    async fn refresh_all(&self, c: &CollectionReader, consistency: Consistency, since: Instant) -> Result<()> {
        let max_age = match consistency {
            Consistency::Strong => None,
            Consistency::Eventual => Some(Duration::from_millis(self.inner.config.eventual_max_lag_ms)),
        };
        futures::future::try_join_all(c.shards.iter().map(|s| s.refresh(since, max_age))).await?;
        Ok(())
    }

    pub async fn search(&self, name: &str, req: SearchRequest) -> Result<SearchResponse> {
        let started = Instant::now();
        let c = self.collection(name).await?;
        let cfg = &self.inner.config;
        c.def.validate_vector(&req.vector)?;
        if req.top_k == 0 || req.top_k > cfg.max_top_k {
            return Err(Error::invalid(format!("top_k must be in 1..={}, got {}", cfg.max_top_k, req.top_k)));
        }
        let ef = req.ef.unwrap_or(c.def.hnsw.ef as usize);
        if ef == 0 || ef > cfg.max_ef {
            return Err(Error::invalid(format!("ef must be in 1..={}, got {ef}", cfg.max_ef)));
        }
        let ef = ef.max(req.top_k);
        self.refresh_all(&c, req.consistency, started).await?;
        let query = prepare_query(c.def.metric, &req.vector);
        // Each shard's hits are materialised under the same read guard as its search: a
        // refresh may swap the segment list right after the guard is released.
        let mut hits: Vec<(f32, ResultRow)> = Vec::new();
        for reader in &c.shards {
            let state = reader.read();
            for hit in ShardReader::search(&state, &query, req.top_k, ef) {
                let row = ShardReader::row(&state, hit.location, req.include_vector, req.include_attributes);
                hits.push((
                    hit.distance,
                    ResultRow {
                        id: row.id,
                        score: Some(score_of(c.def.metric, hit.distance)),
                        vector: req.include_vector.then_some(row.vector),
                        attributes: row.attributes,
                    },
                ));
            }
        }
        hits.sort_by(|a, b| a.0.total_cmp(&b.0));
        let results = hits.into_iter().take(req.top_k).map(|(_, row)| row).collect();
        Ok(SearchResponse { results, took_us: started.elapsed().as_micros() as u64 })
    }

    /// Rows by id, in request order; ids that do not exist are left out.
    pub async fn get(
        &self,
        name: &str,
        ids: &[RowId],
        with_vector: bool,
        with_attributes: bool,
    ) -> Result<Vec<ResultRow>> {
        let max = self.inner.config.max_get_ids;
        if ids.is_empty() || ids.len() > max {
            return Err(Error::invalid(format!("ids must hold 1..={max} entries, got {}", ids.len())));
        }
        for id in ids {
            id.validate()?;
        }
        let c = self.collection(name).await?;
        self.refresh_all(&c, Consistency::Strong, Instant::now()).await?;
        let mut out = Vec::new();
        for id in ids {
            let reader = &c.shards[id.shard(c.def.shards) as usize];
            let state = reader.read();
            if let Some(loc) = ShardReader::get(&state, id) {
                let row = ShardReader::row(&state, loc, with_vector, with_attributes);
                out.push(ResultRow {
                    id: row.id,
                    score: None,
                    vector: with_vector.then_some(row.vector),
                    attributes: row.attributes,
                });
            }
        }
        Ok(out)
    }

    pub async fn list(&self) -> Result<Vec<CollectionInfo>> {
        Ok(catalog::list_active(self.inner.deps.store.as_ref()).await?.iter().map(CollectionInfo::from).collect())
    }

    pub async fn describe(&self, name: &str) -> Result<CollectionDescription> {
        let c = self.collection(name).await?;
        self.refresh_all(&c, Consistency::Strong, Instant::now()).await?;
        let mut shards = Vec::new();
        for (i, reader) in c.shards.iter().enumerate() {
            let head = self.inner.deps.coord.head(&shard_key(&c.def.id, i as u32)).await?.unwrap_or_default();
            let state = reader.read();
            let m = &state.manifest;
            let head_seq = head.wal_seq.max(state.tail.applied_seq);
            shards.push(ShardInfo {
                shard: i as u32,
                rows: ShardReader::live_rows(&state),
                segments: m.segments.len(),
                bytes: m.bytes(),
                manifest_version: m.version,
                flushed_seq: m.flushed_seq,
                head_seq,
                wal_backlog_entries: head_seq.saturating_sub(m.flushed_seq),
                wal_backlog_ops: state.tail.ops() as u64,
            });
        }
        let stats = CollectionStats {
            rows: shards.iter().map(|s| s.rows).sum(),
            segments: shards.iter().map(|s| s.segments).sum(),
            bytes: shards.iter().map(|s| s.bytes).sum(),
            shards,
        };
        Ok(CollectionDescription { info: CollectionInfo::from(c.def.as_ref()), stats })
    }
}
