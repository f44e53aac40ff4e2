//! Consistency levels on the request path (decision 0015), on an injected clock: an
//! eventual read of a loaded shard makes no request to coordination or object storage; a
//! `max_staleness_ms` read refreshes exactly when the state is older than its bound; the
//! background refresher brings eventual reads up to date within `eventual_max_lag_ms`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Value, json};
use strata_coord::{ClusterView, Coordination, Head, InProcess, Lease, LeaseKind, Member, ServingRecord, shard_key};
use strata_deps::Deps;
use strata_storage::catalog;
use strata_storage::instrumented_store::InstrumentedStore;
use strata_storage::paths::ShardPaths;
use strata_storage::wal::{self, WalEntry, WalOp};
use strata_types::time::ManualClock;
use strata_types::{CollectionDef, Result, Row, RowId};
use tokio::sync::watch;

use crate::tests::{collection, deps_on};
use crate::{QueryConfig, QueryNode};

/// In-process coordination that records the keys of the head reads made through it.
#[derive(Default)]
struct CountingCoord {
    inner: InProcess,
    head_reads: Mutex<Vec<String>>,
}

impl CountingCoord {
    fn head_reads(&self) -> Vec<String> {
        self.head_reads.lock().unwrap().clone()
    }
}

impl Coordination for CountingCoord {
    fn try_acquire(&self, kind: LeaseKind, key: &str, holder: &str) -> BoxFuture<'_, Result<Option<Lease>>> {
        self.inner.try_acquire(kind, key, holder)
    }
    fn release(&self, lease: &Lease) -> BoxFuture<'_, Result<()>> {
        self.inner.release(lease)
    }
    fn lease_valid(&self, lease: &Lease) -> bool {
        self.inner.lease_valid(lease)
    }
    fn publish_head(&self, shard_key: &str, head: Head) -> BoxFuture<'_, Result<()>> {
        self.inner.publish_head(shard_key, head)
    }
    fn head(&self, shard_key: &str) -> BoxFuture<'_, Result<Option<Head>>> {
        self.head_reads.lock().unwrap().push(shard_key.to_owned());
        self.inner.head(shard_key)
    }
    fn register(&self, member: Member) -> BoxFuture<'_, Result<()>> {
        self.inner.register(member)
    }
    fn deregister(&self, node_id: &str) -> BoxFuture<'_, Result<()>> {
        self.inner.deregister(node_id)
    }
    fn set_serving(&self, record: ServingRecord) -> BoxFuture<'_, Result<()>> {
        self.inner.set_serving(record)
    }
    fn clear_serving(&self, collection_id: &str, shard: u32, node_id: &str) -> BoxFuture<'_, Result<()>> {
        self.inner.clear_serving(collection_id, shard, node_id)
    }
    fn set_drain(&self, node_id: &str, draining: bool) -> BoxFuture<'_, Result<()>> {
        self.inner.set_drain(node_id, draining)
    }
    fn view(&self) -> watch::Receiver<Arc<ClusterView>> {
        self.inner.view()
    }
}

/// A query node over counted coordination and storage on a manual clock, with a 2-shard
/// collection `c` whose row `id` sits at `[id, 0]`, rows 1..=4 written and published.
struct Fixture {
    deps: Deps,
    coord: Arc<CountingCoord>,
    clock: Arc<ManualClock>,
    def: CollectionDef,
    node: QueryNode,
    seqs: [u64; 2],
    _shutdown: watch::Sender<bool>,
}

impl Fixture {
    async fn start(config: QueryConfig) -> Fixture {
        let coord = Arc::new(CountingCoord::default());
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let mut deps = deps_on(coord.clone()).await;
        deps.clock = clock.clone();
        deps.store = InstrumentedStore::wrap(deps.store.clone(), &deps.metrics, clock.clone());
        let def = catalog::create(deps.store.as_ref(), &collection("c", 2), 1, 0).await.unwrap();
        let (shutdown, rx) = watch::channel(false);
        let node = crate::start(config, deps.clone(), rx).await.unwrap();
        let mut f = Fixture { deps, coord, clock, def, node, seqs: [0; 2], _shutdown: shutdown };
        for id in 1..=4 {
            f.write(id).await;
        }
        f.settle().await;
        f
    }

    /// Writes row `id` to the WAL and publishes its shard's head, as a writer does before
    /// acknowledging.
    async fn write(&mut self, id: u64) {
        let id = RowId::Int(id);
        let shard = id.shard(2);
        self.seqs[shard as usize] += 1;
        let seq = self.seqs[shard as usize];
        let row = Row { vector: vec![self.x(&id), 0.0], id, attributes: None };
        let entry = WalEntry { seq, writer_epoch: 1, commit_id: seq, created_ms: 0, ops: vec![WalOp::Upsert(row)] };
        wal::put_entry(self.deps.store.as_ref(), &ShardPaths::new(self.def.id.clone(), shard), &entry).await.unwrap();
        let head = Head { wal_seq: seq, manifest_version: 0 };
        self.deps.coord.publish_head(&shard_key(&self.def.id, shard), head).await.unwrap();
    }

    fn x(&self, id: &RowId) -> f32 {
        let RowId::Int(n) = id else { unreachable!() };
        *n as f32
    }

    /// Lets the node's background tasks (serving loop, refresher) run until they wait on
    /// the clock or the view again.
    async fn settle(&self) {
        let mut last = None;
        loop {
            for _ in 0..200 {
                tokio::task::yield_now().await;
            }
            let now = (self.store_requests(), self.coord.head_reads().len());
            if last == Some(now) {
                return;
            }
            last = Some(now);
        }
    }

    /// Object-store requests made so far.
    fn store_requests(&self) -> f64 {
        let text = self.deps.metrics.render();
        text.lines()
            .filter(|l| l.starts_with("strata_object_store_requests_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The ids of a search for `[x, 0]` at `consistency`, nearest first.
    async fn search(&self, x: f32, consistency: Value) -> Vec<RowId> {
        let req = json!({"vector": [x, 0.0], "top_k": 2, "include_attributes": true, "consistency": consistency});
        let found = self.node.search("c", serde_json::from_value(req).unwrap()).await.unwrap();
        found.results.into_iter().map(|r| r.id).collect()
    }
}

/// Once its shards are loaded, an eventual search (a multi-shard one, with the rows of its
/// hits fetched afterwards), get and count make no request at all to coordination or
/// object storage; a strong search, for contrast, reads every shard's head.
#[tokio::test]
async fn an_eventual_read_of_loaded_shards_asks_neither_coordination_nor_storage() {
    let f = Fixture::start(QueryConfig::default()).await;
    assert_eq!(f.search(4.0, json!("strong")).await, [4, 3].map(RowId::Int));
    f.settle().await;

    let (requests, heads) = (f.store_requests(), f.coord.head_reads().len());
    assert!(requests > 0.0 && heads > 0, "the counters count");
    for _ in 0..10 {
        assert_eq!(f.search(1.2, json!("eventual")).await, [1, 2].map(RowId::Int));
        let get = json!({"ids": [1, 2, 3], "consistency": "eventual"});
        assert_eq!(f.node.get("c", serde_json::from_value(get).unwrap()).await.unwrap().len(), 3);
        let count = json!({"consistency": "eventual"});
        assert_eq!(f.node.count("c", serde_json::from_value(count).unwrap()).await.unwrap().count, 4);
    }
    assert_eq!(f.store_requests(), requests, "eventual reads made object-store requests");
    assert_eq!(f.coord.head_reads().len(), heads, "eventual reads read heads: {:?}", &f.coord.head_reads()[heads..]);

    f.search(1.2, json!("strong")).await;
    let read: Vec<String> = f.coord.head_reads()[heads..].to_vec();
    for shard in 0..2 {
        assert!(read.contains(&shard_key(&f.def.id, shard)), "a strong search reads shard {shard}'s head: {read:?}");
    }
}

/// `{"max_staleness_ms": 1000}` serves the state confirmed at the last check while it is at
/// most 1,000 ms old — a newer write stays unseen and no head is read — and refreshes
/// first once it is older.
#[tokio::test]
async fn max_staleness_refreshes_only_once_the_state_is_older_than_the_bound() {
    // A refresher far away, so only the reads themselves refresh.
    let mut f = Fixture::start(QueryConfig { eventual_max_lag_ms: 3_600_000, ..QueryConfig::default() }).await;
    let bounded = json!({"max_staleness_ms": 1000});
    assert_eq!(f.search(9.0, json!("strong")).await[0], RowId::Int(4));
    f.write(9).await;
    let heads = f.coord.head_reads().len();

    f.clock.advance(Duration::from_millis(1000));
    assert_eq!(f.search(9.0, bounded.clone()).await[0], RowId::Int(4), "1,000 ms old: served as is");
    assert_eq!(f.search(9.0, json!("eventual")).await[0], RowId::Int(4));
    assert_eq!(f.coord.head_reads().len(), heads, "no head read within the bound");

    f.clock.advance(Duration::from_millis(1));
    assert_eq!(f.search(9.0, bounded.clone()).await[0], RowId::Int(9), "1,001 ms old: refreshed first");
    let shard = RowId::Int(9).shard(2);
    assert!(f.coord.head_reads()[heads..].contains(&shard_key(&f.def.id, shard)));
    assert_eq!(f.search(9.0, json!("eventual")).await[0], RowId::Int(9), "the refreshed state serves every level");
}

/// With the default `eventual_max_lag_ms` (1,000 ms), eventual reads keep serving the
/// loaded state, and see a new write once the background refresher's tick (every 500 ms)
/// has confirmed the shard again.
#[tokio::test]
async fn the_background_refresher_brings_eventual_reads_up_to_date() {
    let mut f = Fixture::start(QueryConfig::default()).await;
    assert_eq!(f.search(9.0, json!("strong")).await[0], RowId::Int(4));
    f.write(9).await;

    f.clock.advance(Duration::from_millis(499));
    f.settle().await;
    assert_eq!(f.search(9.0, json!("eventual")).await[0], RowId::Int(4), "before the refresher's tick");

    f.clock.advance(Duration::from_millis(1));
    f.settle().await;
    assert_eq!(f.search(9.0, json!("eventual")).await[0], RowId::Int(9), "after the refresher's tick");
}

/// Shards nobody read for a minute are not refreshed in the background (an idle node stays
/// idle); the first eventual read after that refreshes on its own, keeping the bound.
#[tokio::test]
async fn shards_unread_for_a_minute_are_left_alone_until_the_next_read() {
    let mut f = Fixture::start(QueryConfig::default()).await;
    assert_eq!(f.search(9.0, json!("strong")).await[0], RowId::Int(4));
    for _ in 0..130 {
        f.clock.advance(Duration::from_millis(500));
        f.settle().await;
    }
    let (requests, heads) = (f.store_requests(), f.coord.head_reads().len());
    f.write(9).await;
    for _ in 0..4 {
        f.clock.advance(Duration::from_millis(500));
        f.settle().await;
    }
    assert_eq!(f.coord.head_reads().len(), heads, "no head read for idle shards");
    assert_eq!(f.store_requests(), requests + 1.0, "only the test's own WAL write");
    assert_eq!(f.search(9.0, json!("eventual")).await[0], RowId::Int(9), "an old state is refreshed first");
}
