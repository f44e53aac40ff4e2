//! The cache's Prometheus series (`strata_cache_*`), copied from [`CacheStats`] at scrape
//! time. The cache counts in its own atomics (no registry on the read path); a scrape moves
//! each counter forward by the difference, so the series stay monotonic.

use prometheus::{IntCounter, IntCounterVec};
use strata_types::metrics::{Metrics, advance_to};

use super::CacheStats;

/// The segment cache's series.
#[derive(Clone, Debug)]
pub struct CacheMetrics {
    hits: IntCounterVec,
    misses: IntCounter,
    fetched_bytes: IntCounter,
    served_bytes: IntCounter,
}

impl CacheMetrics {
    /// Registers the series on `metrics` (or finds them registered), with both tiers at zero.
    pub fn register(metrics: &Metrics) -> CacheMetrics {
        let hits = metrics.counter_vec("strata_cache_hits_total", "Segment cache reads answered by a tier.", &["tier"]);
        for tier in ["memory", "disk"] {
            hits.with_label_values(&[tier]);
        }
        CacheMetrics {
            hits,
            misses: metrics.counter("strata_cache_misses_total", "Segment cache reads that went to object storage."),
            fetched_bytes: metrics
                .counter("strata_cache_fetched_bytes_total", "Bytes the segment cache read from object storage."),
            served_bytes: metrics.counter("strata_cache_served_bytes_total", "Bytes the segment cache returned."),
        }
    }

    /// Copies the cache's counters in (they only grow; moved by the difference).
    pub fn export(&self, stats: &CacheStats) {
        advance_to(&self.hits.with_label_values(&["memory"]), stats.memory_hits);
        advance_to(&self.hits.with_label_values(&["disk"]), stats.disk_hits);
        advance_to(&self.misses, stats.misses);
        advance_to(&self.fetched_bytes, stats.bytes_fetched);
        advance_to(&self.served_bytes, stats.bytes_served);
    }
}

#[cfg(test)]
mod tests {
    use strata_types::metrics::sample;

    use super::*;

    #[test]
    fn cache_counters_stay_monotonic_across_scrapes() {
        let registry = Metrics::new();
        let m = CacheMetrics::register(&registry);
        let stats = CacheStats { memory_hits: 4, disk_hits: 1, misses: 2, bytes_fetched: 100, bytes_served: 300 };
        m.export(&stats);
        m.export(&stats);
        m.export(&CacheStats { memory_hits: 6, ..stats });
        let text = registry.render();
        assert_eq!(sample(&text, r#"strata_cache_hits_total{tier="memory"}"#), Some(6.0));
        assert_eq!(sample(&text, r#"strata_cache_hits_total{tier="disk"}"#), Some(1.0));
        assert_eq!(sample(&text, "strata_cache_fetched_bytes_total"), Some(100.0));
        assert_eq!(sample(&text, "strata_cache_served_bytes_total"), Some(300.0));
        assert!(text.contains("# TYPE strata_cache_misses_total counter"), "{text}");
    }
}
