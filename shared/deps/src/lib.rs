//! `strata-deps`: what a role is given. [`Deps`] is the infrastructure a role runs on,
//! injected by whoever composes the roles (the `strata` binary, or a test); [`Resolver`]
//! turns collection names into definitions on top of it; [`ActiveCollections`] tells the
//! background loops which collections are active without listing storage on every tick.
//!
//! Roles never reach for globals: swapping the local filesystem for S3, in-process
//! coordination for etcd, the system clock for a manual one or the OS-seeded random source
//! for a fixed seed is a matter of what goes in here.

mod active;
mod resolver;

use std::sync::Arc;

use object_store::ObjectStore;
use strata_coord::Coordination;
use strata_rpc::RpcClients;
use strata_storage::cache::SegmentCache;
use strata_types::metrics::Metrics;
use strata_types::random::Random;
use strata_types::time::Clock;

pub use active::{ActiveCollections, DEFAULT_CATALOG_POLL_MS};
pub use resolver::Resolver;

/// Everything a role needs from its environment.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn ObjectStore>,
    pub coord: Arc<dyn Coordination>,
    /// Wall and monotonic time, and sleeping: the only clock library code reads.
    pub clock: Arc<dyn Clock>,
    /// The only source of random numbers library code draws from.
    pub rng: Arc<Random>,
    pub cache: Arc<SegmentCache>,
    /// Connections to other nodes (unused by a standalone process, which is every node).
    pub rpc: Arc<RpcClients>,
    /// This node's name: lease holder, member id, serving-record owner.
    pub node_id: String,
    /// This process's metrics registry (exported at `GET /metrics`); each role registers
    /// its own series on it.
    pub metrics: Arc<Metrics>,
}
