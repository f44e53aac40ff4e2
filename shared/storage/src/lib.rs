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

/// Whether the store failed for want of space: an I/O error "no space left on device" or
/// "disk quota exceeded" anywhere in the error's chain (the local filesystem store).
fn is_storage_full(err: &object_store::Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
        {
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
}
