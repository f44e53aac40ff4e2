//! The ingest node: validates writes, routes each row to its shard by the stable hash of
//! its id, and hands each shard's part to that shard's writer — a local actor if this node
//! owns the shard, or the owning ingest node over gRPC. Also owns collection create/drop,
//! since those are writes to the catalog.
//!
//! Ownership: the writer of a shard is the rendezvous owner of its key among live ingest
//! nodes ([`ownership`](crate::ownership) keeps local writers in line with the view).
//! Writes go to the node holding the shard's writer lease when that differs from the
//! owner (a handover in progress, or views that disagree for a moment), else to the owner.
//! A forwarded write is never forwarded again: the receiver writes with its running
//! writer, starts one only if it owns the shard, or fails with a retryable error, so a
//! stale view can cost a retry but never a loop, and a node handing a shard over never
//! takes it back.
//!
//! Validation of a whole request happens before any shard sees any of it, so a bad row
//! never leaves the rest of its batch half-written.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::{BoxFuture, try_join_all};
use strata_coord::{Head, LeaseKind, Member, Role, catalog_key, shard_key};
use strata_deps::Deps;
use strata_deps::Resolver;
use strata_rpc::ShardWrites;
use strata_storage::catalog::{self, NewCollection};
use strata_storage::wal::WalOp;
use strata_types::{CollectionDef, Row, RowId};
use strata_types::{Error, Result};
use tokio::sync::{Mutex, watch};

use crate::config::IngestConfig;
use crate::flush::first_duplicate;
use crate::metrics::IngestMetrics;
use crate::writer::ShardWriter;

/// A running ingest role. Cheap to clone.
#[derive(Clone)]
pub struct IngestNode {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub deps: Deps,
    pub config: Arc<IngestConfig>,
    pub shutdown: watch::Receiver<bool>,
    pub resolver: Resolver,
    /// Local shard writers by (collection id, shard).
    pub writers: Mutex<HashMap<(String, u32), Arc<ShardWriter>>>,
    pub metrics: Arc<IngestMetrics>,
}

/// Starts the ingest role: starts the writers of every shard this node owns (so unflushed
/// WAL tails resume flushing) and keeps them in line with ownership until `shutdown`.
pub async fn start(config: IngestConfig, deps: Deps, shutdown: watch::Receiver<bool>) -> Result<IngestNode> {
    let node = IngestNode {
        inner: Arc::new(Inner {
            deps: deps.clone(),
            config: Arc::new(config),
            shutdown: shutdown.clone(),
            resolver: Resolver::default(),
            writers: Mutex::new(HashMap::new()),
            metrics: Arc::new(IngestMetrics::register(&deps.metrics)),
        }),
    };
    node.reconcile_writers().await?;
    tokio::spawn(crate::ownership::run(node.clone(), shutdown));
    Ok(node)
}

impl IngestNode {
    pub fn config(&self) -> &IngestConfig {
        &self.inner.config
    }

    /// The current definition of collection `name` (not found if it does not exist).
    pub async fn collection(&self, name: &str) -> Result<Arc<CollectionDef>> {
        self.inner.resolver.resolve(&self.inner.deps, name).await
    }

    pub async fn create_collection(&self, new: NewCollection) -> Result<CollectionDef> {
        let deps = &self.inner.deps;
        let def = catalog::create(deps.store.as_ref(), &new, deps.clock.now_ms(), deps.rng.next_u32()).await?;
        self.publish_catalog_head(&def.name).await?;
        Ok(def)
    }

    pub async fn drop_collection(&self, name: &str) -> Result<CollectionDef> {
        let deps = &self.inner.deps;
        let def = catalog::drop_collection(deps.store.as_ref(), name, deps.clock.now_ms()).await?;
        self.publish_catalog_head(name).await?;
        // Dropping the writers closes their channels; their actors stop and release leases.
        self.inner.writers.lock().await.retain(|(id, _), _| *id != def.id);
        Ok(def)
    }

    /// Tells every node that `name`'s catalog chain changed, before the change is acknowledged.
    async fn publish_catalog_head(&self, name: &str) -> Result<()> {
        let deps = &self.inner.deps;
        if let Some(entry) = catalog::newest_entry(deps.store.as_ref(), name).await? {
            deps.coord.publish_head(&catalog_key(name), Head { wal_seq: entry.version, manifest_version: 0 }).await?;
        }
        Ok(())
    }

    /// The ingest node that should write `key`, if it is another node.
    pub(crate) fn remote_owner(&self, key: &str) -> Option<Member> {
        let view = self.inner.deps.coord.view().borrow().clone();
        view.writer_owner(key).filter(|owner| owner.node_id != self.inner.deps.node_id).cloned()
    }

    /// Where writes of a shard go: `None` for this node. The node holding the shard's
    /// writer lease wins over the rendezvous owner while they differ, because only the
    /// holder can write: while a shard changes hands, nodes' ownership views can disagree
    /// for a moment, and routing by ownership alone then sends writes to a node that cannot
    /// take the lease (a retryable error for as long as the views disagree). With the
    /// holder first, writes keep landing until it steps down; then they go to the owner.
    /// This node counts as the holder only while its writer runs: one that is stepping
    /// down sends its writes on to the owner.
    pub(crate) async fn write_target(&self, collection_id: &str, shard: u32) -> Option<Member> {
        let key = shard_key(collection_id, shard);
        let view = self.inner.deps.coord.view().borrow().clone();
        let me = self.inner.deps.node_id.as_str();
        let holder = view.lease(LeaseKind::Writer, &key).map(|l| l.holder.as_str());
        if holder == Some(me) && self.running_writer(collection_id, shard).await.is_some() {
            return None;
        }
        if let Some(member) = holder.filter(|h| *h != me).and_then(|h| view.member(Role::Ingest, h)) {
            return Some(member.clone());
        }
        view.writer_owner(&key).filter(|owner| owner.node_id != me).cloned()
    }

    async fn running_writer(&self, collection_id: &str, shard: u32) -> Option<Arc<ShardWriter>> {
        let writers = self.inner.writers.lock().await;
        writers.get(&(collection_id.to_owned(), shard)).filter(|w| !w.is_stopped()).cloned()
    }

    /// The writer a forwarded request may use: the running one, or a new one only if this
    /// node owns the shard. A node stepping down must not take the lease back because
    /// writes routed by a stale view still reach it: under steady load that would keep
    /// the shard from ever reaching its owner.
    pub(crate) async fn forwarded_writer(&self, def: &Arc<CollectionDef>, shard: u32) -> Result<Arc<ShardWriter>> {
        if let Some(writer) = self.running_writer(&def.id, shard).await {
            return Ok(writer);
        }
        if let Some(owner) = self.remote_owner(&shard_key(&def.id, shard)) {
            return Err(Error::retryable(format!(
                "shard {shard} of {:?} is moving to node {}; retry",
                def.name, owner.node_id
            )));
        }
        self.local_writer(def, shard).await
    }

    /// The local writer of a shard, started (lease taken, WAL tail recovered) on first use.
    pub(crate) async fn local_writer(&self, def: &Arc<CollectionDef>, shard: u32) -> Result<Arc<ShardWriter>> {
        let mut map = self.inner.writers.lock().await;
        let slot = (def.id.clone(), shard);
        if let Some(w) = map.get(&slot) {
            if !w.is_stopped() {
                return Ok(w.clone());
            }
            map.remove(&slot);
        }
        let inner = &self.inner;
        let writer = Arc::new(
            ShardWriter::start(
                inner.deps.clone(),
                inner.metrics.clone(),
                def.clone(),
                shard,
                inner.config.clone(),
                inner.shutdown.clone(),
            )
            .await?,
        );
        map.insert(slot, writer.clone());
        Ok(writer)
    }

    fn check_batch_size(&self, n: usize, what: &str) -> Result<()> {
        let max = self.inner.config.max_batch_rows;
        if n == 0 {
            return Err(Error::invalid(format!("{what} must not be empty")));
        }
        if n > max {
            return Err(Error::invalid(format!("{what} has {n} entries; the limit per request is {max}")));
        }
        Ok(())
    }

    /// Upserts rows; resolves once every row is durable in its shard's WAL.
    pub async fn upsert(&self, name: &str, rows: Vec<Row>) -> Result<usize> {
        self.write(name, rows.into_iter().map(WalOp::Upsert).collect(), "rows").await
    }

    /// Deletes rows by id (ids that do not exist are fine); resolves once durable.
    pub async fn delete(&self, name: &str, ids: Vec<RowId>) -> Result<usize> {
        self.write(name, ids.into_iter().map(WalOp::Delete).collect(), "ids").await
    }

    async fn write(&self, name: &str, ops: Vec<WalOp>, what: &str) -> Result<usize> {
        self.check_batch_size(ops.len(), what)?;
        let def = self.inner.resolver.resolve(&self.inner.deps, name).await?;
        check_ops(&def, &ops)?;
        let n = ops.len();
        self.route(&def, ops).await?;
        Ok(n)
    }

    async fn route(&self, def: &Arc<CollectionDef>, ops: Vec<WalOp>) -> Result<()> {
        let mut per_shard: Vec<Vec<WalOp>> = vec![Vec::new(); def.shards as usize];
        for op in ops {
            per_shard[op.id().shard(def.shards) as usize].push(op);
        }
        let writes = per_shard
            .into_iter()
            .enumerate()
            .filter(|(_, ops)| !ops.is_empty())
            .map(|(shard, ops)| self.write_to_owner(def, shard as u32, ops));
        try_join_all(writes).await?;
        Ok(())
    }

    async fn write_to_owner(&self, def: &Arc<CollectionDef>, shard: u32, ops: Vec<WalOp>) -> Result<u64> {
        match self.write_target(&def.id, shard).await {
            Some(node) => self.inner.deps.rpc.node(&node.grpc_url)?.write_shard(&def.name, &def.id, shard, ops).await,
            None => self.local_writer(def, shard).await?.write(ops).await,
        }
    }

    /// Resolves once everything acknowledged before the call is in segments.
    pub async fn flush(&self, name: &str) -> Result<()> {
        let def = self.inner.resolver.resolve(&self.inner.deps, name).await?;
        let flushes = (0..def.shards).map(|shard| {
            let def = def.clone();
            async move {
                match self.write_target(&def.id, shard).await {
                    Some(node) => {
                        self.inner.deps.rpc.node(&node.grpc_url)?.flush_shard(&def.name, &def.id, shard).await
                    }
                    None => self.local_writer(&def, shard).await?.flush().await,
                }
            }
        });
        try_join_all(flushes).await?;
        Ok(())
    }

    /// Copies the backlog of every shard this node writes into the metrics gauges (called
    /// at scrape time).
    pub async fn export_metrics(&self) {
        let map = self.inner.writers.lock().await;
        let shards = map.values().map(|w| {
            let s = w.snapshot();
            (w.collection().to_owned(), s.shard, s.backlog_rows, s.backlog_bytes)
        });
        self.inner.metrics.export_backlog(shards);
    }

    /// The incarnation a forwarded request names, checked against the name's current one.
    async fn forwarded_def(&self, collection: &str, collection_id: &str) -> Result<Arc<CollectionDef>> {
        let def = self.inner.resolver.resolve(&self.inner.deps, collection).await?;
        if def.id != collection_id {
            return Err(Error::not_found(format!("collection {collection:?} was dropped or re-created")));
        }
        Ok(def)
    }
}

/// Validates a batch before any of it is written: every row against the collection, every
/// id, and ids unique in the batch.
fn check_ops(def: &CollectionDef, ops: &[WalOp]) -> Result<()> {
    for op in ops {
        match op {
            WalOp::Upsert(row) => def.validate_row(row)?,
            WalOp::Delete(id) => id.validate()?,
        }
    }
    if let Some(dup) = first_duplicate(ops.iter().map(WalOp::id)) {
        return Err(Error::invalid(format!("id {dup} appears more than once in the batch")));
    }
    Ok(())
}

/// The receiving side of write forwarding: always local, never forwarded again. Input
/// from the wire is validated like a client's.
impl ShardWrites for IngestNode {
    fn write_shard(
        &self,
        collection: &str,
        collection_id: &str,
        shard: u32,
        ops: Vec<WalOp>,
    ) -> BoxFuture<'_, Result<u64>> {
        let (collection, collection_id) = (collection.to_owned(), collection_id.to_owned());
        Box::pin(async move {
            self.check_batch_size(ops.len(), "forwarded operations")?;
            let def = self.forwarded_def(&collection, &collection_id).await?;
            if shard >= def.shards || ops.iter().any(|op| op.id().shard(def.shards) != shard) {
                return Err(Error::invalid(format!("forwarded operations do not all belong to shard {shard}")));
            }
            check_ops(&def, &ops)?;
            self.forwarded_writer(&def, shard).await?.write(ops).await
        })
    }

    fn flush_shard(&self, collection: &str, collection_id: &str, shard: u32) -> BoxFuture<'_, Result<()>> {
        let (collection, collection_id) = (collection.to_owned(), collection_id.to_owned());
        Box::pin(async move {
            let def = self.forwarded_def(&collection, &collection_id).await?;
            if shard >= def.shards {
                return Err(Error::invalid(format!("collection {collection:?} has no shard {shard}")));
            }
            self.forwarded_writer(&def, shard).await?.flush().await
        })
    }
}
