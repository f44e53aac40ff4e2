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
/// under `PutMode::Create` is `Conflict`, everything else is `Retryable` (the store's own
/// retries have already run).
pub fn storage_error(path: &str, err: object_store::Error) -> Error {
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
