//! `strata-coord`: coordination — membership, leases, serving records, drains and shard heads. This state
//! can be lost at any time (object storage is the truth); it only decides who *should* do
//! which work, and gives readers a cheap freshness hint.
//!
//! The trait is object-safe so roles take an `Arc<dyn Coordination>`. [`InProcess`] is the
//! standalone implementation; [`etcd::Etcd`] is the cluster one. Both pass
//! [`conformance::run`].
//!
//! Model:
//! - A node has one *session* (in etcd: a lease with a TTL kept alive in the background).
//!   Its membership record, the leases it holds and its serving records live exactly as long
//!   as that session. A node whose session ended (it was paused or partitioned past the TTL)
//!   learns it locally through [`Coordination::lease_valid`] and must stop acting on what it
//!   held; the implementation opens a new session and re-registers the node, and the roles
//!   re-acquire what they should own.
//! - Leases carry an *epoch* that grows every time a lease changes hands; writers stamp it
//!   into WAL entries and manifests. Correctness never depends on lease timing: create-only
//!   commits fence a stale holder regardless.
//! - [`ClusterView`] is a watched, eventually consistent snapshot of members, leases, serving
//!   records and drains. It drives ownership and routing, never correctness.
//! - Heads are read linearizably ([`Coordination::head`]); writers publish them before
//!   acknowledging (decision 0004). Readers read them through [`HeadHints`], which bounds
//!   the wait and lets them probe object storage instead when coordination is down
//!   (decision 0011).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use strata_types::Result;

pub mod conformance;
pub mod etcd;
mod hints;
mod in_process;
mod metrics;
pub mod rendezvous;

pub use hints::{HEAD_READ_TIMEOUT, HEAD_RETRY_AFTER, HeadHints, Unavailable};
pub use in_process::InProcess;
pub use metrics::{LeaseMetrics, handoffs_counter};

/// What a lease is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseKind {
    Writer,
    Compact,
}

impl LeaseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseKind::Writer => "writer",
            LeaseKind::Compact => "compact",
        }
    }
}

/// A held lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub kind: LeaseKind,
    /// A shard key ([`shard_key`]).
    pub key: String,
    pub holder: String,
    /// Grows every time the lease changes hands.
    pub epoch: u64,
    /// The holder's session the lease is bound to (0 in process).
    #[serde(default)]
    pub session: u64,
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

/// The role a node plays. A standalone process registers every role under one node id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Ingest,
    Query,
    Compactor,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Ingest, Role::Query, Role::Compactor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Query => "query",
            Role::Compactor => "compactor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// A live node, as registered under its session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Member {
    pub node_id: String,
    pub role: Role,
    /// Base URL of the node's REST API, e.g. `http://10.0.0.5:7700`.
    pub http_url: String,
    /// Base URL of the node's gRPC API, e.g. `http://10.0.0.5:7701`.
    pub grpc_url: String,
    pub started_ms: u64,
}

/// Whether a query node has finished loading a shard it was assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ServeState {
    Loading,
    Serving,
}

/// A query node's claim on a shard (`leases/serve/{collection}/{shard}/{node}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServingRecord {
    pub collection_id: String,
    pub shard: u32,
    pub node_id: String,
    pub state: ServeState,
}

/// An eventually consistent snapshot of the cluster, kept current by a watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    pub members: Vec<Member>,
    pub leases: Vec<Lease>,
    pub serving: Vec<ServingRecord>,
    /// Nodes asked to drain (they keep running but receive no new shards).
    pub drains: BTreeSet<String>,
    /// The catalog version published for each collection name ([`catalog_key`]), watched
    /// like the rest of the view so roles re-list the catalog from object storage only
    /// when it changed (decision 0012). `None` while the view is not being followed
    /// (coordination unreachable): then roles poll object storage at their old cadence.
    pub catalog: Option<BTreeMap<String, u64>>,
}

impl ClusterView {
    /// Live members of `role`, sorted by node id.
    pub fn members_of(&self, role: Role) -> Vec<&Member> {
        let mut v: Vec<&Member> = self.members.iter().filter(|m| m.role == role).collect();
        v.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        v
    }

    pub fn member(&self, role: Role, node_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.role == role && m.node_id == node_id)
    }

    pub fn lease(&self, kind: LeaseKind, key: &str) -> Option<&Lease> {
        self.leases.iter().find(|l| l.kind == kind && l.key == key)
    }

    /// The query nodes that should serve the shard `key`: its `replication` rendezvous
    /// owners among live, non-draining query nodes.
    pub fn serving_owners(&self, key: &str, replication: u32) -> Vec<&str> {
        let eligible =
            self.members_of(Role::Query).into_iter().map(|m| m.node_id.as_str()).filter(|n| !self.drains.contains(*n));
        rendezvous::owners(key, eligible, replication as usize)
    }

    /// The ingest node that should write the shard `key`: its rendezvous owner among live,
    /// non-draining ingest nodes, so a drain hands the node's writer leases over (decision
    /// 0013). A shard always needs a writer, so when every ingest node drains the drains are
    /// ignored rather than leaving shards unwritable.
    pub fn writer_owner(&self, key: &str) -> Option<&Member> {
        let members = self.members_of(Role::Ingest);
        let eligible: Vec<&str> =
            members.iter().map(|m| m.node_id.as_str()).filter(|n| !self.drains.contains(*n)).collect();
        let owner = match eligible.is_empty() {
            true => rendezvous::owner(key, members.iter().map(|m| m.node_id.as_str()))?,
            false => rendezvous::owner(key, eligible)?,
        };
        self.member(Role::Ingest, owner)
    }

    /// Serving records of one shard.
    pub fn serving_of<'a>(&'a self, collection_id: &'a str, shard: u32) -> impl Iterator<Item = &'a ServingRecord> {
        self.serving.iter().filter(move |r| r.collection_id == collection_id && r.shard == shard)
    }
}

/// Coordination between roles.
pub trait Coordination: Send + Sync + 'static {
    /// Takes the lease `(kind, key)` for `holder` if it is free (or already `holder`'s in
    /// the current session). Returns `None` if someone else holds it. The lease ends with
    /// the holder's session.
    fn try_acquire(&self, kind: LeaseKind, key: &str, holder: &str) -> BoxFuture<'_, Result<Option<Lease>>>;
    /// Gives a lease back; a no-op if it is no longer held by `lease.holder` at `lease.epoch`.
    fn release(&self, lease: &Lease) -> BoxFuture<'_, Result<()>>;
    /// Whether `lease` is still ours as far as this node can tell without asking: its
    /// session is the current one and has not passed its local deadline. Cheap; callers
    /// check it before every action the lease guards.
    fn lease_valid(&self, lease: &Lease) -> bool;

    /// Publishes a newer head for `shard_key` (heads only move forward, field by field).
    fn publish_head(&self, shard_key: &str, head: Head) -> BoxFuture<'_, Result<()>>;
    /// The newest published head of `shard_key`, if any (a linearizable read).
    fn head(&self, shard_key: &str) -> BoxFuture<'_, Result<Option<Head>>>;

    /// Registers this process as `member` for as long as its session lives (re-registered
    /// on a new session until [`Coordination::deregister`]).
    fn register(&self, member: Member) -> BoxFuture<'_, Result<()>>;
    /// Removes `node_id`'s membership records (any role); if the node is this process, it
    /// is no longer re-registered.
    fn deregister(&self, node_id: &str) -> BoxFuture<'_, Result<()>>;
    /// Records (or updates) this process's claim on a shard; bound to its session.
    fn set_serving(&self, record: ServingRecord) -> BoxFuture<'_, Result<()>>;
    /// Withdraws this process's claim on a shard.
    fn clear_serving(&self, collection_id: &str, shard: u32, node_id: &str) -> BoxFuture<'_, Result<()>>;
    /// Asks a node to drain (or stop draining). Drains outlive sessions.
    fn set_drain(&self, node_id: &str, draining: bool) -> BoxFuture<'_, Result<()>>;

    /// The current cluster view; the receiver changes whenever it does.
    fn view(&self) -> watch::Receiver<Arc<ClusterView>>;

    /// Ends this process's session on a clean shutdown, so its membership, leases and
    /// serving records go at once instead of when the session expires.
    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async { Ok(()) })
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

/// Splits a [`shard_key`] into collection id and shard.
pub fn parse_shard_key(key: &str) -> Option<(&str, u32)> {
    let (collection, shard) = key.rsplit_once('/')?;
    Some((collection, shard.parse().ok()?))
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn in_process_passes_the_conformance_suite() {
        // One process: every "node" shares the one coordinator.
        let coord: std::sync::Arc<dyn super::Coordination> = std::sync::Arc::new(super::InProcess::new());
        super::conformance::run(|| {
            let coord = coord.clone();
            async move { coord }
        })
        .await;
    }

    fn ingest(id: &str) -> super::Member {
        super::Member {
            node_id: id.to_owned(),
            role: super::Role::Ingest,
            http_url: format!("http://{id}"),
            grpc_url: format!("http://{id}:1"),
            started_ms: 0,
        }
    }

    #[test]
    fn draining_ingest_nodes_own_no_shard_unless_all_drain() {
        let mut view =
            super::ClusterView { members: vec![ingest("i-1"), ingest("i-2")], ..super::ClusterView::default() };
        let keys: Vec<String> = (0..16).map(|s| super::shard_key("c", s)).collect();
        let owner = |view: &super::ClusterView, k: &str| view.writer_owner(k).unwrap().node_id.clone();
        assert!(keys.iter().any(|k| owner(&view, k) == "i-2"), "i-2 owns nothing to hand over");
        view.drains.insert("i-2".to_owned());
        assert!(keys.iter().all(|k| owner(&view, k) == "i-1"), "a draining node still owns shards");
        view.drains.insert("i-1".to_owned());
        let all_drained: Vec<String> = keys.iter().map(|k| owner(&view, k)).collect();
        view.drains.clear();
        let none_drained: Vec<String> = keys.iter().map(|k| owner(&view, k)).collect();
        assert_eq!(all_drained, none_drained, "with every ingest node draining, ownership is as without drains");
    }

    #[test]
    fn shard_keys_round_trip() {
        let key = super::shard_key("c-01", 7);
        assert_eq!(super::parse_shard_key(&key), Some(("c-01", 7)));
        assert_eq!(super::parse_shard_key("nope"), None);
    }
}
