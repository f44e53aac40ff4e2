//! The compactor role: a background loop that, every `interval_ms`, takes each active
//! shard's compaction lease in turn, compacts it while there is work, garbage-collects it,
//! and gives the lease back; then sweeps dropped collections.
//!
//! Idle shards cost (almost) nothing: the loop visits a shard only when its published head
//! moved since the last visit (any flush or compaction publishes one), when the head
//! cannot be read (etcd unreachable: the old cadence), or every `idle_visit_ms`; the
//! active collections come from `ActiveCollections` (listed when the catalog changed).
//! Explicit passes ([`Compactor::run_once`]) visit everything (decision 0012).
//!
//! Leases only decide who *should* work on a shard; correctness rests on create-only
//! manifest commits (see the `merge` module). The lease epoch is stamped into every manifest
//! this role commits. Leases are taken per pass and released after it, so several
//! compactors share the shards without any assignment step.
//!
//! Within one process, all work (the loop and the admin calls) is serialised by one lock:
//! compaction is CPU-bound and a second concurrent pass would only contend for the cores.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_coord::{Head, HeadHints, Lease, LeaseKind, shard_key};
use strata_deps::{ActiveCollections, Deps};
use strata_storage::paths::ShardPaths;
use strata_types::CollectionDef;
use strata_types::time::ClockExt;
use strata_types::{Error, Result};
use tokio::sync::{Mutex, watch};

use crate::config::CompactorConfig;
use crate::gc::{self, CatalogMemo};
use crate::merge;
use crate::metrics::CompactorMetrics;
use crate::report::{CompactionReport, GcReport, PassReport};

/// Compactions of one shard per pass at most, so a shard under constant churn cannot
/// starve the others (the rest waits for the next pass).
const MAX_COMPACTIONS_PER_SHARD_PASS: usize = 64;

/// A running compactor. Cheap to clone.
#[derive(Clone)]
pub struct Compactor {
    inner: Arc<Inner>,
}

struct Inner {
    config: CompactorConfig,
    deps: Deps,
    metrics: CompactorMetrics,
    shutdown: watch::Receiver<bool>,
    work: Mutex<WorkState>,
}

/// State of the serialised work.
#[derive(Default)]
struct WorkState {
    catalog: CatalogMemo,
    /// Newest manifest version seen per shard: a hint that saves a listing per pass.
    hints: HashMap<ShardPaths, u64>,
    /// The active collections, re-listed when the catalog changes.
    active: Option<ActiveCollections>,
    /// Per shard: its published head when last visited, and when.
    visited: HashMap<ShardPaths, (Option<Head>, Instant)>,
    /// The catalog versions and time of the last sweep of dropped collections.
    swept: Option<(Option<BTreeMap<String, u64>>, Instant)>,
    /// Bounded head reads (etcd may be down: then every shard is visited).
    heads: HeadHints,
}

/// Starts the compactor: validates the config and spawns the background loop, which runs
/// until `shutdown` turns true (or its sender is dropped).
pub async fn start(config: CompactorConfig, deps: Deps, shutdown: watch::Receiver<bool>) -> Result<Compactor> {
    config.validate()?;
    let compactor = Compactor {
        inner: Arc::new(Inner {
            config,
            metrics: CompactorMetrics::register(&deps.metrics),
            deps,
            shutdown: shutdown.clone(),
            work: Mutex::new(WorkState::default()),
        }),
    };
    tokio::spawn(run_loop(compactor.clone(), shutdown));
    Ok(compactor)
}

async fn run_loop(compactor: Compactor, mut shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_millis(compactor.inner.config.interval_ms);
    loop {
        tokio::select! {
            () = compactor.inner.deps.clock.sleep(interval) => {}
            changed = shutdown.changed() => {
                if changed.is_err() {
                    break;
                }
            }
        }
        if *shutdown.borrow() {
            break;
        }
        match compactor.pass(false).await {
            Ok(report) if !report.errors.is_empty() => {
                tracing::warn!(errors = ?report.errors, "compaction pass finished with errors");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "compaction pass failed"),
        }
    }
    tracing::info!("compactor stopped");
}

impl Compactor {
    pub fn config(&self) -> &CompactorConfig {
        &self.inner.config
    }

    fn stopping(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// One pass over every active collection's shards: compact (repeating while there is
    /// work) then garbage-collect each shard whose lease this node gets; then delete dropped
    /// collections past the grace. Failures of one shard are reported and the pass goes on.
    pub async fn run_once(&self) -> Result<PassReport> {
        self.pass(true).await
    }

    /// One pass; `full` visits every shard and sweeps, otherwise only what may have work
    /// (see the module docs).
    async fn pass(&self, full: bool) -> Result<PassReport> {
        let mut work = self.inner.work.lock().await;
        let work = &mut *work;
        let deps = &self.inner.deps;
        let config = &self.inner.config;
        let started = deps.clock.now();
        let mut report = PassReport::default();
        let active =
            work.active.get_or_insert_with(|| ActiveCollections::new(Duration::from_millis(config.catalog_poll_ms)));
        if full {
            active.invalidate();
        }
        let defs = active.get(deps).await?;
        work.hints.retain(|paths, _| defs.iter().any(|d| d.id == paths.collection_id));
        work.visited.retain(|paths, _| defs.iter().any(|d| d.id == paths.collection_id));
        let idle_visit = Duration::from_millis(config.idle_visit_ms);
        'collections: for def in &defs {
            for shard in 0..def.shards {
                if self.stopping() {
                    break 'collections;
                }
                let paths = ShardPaths::new(def.id.clone(), shard);
                let head = work.heads.read(deps.coord.as_ref(), deps.clock.as_ref(), &shard_key(&def.id, shard)).await;
                let unchanged = |(seen, at): &(Option<Head>, Instant)| {
                    head.as_ref().is_ok_and(|h| h == seen) && deps.clock.elapsed(*at) < idle_visit
                };
                if !full && work.visited.get(&paths).is_some_and(unchanged) {
                    report.shards_skipped += 1;
                    continue;
                }
                let outcome = self.shard_pass(work, def, shard).await;
                if let (Ok(head), Ok(_)) = (head, &outcome) {
                    work.visited.insert(paths, (head, started));
                }
                match outcome {
                    Ok(None) => report.shards_skipped += 1,
                    Ok(Some((compactions, gc))) => {
                        report.shards += 1;
                        report.compactions.extend(compactions);
                        report.gc.add(&gc);
                    }
                    Err(e) => {
                        report.shards += 1;
                        tracing::warn!(collection = %def.name, shard, error = %e, "shard maintenance failed");
                        report.errors.push(format!("collection {:?} shard {shard}: {e}", def.name));
                    }
                }
            }
        }
        let catalog = deps.coord.view().borrow().catalog.clone();
        let sweep_due = full
            || catalog.is_none()
            || work.swept.as_ref().is_none_or(|(seen, at)| *seen != catalog || deps.clock.elapsed(*at) >= idle_visit);
        if sweep_due && !self.stopping() {
            work.swept = Some((catalog, started));
            let grace = self.inner.config.gc_grace_ms;
            match gc::gc_collections(deps, grace, &mut work.catalog).await {
                Ok(gc) => report.gc.add(&gc),
                Err(e) => {
                    tracing::warn!(error = %e, "collection garbage collection failed");
                    report.errors.push(format!("collection sweep: {e}"));
                }
            }
        }
        report.seconds = deps.clock.elapsed(started).as_secs_f64();
        self.count_gc(&report.gc);
        let eventful = !report.compactions.is_empty() || report.gc.objects_deleted > 0 || !report.errors.is_empty();
        // A quiet pass every few seconds is not news.
        if eventful {
            tracing::info!(
                shards = report.shards,
                skipped = report.shards_skipped,
                compactions = report.compactions.len(),
                deleted_objects = report.gc.objects_deleted,
                deleted_bytes = report.gc.bytes_deleted,
                errors = report.errors.len(),
                seconds = report.seconds,
                "compaction pass done"
            );
        } else {
            tracing::debug!(shards = report.shards, seconds = report.seconds, "compaction pass found nothing to do");
        }
        Ok(report)
    }

    /// Compacts and collects one shard under its lease; `None` if another node holds it.
    async fn shard_pass(
        &self,
        work: &mut WorkState,
        def: &CollectionDef,
        shard: u32,
    ) -> Result<Option<(Vec<CompactionReport>, GcReport)>> {
        let Some(lease) = self.acquire(def, shard).await? else {
            return Ok(None);
        };
        let result = async {
            let mut compactions = Vec::new();
            while compactions.len() < MAX_COMPACTIONS_PER_SHARD_PASS && !self.stopping() {
                match self.compact_leased(work, def, shard, &lease).await? {
                    Some(r) => compactions.push(r),
                    None => break,
                }
            }
            let gc =
                gc::gc_shard(&self.inner.deps, &ShardPaths::new(def.id.clone(), shard), self.inner.config.gc_grace_ms)
                    .await?;
            Ok((compactions, gc))
        }
        .await;
        self.release(&lease).await;
        result.map(Some)
    }

    /// Compacts one shard once (re-planning if a concurrent compaction made the merge moot).
    /// `None` when it has nothing to compact. `Conflict` if another node holds the shard's
    /// compaction lease.
    pub async fn compact_shard(&self, def: &CollectionDef, shard: u32) -> Result<Option<CompactionReport>> {
        let mut work = self.inner.work.lock().await;
        let lease = self.acquire_or_conflict(def, shard).await?;
        let result = self.compact_leased(&mut work, def, shard, &lease).await;
        self.release(&lease).await;
        result
    }

    /// Garbage-collects one shard. `Conflict` if another node holds its compaction lease.
    pub async fn gc_shard(&self, def: &CollectionDef, shard: u32) -> Result<GcReport> {
        let _work = self.inner.work.lock().await;
        let lease = self.acquire_or_conflict(def, shard).await?;
        let paths = ShardPaths::new(def.id.clone(), shard);
        let result = gc::gc_shard(&self.inner.deps, &paths, self.inner.config.gc_grace_ms).await;
        self.release(&lease).await;
        if let Ok(gc) = &result {
            self.count_gc(gc);
        }
        result
    }

    fn count_gc(&self, gc: &GcReport) {
        self.inner.metrics.observe_gc(gc);
    }

    async fn compact_leased(
        &self,
        work: &mut WorkState,
        def: &CollectionDef,
        shard: u32,
        lease: &Lease,
    ) -> Result<Option<CompactionReport>> {
        let deps = &self.inner.deps;
        let paths = ShardPaths::new(def.id.clone(), shard);
        let mut hint = work.hints.get(&paths).copied();
        let result = merge::compact_once(deps, def, &paths, &self.inner.config, lease.epoch, &mut hint).await;
        if let Some(h) = hint {
            work.hints.insert(paths, h);
        }
        if let Ok(Some(report)) = &result {
            self.inner.metrics.observe_compaction(report.seconds);
            // Wake query nodes so they pick the merged segment up promptly. The WAL head is
            // the writer's to move: republish the one already known.
            let published = async {
                let wal_seq = deps.coord.head(&lease.key).await?.map_or(0, |h| h.wal_seq);
                deps.coord.publish_head(&lease.key, Head { wal_seq, manifest_version: report.manifest_version }).await
            };
            if let Err(e) = published.await {
                tracing::warn!(key = %lease.key, error = %e, "could not publish the shard head");
            }
        }
        result
    }

    async fn acquire(&self, def: &CollectionDef, shard: u32) -> Result<Option<Lease>> {
        let deps = &self.inner.deps;
        deps.coord.try_acquire(LeaseKind::Compact, &shard_key(&def.id, shard), &deps.node_id).await
    }

    async fn acquire_or_conflict(&self, def: &CollectionDef, shard: u32) -> Result<Lease> {
        self.acquire(def, shard).await?.ok_or_else(|| {
            Error::conflict(format!(
                "shard {shard} of collection {:?} is being compacted by another node; retry later",
                def.name
            ))
        })
    }

    async fn release(&self, lease: &Lease) {
        // A lease we fail to release expires with our coordination session; nothing to undo.
        if let Err(e) = self.inner.deps.coord.release(lease).await {
            tracing::warn!(key = %lease.key, error = %e, "could not release the compaction lease");
        }
    }
}
