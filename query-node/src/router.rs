//! The router: every query node answers REST reads for every collection by asking one
//! replica of each shard, through [`ShardReads`] — its own shard hosting, or another node
//! over gRPC.
//!
//! Replica order for a shard: this node if it serves the shard (no network hop); then the
//! other nodes serving it, rotated per request to spread load; then the nodes that should
//! serve it but have not finished loading (they load on demand before answering); and as
//! a last resort this node, loading on demand. A failed replica is skipped for the next
//! one, so with two replicas a dead node costs no failed query. A search whose shards all
//! fail is an error; one where only some fail answers with `partial` and names them.
//!
//! Search, end to end: the request is validated once, here; its vector is shared by every
//! shard's request; each shard returns its top-k [`Hit`]s (id and distance); the merge
//! keeps the best `top_k` of all shards; only then are vectors and attributes read, for
//! the final hits, from the replicas that found them (`fill_rows`). A single-shard
//! collection skips that second step: its shard's top-k is the answer, so it
//! materialises them at once. Rows deleted between the two steps are left out.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::join_all;
use strata_api::{
    CollectionDescription, CollectionInfo, CollectionStats, Consistency, GetRequest, ResultRow, ScanRequest,
    SearchRequest, SearchResponse, ShardInfo,
};
use strata_coord::{Role, ServeState, shard_key};
use strata_deps::{Deps, Resolver};
use strata_rpc::{Hit, ShardGet, ShardReads, ShardRow, ShardScan, ShardScanRequest, ShardSearch};
use strata_storage::catalog;
use strata_storage::segment::score_of;
use strata_types::time::ClockExt;
use strata_types::{CollectionDef, Error, ErrorKind, Result, RowId};

use crate::QueryConfig;
use crate::host::ShardHost;
use crate::validate;

/// Answers REST reads by fanning out to a replica of every shard.
pub(crate) struct Router {
    pub(crate) deps: Deps,
    pub(crate) config: Arc<QueryConfig>,
    pub(crate) resolver: Arc<Resolver>,
    /// This node's shards: the first replica tried when this node serves a shard, and the
    /// last resort (loading the shard on demand) when no replica answers.
    host: Arc<ShardHost>,
    /// Whether this node runs the query role. A node without it (an ingest node or a
    /// compactor answering the whole REST API) only forwards: it never asks its own host,
    /// so it never loads a shard.
    reads_here: bool,
    /// Rotates the first remote replica tried, to spread load over replicas.
    round_robin: AtomicUsize,
}

/// A replica to ask: this node, or another by id.
type Replica = Option<String>;

impl Router {
    pub fn new(
        deps: Deps,
        config: Arc<QueryConfig>,
        resolver: Arc<Resolver>,
        host: Arc<ShardHost>,
        reads_here: bool,
    ) -> Router {
        Router { deps, config, resolver, host, reads_here, round_robin: AtomicUsize::new(0) }
    }

    /// The nodes to ask for `shard`, best first (see the module docs).
    fn replicas(&self, def: &CollectionDef, shard: u32) -> Vec<Replica> {
        let view = self.deps.coord.view().borrow().clone();
        let me = self.deps.node_id.as_str();
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
            let start = self.round_robin.fetch_add(1, Ordering::Relaxed) % others.len();
            order.extend(others[start..].iter().chain(&others[..start]));
        }
        let last_resort = self.reads_here.then_some(me);
        for n in desired.into_iter().chain(last_resort) {
            if !order.contains(&n) {
                order.push(n);
            }
        }
        order.into_iter().map(|n| (n != me).then(|| n.to_owned())).collect()
    }

    /// Whether this node is a live query member recorded as serving `shard` (then it
    /// comes first in [`Router::replicas`]).
    fn serves_here(&self, def: &CollectionDef, shard: u32) -> bool {
        let view = self.deps.coord.view();
        let view = view.borrow();
        let me = self.deps.node_id.as_str();
        view.member(Role::Query, me).is_some()
            && view.serving_of(&def.id, shard).any(|r| r.node_id == me && r.state == ServeState::Serving)
    }

    fn target(&self, replica: &Replica) -> Result<Arc<dyn ShardReads>> {
        let Some(node_id) = replica else { return Ok(self.host.clone()) };
        let view = self.deps.coord.view().borrow().clone();
        let member = view
            .member(Role::Query, node_id)
            .ok_or_else(|| Error::retryable(format!("query node {node_id} left the cluster")))?;
        Ok(Arc::new(self.deps.rpc.node(&member.grpc_url)?))
    }

    /// Runs `call` on the replicas of `shard` in order (`first`, if given, before them)
    /// until one answers; returns its answer and which replica gave it. Invalid input
    /// fails the same everywhere, so it is not retried.
    pub(crate) async fn on_replicas<T, F, Fut>(
        &self,
        def: &CollectionDef,
        shard: u32,
        first: Option<&Replica>,
        call: F,
    ) -> Result<(T, Replica)>
    where
        F: Fn(Arc<dyn ShardReads>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut last = None;
        // The common case first: this node serves the shard, so it is the replica to ask
        // and the order of the others matters only if it fails.
        let tried_here = first.is_none() && self.serves_here(def, shard);
        if tried_here {
            match call(self.host.clone()).await {
                Ok(v) => return Ok((v, None)),
                Err(e) if e.kind() == ErrorKind::Invalid => return Err(e),
                Err(e) => {
                    tracing::debug!(shard, error = %e, "this node failed to answer for its shard; trying replicas");
                    last = Some(e);
                }
            }
        }
        let mut replicas = self.replicas(def, shard);
        if tried_here {
            replicas.retain(Option::is_some);
        }
        if let Some(first) = first {
            replicas.retain(|r| r != first);
            replicas.insert(0, first.clone());
        }
        for replica in replicas {
            let result = match self.target(&replica) {
                Ok(target) => call(target).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(v) => return Ok((v, replica)),
                Err(e) if e.kind() == ErrorKind::Invalid => return Err(e),
                Err(e) => {
                    tracing::debug!(shard, node = ?replica, error = %e, "replica failed; trying the next");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::retryable(format!("no replica of shard {shard} is available"))))
    }

    pub async fn search(&self, name: &str, req: SearchRequest) -> Result<SearchResponse> {
        let started = self.deps.clock.now();
        let consistency = req.consistency;
        let def = self.resolver.resolve_for(&self.deps, name, consistency).await?;
        let ef = req.ef.unwrap_or(def.hnsw.ef as usize);
        validate::search(&self.config, &def, &req.vector, req.top_k, ef)?;
        let filter = self.filter(&def, req.filter.as_ref()).await?;
        let single_shard = def.shards == 1;
        let shard_req = ShardSearch {
            vector: req.vector.into(),
            top_k: req.top_k as u32,
            ef: ef.max(req.top_k) as u32,
            consistency,
            include_vector: single_shard && req.include_vector,
            include_attributes: single_shard && req.include_attributes,
            filter,
        };
        let per_shard = join_all((0..def.shards).map(|shard| {
            let (def, shard_req) = (&def, &shard_req);
            self.on_replicas(def, shard, None, move |t| {
                let shard_req = shard_req.clone();
                async move { t.search_shard(&def.id, shard, shard_req).await }
            })
        }))
        .await;
        // (shard, hit), and which replica answered each shard.
        let mut hits: Vec<(u32, Hit)> = Vec::new();
        let mut answered: Vec<Option<Replica>> = vec![None; def.shards as usize];
        let (mut failed_shards, mut last_error) = (Vec::new(), None);
        for (shard, result) in (0..def.shards).zip(per_shard) {
            match result {
                Ok((found, replica)) => {
                    hits.extend(found.into_iter().map(|h| (shard, h)));
                    answered[shard as usize] = Some(replica);
                }
                Err(e) if e.kind() == ErrorKind::Invalid => return Err(e),
                Err(e) => {
                    failed_shards.push(shard);
                    last_error = Some(e);
                }
            }
        }
        if failed_shards.len() == def.shards as usize
            && let Some(e) = last_error
        {
            return Err(e.context("no shard could be searched"));
        }
        hits.sort_by(|a, b| a.1.distance.total_cmp(&b.1.distance));
        hits.truncate(req.top_k);
        if !single_shard && (req.include_vector || req.include_attributes) {
            let wanted = (req.include_vector, req.include_attributes);
            hits = self.fill_rows(&def, hits, &answered, wanted, consistency).await?;
        }
        let results = hits
            .into_iter()
            .map(|(_, h)| ResultRow {
                id: h.id,
                score: Some(score_of(def.metric, h.distance)),
                vector: h.vector,
                attributes: h.attributes,
            })
            .collect();
        Ok(SearchResponse {
            results,
            took_us: self.deps.clock.elapsed(started).as_micros() as u64,
            partial: !failed_shards.is_empty(),
            failed_shards,
        })
    }

    /// Reads the vectors and attributes of the final hits, one call per shard that has any,
    /// first from the replica that found them. Hits whose rows were deleted meanwhile are
    /// left out.
    async fn fill_rows(
        &self,
        def: &CollectionDef,
        hits: Vec<(u32, Hit)>,
        answered: &[Option<Replica>],
        (include_vector, include_attributes): (bool, bool),
        consistency: Consistency,
    ) -> Result<Vec<(u32, Hit)>> {
        let mut ids_of: HashMap<u32, Vec<RowId>> = HashMap::new();
        for (shard, hit) in &hits {
            ids_of.entry(*shard).or_default().push(hit.id.clone());
        }
        let wanted = (include_vector, include_attributes, consistency);
        let mut rows = self.fetch_rows(def, ids_of, answered, wanted).await?;
        Ok(hits
            .into_iter()
            .filter_map(|(shard, hit)| {
                let row = rows.remove(&hit.id)?;
                Some((shard, Hit { vector: row.vector, attributes: row.attributes, ..hit }))
            })
            .collect())
    }

    /// Reads rows by id, one call per shard, first from the replica `first[shard]` (if any);
    /// `(include_vector, include_attributes, consistency)` as in [`ShardGet`].
    async fn fetch_rows(
        &self,
        def: &CollectionDef,
        ids_of: HashMap<u32, Vec<RowId>>,
        first: &[Option<Replica>],
        (include_vector, include_attributes, consistency): (bool, bool, Consistency),
    ) -> Result<HashMap<RowId, ShardRow>> {
        let fetched = join_all(ids_of.into_iter().map(|(shard, ids)| {
            let req = ShardGet { ids, include_vector, include_attributes, consistency };
            self.on_replicas(def, shard, first.get(shard as usize).and_then(Option::as_ref), move |t| {
                let req = req.clone();
                async move { t.get_rows(&def.id, shard, req).await }
            })
        }))
        .await;
        let mut rows = HashMap::new();
        for result in fetched {
            rows.extend(result?.0.into_iter().map(|row| (row.id.clone(), row)));
        }
        Ok(rows)
    }

    /// Rows by id, in request order; ids that do not exist (or do not match `filter`) are
    /// left out.
    pub async fn get(&self, name: &str, req: GetRequest) -> Result<Vec<ResultRow>> {
        let ids = &req.ids;
        validate::get(&self.config, ids)?;
        let def = self.resolver.resolve_for(&self.deps, name, req.consistency).await?;
        let filter = self.filter(&def, req.filter.as_ref()).await?;
        let mut per_shard: HashMap<u32, Vec<RowId>> = HashMap::new();
        for id in ids {
            per_shard.entry(id.shard(def.shards)).or_default().push(id.clone());
        }
        // The filter is tested here, on the attributes of the few rows asked for.
        let wanted = (req.include_vector, req.include_attributes || filter.is_some(), req.consistency);
        let found = self.fetch_rows(&def, per_shard, &[], wanted).await?;
        // In request order; an id asked for twice is returned twice.
        Ok(ids
            .iter()
            .filter_map(|id| found.get(id).cloned())
            .filter(|r| filter.as_ref().is_none_or(|f| f.matches(r.attributes.as_ref())))
            .map(|r| ResultRow {
                id: r.id,
                score: None,
                vector: r.vector,
                attributes: r.attributes.filter(|_| req.include_attributes),
            })
            .collect())
    }

    /// One page of a shard's live rows in id order, from one replica (see `scan_shard`).
    pub async fn scan(&self, name: &str, req: ScanRequest) -> Result<ShardScan> {
        validate::scan(req.after.as_ref(), req.limit)?;
        let def = self.resolver.resolve(&self.deps, name).await?;
        validate::shard(&def, req.shard)?;
        let filter = self.filter(&def, req.filter.as_ref()).await?;
        let shard_req = ShardScanRequest { after: req.after, limit: req.limit, filter, include_vector: true };
        let (def, shard) = (&def, req.shard);
        let (page, _) = self
            .on_replicas(def, shard, None, move |t| {
                let shard_req = shard_req.clone();
                async move { t.scan_shard(&def.id, shard, shard_req).await }
            })
            .await?;
        Ok(page)
    }

    pub async fn list(&self) -> Result<Vec<CollectionInfo>> {
        let defs = catalog::list_active(self.deps.store.as_ref()).await?;
        Ok(defs.iter().map(CollectionInfo::from).collect())
    }

    pub async fn describe(&self, name: &str) -> Result<CollectionDescription> {
        let def = self.resolver.resolve(&self.deps, name).await?;
        let stats = join_all((0..def.shards).map(|shard| {
            let def = &def;
            self.on_replicas(def, shard, None, move |t| async move { t.describe_shard(&def.id, shard).await })
        }))
        .await;
        let mut shards = Vec::with_capacity(stats.len());
        for s in stats {
            let (s, _) = s?;
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
        let mut info = CollectionInfo::from(def.as_ref());
        let types = self.resolver.attr_types(&self.deps, &def);
        types.refresh(self.deps.clock.now()).await?;
        info.attributes = types.snapshot();
        Ok(CollectionDescription { info, stats })
    }
}
