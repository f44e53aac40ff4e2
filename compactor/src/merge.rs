//! Compaction of one shard, in three steps that tests can interleave with other commits:
//!
//! 1. [`plan`]: pick inputs from a base manifest (see the `plan` module).
//! 2. [`build`]: read the inputs' ids, rows and their tombstone bitmaps *as of the base*,
//!    keep every row not deleted there, build the merged segment off the async runtime and
//!    upload it under a fresh id. Nothing is visible yet.
//! 3. [`commit`]: commit the next manifest with rebase. Against the newest manifest
//!    (`latest`): if an input is gone, someone else compacted it and this merge is
//!    abandoned (its files become garbage for GC). Otherwise every row deleted in an input
//!    between `base` and `latest` (a flush's deletes and replacements) is mapped to its row
//!    in the output and written as the output's tombstone bitmap, and `latest` with the
//!    inputs swapped for the output is created as `latest.version + 1`. Losing that create
//!    to another committer means re-reading and rebasing again.
//!
//! Invariants kept: a row deleted before or during the merge is never live afterwards and
//! no live row is lost; each id keeps at most one live row across the shard (should the
//! inputs ever hold two live copies of an id, the merge keeps the one from the newest
//! input); segments and flushed_seq of everything but the inputs are left as committed.

use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use roaring::RoaringBitmap;
use strata_deps::Deps;
use strata_storage::manifest::{self, Manifest, Rebase, RetryPolicy, SegmentMeta, Step, TombstoneRef};
use strata_storage::paths::{self, ShardPaths};
use strata_storage::paths::{IDS_FILE, ROWS_FILE};
use strata_storage::segment::{self as segstore, BuiltSegment};
use strata_storage::segment::{decode_ids, decode_rows};
use strata_storage::tombstones;
use strata_types::time::{Clock, ClockExt};
use strata_types::{CollectionDef, Row};
use strata_types::{Error, Result};

use crate::config::CompactorConfig;
use crate::plan::{self, Reason};
use crate::report::CompactionReport;

/// Marks an input row that is not in the output.
const NO_ROW: u32 = u32::MAX;

/// What to merge, chosen against `base`.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub shard: ShardPaths,
    pub base: Manifest,
    pub inputs: Vec<SegmentMeta>,
    pub reason: Reason,
}

/// Chooses the next compaction of `shard` from its manifest `base`.
pub(crate) fn plan(shard: &ShardPaths, base: &Manifest, config: &CompactorConfig) -> Option<Plan> {
    let selection = plan::select(&base.segments, config)?;
    Some(Plan { shard: shard.clone(), base: base.clone(), inputs: selection.inputs, reason: selection.reason })
}

/// A merged segment, uploaded but not yet committed.
pub(crate) struct Merge {
    pub plan: Plan,
    /// `None` when every input row was deleted: the inputs then simply vanish.
    pub output: Option<SegmentMeta>,
    /// Per input (in `plan.inputs` order): input row → output row, [`NO_ROW`] if dropped.
    row_map: Vec<Vec<u32>>,
    input_rows: u64,
    /// Clock time before the upload started: the output's objects are at most this old.
    uploaded_at_ms: u64,
    started: Instant,
}

/// One input's raw files and its deletions as of the base manifest.
struct Source {
    meta: SegmentMeta,
    ids: Bytes,
    rows: Bytes,
    deleted: RoaringBitmap,
}

/// Reads the inputs, builds the merged segment and uploads it.
pub(crate) async fn build(deps: &Deps, def: &CollectionDef, plan: Plan, graph_min_rows: usize) -> Result<Merge> {
    let started = deps.clock.now();
    let shard = &plan.shard;
    let (store, cache) = (deps.store.as_ref(), deps.cache.as_ref());
    let mut sources = Vec::with_capacity(plan.inputs.len());
    for meta in &plan.inputs {
        sources.push(Source {
            meta: meta.clone(),
            ids: cache.get(store, &shard.segment_file(&meta.id, IDS_FILE)).await?,
            rows: cache.get(store, &shard.segment_file(&meta.id, ROWS_FILE)).await?,
            deleted: tombstones::load(store, cache, shard, meta).await?,
        });
    }
    let input_rows = plan.inputs.iter().map(|s| u64::from(s.rows)).sum();
    let def_for_build = def.clone();
    let context = format!("merging {} segments of {}", sources.len(), shard.root());
    let (built, row_map) = tokio::task::spawn_blocking(move || -> Result<_> {
        let merged = merge_rows(def_for_build.dimension as usize, &sources)?;
        drop(sources);
        let built = if merged.rows.is_empty() {
            None
        } else {
            Some((segstore::build(&def_for_build, &merged.rows, graph_min_rows)?, merged.rows.len()))
        };
        Ok((built, merged.row_map))
    })
    .await
    .map_err(|e| Error::internal(format!("segment merge panicked: {e}")))?
    .map_err(|e| e.context(context))?;

    let uploaded_at_ms = deps.clock.now_ms();
    let output = match built {
        None => None,
        Some((built, rows)) => Some(upload(deps, &plan, &built, rows).await?),
    };
    Ok(Merge { plan, output, row_map, input_rows, uploaded_at_ms, started })
}

async fn upload(deps: &Deps, plan: &Plan, built: &BuiltSegment, rows: usize) -> Result<SegmentMeta> {
    let inputs = &plan.inputs;
    let max_seq = inputs.iter().map(|s| s.max_seq).max().unwrap_or(0);
    let id = paths::segment_id(max_seq, deps.rng.next_u64());
    segstore::upload(deps.store.as_ref(), &deps.cache, &plan.shard, &id, built).await?;
    Ok(SegmentMeta {
        id,
        rows: u32::try_from(rows).map_err(|_| Error::internal(format!("a merge produced {rows} rows")))?,
        bytes: built.bytes(),
        min_seq: inputs.iter().map(|s| s.min_seq).min().unwrap_or(0),
        max_seq,
        has_graph: built.graph.is_some(),
        has_attr_index: true,
        tombstone: None,
        level: inputs.iter().map(|s| s.level).max().unwrap_or(0) + 1,
    })
}

struct Merged {
    rows: Vec<Row>,
    row_map: Vec<Vec<u32>>,
}

/// Decodes the inputs and collects every row not deleted, oldest input first. Blocking.
fn merge_rows(dim: usize, sources: &[Source]) -> Result<Merged> {
    let mut decoded = Vec::with_capacity(sources.len());
    for s in sources {
        let ids = decode_ids(&s.ids)?;
        let rows = decode_rows(&s.rows)?;
        let expected = s.meta.rows as usize;
        if ids.len() != expected || rows.len() != expected || (expected > 0 && rows.dim != dim) {
            return Err(Error::corrupt(
                format!("segment {}", s.meta.id),
                format!(
                    "{} ids and {} rows of dimension {} where the manifest says {expected} rows of dimension {dim}",
                    ids.len(),
                    rows.len(),
                    rows.dim
                ),
            ));
        }
        if s.deleted.max().is_some_and(|row| row as usize >= expected) {
            return Err(Error::corrupt(
                format!("tombstones of segment {}", s.meta.id),
                "a deleted row is out of range",
            ));
        }
        decoded.push((ids, rows));
    }

    // Candidates: every row not deleted, as (input, row).
    let mut keep: Vec<(usize, u32)> = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        keep.extend((0..s.meta.rows).filter(|row| !s.deleted.contains(*row)).map(|row| (i, row)));
    }
    let id_of = |k: usize| &decoded[keep[k].0].0[keep[k].1 as usize];

    // Defence in depth: the shard invariant says no id has two live rows, but if it were
    // ever broken, a merged segment holding an id twice could not be tombstoned correctly
    // by a later flush. Keep the copy from the newest input (the last one).
    let mut hashed: Vec<(u64, usize)> = (0..keep.len()).map(|k| (id_of(k).stable_hash(), k)).collect();
    hashed.sort_unstable();
    let mut shadowed = vec![false; keep.len()];
    for run in hashed.chunk_by(|a, b| a.0 == b.0).filter(|run| run.len() > 1) {
        for (i, (_, k)) in run.iter().enumerate() {
            if run[i + 1..].iter().any(|(_, later)| id_of(*later) == id_of(*k)) {
                shadowed[*k] = true;
            }
        }
    }
    let duplicates = shadowed.iter().filter(|s| **s).count();
    if duplicates > 0 {
        let ids: Vec<&str> = sources.iter().map(|s| s.meta.id.as_str()).collect();
        tracing::warn!(segments = ?ids, duplicates, "live rows with the same id in several segments; keeping the newest");
    }

    let mut row_map: Vec<Vec<u32>> = sources.iter().map(|s| vec![NO_ROW; s.meta.rows as usize]).collect();
    let mut rows = Vec::with_capacity(keep.len() - duplicates);
    for (k, &(input, row)) in keep.iter().enumerate() {
        if shadowed[k] {
            continue;
        }
        let out = u32::try_from(rows.len())
            .ok()
            .filter(|r| *r != NO_ROW)
            .ok_or_else(|| Error::internal("a merged segment would exceed u32::MAX rows"))?;
        row_map[input][row as usize] = out;
        let (ids, data) = &decoded[input];
        rows.push(Row {
            id: ids[row as usize].clone(),
            vector: data.vector(row).to_vec(),
            attributes: data.attributes(row),
        });
    }
    Ok(Merged { rows, row_map })
}

/// How a commit attempt ended.
pub(crate) enum Outcome {
    Committed(Manifest, CompactionReport),
    /// The merge no longer applies (an input was compacted by someone else, or too much time
    /// passed); its uploaded files are left to garbage collection.
    Abandoned(String),
}

/// What one commit attempt found against the newest manifest.
enum Attempt {
    /// The merge is (now, or already) in the manifest, with this many deletes carried over.
    Merged {
        carried: u32,
    },
    Abandoned(String),
}

/// Commits `merge` onto the newest manifest, rebasing as often as other committers win.
pub(crate) async fn commit(deps: &Deps, merge: &Merge, epoch: u64, gc_grace_ms: u64) -> Result<Outcome> {
    let mut change = MergeCommit { deps, merge, epoch, gc_grace_ms };
    let (store, clock, policy) = (deps.store.as_ref(), deps.clock.as_ref(), RetryPolicy::default());
    let base = Some(merge.plan.base.version);
    let rebased = manifest::commit_with_rebase(store, clock, &merge.plan.shard, base, policy, &mut change).await?;
    Ok(match rebased.value {
        Attempt::Abandoned(why) => Outcome::Abandoned(why),
        Attempt::Merged { carried } => {
            let report = report(clock, merge, &rebased.manifest, carried);
            Outcome::Committed(rebased.manifest, report)
        }
    })
}

/// A merge's change to the manifest: its output in place of its inputs, with the deletes
/// committed since the base carried over.
struct MergeCommit<'a> {
    deps: &'a Deps,
    merge: &'a Merge,
    epoch: u64,
    gc_grace_ms: u64,
}

impl Rebase for MergeCommit<'_> {
    type Output = Attempt;

    fn step<'a>(&'a mut self, latest: &'a Manifest) -> BoxFuture<'a, Result<Step<Attempt>>> {
        Box::pin(async move {
            // GC deletes unreferenced objects older than the grace period: committing a
            // manifest that names objects about that old could resurrect deleted files. Half
            // the grace leaves room for clock skew between this node and the store.
            let age = self.deps.clock.now_ms().saturating_sub(self.merge.uploaded_at_ms);
            if self.merge.output.is_some() && age >= self.gc_grace_ms / 2 {
                let why = format!("the output was uploaded {age} ms ago, too close to the GC grace");
                return Ok(Step::Stop(Attempt::Abandoned(why)));
            }
            next_manifest(self.deps, self.merge, latest, self.epoch).await
        })
    }
}

/// The manifest after `latest` with the merge in it, or why there is nothing to commit.
async fn next_manifest(deps: &Deps, merge: &Merge, latest: &Manifest, epoch: u64) -> Result<Step<Attempt>> {
    let shard = &merge.plan.shard;
    let (store, cache) = (deps.store.as_ref(), deps.cache.as_ref());
    if let Some(out) = merge.output.as_ref().and_then(|o| latest.segment(&o.id)) {
        // An earlier attempt whose response was lost did commit.
        return Ok(Step::Stop(Attempt::Merged { carried: out.deleted() }));
    }
    let mut carried = RoaringBitmap::new();
    for (input, map) in merge.plan.inputs.iter().zip(&merge.row_map) {
        let Some(now) = latest.segment(&input.id) else {
            return Ok(Step::Stop(Attempt::Abandoned(format!(
                "segment {} left the shard in manifest version {}",
                input.id, latest.version
            ))));
        };
        if now.tombstone == input.tombstone {
            continue;
        }
        // Bitmaps only grow while a segment lives, so the difference is exactly what was
        // deleted or replaced since the base.
        let before = tombstones::load(store, cache, shard, input).await?;
        let after = tombstones::load(store, cache, shard, now).await?;
        for row in &after - &before {
            let out = map.get(row as usize).copied().unwrap_or(NO_ROW);
            if out != NO_ROW {
                carried.insert(out);
            }
        }
    }

    let version = latest.version + 1;
    let mut output = merge.output.clone();
    if let Some(out) = output.as_mut().filter(|_| !carried.is_empty()) {
        let deleted = carried.len() as u32;
        if deleted >= out.rows {
            // Everything merged was deleted meanwhile: commit no segment at all.
            output = None;
        } else {
            tombstones::write(store, shard, &out.id, version, &carried).await?;
            out.tombstone = Some(TombstoneRef { generation: version, deleted });
        }
    }

    // The output takes the place of the first input; every other segment is kept as is.
    let is_input = |id: &str| merge.plan.inputs.iter().any(|s| s.id == id);
    let first = latest.segments.iter().position(|s| is_input(&s.id)).unwrap_or(latest.segments.len());
    let mut segments: Vec<SegmentMeta> = Vec::with_capacity(latest.segments.len());
    for (i, s) in latest.segments.iter().enumerate() {
        if i == first {
            segments.extend(output.clone());
        }
        if !is_input(&s.id) {
            segments.push(s.clone());
        }
    }
    let next = Manifest {
        version,
        flushed_seq: latest.flushed_seq,
        segments,
        committer_epoch: epoch,
        created_ms: deps.clock.now_ms(),
    };
    Ok(Step::Commit(next, Attempt::Merged { carried: carried.len() as u32 }))
}

fn report(clock: &dyn Clock, merge: &Merge, committed: &Manifest, carried: u32) -> CompactionReport {
    let shard = &merge.plan.shard;
    let output = merge.output.as_ref().filter(|o| committed.segment(&o.id).is_some());
    CompactionReport {
        collection_id: shard.collection_id.clone(),
        shard: shard.shard,
        reason: merge.plan.reason.to_string(),
        inputs: merge.plan.inputs.iter().map(|s| s.id.clone()).collect(),
        output: output.map(|s| s.id.clone()),
        input_rows: merge.input_rows,
        output_rows: output.map_or(0, |s| s.rows),
        carried_tombstones: carried,
        manifest_version: committed.version,
        seconds: clock.elapsed(merge.started).as_secs_f64(),
    }
}

/// Plans, builds and commits one compaction of `shard`, re-planning when a concurrent
/// compaction made the merge moot. `None` when there is nothing to do.
pub(crate) async fn compact_once(
    deps: &Deps,
    def: &CollectionDef,
    shard: &ShardPaths,
    config: &CompactorConfig,
    epoch: u64,
    hint: &mut Option<u64>,
) -> Result<Option<CompactionReport>> {
    const MAX_ATTEMPTS: u32 = 3;
    for _ in 0..MAX_ATTEMPTS {
        let base = manifest::load_latest_or_list(deps.store.as_ref(), shard, *hint).await?;
        *hint = Some(base.version);
        let Some(plan) = plan(shard, &base, config) else {
            return Ok(None);
        };
        let merge = build(deps, def, plan, config.graph_min_rows).await?;
        match commit(deps, &merge, epoch, config.gc_grace_ms).await? {
            Outcome::Committed(manifest, report) => {
                *hint = Some(manifest.version);
                tracing::info!(
                    shard = %shard.root(), reason = %report.reason, inputs = ?report.inputs, output = ?report.output,
                    input_rows = report.input_rows, output_rows = report.output_rows,
                    carried_tombstones = report.carried_tombstones, version = report.manifest_version,
                    seconds = report.seconds, "compacted segments"
                );
                return Ok(Some(report));
            }
            Outcome::Abandoned(why) => {
                tracing::info!(shard = %shard.root(), inputs = merge.plan.inputs.len(), why = %why, "compaction abandoned");
            }
        }
    }
    Ok(None)
}
