//! Coordination's Prometheus series: the leases and serving records this node holds
//! (copied from the cluster view at scrape time) and the handoffs counter the roles share.

use prometheus::{IntCounterVec, IntGaugeVec};
use strata_types::metrics::Metrics;

use crate::{ClusterView, LeaseKind};

/// `strata_coord_leases_held{kind}`: what this node holds, by kind.
#[derive(Clone, Debug)]
pub struct LeaseMetrics {
    held: IntGaugeVec,
}

impl LeaseMetrics {
    /// Registers the series on `metrics` (or finds it registered), every kind at zero.
    pub fn register(metrics: &Metrics) -> LeaseMetrics {
        let held = metrics.gauge_vec(
            "strata_coord_leases_held",
            "Leases and serving records this node holds, by kind (writer, compact, serve).",
            &["kind"],
        );
        for kind in ["writer", "compact", "serve"] {
            held.with_label_values(&[kind]);
        }
        LeaseMetrics { held }
    }

    /// Sets the gauges from the cluster view: writer and compaction leases whose holder is
    /// `node_id`, and `node_id`'s serving records.
    pub fn export(&self, view: &ClusterView, node_id: &str) {
        let mut held = [0i64; 3];
        for lease in view.leases.iter().filter(|l| l.holder == node_id) {
            held[match lease.kind {
                LeaseKind::Writer => 0,
                LeaseKind::Compact => 1,
            }] += 1;
        }
        held[2] = view.serving.iter().filter(|r| r.node_id == node_id).count() as i64;
        for (kind, n) in ["writer", "compact", "serve"].into_iter().zip(held) {
            self.held.with_label_values(&[kind]).set(n);
        }
    }
}

/// `strata_coord_handoffs_total{kind}`: shards this node gave up to another owner. The
/// ingest role counts `writer`, the query role `serve`; both register it through here so
/// the definition is one, and a process running both shares the series.
pub fn handoffs_counter(metrics: &Metrics, kind: &str) -> prometheus::IntCounter {
    let counter: IntCounterVec = metrics.counter_vec(
        "strata_coord_handoffs_total",
        "Shards this node gave up to another owner, by kind (writer, serve).",
        &["kind"],
    );
    counter.with_label_values(&[kind])
}

#[cfg(test)]
mod tests {
    use strata_types::metrics::sample;

    use super::*;
    use crate::{Lease, ServeState, ServingRecord};

    #[test]
    fn leases_held_count_only_this_node() {
        let lease = |kind, key: &str, holder: &str| Lease {
            kind,
            key: key.to_owned(),
            holder: holder.to_owned(),
            epoch: 1,
            session: 1,
        };
        let serving = |node: &str| ServingRecord {
            collection_id: "c".to_owned(),
            shard: 0,
            node_id: node.to_owned(),
            state: ServeState::Serving,
        };
        let view = ClusterView {
            leases: vec![
                lease(LeaseKind::Writer, "c/0", "me"),
                lease(LeaseKind::Writer, "c/1", "other"),
                lease(LeaseKind::Compact, "c/0", "me"),
            ],
            serving: vec![serving("me"), serving("other")],
            ..ClusterView::default()
        };
        let registry = Metrics::new();
        LeaseMetrics::register(&registry).export(&view, "me");
        let text = registry.render();
        for kind in ["writer", "compact", "serve"] {
            assert_eq!(sample(&text, &format!("strata_coord_leases_held{{kind=\"{kind}\"}}")), Some(1.0), "{kind}");
        }
    }

    #[test]
    fn roles_share_the_handoffs_series() {
        let registry = Metrics::new();
        handoffs_counter(&registry, "writer").inc();
        handoffs_counter(&registry, "serve").inc_by(2);
        let text = registry.render();
        assert_eq!(sample(&text, r#"strata_coord_handoffs_total{kind="writer"}"#), Some(1.0));
        assert_eq!(sample(&text, r#"strata_coord_handoffs_total{kind="serve"}"#), Some(2.0));
    }
}
