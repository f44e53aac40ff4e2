//! Building, uploading and loading whole segments.
//!
//! A segment is built from the newest version of each row (ids, vectors, attributes). Its
//! graph is built only past `graph_min_rows`: below that, exact search is as fast as a
//! graph walk and saves build time. Building is CPU-heavy and blocking; callers run
//! [`build`] inside `spawn_blocking`.
//!
//! Loading goes through the two-tier cache (memory, local disk, object storage). A loaded
//! segment keeps its vectors in one flat array (normalised for cosine, so the index and
//! exact search share a single distance), its ids with a hash lookup for deletes and gets,
//! and its attribute columns.

use std::borrow::Borrow;
use std::sync::Arc;

use bytes::Bytes;
use object_store::{ObjectStore, PutMode, PutOptions, PutPayload};

use crate::cache::SegmentCache;
use crate::manifest::SegmentMeta;
use crate::paths::ShardPaths;
use crate::paths::{ATTRS_FILE, GRAPH_FILE, IDS_FILE, ROWS_FILE};
use crate::segment::attr_index::AttrIndex;
use crate::segment::row_filter::RowFilter;
use crate::segment::{DecodedRows, IdColumn, IdLookup};
use strata_index::{self as index, Candidate, FilteredWalk, Graph, GraphParams, Space};
use strata_types::filter::Filter;
use strata_types::{Attributes, CollectionDef, Metric, Row, RowId};
use strata_types::{Error, Result};

/// The index space of a metric. Cosine vectors are normalised at load and query time.
pub fn space_of(metric: Metric) -> Space {
    match metric {
        Metric::Cosine => Space::Cosine,
        Metric::Dot => Space::Dot,
        Metric::L2 => Space::L2,
    }
}

/// Converts an internal distance (lower is closer) to the user-facing score.
pub fn score_of(metric: Metric, distance: f32) -> f32 {
    match metric {
        Metric::Cosine => 1.0 - distance,
        Metric::Dot => -distance,
        Metric::L2 => distance.max(0.0).sqrt(),
    }
}

/// Prepares a query vector for `metric` (normalises for cosine).
pub fn prepare_query(metric: Metric, query: &[f32]) -> Vec<f32> {
    let mut q = query.to_vec();
    if metric == Metric::Cosine {
        index::normalize(&mut q);
    }
    q
}

/// The encoded files of a freshly built segment.
#[derive(Clone)]
pub struct BuiltSegment {
    pub ids: Bytes,
    pub rows: Bytes,
    pub graph: Option<Bytes>,
    /// The attribute index (`attrs.idx`).
    pub attrs: Bytes,
}

impl BuiltSegment {
    pub fn bytes(&self) -> u64 {
        (self.ids.len() + self.rows.len() + self.attrs.len() + self.graph.as_ref().map_or(0, Bytes::len)) as u64
    }
}

/// Encodes rows into segment files, building the HNSW graph when there are at least
/// `graph_min_rows` rows. Blocking and CPU-heavy.
pub fn build<R: Borrow<Row>>(def: &CollectionDef, rows: &[R], graph_min_rows: usize) -> Result<BuiltSegment> {
    let dim = def.dimension as usize;
    let rows: Vec<&Row> = rows.iter().map(Borrow::borrow).collect();
    let ids: Vec<RowId> = rows.iter().map(|r| r.id.clone()).collect();
    let mut vectors = Vec::with_capacity(rows.len() * dim);
    for r in &rows {
        if r.vector.len() != dim {
            return Err(Error::internal(format!("row {} has dimension {} in a {dim}-d segment", r.id, r.vector.len())));
        }
        vectors.extend_from_slice(&r.vector);
    }
    let attrs: Vec<Option<&Attributes>> = rows.iter().map(|r| r.attributes.as_ref()).collect();
    let ids_bytes = super::encode_ids(&ids)?;
    let columns = super::format::attribute_columns(&attrs)?;
    let rows_bytes = super::format::encode_rows_with(dim, &vectors, rows.len(), &columns)?;
    let attrs_bytes = AttrIndex::build(rows.len(), &columns).encode();
    drop(columns);
    let graph = if rows.len() >= graph_min_rows.max(2) {
        if def.metric == Metric::Cosine {
            for v in vectors.chunks_exact_mut(dim) {
                index::normalize(v);
            }
        }
        let params = GraphParams { m: def.hnsw.m as usize, ef_construction: def.hnsw.ef_construction as usize };
        Some(Bytes::from(Graph::build(&vectors, dim, space_of(def.metric), params).encode()))
    } else {
        None
    };
    Ok(BuiltSegment { ids: ids_bytes, rows: rows_bytes, graph, attrs: attrs_bytes })
}

/// Uploads a built segment's files (create-only: segment ids are unique) and puts them in
/// the cache so this process does not fetch them back.
pub async fn upload(
    store: &dyn ObjectStore,
    cache: &SegmentCache,
    shard: &ShardPaths,
    segment_id: &str,
    built: &BuiltSegment,
) -> Result<()> {
    let mut files = vec![(IDS_FILE, &built.ids), (ROWS_FILE, &built.rows), (ATTRS_FILE, &built.attrs)];
    if let Some(g) = &built.graph {
        files.push((GRAPH_FILE, g));
    }
    for (name, bytes) in files {
        let path = shard.segment_file(segment_id, name);
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        store
            .put_opts(&path, PutPayload::from(bytes.clone()), opts)
            .await
            .map_err(|e| crate::storage_error(path.as_ref(), e))?;
        cache.insert(&path, bytes.clone());
    }
    Ok(())
}

/// A segment's ids with their lookup: all the ingest and compaction paths need to find
/// which row holds an id.
pub struct SegmentIds {
    pub ids: IdColumn,
    pub lookup: IdLookup,
}

impl SegmentIds {
    /// The ids of rows `0..n`, in row order, with their lookup.
    pub fn new(ids: Vec<RowId>) -> Self {
        let lookup = IdLookup::new(&ids);
        Self { ids: IdColumn::from(ids), lookup }
    }

    pub fn find(&self, id: &RowId) -> Option<u32> {
        self.lookup.find(id, &self.ids)
    }
}

/// Loads only the ids of a segment.
pub async fn load_ids(
    store: &dyn ObjectStore,
    cache: &SegmentCache,
    shard: &ShardPaths,
    segment_id: &str,
) -> Result<SegmentIds> {
    let bytes = cache.get(store, &shard.segment_file(segment_id, IDS_FILE)).await?;
    let ids = tokio::task::spawn_blocking(move || super::decode_ids(&bytes))
        .await
        .map_err(|e| Error::internal(format!("id decoding panicked: {e}")))??;
    Ok(SegmentIds::new(ids))
}

/// Loads only the attribute index of a segment (`None` for segments written before
/// attribute indexes existed: load the segment to evaluate filters on those).
pub async fn load_attr_index(
    store: &dyn ObjectStore,
    cache: &SegmentCache,
    shard: &ShardPaths,
    meta: &SegmentMeta,
) -> Result<Option<AttrIndex>> {
    if !meta.has_attr_index {
        return Ok(None);
    }
    let bytes = cache.get(store, &shard.segment_file(&meta.id, ATTRS_FILE)).await?;
    let index = tokio::task::spawn_blocking(move || AttrIndex::decode(&bytes))
        .await
        .map_err(|e| Error::internal(format!("attribute index decoding panicked: {e}")))??;
    if index.rows() != meta.rows {
        return Err(Error::corrupt("segment", "attribute index size disagrees with the manifest"));
    }
    Ok(Some(index))
}

/// A segment loaded for search and gets.
pub struct LoadedSegment {
    pub meta: SegmentMeta,
    pub ids: SegmentIds,
    pub rows: DecodedRows,
    /// Vectors in index space: normalised copies for cosine, otherwise empty (use `rows`).
    normalised: Vec<f32>,
    pub graph: Option<Graph>,
    metric: Metric,
    pub attrs: AttrIndex,
}

/// How one segment answers a filtered search (chosen by [`LoadedSegment::plan`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterPlan {
    /// No row can match.
    Empty,
    /// Few rows match: list them from the attribute index and score each.
    Exact,
    /// Walk the graph with the filter tested per row (see `strata_index::FilteredWalk`).
    Walk(FilteredWalk),
    /// A plain walk that is abandoned for the exact scan once it has scored more than
    /// `max_scored` rows (a filter anti-correlated with the query).
    BoundedWalk { max_scored: u32 },
}

impl FilterPlan {
    /// A bounded label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            FilterPlan::Empty => "empty",
            FilterPlan::Exact => "exact",
            FilterPlan::Walk(FilteredWalk::Plain) => "walk",
            FilterPlan::Walk(FilteredWalk::TwoHop) => "two_hop",
            FilterPlan::BoundedWalk { .. } => "bounded_walk",
        }
    }
}

// Planner thresholds; decision 0009 has the measurements behind them. Costs are counted
// in rows an exact scan scores in the same time.
/// A two-hop walk costs about this many scanned rows per unit of `ef` (200k × 128, one
/// thread: scanning 10k matching rows costs what a two-hop walk at ef 64 costs).
const EXACT_ROWS_PER_EF: f64 = 160.0;
/// A plain filtered walk costs about this many scanned rows per unit of `ef`, divided by
/// the share of rows matching (it visits `1/s` rows per result). Memory-bound scans of
/// wide vectors make it lower than the 200k × 128 figure (~40): 25k × 384 gives ~12.
const PLAIN_WALK_ROWS_PER_EF: f64 = 16.0;
/// ...or when at most this fraction of the segment matches: below it a walk, even with
/// two-hop expansion, loses recall (0.87 at 1 %, ef 64), and an exact scan is the bound
/// the product promises for such filters anyway. (Scanning more is no cure for the walks'
/// weak spot, filters anti-correlated with the query: at 1M rows a scan of 10 % cost
/// 13 ms against 3 ms for the walk.)
const EXACT_MAX_SELECTIVITY: f64 = 0.04;
/// Walk without two-hop expansion when at least this fraction of rows matches: past it,
/// expanding through failing rows scores more rows than it saves (at 200k rows from
/// 20–30 %; at 1M × 128 the two-hop walk cost 2.8 ms of CPU per query at 10 % where
/// hnswlib's plain filtered walk cost 0.45 ms).
const PLAIN_WALK_MIN_SELECTIVITY: f64 = 0.08;

/// A plain walk at selectivity `s` and beam `ef` is abandoned for the exact scan once it
/// has scored `(BOUNDED_WALK_SCORED_PER_EF / s + BOUNDED_WALK_BASE_PER_EF) · ef` rows.
/// An ordinary plain walk scores about `13 · ef / s` rows (200k × 128 at ef 64: 9,907 at
/// 10 %, 4,090 at 20 %); one whose filter is anti-correlated with the query (the matching
/// rows a slab of space away from it) scores twice that and still misses (20,127 rows
/// for recall@10 0.914 at 10 %). Measured at 1M × 128 (`strata bench --filtered`, 10 %
/// anti-correlated, ef 64): a budget of 24 raised recall@10 from 0.893 to 0.947 (9.3 ms
/// of server CPU per query against 7.7–8.2), 16 to 0.976 (10.9 ms; an exact scan of the
/// 100k matching rows alone costs 12–15 ms), and neither touched the uncorrelated and
/// correlated cells. Falling back to a two-hop walk with a 4× or 8× beam instead reached
/// only 0.917 (11.5 ms) and 0.963 (26 ms).
const BOUNDED_WALK_SCORED_PER_EF: f64 = 16.0;
/// The fixed part of the budget: what a walk costs even when every row matches (the
/// unfiltered walk scores ~13 · ef rows), so a filter matching most rows is not cut short.
const BOUNDED_WALK_BASE_PER_EF: f64 = 32.0;
/// Plain walks are bounded below this selectivity. Above it the exact scan they would
/// fall back to is too large to be a remedy (at 1M rows, 50 % is a ~65 ms scan) while the
/// plain walk keeps its recall anyway (0.955 anti-correlated at 50 %, 1M × 128).
const BOUNDED_WALK_MAX_SELECTIVITY: f64 = 0.3;

/// The plan for a segment of `rows` rows (`has_graph`: it has an HNSW graph) of which
/// `estimate` are expected to match, at candidate list `ef`.
pub(crate) fn choose_plan(estimate: f64, rows: usize, ef: usize, has_graph: bool) -> FilterPlan {
    if estimate <= 0.0 {
        return FilterPlan::Empty;
    }
    let (rows, ef) = (rows as f64, ef as f64);
    let selectivity = (estimate / rows.max(1.0)).min(1.0);
    let (walk, walk_cost) = if selectivity >= PLAIN_WALK_MIN_SELECTIVITY {
        (FilteredWalk::Plain, PLAIN_WALK_ROWS_PER_EF * ef / selectivity)
    } else {
        (FilteredWalk::TwoHop, EXACT_ROWS_PER_EF * ef)
    };
    if !has_graph || estimate <= EXACT_MAX_SELECTIVITY * rows || estimate <= walk_cost {
        FilterPlan::Exact
    } else if walk == FilteredWalk::Plain && selectivity < BOUNDED_WALK_MAX_SELECTIVITY {
        let max_scored = (BOUNDED_WALK_SCORED_PER_EF / selectivity + BOUNDED_WALK_BASE_PER_EF) * ef;
        FilterPlan::BoundedWalk { max_scored: max_scored.min(u32::MAX as f64) as u32 }
    } else {
        FilterPlan::Walk(walk)
    }
}

impl LoadedSegment {
    pub async fn load(
        store: &dyn ObjectStore,
        cache: &SegmentCache,
        shard: &ShardPaths,
        def: &CollectionDef,
        meta: &SegmentMeta,
    ) -> Result<Arc<LoadedSegment>> {
        let ids_bytes = cache.get(store, &shard.segment_file(&meta.id, IDS_FILE)).await?;
        let rows_bytes = cache.get(store, &shard.segment_file(&meta.id, ROWS_FILE)).await?;
        let attrs_bytes = if meta.has_attr_index {
            Some(cache.get(store, &shard.segment_file(&meta.id, ATTRS_FILE)).await?)
        } else {
            None
        };
        let graph_bytes = if meta.has_graph {
            Some(cache.get(store, &shard.segment_file(&meta.id, GRAPH_FILE)).await?)
        } else {
            None
        };
        let meta = meta.clone();
        let metric = def.metric;
        let dim = def.dimension as usize;
        let context = format!("segment {} of {}", meta.id, shard.root());
        tokio::task::spawn_blocking(move || -> Result<Arc<LoadedSegment>> {
            let ids = super::decode_ids(&ids_bytes)?;
            let rows = super::decode_rows(&rows_bytes)?;
            if rows.len() != ids.len() || rows.dim != dim || ids.len() != meta.rows as usize {
                return Err(Error::corrupt("segment", "row counts or dimension disagree with the manifest"));
            }
            let graph =
                graph_bytes.map(|b| Graph::decode(&b)).transpose().map_err(|e| Error::internal(e.to_string()))?;
            if graph.as_ref().is_some_and(|g| g.len() != ids.len()) {
                return Err(Error::corrupt("segment", "graph size disagrees with row count"));
            }
            let normalised = if metric == Metric::Cosine {
                let mut v = rows.vectors.clone();
                for chunk in v.chunks_exact_mut(dim) {
                    index::normalize(chunk);
                }
                v
            } else {
                Vec::new()
            };
            // Graph search reads these vectors at random (the graph advises itself).
            index::advise_huge_pages(&rows.vectors);
            index::advise_huge_pages(&normalised);
            let attrs = match attrs_bytes {
                Some(bytes) => AttrIndex::decode(&bytes)?,
                None => AttrIndex::build(rows.len(), rows.columns()),
            };
            if attrs.rows() as usize != rows.len() {
                return Err(Error::corrupt("segment", "attribute index size disagrees with row count"));
            }
            Ok(Arc::new(LoadedSegment { meta, ids: SegmentIds::new(ids), rows, normalised, graph, metric, attrs }))
        })
        .await
        .map_err(|e| Error::internal(format!("segment loading panicked: {e}")))?
        .map_err(|e| e.context(context))
    }

    pub fn len(&self) -> usize {
        self.ids.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.ids.is_empty()
    }

    fn index_vectors(&self) -> &[f32] {
        if self.metric == Metric::Cosine { &self.normalised } else { &self.rows.vectors }
    }

    /// Top-`k` rows for a prepared query (see [`prepare_query`]). Rows for which
    /// `is_deleted` holds are skipped inside the search, so they never take a top-k slot.
    pub fn search(&self, query: &[f32], k: usize, ef: usize, is_deleted: &dyn Fn(u32) -> bool) -> Vec<Candidate> {
        let space = space_of(self.metric);
        let dim = self.rows.dim;
        match &self.graph {
            Some(graph) => graph.search(self.index_vectors(), dim, space, query, k, ef, is_deleted),
            None => index::brute_force(self.index_vectors(), dim, space, query, k, is_deleted),
        }
    }

    /// The plan for a filtered search with candidate list `ef`.
    pub fn plan(&self, filter: &Filter, ef: usize) -> FilterPlan {
        choose_plan(self.attrs.estimate(filter), self.len(), ef, self.graph.is_some())
    }

    /// Top-`k` rows matching `filter` for a prepared query, following `plan`. Rows for
    /// which `is_deleted` holds never take a slot.
    pub fn search_filtered(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        is_deleted: &dyn Fn(u32) -> bool,
        filter: &Filter,
        plan: FilterPlan,
    ) -> Vec<Candidate> {
        // A walk's plan: how, and how many scored rows before it gives way to the scan.
        let walk = match plan {
            FilterPlan::Empty => return Vec::new(),
            FilterPlan::Exact => None,
            FilterPlan::Walk(walk) => Some((walk, usize::MAX)),
            FilterPlan::BoundedWalk { max_scored } => Some((FilteredWalk::Plain, max_scored as usize)),
        };
        let (Some((walk, max_scored)), Some(graph)) = (walk, &self.graph) else {
            return self.scan_matching(query, k, is_deleted, filter);
        };
        let test = RowFilter::compile(filter, self.rows.columns());
        let passes = |row: u32| test.matches(row as usize);
        let (vectors, dim, space) = (self.index_vectors(), self.rows.dim, space_of(self.metric));
        graph
            .search_filtered_within(vectors, dim, space, query, k, ef, is_deleted, &passes, walk, max_scored)
            .unwrap_or_else(|| self.scan_matching(query, k, is_deleted, filter))
    }

    /// The exact top-`k` of the rows matching `filter`.
    fn scan_matching(
        &self,
        query: &[f32],
        k: usize,
        is_deleted: &dyn Fn(u32) -> bool,
        filter: &Filter,
    ) -> Vec<Candidate> {
        let rows = self.matching(filter);
        let space = space_of(self.metric);
        index::brute_force_rows(self.index_vectors(), self.rows.dim, space, query, k, &mut rows.iter(), is_deleted)
    }

    /// Every row of the segment matching `filter` (tombstoned ones included).
    pub fn matching(&self, filter: &Filter) -> roaring::RoaringBitmap {
        self.attrs.matching(filter, self.rows.columns())
    }

    pub fn memory_bytes(&self) -> usize {
        self.attrs.memory_bytes()
            + self.rows.memory_bytes()
            + self.normalised.len() * 4
            + self.ids.lookup.memory_bytes()
            + self.ids.ids.memory_bytes()
            + self.graph.as_ref().map_or(0, Graph::memory_bytes)
    }
}
