//! `strata-query`: the query role.
//!
//! Loads each shard's newest manifest and segments through the two-tier cache, tails the
//! WAL beyond `flushed_seq` into an in-memory exact index so fresh writes are searchable
//! before they are flushed, and answers search and get: every segment's HNSW graph is
//! searched with its tombstones (and ids superseded by unflushed writes) filtered inside
//! the graph walk, the tail is searched exactly, and results merge by distance.
//!
//! The role is three parts, each owning its state (see `node.rs`): routing of REST reads
//! to a replica of each shard (`router.rs`), local shard hosting (`host.rs`, over
//! `shard.rs` and `tail.rs`, searching on a bounded blocking pool, `pool.rs`) and the
//! serving loop (`serving.rs`, rendezvous assignment with make-before-break handoffs).
//! Requests are validated once where they enter a node (`validate.rs`; from other nodes,
//! `wire.rs`). Reads by attribute filter (`queries.rs`: query, count) use the same routing;
//! filtered search plans per segment (see `strata_storage::segment::LoadedSegment::plan`).
//!
//! Entry point: [`start`]; [`http::router`] exposes the REST API. A process without the
//! query role serves the same API through [`forwarder`], which sends every read on.

mod config;
mod host;
pub mod http;
mod metrics;
mod node;
mod pool;
mod queries;
mod router;
mod serving;
mod shard;
mod tail;
mod validate;
mod wire;

pub use config::QueryConfig;
pub use node::{QueryNode, forwarder, start};

#[cfg(test)]
mod consistency_tests;
#[cfg(test)]
mod outage_tests;
#[cfg(test)]
mod tests;
