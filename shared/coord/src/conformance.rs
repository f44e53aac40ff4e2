//! Conformance tests every [`Coordination`] implementation must pass.
//!
//! `make` returns a coordinator for one more "node" of the same cluster: for the
//! in-process implementation the same instance every time, for etcd a new client with its
//! own session against the same etcd and cluster prefix. The checks never depend on
//! timing beyond waiting (bounded) for the watched view to catch up.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use strata_types::time::{self, Clock, SystemClock};

use super::*;

/// Runs every conformance check. Each check gets fresh keys, so `make` may share state.
pub async fn run<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Coordination>>,
{
    let (a, b) = (make().await, make().await);
    leases_are_exclusive_and_epochs_grow(a.as_ref(), b.as_ref()).await;
    heads_only_move_forward(a.as_ref(), b.as_ref()).await;
    membership_serving_and_drains_show_in_the_view(a.as_ref(), b.as_ref()).await;
}

async fn leases_are_exclusive_and_epochs_grow(a: &dyn Coordination, b: &dyn Coordination) {
    let la = a.try_acquire(LeaseKind::Writer, "c/0", "node-a").await.unwrap().expect("free lease");
    assert!(a.lease_valid(&la));
    assert!(b.try_acquire(LeaseKind::Writer, "c/0", "node-b").await.unwrap().is_none());
    let again = a.try_acquire(LeaseKind::Writer, "c/0", "node-a").await.unwrap().expect("own lease");
    assert_eq!(again.epoch, la.epoch);
    // Different kinds of lease on one key are independent.
    let compact = b.try_acquire(LeaseKind::Compact, "c/0", "node-b").await.unwrap().expect("other kind");
    a.release(&la).await.unwrap();
    assert!(!a.lease_valid(&la), "a released lease is no longer valid");
    let lb = b.try_acquire(LeaseKind::Writer, "c/0", "node-b").await.unwrap().expect("released lease");
    assert!(lb.epoch > la.epoch, "epochs must grow across holders");
    // Releasing a lease one no longer holds does not take it from the new holder.
    a.release(&la).await.unwrap();
    assert!(a.try_acquire(LeaseKind::Writer, "c/0", "node-a").await.unwrap().is_none());
    assert!(b.lease_valid(&lb));
    b.release(&lb).await.unwrap();
    b.release(&compact).await.unwrap();
}

async fn heads_only_move_forward(a: &dyn Coordination, b: &dyn Coordination) {
    assert_eq!(a.head("h/0").await.unwrap(), None);
    a.publish_head("h/0", Head { wal_seq: 5, manifest_version: 2 }).await.unwrap();
    b.publish_head("h/0", Head { wal_seq: 3, manifest_version: 3 }).await.unwrap();
    assert_eq!(a.head("h/0").await.unwrap(), Some(Head { wal_seq: 5, manifest_version: 3 }));
    assert_eq!(b.head("h/0").await.unwrap(), Some(Head { wal_seq: 5, manifest_version: 3 }));
    // Large numbers compare numerically, not as strings.
    a.publish_head("h/0", Head { wal_seq: 10_000_000_000, manifest_version: 3 }).await.unwrap();
    a.publish_head("h/0", Head { wal_seq: 9, manifest_version: 3 }).await.unwrap();
    assert_eq!(b.head("h/0").await.unwrap().unwrap().wal_seq, 10_000_000_000);
}

fn member(node: &str, role: Role) -> Member {
    Member {
        node_id: node.to_owned(),
        role,
        http_url: format!("http://{node}:7700"),
        grpc_url: format!("http://{node}:7701"),
        started_ms: 1,
    }
}

/// Waits (bounded, in real time: the implementations under test run on real time) until
/// `check` holds for `coord`'s view.
pub async fn eventually(coord: &dyn Coordination, what: &str, check: impl Fn(&ClusterView) -> bool) {
    let clock = SystemClock;
    let mut rx = coord.view();
    let deadline = clock.now() + Duration::from_secs(10);
    loop {
        if check(&rx.borrow_and_update()) {
            return;
        }
        let left = deadline.saturating_duration_since(clock.now());
        match time::timeout(&clock, left, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => panic!("view never showed {what}: {:?}", *rx.borrow()),
        }
    }
}

async fn membership_serving_and_drains_show_in_the_view(a: &dyn Coordination, b: &dyn Coordination) {
    a.register(member("q-a", Role::Query)).await.unwrap();
    b.register(member("q-b", Role::Query)).await.unwrap();
    b.register(member("i-b", Role::Ingest)).await.unwrap();
    eventually(a, "both query members", |v| v.members_of(Role::Query).len() == 2).await;
    eventually(b, "the ingest member", |v| v.member(Role::Ingest, "i-b").is_some()).await;

    let record = ServingRecord {
        collection_id: "c".to_owned(),
        shard: 1,
        node_id: "q-a".to_owned(),
        state: ServeState::Loading,
    };
    a.set_serving(record.clone()).await.unwrap();
    eventually(b, "a loading record", |v| v.serving_of("c", 1).any(|r| r.state == ServeState::Loading)).await;
    a.set_serving(ServingRecord { state: ServeState::Serving, ..record }).await.unwrap();
    eventually(b, "the record serving", |v| v.serving_of("c", 1).all(|r| r.state == ServeState::Serving)).await;
    a.clear_serving("c", 1, "q-a").await.unwrap();
    eventually(b, "the record gone", |v| v.serving_of("c", 1).next().is_none()).await;

    let lease = a.try_acquire(LeaseKind::Writer, "v/0", "i-a").await.unwrap().unwrap();
    eventually(b, "the writer lease", |v| v.lease(LeaseKind::Writer, "v/0").is_some_and(|l| l.holder == "i-a")).await;
    a.release(&lease).await.unwrap();
    eventually(b, "the lease released", |v| v.lease(LeaseKind::Writer, "v/0").is_none()).await;

    b.set_drain("q-a", true).await.unwrap();
    eventually(a, "the drain", |v| v.drains.contains("q-a")).await;
    b.set_drain("q-a", false).await.unwrap();
    eventually(a, "the drain lifted", |v| !v.drains.contains("q-a")).await;

    a.deregister("q-b").await.unwrap();
    eventually(b, "q-b deregistered", |v| v.member(Role::Query, "q-b").is_none()).await;
    assert!(b.view().borrow().member(Role::Ingest, "i-b").is_some(), "deregister removes only the named node");
    a.deregister("q-a").await.unwrap();
}
