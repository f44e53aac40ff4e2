//! `strata-shared`: the storage core every Strata role is built on.
//!
//! Object storage is the only durable state. This crate owns how that state is laid out
//! ([`paths`]), encoded ([`wal`], [`segment`], [`manifest`], [`tombstones`]) and read back
//! through the two-tier [`cache`]; the vector index ([`index`]); the catalog of collections
//! ([`catalog`]); the coordination traits ([`coord`]); the injected dependencies of a role
//! ([`deps`]); the HTTP error edge ([`http`]) and the wire forms of request vectors
//! ([`vector_encoding`]).
//!
//! Invariants every module keeps:
//! - every object is immutable once written, and every commit (WAL entry, manifest
//!   version, catalog entry) is a create-only put, so two writers can never both commit the
//!   same sequence number or version;
//! - nothing is acknowledged to a client before the object holding it exists;
//! - input is validated before anything is written.

pub mod api;
pub mod catalog;
pub mod coord;
pub mod deps;
pub mod error;
pub mod http;
pub mod manifest;
pub mod paths;
pub mod tombstones;
pub mod types;
pub mod vector_encoding;
pub mod wal;

pub use error::{Error, ErrorKind, Result};
pub mod cache;
pub mod index;
pub mod segment;
