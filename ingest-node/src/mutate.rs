//! Deletes and updates that select rows by filter (or update by id): the writer works
//! out which rows are selected against the shard's current state — the newest manifest's
//! segments, minus their tombstones, with the writer's unflushed rows deciding the ids
//! they touch — and turns the change into ordinary WAL operations (deletes, or upserts of
//! the rows with their new attributes).
//!
//! Atomicity: the writer actor runs the selection and appends its operations in one step,
//! between two group commits. Every write acknowledged before is in the memtable and
//! therefore seen; every write after is appended after, so it wins. A row rewritten so it
//! no longer matches is never deleted by a filter evaluated before the rewrite's append,
//! and a concurrent upsert of a matching row after the delete is kept.
//!
//! Cost: a delete by filter reads each segment's ids, attribute index and tombstones
//! through the cache (vectors are not read unless an attribute the filter names has no
//! index, in data from before attribute indexes). An update reads the selected rows'
//! vectors, so it loads their segments whole; updates by filter are limited to
//! `max_batch_rows` rows (a larger selection is refused before anything is written).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use strata_deps::Deps;
use strata_rpc::Selector;
use strata_storage::manifest::{self, Manifest, SegmentMeta};
use strata_storage::paths::ShardPaths;
use strata_storage::segment::{self as segstore, LoadedSegment};
use strata_storage::tombstones;
use strata_storage::wal::WalEntry;
use strata_types::filter::Filter;
use strata_types::{Attributes, CollectionDef, Error, Result, Row, RowId};

use crate::flush;

/// What a selection reads: one shard as its writer sees it.
pub(crate) struct ShardState<'a> {
    pub deps: &'a Deps,
    pub def: &'a Arc<CollectionDef>,
    pub paths: &'a ShardPaths,
    /// The writer's manifest; the newest version is read from it (compactions may have
    /// replaced segments since, with the same rows).
    pub manifest: &'a Manifest,
    pub memtable: &'a VecDeque<Arc<WalEntry>>,
}

impl ShardState<'_> {
    async fn newest_manifest(&self) -> Result<Manifest> {
        manifest::load_latest(self.deps.store.as_ref(), self.paths, Some(self.manifest.version)).await
    }

    /// Newest unflushed upserts, and every id the memtable decides (upserted or deleted).
    fn unflushed(&self) -> (Vec<Row>, HashSet<RowId>) {
        let entries: Vec<Arc<WalEntry>> = self.memtable.iter().cloned().collect();
        let (rows, touched) = flush::newest_ops(&entries);
        (rows.into_iter().cloned().collect(), touched.into_iter().collect())
    }

    /// The live rows of `segment` matching `filter` that the memtable does not decide.
    async fn segment_matches(
        &self,
        segment: &SegmentMeta,
        filter: &Filter,
        touched: &HashSet<RowId>,
    ) -> Result<Vec<(u32, RowId)>> {
        let (store, cache) = (self.deps.store.as_ref(), &self.deps.cache);
        let index = segstore::load_attr_index(store, cache, self.paths, segment).await?;
        let matching = match index {
            Some(index) if !index.needs_columns(filter) => index.matching(filter, &[]),
            _ => LoadedSegment::load(store, cache, self.paths, self.def, segment).await?.matching(filter),
        };
        let mut live = matching - tombstones::load(store, cache, self.paths, segment).await?;
        if live.is_empty() {
            return Ok(Vec::new());
        }
        let ids = segstore::load_ids(store, cache, self.paths, &segment.id).await?;
        live.retain(|row| !touched.contains(ids.ids.id(row as usize).as_ref()));
        Ok(live.iter().map(|row| (row, ids.ids.id(row as usize).into_owned())).collect())
    }

    /// The ids of every live row matching `filter`.
    pub async fn matching_ids(&self, filter: &Filter) -> Result<Vec<RowId>> {
        let (rows, touched) = self.unflushed();
        let mut out: Vec<RowId> =
            rows.iter().filter(|r| filter.matches(r.attributes.as_ref())).map(|r| r.id.clone()).collect();
        for segment in &self.newest_manifest().await?.segments {
            out.extend(self.segment_matches(segment, filter, &touched).await?.into_iter().map(|(_, id)| id));
        }
        Ok(out)
    }

    /// The newest version of every live row `selector` picks, at most `max` of them.
    pub async fn selected_rows(&self, selector: &Selector, max: usize) -> Result<Vec<Row>> {
        let (rows, touched) = self.unflushed();
        let manifest = self.newest_manifest().await?;
        let too_many = |n: usize| {
            Error::invalid(format!(
                "the filter selects {n} or more rows in one shard; an update changes at most {max} rows per shard \
                 (ingest.max_batch_rows): narrow the filter or update by ids"
            ))
        };
        let mut out: Vec<Row> = Vec::new();
        // Rows to read from segments: (segment index, row).
        let mut wanted: Vec<(usize, u32)> = Vec::new();
        match selector {
            Selector::Filter(filter) => {
                out.extend(rows.into_iter().filter(|r| filter.matches(r.attributes.as_ref())));
                for (index, segment) in manifest.segments.iter().enumerate() {
                    let found = self.segment_matches(segment, filter, &touched).await?;
                    wanted.extend(found.into_iter().map(|(row, _)| (index, row)));
                    if out.len() + wanted.len() > max {
                        return Err(too_many(out.len() + wanted.len()));
                    }
                }
            }
            Selector::Ids(ids) => {
                let unflushed: HashMap<&RowId, &Row> = rows.iter().map(|r| (&r.id, r)).collect();
                let mut in_segments: Vec<&RowId> = Vec::new();
                for id in ids {
                    match unflushed.get(id) {
                        Some(row) => out.push((*row).clone()),
                        None if touched.contains(id) => {} // deleted, not yet flushed
                        None => in_segments.push(id),
                    }
                }
                let (store, cache) = (self.deps.store.as_ref(), &self.deps.cache);
                for (index, segment) in manifest.segments.iter().enumerate() {
                    if in_segments.is_empty() {
                        break;
                    }
                    let seg_ids = segstore::load_ids(store, cache, self.paths, &segment.id).await?;
                    let tombs = tombstones::load(store, cache, self.paths, segment).await?;
                    in_segments.retain(|id| match seg_ids.find(id) {
                        Some(row) if !tombs.contains(row) => {
                            wanted.push((index, row));
                            false
                        }
                        _ => true,
                    });
                }
            }
        }
        let mut loaded: HashMap<usize, Arc<LoadedSegment>> = HashMap::new();
        for (index, row) in wanted {
            let segment = match loaded.get(&index) {
                Some(s) => s.clone(),
                None => {
                    let meta = &manifest.segments[index];
                    let (store, cache) = (self.deps.store.as_ref(), &self.deps.cache);
                    let s = LoadedSegment::load(store, cache, self.paths, self.def, meta).await?;
                    loaded.insert(index, s.clone());
                    s
                }
            };
            out.push(Row {
                id: segment.ids.ids.id(row as usize).into_owned(),
                vector: segment.rows.vector(row).to_vec(),
                attributes: segment.rows.attributes(row),
            });
        }
        Ok(out)
    }
}

/// Sets (or, for `null`, removes) the patch's attributes on a row.
pub(crate) fn apply_patch(row: &mut Row, patch: &Attributes) {
    let attrs = row.attributes.get_or_insert_with(Attributes::new);
    for (key, value) in patch {
        if value.is_null() {
            attrs.remove(key);
        } else {
            attrs.insert(key.clone(), value.clone());
        }
    }
    if attrs.is_empty() {
        row.attributes = None;
    }
}
