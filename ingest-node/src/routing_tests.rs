//! Write routing between two ingest nodes sharing one in-process coordination and store:
//! writes follow the writer-lease holder while it differs from the rendezvous owner, and a
//! forwarded write never makes a non-owner start a writer.

use std::sync::Arc;

use object_store::memory::InMemory;
use strata_coord::{Coordination, InProcess, LeaseKind, Member, Role, shard_key};
use strata_storage::catalog::{self, NewCollection};
use strata_types::ErrorKind;
use strata_types::time::SystemClock;
use strata_types::{CollectionDef, HnswParams, Metric};
use tokio::sync::watch;

use crate::test_deps;

use crate::{IngestConfig, IngestNode};

struct Pair {
    coord: Arc<InProcess>,
    nodes: Vec<IngestNode>,
    _shutdown: watch::Sender<bool>,
}

/// Ingest nodes `ids`, registered as members, over one store and one coordination.
async fn start(ids: &[&str]) -> Pair {
    let store: Arc<InMemory> = Arc::new(InMemory::new());
    let coord = Arc::new(InProcess::new());
    let (shutdown, rx) = watch::channel(false);
    let mut nodes = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let deps = test_deps::deps(store.clone(), coord.clone(), Arc::new(SystemClock), id, 7).await;
        let member = Member {
            node_id: (*id).into(),
            role: Role::Ingest,
            http_url: format!("http://127.0.0.1:{}", 1 + i),
            grpc_url: format!("http://127.0.0.1:{}", 101 + i),
            started_ms: 0,
        };
        coord.register(member).await.unwrap();
        nodes.push(crate::start(IngestConfig::default(), deps, rx.clone()).await.unwrap());
    }
    Pair { coord, nodes, _shutdown: shutdown }
}

/// The index in `nodes` of the rendezvous owner of `key`.
fn owner_index(pair: &Pair, key: &str) -> usize {
    let owner = pair.coord.view().borrow().writer_owner(key).unwrap().node_id.clone();
    pair.nodes.iter().position(|n| n.deps.node_id == owner).unwrap()
}

#[tokio::test]
async fn writes_follow_the_lease_holder_then_the_owner() {
    let pair = start(&["ingest-a", "ingest-b"]).await;
    // A shard of no collection: ownership reconciliation leaves its lease alone.
    let (collection, shard) = ("elsewhere-0123", 0);
    let key = shard_key(collection, shard);
    let owner = owner_index(&pair, &key);
    let (a, b) = (&pair.nodes[owner], &pair.nodes[1 - owner]);
    let (owner_id, other_id) = (&a.deps.node_id, &b.deps.node_id);
    assert!(a.router.write_target(collection, shard).await.is_none(), "the owner writes its shard itself");
    assert_eq!(b.router.write_target(collection, shard).await.unwrap().node_id, *owner_id);

    // The other node holds the lease (a handover in progress): the owner sends it the
    // writes. The holder itself has no running writer (it is stepping down), so it sends
    // its own writes on to the owner rather than take the shard back.
    let lease = pair.coord.try_acquire(LeaseKind::Writer, &key, other_id).await.unwrap().unwrap();
    assert_eq!(a.router.write_target(collection, shard).await.unwrap().node_id, *other_id);
    assert_eq!(b.router.write_target(collection, shard).await.unwrap().node_id, *owner_id);

    // Released: back to the owner.
    pair.coord.release(&lease).await.unwrap();
    assert!(a.router.write_target(collection, shard).await.is_none());
    assert_eq!(b.router.write_target(collection, shard).await.unwrap().node_id, *owner_id);

    // A holder that is no longer a member is not a target: writes go to the owner.
    let lease = pair.coord.try_acquire(LeaseKind::Writer, &key, "ingest-gone").await.unwrap().unwrap();
    assert!(a.router.write_target(collection, shard).await.is_none());
    pair.coord.release(&lease).await.unwrap();
}

/// Collection `c`: 2-d, L2, one shard (shared with the other test modules).
pub(crate) fn new_collection() -> NewCollection {
    NewCollection {
        name: "c".into(),
        dimension: 2,
        metric: Metric::L2,
        shards: 1,
        replication: 1,
        hnsw: HnswParams::default(),
        attributes: Default::default(),
    }
}

async fn collection(pair: &Pair) -> Arc<CollectionDef> {
    Arc::new(catalog::create(pair.nodes[0].deps.store.as_ref(), &new_collection(), 0, 0).await.unwrap())
}

#[tokio::test]
async fn a_forwarded_write_never_starts_a_writer_on_a_non_owner() {
    let pair = start(&["ingest-a", "ingest-b"]).await;
    let def = collection(&pair).await;
    let owner = owner_index(&pair, &shard_key(&def.id, 0));
    let other = 1 - owner;

    let refused = pair.nodes[other].router.forwarded_writer(&def, 0).await.err().expect("a non-owner refuses");
    assert_eq!(refused.kind(), ErrorKind::Retryable, "{refused}");
    assert!(refused.to_string().contains("moving"), "{refused}");
    assert_eq!(pair.nodes[other].writers.len().await, 0, "no writer was started");
    let lease = pair.coord.view().borrow().lease(LeaseKind::Writer, &shard_key(&def.id, 0)).cloned();
    assert!(lease.as_ref().is_none_or(|l| l.holder != pair.nodes[other].deps.node_id), "{lease:?}");

    // The owner starts one (or reuses the one its reconciliation started), and later
    // forwarded writes use that same running writer.
    let writer = pair.nodes[owner].router.forwarded_writer(&def, 0).await.unwrap();
    assert!(!writer.is_stopped());
    let again = pair.nodes[owner].router.forwarded_writer(&def, 0).await.unwrap();
    assert!(Arc::ptr_eq(&writer, &again));
    // The owner, holding the lease with a running writer, writes locally; the other node
    // sends the shard's writes to it.
    assert!(pair.nodes[owner].router.write_target(&def.id, 0).await.is_none());
    let target = pair.nodes[other].router.write_target(&def.id, 0).await.unwrap();
    assert_eq!(target.node_id, pair.nodes[owner].deps.node_id);
}
