//! `strata-query`: the query role.
//!
//! Loads each shard's newest manifest and segments through the two-tier cache, tails the
//! WAL beyond `flushed_seq` into an in-memory exact index so fresh writes are searchable
//! before they are flushed, and answers search and get: every segment's HNSW graph is
//! searched with its tombstones (and ids superseded by unflushed writes) filtered inside
//! the graph walk, the tail is searched exactly, and results merge by distance.
//!
//! In a cluster each shard is served by `replication` query nodes chosen by rendezvous
//! hashing (`serving.rs`, make before break), and every query node routes REST reads to a
//! replica of each shard, itself or another node over gRPC (`router.rs`).
//!
//! Entry point: [`start`]; [`http::router`] exposes the REST API.

mod config;
pub mod http;
mod metrics;
mod node;
mod router;
mod serving;
mod shard;
mod tail;

pub use config::QueryConfig;
pub use node::{QueryNode, start};

#[cfg(test)]
mod tests;
