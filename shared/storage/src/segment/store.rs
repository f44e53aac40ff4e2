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
use crate::paths::{GRAPH_FILE, IDS_FILE, ROWS_FILE};
use crate::segment::{DecodedRows, IdColumn, IdLookup};
use strata_index::{self as index, Candidate, Graph, GraphParams, Space};
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
}

impl BuiltSegment {
    pub fn bytes(&self) -> u64 {
        (self.ids.len() + self.rows.len() + self.graph.as_ref().map_or(0, Bytes::len)) as u64
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
    let rows_bytes = super::encode_rows(dim, &vectors, &attrs)?;
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
    Ok(BuiltSegment { ids: ids_bytes, rows: rows_bytes, graph })
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
    let mut files = vec![(IDS_FILE, &built.ids), (ROWS_FILE, &built.rows)];
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

/// A segment loaded for search and gets.
pub struct LoadedSegment {
    pub meta: SegmentMeta,
    pub ids: SegmentIds,
    pub rows: DecodedRows,
    /// Vectors in index space: normalised copies for cosine, otherwise empty (use `rows`).
    normalised: Vec<f32>,
    pub graph: Option<Graph>,
    metric: Metric,
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
            Ok(Arc::new(LoadedSegment { meta, ids: SegmentIds::new(ids), rows, normalised, graph, metric }))
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

    pub fn memory_bytes(&self) -> usize {
        self.rows.memory_bytes()
            + self.normalised.len() * 4
            + self.ids.lookup.memory_bytes()
            + self.ids.ids.memory_bytes()
            + self.graph.as_ref().map_or(0, Graph::memory_bytes)
    }
}
