//! The compactor's Prometheus series: committed compactions and what garbage collection
//! deleted.

use prometheus::{Histogram, IntCounter};
use strata_types::metrics::{JOB_BUCKETS, Metrics};

use crate::report::GcReport;

/// Every series of the compactor role.
#[derive(Clone, Debug)]
pub(crate) struct CompactorMetrics {
    compaction_seconds: Histogram,
    compactions: IntCounter,
    gc_deleted_objects: IntCounter,
    gc_deleted_bytes: IntCounter,
}

impl CompactorMetrics {
    pub fn register(metrics: &Metrics) -> CompactorMetrics {
        CompactorMetrics {
            compaction_seconds: metrics.histogram(
                "strata_compaction_seconds",
                "Duration of one committed compaction (merge, graph rebuild, commit).",
                JOB_BUCKETS,
            ),
            compactions: metrics.counter("strata_compactions_total", "Compactions committed."),
            gc_deleted_objects: metrics
                .counter("strata_gc_deleted_objects_total", "Objects deleted by garbage collection."),
            gc_deleted_bytes: metrics.counter("strata_gc_deleted_bytes_total", "Bytes deleted by garbage collection."),
        }
    }

    /// Records one committed compaction that took `seconds`.
    pub fn observe_compaction(&self, seconds: f64) {
        self.compactions.inc();
        self.compaction_seconds.observe(seconds);
    }

    /// Records what one garbage collection deleted.
    pub fn observe_gc(&self, gc: &GcReport) {
        self.gc_deleted_objects.inc_by(gc.objects_deleted);
        self.gc_deleted_bytes.inc_by(gc.bytes_deleted);
    }
}

#[cfg(test)]
mod tests {
    use strata_types::metrics::sample;

    use super::*;

    #[test]
    fn every_series_is_registered() {
        let registry = Metrics::new();
        let m = CompactorMetrics::register(&registry);
        m.observe_compaction(1.5);
        m.observe_gc(&GcReport { objects_deleted: 3, bytes_deleted: 300, ..GcReport::default() });
        let text = registry.render();
        for name in [
            "strata_compaction_seconds",
            "strata_compactions_total",
            "strata_gc_deleted_objects_total",
            "strata_gc_deleted_bytes_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing:\n{text}");
        }
        assert_eq!(sample(&text, "strata_compactions_total"), Some(1.0));
        assert_eq!(sample(&text, "strata_gc_deleted_bytes_total"), Some(300.0));
    }
}
