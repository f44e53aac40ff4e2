//! The growing part of a shard: acknowledged WAL entries above the manifest's
//! `flushed_seq`, kept in memory so fresh writes are searchable before they are flushed.
//!
//! Every upsert's vector is appended to one flat array (prepared for the metric) and
//! searched exactly. When a newer op for the same id arrives, the older row is marked
//! superseded. `latest` maps each id to its newest op, which also masks older copies of
//! the id in segments.

use std::collections::HashMap;
use std::sync::Arc;

use strata_index::{self as index, Candidate};
use strata_storage::segment::{prepare_query, space_of};
use strata_storage::wal::{WalEntry, WalOp};
use strata_types::filter::Filter;
use strata_types::{Metric, Row, RowId};

/// Where the newest op of an id lives.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Newest {
    /// Row `flat` of the tail's vectors.
    Upsert {
        flat: u32,
    },
    Deleted,
}

pub(crate) struct Tail {
    metric: Metric,
    dim: usize,
    /// Highest WAL sequence applied.
    pub applied_seq: u64,
    entries: Vec<Arc<WalEntry>>,
    /// Prepared vectors of every upsert applied, in order.
    vectors: Vec<f32>,
    /// For each flat row: (entry index, op index).
    rows: Vec<(u32, u32)>,
    superseded: Vec<bool>,
    pub latest: HashMap<RowId, Newest>,
}

impl Tail {
    pub fn new(metric: Metric, dim: usize, applied_seq: u64) -> Self {
        Self {
            metric,
            dim,
            applied_seq,
            entries: Vec::new(),
            vectors: Vec::new(),
            rows: Vec::new(),
            superseded: Vec::new(),
            latest: HashMap::new(),
        }
    }

    pub fn apply(&mut self, entry: Arc<WalEntry>) {
        debug_assert!(entry.seq > self.applied_seq);
        self.applied_seq = entry.seq;
        let e = self.entries.len() as u32;
        for (o, op) in entry.ops.iter().enumerate() {
            let newest = match op {
                WalOp::Upsert(row) => {
                    let flat = self.rows.len() as u32;
                    self.vectors.extend_from_slice(&prepare_query(self.metric, &row.vector));
                    self.rows.push((e, o as u32));
                    self.superseded.push(false);
                    Newest::Upsert { flat }
                }
                WalOp::Delete(_) => Newest::Deleted,
            };
            if let Some(Newest::Upsert { flat }) = self.latest.insert(op.id().clone(), newest) {
                self.superseded[flat as usize] = true;
            }
        }
        self.entries.push(entry);
    }

    /// A new tail holding only entries above `flushed_seq` (after a flush committed).
    pub fn rebase(&self, flushed_seq: u64) -> Tail {
        let mut fresh = Tail::new(self.metric, self.dim, flushed_seq);
        for e in self.entries.iter().filter(|e| e.seq > flushed_seq) {
            fresh.apply(e.clone());
        }
        fresh.applied_seq = fresh.applied_seq.max(self.applied_seq);
        fresh
    }

    /// Whether the tail decides this id (its newest op is here).
    pub fn masks(&self, id: &RowId) -> bool {
        self.latest.contains_key(id)
    }

    /// Exact top-`k` of the live rows (matching `filter`, if any).
    pub fn search(&self, query: &[f32], k: usize, filter: Option<&Filter>) -> Vec<Candidate> {
        if self.rows.is_empty() {
            return Vec::new();
        }
        let superseded = &self.superseded;
        let skip =
            |r: u32| superseded[r as usize] || filter.is_some_and(|f| !f.matches(self.row(r).attributes.as_ref()));
        index::brute_force(&self.vectors, self.dim, space_of(self.metric), query, k, &skip)
    }

    /// Rows a search scans (superseded ones included: they are skipped, not removed).
    pub fn scanned_rows(&self) -> usize {
        self.rows.len()
    }

    pub fn row(&self, flat: u32) -> &Row {
        let (e, o) = self.rows[flat as usize];
        match &self.entries[e as usize].ops[o as usize] {
            WalOp::Upsert(row) => row,
            WalOp::Delete(_) => unreachable!("flat rows only index upserts"),
        }
    }

    /// Operations held (for backlog statistics).
    pub fn ops(&self) -> usize {
        self.entries.iter().map(|e| e.ops.len()).sum()
    }

    pub fn live_rows(&self) -> usize {
        self.latest.values().filter(|n| matches!(n, Newest::Upsert { .. })).count()
    }
}
