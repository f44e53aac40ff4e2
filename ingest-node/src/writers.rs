//! The writer registry: the shard writers running on this node, by (collection id,
//! shard). A writer holds its shard's writer lease for as long as it runs; the registry
//! starts writers (taking the lease, recovering the unflushed WAL tail) and drops them
//! (which releases the lease) — it decides nothing about *which* shards this node should
//! write: that is ownership's (`ownership.rs`) and routing's (`routing.rs`).
//!
//! Once the node shuts down the registry starts no writer (a write routed here then gets a
//! retryable error instead of taking a lease back), and [`WriterRegistry::stop_all`] waits
//! for the running ones to step down.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use strata_deps::Deps;
use strata_types::{CollectionDef, Error, Result};
use tokio::sync::{Mutex, watch};

use crate::config::IngestConfig;
use crate::metrics::IngestMetrics;
use crate::writer::ShardWriter;

/// (collection id, shard).
pub(crate) type Slot = (String, u32);

/// The shard writers running on this node.
pub(crate) struct WriterRegistry {
    deps: Deps,
    config: Arc<IngestConfig>,
    metrics: Arc<IngestMetrics>,
    shutdown: watch::Receiver<bool>,
    writers: Mutex<HashMap<Slot, Arc<ShardWriter>>>,
}

impl WriterRegistry {
    pub fn new(
        deps: Deps,
        config: Arc<IngestConfig>,
        metrics: Arc<IngestMetrics>,
        shutdown: watch::Receiver<bool>,
    ) -> WriterRegistry {
        WriterRegistry { deps, config, metrics, shutdown, writers: Mutex::default() }
    }

    /// The running writer of a shard, if this node has one.
    pub async fn running(&self, collection_id: &str, shard: u32) -> Option<Arc<ShardWriter>> {
        let writers = self.writers.lock().await;
        writers.get(&(collection_id.to_owned(), shard)).filter(|w| !w.is_stopped()).cloned()
    }

    /// The shard's writer, started (lease taken, WAL tail recovered) if none runs.
    pub async fn start(&self, def: &Arc<CollectionDef>, shard: u32) -> Result<Arc<ShardWriter>> {
        let mut writers = self.writers.lock().await;
        // Checked under the lock `stop_all` takes: no writer starts after it drained them.
        if *self.shutdown.borrow() {
            return Err(Error::retryable("this node is shutting down; retry (another node takes over its shards)"));
        }
        let slot = (def.id.clone(), shard);
        if let Some(w) = writers.get(&slot) {
            if !w.is_stopped() {
                return Ok(w.clone());
            }
            writers.remove(&slot);
        }
        let writer = Arc::new(
            ShardWriter::start(
                self.deps.clone(),
                self.metrics.clone(),
                def.clone(),
                shard,
                self.config.clone(),
                self.shutdown.clone(),
            )
            .await?,
        );
        writers.insert(slot, writer.clone());
        Ok(writer)
    }

    /// Keeps the running writers of `owned` shards and drops every other one (each dropped
    /// writer's actor stops and releases its lease), counting them as handoffs.
    pub async fn keep_only(&self, owned: &HashSet<Slot>) {
        let mut writers = self.writers.lock().await;
        writers.retain(|slot, w| {
            let keep = owned.contains(slot) && !w.is_stopped();
            if !keep {
                tracing::info!(collection_id = %slot.0, shard = slot.1, "handing over the shard's writer");
                self.metrics.handoffs.inc();
            }
            keep
        });
    }

    /// After shutdown was signalled: waits until every writer has answered its last group
    /// commit and released its lease, so the shard's next writer can start at once.
    pub async fn stop_all(&self) {
        let writers: Vec<Arc<ShardWriter>> = self.writers.lock().await.drain().map(|(_, w)| w).collect();
        futures::future::join_all(writers.iter().map(|w| w.stopped())).await;
    }

    /// Drops every writer of a collection incarnation (it was dropped).
    pub async fn drop_collection(&self, collection_id: &str) {
        self.writers.lock().await.retain(|(id, _), _| id != collection_id);
    }

    /// Copies every writer's backlog into the metrics gauges.
    pub async fn export_metrics(&self) {
        let writers = self.writers.lock().await;
        let shards = writers.values().map(|w| {
            let s = w.snapshot();
            (w.collection().to_owned(), s.shard, s.backlog_rows, s.backlog_bytes)
        });
        self.metrics.export_backlog(shards);
    }

    /// How many writers run here (for tests).
    #[cfg(test)]
    pub async fn len(&self) -> usize {
        self.writers.lock().await.len()
    }
}
