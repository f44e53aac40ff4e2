//! [`HookedStore`]: an object store for unit tests that delegates every call to an inner
//! store after a per-request hook has had its say — delay a read, rewrite or fail a put.
//! One decorator instead of a hand-written `ObjectStore` impl per test that needs to
//! disturb one kind of request.

use std::fmt;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};

/// Runs before a get of `path`; the get waits for the returned future.
pub type BeforeGet = Box<dyn Fn(&Path) -> BoxFuture<'static, ()> + Send + Sync>;
/// Runs before a put of `path`: returns the options to put with, or the error to fail with.
pub type BeforePut = Box<dyn Fn(&Path, PutOptions) -> object_store::Result<PutOptions> + Send + Sync>;

/// An in-memory store whose gets and puts pass through hooks first.
#[derive(Default)]
pub struct HookedStore {
    pub inner: InMemory,
    before_get: Option<BeforeGet>,
    before_put: Option<BeforePut>,
}

impl HookedStore {
    pub fn new() -> HookedStore {
        HookedStore::default()
    }

    pub fn before_get(mut self, hook: impl Fn(&Path) -> BoxFuture<'static, ()> + Send + Sync + 'static) -> Self {
        self.before_get = Some(Box::new(hook));
        self
    }

    pub fn before_put(
        mut self,
        hook: impl Fn(&Path, PutOptions) -> object_store::Result<PutOptions> + Send + Sync + 'static,
    ) -> Self {
        self.before_put = Some(Box::new(hook));
        self
    }
}

impl fmt::Debug for HookedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HookedStore({:?})", self.inner)
    }
}

impl fmt::Display for HookedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hooked({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for HookedStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let opts = match &self.before_put {
            Some(hook) => hook(location, opts)?,
            None => opts,
        };
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        if let Some(hook) = &self.before_get {
            hook(location).await;
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
