//! Batched head reads. A strong read asks for the head of every shard it touches, so a
//! search over many shards would send as many etcd transactions at once. Instead, every
//! `head` call queues its key and one background task reads all queued keys in a single
//! transaction (natural batching: whatever queued while the previous read was in flight).
//!
//! Still linearizable: a read is issued only after every request in its batch arrived, so
//! each caller sees a state at least as new as when it asked.

use std::sync::Arc;

use etcd_client::{Txn, TxnOp, TxnOpResponse};
use tokio::sync::{mpsc, oneshot};

use super::Inner;
use crate::Head;
use strata_types::{Error, Result};

/// A queued head read.
pub(super) type HeadRequest = (String, oneshot::Sender<Result<Option<Head>>>);

/// etcd allows 128 operations per transaction by default; two gets per head.
const MAX_HEADS_PER_TXN: usize = 64;

/// Serves queued head reads until the handle is dropped.
pub(super) async fn serve(inner: Arc<Inner>, mut requests: mpsc::UnboundedReceiver<HeadRequest>) {
    while let Some(first) = requests.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_HEADS_PER_TXN {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let keys: Vec<&str> = batch.iter().map(|(key, _)| key.as_str()).collect();
        match inner.read_heads(&keys).await {
            Ok(heads) => {
                for ((_, reply), head) in batch.into_iter().zip(heads) {
                    let _ = reply.send(Ok(head));
                }
            }
            Err(e) => {
                for (_, reply) in batch {
                    let _ = reply.send(Err(Error::new(e.kind(), e.to_string())));
                }
            }
        }
    }
}

impl Inner {
    /// The heads of `shard_keys`, in order, in one transaction.
    async fn read_heads(&self, shard_keys: &[&str]) -> Result<Vec<Option<Head>>> {
        let ops: Vec<TxnOp> = shard_keys
            .iter()
            .flat_map(|key| {
                let (wal, manifest) = self.head_keys(key);
                [TxnOp::get(wal, None), TxnOp::get(manifest, None)]
            })
            .collect();
        let mut client = self.client.clone();
        let response = self.bounded("reading heads", client.txn(Txn::new().and_then(ops))).await?;
        let mut values = Vec::with_capacity(2 * shard_keys.len());
        for op in response.op_responses() {
            let value = match op {
                TxnOpResponse::Get(get) => match get.kvs().first() {
                    Some(kv) => {
                        let text = std::str::from_utf8(kv.value()).map_err(|e| Error::corrupt("a head", e))?;
                        Some(text.parse::<u64>().map_err(|e| Error::corrupt("a head", e))?)
                    }
                    None => None,
                },
                _ => return Err(Error::internal("etcd answered a head read with something else")),
            };
            values.push(value);
        }
        if values.len() != 2 * shard_keys.len() {
            return Err(Error::internal("etcd answered a head read with the wrong number of values"));
        }
        Ok(values
            .chunks_exact(2)
            .map(|pair| match (pair[0], pair[1]) {
                (None, None) => None,
                (wal_seq, manifest_version) => {
                    Some(Head { wal_seq: wal_seq.unwrap_or(0), manifest_version: manifest_version.unwrap_or(0) })
                }
            })
            .collect())
    }
}
