//! The serving loop: which shards this query node serves.
//!
//! Every tick (and on every cluster-view change) the node computes, for each shard of each
//! active collection, the `replication` rendezvous owners among live, non-draining query
//! nodes. Every node computes the same answer, so assignment needs no coordinator and is
//! stable while membership is (no lease moves back and forth).
//!
//! Make before break: a newly assigned shard is recorded `loading`, loaded (manifest,
//! segments through the cache, WAL tail), then recorded `serving`. A node gives a shard up
//! only once every node now assigned to it records `serving`, so the shard never drops
//! below its serving replicas during a handoff. Shards of dropped collections are given up
//! at once; shards loaded on demand (not assigned) are unloaded after a minute unused.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_coord::{ClusterView, ServeState, ServingRecord, shard_key};
use strata_storage::catalog;
use strata_types::CollectionDef;
use strata_types::Result;
use tokio::sync::watch;

use crate::metrics::HeldShard;
use crate::node::{QueryNode, lock};
use crate::shard::ShardReader;

const TICK: Duration = Duration::from_millis(500);
/// Shards loaded at once.
const LOAD_CONCURRENCY: usize = 4;
/// A shard loaded on demand but not assigned is dropped after this long unused.
const IDLE_UNLOAD_MS: u64 = 60_000;

/// Runs the serving loop; `first` is what the initial [`QueryNode::plan_serving`] (run by
/// `start`, so readiness is accurate from the start) left to load.
pub(crate) async fn run(node: QueryNode, first: Vec<(String, u32)>, mut shutdown: watch::Receiver<bool>) {
    node.load_all(first).await;
    let mut view = node.inner.deps.coord.view();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            changed = view.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match node.plan_serving().await {
            Ok(to_load) => node.load_all(to_load).await,
            Err(e) => tracing::warn!(error = %e, "could not reconcile served shards; retrying"),
        }
    }
}

/// The nodes that should serve a shard.
fn desired<'a>(view: &'a ClusterView, def: &CollectionDef, shard: u32) -> Vec<&'a str> {
    view.serving_owners(&shard_key(&def.id, shard), def.replication)
}

impl QueryNode {
    /// Whether every shard assigned to this node is loaded and serving.
    pub fn is_ready(&self) -> bool {
        self.inner.reconciled.load(Ordering::Relaxed)
            && lock(&self.inner.assigned).values().all(|s| *s == ServeState::Serving)
    }

    /// (serving, assigned) shard counts: load progress.
    pub fn load_progress(&self) -> (usize, usize) {
        let assigned = lock(&self.inner.assigned);
        (assigned.values().filter(|s| **s == ServeState::Serving).count(), assigned.len())
    }

    /// Copies rows and segments of every shard held here, and the load progress, into the
    /// metrics gauges (called at scrape time).
    pub fn export_metrics(&self) {
        let shards: Vec<HeldShard> = lock(&self.inner.shards)
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
            .collect();
        let (serving, assigned) = self.load_progress();
        self.inner.metrics.export_shards(shards, serving, assigned);
    }

    /// Works out which shards this node should serve: marks newly assigned ones
    /// `loading` (returned, for [`QueryNode::load_all`]) and gives up the ones it should no
    /// longer serve once their new owners serve them (make before break).
    pub(crate) async fn plan_serving(&self) -> Result<Vec<(String, u32)>> {
        let deps = &self.inner.deps;
        let me = deps.node_id.clone();
        let defs = catalog::list_active(deps.store.as_ref()).await?;
        let view = deps.coord.view().borrow().clone();

        let mut wanted = HashSet::new();
        let mut to_load = Vec::new();
        for def in &defs {
            for shard in 0..def.shards {
                if desired(&view, def, shard).contains(&me.as_str()) {
                    let slot = (def.id.clone(), shard);
                    let mut assigned = lock(&self.inner.assigned);
                    if assigned.get(&slot) != Some(&ServeState::Serving) {
                        assigned.insert(slot.clone(), ServeState::Loading);
                        to_load.push(slot.clone());
                    }
                    wanted.insert(slot);
                }
            }
        }

        let held: Vec<(String, u32)> = lock(&self.inner.assigned).keys().cloned().collect();
        for (id, shard) in held {
            if wanted.contains(&(id.clone(), shard)) {
                continue;
            }
            let def = defs.iter().find(|d| d.id == id);
            let handed_over = def.is_none_or(|def| {
                desired(&view, def, shard)
                    .iter()
                    .all(|n| view.serving_of(&id, shard).any(|r| r.node_id == *n && r.state == ServeState::Serving))
            });
            if handed_over {
                tracing::info!(collection_id = %id, shard, "no longer serving the shard");
                deps.coord.clear_serving(&id, shard, &me).await?;
                self.inner.metrics.handoffs.inc();
                lock(&self.inner.assigned).remove(&(id.clone(), shard));
                lock(&self.inner.shards).remove(&(id, shard));
            }
        }
        self.unload_idle(&defs);
        self.inner.reconciled.store(true, Ordering::Relaxed);
        Ok(to_load)
    }

    /// Loads newly assigned shards, a few at a time.
    pub(crate) async fn load_all(&self, to_load: Vec<(String, u32)>) {
        futures::stream::iter(to_load)
            .map(|(id, shard)| async move {
                if let Err(e) = self.load_assigned(&id, shard).await {
                    tracing::warn!(collection_id = %id, shard, error = %e, "loading an assigned shard failed");
                }
            })
            .buffer_unordered(LOAD_CONCURRENCY)
            .collect::<Vec<()>>()
            .await;
    }

    async fn load_assigned(&self, collection_id: &str, shard: u32) -> Result<()> {
        let deps = &self.inner.deps;
        let record = |state| ServingRecord {
            collection_id: collection_id.to_owned(),
            shard,
            node_id: deps.node_id.clone(),
            state,
        };
        let slot = (collection_id.to_owned(), shard);
        deps.coord.set_serving(record(ServeState::Loading)).await?;
        let started = Instant::now();
        self.local_shard(collection_id, shard, started, None).await?;
        deps.coord.set_serving(record(ServeState::Serving)).await?;
        lock(&self.inner.assigned).insert(slot, ServeState::Serving);
        self.inner.metrics.shard_load_seconds.observe(started.elapsed().as_secs_f64());
        tracing::info!(collection_id, shard, took_ms = started.elapsed().as_millis() as u64, "serving the shard");
        Ok(())
    }

    /// Drops local shards that are neither assigned nor recently used, and every shard of
    /// a collection that is no longer active.
    fn unload_idle(&self, defs: &[CollectionDef]) {
        let now = self.now_ms();
        let assigned = lock(&self.inner.assigned).keys().cloned().collect::<HashSet<_>>();
        lock(&self.inner.shards).retain(|slot, local| {
            let active = defs.iter().any(|d| d.id == slot.0);
            let recently_used = now.saturating_sub(local.last_used_ms.load(Ordering::Relaxed)) < IDLE_UNLOAD_MS;
            active && (assigned.contains(slot) || recently_used)
        });
    }
}
