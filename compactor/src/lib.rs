//! `strata-compactor`: the compaction and garbage-collection role.
//!
//! Every `interval_ms` the background loop started by [`start`] visits each shard of each
//! active collection under the shard's compaction lease and:
//! 1. **compacts** it while there is work: size-tiered merges of small segments and
//!    rewrites of segments with many deleted rows (`plan`), built off the async runtime
//!    and committed as the next manifest with rebase, carrying over deletes that flushes
//!    committed meanwhile (`merge`);
//! 2. **garbage-collects** it: manifest versions, segments, tombstones and WAL entries no
//!    reader within the retention window can need (`gc`).
//!
//! It then deletes dropped collections past the retention window. [`Compactor::run_once`]
//! runs one such pass on demand (tests, the admin `compact` call).
//!
//! Invariants: a delete committed before or during a compaction is never lost and a
//! deleted row never comes back; each id has at most one live row across a shard's
//! segments; nothing a retained manifest references is ever deleted. All of them rest on
//! create-only commits, never on lease timing.

mod compactor;
mod config;
mod gc;
mod merge;
mod metrics;
mod plan;
mod report;

pub use compactor::{Compactor, start};
pub use config::CompactorConfig;
pub use report::{CompactionReport, GcReport, PassReport};

#[cfg(test)]
mod tests;
