//! The ingest role's Prometheus series: WAL group commits and flushes as they happen, the
//! unflushed backlog of each shard this node writes (copied in at scrape time), and the
//! writer handoffs.

use std::time::Duration;

use prometheus::{Histogram, IntCounter, IntGaugeVec};
use strata_types::metrics::{JOB_BUCKETS, LATENCY_BUCKETS, Metrics};

/// Every series of the ingest role.
#[derive(Clone, Debug)]
pub(crate) struct IngestMetrics {
    wal_commit_seconds: Histogram,
    wal_commit_bytes: Histogram,
    wal_commits: IntCounter,
    wal_ops: IntCounter,
    pub flush_seconds: Histogram,
    pub flush_rows: IntCounter,
    backlog_bytes: IntGaugeVec,
    backlog_rows: IntGaugeVec,
    /// Writers given up to another owner (`strata_coord_handoffs_total{kind="writer"}`).
    pub handoffs: IntCounter,
}

impl IngestMetrics {
    pub fn register(metrics: &Metrics) -> IngestMetrics {
        let shard = &["collection", "shard"];
        IngestMetrics {
            wal_commit_seconds: metrics.histogram(
                "strata_wal_commit_seconds",
                "Duration of the create-only put of one WAL group commit.",
                LATENCY_BUCKETS,
            ),
            wal_commit_bytes: metrics.histogram(
                "strata_wal_commit_bytes",
                "Encoded operation bytes of one WAL group commit.",
                &prometheus::exponential_buckets(256.0, 4.0, 10).expect("valid buckets"),
            ),
            wal_commits: metrics.counter("strata_wal_commits_total", "WAL group commits acknowledged."),
            wal_ops: metrics
                .counter("strata_wal_ops_total", "Operations (upserts and deletes) in acknowledged WAL commits."),
            flush_seconds: metrics.histogram(
                "strata_flush_seconds",
                "Duration of a flush: segment build, upload, tombstones and manifest commit.",
                JOB_BUCKETS,
            ),
            flush_rows: metrics
                .counter("strata_flush_rows_total", "WAL operations moved from the backlog into segments."),
            backlog_bytes: metrics.gauge_vec(
                "strata_ingest_backlog_bytes",
                "Encoded bytes acknowledged but not yet flushed, per shard written by this node.",
                shard,
            ),
            backlog_rows: metrics.gauge_vec(
                "strata_ingest_backlog_rows",
                "Operations acknowledged but not yet flushed, per shard written by this node.",
                shard,
            ),
            handoffs: strata_coord::handoffs_counter(metrics, "writer"),
        }
    }

    /// Records one acknowledged WAL group commit.
    pub fn observe_wal_commit(&self, ops: usize, bytes: usize, elapsed: Duration) {
        self.wal_commits.inc();
        self.wal_ops.inc_by(ops as u64);
        self.wal_commit_bytes.observe(bytes as f64);
        self.wal_commit_seconds.observe(elapsed.as_secs_f64());
    }

    /// Replaces the per-shard backlog gauges: `(collection, shard, rows, bytes)`. Shards no
    /// longer written here disappear.
    pub fn export_backlog(&self, shards: impl IntoIterator<Item = (String, u32, u64, u64)>) {
        self.backlog_rows.reset();
        self.backlog_bytes.reset();
        for (collection, shard, rows, bytes) in shards {
            let labels = [collection.as_str(), &shard.to_string()];
            self.backlog_rows.with_label_values(&labels).set(rows as i64);
            self.backlog_bytes.with_label_values(&labels).set(bytes as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use strata_types::metrics::sample;

    use super::*;

    #[test]
    fn every_series_is_registered_and_per_shard_gauges_forget_shards_given_up() {
        let registry = Metrics::new();
        let m = IngestMetrics::register(&registry);
        m.observe_wal_commit(5, 1000, Duration::from_millis(2));
        m.export_backlog([("a".to_owned(), 0, 1, 10), ("a".to_owned(), 1, 2, 20)]);
        m.export_backlog([("a".to_owned(), 1, 3, 30)]);
        let text = registry.render();
        for name in [
            "strata_wal_commit_seconds",
            "strata_wal_commit_bytes",
            "strata_wal_commits_total",
            "strata_wal_ops_total",
            "strata_flush_seconds",
            "strata_flush_rows_total",
            "strata_ingest_backlog_bytes",
            "strata_ingest_backlog_rows",
            "strata_coord_handoffs_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing:\n{text}");
        }
        assert_eq!(sample(&text, "strata_wal_ops_total"), Some(5.0));
        assert_eq!(sample(&text, r#"strata_ingest_backlog_bytes{collection="a",shard="0"}"#), None);
        assert_eq!(sample(&text, r#"strata_ingest_backlog_bytes{collection="a",shard="1"}"#), Some(30.0));
        assert_eq!(sample(&text, r#"strata_ingest_backlog_rows{collection="a",shard="1"}"#), Some(3.0));
    }
}
