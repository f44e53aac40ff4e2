//! [`InstrumentedStore`]: an `ObjectStore` decorator that counts and times every request
//! the process makes to object storage, into its own series ([`StoreMetrics`]) on the
//! process's [`Metrics`] registry.
//!
//! Role: the composition (`strata/src/node.rs`) wraps the opened store once, before anything
//! uses it, so every role's reads and writes — and the startup create-only probe — are
//! measured without the roles knowing.
//!
//! What is recorded, per operation `op`:
//! - `strata_object_store_requests_total{op,outcome}`: `outcome` is `ok`, `not_found`,
//!   `already_exists` (a lost create-only race: normal, not a failure), `precondition_failed`,
//!   `not_modified`, `error`, or `cancelled` (a listing dropped before its end);
//! - `strata_object_store_request_seconds{op}`: a get is timed until its response head
//!   (the body streams afterwards), a listing from its first poll to its end, each object
//!   of a delete stream since the previous result;
//! - bytes read (the range a get returned) and written (put and multipart part payloads).
//!
//! Every required method of the trait is wrapped. Of the provided ones, `get_ranges`,
//! `list_with_offset` and `rename_opts` are delegated to the inner store too, because their
//! defaults would replace the inner store's native implementation (one ranged read, a
//! pushed-down offset, an atomic rename) with several instrumented calls.

use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};

use prometheus::{HistogramVec, IntCounter, IntCounterVec};
use strata_types::metrics::{LATENCY_BUCKETS, Metrics};
use strata_types::time::{Clock, ClockExt};

/// The object-store series (`strata_object_store_*`).
#[derive(Clone, Debug)]
pub struct StoreMetrics {
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub read_bytes: IntCounter,
    pub written_bytes: IntCounter,
}

impl StoreMetrics {
    /// Registers the series on `metrics` (or finds them registered).
    pub fn register(metrics: &Metrics) -> StoreMetrics {
        StoreMetrics {
            requests: metrics.counter_vec(
                "strata_object_store_requests_total",
                "Object store requests, by operation and outcome.",
                &["op", "outcome"],
            ),
            request_seconds: metrics.histogram_vec(
                "strata_object_store_request_seconds",
                "Object store request latency by operation (gets: until the response head).",
                LATENCY_BUCKETS,
                &["op"],
            ),
            read_bytes: metrics.counter("strata_object_store_read_bytes_total", "Bytes returned by object store gets."),
            written_bytes: metrics.counter(
                "strata_object_store_written_bytes_total",
                "Bytes sent by object store puts (single and multipart).",
            ),
        }
    }
}

/// Counts and times every request to the wrapped store.
#[derive(Debug)]
pub struct InstrumentedStore {
    inner: Arc<dyn ObjectStore>,
    rec: Arc<Recorder>,
}

impl InstrumentedStore {
    /// `inner`, recording into `metrics` with latencies on `clock`.
    pub fn new(inner: Arc<dyn ObjectStore>, metrics: &Metrics, clock: Arc<dyn Clock>) -> InstrumentedStore {
        InstrumentedStore { inner, rec: Arc::new(Recorder { metrics: StoreMetrics::register(metrics), clock }) }
    }

    /// `inner` wrapped, ready to be injected as the process's store.
    pub fn wrap(inner: Arc<dyn ObjectStore>, metrics: &Metrics, clock: Arc<dyn Clock>) -> Arc<dyn ObjectStore> {
        Arc::new(InstrumentedStore::new(inner, metrics, clock))
    }
}

impl std::fmt::Display for InstrumentedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

/// The bounded outcome label of a failed request.
fn error_outcome(e: &object_store::Error) -> &'static str {
    match e {
        object_store::Error::NotFound { .. } => "not_found",
        object_store::Error::AlreadyExists { .. } => "already_exists",
        object_store::Error::Precondition { .. } => "precondition_failed",
        object_store::Error::NotModified { .. } => "not_modified",
        _ => "error",
    }
}

fn outcome<T>(result: &object_store::Result<T>) -> &'static str {
    result.as_ref().map_or_else(error_outcome, |_| "ok")
}

/// Records requests into the series, timed on the injected clock.
struct Recorder {
    metrics: StoreMetrics,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").field("metrics", &self.metrics).finish_non_exhaustive()
    }
}

impl Recorder {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn record(&self, op: &'static str, outcome: &'static str, started: Instant) {
        self.metrics.requests.with_label_values(&[op, outcome]).inc();
        let seconds = self.clock.elapsed(started).as_secs_f64();
        self.metrics.request_seconds.with_label_values(&[op]).observe(seconds);
    }
}

impl InstrumentedStore {
    /// Awaits `request` and records it as one `op`.
    async fn timed<T>(
        &self,
        op: &'static str,
        request: impl Future<Output = object_store::Result<T>>,
    ) -> object_store::Result<T> {
        let started = self.rec.now();
        let result = request.await;
        self.rec.record(op, outcome(&result), started);
        result
    }

    fn timed_list(
        &self,
        op: &'static str,
        inner: BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        TimedList { inner, rec: self.rec.clone(), op, started: None, done: false }.boxed()
    }
}

#[async_trait::async_trait]
impl ObjectStore for InstrumentedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let len = payload.content_length() as u64;
        let result = self.timed("put", self.inner.put_opts(location, payload, opts)).await;
        if result.is_ok() {
            self.rec.metrics.written_bytes.inc_by(len);
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let upload = self.timed("put_multipart", self.inner.put_multipart_opts(location, opts)).await?;
        Ok(Box::new(InstrumentedUpload { inner: upload, rec: self.rec.clone() }))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        let op = if options.head { "head" } else { "get" };
        let result = self.timed(op, self.inner.get_opts(location, options)).await;
        if let (Ok(got), "get") = (&result, op) {
            self.rec.metrics.read_bytes.inc_by(got.range.end.saturating_sub(got.range.start));
        }
        result
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<Bytes>> {
        let result = self.timed("get_ranges", self.inner.get_ranges(location, ranges)).await;
        if let Ok(parts) = &result {
            self.rec.metrics.read_bytes.inc_by(parts.iter().map(|p| p.len() as u64).sum());
        }
        result
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let rec = self.rec.clone();
        let mut since = None::<Instant>;
        self.inner
            .delete_stream(locations)
            .map(move |result| {
                let started = *since.get_or_insert_with(|| rec.now());
                rec.record("delete", outcome(&result), started);
                since = Some(rec.now());
                result
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.timed_list("list", self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.timed_list("list", self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.timed("list_with_delimiter", self.inner.list_with_delimiter(prefix)).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.timed("copy", self.inner.copy_opts(from, to, options)).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> object_store::Result<()> {
        self.timed("rename", self.inner.rename_opts(from, to, options)).await
    }
}

/// A listing, recorded as one request when it ends, fails or is dropped.
struct TimedList {
    inner: BoxStream<'static, object_store::Result<ObjectMeta>>,
    rec: Arc<Recorder>,
    op: &'static str,
    /// Set on the first poll: a listing never polled made no request.
    started: Option<Instant>,
    done: bool,
}

impl TimedList {
    fn finish(&mut self, outcome: &'static str) {
        if let (Some(started), false) = (self.started, self.done) {
            self.done = true;
            self.rec.record(self.op, outcome, started);
        }
    }
}

impl Stream for TimedList {
    type Item = object_store::Result<ObjectMeta>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let rec = &this.rec;
        this.started.get_or_insert_with(|| rec.now());
        let item = std::task::ready!(this.inner.poll_next_unpin(cx));
        match &item {
            None => this.finish("ok"),
            Some(Err(e)) => this.finish(error_outcome(e)),
            Some(Ok(_)) => {}
        }
        Poll::Ready(item)
    }
}

impl Drop for TimedList {
    fn drop(&mut self) {
        self.finish("cancelled");
    }
}

/// A multipart upload whose parts, completion and abort are recorded.
#[derive(Debug)]
struct InstrumentedUpload {
    inner: Box<dyn MultipartUpload>,
    rec: Arc<Recorder>,
}

#[async_trait::async_trait]
impl MultipartUpload for InstrumentedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let len = data.content_length() as u64;
        let part = self.inner.put_part(data);
        let rec = self.rec.clone();
        Box::pin(async move {
            let started = rec.now();
            let result = part.await;
            rec.record("put_part", outcome(&result), started);
            if result.is_ok() {
                rec.metrics.written_bytes.inc_by(len);
            }
            result
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let started = self.rec.now();
        let result = self.inner.complete().await;
        self.rec.record("complete_multipart", outcome(&result), started);
        result
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let started = self.rec.now();
        let result = self.inner.abort().await;
        self.rec.record("abort_multipart", outcome(&result), started);
        result
    }
}

#[cfg(test)]
mod tests {
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutMode};
    use strata_types::time::SystemClock;

    use super::*;

    fn count(m: &StoreMetrics, op: &str, outcome: &str) -> u64 {
        m.requests.with_label_values(&[op, outcome]).get()
    }

    #[tokio::test]
    async fn every_operation_is_counted_against_in_memory() {
        let registry = Metrics::new();
        let store = InstrumentedStore::wrap(Arc::new(InMemory::new()), &registry, Arc::new(SystemClock));
        // Registering again hands out the same series the store records into.
        let metrics = StoreMetrics::register(&registry);
        let (a, b, c) = (Path::from("d/a"), Path::from("d/b"), Path::from("d/c"));

        store.put(&a, PutPayload::from_static(b"hello")).await.unwrap();
        let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let again = store.put_opts(&a, PutPayload::from_static(b"x"), create).await;
        assert!(matches!(again, Err(object_store::Error::AlreadyExists { .. })));
        assert_eq!((count(&metrics, "put", "ok"), count(&metrics, "put", "already_exists")), (1, 1));
        assert_eq!(metrics.written_bytes.get(), 5);

        assert_eq!(store.get(&a).await.unwrap().bytes().await.unwrap().as_ref(), b"hello");
        assert_eq!(store.get_range(&a, 1..3).await.unwrap().as_ref(), b"el");
        assert!(store.get(&b).await.is_err());
        assert_eq!((count(&metrics, "get", "ok"), count(&metrics, "get", "not_found")), (2, 1));
        assert_eq!(store.head(&a).await.unwrap().size, 5);
        assert_eq!(count(&metrics, "head", "ok"), 1);
        let parts = store.get_ranges(&a, &[0..1, 4..5]).await.unwrap();
        assert_eq!(parts.concat(), b"ho");
        assert_eq!(count(&metrics, "get_ranges", "ok"), 1);
        assert_eq!(metrics.read_bytes.get(), 5 + 2 + 2, "get, get_range, get_ranges");

        store.copy(&a, &b).await.unwrap();
        store.rename(&b, &c).await.unwrap();
        assert_eq!((count(&metrics, "copy", "ok"), count(&metrics, "rename", "ok")), (1, 1));

        let listed: Vec<ObjectMeta> = store.list(Some(&Path::from("d"))).try_collect().await.unwrap();
        assert_eq!(listed.len(), 2);
        let after: Vec<ObjectMeta> = store.list_with_offset(None, &a).try_collect().await.unwrap();
        assert_eq!(after.len(), 1);
        let mut dropped = store.list(None);
        dropped.next().await.unwrap().unwrap();
        drop(dropped);
        let _never_polled = store.list(None);
        assert_eq!((count(&metrics, "list", "ok"), count(&metrics, "list", "cancelled")), (2, 1));
        store.list_with_delimiter(None).await.unwrap();
        assert_eq!(count(&metrics, "list_with_delimiter", "ok"), 1);

        let mut upload = store.put_multipart(&Path::from("d/m")).await.unwrap();
        upload.put_part(PutPayload::from_static(b"abc")).await.unwrap();
        upload.put_part(PutPayload::from_static(b"de")).await.unwrap();
        upload.complete().await.unwrap();
        assert_eq!(count(&metrics, "put_multipart", "ok"), 1);
        assert_eq!(count(&metrics, "put_part", "ok"), 2);
        assert_eq!(count(&metrics, "complete_multipart", "ok"), 1);
        assert_eq!(metrics.written_bytes.get(), 5 + 5);

        store.delete(&a).await.unwrap();
        let gone: Vec<Path> = store
            .delete_stream(futures::stream::iter([Ok(c.clone()), Ok(Path::from("d/m"))]).boxed())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(gone.len(), 2);
        assert_eq!(count(&metrics, "delete", "ok"), 3);

        let text = registry.render();
        assert!(text.contains(r#"strata_object_store_request_seconds_count{op="put"} 2"#), "{text}");
        assert!(store.to_string().starts_with("Instrumented("));
    }
}
