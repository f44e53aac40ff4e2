//! The serving loop: which shards this query node serves.
//!
//! Every tick (and on every cluster-view change) the node computes, for each shard of each
//! active collection (listed from object storage only when the catalog changed, every
//! `catalog_poll_ms`, or every tick while etcd is unreachable: `ActiveCollections`), the
//! `replication` rendezvous owners among live, non-draining query nodes. Every node computes the same answer, so assignment needs no coordinator and is
//! stable while membership is (no lease moves back and forth).
//!
//! Make before break: a newly assigned shard is recorded `loading`, loaded (manifest,
//! segments through the cache, WAL tail), then recorded `serving`. A node gives a shard up
//! only once every node now assigned to it records `serving`, so the shard never drops
//! below its serving replicas during a handoff. Shards of dropped collections are given up
//! at once; shards loaded on demand (not assigned) are unloaded after a minute unused.
//!
//! While etcd is unreachable the view stops changing, so the node keeps serving its
//! last-known assignment. A shard for which the view names no eligible owner at all (every
//! session expired while etcd was down, or every node drains) is never given up: nobody
//! would take it over (decision 0011).
//!
//! State: the assignments and how far loading got ([`Serving`] owns them); the shards
//! themselves belong to shard hosting, which this loop tells what to load and unload.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use strata_coord::{ClusterView, ServeState, ServingRecord, shard_key};
use strata_deps::{ActiveCollections, Deps};
use strata_types::time::ClockExt;
use strata_types::{CollectionDef, Result};
use tokio::sync::watch;

use crate::host::{ShardHost, Slot};
use crate::metrics::QueryMetrics;

const TICK: Duration = Duration::from_millis(500);
/// Shards loaded at once.
const LOAD_CONCURRENCY: usize = 4;

/// This node's serving assignments and the loop that keeps them in line with the cluster.
pub(crate) struct Serving {
    deps: Deps,
    host: Arc<ShardHost>,
    metrics: Arc<QueryMetrics>,
    /// Shards assigned to this node, and how far it got loading them.
    assigned: Mutex<HashMap<Slot, ServeState>>,
    /// A planning pass has completed (readiness needs one).
    reconciled: AtomicBool,
    /// Every shard assigned to this node was serving at some point since it started: it
    /// stays ready from then on (see [`Serving::is_ready`]).
    ready: AtomicBool,
    catalog: tokio::sync::Mutex<ActiveCollections>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The nodes that should serve a shard.
fn desired<'a>(view: &'a ClusterView, def: &CollectionDef, shard: u32) -> Vec<&'a str> {
    view.serving_owners(&shard_key(&def.id, shard), def.replication)
}

impl Serving {
    /// `catalog_poll`: how often the catalog is listed while the view reports no change.
    pub fn new(deps: Deps, host: Arc<ShardHost>, metrics: Arc<QueryMetrics>, catalog_poll: Duration) -> Serving {
        Serving {
            deps,
            host,
            metrics,
            assigned: Mutex::default(),
            reconciled: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            catalog: tokio::sync::Mutex::new(ActiveCollections::new(catalog_poll)),
        }
    }

    /// Runs the serving loop until `shutdown`; `first` is what the initial [`Serving::plan`]
    /// (run by `start`, so readiness is accurate from the start) left to load.
    pub async fn run(self: Arc<Self>, first: Vec<Slot>, mut shutdown: watch::Receiver<bool>) {
        self.load_all(first).await;
        let mut view = self.deps.coord.view();
        loop {
            tokio::select! {
                () = self.deps.clock.sleep(TICK) => {}
                changed = view.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            match self.plan().await {
                Ok(to_load) => self.load_all(to_load).await,
                Err(e) => tracing::warn!(error = %e, "could not reconcile served shards; retrying"),
            }
        }
    }

    /// Whether the node has finished its first load: every shard assigned to it was
    /// loaded and serving at once. It then stays ready while it loads shards assigned
    /// later (a new collection, a rebalance), which their other replicas serve meanwhile:
    /// a node that left its load balancer whenever a collection was created, or every
    /// node at once during a rebalance, would take capacity away for nothing.
    pub fn is_ready(&self) -> bool {
        if self.ready.load(Ordering::Relaxed) {
            return true;
        }
        let ready =
            self.reconciled.load(Ordering::Relaxed) && lock(&self.assigned).values().all(|s| *s == ServeState::Serving);
        if ready {
            self.ready.store(true, Ordering::Relaxed);
        }
        ready
    }

    /// (serving, assigned) shard counts: load progress.
    pub fn load_progress(&self) -> (usize, usize) {
        let assigned = lock(&self.assigned);
        (assigned.values().filter(|s| **s == ServeState::Serving).count(), assigned.len())
    }

    /// Works out which shards this node should serve: marks newly assigned ones `loading`
    /// (returned, for [`Serving::load_all`]) and gives up the ones it should no longer
    /// serve once their new owners serve them (make before break).
    pub async fn plan(&self) -> Result<Vec<Slot>> {
        let deps = &self.deps;
        let me = deps.node_id.as_str();
        let defs = self.catalog.lock().await.get(deps).await?;
        let view = deps.coord.view().borrow().clone();

        let mut wanted = HashSet::new();
        let mut to_load = Vec::new();
        for def in &defs {
            for shard in 0..def.shards {
                if desired(&view, def, shard).contains(&me) {
                    let slot = (def.id.clone(), shard);
                    let mut assigned = lock(&self.assigned);
                    if assigned.get(&slot) != Some(&ServeState::Serving) {
                        assigned.insert(slot.clone(), ServeState::Loading);
                        to_load.push(slot.clone());
                    }
                    wanted.insert(slot);
                }
            }
        }

        let held: Vec<Slot> = lock(&self.assigned).keys().cloned().collect();
        for slot in held {
            if wanted.contains(&slot) {
                continue;
            }
            let (id, shard) = (&slot.0, slot.1);
            let def = defs.iter().find(|d| d.id == *id);
            // With no eligible owner at all (the view lost every query member: etcd was
            // restarted and sessions expired; or every node drains) nobody would take the
            // shard over, so it stays here (decision 0011). Serving a shard that may have
            // moved is harmless: reads come from object storage; this node writes nothing.
            let handed_over = def.is_none_or(|def| {
                let owners = desired(&view, def, shard);
                !owners.is_empty()
                    && owners
                        .iter()
                        .all(|n| view.serving_of(id, shard).any(|r| r.node_id == *n && r.state == ServeState::Serving))
            });
            if handed_over {
                tracing::info!(collection_id = %id, shard, "no longer serving the shard");
                deps.coord.clear_serving(id, shard, me).await?;
                self.metrics.handoffs.inc();
                lock(&self.assigned).remove(&slot);
                self.host.unload(&slot);
            }
        }
        let assigned: HashSet<Slot> = lock(&self.assigned).keys().cloned().collect();
        self.host.unload_idle(&defs, &assigned);
        self.reconciled.store(true, Ordering::Relaxed);
        Ok(to_load)
    }

    /// Loads newly assigned shards, a few at a time.
    pub async fn load_all(&self, to_load: Vec<Slot>) {
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
        let deps = &self.deps;
        let record = |state| ServingRecord {
            collection_id: collection_id.to_owned(),
            shard,
            node_id: deps.node_id.clone(),
            state,
        };
        deps.coord.set_serving(record(ServeState::Loading)).await?;
        let started = deps.clock.now();
        self.host.load(collection_id, shard).await?;
        deps.coord.set_serving(record(ServeState::Serving)).await?;
        lock(&self.assigned).insert((collection_id.to_owned(), shard), ServeState::Serving);
        let took = deps.clock.elapsed(started);
        self.metrics.shard_load_seconds.observe(took.as_secs_f64());
        tracing::info!(collection_id, shard, took_ms = took.as_millis() as u64, "serving the shard");
        Ok(())
    }
}
