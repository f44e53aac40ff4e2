//! `strata-ingest`: the ingest role.
//!
//! Takes REST writes, validates them, routes rows to shards by a stable hash of their id,
//! group-commits each shard's writes into create-only WAL objects and acknowledges only
//! once the object exists. In the background each shard's writer flushes its WAL tail into
//! an immutable segment (HNSW built off the async runtime), resolves replacements and
//! deletes into tombstones, and commits the next manifest with rebase on conflict.
//!
//! Entry point: [`start`] with an [`IngestConfig`], injected [`Deps`](strata_deps::Deps)
//! and a shutdown signal; [`http::router`] exposes the REST API. A process without the
//! ingest role serves the same API through [`forwarder`], which forwards every write.

#[cfg(test)]
mod batch_tests;
mod bulk;
#[cfg(test)]
mod clock_tests;
mod config;
mod flush;
pub mod http;
mod metrics;
mod mutate;
mod node;
mod ownership;
mod routing;
#[cfg(test)]
mod routing_tests;
#[cfg(test)]
mod test_deps;
mod validate;
mod writer;
#[cfg(test)]
mod writer_tests;
mod writers;
#[cfg(test)]
mod writers_tests;

pub use config::IngestConfig;
pub use node::{IngestNode, forwarder, start};
pub use writer::ShardWriterStats;
