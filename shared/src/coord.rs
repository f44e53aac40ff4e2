//! Coordination: membership, leases and shard heads. This state can be lost at any time
//! (object storage is the truth); it only decides who *should* do which work, and gives
//! readers a cheap freshness hint.
//!
//! The trait is object-safe so roles take an `Arc<dyn Coordination>`. [`InProcess`] is the
//! standalone implementation; the etcd implementation arrives with cluster mode and must
//! pass the same conformance tests.
//!
//! Leases carry an *epoch* that grows every time a lease changes hands; writers stamp it
//! into WAL entries and manifests. Correctness never depends on lease timing: create-only
//! commits fence a stale holder regardless.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::Result;

/// What a lease is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseKind {
    Writer,
    Compact,
}

/// A held lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub kind: LeaseKind,
    pub key: String,
    pub holder: String,
    pub epoch: u64,
}

/// The freshest known state of a shard.
///
/// Writers publish a new `wal_seq` *before* acknowledging the writes it holds, and heads
/// only move forward (field by field), so a reader that has applied everything up to the
/// published head has every acknowledged write. When the head is missing (coordination
/// state lost, or never published) readers fall back to probing object storage, which is
/// the truth.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Newest acknowledged WAL sequence.
    pub wal_seq: u64,
    /// Newest committed manifest version.
    pub manifest_version: u64,
}

/// Coordination between roles.
pub trait Coordination: Send + Sync + 'static {
    /// Takes the lease `(kind, key)` for `holder` if it is free (or already `holder`'s).
    /// Returns `None` if someone else holds it.
    fn try_acquire(&self, kind: LeaseKind, key: &str, holder: &str) -> BoxFuture<'_, Result<Option<Lease>>>;
    /// Gives a lease back; a no-op if it is no longer held by `lease.holder`.
    fn release(&self, lease: &Lease) -> BoxFuture<'_, Result<()>>;
    /// Publishes a newer head for `shard_key` (heads only move forward).
    fn publish_head(&self, shard_key: &str, head: Head) -> BoxFuture<'_, Result<()>>;
    /// The newest published head of `shard_key`, if any.
    fn head(&self, shard_key: &str) -> BoxFuture<'_, Result<Option<Head>>>;
    /// A receiver that changes whenever any head is published; readers use it to wake up.
    fn head_changes(&self) -> watch::Receiver<u64>;
}

/// The standalone, in-process implementation.
pub struct InProcess {
    state: Mutex<InProcessState>,
    changes: watch::Sender<u64>,
}

#[derive(Default)]
struct InProcessState {
    leases: HashMap<(LeaseKind, String), Lease>,
    next_epoch: u64,
    heads: HashMap<String, Head>,
}

impl Default for InProcess {
    fn default() -> Self {
        Self { state: Mutex::default(), changes: watch::channel(0).0 }
    }
}

impl InProcess {
    pub fn new() -> Self {
        Self::default()
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, InProcessState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Coordination for InProcess {
    fn try_acquire(&self, kind: LeaseKind, key: &str, holder: &str) -> BoxFuture<'_, Result<Option<Lease>>> {
        let mut state = self.lock();
        let slot = (kind, key.to_owned());
        let result = match state.leases.get(&slot) {
            Some(lease) if lease.holder == holder => Some(lease.clone()),
            Some(_) => None,
            None => {
                state.next_epoch += 1;
                let lease = Lease { kind, key: key.to_owned(), holder: holder.to_owned(), epoch: state.next_epoch };
                state.leases.insert(slot, lease.clone());
                Some(lease)
            }
        };
        Box::pin(async move { Ok(result) })
    }

    fn release(&self, lease: &Lease) -> BoxFuture<'_, Result<()>> {
        let mut state = self.lock();
        let slot = (lease.kind, lease.key.clone());
        if state.leases.get(&slot).is_some_and(|l| l.holder == lease.holder) {
            state.leases.remove(&slot);
        }
        Box::pin(async { Ok(()) })
    }

    fn publish_head(&self, shard_key: &str, head: Head) -> BoxFuture<'_, Result<()>> {
        {
            let mut state = self.lock();
            let entry = state.heads.entry(shard_key.to_owned()).or_default();
            entry.wal_seq = entry.wal_seq.max(head.wal_seq);
            entry.manifest_version = entry.manifest_version.max(head.manifest_version);
        }
        self.changes.send_modify(|n| *n += 1);
        Box::pin(async { Ok(()) })
    }

    fn head(&self, shard_key: &str) -> BoxFuture<'_, Result<Option<Head>>> {
        let head = self.lock().heads.get(shard_key).copied();
        Box::pin(async move { Ok(head) })
    }

    fn head_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

/// The coordination key under which a collection name's newest catalog version is
/// published (as `Head::wal_seq`), so readers re-resolve a name only when it changed.
pub fn catalog_key(name: &str) -> String {
    format!("catalog/{name}")
}

/// The coordination key of one shard.
pub fn shard_key(collection_id: &str, shard: u32) -> String {
    format!("{collection_id}/{shard}")
}

/// Shared conformance tests every [`Coordination`] implementation must pass.
pub mod conformance {
    use super::*;

    /// Runs every conformance check against `coord` (which must be fresh).
    pub async fn run(coord: &dyn Coordination) {
        leases_are_exclusive_and_epochs_grow(coord).await;
        heads_only_move_forward(coord).await;
    }

    async fn leases_are_exclusive_and_epochs_grow(coord: &dyn Coordination) {
        let a = coord.try_acquire(LeaseKind::Writer, "c/0", "node-a").await.unwrap().expect("free lease");
        assert!(coord.try_acquire(LeaseKind::Writer, "c/0", "node-b").await.unwrap().is_none());
        let again = coord.try_acquire(LeaseKind::Writer, "c/0", "node-a").await.unwrap().expect("own lease");
        assert_eq!(again.epoch, a.epoch);
        // Different kinds of lease on one key are independent.
        assert!(coord.try_acquire(LeaseKind::Compact, "c/0", "node-b").await.unwrap().is_some());
        coord.release(&a).await.unwrap();
        let b = coord.try_acquire(LeaseKind::Writer, "c/0", "node-b").await.unwrap().expect("released lease");
        assert!(b.epoch > a.epoch, "epochs must grow across holders");
        // Releasing a lease one no longer holds does not take it from the new holder.
        coord.release(&a).await.unwrap();
        assert!(coord.try_acquire(LeaseKind::Writer, "c/0", "node-a").await.unwrap().is_none());
    }

    async fn heads_only_move_forward(coord: &dyn Coordination) {
        let changes = coord.head_changes();
        assert_eq!(coord.head("h/0").await.unwrap(), None);
        coord.publish_head("h/0", Head { wal_seq: 5, manifest_version: 2 }).await.unwrap();
        coord.publish_head("h/0", Head { wal_seq: 3, manifest_version: 3 }).await.unwrap();
        assert_eq!(coord.head("h/0").await.unwrap(), Some(Head { wal_seq: 5, manifest_version: 3 }));
        assert!(changes.has_changed().unwrap_or(false), "publishing must wake watchers");
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn in_process_passes_the_conformance_suite() {
        super::conformance::run(&super::InProcess::new()).await;
    }
}
