//! Node-to-node calls: shard reads between query nodes and write forwarding between
//! ingest nodes, over gRPC (`tonic`, service `strata.v1.Node` in `shared/proto`).
//!
//! Roles talk to *a shard on some node* through two small traits, [`ShardReads`] and
//! [`ShardWrites`]. The local role implements them directly; [`Remote`] implements them
//! over gRPC. A router therefore treats "this node" and "another node" alike, and a
//! standalone process never opens a socket to itself.
//!
//! Errors keep their kind across the wire (see [`status_of`] / [`error_of`]): a 429 raised
//! by a remote writer reaches the client as a 429. Transport failures are `Retryable`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, ErrorKind, Result};
use crate::pb::node_client::NodeClient;
use crate::types::{Attributes, RowId};
use crate::wal::WalOp;

mod convert;
pub mod server;

/// One search against one shard.
#[derive(Clone, Debug)]
pub struct ShardSearch {
    pub vector: Vec<f32>,
    pub top_k: u32,
    pub ef: u32,
    pub eventual: bool,
    pub include_vector: bool,
    pub include_attributes: bool,
}

/// A row found in a shard; `distance` is set for search hits (lower is closer).
#[derive(Clone, Debug, PartialEq)]
pub struct ShardRow {
    pub id: RowId,
    pub distance: Option<f32>,
    pub vector: Option<Vec<f32>>,
    pub attributes: Option<Attributes>,
}

/// Statistics of one shard as its serving node sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub shard: u32,
    pub rows: u64,
    pub segments: u64,
    pub bytes: u64,
    pub manifest_version: u64,
    pub flushed_seq: u64,
    pub head_seq: u64,
    pub wal_backlog_ops: u64,
}

/// A page of a shard scan: live rows ordered by id, and the id to continue after (`None`
/// when the shard has no more rows).
#[derive(Clone, Debug, PartialEq)]
pub struct ShardScan {
    pub rows: Vec<ShardRow>,
    pub next_after: Option<RowId>,
}

/// Largest page of a shard scan.
pub const MAX_SCAN_ROWS: u32 = 10_000;

/// Reads of one shard, served by a query node.
pub trait ShardReads: Send + Sync + 'static {
    fn search_shard(&self, collection_id: &str, shard: u32, req: ShardSearch) -> BoxFuture<'_, Result<Vec<ShardRow>>>;
    fn get_rows(
        &self,
        collection_id: &str,
        shard: u32,
        ids: Vec<RowId>,
        include_vector: bool,
        include_attributes: bool,
    ) -> BoxFuture<'_, Result<Vec<ShardRow>>>;
    fn describe_shard(&self, collection_id: &str, shard: u32) -> BoxFuture<'_, Result<ShardStats>>;
    /// Up to `limit` live rows (with vectors and attributes) with ids after `after`, in id
    /// order (`RowId`'s order: integers before strings), from a strongly consistent state.
    fn scan_shard(
        &self,
        collection_id: &str,
        shard: u32,
        after: Option<RowId>,
        limit: u32,
    ) -> BoxFuture<'_, Result<ShardScan>>;
}

/// Appends to one shard's WAL, served by the ingest node that writes it. Resolves with the
/// entry's sequence once durable. A receiver never forwards again.
pub trait ShardWrites: Send + Sync + 'static {
    fn write_shard(
        &self,
        collection: &str,
        collection_id: &str,
        shard: u32,
        ops: Vec<WalOp>,
    ) -> BoxFuture<'_, Result<u64>>;
    /// Resolves once everything the shard acknowledged before the call is in segments.
    fn flush_shard(&self, collection: &str, collection_id: &str, shard: u32) -> BoxFuture<'_, Result<()>>;
}

/// Settings of node-to-node calls. Plain serde; defaults documented per field.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcConfig {
    /// Time to open a connection to another node. Default 1,000 ms: a dead node must
    /// not hold a search up for long before the router tries another replica.
    pub connect_timeout_ms: u64,
    /// Time one call may take. Default 30,000 ms (a write waits for its WAL put; a
    /// search may first load its shard).
    pub request_timeout_ms: u64,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self { connect_timeout_ms: 1_000, request_timeout_ms: 30_000 }
    }
}

/// Connections to other nodes, one lazily connected channel per address.
pub struct RpcClients {
    config: RpcConfig,
    channels: Mutex<HashMap<String, Channel>>,
}

impl RpcClients {
    pub fn new(config: RpcConfig) -> Arc<Self> {
        Arc::new(Self { config, channels: Mutex::new(HashMap::new()) })
    }

    /// The node at `grpc_url` (e.g. `http://10.0.0.7:7701`).
    pub fn node(self: &Arc<Self>, grpc_url: &str) -> Result<Remote> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(grpc_url) {
            Some(c) => c.clone(),
            None => {
                let endpoint = Endpoint::from_shared(grpc_url.to_owned())
                    .map_err(|e| Error::internal(format!("bad node address {grpc_url:?}: {e}")))?
                    .connect_timeout(Duration::from_millis(self.config.connect_timeout_ms))
                    .timeout(Duration::from_millis(self.config.request_timeout_ms))
                    .tcp_nodelay(true);
                let channel = endpoint.connect_lazy();
                channels.insert(grpc_url.to_owned(), channel.clone());
                channel
            }
        };
        Ok(Remote {
            client: NodeClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            url: grpc_url.to_owned(),
            pool: self.clone(),
        })
    }

    /// Forgets the channel to `grpc_url`. A lazily connected channel that failed to
    /// connect (the node was down) can keep answering with that failure after the node is
    /// back, so a connect failure replaces the channel.
    fn evict(&self, grpc_url: &str) {
        self.channels.lock().unwrap_or_else(|p| p.into_inner()).remove(grpc_url);
    }
}

/// Largest gRPC message: a forwarded batch can be as large as a REST request body.
pub const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// Another node, reached over gRPC.
#[derive(Clone)]
pub struct Remote {
    client: NodeClient<Channel>,
    url: String,
    pool: Arc<RpcClients>,
}

impl Remote {
    /// Runs `call`; if it could not even connect (so nothing was sent), replaces the
    /// channel and tries once more: the node may have restarted at the same address.
    async fn call<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(NodeClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let first = call(self.client.clone()).await;
        let status = match first {
            Ok(reply) => return Ok(reply.into_inner()),
            Err(status) => status,
        };
        if !is_connect_failure(&status) {
            return Err(self.fail(status));
        }
        self.pool.evict(&self.url);
        let fresh = self.pool.node(&self.url)?;
        call(fresh.client.clone()).await.map(tonic::Response::into_inner).map_err(|s| {
            if is_connect_failure(&s) {
                self.pool.evict(&self.url);
            }
            self.fail(s)
        })
    }

    fn fail(&self, status: tonic::Status) -> Error {
        error_of(status).context(format!("node {}", self.url))
    }
}

/// A transport failure before the request left this process.
fn is_connect_failure(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && status.message().contains("connect")
}

impl ShardReads for Remote {
    fn search_shard(&self, collection_id: &str, shard: u32, req: ShardSearch) -> BoxFuture<'_, Result<Vec<ShardRow>>> {
        let msg = convert::search_request(collection_id, shard, req);
        Box::pin(async move {
            let reply = self
                .call(|mut c| {
                    let msg = msg.clone();
                    async move { c.search_shard(msg).await }
                })
                .await?;
            convert::rows_from_pb(reply.rows)
        })
    }

    fn get_rows(
        &self,
        collection_id: &str,
        shard: u32,
        ids: Vec<RowId>,
        include_vector: bool,
        include_attributes: bool,
    ) -> BoxFuture<'_, Result<Vec<ShardRow>>> {
        let msg = convert::get_request(collection_id, shard, ids, include_vector, include_attributes);
        Box::pin(async move {
            let reply = self
                .call(|mut c| {
                    let msg = msg.clone();
                    async move { c.get_rows(msg).await }
                })
                .await?;
            convert::rows_from_pb(reply.rows)
        })
    }

    fn describe_shard(&self, collection_id: &str, shard: u32) -> BoxFuture<'_, Result<ShardStats>> {
        let msg = crate::pb::ShardRef { collection_id: collection_id.to_owned(), shard };
        Box::pin(async move {
            Ok(convert::stats_from_pb(
                self.call(|mut c| {
                    let msg = msg.clone();
                    async move { c.describe_shard(msg).await }
                })
                .await?,
            ))
        })
    }

    fn scan_shard(
        &self,
        collection_id: &str,
        shard: u32,
        after: Option<RowId>,
        limit: u32,
    ) -> BoxFuture<'_, Result<ShardScan>> {
        self.scan_call(crate::pb::ScanShardRequest {
            shard: convert::shard_ref(collection_id, shard),
            after: after.map(convert::id_to_pb),
            limit,
        })
    }
}

impl Remote {
    fn scan_call(&self, msg: crate::pb::ScanShardRequest) -> BoxFuture<'_, Result<ShardScan>> {
        Box::pin(async move {
            let reply = self
                .call(|mut c| {
                    let msg = msg.clone();
                    async move { c.scan_shard(msg).await }
                })
                .await?;
            Ok(ShardScan {
                rows: convert::rows_from_pb(reply.rows)?,
                next_after: reply.next_after.map(|id| convert::id_from_pb(Some(id))).transpose()?,
            })
        })
    }
}

impl ShardWrites for Remote {
    fn write_shard(
        &self,
        collection: &str,
        collection_id: &str,
        shard: u32,
        ops: Vec<WalOp>,
    ) -> BoxFuture<'_, Result<u64>> {
        let msg = convert::write_request(collection, collection_id, shard, ops);
        Box::pin(async move {
            Ok(self
                .call(|mut c| {
                    let msg = msg.clone();
                    async move { c.write(msg).await }
                })
                .await?
                .seq)
        })
    }

    fn flush_shard(&self, collection: &str, collection_id: &str, shard: u32) -> BoxFuture<'_, Result<()>> {
        let msg = crate::pb::FlushRequest {
            collection: collection.to_owned(),
            collection_id: collection_id.to_owned(),
            shard,
        };
        Box::pin(async move {
            self.call(|mut c| {
                let msg = msg.clone();
                async move { c.flush(msg).await }
            })
            .await?;
            Ok(())
        })
    }
}

/// The gRPC status carrying `err`'s kind and message.
pub fn status_of(err: &Error) -> tonic::Status {
    let code = match err.kind() {
        ErrorKind::Invalid => tonic::Code::InvalidArgument,
        ErrorKind::NotFound => tonic::Code::NotFound,
        ErrorKind::Conflict => tonic::Code::Aborted,
        ErrorKind::Overloaded => tonic::Code::ResourceExhausted,
        ErrorKind::Retryable => tonic::Code::Unavailable,
        ErrorKind::Internal => tonic::Code::Internal,
    };
    tonic::Status::new(code, err.to_string())
}

/// The error a failed call stands for. Anything that is not one of our own codes is a
/// transport or server failure: retryable.
pub fn error_of(status: tonic::Status) -> Error {
    let kind = match status.code() {
        tonic::Code::InvalidArgument => ErrorKind::Invalid,
        tonic::Code::NotFound => ErrorKind::NotFound,
        tonic::Code::Aborted => ErrorKind::Conflict,
        tonic::Code::ResourceExhausted => ErrorKind::Overloaded,
        tonic::Code::Internal => ErrorKind::Internal,
        _ => ErrorKind::Retryable,
    };
    Error::new(kind, status.message().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_kinds_survive_the_wire() {
        for kind in [
            ErrorKind::Invalid,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Overloaded,
            ErrorKind::Retryable,
            ErrorKind::Internal,
        ] {
            let back = error_of(status_of(&Error::new(kind, "boom")));
            assert_eq!(back.kind(), kind);
            assert_eq!(back.message(), "boom");
        }
        assert_eq!(error_of(tonic::Status::unknown("x")).kind(), ErrorKind::Retryable);
    }
}
