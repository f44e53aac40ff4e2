//! Local shard hosting: the shards this node holds (assigned by the serving loop, or
//! loaded on demand when no replica answered) and the reads they answer — search, get,
//! scan, describe. It is the local side of [`ShardReads`]: the router asks it directly for
//! shards this node serves, and other nodes reach it through the wire side (`wire.rs`),
//! which validates what they send. Hosting itself trusts its callers.
//!
//! A shard answers only once it is loaded: the first refresh loads its manifest, segments
//! and WAL tail before the first read runs. Every read refreshes the shard first as its
//! freshness asks (`Freshness`), then reads one state under its read guard. A search
//! whose expected work is small (a graph walk: typically 0.1–0.5 ms) runs right there,
//! on the request's async worker: handing it to another thread would cost more CPU than
//! the search. A large one (an exact scan of a big unflushed tail, a very wide `ef`) runs
//! on the search pool (`pool.rs`), off the async runtime, so it cannot stall it; the
//! boundary is `query.inline_search_max_work`.
//!
//! Background refresh (decision 0015): [`ShardHost::refresh_in_use`] confirms every shard
//! read in the last minute as current every `eventual_max_lag_ms / 2`, the way a strong
//! read would (one head read when nothing changed), so an `eventual` read finds its shards
//! confirmed within `eventual_max_lag_ms` and answers from memory, with no request to
//! coordination or object storage. Shards nobody reads are left alone, so an idle node
//! stays idle; the first relaxed read after a pause refreshes on its own, as before.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, join_all};
use prometheus::{IntCounter, IntCounterVec};
use strata_coord::{HeadHints, shard_key};
use strata_deps::{Deps, Resolver};
use strata_rpc::{
    Hit, ShardCount, ShardGet, ShardReads, ShardRow, ShardScan, ShardScanRequest, ShardSearch, ShardStats,
};
use strata_storage::segment::{FilterPlan, prepare_query};
use strata_types::time::{ClockExt, Ticker};
use strata_types::{CollectionDef, Consistency, Metric, Result};
use tokio::sync::watch;

use crate::QueryConfig;
use crate::metrics::HeldShard;
use crate::pool::SearchPool;
use crate::shard::{Freshness, ShardReader};
use crate::validate;

/// A shard loaded on demand but not assigned is dropped after this long unused, and the
/// background refresher stops refreshing a shard after this long unread.
const IDLE_UNLOAD: Duration = Duration::from_secs(60);

/// The background refresher runs at most this often, whatever `eventual_max_lag_ms` says.
const MIN_REFRESH_PERIOD: Duration = Duration::from_millis(10);

/// (collection id, shard).
pub(crate) type Slot = (String, u32);

/// A shard held by this node.
struct LocalShard {
    reader: ShardReader,
    /// When a request last used it (ms since the host started), to unload idle shards
    /// that were loaded on demand.
    last_used_ms: AtomicU64,
}

/// The shards this node holds, and their reads.
pub(crate) struct ShardHost {
    deps: Deps,
    config: Arc<QueryConfig>,
    resolver: Arc<Resolver>,
    pool: SearchPool,
    shards: Mutex<HashMap<Slot, Arc<LocalShard>>>,
    started: Instant,
    /// `strata_query_filter_plans_total`, by plan.
    filter_plans: IntCounterVec,
    /// Bounded head reads for every shard held here (decision 0011).
    hints: Arc<HeadHints>,
    /// `strata_query_head_fallbacks_total`.
    head_fallbacks: IntCounter,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ShardHost {
    pub fn new(
        deps: Deps,
        config: Arc<QueryConfig>,
        resolver: Arc<Resolver>,
        filter_plans: IntCounterVec,
        head_fallbacks: IntCounter,
    ) -> ShardHost {
        let pool = SearchPool::new(config.search_threads);
        let started = deps.clock.now();
        let hints = Arc::new(HeadHints::default());
        ShardHost {
            deps,
            config,
            resolver,
            pool,
            shards: Mutex::default(),
            started,
            filter_plans,
            hints,
            head_fallbacks,
        }
    }

    fn now_ms(&self) -> u64 {
        self.deps.clock.elapsed(self.started).as_millis() as u64
    }

    /// Strong reads see every write acknowledged before now; eventual ones accept a state
    /// confirmed up to `eventual_max_lag_ms` ago (the refresher keeps shards in use well
    /// within that), bounded ones up to their `max_staleness_ms`.
    fn freshness(&self, consistency: Consistency) -> Freshness {
        match consistency {
            Consistency::Strong => Freshness::Strong { since: self.deps.clock.now() },
            Consistency::Eventual => {
                Freshness::Within { max_age: Duration::from_millis(self.config.eventual_max_lag_ms) }
            }
            Consistency::MaxStaleness { ms } => Freshness::Within { max_age: Duration::from_millis(ms) },
        }
    }

    /// The background refresher (see the module docs), until `shutdown`.
    pub async fn refresh_in_use(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let period = Duration::from_millis(self.config.eventual_max_lag_ms / 2).max(MIN_REFRESH_PERIOD);
        let mut ticker = Ticker::new(self.deps.clock.clone(), period);
        loop {
            tokio::select! {
                () = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            self.refresh_recently_read().await;
        }
    }

    /// Refreshes, all at once, every shard read within [`IDLE_UNLOAD`] to a strong state.
    pub(crate) async fn refresh_recently_read(&self) {
        let now = self.now_ms();
        let idle_ms = IDLE_UNLOAD.as_millis() as u64;
        let in_use: Vec<Arc<LocalShard>> = lock(&self.shards)
            .values()
            .filter(|l| now.saturating_sub(l.last_used_ms.load(Ordering::Relaxed)) < idle_ms)
            .cloned()
            .collect();
        let since = self.deps.clock.now();
        join_all(in_use.iter().map(|local| async move {
            if let Err(e) = local.reader.refresh(Freshness::Strong { since }).await {
                // The next tick tries again; meanwhile relaxed reads past their bound
                // refresh on their own.
                tracing::debug!(collection = %local.reader.def().name, error = %e, "background refresh failed");
            }
        }))
        .await;
    }

    /// The local copy of a shard (loaded on first use), refreshed to `freshness`.
    async fn shard(&self, collection_id: &str, shard: u32, freshness: Freshness) -> Result<Arc<LocalShard>> {
        let slot = (collection_id.to_owned(), shard);
        let existing = lock(&self.shards).get(&slot).cloned();
        let local = match existing {
            Some(local) => local,
            None => {
                let def = self.resolver.by_id(&self.deps, collection_id).await?;
                validate::shard(&def, shard)?;
                let fresh = Arc::new(LocalShard {
                    reader: ShardReader::new(
                        self.deps.clone(),
                        def,
                        shard,
                        self.hints.clone(),
                        self.head_fallbacks.clone(),
                    ),
                    last_used_ms: AtomicU64::new(0),
                });
                lock(&self.shards).entry(slot).or_insert(fresh).clone()
            }
        };
        local.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        local.reader.refresh(freshness).await?;
        Ok(local)
    }

    /// Loads a shard (or brings it up to date) so it can serve: the serving loop's step
    /// between recording `loading` and `serving`.
    pub async fn load(&self, collection_id: &str, shard: u32) -> Result<()> {
        self.shard(collection_id, shard, self.freshness(Consistency::Strong)).await.map(|_| ())
    }

    /// Forgets a shard (handed over to other replicas, or of a dropped collection).
    pub fn unload(&self, slot: &Slot) {
        lock(&self.shards).remove(slot);
    }

    /// Drops shards that are neither in `assigned` nor recently used, and every shard of
    /// a collection not in `active`.
    pub fn unload_idle(&self, active: &[Arc<CollectionDef>], assigned: &HashSet<Slot>) {
        let now = self.now_ms();
        let idle_ms = IDLE_UNLOAD.as_millis() as u64;
        lock(&self.shards).retain(|slot, local| {
            let is_active = active.iter().any(|d| d.id == slot.0);
            let recently_used = now.saturating_sub(local.last_used_ms.load(Ordering::Relaxed)) < idle_ms;
            is_active && (assigned.contains(slot) || recently_used)
        });
    }

    /// Rows and segments of every shard held here, for the metrics.
    pub fn held(&self) -> Vec<HeldShard> {
        lock(&self.shards)
            .iter()
            .map(|((_, shard), local)| {
                let state = local.reader.read();
                HeldShard {
                    collection: local.reader.def().name.clone(),
                    shard: *shard,
                    rows: ShardReader::live_rows(&state),
                    segments: state.manifest.segments.len() as u64,
                }
            })
            .collect()
    }

    /// The shard's top-k hits; materialises vectors and attributes only if asked.
    pub async fn search(&self, collection_id: &str, shard: u32, req: ShardSearch) -> Result<Vec<Hit>> {
        let local = self.shard(collection_id, shard, self.freshness(req.consistency)).await?;
        let metric = local.reader.def().metric;
        let query: Arc<[f32]> = match metric {
            Metric::Cosine => prepare_query(metric, &req.vector).into(),
            Metric::Dot | Metric::L2 => req.vector,
        };
        let (k, ef) = (req.top_k as usize, req.ef.max(req.top_k) as usize);
        let (with_vector, with_attributes) = (req.include_vector, req.include_attributes);
        let filter = req.filter;
        let plans = self.filter_plans.clone();
        let dim = local.reader.def().dimension as usize;
        let inline = ShardReader::search_work(&local.reader.read(), ef, dim) <= self.config.inline_search_max_work;
        let search = move || {
            // Rows are materialised under the same read guard as the search: a refresh
            // may swap the segment list right after the guard is released.
            let state = local.reader.read();
            let count_plan = |plan: FilterPlan| plans.with_label_values(&[plan.label()]).inc();
            ShardReader::search(&state, &query, k, ef, filter.as_deref(), &count_plan)
                .into_iter()
                .map(|found| {
                    let id = ShardReader::id(&state, found.location);
                    let (vector, attributes) =
                        ShardReader::payload(&state, found.location, with_vector, with_attributes);
                    Hit { id, distance: found.distance, vector, attributes }
                })
                .collect()
        };
        if inline { Ok(search()) } else { self.pool.run(search).await }
    }

    /// The rows that exist among `req.ids`.
    pub async fn get(&self, collection_id: &str, shard: u32, req: ShardGet) -> Result<Vec<ShardRow>> {
        let local = self.shard(collection_id, shard, self.freshness(req.consistency)).await?;
        let state = local.reader.read();
        let rows = req
            .ids
            .into_iter()
            .filter_map(|id| ShardReader::get(&state, &id).map(|loc| (id, loc)))
            .map(|(id, loc)| {
                let (vector, attributes) =
                    ShardReader::payload(&state, loc, req.include_vector, req.include_attributes);
                ShardRow { id, vector, attributes }
            })
            .collect();
        Ok(rows)
    }

    /// One page of live rows (matching the filter, if any) in id order, strongly consistent.
    pub async fn scan(&self, collection_id: &str, shard: u32, req: ShardScanRequest) -> Result<ShardScan> {
        let local = self.shard(collection_id, shard, self.freshness(Consistency::Strong)).await?;
        let state = local.reader.read();
        let (page, more) = ShardReader::scan(&state, req.after.as_ref(), req.limit as usize, req.filter.as_deref());
        let next_after = if more { page.last().map(|(id, _)| id.clone()) } else { None };
        let rows = page
            .into_iter()
            .map(|(id, loc)| {
                let (vector, attributes) = ShardReader::payload(&state, loc, req.include_vector, true);
                ShardRow { id, vector, attributes }
            })
            .collect();
        Ok(ShardScan { rows, next_after })
    }

    /// Live rows matching the filter (all live rows without one).
    pub async fn count(&self, collection_id: &str, shard: u32, req: ShardCount) -> Result<u64> {
        let local = self.shard(collection_id, shard, self.freshness(req.consistency)).await?;
        let state = local.reader.read();
        Ok(match &req.filter {
            Some(filter) => ShardReader::count(&state, filter),
            None => ShardReader::live_rows(&state),
        })
    }

    /// The shard's statistics as this node sees it (strongly consistent).
    pub async fn describe(&self, collection_id: &str, shard: u32) -> Result<ShardStats> {
        let local = self.shard(collection_id, shard, self.freshness(Consistency::Strong)).await?;
        // The head only adds what the writer acknowledged beyond what was applied here; the
        // shard was refreshed above, so without it (coordination down) the count is exact.
        let key = shard_key(collection_id, shard);
        let head = self.hints.read(self.deps.coord.as_ref(), self.deps.clock.as_ref(), &key).await;
        let head = head.ok().flatten().unwrap_or_default();
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

/// The local, trusted side of the read API: the router's direct calls.
impl ShardReads for ShardHost {
    fn search_shard(&self, collection_id: &str, shard: u32, req: ShardSearch) -> BoxFuture<'_, Result<Vec<Hit>>> {
        let collection_id = collection_id.to_owned();
        Box::pin(async move { self.search(&collection_id, shard, req).await })
    }

    fn get_rows(&self, collection_id: &str, shard: u32, req: ShardGet) -> BoxFuture<'_, Result<Vec<ShardRow>>> {
        let collection_id = collection_id.to_owned();
        Box::pin(async move { self.get(&collection_id, shard, req).await })
    }

    fn describe_shard(&self, collection_id: &str, shard: u32) -> BoxFuture<'_, Result<ShardStats>> {
        let collection_id = collection_id.to_owned();
        Box::pin(async move { self.describe(&collection_id, shard).await })
    }

    fn scan_shard(&self, collection_id: &str, shard: u32, req: ShardScanRequest) -> BoxFuture<'_, Result<ShardScan>> {
        let collection_id = collection_id.to_owned();
        Box::pin(async move { self.scan(&collection_id, shard, req).await })
    }

    fn count_shard(&self, collection_id: &str, shard: u32, req: ShardCount) -> BoxFuture<'_, Result<u64>> {
        let collection_id = collection_id.to_owned();
        Box::pin(async move { self.count(&collection_id, shard, req).await })
    }
}
