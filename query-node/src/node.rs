//! The query node: the shards it holds locally (assigned by the serving loop, or loaded on
//! demand when no replica answered), and the local half of the node-to-node read API
//! ([`ShardReads`]). The router (`router.rs`) answers REST requests by asking a replica of
//! every shard — this node or another — through that same API.
//!
//! A shard is answered only once it is loaded: the first refresh loads its manifest,
//! segments and WAL tail before the first search runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use strata_coord::{ServeState, shard_key};
use strata_deps::Deps;
use strata_deps::Resolver;
use strata_rpc::{MAX_SCAN_ROWS, ShardReads, ShardRow, ShardScan, ShardSearch, ShardStats};
use strata_storage::segment::prepare_query;
use strata_types::{CollectionDef, RowId};
use strata_types::{Error, Result};
use tokio::sync::watch;

use crate::config::QueryConfig;
use crate::metrics::QueryMetrics;
use crate::shard::ShardReader;

/// A shard held by this node.
pub(crate) struct LocalShard {
    pub reader: ShardReader,
    /// When a request last used it (ms since the node started), to unload idle shards
    /// that were loaded on demand.
    pub last_used_ms: AtomicU64,
}

/// A running query role. Cheap to clone.
#[derive(Clone)]
pub struct QueryNode {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub deps: Deps,
    pub config: QueryConfig,
    pub resolver: Resolver,
    pub shards: Mutex<HashMap<(String, u32), Arc<LocalShard>>>,
    /// Shards the serving loop assigned to this node, and how far it got loading them.
    pub assigned: Mutex<HashMap<(String, u32), ServeState>>,
    /// The serving loop has completed a pass (readiness needs one).
    pub reconciled: AtomicBool,
    /// Rotates the first replica tried, to spread load over replicas.
    pub round_robin: AtomicUsize,
    pub started: Instant,
    pub metrics: QueryMetrics,
}

/// Starts the query role: plans which shards this node serves, then loads them and keeps
/// serving in line with the cluster in the background (see `serving.rs`).
pub async fn start(config: QueryConfig, deps: Deps, shutdown: watch::Receiver<bool>) -> Result<QueryNode> {
    let node = QueryNode {
        inner: Arc::new(Inner {
            deps: deps.clone(),
            config,
            resolver: Resolver::default(),
            shards: Mutex::default(),
            assigned: Mutex::default(),
            reconciled: AtomicBool::new(false),
            round_robin: AtomicUsize::new(0),
            started: Instant::now(),
            metrics: QueryMetrics::register(&deps.metrics),
        }),
    };
    // Plan before returning so readiness is accurate at once; loading goes on behind.
    let first = node.plan_serving().await?;
    tokio::spawn(crate::serving::run(node.clone(), first, shutdown));
    Ok(node)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl QueryNode {
    pub(crate) fn now_ms(&self) -> u64 {
        self.inner.started.elapsed().as_millis() as u64
    }

    /// The local copy of a shard (created empty if absent), refreshed so it reflects every
    /// write acknowledged before `since` (strong) or at most `max_age` old (eventual).
    pub(crate) async fn local_shard(
        &self,
        collection_id: &str,
        shard: u32,
        since: Instant,
        max_age: Option<Duration>,
    ) -> Result<Arc<LocalShard>> {
        let slot = (collection_id.to_owned(), shard);
        let existing = lock(&self.inner.shards).get(&slot).cloned();
        let local = match existing {
            Some(local) => local,
            None => {
                let def = self.inner.resolver.by_id(&self.inner.deps, collection_id).await?;
                if shard >= def.shards {
                    return Err(Error::invalid(format!("collection {:?} has no shard {shard}", def.name)));
                }
                let fresh = Arc::new(LocalShard {
                    reader: ShardReader::new(self.inner.deps.clone(), def, shard),
                    last_used_ms: AtomicU64::new(0),
                });
                lock(&self.inner.shards).entry(slot).or_insert(fresh).clone()
            }
        };
        local.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        local.reader.refresh(since, max_age).await?;
        Ok(local)
    }

    fn max_age(&self, eventual: bool) -> Option<Duration> {
        eventual.then(|| Duration::from_millis(self.inner.config.eventual_max_lag_ms))
    }

    /// Checks search parameters; the router checks them before fanning out and every
    /// shard again (the request may come from the wire).
    pub(crate) fn check_search(&self, def: &CollectionDef, vector: &[f32], top_k: usize, ef: usize) -> Result<()> {
        let cfg = &self.inner.config;
        def.validate_vector(vector)?;
        if top_k == 0 || top_k > cfg.max_top_k {
            return Err(Error::invalid(format!("top_k must be in 1..={}, got {top_k}", cfg.max_top_k)));
        }
        if ef == 0 || ef > cfg.max_ef {
            return Err(Error::invalid(format!("ef must be in 1..={}, got {ef}", cfg.max_ef)));
        }
        Ok(())
    }

    async fn search_local(&self, collection_id: &str, shard: u32, req: ShardSearch) -> Result<Vec<ShardRow>> {
        let started = Instant::now();
        let local = self.local_shard(collection_id, shard, started, self.max_age(req.eventual)).await?;
        let def = local.reader.def();
        let (top_k, ef) = (req.top_k as usize, req.ef as usize);
        self.check_search(def, &req.vector, top_k, ef)?;
        let query = prepare_query(def.metric, &req.vector);
        // Hits are materialised under the same read guard as the search: a refresh may
        // swap the segment list right after the guard is released.
        let state = local.reader.read();
        let rows = ShardReader::search(&state, &query, top_k, ef.max(top_k))
            .into_iter()
            .map(|hit| {
                let row = ShardReader::row(&state, hit.location, req.include_vector, req.include_attributes);
                ShardRow {
                    id: row.id,
                    distance: Some(hit.distance),
                    vector: req.include_vector.then_some(row.vector),
                    attributes: row.attributes,
                }
            })
            .collect();
        Ok(rows)
    }

    async fn get_local(
        &self,
        collection_id: &str,
        shard: u32,
        ids: Vec<RowId>,
        include_vector: bool,
        include_attributes: bool,
    ) -> Result<Vec<ShardRow>> {
        for id in &ids {
            id.validate()?;
        }
        let local = self.local_shard(collection_id, shard, Instant::now(), None).await?;
        let state = local.reader.read();
        let rows = ids
            .iter()
            .filter_map(|id| ShardReader::get(&state, id))
            .map(|loc| {
                let row = ShardReader::row(&state, loc, include_vector, include_attributes);
                ShardRow {
                    id: row.id,
                    distance: None,
                    vector: include_vector.then_some(row.vector),
                    attributes: row.attributes,
                }
            })
            .collect();
        Ok(rows)
    }

    async fn scan_local(&self, collection_id: &str, shard: u32, after: Option<RowId>, limit: u32) -> Result<ShardScan> {
        if !(1..=MAX_SCAN_ROWS).contains(&limit) {
            return Err(Error::invalid(format!("limit must be in 1..={MAX_SCAN_ROWS}, got {limit}")));
        }
        if let Some(a) = &after {
            a.validate()?;
        }
        // Strong: refreshed after the call started, like `get`.
        let local = self.local_shard(collection_id, shard, Instant::now(), None).await?;
        let state = local.reader.read();
        let (page, more) = ShardReader::scan(&state, after.as_ref(), limit as usize);
        let next_after = if more { page.last().map(|(id, _)| id.clone()) } else { None };
        let rows = page
            .into_iter()
            .map(|(_, loc)| {
                let row = ShardReader::row(&state, loc, true, true);
                ShardRow { id: row.id, distance: None, vector: Some(row.vector), attributes: row.attributes }
            })
            .collect();
        Ok(ShardScan { rows, next_after })
    }

    async fn describe_local(&self, collection_id: &str, shard: u32) -> Result<ShardStats> {
        let local = self.local_shard(collection_id, shard, Instant::now(), None).await?;
        let head = self.inner.deps.coord.head(&shard_key(collection_id, shard)).await?.unwrap_or_default();
        let state = local.reader.read();
        let m = &state.manifest;
        Ok(ShardStats {
            shard,
            rows: ShardReader::live_rows(&state),
            segments: m.segments.len() as u64,
            bytes: m.bytes(),
            manifest_version: m.version,
            flushed_seq: m.flushed_seq,
            head_seq: head.wal_seq.max(state.tail.applied_seq),
            wal_backlog_ops: state.tail.ops() as u64,
        })
    }
}

impl ShardReads for QueryNode {
    fn search_shard(&self, collection_id: &str, shard: u32, req: ShardSearch) -> BoxFuture<'_, Result<Vec<ShardRow>>> {
        let collection_id = collection_id.to_owned();
        Box::pin(async move { self.search_local(&collection_id, shard, req).await })
    }

    fn get_rows(
        &self,
        collection_id: &str,
        shard: u32,
        ids: Vec<RowId>,
        include_vector: bool,
        include_attributes: bool,
    ) -> BoxFuture<'_, Result<Vec<ShardRow>>> {
        let collection_id = collection_id.to_owned();
        Box::pin(async move { self.get_local(&collection_id, shard, ids, include_vector, include_attributes).await })
    }

    fn describe_shard(&self, collection_id: &str, shard: u32) -> BoxFuture<'_, Result<ShardStats>> {
        let collection_id = collection_id.to_owned();
        Box::pin(async move { self.describe_local(&collection_id, shard).await })
    }

    fn scan_shard(
        &self,
        collection_id: &str,
        shard: u32,
        after: Option<RowId>,
        limit: u32,
    ) -> BoxFuture<'_, Result<ShardScan>> {
        let collection_id = collection_id.to_owned();
        Box::pin(async move { self.scan_local(&collection_id, shard, after, limit).await })
    }
}
