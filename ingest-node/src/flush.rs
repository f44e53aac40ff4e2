//! Flush: turns a shard's unflushed WAL tail into a new immutable segment, resolves
//! replacements and deletes into tombstones of older segments, and commits the next
//! manifest.
//!
//! Invariant kept: across a shard's live segments, every id has at most one row that is
//! not tombstoned, and it is the newest write. The flush therefore tombstones every older
//! copy of every id it touches, whether the newest op is an upsert (the new row lives in
//! the new segment) or a delete.
//!
//! Commit with rebase (`manifest::commit_with_rebase`, the loop bulk import and compaction
//! share; the flush's step is [`FlushCommit`]): the tombstones are computed against the
//! newest manifest; if another committer (a compaction) wins the next version, the flush
//! re-reads and recomputes against the winner, so a delete is never lost even when the
//! segment holding the old row was just merged away.
//!
//! Upload-age guard: garbage collection deletes unreferenced objects older than its grace
//! period, so a manifest must never name an upload about that old. Before every commit
//! attempt, an upload that started more than `ingest.flush_commit_max_age_ms` ago is
//! abandoned (its files are left to GC) and the same built segment is uploaded again
//! under a new name; after [`MAX_UPLOADS`] stale uploads the flush fails as retryable.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use strata_deps::Deps;
use strata_storage::manifest::{self, Manifest, Rebase, RetryPolicy, SegmentMeta, Step, TombstoneRef};
use strata_storage::paths::{self, ShardPaths};
use strata_storage::segment::{self as segstore, SegmentIds};
use strata_storage::tombstones;
use strata_storage::wal::{WalEntry, WalOp};
use strata_types::time::ClockExt;
use strata_types::{CollectionDef, Row, RowId};
use strata_types::{Error, Result};

/// Ids of live segments, loaded once per writer and reused across flushes.
#[derive(Default)]
pub(crate) struct IdCache {
    segments: HashMap<String, Arc<SegmentIds>>,
}

impl IdCache {
    async fn get(&mut self, deps: &Deps, shard: &ShardPaths, segment: &str) -> Result<Arc<SegmentIds>> {
        if let Some(ids) = self.segments.get(segment) {
            return Ok(ids.clone());
        }
        let ids = Arc::new(segstore::load_ids(deps.store.as_ref(), &deps.cache, shard, segment).await?);
        self.segments.insert(segment.to_owned(), ids.clone());
        Ok(ids)
    }

    /// Forgets segments no longer in `manifest`.
    fn retain(&mut self, manifest: &Manifest) {
        self.segments.retain(|id, _| manifest.segment(id).is_some());
    }
}

/// The newest op per id of a range of WAL entries: `Some(row)` for an upsert, `None` for
/// a delete. Later entries and later ops within an entry win.
pub(crate) fn newest_ops(entries: &[Arc<WalEntry>]) -> (Vec<&Row>, Vec<RowId>) {
    let mut newest: HashMap<&RowId, Option<&Row>> = HashMap::new();
    let mut order: Vec<&RowId> = Vec::new();
    for entry in entries {
        for op in &entry.ops {
            let value = match op {
                WalOp::Upsert(row) => Some(row),
                WalOp::Delete(_) => None,
            };
            if newest.insert(op.id(), value).is_none() {
                order.push(op.id());
            }
        }
    }
    let rows = order.iter().filter_map(|id| newest[id]).collect();
    let touched = order.into_iter().cloned().collect();
    (rows, touched)
}

/// What a flush works on: one shard of one collection, as one writer epoch.
pub(crate) struct FlushTarget<'a> {
    pub deps: &'a Deps,
    pub def: &'a CollectionDef,
    pub shard: &'a ShardPaths,
    pub epoch: u64,
    pub graph_min_rows: usize,
    /// `ingest.flush_commit_max_age_ms`: the oldest upload a commit may still name.
    pub commit_max_age_ms: u64,
}

/// Flushes `entries` (consecutive, ending at the last one's seq). Returns the committed
/// manifest.
pub(crate) async fn flush(
    target: FlushTarget<'_>,
    entries: Vec<Arc<WalEntry>>,
    ids: &mut IdCache,
    manifest_hint: u64,
) -> Result<Manifest> {
    let FlushTarget { deps, def, shard, epoch, graph_min_rows, commit_max_age_ms } = target;
    let Some(last) = entries.last() else {
        return Err(Error::internal("flush of an empty range"));
    };
    let (min_seq, max_seq) = (entries[0].seq, last.seq);
    // Resolving the newest op per id and building are CPU work: both run off the runtime,
    // borrowing rows from the WAL entries rather than copying them.
    let started = deps.clock.now();
    let def_for_build = def.clone();
    let (built, seg_ids, touched) = tokio::task::spawn_blocking(move || -> Result<_> {
        let (rows, touched) = newest_ops(&entries);
        let built = if rows.is_empty() { None } else { Some(segstore::build(&def_for_build, &rows, graph_min_rows)?) };
        let seg_ids: Vec<RowId> = rows.iter().map(|r| r.id.clone()).collect();
        Ok((built, seg_ids, touched))
    })
    .await
    .map_err(|e| Error::internal(format!("segment build panicked: {e}")))??;

    let staged = match built {
        None => None,
        Some(built) => {
            let ids_of_segment = Arc::new(SegmentIds::new(seg_ids));
            let range = (min_seq, max_seq);
            Some(Staged::upload(deps, shard, built, ids_of_segment, range, ids, 1).await?)
        }
    };
    if let Some(s) = &staged {
        tracing::info!(
            shard = %shard.root(), segment = %s.meta.id, rows = s.meta.rows, graph = s.meta.has_graph,
            seconds = deps.clock.elapsed(started).as_secs_f64(), "built segment"
        );
    }

    let mut change = FlushCommit { deps, shard, staged, touched, ids, max_seq, epoch, commit_max_age_ms };
    let store = deps.store.as_ref();
    let rebased = manifest::commit_with_rebase(
        store,
        deps.clock.as_ref(),
        shard,
        Some(manifest_hint),
        RetryPolicy::default(),
        &mut change,
    )
    .await?;
    rebased.value?;
    if rebased.committed {
        change.ids.retain(&rebased.manifest);
    }
    Ok(rebased.manifest)
}

/// A flush's change to the manifest: its segment (if any rows survived), tombstones for
/// every older copy of a touched id, and `flushed_seq` up to the range's end.
struct FlushCommit<'a> {
    deps: &'a Deps,
    shard: &'a ShardPaths,
    staged: Option<Staged>,
    touched: Vec<RowId>,
    ids: &'a mut IdCache,
    max_seq: u64,
    epoch: u64,
    commit_max_age_ms: u64,
}

impl Rebase for FlushCommit<'_> {
    /// `Err` when the flush gave up without committing (see [`MAX_UPLOADS`]).
    type Output = Result<()>;

    fn step<'a>(&'a mut self, base: &'a Manifest) -> BoxFuture<'a, Result<Step<Result<()>>>> {
        Box::pin(async move {
            if let Err(gave_up) = self.fresh_upload().await? {
                // Stopped, not failed: the commit loop must not retry this.
                return Ok(Step::Stop(Err(gave_up)));
            }
            if base.flushed_seq >= self.max_seq {
                // An earlier attempt of ours committed (its response was lost) — or the log
                // was taken over. Either way this range is in segments already.
                return Ok(Step::Stop(Ok(())));
            }
            let new_segment = self.staged.as_ref().map(|s| s.meta.clone());
            let (deps, shard) = (self.deps, self.shard);
            let next = next_manifest(deps, shard, base, new_segment, &self.touched, self.max_seq, self.epoch, self.ids)
                .await?;
            Ok(Step::Commit(next, Ok(())))
        })
    }
}

impl FlushCommit<'_> {
    /// Makes sure the staged upload is young enough to commit. GC deletes unreferenced
    /// objects once they are older than its grace period, so a manifest naming an upload
    /// about that old could name deleted files: such an upload is abandoned to GC and the
    /// same segment uploaded again under a new name (and checked again). `staged` is
    /// replaced only once the new upload exists, so a failed upload never leaves the flush
    /// without its segment. The inner `Err` means it gave up after [`MAX_UPLOADS`].
    async fn fresh_upload(&mut self) -> Result<Result<()>> {
        let (deps, shard, max_age) = (self.deps, self.shard, self.commit_max_age_ms);
        while let Some(s) = self.staged.as_ref().filter(|s| deps.clock.now_ms().saturating_sub(s.started_ms) >= max_age)
        {
            if s.attempt >= MAX_UPLOADS {
                return Ok(Err(Error::retryable(format!(
                    "flush of {} gave up: {MAX_UPLOADS} uploads of its segment each took longer than \
                     ingest.flush_commit_max_age_ms ({max_age} ms) to reach a commit",
                    shard.root()
                ))));
            }
            tracing::warn!(
                shard = %shard.root(), segment = %s.meta.id, max_age_ms = max_age,
                "flush upload too old to commit safely; uploading the segment again"
            );
            let range = (s.meta.min_seq, s.meta.max_seq);
            let (built, seg_ids, attempt, stale_id) =
                (s.built.clone(), s.ids.clone(), s.attempt + 1, s.meta.id.clone());
            let fresh = Staged::upload(deps, shard, built, seg_ids, range, self.ids, attempt).await?;
            self.ids.segments.remove(&stale_id);
            self.staged = Some(fresh);
        }
        Ok(Ok(()))
    }
}

/// Uploads of one flush's segment before it gives up (each restarts the age clock).
const MAX_UPLOADS: u32 = 3;

/// A built segment uploaded under a fresh name, waiting for its manifest commit.
struct Staged {
    built: segstore::BuiltSegment,
    ids: Arc<SegmentIds>,
    meta: SegmentMeta,
    /// When the upload started, by `deps.clock`: the age the commit guard checks.
    started_ms: u64,
    /// 1 for the first upload.
    attempt: u32,
}

impl Staged {
    async fn upload(
        deps: &Deps,
        shard: &ShardPaths,
        built: segstore::BuiltSegment,
        seg_ids: Arc<SegmentIds>,
        (min_seq, max_seq): (u64, u64),
        ids: &mut IdCache,
        attempt: u32,
    ) -> Result<Staged> {
        let started_ms = deps.clock.now_ms();
        let segment_id = paths::segment_id(max_seq, deps.rng.next_u64());
        let meta = store_segment(deps, shard, &segment_id, &built, seg_ids.clone(), (min_seq, max_seq), ids).await?;
        Ok(Staged { built, ids: seg_ids, meta, started_ms, attempt })
    }
}

/// Uploads a built segment, registers its ids in `ids` and returns its manifest entry
/// (shared by flush and bulk import).
pub(crate) async fn store_segment(
    deps: &Deps,
    shard: &ShardPaths,
    segment_id: &str,
    built: &segstore::BuiltSegment,
    seg_ids: Arc<SegmentIds>,
    (min_seq, max_seq): (u64, u64),
    ids: &mut IdCache,
) -> Result<SegmentMeta> {
    segstore::upload(deps.store.as_ref(), &deps.cache, shard, segment_id, built).await?;
    let meta = SegmentMeta {
        id: segment_id.to_owned(),
        rows: seg_ids.ids.len() as u32,
        bytes: built.bytes(),
        min_seq,
        max_seq,
        has_graph: built.graph.is_some(),
        has_attr_index: true,
        tombstone: None,
        level: 0,
    };
    ids.segments.insert(segment_id.to_owned(), seg_ids);
    Ok(meta)
}

/// The manifest after `base`: tombstones (written, create-only) for every older copy of a
/// touched id, plus the new segment. The caller commits it.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn next_manifest(
    deps: &Deps,
    shard: &ShardPaths,
    base: &Manifest,
    new_segment: Option<SegmentMeta>,
    touched: &[RowId],
    flushed_seq: u64,
    epoch: u64,
    ids: &mut IdCache,
) -> Result<Manifest> {
    let version = base.version + 1;
    let mut segments = base.segments.clone();
    let new_id = new_segment.as_ref().map(|s| s.id.clone());
    for seg in segments.iter_mut() {
        if Some(&seg.id) == new_id.as_ref() {
            continue;
        }
        let seg_ids = ids.get(deps, shard, &seg.id).await?;
        let hits: Vec<u32> = touched.iter().filter_map(|id| seg_ids.find(id)).collect();
        if hits.is_empty() {
            continue;
        }
        let mut bitmap = tombstones::load(deps.store.as_ref(), &deps.cache, shard, seg).await?;
        let before = bitmap.len();
        bitmap.extend(hits);
        if bitmap.len() == before {
            continue;
        }
        tombstones::write(deps.store.as_ref(), shard, &seg.id, version, &bitmap).await?;
        seg.tombstone = Some(TombstoneRef { generation: version, deleted: bitmap.len() as u32 });
    }
    if let Some(s) = new_segment {
        segments.push(s);
    }
    Ok(Manifest { version, flushed_seq, segments, committer_epoch: epoch, created_ms: deps.clock.now_ms() })
}

#[cfg(test)]
mod tests {
    use std::collections::{HashSet, VecDeque};
    use std::sync::Mutex;

    use futures::TryStreamExt;
    use object_store::ObjectStore;
    use object_store::memory::InMemory;
    use strata_coord::InProcess;
    use strata_storage::cache::{CacheConfig, SegmentCache};
    use strata_storage::catalog::{self, NewCollection};
    use strata_storage::wal::{WalEntry, WalOp};
    use strata_types::time::Clock;
    use strata_types::{ErrorKind, HnswParams, Metric, Row, RowId};

    use super::*;

    /// A clock that answers from a script, one value per read, then repeats the last one
    /// (or, with `step`, keeps adding it). Flush reads the clock when an upload starts,
    /// before each commit attempt and for the manifest's `created_ms`, in that order.
    struct ScriptedClock {
        script: Mutex<VecDeque<u64>>,
        last: Mutex<u64>,
        step: u64,
    }

    /// Only wall time is scripted; monotonic time and sleeping are the system's.
    impl Clock for ScriptedClock {
        fn now_ms(&self) -> u64 {
            let mut last = self.last.lock().unwrap();
            *last = self.script.lock().unwrap().pop_front().unwrap_or(*last + self.step);
            *last
        }

        fn now(&self) -> std::time::Instant {
            strata_types::time::SystemClock.now()
        }

        fn sleep_until(&self, deadline: std::time::Instant) -> futures::future::BoxFuture<'static, ()> {
            strata_types::time::SystemClock.sleep_until(deadline)
        }
    }

    async fn setup(script: &[u64], step: u64) -> (Deps, CollectionDef, ShardPaths) {
        let clock = ScriptedClock { script: Mutex::new(script.iter().copied().collect()), last: Mutex::new(0), step };
        let cache = SegmentCache::open(&CacheConfig { memory_bytes: 16 << 20, disk_dir: None, ..Default::default() })
            .await
            .unwrap();
        let deps = Deps {
            store: Arc::new(InMemory::new()),
            coord: Arc::new(InProcess::new()),
            clock: Arc::new(clock),
            rng: Arc::new(strata_types::random::Random::seeded(7)),
            cache: Arc::new(cache),
            rpc: strata_rpc::RpcClients::new(Default::default()),
            node_id: "flush-test".into(),
            metrics: Default::default(),
        };
        let new = NewCollection {
            name: "c".into(),
            dimension: 1,
            metric: Metric::L2,
            shards: 1,
            replication: 1,
            hnsw: HnswParams::default(),
            attributes: Default::default(),
        };
        let def = catalog::create(deps.store.as_ref(), &new, 0, 0).await.unwrap();
        let shard = ShardPaths::new(def.id.clone(), 0);
        (deps, def, shard)
    }

    async fn flush_three_rows(deps: &Deps, def: &CollectionDef, shard: &ShardPaths) -> Result<Manifest> {
        let target = FlushTarget { deps, def, shard, epoch: 1, graph_min_rows: 1_000, commit_max_age_ms: 5_000 };
        let entry = WalEntry {
            seq: 1,
            writer_epoch: 1,
            commit_id: 1,
            created_ms: 0,
            ops: vec![up(1, 1.0), up(2, 2.0), up(3, 3.0)],
        };
        flush(target, vec![Arc::new(entry)], &mut IdCache::default(), 0).await
    }

    /// Segment ids that have files in the store.
    async fn uploaded_segments(deps: &Deps, shard: &ShardPaths) -> HashSet<String> {
        let prefix = shard.segments_dir();
        let metas: Vec<_> = deps.store.list(Some(&prefix)).try_collect().await.unwrap();
        metas.iter().filter_map(|m| m.location.prefix_match(&prefix)?.next().map(|p| p.as_ref().to_owned())).collect()
    }

    #[tokio::test]
    async fn a_stale_upload_is_abandoned_and_the_segment_uploaded_again() {
        // Upload starts at 0; the commit check sees 10 s (over the 5 s bound); the second
        // upload starts at 10 s and its check sees 10.001 s.
        let (deps, def, shard) = setup(&[0, 10_000, 10_000, 10_001], 0).await;
        let m = flush_three_rows(&deps, &def, &shard).await.unwrap();
        assert_eq!((m.version, m.flushed_seq, m.segments.len()), (1, 1, 1));
        let committed = &m.segments[0];
        assert_eq!(committed.rows, 3);
        let uploaded = uploaded_segments(&deps, &shard).await;
        assert_eq!(uploaded.len(), 2, "the abandoned upload stays for GC: {uploaded:?}");
        assert!(uploaded.contains(&committed.id), "{uploaded:?} lacks {}", committed.id);
        // The committed copy is complete and readable.
        let ids = segstore::load_ids(deps.store.as_ref(), &deps.cache, &shard, &committed.id).await.unwrap();
        assert_eq!(ids.ids, strata_storage::segment::IdColumn::Ints(vec![1, 2, 3]));
    }

    #[tokio::test]
    async fn a_fresh_upload_commits_once() {
        let (deps, def, shard) = setup(&[0, 4_999], 0).await;
        let m = flush_three_rows(&deps, &def, &shard).await.unwrap();
        assert_eq!(uploaded_segments(&deps, &shard).await, HashSet::from([m.segments[0].id.clone()]));
    }

    #[tokio::test]
    async fn a_flush_whose_uploads_always_go_stale_gives_up_without_committing() {
        let (deps, def, shard) = setup(&[], 6_000).await;
        let err = flush_three_rows(&deps, &def, &shard).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Retryable, "{err}");
        assert!(err.to_string().contains("flush_commit_max_age_ms"), "{err}");
        assert_eq!(uploaded_segments(&deps, &shard).await.len(), MAX_UPLOADS as usize);
        assert_eq!(manifest::load_latest(deps.store.as_ref(), &shard, None).await.unwrap().version, 0);
    }

    fn up(id: u64, v: f32) -> WalOp {
        WalOp::Upsert(Row { id: RowId::Int(id), vector: vec![v], attributes: None })
    }

    #[test]
    fn newest_op_per_id_wins_across_and_within_entries() {
        let entry = |seq, ops| Arc::new(WalEntry { seq, writer_epoch: 1, commit_id: seq, created_ms: 0, ops });
        let entries = vec![
            entry(1, vec![up(1, 1.0), up(2, 2.0), WalOp::Delete(RowId::Int(3))]),
            entry(2, vec![WalOp::Delete(RowId::Int(1)), up(3, 3.0), up(2, 2.5)]),
            entry(3, vec![up(1, 1.5), WalOp::Delete(RowId::Int(2))]),
        ];
        let (rows, touched) = newest_ops(&entries);
        let got: Vec<(RowId, f32)> = rows.iter().map(|r| (r.id.clone(), r.vector[0])).collect();
        assert_eq!(got, vec![(RowId::Int(1), 1.5), (RowId::Int(3), 3.0)]);
        assert_eq!(touched, vec![RowId::Int(1), RowId::Int(2), RowId::Int(3)]);
    }
}
