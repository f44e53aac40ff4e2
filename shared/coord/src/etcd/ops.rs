//! Requests: leases, heads and this process's records, each one etcd round trip.
//!
//! Leases: `try_acquire` is one Txn — if the key was never created (`create_revision ==
//! 0`) put it under the current session's etcd lease, else read it. The epoch is the key's
//! `create_revision`. A key held by the same holder under the *current* session is handed
//! back; under an older session (same holder, other etcd lease) it is not ours — it is
//! left to expire. `release` deletes the key only if its `create_revision` is still the
//! lease's epoch, so a stale release never frees someone else's lease.
//!
//! Heads: each field is its own key holding a zero-padded decimal, raised in one Txn of two
//! nested Txns: "value < new → put, else (absent → put)". Byte order of equal-length
//! decimals is numeric order, so etcd compares numbers. Reads are batched (`heads.rs`).

use etcd_client::{Compare, CompareOp, DeleteOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};

use super::Inner;
use crate::{Head, Lease, LeaseKind, Member, Role, ServingRecord};
use strata_types::{Error, Result};

/// The value of a writer or compaction lease key.
#[derive(Serialize, Deserialize)]
pub(super) struct LeaseValue {
    pub(super) holder: String,
}

/// Zero-padded to 20 digits (u64::MAX has 20), so string order is numeric order.
fn head_value(n: u64) -> String {
    format!("{n:020}")
}

impl Inner {
    fn lease_key(&self, kind: LeaseKind, key: &str) -> String {
        self.key(&format!("leases/{}/{key}", kind.as_str()))
    }

    pub(super) fn head_keys(&self, shard_key: &str) -> (String, String) {
        (self.key(&format!("heads/{shard_key}/wal")), self.key(&format!("heads/{shard_key}/manifest")))
    }

    pub(super) async fn try_acquire(&self, kind: LeaseKind, key: &str, holder: &str) -> Result<Option<Lease>> {
        let (session_id, session) = {
            let now = self.clock.now();
            let session = self.session();
            if !session.alive(now) {
                return Err(Error::retryable("the etcd session expired; a new one is being opened"));
            }
            (session.id, session.lease_session())
        };
        let etcd_key = self.lease_key(kind, key);
        let value = serde_json::to_vec(&LeaseValue { holder: holder.to_owned() })
            .map_err(|e| Error::internal("encoding a lease").with_source(e))?;
        let txn = Txn::new()
            .when([Compare::create_revision(etcd_key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(etcd_key.clone(), value, Some(PutOptions::new().with_lease(session_id)))])
            .or_else([TxnOp::get(etcd_key.clone(), None)]);
        let mut client = self.client.clone();
        let response = self.bounded("acquiring a lease", client.txn(txn)).await?;
        let lease = |epoch: i64| Lease {
            kind,
            key: key.to_owned(),
            holder: holder.to_owned(),
            epoch: epoch.unsigned_abs(),
            session,
        };
        if response.succeeded() {
            // The put created the key in this Txn, so its create_revision is the Txn's.
            let revision = response.header().map(|h| h.revision()).unwrap_or_default();
            return Ok(Some(lease(revision)));
        }
        let Some(TxnOpResponse::Get(get)) = response.op_responses().into_iter().next() else {
            return Err(Error::internal("etcd answered a lease Txn without its read"));
        };
        let Some(kv) = get.kvs().first() else {
            // Cannot happen (the compare saw the key); treat as held by someone else.
            return Ok(None);
        };
        let current: LeaseValue =
            serde_json::from_slice(kv.value()).map_err(|e| Error::corrupt(format!("lease {etcd_key}"), e))?;
        if current.holder == holder && kv.lease() == session_id {
            let existing = lease(kv.create_revision());
            self.session().unmark_released(&existing);
            return Ok(Some(existing));
        }
        Ok(None)
    }

    pub(super) async fn release(&self, lease: &Lease) -> Result<()> {
        // Invalid locally first: the caller is giving it up whatever etcd answers.
        self.session().mark_released(lease);
        let etcd_key = self.lease_key(lease.kind, &lease.key);
        let epoch = i64::try_from(lease.epoch).map_err(|_| Error::invalid("lease epoch out of range"))?;
        let txn = Txn::new()
            .when([Compare::create_revision(etcd_key.clone(), CompareOp::Equal, epoch)])
            .and_then([TxnOp::delete(etcd_key, None)]);
        let mut client = self.client.clone();
        self.bounded("releasing a lease", client.txn(txn)).await.map(drop)
    }

    pub(super) async fn publish_head(&self, shard_key: &str, head: Head) -> Result<()> {
        let (wal, manifest) = self.head_keys(shard_key);
        let raise = |key: String, n: u64| {
            let value = head_value(n);
            // Value compares are false on absent keys, hence the nested "absent → put".
            let if_absent = Txn::new()
                .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.clone(), value.clone(), None)]);
            TxnOp::txn(
                Txn::new()
                    .when([Compare::value(key.clone(), CompareOp::Less, value.clone())])
                    .and_then([TxnOp::put(key, value, None)])
                    .or_else([TxnOp::txn(if_absent)]),
            )
        };
        let txn = Txn::new().and_then([raise(wal, head.wal_seq), raise(manifest, head.manifest_version)]);
        let mut client = self.client.clone();
        self.bounded("publishing a head", client.txn(txn)).await.map(drop)
    }

    pub(super) async fn register(&self, member: Member) -> Result<()> {
        let mut records = self.records.lock().await;
        records.members.insert((member.role, member.node_id.clone()), member.clone());
        // Recorded first: if this put fails, the next session still registers the member.
        let op = self.member_put(&member, self.session().id)?;
        let mut client = self.client.clone();
        self.bounded("registering a member", client.txn(Txn::new().and_then([op]))).await.map(drop)
    }

    pub(super) async fn deregister(&self, node_id: &str) -> Result<()> {
        let mut records = self.records.lock().await;
        records.members.retain(|(_, node), _| node != node_id);
        let ops: Vec<TxnOp> = Role::ALL
            .into_iter()
            .map(|role| TxnOp::delete(self.key(&format!("members/{}/{node_id}", role.as_str())), None))
            .collect();
        let mut client = self.client.clone();
        self.bounded("deregistering a member", client.txn(Txn::new().and_then(ops))).await.map(drop)
    }

    pub(super) async fn set_serving(&self, record: ServingRecord) -> Result<()> {
        let mut records = self.records.lock().await;
        let slot = (record.collection_id.clone(), record.shard, record.node_id.clone());
        records.serving.insert(slot, record.clone());
        let op = self.serving_put(&record, self.session().id)?;
        let mut client = self.client.clone();
        self.bounded("recording a serving claim", client.txn(Txn::new().and_then([op]))).await.map(drop)
    }

    pub(super) async fn clear_serving(&self, collection_id: &str, shard: u32, node_id: &str) -> Result<()> {
        let mut records = self.records.lock().await;
        records.serving.remove(&(collection_id.to_owned(), shard, node_id.to_owned()));
        let key = self.serving_key(collection_id, shard, node_id);
        let mut client = self.client.clone();
        self.bounded("withdrawing a serving claim", client.delete(key, None::<DeleteOptions>)).await.map(drop)
    }

    pub(super) async fn set_drain(&self, node_id: &str, draining: bool) -> Result<()> {
        let key = self.key(&format!("admin/drain/{node_id}"));
        let mut client = self.client.clone();
        if draining {
            self.bounded("setting a drain", client.put(key, "1", None)).await.map(drop)
        } else {
            self.bounded("lifting a drain", client.delete(key, None)).await.map(drop)
        }
    }
}
