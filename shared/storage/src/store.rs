//! Opening the object store, and the startup check that it honours create-only puts.
//!
//! Role: turns a [`StorageConfig`] (one section of every role's configuration) into the
//! `Arc<dyn ObjectStore>` every component shares: a local directory in standalone mode, an
//! S3-compatible bucket (optionally under a prefix) in cluster mode.
//!
//! Flow: [`open`] builds the store; the caller then runs [`check_create_only`] once at
//! startup, before committing anything.
//!
//! Invariant (ARCHITECTURE.md §1.2): every commit is a `PutMode::Create` put, and two
//! writers must never both win one. A store that silently turns a conditional put into an
//! overwrite (old S3 clones, some gateways) would break that without any error, so Strata
//! refuses to run on it: [`check_create_only`] proves the store refuses a second create of
//! the same key.

use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use strata_types::{Error, Result};

/// Where the objects live. In TOML: `kind = "local"` with `path`, or `kind = "s3"` with the
/// [`S3Config`] fields. Default: local, `./data`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StorageConfig {
    /// A local directory (created if missing).
    Local {
        /// Default `data`.
        #[serde(default = "default_local_path")]
        path: PathBuf,
    },
    /// An S3-compatible bucket.
    S3(S3Config),
}

fn default_local_path() -> PathBuf {
    PathBuf::from("data")
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig::Local { path: default_local_path() }
    }
}

/// An S3-compatible bucket. Unset optional fields fall back to the standard `AWS_*`
/// environment variables (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_ALLOW_HTTP`, ...), then to the
/// defaults noted on each field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// The bucket; it must exist (object_store cannot create buckets). Required.
    pub bucket: String,
    /// Endpoint URL (scheme, host, port; no bucket), e.g. `http://127.0.0.1:8333` for a
    /// self-hosted store. Default: AWS itself.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Default: `AWS_REGION` / `AWS_DEFAULT_REGION`, else `us-east-1`.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Allow `http://` endpoints. Default false (or `AWS_ALLOW_HTTP`).
    #[serde(default)]
    pub allow_http: bool,
    /// Virtual-hosted-style URLs (`bucket.host`) instead of path style (`host/bucket`).
    /// Default false: path style, which self-hosted stores expect.
    #[serde(default)]
    pub virtual_hosted_style: bool,
    /// A root inside the bucket under which every Strata object lives, e.g. `prod/strata`.
    /// Default: the bucket's root.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// Opens the store `config` describes. Does not contact it: run [`check_create_only`].
pub fn open(config: &StorageConfig) -> Result<Arc<dyn ObjectStore>> {
    match config {
        StorageConfig::Local { path } => {
            std::fs::create_dir_all(path).map_err(|e| {
                Error::invalid(format!("cannot create the storage directory {}", path.display())).with_source(e)
            })?;
            let store = LocalFileSystem::new_with_prefix(path)
                .map_err(|e| {
                    Error::invalid(format!("cannot open the storage directory {}", path.display())).with_source(e)
                })?
                // Deleting the last object of a directory removes the directory too, so
                // garbage collection does not leave empty trees behind.
                .with_automatic_cleanup(true);
            Ok(Arc::new(store))
        }
        StorageConfig::S3(s3) => {
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(&s3.bucket)
                .with_virtual_hosted_style_request(s3.virtual_hosted_style)
                // If-None-Match / If-Match on puts; the default in 0.14, stated so a
                // future default change cannot silently disable create-only commits.
                .with_conditional_put(S3ConditionalPut::ETagMatch);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(region) = &s3.region {
                builder = builder.with_region(region);
            }
            if let Some(key) = &s3.access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &s3.secret_access_key {
                builder = builder.with_secret_access_key(secret);
            }
            if s3.allow_http {
                builder = builder.with_allow_http(true);
            }
            let store = builder.build().map_err(|e| {
                Error::invalid(format!("invalid S3 configuration for bucket {}", s3.bucket)).with_source(e)
            })?;
            match s3.prefix.as_deref().map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
                Some(prefix) => {
                    let prefix = Path::parse(prefix)
                        .map_err(|e| Error::invalid(format!("invalid S3 prefix {prefix:?}")).with_source(e))?;
                    Ok(Arc::new(PrefixStore::new(store, prefix)))
                }
                None => Ok(Arc::new(store)),
            }
        }
    }
}

/// Proves that `store` refuses a second `PutMode::Create` of one key. Creates a probe
/// object with a unique key (`nonce`: a random number) twice (the second create must fail
/// with `AlreadyExists`) and deletes it.
/// Errors: `Invalid` when the store overwrote or cannot do conditional puts (Strata must not
/// run on it); `Retryable` when the store could not be reached.
pub async fn check_create_only(store: &dyn ObjectStore, nonce: u64) -> Result<()> {
    let key = format!("_strata/probes/create-only-{nonce:016x}-{}", std::process::id());
    let path = Path::from(key.as_str());
    let create = || PutOptions { mode: PutMode::Create, ..PutOptions::default() };
    store.put_opts(&path, PutPayload::from_static(b"first"), create()).await.map_err(|e| refusal_or(&key, e))?;
    let second = store.put_opts(&path, PutPayload::from_static(b"second"), create()).await;
    // Delete the probe whatever the outcome; a leftover probe is harmless but untidy.
    let cleanup = match store.delete(&path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(crate::storage_error(&key, e)),
    };
    match second {
        Err(object_store::Error::AlreadyExists { .. }) => cleanup,
        Ok(_) => Err(not_create_only("a second create of the same key succeeded (it overwrote the object)")),
        Err(e) => Err(refusal_or(&key, e)),
    }
}

fn not_create_only(detail: &str) -> Error {
    Error::invalid(format!(
        "the object store does not honour conditional puts (If-None-Match: *): {detail}; \
         Strata commits with create-only puts and refuses to run on this store"
    ))
}

/// A store that cannot express create-only puts is refused; anything else is a storage
/// failure (usually transient).
fn refusal_or(key: &str, err: object_store::Error) -> Error {
    match err {
        object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. } => {
            not_create_only("create-only puts are not implemented").with_source(err)
        }
        _ => crate::storage_error(key, err),
    }
}

#[cfg(test)]
mod tests {

    use strata_test_support::{HookedStore, S3Server, require_s3};

    use super::*;
    use strata_types::ErrorKind;

    /// A store that "supports" conditional puts the way a broken gateway does: it ignores
    /// the condition and overwrites.
    fn ignores_conditions() -> HookedStore {
        HookedStore::new().before_put(|_, opts| Ok(PutOptions { mode: PutMode::Overwrite, ..opts }))
    }

    async fn object_count(store: &dyn ObjectStore) -> usize {
        use futures::TryStreamExt;
        store.list(None).try_collect::<Vec<_>>().await.expect("list").len()
    }

    #[tokio::test]
    async fn a_store_that_overwrites_on_create_is_refused() {
        let store = ignores_conditions();
        let err = check_create_only(&store, 1).await.expect_err("must be refused");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(err.message().contains("does not honour conditional puts"), "{err}");
        assert!(err.message().contains("refuses to run"), "{err}");
        assert_eq!(object_count(&store).await, 0, "the probe is deleted");
    }

    #[tokio::test]
    async fn the_local_filesystem_passes_and_keeps_no_probe() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("objects");
        let store = open(&StorageConfig::Local { path: path.clone() }).unwrap();
        assert!(path.is_dir(), "open creates the directory");
        check_create_only(store.as_ref(), 2).await.unwrap();
        check_create_only(store.as_ref(), 3).await.unwrap();
        assert_eq!(object_count(store.as_ref()).await, 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn seaweedfs_passes_and_the_prefix_roots_every_key() {
        if !require_s3() {
            return;
        }
        let server = tokio::task::block_in_place(S3Server::start).expect("start SeaweedFS");
        let s3 = |prefix: Option<&str>| {
            StorageConfig::S3(S3Config {
                bucket: server.bucket().to_owned(),
                endpoint: Some(server.endpoint()),
                region: None,
                access_key_id: Some(S3Server::ACCESS_KEY_ID.to_owned()),
                secret_access_key: Some(S3Server::SECRET_ACCESS_KEY.to_owned()),
                allow_http: true,
                virtual_hosted_style: false,
                prefix: prefix.map(str::to_owned),
            })
        };
        let rooted = open(&s3(Some("/team/strata/"))).unwrap();
        check_create_only(rooted.as_ref(), 4).await.unwrap();
        rooted.put(&Path::from("catalog/x"), PutPayload::from_static(b"v")).await.unwrap();
        let whole = open(&s3(None)).unwrap();
        let seen = whole.get(&Path::from("team/strata/catalog/x")).await.expect("object under the prefix");
        assert_eq!(seen.bytes().await.unwrap().as_ref(), b"v");
        assert_eq!(object_count(whole.as_ref()).await, 1, "only the object; the probe is deleted");
        // A create-only put on an existing key is a conflict through the whole stack.
        let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let again = rooted.put_opts(&Path::from("catalog/x"), PutPayload::from_static(b"w"), create).await;
        assert!(matches!(again, Err(object_store::Error::AlreadyExists { .. })), "{again:?}");
    }

    #[test]
    fn storage_config_parses_with_documented_defaults() {
        let local: StorageConfig = serde_json::from_str(r#"{"kind": "local"}"#).unwrap();
        assert_eq!(local, StorageConfig::Local { path: PathBuf::from("data") });
        assert_eq!(StorageConfig::default(), local);
        let s3: StorageConfig = serde_json::from_str(r#"{"kind": "s3", "bucket": "b"}"#).unwrap();
        let StorageConfig::S3(s3) = s3 else { panic!("s3 expected") };
        assert_eq!((s3.bucket.as_str(), s3.allow_http, s3.virtual_hosted_style), ("b", false, false));
        assert_eq!((s3.endpoint, s3.region, s3.prefix), (None, None, None));
        assert!(serde_json::from_str::<StorageConfig>(r#"{"kind": "s3", "bucket": "b", "bukket": 1}"#).is_err());
        assert!(serde_json::from_str::<StorageConfig>(r#"{"kind": "s3"}"#).is_err(), "bucket is required");
        assert!(serde_json::from_str::<StorageConfig>(r#"{"kind": "gcs"}"#).is_err());
    }
}
