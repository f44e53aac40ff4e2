//! Flush: turns a shard's unflushed WAL tail into a new immutable segment, resolves
//! replacements and deletes into tombstones of older segments, and commits the next
//! manifest.
//!
//! Invariant kept: across a shard's live segments, every id has at most one row that is
//! not tombstoned, and it is the newest write. The flush therefore tombstones every older
//! copy of every id it touches, whether the newest op is an upsert (the new row lives in
//! the new segment) or a delete.
//!
//! Commit with rebase: the tombstones are computed against the newest manifest; if another
//! committer (a compaction) wins the next version, the flush re-reads and recomputes
//! against the winner, so a delete is never lost even when the segment holding the old
//! row was just merged away.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use strata_shared::deps::Deps;
use strata_shared::error::{Error, ErrorKind, Result};
use strata_shared::manifest::{self, Manifest, SegmentMeta, TombstoneRef};
use strata_shared::paths::{self, ShardPaths};
use strata_shared::segment::store::{self as segstore, SegmentIds};
use strata_shared::tombstones;
use strata_shared::types::{CollectionDef, Row, RowId};
use strata_shared::wal::{WalEntry, WalOp};

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
}

/// Flushes `entries` (consecutive, ending at the last one's seq). Returns the committed
/// manifest.
pub(crate) async fn flush(
    target: FlushTarget<'_>,
    entries: Vec<Arc<WalEntry>>,
    ids: &mut IdCache,
    manifest_hint: u64,
) -> Result<Manifest> {
    let FlushTarget { deps, def, shard, epoch, graph_min_rows } = target;
    let Some(last) = entries.last() else {
        return Err(Error::internal("flush of an empty range"));
    };
    let (min_seq, max_seq) = (entries[0].seq, last.seq);
    // Resolving the newest op per id and building are CPU work: both run off the runtime,
    // borrowing rows from the WAL entries rather than copying them.
    let started = std::time::Instant::now();
    let def_for_build = def.clone();
    let (built, seg_ids, touched) = tokio::task::spawn_blocking(move || -> Result<_> {
        let (rows, touched) = newest_ops(&entries);
        let built = if rows.is_empty() { None } else { Some(segstore::build(&def_for_build, &rows, graph_min_rows)?) };
        let seg_ids: Vec<RowId> = rows.iter().map(|r| r.id.clone()).collect();
        Ok((built, seg_ids, touched))
    })
    .await
    .map_err(|e| Error::internal(format!("segment build panicked: {e}")))??;

    let new_segment = match built {
        None => None,
        Some(built) => {
            let segment_id = paths::segment_id(max_seq, rand::random());
            let rows = seg_ids.len();
            let meta = store_segment(deps, shard, &segment_id, &built, seg_ids, (min_seq, max_seq), ids).await?;
            tracing::info!(
                shard = %shard.root(), segment = %segment_id, rows, graph = built.graph.is_some(),
                seconds = started.elapsed().as_secs_f64(), "built segment"
            );
            Some(meta)
        }
    };

    let mut hint = manifest_hint;
    let mut transient_failures = 0;
    loop {
        let base = manifest::load_latest(deps.store.as_ref(), shard, Some(hint)).await?;
        if base.flushed_seq >= max_seq {
            // An earlier attempt of ours committed (its response was lost) — or the log was
            // taken over. Either way this range is in segments already.
            return Ok(base);
        }
        match commit_onto(deps, shard, &base, new_segment.clone(), &touched, max_seq, epoch, ids).await {
            Ok(m) => {
                ids.retain(&m);
                return Ok(m);
            }
            Err(e) if e.kind() == ErrorKind::Conflict => {
                tracing::debug!(shard = %shard.root(), version = base.version + 1, "manifest race lost; rebasing flush");
                hint = base.version;
            }
            Err(e) if e.kind() == ErrorKind::Retryable && transient_failures < 5 => {
                transient_failures += 1;
                tracing::warn!(shard = %shard.root(), error = %e, "flush commit failed; retrying");
                tokio::time::sleep(Duration::from_millis(100 << transient_failures)).await;
                hint = base.version;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Uploads a built segment, registers its ids in `ids` and returns its manifest entry
/// (shared by flush and bulk import).
pub(crate) async fn store_segment(
    deps: &Deps,
    shard: &ShardPaths,
    segment_id: &str,
    built: &segstore::BuiltSegment,
    seg_ids: Vec<RowId>,
    (min_seq, max_seq): (u64, u64),
    ids: &mut IdCache,
) -> Result<SegmentMeta> {
    segstore::upload(deps.store.as_ref(), &deps.cache, shard, segment_id, built).await?;
    let meta = SegmentMeta {
        id: segment_id.to_owned(),
        rows: seg_ids.len() as u32,
        bytes: built.bytes(),
        min_seq,
        max_seq,
        has_graph: built.graph.is_some(),
        tombstone: None,
        level: 0,
    };
    let lookup = strata_shared::segment::IdLookup::new(&seg_ids);
    ids.segments.insert(segment_id.to_owned(), Arc::new(SegmentIds { ids: seg_ids, lookup }));
    Ok(meta)
}

/// Builds and commits the manifest after `base`: tombstones for every older copy of a
/// touched id, plus the new segment.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn commit_onto(
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
    let next = Manifest { version, flushed_seq, segments, committer_epoch: epoch, created_ms: deps.clock.now_ms() };
    manifest::commit(deps.store.as_ref(), shard, &next).await?;
    Ok(next)
}

/// Ids that appear more than once in a batch (refused: the intent is ambiguous).
pub(crate) fn first_duplicate<'a>(ids: impl Iterator<Item = &'a RowId>) -> Option<&'a RowId> {
    let mut seen = HashSet::new();
    ids.into_iter().find(|id| !seen.insert(*id))
}

#[cfg(test)]
mod tests {
    use strata_shared::types::{Row, RowId};
    use strata_shared::wal::{WalEntry, WalOp};

    use super::*;

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
        assert_eq!(first_duplicate([RowId::Int(1), RowId::Int(2), RowId::Int(1)].iter()), Some(&RowId::Int(1)));
    }
}
