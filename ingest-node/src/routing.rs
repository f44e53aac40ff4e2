//! Write routing: where the writes of a shard go, and the receiving side of forwarding.
//!
//! The writer of a shard is the rendezvous owner of its key among live, non-draining ingest nodes
//! (`ownership.rs` keeps local writers in line with the view). Writes go to the node
//! holding the shard's writer lease when that differs from the owner (a handover in
//! progress, or views that disagree for a moment), else to the owner (decision 0006). A
//! forwarded write is never forwarded again: the receiver writes with its running writer,
//! starts one only if it owns the shard, or fails with a retryable error, so a stale view
//! can cost a retry but never a loop, and a node handing a shard over never takes it back.
//!
//! A write is split per shard and each shard's part commits atomically (one WAL entry),
//! but the parts commit independently: the router waits for every part, and when some
//! failed it returns the first failure carrying the parts that did commit
//! ([`Committed`]), so a client refused with 503 or 429 knows which rows landed.

use std::sync::Arc;

use futures::future::{BoxFuture, join_all};
use strata_coord::{LeaseKind, Member, Role, shard_key};
use strata_deps::{Deps, Resolver};
use strata_rpc::{Mutation, Selector, ShardWrites};
use strata_storage::wal::WalOp;
use strata_types::{CollectionDef, Committed, Error, Result, RowId};

use crate::config::IngestConfig;
use crate::validate;
use crate::writer::ShardWriter;
use crate::writers::WriterRegistry;

/// Sends each shard's part of a write to the node that writes the shard.
pub(crate) struct WriteRouter {
    deps: Deps,
    config: Arc<IngestConfig>,
    resolver: Arc<Resolver>,
    writers: Arc<WriterRegistry>,
    /// Whether this node runs the ingest role. A node without it (a query node or a
    /// compactor answering the whole REST API) only forwards: it never starts a writer,
    /// since it is never a shard's writer owner and holds no writer lease.
    writes_here: bool,
}

impl WriteRouter {
    pub fn new(
        deps: Deps,
        config: Arc<IngestConfig>,
        resolver: Arc<Resolver>,
        writers: Arc<WriterRegistry>,
        writes_here: bool,
    ) -> WriteRouter {
        WriteRouter { deps, config, resolver, writers, writes_here }
    }

    /// This node's writer of a shard, started if none runs; on a node that only forwards,
    /// a retryable error (no ingest node writes the shard right now).
    pub async fn local_writer(&self, def: &Arc<CollectionDef>, shard: u32) -> Result<Arc<ShardWriter>> {
        if !self.writes_here {
            return Err(Error::retryable(format!(
                "no ingest node is available to write shard {shard} of {:?}; retry",
                def.name
            )));
        }
        self.writers.start(def, shard).await
    }

    /// The ingest node that should write `key`, if it is another node.
    pub fn remote_owner(&self, key: &str) -> Option<Member> {
        let view = self.deps.coord.view().borrow().clone();
        view.writer_owner(key).filter(|owner| owner.node_id != self.deps.node_id).cloned()
    }

    /// Where writes of a shard go: `None` for this node. The node holding the shard's
    /// writer lease wins over the rendezvous owner while they differ, because only the
    /// holder can write: while a shard changes hands, nodes' ownership views can disagree
    /// for a moment, and routing by ownership alone then sends writes to a node that cannot
    /// take the lease (a retryable error for as long as the views disagree). With the
    /// holder first, writes keep landing until it steps down; then they go to the owner.
    /// This node counts as the holder only while its writer runs: one that is stepping
    /// down sends its writes on to the owner.
    pub async fn write_target(&self, collection_id: &str, shard: u32) -> Option<Member> {
        let key = shard_key(collection_id, shard);
        let view = self.deps.coord.view().borrow().clone();
        let me = self.deps.node_id.as_str();
        let holder = view.lease(LeaseKind::Writer, &key).map(|l| l.holder.as_str());
        if holder == Some(me) && self.writers.running(collection_id, shard).await.is_some() {
            return None;
        }
        if let Some(member) = holder.filter(|h| *h != me).and_then(|h| view.member(Role::Ingest, h)) {
            return Some(member.clone());
        }
        view.writer_owner(&key).filter(|owner| owner.node_id != me).cloned()
    }

    /// The writer a forwarded request may use: the running one, or a new one only if this
    /// node owns the shard. A node stepping down must not take the lease back because
    /// writes routed by a stale view still reach it: under steady load that would keep
    /// the shard from ever reaching its owner.
    pub async fn forwarded_writer(&self, def: &Arc<CollectionDef>, shard: u32) -> Result<Arc<ShardWriter>> {
        if let Some(writer) = self.writers.running(&def.id, shard).await {
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

    /// Sends every shard's operations to its writer; resolves once all are durable.
    pub async fn write(&self, def: &Arc<CollectionDef>, ops: Vec<WalOp>) -> Result<()> {
        let mut per_shard: Vec<Vec<WalOp>> = vec![Vec::new(); def.shards as usize];
        for op in ops {
            per_shard[op.id().shard(def.shards) as usize].push(op);
        }
        let writes = per_shard.into_iter().enumerate().filter(|(_, ops)| !ops.is_empty()).map(|(shard, ops)| {
            let ids = ops.iter().map(|op| op.id().clone()).collect();
            (shard as u32, ids, self.send_to_writer(def, shard as u32, ops))
        });
        all_parts(writes).await?;
        Ok(())
    }

    async fn send_to_writer(&self, def: &Arc<CollectionDef>, shard: u32, ops: Vec<WalOp>) -> Result<u64> {
        match self.write_target(&def.id, shard).await {
            Some(node) => self.deps.rpc.node(&node.grpc_url)?.write_shard(&def.name, &def.id, shard, ops).await,
            None => self.local_writer(def, shard).await?.write(ops).await,
        }
    }

    /// Applies a mutation on every shard it can touch (the shards of its ids, or all for a
    /// filter); resolves with the rows changed once every shard's change is durable.
    pub async fn mutate(&self, def: &Arc<CollectionDef>, mutation: Mutation) -> Result<u64> {
        let per_shard: Vec<(u32, Mutation)> = match &mutation {
            Mutation::Delete(Selector::Filter(_)) | Mutation::Update { selector: Selector::Filter(_), .. } => {
                (0..def.shards).map(|shard| (shard, mutation.clone())).collect()
            }
            Mutation::Delete(Selector::Ids(ids)) | Mutation::Update { selector: Selector::Ids(ids), .. } => {
                let mut ids_of: Vec<Vec<_>> = vec![Vec::new(); def.shards as usize];
                for id in ids {
                    ids_of[id.shard(def.shards) as usize].push(id.clone());
                }
                let with_ids = |ids| match &mutation {
                    Mutation::Delete(_) => Mutation::Delete(Selector::Ids(ids)),
                    Mutation::Update { patch, .. } => {
                        Mutation::Update { selector: Selector::Ids(ids), patch: patch.clone() }
                    }
                };
                ids_of
                    .into_iter()
                    .enumerate()
                    .filter(|(_, ids)| !ids.is_empty())
                    .map(|(shard, ids)| (shard as u32, with_ids(ids)))
                    .collect()
            }
        };
        let changes = per_shard.into_iter().map(|(shard, mutation)| {
            let ids = match &mutation {
                Mutation::Delete(Selector::Ids(ids)) | Mutation::Update { selector: Selector::Ids(ids), .. } => {
                    ids.clone()
                }
                _ => Vec::new(),
            };
            let change = async move {
                match self.write_target(&def.id, shard).await {
                    Some(node) => {
                        self.deps.rpc.node(&node.grpc_url)?.mutate_shard(&def.name, &def.id, shard, mutation).await
                    }
                    None => self.local_writer(def, shard).await?.mutate(mutation).await,
                }
            };
            (shard, ids, change)
        });
        Ok(all_parts(changes).await?.into_iter().sum())
    }

    /// Resolves once everything acknowledged before the call is in segments, on every
    /// shard's writer.
    pub async fn flush(&self, def: &Arc<CollectionDef>) -> Result<()> {
        let flushes = (0..def.shards).map(|shard| async move {
            match self.write_target(&def.id, shard).await {
                Some(node) => self.deps.rpc.node(&node.grpc_url)?.flush_shard(&def.name, &def.id, shard).await,
                None => self.local_writer(def, shard).await?.flush().await,
            }
        });
        futures::future::try_join_all(flushes).await?;
        Ok(())
    }

    /// The incarnation a forwarded request names, checked against the name's current one.
    async fn forwarded_def(&self, collection: &str, collection_id: &str) -> Result<Arc<CollectionDef>> {
        let def = self.resolver.resolve(&self.deps, collection).await?;
        if def.id != collection_id {
            return Err(Error::not_found(format!("collection {collection:?} was dropped or re-created")));
        }
        Ok(def)
    }
}

/// Runs every shard's part of a write (`(shard, ids in it, the part)`) to its end — none
/// is dropped in flight, so the outcome of each is known — and returns their results, or
/// the failure of the lowest failed shard. When other parts did commit, that failure says
/// which ([`Committed`]): they are durable, and a retry of the whole write is safe since
/// upserts, deletes and attribute updates are idempotent.
pub(crate) async fn all_parts<T>(
    parts: impl IntoIterator<Item = (u32, Vec<RowId>, impl Future<Output = Result<T>>)>,
) -> Result<Vec<T>> {
    let (keys, futures): (Vec<(u32, Vec<RowId>)>, Vec<_>) =
        parts.into_iter().map(|(shard, ids, part)| ((shard, ids), part)).unzip();
    let results = join_all(futures).await;
    if results.iter().all(Result::is_ok) {
        return Ok(results.into_iter().map(|r| r.expect("all ok")).collect());
    }
    let mut committed = Committed::default();
    let mut failed: Option<(u32, Error)> = None;
    for ((shard, ids), result) in keys.into_iter().zip(results) {
        match result {
            Ok(_) => {
                committed.shards.push(shard);
                committed.ids.extend(ids);
            }
            Err(e) => {
                if failed.as_ref().is_none_or(|(first, _)| shard < *first) {
                    failed = Some((shard, e));
                }
            }
        }
    }
    let (shard, error) = failed.expect("some part failed");
    if committed.shards.is_empty() {
        return Err(error);
    }
    committed.shards.sort_unstable();
    let shards: Vec<String> = committed.shards.iter().map(u32::to_string).collect();
    let message = format!(
        "shard {shard}'s part was not committed ({error}); the parts of shard(s) {} were committed and are durable \
         (each shard's part is atomic; retrying the whole request is safe)",
        shards.join(", ")
    );
    Err(Error::new(error.kind(), message).with_committed(committed))
}

/// The receiving side of write forwarding: always local, never forwarded again. Input
/// from the wire is validated like a client's.
impl ShardWrites for WriteRouter {
    fn write_shard(
        &self,
        collection: &str,
        collection_id: &str,
        shard: u32,
        ops: Vec<WalOp>,
    ) -> BoxFuture<'_, Result<u64>> {
        let (collection, collection_id) = (collection.to_owned(), collection_id.to_owned());
        Box::pin(async move {
            validate::batch_size(self.config.max_batch_rows, ops.len(), "forwarded operations")?;
            let def = self.forwarded_def(&collection, &collection_id).await?;
            validate::ops_of_shard(&def, shard, &ops)?;
            validate::ops(&def, &ops)?;
            self.forwarded_writer(&def, shard).await?.write(ops).await
        })
    }

    fn mutate_shard(
        &self,
        collection: &str,
        collection_id: &str,
        shard: u32,
        mutation: Mutation,
    ) -> BoxFuture<'_, Result<u64>> {
        let (collection, collection_id) = (collection.to_owned(), collection_id.to_owned());
        Box::pin(async move {
            let def = self.forwarded_def(&collection, &collection_id).await?;
            validate::shard(&def, shard)?;
            validate::mutation_of_shard(&self.config, &def, shard, &mutation)?;
            self.forwarded_writer(&def, shard).await?.mutate(mutation).await
        })
    }

    fn flush_shard(&self, collection: &str, collection_id: &str, shard: u32) -> BoxFuture<'_, Result<()>> {
        let (collection, collection_id) = (collection.to_owned(), collection_id.to_owned());
        Box::pin(async move {
            let def = self.forwarded_def(&collection, &collection_id).await?;
            validate::shard(&def, shard)?;
            self.forwarded_writer(&def, shard).await?.flush().await
        })
    }
}
