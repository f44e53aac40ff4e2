//! Prometheus metrics of one process, exported as text at `GET /metrics`.
//!
//! Role: [`Metrics`] owns a private `prometheus::Registry` and every metric Strata
//! exports. It is created once by whoever composes the roles and injected through
//! [`Deps`](crate::deps::Deps), like every other dependency: there is no global registry,
//! so two nodes in one test process never share counters.
//!
//! Two kinds of series:
//! - *events*, recorded where they happen (HTTP requests, WAL commits, flushes,
//!   compactions, object-store requests, handoffs, shard loads);
//! - *state*, copied in at scrape time by the `/metrics` handler (per-shard backlog, rows
//!   and segments, cache counters, leases held). Per-shard gauges are reset before each
//!   refresh, so a shard this node gave up disappears instead of keeping its last value.
//!   Counters copied from elsewhere ([`CacheStats`]) only ever move forward by the
//!   difference, so they stay monotonic.
//!
//! Naming: `strata_<subsystem>_<what>_{total,seconds,bytes}`; gauges that count things use
//! the thing as unit (`_rows`, `_segments`, `_shards`, `_leases`). Labels are bounded:
//! route templates, op names, collection name + shard number, never row ids or paths.
//! The full list is in `docs/metrics.md`.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::cache::CacheStats;
use crate::coord::ClusterView;

/// Buckets for request latencies: 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Buckets for background work (flush, compaction, shard load): 10 ms to 10 min.
const JOB_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// Every metric of one process. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    /// Serialises scrapes: a refresh resets per-shard gauges, so two concurrent scrapes
    /// must not interleave.
    scrape: tokio::sync::Mutex<()>,

    pub http_requests: IntCounterVec,
    pub http_request_seconds: HistogramVec,

    pub wal_commit_seconds: Histogram,
    pub wal_commit_bytes: Histogram,
    pub wal_commits: IntCounter,
    pub wal_ops: IntCounter,

    pub flush_seconds: Histogram,
    pub flush_rows: IntCounter,
    pub ingest_backlog_bytes: IntGaugeVec,
    pub ingest_backlog_rows: IntGaugeVec,

    pub compaction_seconds: Histogram,
    pub compactions: IntCounter,
    pub gc_deleted_objects: IntCounter,
    pub gc_deleted_bytes: IntCounter,

    pub query_shard_rows: IntGaugeVec,
    pub query_shard_segments: IntGaugeVec,
    pub query_shards_assigned: IntGauge,
    pub query_shards_serving: IntGauge,
    pub query_shard_load_seconds: Histogram,

    cache_hits: IntCounterVec,
    cache_misses: IntCounter,
    cache_fetched_bytes: IntCounter,
    cache_served_bytes: IntCounter,

    pub object_store_requests: IntCounterVec,
    pub object_store_request_seconds: HistogramVec,
    pub object_store_read_bytes: IntCounter,
    pub object_store_written_bytes: IntCounter,

    coord_leases_held: IntGaugeVec,
    pub coord_handoffs: IntCounterVec,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric` in `registry` and returns it. Names are fixed in this file and a
/// registry is fresh per [`Metrics`], so a failure is a bug here (duplicate or invalid
/// name), caught by the unit tests.
fn reg<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: prometheus::Result<M>) -> M {
    let metric = metric.expect("metric definitions in metrics.rs are valid");
    registry.register(Box::new(metric.clone())).expect("metric names in metrics.rs are unique");
    metric
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> prometheus::Result<Histogram> {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
}

fn histogram_vec(name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> prometheus::Result<HistogramVec> {
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
}

impl Metrics {
    /// A fresh registry with every Strata metric registered (at zero).
    pub fn new() -> Metrics {
        let r = Registry::new();
        let counter = |name: &str, help: &str| reg(&r, IntCounter::new(name, help));
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| reg(&r, IntCounterVec::new(Opts::new(name, help), labels));
        let gauge_vec =
            |name: &str, help: &str, labels: &[&str]| reg(&r, IntGaugeVec::new(Opts::new(name, help), labels));
        let shard = &["collection", "shard"];
        let metrics = Metrics {
            http_requests: counter_vec(
                "strata_http_requests_total",
                "HTTP requests answered, by route template, method and status code.",
                &["route", "method", "status"],
            ),
            http_request_seconds: reg(
                &r,
                histogram_vec(
                    "strata_http_request_seconds",
                    "HTTP request latency until the response head, by route template and method.",
                    LATENCY_BUCKETS,
                    &["route", "method"],
                ),
            ),
            wal_commit_seconds: reg(
                &r,
                histogram(
                    "strata_wal_commit_seconds",
                    "Duration of the create-only put of one WAL group commit.",
                    LATENCY_BUCKETS,
                ),
            ),
            wal_commit_bytes: reg(
                &r,
                histogram(
                    "strata_wal_commit_bytes",
                    "Encoded operation bytes of one WAL group commit.",
                    &prometheus::exponential_buckets(256.0, 4.0, 10).expect("valid buckets"),
                ),
            ),
            wal_commits: counter("strata_wal_commits_total", "WAL group commits acknowledged."),
            wal_ops: counter("strata_wal_ops_total", "Operations (upserts and deletes) in acknowledged WAL commits."),
            flush_seconds: reg(
                &r,
                histogram(
                    "strata_flush_seconds",
                    "Duration of a flush: segment build, upload, tombstones and manifest commit.",
                    JOB_BUCKETS,
                ),
            ),
            flush_rows: counter("strata_flush_rows_total", "WAL operations moved from the backlog into segments."),
            ingest_backlog_bytes: gauge_vec(
                "strata_ingest_backlog_bytes",
                "Encoded bytes acknowledged but not yet flushed, per shard written by this node.",
                shard,
            ),
            ingest_backlog_rows: gauge_vec(
                "strata_ingest_backlog_rows",
                "Operations acknowledged but not yet flushed, per shard written by this node.",
                shard,
            ),
            compaction_seconds: reg(
                &r,
                histogram(
                    "strata_compaction_seconds",
                    "Duration of one committed compaction (merge, graph rebuild, commit).",
                    JOB_BUCKETS,
                ),
            ),
            compactions: counter("strata_compactions_total", "Compactions committed."),
            gc_deleted_objects: counter("strata_gc_deleted_objects_total", "Objects deleted by garbage collection."),
            gc_deleted_bytes: counter("strata_gc_deleted_bytes_total", "Bytes deleted by garbage collection."),
            query_shard_rows: gauge_vec(
                "strata_query_shard_rows",
                "Live rows (segments minus tombstones, plus the WAL tail) per shard held by this query node.",
                shard,
            ),
            query_shard_segments: gauge_vec(
                "strata_query_shard_segments",
                "Segments in the manifest per shard held by this query node.",
                shard,
            ),
            query_shards_assigned: reg(
                &r,
                IntGauge::new("strata_query_shards_assigned", "Shards assigned to this query node."),
            ),
            query_shards_serving: reg(
                &r,
                IntGauge::new("strata_query_shards_serving", "Assigned shards this query node has loaded and serves."),
            ),
            query_shard_load_seconds: reg(
                &r,
                histogram(
                    "strata_query_shard_load_seconds",
                    "Time to load an assigned shard (manifest, segments, WAL tail) before serving it.",
                    JOB_BUCKETS,
                ),
            ),
            cache_hits: counter_vec("strata_cache_hits_total", "Segment cache reads answered by a tier.", &["tier"]),
            cache_misses: counter("strata_cache_misses_total", "Segment cache reads that went to object storage."),
            cache_fetched_bytes: counter(
                "strata_cache_fetched_bytes_total",
                "Bytes the segment cache read from object storage.",
            ),
            cache_served_bytes: counter("strata_cache_served_bytes_total", "Bytes the segment cache returned."),
            object_store_requests: counter_vec(
                "strata_object_store_requests_total",
                "Object store requests, by operation and outcome.",
                &["op", "outcome"],
            ),
            object_store_request_seconds: reg(
                &r,
                histogram_vec(
                    "strata_object_store_request_seconds",
                    "Object store request latency by operation (gets: until the response head).",
                    LATENCY_BUCKETS,
                    &["op"],
                ),
            ),
            object_store_read_bytes: counter(
                "strata_object_store_read_bytes_total",
                "Bytes returned by object store gets.",
            ),
            object_store_written_bytes: counter(
                "strata_object_store_written_bytes_total",
                "Bytes sent by object store puts (single and multipart).",
            ),
            coord_leases_held: gauge_vec(
                "strata_coord_leases_held",
                "Leases and serving records this node holds, by kind (writer, compact, serve).",
                &["kind"],
            ),
            coord_handoffs: counter_vec(
                "strata_coord_handoffs_total",
                "Shards this node gave up to another owner, by kind (writer, serve).",
                &["kind"],
            ),
            registry: r,
            scrape: tokio::sync::Mutex::new(()),
        };
        for tier in ["memory", "disk"] {
            metrics.cache_hits.with_label_values(&[tier]);
        }
        for kind in ["writer", "compact", "serve"] {
            metrics.coord_leases_held.with_label_values(&[kind]);
            if kind != "compact" {
                metrics.coord_handoffs.with_label_values(&[kind]);
            }
        }
        metrics
    }

    /// Takes the scrape lock; hold it while refreshing state and rendering.
    pub async fn scrape_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.scrape.lock().await
    }

    /// Every metric in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec fails only for invalid metric families, which `new` rules out.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// The content type of [`Metrics::render`].
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    /// Records one answered HTTP request.
    pub fn observe_http(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http_requests.with_label_values(&[route, method, &status.to_string()]).inc();
        self.http_request_seconds.with_label_values(&[route, method]).observe(elapsed.as_secs_f64());
    }

    /// Records one acknowledged WAL group commit.
    pub fn observe_wal_commit(&self, ops: usize, bytes: usize, elapsed: Duration) {
        self.wal_commits.inc();
        self.wal_ops.inc_by(ops as u64);
        self.wal_commit_bytes.observe(bytes as f64);
        self.wal_commit_seconds.observe(elapsed.as_secs_f64());
    }

    /// Copies the segment cache's counters in (they only grow; moved by the difference).
    pub fn export_cache(&self, stats: &CacheStats) {
        let advance = |counter: &IntCounter, value: u64| counter.inc_by(value.saturating_sub(counter.get()));
        advance(&self.cache_hits.with_label_values(&["memory"]), stats.memory_hits);
        advance(&self.cache_hits.with_label_values(&["disk"]), stats.disk_hits);
        advance(&self.cache_misses, stats.misses);
        advance(&self.cache_fetched_bytes, stats.bytes_fetched);
        advance(&self.cache_served_bytes, stats.bytes_served);
    }

    /// Sets the leases-held gauges from the cluster view: writer and compaction leases
    /// whose holder is `node_id`, and `node_id`'s serving records.
    pub fn export_leases(&self, view: &ClusterView, node_id: &str) {
        let mut held = [0i64; 3];
        for lease in view.leases.iter().filter(|l| l.holder == node_id) {
            held[match lease.kind {
                crate::coord::LeaseKind::Writer => 0,
                crate::coord::LeaseKind::Compact => 1,
            }] += 1;
        }
        held[2] = view.serving.iter().filter(|r| r.node_id == node_id).count() as i64;
        for (kind, n) in ["writer", "compact", "serve"].into_iter().zip(held) {
            self.coord_leases_held.with_label_values(&[kind]).set(n);
        }
    }

    /// Replaces the per-shard ingest backlog gauges: `(collection, shard, rows, bytes)`.
    pub fn export_ingest_backlog(&self, shards: impl IntoIterator<Item = (String, u32, u64, u64)>) {
        self.ingest_backlog_rows.reset();
        self.ingest_backlog_bytes.reset();
        for (collection, shard, rows, bytes) in shards {
            let labels = [collection.as_str(), &shard.to_string()];
            self.ingest_backlog_rows.with_label_values(&labels).set(rows as i64);
            self.ingest_backlog_bytes.with_label_values(&labels).set(bytes as i64);
        }
    }

    /// Replaces the per-shard query gauges: `(collection, shard, rows, segments)`, and the
    /// load progress (`serving` of `assigned`).
    pub fn export_query_shards(
        &self,
        shards: impl IntoIterator<Item = (String, u32, u64, u64)>,
        serving: usize,
        assigned: usize,
    ) {
        self.query_shard_rows.reset();
        self.query_shard_segments.reset();
        for (collection, shard, rows, segments) in shards {
            let labels = [collection.as_str(), &shard.to_string()];
            self.query_shard_rows.with_label_values(&labels).set(rows as i64);
            self.query_shard_segments.with_label_values(&labels).set(segments as i64);
        }
        self.query_shards_serving.set(serving as i64);
        self.query_shards_assigned.set(assigned as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coord::{Lease, LeaseKind, ServeState, ServingRecord};

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn every_metric_is_registered_and_rendered_with_its_type() {
        let m = Metrics::new();
        m.observe_http("/v1/collections/{name}/upsert", "POST", 200, Duration::from_millis(3));
        m.observe_wal_commit(5, 1000, Duration::from_millis(2));
        m.export_ingest_backlog([("docs".to_owned(), 1, 7, 700)]);
        m.export_query_shards([("docs".to_owned(), 0, 3, 1)], 1, 2);
        let text = m.render();
        for name in [
            "strata_http_requests_total",
            "strata_http_request_seconds",
            "strata_wal_commit_seconds",
            "strata_wal_commit_bytes",
            "strata_wal_commits_total",
            "strata_wal_ops_total",
            "strata_flush_seconds",
            "strata_flush_rows_total",
            "strata_ingest_backlog_bytes",
            "strata_ingest_backlog_rows",
            "strata_compaction_seconds",
            "strata_compactions_total",
            "strata_gc_deleted_objects_total",
            "strata_gc_deleted_bytes_total",
            "strata_query_shard_rows",
            "strata_query_shard_segments",
            "strata_query_shards_assigned",
            "strata_query_shards_serving",
            "strata_query_shard_load_seconds",
            "strata_cache_hits_total",
            "strata_cache_misses_total",
            "strata_cache_fetched_bytes_total",
            "strata_cache_served_bytes_total",
            "strata_coord_leases_held",
            "strata_coord_handoffs_total",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name} missing:\n{text}");
        }
        let upserts = r#"strata_http_requests_total{method="POST",route="/v1/collections/{name}/upsert",status="200"}"#;
        assert_eq!(value(&text, upserts), Some(1.0));
        assert_eq!(value(&text, "strata_wal_ops_total"), Some(5.0));
        assert_eq!(value(&text, r#"strata_ingest_backlog_rows{collection="docs",shard="1"}"#), Some(7.0));
        assert_eq!(value(&text, "strata_query_shards_assigned"), Some(2.0));
    }

    #[test]
    fn per_shard_gauges_forget_shards_given_up() {
        let m = Metrics::new();
        m.export_ingest_backlog([("a".to_owned(), 0, 1, 10), ("a".to_owned(), 1, 2, 20)]);
        m.export_ingest_backlog([("a".to_owned(), 1, 3, 30)]);
        let text = m.render();
        assert_eq!(value(&text, r#"strata_ingest_backlog_bytes{collection="a",shard="0"}"#), None);
        assert_eq!(value(&text, r#"strata_ingest_backlog_bytes{collection="a",shard="1"}"#), Some(30.0));
    }

    #[test]
    fn cache_counters_stay_monotonic_across_scrapes() {
        let m = Metrics::new();
        let stats = CacheStats { memory_hits: 4, disk_hits: 1, misses: 2, bytes_fetched: 100, bytes_served: 300 };
        m.export_cache(&stats);
        m.export_cache(&stats);
        m.export_cache(&CacheStats { memory_hits: 6, ..stats });
        let text = m.render();
        assert_eq!(value(&text, r#"strata_cache_hits_total{tier="memory"}"#), Some(6.0));
        assert_eq!(value(&text, r#"strata_cache_hits_total{tier="disk"}"#), Some(1.0));
        assert_eq!(value(&text, "strata_cache_fetched_bytes_total"), Some(100.0));
    }

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
        let m = Metrics::new();
        m.export_leases(&view, "me");
        let text = m.render();
        for kind in ["writer", "compact", "serve"] {
            assert_eq!(value(&text, &format!("strata_coord_leases_held{{kind=\"{kind}\"}}")), Some(1.0), "{kind}");
        }
    }
}
