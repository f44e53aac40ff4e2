//! The router: every query node answers REST reads for every collection by asking one
//! replica of each shard, through [`ShardReads`] — itself, or another node over gRPC.
//!
//! Replica order for a shard: this node if it serves the shard (no network hop); then the
//! other nodes serving it, rotated per request to spread load; then the nodes that should
//! serve it but have not finished loading (they load on demand before answering); and as
//! a last resort this node, loading on demand. A failed replica is skipped for the next
//! one, so with two replicas a dead node costs no failed query. A search whose shards all
//! fail is an error; one where only some fail answers with `partial` and names them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::future::join_all;
use strata_api::CollectionInfo;
use strata_coord::{Role, ServeState, shard_key};
use strata_rpc::{ShardReads, ShardRow, ShardScan, ShardSearch};
use strata_storage::catalog;
use strata_storage::segment::score_of;
use strata_types::{CollectionDef, RowId};
use strata_types::{Error, ErrorKind, Result};

use crate::node::QueryNode;
use strata_api::{
    CollectionDescription, CollectionStats, Consistency, ResultRow, SearchRequest, SearchResponse, ShardInfo,
};

impl QueryNode {
    /// The nodes to ask for `shard`, best first (see the module docs). `None` is this node.
    fn replicas(&self, def: &CollectionDef, shard: u32) -> Vec<Option<String>> {
        let view = self.inner.deps.coord.view().borrow().clone();
        let me = self.inner.deps.node_id.as_str();
        let live: Vec<&str> = view.members_of(Role::Query).iter().map(|m| m.node_id.as_str()).collect();
        let mut serving: Vec<&str> = view
            .serving_of(&def.id, shard)
            .filter(|r| r.state == ServeState::Serving && live.contains(&r.node_id.as_str()))
            .map(|r| r.node_id.as_str())
            .collect();
        serving.sort_unstable();
        let desired = view.serving_owners(&shard_key(&def.id, shard), def.replication);

        let mut order: Vec<&str> = Vec::new();
        if serving.contains(&me) {
            order.push(me);
        }
        let others: Vec<&str> = serving.iter().copied().filter(|n| *n != me).collect();
        if !others.is_empty() {
            let start = self.inner.round_robin.fetch_add(1, Ordering::Relaxed) % others.len();
            order.extend(others[start..].iter().chain(&others[..start]));
        }
        for n in desired.into_iter().chain([me]) {
            if !order.contains(&n) {
                order.push(n);
            }
        }
        order.into_iter().map(|n| (n != me).then(|| n.to_owned())).collect()
    }

    fn target(&self, node: &Option<String>) -> Result<Arc<dyn ShardReads>> {
        let Some(node_id) = node else { return Ok(Arc::new(self.clone())) };
        let view = self.inner.deps.coord.view().borrow().clone();
        let member = view
            .member(Role::Query, node_id)
            .ok_or_else(|| Error::retryable(format!("query node {node_id} left the cluster")))?;
        Ok(Arc::new(self.inner.deps.rpc.node(&member.grpc_url)?))
    }

    /// Runs `call` on the replicas of `shard` in order until one answers. Invalid input
    /// fails the same everywhere, so it is not retried.
    async fn on_replicas<T, F, Fut>(&self, def: &CollectionDef, shard: u32, call: F) -> Result<T>
    where
        F: Fn(Arc<dyn ShardReads>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut last = None;
        for node in self.replicas(def, shard) {
            let result = match self.target(&node) {
                Ok(target) => call(target).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == ErrorKind::Invalid => return Err(e),
                Err(e) => {
                    tracing::debug!(shard, node = ?node, error = %e, "replica failed; trying the next");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::retryable(format!("no replica of shard {shard} is available"))))
    }

    pub async fn search(&self, name: &str, req: SearchRequest) -> Result<SearchResponse> {
        let started = Instant::now();
        let def = self.inner.resolver.resolve(&self.inner.deps, name).await?;
        let ef = req.ef.unwrap_or(def.hnsw.ef as usize);
        self.check_search(&def, &req.vector, req.top_k, ef)?;
        let shard_req = ShardSearch {
            vector: req.vector,
            top_k: req.top_k as u32,
            ef: ef.max(req.top_k) as u32,
            eventual: req.consistency == Consistency::Eventual,
            include_vector: req.include_vector,
            include_attributes: req.include_attributes,
        };
        let per_shard = join_all((0..def.shards).map(|shard| {
            let (def, shard_req) = (&def, &shard_req);
            self.on_replicas(def, shard, move |t| {
                let shard_req = shard_req.clone();
                async move { t.search_shard(&def.id, shard, shard_req).await }
            })
        }))
        .await;
        let mut hits: Vec<ShardRow> = Vec::new();
        let (mut failed_shards, mut last_error) = (Vec::new(), None);
        for (shard, result) in per_shard.into_iter().enumerate() {
            match result {
                Ok(rows) => hits.extend(rows),
                Err(e) if e.kind() == ErrorKind::Invalid => return Err(e),
                Err(e) => {
                    failed_shards.push(shard as u32);
                    last_error = Some(e);
                }
            }
        }
        if failed_shards.len() == def.shards as usize
            && let Some(e) = last_error
        {
            return Err(e.context("no shard could be searched"));
        }
        hits.sort_by(|a, b| a.distance.unwrap_or(f32::MAX).total_cmp(&b.distance.unwrap_or(f32::MAX)));
        let results = hits
            .into_iter()
            .take(req.top_k)
            .map(|h| ResultRow {
                id: h.id,
                score: h.distance.map(|d| score_of(def.metric, d)),
                vector: h.vector,
                attributes: h.attributes,
            })
            .collect();
        Ok(SearchResponse {
            results,
            took_us: started.elapsed().as_micros() as u64,
            partial: !failed_shards.is_empty(),
            failed_shards,
        })
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
        let def = self.inner.resolver.resolve(&self.inner.deps, name).await?;
        let mut per_shard: Vec<Vec<RowId>> = vec![Vec::new(); def.shards as usize];
        for id in ids {
            per_shard[id.shard(def.shards) as usize].push(id.clone());
        }
        let fetched =
            join_all(per_shard.into_iter().enumerate().filter(|(_, ids)| !ids.is_empty()).map(|(shard, ids)| {
                let def = &def;
                self.on_replicas(def, shard as u32, move |t| {
                    let ids = ids.clone();
                    async move { t.get_rows(&def.id, shard as u32, ids, with_vector, with_attributes).await }
                })
            }))
            .await;
        let mut found = std::collections::HashMap::new();
        for rows in fetched {
            for row in rows? {
                found.insert(row.id.clone(), row);
            }
        }
        // In request order; an id asked for twice is returned twice.
        Ok(ids
            .iter()
            .filter_map(|id| found.get(id).cloned())
            .map(|r| ResultRow { id: r.id, score: None, vector: r.vector, attributes: r.attributes })
            .collect())
    }

    /// One page of a shard's live rows in id order, from one replica (see `scan_shard`).
    pub async fn scan(&self, name: &str, shard: u32, after: Option<RowId>, limit: u32) -> Result<ShardScan> {
        let def = self.inner.resolver.resolve(&self.inner.deps, name).await?;
        if shard >= def.shards {
            return Err(Error::invalid(format!("collection {name:?} has no shard {shard} (it has {})", def.shards)));
        }
        let def = &def;
        self.on_replicas(def, shard, move |t| {
            let after = after.clone();
            async move { t.scan_shard(&def.id, shard, after, limit).await }
        })
        .await
    }

    pub async fn list(&self) -> Result<Vec<CollectionInfo>> {
        let defs = catalog::list_active(self.inner.deps.store.as_ref()).await?;
        Ok(defs.iter().map(CollectionInfo::from).collect())
    }

    pub async fn describe(&self, name: &str) -> Result<CollectionDescription> {
        let def = self.inner.resolver.resolve(&self.inner.deps, name).await?;
        let stats = join_all((0..def.shards).map(|shard| {
            let def = &def;
            self.on_replicas(def, shard, move |t| async move { t.describe_shard(&def.id, shard).await })
        }))
        .await;
        let mut shards = Vec::with_capacity(stats.len());
        for s in stats {
            let s = s?;
            shards.push(ShardInfo {
                shard: s.shard,
                rows: s.rows,
                segments: s.segments as usize,
                bytes: s.bytes,
                manifest_version: s.manifest_version,
                flushed_seq: s.flushed_seq,
                head_seq: s.head_seq,
                wal_backlog_entries: s.head_seq.saturating_sub(s.flushed_seq),
                wal_backlog_ops: s.wal_backlog_ops,
            });
        }
        let stats = CollectionStats {
            rows: shards.iter().map(|s| s.rows).sum(),
            segments: shards.iter().map(|s| s.segments).sum(),
            bytes: shards.iter().map(|s| s.bytes).sum(),
            shards,
        };
        Ok(CollectionDescription { info: CollectionInfo::from(def.as_ref()), stats })
    }
}
