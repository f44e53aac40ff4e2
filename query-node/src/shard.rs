//! One shard as a query node sees it: the newest manifest's segments (loaded through the
//! cache) with their tombstones, plus the in-memory [`Tail`] of acknowledged writes that
//! are not flushed yet.
//!
//! Refresh: probe for a newer manifest (one HEAD when nothing changed; a listing when the
//! probe cannot reach what the published head promises, because garbage collection
//! deleted versions in between); if there is one,
//! load its new segments and tombstones and drop tail entries it has flushed; then read
//! WAL entries after the last applied one until the first missing one. A `strong` read
//! refreshes before searching, so it sees every write acknowledged before it started
//! (acknowledged ⇒ the WAL object exists). Relaxed reads (`eventual`, `max_staleness_ms`:
//! [`Freshness::Within`]) refresh only if the state was last confirmed current longer ago
//! than they allow; the host's background refresher keeps shards in use confirmed well
//! within `eventual_max_lag_ms`, so eventual reads do not refresh themselves (decision 0015).
//!
//! Heads are hints (decision 0011): a read waits for one at most `HEAD_READ_TIMEOUT`
//! ([`HeadHints`]), and when coordination cannot tell it (down, stalled, or presumed down
//! after a recent failure) the refresh probes object storage exactly as with no head
//! published, so reads keep their guarantees while etcd is down. A relaxed read never
//! waits on coordination once it is presumed down.
//!
//! Search: every segment is searched with a filter that drops its tombstoned rows and rows
//! whose id the tail decides (a newer upsert or a delete), inside the graph walk, so such
//! rows never take a top-k slot; the tail is searched exactly; results merge by distance.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use prometheus::IntCounter;
use roaring::RoaringBitmap;
use strata_coord::{HeadHints, Unavailable};
use strata_deps::Deps;
use strata_index::Candidate;
use strata_storage::manifest::{self, Manifest};
use strata_storage::paths::ShardPaths;
use strata_storage::segment::{FilterPlan, LoadedSegment};
use strata_storage::tombstones;
use strata_storage::wal;
use strata_types::filter::Filter;
use strata_types::time::ClockExt;
use strata_types::{Attributes, CollectionDef, RowId};
use strata_types::{Error, Result};

use crate::tail::{Newest, Tail};

/// WAL entries read at once by a shard's first refresh (its load): the unflushed tail can be
/// hundreds of entries, and a node taking over a dead node's shards serves them only once
/// it is read (decision 0014). Later refreshes catch up by an entry or two and read one at
/// a time, so they GET nothing past the first missing entry.
const FIRST_TAIL_READS: usize = 16;

#[derive(Clone)]
pub(crate) struct SegmentView {
    pub segment: Arc<LoadedSegment>,
    pub tombstones: Arc<RoaringBitmap>,
    /// Generation of `tombstones` (the manifest's, not the one the segment was loaded with).
    pub tombstone_generation: Option<u64>,
}

pub(crate) struct ShardState {
    pub manifest: Manifest,
    pub segments: Vec<SegmentView>,
    pub tail: Tail,
}

/// Distances a graph walk computes per unit of `ef`, roughly (about 2,500 at ef 64 with
/// m 16: each expanded row scores its unvisited neighbours). An estimate for
/// [`ShardReader::search_work`], not a bound.
const GRAPH_DISTANCES_PER_EF: u64 = 40;

/// Where a row lives in one [`ShardState`].
#[derive(Clone, Copy, Debug)]
pub(crate) enum Location {
    Segment { index: usize, row: u32 },
    Tail { flat: u32 },
}

/// A row found by a search of one state, before it becomes an API-level hit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Found {
    pub distance: f32,
    pub location: Location,
}

/// How fresh a read needs the shard to be.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Freshness {
    /// Every write acknowledged before `since` (a refresh that started after it).
    Strong { since: Instant },
    /// A state confirmed current at most `max_age` ago (`eventual`, `max_staleness_ms`).
    Within { max_age: Duration },
}

pub(crate) struct ShardReader {
    deps: Deps,
    def: Arc<CollectionDef>,
    paths: ShardPaths,
    /// Coordination key of this shard's head.
    key: String,
    state: RwLock<ShardState>,
    /// Serialises refreshes; holds when the last completed refresh started.
    refresh: tokio::sync::Mutex<Option<Instant>>,
    /// When the newest check that found the state current (a full refresh, or the head
    /// fast path) started: a relaxed read within `max_age` of it needs no check at all.
    confirmed: std::sync::Mutex<Option<Instant>>,
    /// Bounded head reads, shared by every shard of the node.
    hints: Arc<HeadHints>,
    /// `strata_query_head_fallbacks_total`.
    fallbacks: IntCounter,
}

impl ShardReader {
    pub fn new(deps: Deps, def: Arc<CollectionDef>, shard: u32, hints: Arc<HeadHints>, fallbacks: IntCounter) -> Self {
        let paths = ShardPaths::new(def.id.clone(), shard);
        let tail = Tail::new(def.metric, def.dimension as usize, 0);
        Self {
            key: strata_coord::shard_key(&def.id, shard),
            deps,
            def,
            paths,
            state: RwLock::new(ShardState { manifest: Manifest::default(), segments: Vec::new(), tail }),
            refresh: tokio::sync::Mutex::new(None),
            confirmed: std::sync::Mutex::new(None),
            hints,
            fallbacks,
        }
    }

    fn confirm(&self, started: Instant) {
        let mut confirmed = self.confirmed.lock().unwrap_or_else(|p| p.into_inner());
        if confirmed.is_none_or(|c| c < started) {
            *confirmed = Some(started);
        }
    }

    pub fn def(&self) -> &Arc<CollectionDef> {
        &self.def
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, ShardState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Brings the state up to date unless a refresh that started after `since` (or, for
    /// a relaxed read, within its `max_age`) already completed.
    pub async fn refresh(&self, freshness: Freshness) -> Result<()> {
        let clock = self.deps.clock.as_ref();
        if let Freshness::Within { max_age } = freshness
            && self.confirmed.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|c| clock.elapsed(c) <= max_age)
        {
            return Ok(());
        }
        // Fast path: writers publish the head before acknowledging, so having applied up to
        // the published head means having every acknowledged write.
        let checked = clock.now();
        let read = match freshness {
            Freshness::Within { .. } if self.hints.presumed_down(clock) => Err(Unavailable),
            _ => self.hints.read(self.deps.coord.as_ref(), clock, &self.key).await,
        };
        // Without a head, the refresh below probes object storage (the truth), exactly as
        // when none was ever published.
        let head = read.unwrap_or_else(|Unavailable| {
            self.fallbacks.inc();
            None
        });
        if let Some(head) = head {
            let current = {
                let s = self.read();
                head.wal_seq <= s.tail.applied_seq && head.manifest_version <= s.manifest.version
            };
            if current {
                self.confirm(checked);
                return Ok(());
            }
        }
        let mut last = self.refresh.lock().await;
        if let Some(started) = *last {
            let fresh_enough = match freshness {
                Freshness::Within { max_age } => clock.elapsed(started) <= max_age,
                Freshness::Strong { since } => started >= since,
            };
            if fresh_enough {
                return Ok(());
            }
        }
        let started = clock.now();
        let window = if last.is_none() { FIRST_TAIL_READS } else { 1 };
        self.refresh_now(head.map(|h| h.manifest_version), window).await?;
        *last = Some(started);
        self.confirm(started);
        Ok(())
    }

    /// Installs the newest manifest and applies new WAL entries. `promised` is the manifest
    /// version the published head names, if there is one: garbage collection may have
    /// deleted the versions right after ours (or the first ones), and the head tells the
    /// probe how far to look.
    /// `window`: WAL entries read at once (see [`FIRST_TAIL_READS`]).
    async fn refresh_now(&self, promised: Option<u64>, window: usize) -> Result<()> {
        let store = self.deps.store.as_ref();
        let (current_version, applied) = {
            let s = self.read();
            (s.manifest.version, s.tail.applied_seq)
        };
        let newest = manifest::newest_version(store, &self.paths, current_version, promised).await?;
        if newest != current_version {
            let m = manifest::read(store, &self.paths, newest)
                .await?
                .ok_or_else(|| Error::retryable(format!("manifest {newest} of {} vanished", self.paths.root())))?;
            self.install_manifest(m).await?;
        }
        let from = {
            let s = self.read();
            s.tail.applied_seq.max(applied) + 1
        };
        let entries = wal::read_tail(store, &self.paths, from, window).await?;
        if !entries.is_empty() {
            let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
            for e in entries {
                if e.seq > s.tail.applied_seq {
                    s.tail.apply(Arc::new(e));
                }
            }
        }
        Ok(())
    }

    /// Loads what a newer manifest adds, then swaps it in atomically.
    async fn install_manifest(&self, m: Manifest) -> Result<()> {
        let store = self.deps.store.as_ref();
        let old: HashMap<String, SegmentView> = {
            let s = self.read();
            s.segments.iter().map(|v| (v.segment.meta.id.clone(), v.clone())).collect()
        };
        let mut segments = Vec::with_capacity(m.segments.len());
        for meta in &m.segments {
            let generation = meta.tombstone.as_ref().map(|t| t.generation);
            let segment = match old.get(&meta.id) {
                Some(view) if view.tombstone_generation == generation => {
                    segments.push(view.clone());
                    continue;
                }
                Some(view) => view.segment.clone(),
                None => LoadedSegment::load(store, &self.deps.cache, &self.paths, &self.def, meta).await?,
            };
            let tombstones = Arc::new(tombstones::load(store, &self.deps.cache, &self.paths, meta).await?);
            segments.push(SegmentView { segment, tombstones, tombstone_generation: generation });
        }
        let mut s = self.state.write().unwrap_or_else(|p| p.into_inner());
        if m.version <= s.manifest.version {
            return Ok(()); // a concurrent refresh already installed something newer
        }
        s.tail = s.tail.rebase(m.flushed_seq);
        s.segments = segments;
        s.manifest = m;
        Ok(())
    }

    /// The work a search of `state` is expected to do: the distances it computes, times
    /// the dimension. An exact scan (the tail, a segment without a graph) computes one
    /// distance per row; a graph walk about [`GRAPH_DISTANCES_PER_EF`] per unit of `ef`.
    pub fn search_work(state: &ShardState, ef: usize, dim: usize) -> u64 {
        let graph_walk = GRAPH_DISTANCES_PER_EF * ef as u64;
        let segments: u64 = state
            .segments
            .iter()
            .map(|v| {
                let rows = v.segment.len() as u64;
                if v.segment.graph.is_some() { graph_walk.min(rows) } else { rows }
            })
            .sum();
        (state.tail.scanned_rows() as u64 + segments) * dim as u64
    }

    /// Top-`k` rows of this shard for a prepared query (matching `filter`, if any), best
    /// first. CPU-bound (graph walks and the exact scan of the tail): see `host.rs` for
    /// where it runs. With a filter, each segment plans its own search
    /// (`LoadedSegment::plan`) and the tail is filtered exactly.
    pub fn search(
        state: &ShardState,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&Filter>,
        on_plan: &dyn Fn(FilterPlan),
    ) -> Vec<Found> {
        let mut hits: Vec<Found> = state
            .tail
            .search(query, k, filter)
            .into_iter()
            .map(|c| Found { distance: c.distance, location: Location::Tail { flat: c.row } })
            .collect();
        for (index, view) in state.segments.iter().enumerate() {
            let ids = &view.segment.ids.ids;
            let tombs = &view.tombstones;
            let tail = &state.tail;
            let is_hidden = |row: u32| tombs.contains(row) || tail.masks(&ids.id(row as usize));
            let found: Vec<Candidate> = match filter {
                None => view.segment.search(query, k, ef, &is_hidden),
                Some(f) => {
                    let plan = view.segment.plan(f, ef);
                    on_plan(plan);
                    view.segment.search_filtered(query, k, ef, &is_hidden, f, plan)
                }
            };
            hits.extend(
                found
                    .into_iter()
                    .map(|c| Found { distance: c.distance, location: Location::Segment { index, row: c.row } }),
            );
        }
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance));
        hits.truncate(k);
        hits
    }

    /// The live row with this id, if any.
    pub fn get(state: &ShardState, id: &RowId) -> Option<Location> {
        match state.tail.latest.get(id) {
            Some(Newest::Upsert { flat }) => return Some(Location::Tail { flat: *flat }),
            Some(Newest::Deleted) => return None,
            None => {}
        }
        for (index, view) in state.segments.iter().enumerate().rev() {
            if let Some(row) = view.segment.ids.find(id)
                && !view.tombstones.contains(row)
            {
                return Some(Location::Segment { index, row });
            }
        }
        None
    }

    /// Up to `limit` live rows (matching `filter`, if any) with ids after `after`, ordered
    /// by id, and whether more follow. Built from one state (the caller's read guard), so
    /// a page is consistent.
    pub fn scan(
        state: &ShardState,
        after: Option<&RowId>,
        limit: usize,
        filter: Option<&Filter>,
    ) -> (Vec<(RowId, Location)>, bool) {
        let wanted = |id: &RowId| after.is_none_or(|a| id > a);
        let mut live: Vec<(RowId, Location)> = Vec::new();
        for (id, newest) in &state.tail.latest {
            if let Newest::Upsert { flat } = newest
                && wanted(id)
                && filter.is_none_or(|f| f.matches(state.tail.row(*flat).attributes.as_ref()))
            {
                live.push((id.clone(), Location::Tail { flat: *flat }));
            }
        }
        for (index, view) in state.segments.iter().enumerate() {
            let ids = &view.segment.ids.ids;
            let mut consider = |row: u32| {
                let id = ids.id(row as usize);
                if wanted(&id) && !view.tombstones.contains(row) && !state.tail.masks(&id) {
                    live.push((id.into_owned(), Location::Segment { index, row }));
                }
            };
            match filter {
                Some(f) => view.segment.matching(f).iter().for_each(&mut consider),
                None => (0..ids.len() as u32).for_each(&mut consider),
            }
        }
        let more = live.len() > limit;
        if more {
            live.select_nth_unstable_by(limit, |a, b| a.0.cmp(&b.0));
            live.truncate(limit);
        }
        live.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        (live, more)
    }

    /// Live rows matching `filter`: the matching rows of every segment that are neither
    /// tombstoned nor decided by the tail, plus the tail's matching live rows.
    pub fn count(state: &ShardState, filter: &Filter) -> u64 {
        let tail = state
            .tail
            .latest
            .values()
            .filter(|n| match n {
                Newest::Upsert { flat } => filter.matches(state.tail.row(*flat).attributes.as_ref()),
                Newest::Deleted => false,
            })
            .count() as u64;
        let segments: u64 = state
            .segments
            .iter()
            .map(|view| {
                let mut rows = view.segment.matching(filter);
                rows -= view.tombstones.as_ref();
                let masked = state
                    .tail
                    .latest
                    .keys()
                    .filter(|id| view.segment.ids.find(id).is_some_and(|r| rows.contains(r)))
                    .count() as u64;
                rows.len() - masked
            })
            .sum();
        tail + segments
    }

    /// Live rows: segment rows not tombstoned, adjusted for ids the tail decides.
    pub fn live_rows(state: &ShardState) -> u64 {
        let shadowed = state
            .tail
            .latest
            .keys()
            .filter(|id| {
                state.segments.iter().any(|v| v.segment.ids.find(id).is_some_and(|r| !v.tombstones.contains(r)))
            })
            .count();
        (state.manifest.rows() + state.tail.live_rows() as u64).saturating_sub(shadowed as u64)
    }

    /// The id of the row at `location`.
    pub fn id(state: &ShardState, location: Location) -> RowId {
        match location {
            Location::Tail { flat } => state.tail.row(flat).id.clone(),
            Location::Segment { index, row } => state.segments[index].segment.ids.ids.id(row as usize).into_owned(),
        }
    }

    /// The vector and attributes of the row at `location`, each only if asked for (and,
    /// for attributes, only if the row has any).
    pub fn payload(
        state: &ShardState,
        location: Location,
        with_vector: bool,
        with_attributes: bool,
    ) -> (Option<Vec<f32>>, Option<Attributes>) {
        match location {
            Location::Tail { flat } => {
                let r = state.tail.row(flat);
                (with_vector.then(|| r.vector.clone()), r.attributes.clone().filter(|_| with_attributes))
            }
            Location::Segment { index, row } => {
                let rows = &state.segments[index].segment.rows;
                (
                    with_vector.then(|| rows.vector(row).to_vec()),
                    with_attributes.then(|| rows.attributes(row)).flatten(),
                )
            }
        }
    }
}
