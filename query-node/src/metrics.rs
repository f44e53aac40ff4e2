//! The query role's Prometheus series: rows and segments of every shard held here and
//! the load progress (copied in at scrape time), shard load times, serving handoffs, the
//! plans filtered searches take, and reads that fell back to probing object storage
//! because etcd could not tell a head.

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};
use strata_types::metrics::{JOB_BUCKETS, Metrics};

/// Every series of the query role.
#[derive(Clone, Debug)]
pub(crate) struct QueryMetrics {
    shard_rows: IntGaugeVec,
    shard_segments: IntGaugeVec,
    shards_assigned: IntGauge,
    shards_serving: IntGauge,
    pub shard_load_seconds: Histogram,
    /// Shards given up to other replicas (`strata_coord_handoffs_total{kind="serve"}`).
    pub handoffs: IntCounter,
    /// Segment searches with a filter, by the plan chosen (`FilterPlan::label`).
    pub filter_plans: IntCounterVec,
    /// Shard refreshes that probed object storage because coordination could not tell
    /// the head (decision 0011).
    pub head_fallbacks: IntCounter,
}

/// One shard held by this node, as the gauges show it.
pub(crate) struct HeldShard {
    pub collection: String,
    pub shard: u32,
    pub rows: u64,
    pub segments: u64,
}

impl QueryMetrics {
    pub fn register(metrics: &Metrics) -> QueryMetrics {
        let shard = &["collection", "shard"];
        QueryMetrics {
            shard_rows: metrics.gauge_vec(
                "strata_query_shard_rows",
                "Live rows (segments minus tombstones, plus the WAL tail) per shard held by this query node.",
                shard,
            ),
            shard_segments: metrics.gauge_vec(
                "strata_query_shard_segments",
                "Segments in the manifest per shard held by this query node.",
                shard,
            ),
            shards_assigned: metrics.gauge("strata_query_shards_assigned", "Shards assigned to this query node."),
            shards_serving: metrics
                .gauge("strata_query_shards_serving", "Assigned shards this query node has loaded and serves."),
            shard_load_seconds: metrics.histogram(
                "strata_query_shard_load_seconds",
                "Time to load an assigned shard (manifest, segments, WAL tail) before serving it.",
                JOB_BUCKETS,
            ),
            handoffs: strata_coord::handoffs_counter(metrics, "serve"),
            filter_plans: metrics.counter_vec(
                "strata_query_filter_plans_total",
                "Filtered searches of one segment by plan: empty (no row matches), exact (the matching rows \
                 scored), walk (filtered graph walk), bounded_walk (a walk that gives way to the exact \
                 scan when it turns out costly), two_hop (walk with two-hop expansion).",
                &["plan"],
            ),
            head_fallbacks: metrics.counter(
                "strata_query_head_fallbacks_total",
                "Shard refreshes of reads that probed object storage for the newest manifest and WAL entries \
                 because coordination (etcd) could not tell the shard's head: down, stalled past the bound, or \
                 presumed down after a recent failure.",
            ),
        }
    }

    /// Replaces the per-shard gauges with `shards` (shards no longer held disappear) and
    /// sets the load progress: `serving` of `assigned`.
    pub fn export_shards(&self, shards: impl IntoIterator<Item = HeldShard>, serving: usize, assigned: usize) {
        self.shard_rows.reset();
        self.shard_segments.reset();
        for s in shards {
            let labels = [s.collection.as_str(), &s.shard.to_string()];
            self.shard_rows.with_label_values(&labels).set(s.rows as i64);
            self.shard_segments.with_label_values(&labels).set(s.segments as i64);
        }
        self.shards_serving.set(serving as i64);
        self.shards_assigned.set(assigned as i64);
    }
}

#[cfg(test)]
mod tests {
    use strata_types::metrics::sample;

    use super::*;

    #[test]
    fn every_series_is_registered_and_shards_given_up_disappear() {
        let registry = Metrics::new();
        let m = QueryMetrics::register(&registry);
        let held = |shard, rows| HeldShard { collection: "docs".to_owned(), shard, rows, segments: 1 };
        m.export_shards([held(0, 3), held(1, 4)], 1, 2);
        m.export_shards([held(1, 5)], 2, 2);
        let text = registry.render();
        for name in [
            "strata_query_shard_rows",
            "strata_query_shard_segments",
            "strata_query_shards_assigned",
            "strata_query_shards_serving",
            "strata_query_shard_load_seconds",
            "strata_coord_handoffs_total",
            "strata_query_head_fallbacks_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing:\n{text}");
        }
        assert_eq!(sample(&text, r#"strata_query_shard_rows{collection="docs",shard="0"}"#), None);
        assert_eq!(sample(&text, r#"strata_query_shard_rows{collection="docs",shard="1"}"#), Some(5.0));
        assert_eq!(sample(&text, "strata_query_shards_serving"), Some(2.0));
    }
}
