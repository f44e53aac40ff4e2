//! `strata-index`: the vector index — distances, HNSW graph build, compact graph format
//! and search. Pure computation over slices: no async, no I/O, no Strata dependency.
//!
//! Flow: a segment's vectors (flat row-major `n × dim` `f32`, stored separately by the
//! segment in Arrow) are handed to [`Graph::build`], which constructs an HNSW graph with
//! our parallel builder (`native.rs`, hnswlib's algorithm) straight into an immutable,
//! compact [`Graph`] (per-layer CSR with `u32` row ids); the tests check its recall against
//! an hnsw_rs-built reference (`reference.rs`, a dev-dependency). The graph is serialised
//! with [`Graph::encode`],
//! read back with [`Graph::decode`] and searched with our own best-first search
//! ([`Graph::search`]), again given the vectors by the caller. Small segments and the
//! unflushed WAL tail use [`brute_force`] instead. A search restricted by an attribute
//! filter either walks the graph ([`Graph::search_filtered`], two [`FilteredWalk`]s for
//! different selectivities) or, when few rows match, scans exactly those rows
//! ([`brute_force_rows`]).
//!
//! Invariants:
//! - a row number is the vector's position in the flat slice; graph ids are row numbers;
//! - [`Space::distance`] is the single definition of "closer" (lower is closer) used by
//!   graph search and brute force, so both rank identically; both builders use a
//!   distance that orders candidates the same way (see `build_distance.rs`);
//! - for [`Space::Cosine`] the caller passes vectors and queries already L2-normalised.

mod build_distance;
mod codec;
mod connect;
mod distance;
mod filtered;
mod graph;
mod huge_pages;
mod level0;
mod native;
#[cfg(test)]
mod reference;
mod search;

#[cfg(test)]
mod filtered_tests;
#[cfg(test)]
mod tests;

pub use distance::{dot, l2_squared, normalize};
pub use filtered::{FilteredWalk, brute_force_rows};
pub use graph::{Graph, GraphParams, NativeParams};
pub use huge_pages::advise as advise_huge_pages;
pub use search::{Candidate, brute_force};

/// Bytes that are not a graph [`Graph::encode`] wrote (truncated, corrupted or foreign).
/// Always a sign of corruption: the storage layer reports it as an internal error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

impl DecodeError {
    /// Prefixes the message with where the problem is.
    fn context(self, context: impl std::fmt::Display) -> Self {
        DecodeError(format!("{context}: {}", self.0))
    }
}

/// The similarity a collection is searched by. Every variant maps to a distance where
/// lower means closer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// Squared Euclidean distance.
    L2,
    /// `1 - dot` on vectors the caller has already L2-normalised.
    Cosine,
    /// Maximum inner product: distance is `-dot`, vectors keep their norms.
    Dot,
}

impl Space {
    /// Distance between `a` and `b` in this space (lower = closer).
    #[inline]
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Space::L2 => l2_squared(a, b),
            Space::Cosine => 1.0 - dot(a, b),
            Space::Dot => -dot(a, b),
        }
    }
}
