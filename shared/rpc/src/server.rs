//! The gRPC server side: answers `strata.v1.Node` calls with whichever roles this process
//! runs. A call for a role the process does not run is `UNIMPLEMENTED`, which the caller
//! treats as retryable (its view of the cluster is stale).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prost::Message;

use tonic::{Request, Response, Status};

use super::{ShardCount, ShardGet, ShardReads, ShardScanRequest, ShardWrites, convert, status_of};
use crate::pb;
use crate::pb::node_server::{Node, NodeServer};
use strata_types::{Error, Result};

/// The roles behind this process's gRPC endpoint.
#[derive(Clone, Default)]
pub struct NodeService {
    pub reads: Option<Arc<dyn ShardReads>>,
    pub writes: Option<Arc<dyn ShardWrites>>,
    /// What this endpoint has received and sent (message bytes, not framing).
    pub counters: Arc<RpcCounters>,
}

/// Calls served and message bytes in and out: shows, for instance, that a rebalance moved
/// no data between nodes.
#[derive(Debug, Default)]
pub struct RpcCounters {
    pub calls: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl RpcCounters {
    fn count(&self, bytes_in: usize, response: &impl Message) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes_in as u64, Ordering::Relaxed);
        self.bytes_out.fetch_add(response.encoded_len() as u64, Ordering::Relaxed);
    }

    /// (calls, bytes in, bytes out).
    pub fn snapshot(&self) -> (u64, u64, u64) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (load(&self.calls), load(&self.bytes_in), load(&self.bytes_out))
    }
}

impl NodeService {
    /// Serves plaintext on `addr` until `shutdown` resolves.
    pub async fn serve(self, addr: SocketAddr, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| Error::invalid(format!("cannot listen for gRPC on {addr}: {e}")))?;
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        self.serve_incoming(incoming, shutdown).await
    }

    /// Serves the connections `incoming` yields (e.g. ones that completed a TLS handshake)
    /// until `shutdown` resolves.
    pub async fn serve_incoming<IO, IE>(
        self,
        incoming: impl futures::Stream<Item = std::result::Result<IO, IE>> + Send + 'static,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + tonic::transport::server::Connected + Unpin + Send + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let server = NodeServer::new(self)
            .max_decoding_message_size(super::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(super::MAX_MESSAGE_BYTES);
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| Error::internal(format!("gRPC server failed: {e}")))
    }

    fn reads(&self) -> Result<&Arc<dyn ShardReads>, Status> {
        self.reads.as_ref().ok_or_else(|| Status::unimplemented("this node does not run the query role"))
    }

    fn writes(&self) -> Result<&Arc<dyn ShardWrites>, Status> {
        self.writes.as_ref().ok_or_else(|| Status::unimplemented("this node does not run the ingest role"))
    }
}

fn shard_of(shard: Option<pb::ShardRef>) -> Result<pb::ShardRef, Status> {
    shard.ok_or_else(|| Status::invalid_argument("the shard is missing"))
}

#[tonic::async_trait]
impl Node for NodeService {
    async fn search_shard(
        &self,
        request: Request<pb::SearchShardRequest>,
    ) -> Result<Response<pb::SearchShardResponse>, Status> {
        let msg = request.into_inner();
        let in_len = msg.encoded_len();
        let (shard, req) = convert::search_from_pb(msg).map_err(|e| status_of(&e))?;
        let shard = shard_of(shard)?;
        let rows =
            self.reads()?.search_shard(&shard.collection_id, shard.shard, req).await.map_err(|e| status_of(&e))?;
        let reply = pb::SearchShardResponse { rows: rows.into_iter().map(convert::hit_to_pb).collect() };
        self.counters.count(in_len, &reply);
        Ok(Response::new(reply))
    }

    async fn get_rows(&self, request: Request<pb::GetRowsRequest>) -> Result<Response<pb::GetRowsResponse>, Status> {
        let msg = request.into_inner();
        let in_len = msg.encoded_len();
        let shard = shard_of(msg.shard)?;
        let ids = msg
            .ids
            .into_iter()
            .map(|id| convert::id_from_pb(Some(id)))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| status_of(&e))?;
        let req = ShardGet {
            ids,
            include_vector: msg.include_vector,
            include_attributes: msg.include_attributes,
            consistency: convert::consistency_from_pb(msg.eventual, msg.max_staleness_ms).map_err(|e| status_of(&e))?,
        };
        let rows = self.reads()?.get_rows(&shard.collection_id, shard.shard, req).await.map_err(|e| status_of(&e))?;
        let reply = pb::GetRowsResponse { rows: rows.into_iter().map(convert::row_to_pb).collect() };
        self.counters.count(in_len, &reply);
        Ok(Response::new(reply))
    }

    async fn describe_shard(&self, request: Request<pb::ShardRef>) -> Result<Response<pb::ShardStats>, Status> {
        let shard = request.into_inner();
        let stats = self.reads()?.describe_shard(&shard.collection_id, shard.shard).await.map_err(|e| status_of(&e))?;
        let reply = convert::stats_to_pb(stats);
        self.counters.count(shard.encoded_len(), &reply);
        Ok(Response::new(reply))
    }

    async fn scan_shard(
        &self,
        request: Request<pb::ScanShardRequest>,
    ) -> Result<Response<pb::ScanShardResponse>, Status> {
        let msg = request.into_inner();
        let in_len = msg.encoded_len();
        let shard = shard_of(msg.shard)?;
        let after = msg.after.map(|id| convert::id_from_pb(Some(id))).transpose().map_err(|e| status_of(&e))?;
        let filter = convert::filter_from_pb(&msg.filter_json).map_err(|e| status_of(&e))?;
        let req = ShardScanRequest { after, limit: msg.limit, filter, include_vector: !msg.omit_vector };
        let scan = self.reads()?.scan_shard(&shard.collection_id, shard.shard, req).await.map_err(|e| status_of(&e))?;
        let reply = pb::ScanShardResponse {
            rows: scan.rows.into_iter().map(convert::row_to_pb).collect(),
            next_after: scan.next_after.map(convert::id_to_pb),
        };
        self.counters.count(in_len, &reply);
        Ok(Response::new(reply))
    }

    async fn count_shard(
        &self,
        request: Request<pb::CountShardRequest>,
    ) -> Result<Response<pb::CountShardResponse>, Status> {
        let msg = request.into_inner();
        let in_len = msg.encoded_len();
        let shard = shard_of(msg.shard)?;
        let filter = convert::filter_from_pb(&msg.filter_json).map_err(|e| status_of(&e))?;
        let consistency =
            convert::consistency_from_pb(msg.eventual, msg.max_staleness_ms).map_err(|e| status_of(&e))?;
        let req = ShardCount { filter, consistency };
        let count =
            self.reads()?.count_shard(&shard.collection_id, shard.shard, req).await.map_err(|e| status_of(&e))?;
        let reply = pb::CountShardResponse { count };
        self.counters.count(in_len, &reply);
        Ok(Response::new(reply))
    }

    async fn write(&self, request: Request<pb::WriteRequest>) -> Result<Response<pb::WriteResponse>, Status> {
        let msg = request.into_inner();
        let in_len = msg.encoded_len();
        let ops = convert::ops_from_pb(&msg.ops).map_err(|e| status_of(&e))?;
        let seq = self
            .writes()?
            .write_shard(&msg.collection, &msg.collection_id, msg.shard, ops)
            .await
            .map_err(|e| status_of(&e))?;
        let reply = pb::WriteResponse { seq };
        self.counters.count(in_len, &reply);
        Ok(Response::new(reply))
    }

    async fn mutate(&self, request: Request<pb::MutateRequest>) -> Result<Response<pb::MutateResponse>, Status> {
        let msg = request.into_inner();
        let mutation = convert::mutation_from_pb(&msg).map_err(|e| status_of(&e))?;
        let rows = self
            .writes()?
            .mutate_shard(&msg.collection, &msg.collection_id, msg.shard, mutation)
            .await
            .map_err(|e| status_of(&e))?;
        let reply = pb::MutateResponse { rows };
        self.counters.count(msg.encoded_len(), &reply);
        Ok(Response::new(reply))
    }

    async fn flush(&self, request: Request<pb::FlushRequest>) -> Result<Response<pb::FlushResponse>, Status> {
        let msg = request.into_inner();
        self.writes()?.flush_shard(&msg.collection, &msg.collection_id, msg.shard).await.map_err(|e| status_of(&e))?;
        let reply = pb::FlushResponse {};
        self.counters.count(msg.encoded_len(), &reply);
        Ok(Response::new(reply))
    }
}
