//! The process's Prometheus registry, exported as text at `GET /metrics`.
//!
//! Role: [`Metrics`] owns a private `prometheus::Registry`. It is created once by whoever
//! composes the process and injected (`Deps::metrics`); there is no global registry, so
//! two nodes in one test process never share counters. It knows no metric itself: every
//! component registers its own where it lives (the object-store decorator and the cache in
//! `strata-storage`, leases in `strata-coord`, each role's in the role, HTTP requests in
//! the binary), through the typed constructors here.
//!
//! Registering a name twice returns the collector registered first, so two roles of one
//! process (standalone) can share a series such as `strata_coord_handoffs_total{kind}`,
//! each with its own label value. The second registration must agree on the type, the
//! help text and the labels; disagreeing is a bug and panics in tests.
//!
//! Naming: `strata_<subsystem>_<what>_{total,seconds,bytes}`; gauges that count things use
//! the thing as unit (`_rows`, `_segments`, `_shards`, `_leases`). Labels are bounded:
//! route templates, op names, collection name + shard number, never row ids or paths.
//! The full list is in `docs/metrics.md`.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Mutex;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Buckets for request latencies: 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Buckets for background work (flush, compaction, shard load): 10 ms to 10 min.
pub const JOB_BUCKETS: &[f64] = &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// The metrics registry of one process. Cheap to share behind an `Arc`.
pub struct Metrics {
    registry: Registry,
    /// Collectors by name, to hand out the first one again on a second registration.
    by_name: Mutex<HashMap<String, Box<dyn Any + Send + Sync>>>,
    /// Serialises scrapes: refreshing state gauges resets per-shard series, so two
    /// concurrent scrapes must not interleave.
    scrape: tokio::sync::Mutex<()>,
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

impl Metrics {
    /// The content type of [`Metrics::render`].
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    pub fn new() -> Metrics {
        Metrics { registry: Registry::new(), by_name: Mutex::default(), scrape: tokio::sync::Mutex::new(()) }
    }

    /// Registers the collector `make` builds under `name`, or returns the one already
    /// registered under it. Metric definitions are constants of the code, so an invalid or
    /// conflicting definition is a bug: it panics (and the tests of each component's
    /// metrics catch it).
    fn get_or_register<M>(&self, name: &str, make: impl FnOnce() -> prometheus::Result<M>) -> M
    where
        M: Collector + Clone + Send + Sync + 'static,
    {
        let mut by_name = self.by_name.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = by_name.get(name) {
            return existing
                .downcast_ref::<M>()
                .unwrap_or_else(|| panic!("metric {name} is registered twice with different types"))
                .clone();
        }
        let metric = make().unwrap_or_else(|e| panic!("metric {name} is invalid: {e}"));
        self.registry.register(Box::new(metric.clone())).unwrap_or_else(|e| panic!("metric {name}: {e}"));
        by_name.insert(name.to_owned(), Box::new(metric.clone()));
        metric
    }

    pub fn counter(&self, name: &str, help: &str) -> IntCounter {
        self.get_or_register(name, || IntCounter::new(name, help))
    }

    pub fn counter_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        self.get_or_register(name, || IntCounterVec::new(Opts::new(name, help), labels))
    }

    pub fn gauge(&self, name: &str, help: &str) -> IntGauge {
        self.get_or_register(name, || IntGauge::new(name, help))
    }

    pub fn gauge_vec(&self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        self.get_or_register(name, || IntGaugeVec::new(Opts::new(name, help), labels))
    }

    pub fn histogram(&self, name: &str, help: &str, buckets: &[f64]) -> Histogram {
        self.get_or_register(name, || Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())))
    }

    pub fn histogram_vec(&self, name: &str, help: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
        self.get_or_register(name, || {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels)
        })
    }

    /// Takes the scrape lock; hold it while refreshing state gauges and rendering.
    pub async fn scrape_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.scrape.lock().await
    }

    /// Every metric in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec fails only for invalid metric families, which registration
        // rules out.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Moves a counter forward to `value`, a total kept elsewhere (only ever by the
/// difference, so the counter stays monotonic across scrapes).
pub fn advance_to(counter: &IntCounter, value: u64) {
    counter.inc_by(value.saturating_sub(counter.get()));
}

/// The value of one sample in rendered text (`series` is the name with its labels as
/// rendered, e.g. `strata_wal_ops_total` or `x_total{kind="a"}`). For tests.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_registration_shares_the_first_collector() {
        let m = Metrics::new();
        let a = m.counter_vec("strata_test_handoffs_total", "Handoffs.", &["kind"]);
        let b = m.counter_vec("strata_test_handoffs_total", "Handoffs.", &["kind"]);
        a.with_label_values(&["writer"]).inc();
        b.with_label_values(&["serve"]).inc_by(2);
        let text = m.render();
        assert!(text.contains("# TYPE strata_test_handoffs_total counter"), "{text}");
        assert_eq!(sample(&text, r#"strata_test_handoffs_total{kind="writer"}"#), Some(1.0));
        assert_eq!(sample(&text, r#"strata_test_handoffs_total{kind="serve"}"#), Some(2.0));
    }

    #[test]
    #[should_panic(expected = "different types")]
    fn one_name_with_two_types_is_a_bug() {
        let m = Metrics::new();
        m.counter("strata_test_x_total", "X.");
        m.gauge("strata_test_x_total", "X.");
    }

    #[test]
    fn counters_advanced_from_outside_totals_stay_monotonic() {
        let m = Metrics::new();
        let c = m.counter("strata_test_fetched_bytes_total", "Bytes.");
        advance_to(&c, 100);
        advance_to(&c, 100);
        advance_to(&c, 40);
        assert_eq!(c.get(), 100);
        advance_to(&c, 130);
        assert_eq!(c.get(), 130);
    }
}
