//! `strata-storage`: the storage core. Object storage is the only durable state; this crate
//! owns how that state is laid out ([`paths`], the one module that formats object paths),
//! encoded ([`wal`], [`manifest`], [`catalog`], [`segment`], [`tombstones`]), committed
//! ([`manifest::commit_with_rebase`]), read back through the two-tier [`cache`], and how the
//! store itself is opened, checked ([`store`]) and measured ([`instrumented_store`]).
//!
//! Invariants every module keeps:
//! - every object is immutable once written, and every commit (WAL entry, manifest
//!   version, catalog entry) is a create-only put, so two writers can never both commit
//!   the same sequence number or version;
//! - nothing is acknowledged to a client before the object holding it exists;
//! - input is validated before anything is written.
//!
//! Dependencies: `strata-types` (errors, model, clock) and `strata-index` (graphs built
//! into segments); no coordination, no networking beyond the object store.

pub mod attr_types;
pub mod cache;
pub mod catalog;
pub mod instrumented_store;
pub mod manifest;
pub mod paths;
pub mod segment;
pub mod store;
pub mod tombstones;
pub mod wal;

use strata_types::{Error, ErrorKind};

/// Maps an object-store error on `path`: a missing object is `NotFound`, an existing one
/// under `PutMode::Create` is `Conflict`, a full disk is `StorageFull`, everything else is
/// `Retryable` (the store's own retries have already run). The error is private: its text
/// names object paths and the store's words.
pub fn storage_error(path: &str, err: object_store::Error) -> Error {
    if is_storage_full(&err) {
        return Error::storage_full(format!("object store operation on {path} failed: storage full")).with_source(err);
    }
    let kind = match &err {
        object_store::Error::NotFound { .. } => ErrorKind::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => ErrorKind::Conflict,
        object_store::Error::NotImplemented { .. }
        | object_store::Error::NotSupported { .. }
        | object_store::Error::InvalidPath { .. } => ErrorKind::Internal,
        _ => ErrorKind::Retryable,
    };
    Error::new(kind, format!("object store operation on {path} failed")).with_source(err)
}

/// Whether the store failed for want of space, anywhere in the error's chain: an I/O error
/// "no space left on device" or "disk quota exceeded" (the local filesystem store), or an
/// S3 server's `507 Insufficient Storage` (MinIO's `XMinioStorageFull` when its drives
/// pass their free-space threshold). object_store keeps its HTTP error type private, so
/// the status is read from the error's text; `s3_storage_full_is_storage_full` holds that
/// to object_store's real S3 client.
fn is_storage_full(err: &object_store::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
        {
            return true;
        }
        let text = e.to_string();
        if text.contains("507 Insufficient Storage") || text.contains("XMinioStorageFull") {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_storage_full_and_private() {
        let io = std::io::Error::from_raw_os_error(28); // ENOSPC
        let err =
            storage_error("c/wal/1", object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(io) });
        assert_eq!(err.kind(), ErrorKind::StorageFull);
        assert!(err.is_private());
        let other = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let err = storage_error(
            "c/wal/1",
            object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(other) },
        );
        assert_eq!(err.kind(), ErrorKind::Retryable);
        assert!(err.is_private());
    }

    /// A one-connection-at-a-time HTTP server that reads each request (headers and a
    /// `Content-Length` body) and answers `status` with `body`.
    async fn answering(status: &'static str, body: &'static str) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                let complete = |r: &[u8]| {
                    let text = String::from_utf8_lossy(r);
                    let Some(end) = text.find("\r\n\r\n") else { return false };
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    r.len() >= end + 4 + length
                };
                while !complete(&request) {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            }
        });
        addr
    }

    /// object_store's S3 client against a server answering as MinIO does when its drives
    /// are full: the put fails as `StorageFull`; any other 5xx stays `Retryable`.
    #[tokio::test]
    async fn s3_storage_full_is_storage_full() {
        use object_store::ObjectStoreExt as _;
        const MINIO_FULL: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>XMinioStorageFull</Code>\
            <Message>Storage backend has reached its minimum free drive threshold. Please delete a few objects to \
            proceed.</Message></Error>";
        let put = |addr: std::net::SocketAddr| async move {
            let store = object_store::aws::AmazonS3Builder::new()
                .with_endpoint(format!("http://{addr}"))
                .with_allow_http(true)
                .with_bucket_name("b")
                .with_region("us-east-1")
                .with_access_key_id("k")
                .with_secret_access_key("s")
                .with_retry(object_store::RetryConfig { max_retries: 0, ..Default::default() })
                .build()
                .unwrap();
            let err = store.put(&"c/wal/1".into(), "x".into()).await.unwrap_err();
            storage_error("c/wal/1", err)
        };
        let full = put(answering("507 Insufficient Storage", MINIO_FULL).await).await;
        assert_eq!(full.kind(), ErrorKind::StorageFull, "{full:?}");
        assert!(full.is_private());
        let down = put(answering("503 Service Unavailable", "<Error><Code>SlowDown</Code></Error>").await).await;
        assert_eq!(down.kind(), ErrorKind::Retryable, "{down:?}");
    }
}
