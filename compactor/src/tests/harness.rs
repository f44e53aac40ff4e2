//! Test fixtures: real stores (InMemory, LocalFileSystem in a tempdir), a real segment
//! cache, a controllable clock, and a `flush` that mirrors the ingest node's (WAL entry,
//! segment, tombstones for every older copy of a touched id, next manifest) so shards can
//! be given segments and deletes without running the ingest role.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use strata_coord::InProcess;
use strata_deps::Deps;
use strata_storage::cache::{CacheConfig, SegmentCache};
use strata_storage::catalog::{self, NewCollection};
use strata_storage::manifest::{self, Manifest, SegmentMeta, TombstoneRef};
use strata_storage::paths::{self, ShardPaths};
use strata_storage::segment::{self as segstore, LoadedSegment};
use strata_storage::tombstones;
use strata_storage::wal::{self, WalEntry, WalOp};
use strata_types::time::{Clock, SystemClock};
use strata_types::{Attributes, CollectionDef, HnswParams, Metric, Row, RowId};
use tokio::sync::watch;

use crate::{Compactor, CompactorConfig};

pub(crate) const DIM: usize = 4;

/// Real time plus an adjustable offset, so "old" can be reached without waiting.
#[derive(Default)]
pub(crate) struct TestClock {
    offset_ms: AtomicU64,
}

impl TestClock {
    pub fn advance(&self, ms: u64) {
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

/// Wall time is shifted; monotonic time and sleeping are the system's (the compactor's
/// age decisions read wall time, compared with the store's object timestamps).
impl Clock for TestClock {
    fn now_ms(&self) -> u64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }

    fn now(&self) -> std::time::Instant {
        SystemClock.now()
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> futures::future::BoxFuture<'static, ()> {
        SystemClock.sleep_until(deadline)
    }
}

pub(crate) struct Harness {
    pub deps: Deps,
    pub clock: Arc<TestClock>,
    /// The LocalFileSystem root, when the store is one.
    pub dir: Option<tempfile::TempDir>,
    shutdown: watch::Sender<bool>,
}

/// A config whose thresholds small test shards reach, and whose background loop never
/// fires during a test (tests call the passes themselves).
pub(crate) fn test_config() -> CompactorConfig {
    CompactorConfig {
        interval_ms: 3_600_000,
        tier_fanout: 2,
        tier_base_rows: 4,
        max_merge_rows: 1_000_000,
        tombstone_ratio: 0.2,
        graph_min_rows: 16,
        gc_grace_ms: 60_000,
        ..CompactorConfig::default()
    }
}

impl Harness {
    pub async fn memory() -> Harness {
        Self::with_store(Arc::new(InMemory::new()), None).await
    }

    pub async fn local() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        Self::with_store(Arc::new(store), Some(dir)).await
    }

    pub async fn with_store(store: Arc<dyn ObjectStore>, dir: Option<tempfile::TempDir>) -> Harness {
        let clock = Arc::new(TestClock::default());
        let cache = SegmentCache::open(&CacheConfig { memory_bytes: 64 << 20, disk_dir: None, ..Default::default() })
            .await
            .unwrap();
        let deps = Deps {
            store,
            coord: Arc::new(InProcess::new()),
            clock: clock.clone(),
            rng: Arc::new(strata_types::random::Random::seeded(7)),
            cache: Arc::new(cache),
            rpc: strata_rpc::RpcClients::new(Default::default()),
            node_id: "compactor-test".into(),
            metrics: Default::default(),
        };
        Harness { deps, clock, dir, shutdown: watch::channel(false).0 }
    }

    pub fn store(&self) -> &dyn ObjectStore {
        self.deps.store.as_ref()
    }

    pub async fn compactor(&self, config: CompactorConfig) -> Compactor {
        crate::start(config, self.deps.clone(), self.shutdown.subscribe()).await.unwrap()
    }

    pub fn stop(&self) {
        self.shutdown.send_replace(true);
    }

    pub async fn collection(&self, name: &str, shards: u32) -> CollectionDef {
        let new = NewCollection {
            name: name.into(),
            dimension: DIM as u32,
            metric: Metric::L2,
            shards,
            replication: 1,
            hnsw: HnswParams::default(),
            attributes: Default::default(),
        };
        catalog::create(self.store(), &new, self.clock.now_ms(), self.deps.rng.next_u32()).await.unwrap()
    }

    pub async fn flush(&self, def: &CollectionDef, shard: u32, ops: Vec<WalOp>) -> Manifest {
        flush(&self.deps, def, shard, ops).await
    }

    pub async fn latest(&self, def: &CollectionDef, shard: u32) -> Manifest {
        manifest::load_latest(self.store(), &ShardPaths::new(def.id.clone(), shard), None).await.unwrap()
    }

    pub async fn live(&self, def: &CollectionDef, shard: u32) -> BTreeMap<RowId, Live> {
        live(&self.deps, def, shard).await
    }

    /// Every object path under `prefix`, sorted.
    pub async fn paths(&self, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let prefix = object_store::path::Path::from(prefix);
        let mut out: Vec<String> =
            self.store().list(Some(&prefix)).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
        out.sort();
        out
    }

    /// Sets the modification time of every file under the LocalFileSystem root to
    /// `ms_ago` before now: makes objects "old" for GC without waiting.
    pub fn backdate_all(&self, ms_ago: u64) {
        let root = self.dir.as_ref().expect("backdating needs a LocalFileSystem harness").path().to_owned();
        let when = std::time::SystemTime::now() - std::time::Duration::from_millis(ms_ago);
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    std::fs::File::options().write(true).open(&path).unwrap().set_modified(when).unwrap();
                }
            }
        }
    }
}

/// The vector and attributes of a live row.
pub(crate) type Live = (Vec<f32>, Option<Attributes>);

/// A deterministic row for `id` and `version`.
pub(crate) fn row(id: u64, version: u32) -> Row {
    let attributes = version.is_multiple_of(2).then(|| {
        let mut a = Attributes::new();
        a.insert("version".into(), version.into());
        a.insert("tag".into(), format!("t{}", id % 3).into());
        a
    });
    Row { id: RowId::Int(id), vector: vec![id as f32, version as f32, 1.0, -(version as f32) / 2.0], attributes }
}

pub(crate) fn put(id: u64, version: u32) -> WalOp {
    WalOp::Upsert(row(id, version))
}

pub(crate) fn del(id: u64) -> WalOp {
    WalOp::Delete(RowId::Int(id))
}

/// What should be live after applying `ops` in order to `model`.
pub(crate) fn apply(model: &mut BTreeMap<RowId, Live>, ops: &[WalOp]) {
    for op in ops {
        match op {
            WalOp::Upsert(r) => {
                model.insert(r.id.clone(), (r.vector.clone(), r.attributes.clone()));
            }
            WalOp::Delete(id) => {
                model.remove(id);
            }
        }
    }
}

/// Mirrors the ingest flush: appends `ops` as the next WAL entry, turns the newest op per id
/// into a segment, tombstones every older copy of every touched id, and commits the next
/// manifest (create-only; panics if it loses a race, which tests never stage here).
pub(crate) async fn flush(deps: &Deps, def: &CollectionDef, shard: u32, ops: Vec<WalOp>) -> Manifest {
    let store = deps.store.as_ref();
    let paths = ShardPaths::new(def.id.clone(), shard);
    let base = manifest::load_latest(store, &paths, None).await.unwrap();
    let seq = base.flushed_seq + 1;
    let entry = WalEntry { seq, writer_epoch: 1, commit_id: rand::random(), created_ms: deps.clock.now_ms(), ops };
    wal::put_entry(store, &paths, &entry).await.unwrap();

    let mut newest: HashMap<&RowId, Option<&Row>> = HashMap::new();
    let mut order: Vec<&RowId> = Vec::new();
    for op in &entry.ops {
        let value = match op {
            WalOp::Upsert(r) => Some(r),
            WalOp::Delete(_) => None,
        };
        if newest.insert(op.id(), value).is_none() {
            order.push(op.id());
        }
    }
    let rows: Vec<Row> = order.iter().filter_map(|id| newest[id].cloned()).collect();

    let version = base.version + 1;
    let mut segments = base.segments.clone();
    for seg in segments.iter_mut() {
        let ids = segstore::load_ids(store, &deps.cache, &paths, &seg.id).await.unwrap();
        let mut bitmap = tombstones::load(store, &deps.cache, &paths, seg).await.unwrap();
        let before = bitmap.len();
        bitmap.extend(order.iter().filter_map(|id| ids.find(id)));
        if bitmap.len() > before {
            tombstones::write(store, &paths, &seg.id, version, &bitmap).await.unwrap();
            seg.tombstone = Some(TombstoneRef { generation: version, deleted: bitmap.len() as u32 });
        }
    }
    if !rows.is_empty() {
        let id = paths::segment_id(seq, rand::random());
        let built = segstore::build(def, &rows, 16).unwrap();
        segstore::upload(store, &deps.cache, &paths, &id, &built).await.unwrap();
        segments.push(SegmentMeta {
            id,
            rows: rows.len() as u32,
            bytes: built.bytes(),
            min_seq: seq,
            max_seq: seq,
            has_graph: built.graph.is_some(),
            has_attr_index: true,
            tombstone: None,
            level: 0,
        });
    }
    let next = Manifest { version, flushed_seq: seq, segments, committer_epoch: 1, created_ms: deps.clock.now_ms() };
    manifest::commit(store, &paths, &next).await.unwrap();
    next
}

/// Every live row of a shard, loading segments the way a query node does. Panics if an id
/// is live in two places or a manifest's deleted count disagrees with its bitmap.
pub(crate) async fn live(deps: &Deps, def: &CollectionDef, shard: u32) -> BTreeMap<RowId, Live> {
    let store = deps.store.as_ref();
    let paths = ShardPaths::new(def.id.clone(), shard);
    let m = manifest::load_latest(store, &paths, None).await.unwrap();
    let mut out = BTreeMap::new();
    for seg in &m.segments {
        let loaded = LoadedSegment::load(store, &deps.cache, &paths, def, seg).await.unwrap();
        let dead = tombstones::load(store, &deps.cache, &paths, seg).await.unwrap();
        assert_eq!(dead.len(), u64::from(seg.deleted()), "deleted count of {}", seg.id);
        for row in 0..loaded.len() as u32 {
            if dead.contains(row) {
                continue;
            }
            let id = loaded.ids.ids.id(row as usize).into_owned();
            let value = (loaded.rows.vector(row).to_vec(), loaded.rows.attributes(row));
            assert!(out.insert(id.clone(), value).is_none(), "id {id} is live in two rows");
        }
    }
    out
}
