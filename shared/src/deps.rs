//! The infrastructure a role runs on, injected by whoever composes the roles (the
//! `strata` binary, or a test). Roles never reach for globals: swapping the local
//! filesystem for S3, or in-process coordination for etcd, is a matter of what goes in here.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use object_store::ObjectStore;

use crate::cache::SegmentCache;
use crate::coord::Coordination;
use crate::metrics::Metrics;
use crate::rpc::RpcClients;

/// Wall-clock time, injectable so tests can control age-based decisions.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }
}

/// Everything a role needs from its environment.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn ObjectStore>,
    pub coord: Arc<dyn Coordination>,
    pub clock: Arc<dyn Clock>,
    pub cache: Arc<SegmentCache>,
    /// Connections to other nodes (unused by a standalone process, which is every node).
    pub rpc: Arc<RpcClients>,
    /// This node's name: lease holder, member id, serving-record owner.
    pub node_id: String,
    /// This process's Prometheus metrics (exported at `GET /metrics`).
    pub metrics: Arc<Metrics>,
}
