//! The error responses of the OpenAPI document, shared by every role's `#[utoipa::path]`
//! docs, so that every operation lists what it can answer besides success, each with the
//! [`ErrorBody`] schema:
//!
//! - [`JsonBodyErrors`]: what a request with a JSON body can get whatever its handler
//!   does: 400 (from [`ApiJson`](crate::ApiJson): malformed JSON, an unknown field, a value
//!   of the wrong type; or from the handler's own checks), 413 and 415;
//! - [`ServerErrors`]: 500 and 503, which every request that reads the catalog, object
//!   storage, coordination or another node can get;
//! - [`WriteErrors`]: the 429 and 503 of a write split across shards;
//! - descriptions of the statuses whose meaning an operation states itself ([`NOT_FOUND`],
//!   [`INVALID_QUERY`], …).
//!
//! `strata`'s test of the document checks that every operation has them.

use utoipa::IntoResponses;

use crate::ErrorBody;

/// A 404 of an operation on `/v1/collections/{name}...`.
pub const NOT_FOUND: &str = "no active collection has this name";
/// A 400 of an operation whose only input is its query string.
pub const INVALID_QUERY: &str = "a query parameter is malformed or out of range; `error.message` names it";

/// The errors of a request with a JSON body.
#[derive(IntoResponses)]
pub enum JsonBodyErrors {
    /// The request is invalid: malformed JSON, an unknown field, a value of the wrong type
    /// or out of range, a vector of the wrong dimension, … `error.message` says which
    /// (naming the field, e.g. `at rows[3].vector: …`). Nothing was written.
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// The body is larger than the server's `max_request_bytes` (default 64 MiB): send
    /// smaller batches.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body was not sent with `Content-Type: application/json`.
    #[response(status = 415)]
    NotJson(ErrorBody),
}

/// The errors of a request that reads the catalog, object storage, coordination or
/// another node.
#[derive(IntoResponses)]
pub enum ServerErrors {
    /// An unexpected failure (a bug, or object storage answering nonsense); `error.message`
    /// says what.
    #[response(status = 500)]
    Internal(ErrorBody),
    /// Temporarily unavailable: object storage or etcd unreachable, a shard's writer or
    /// replicas moving, the node stopping. Retry after `Retry-After` seconds.
    #[response(status = 503, headers(("Retry-After" = u64, description = "seconds to wait before retrying")))]
    Unavailable(ErrorBody),
}

/// The errors an upsert, delete or update adds to [`ServerErrors`] (list it after them: its
/// 503 says more than theirs).
#[derive(IntoResponses)]
pub enum WriteErrors {
    /// A shard's unflushed backlog is over its bound; retry after `Retry-After` seconds.
    /// Parts of other shards may have been committed: see `error.committed_shards` /
    /// `error.committed_ids`.
    #[response(status = 429, headers(("Retry-After" = u64, description = "seconds to wait before retrying")))]
    Backlog(ErrorBody),
    /// A shard's writer is unavailable (handover, lost lease, node stopping, object storage
    /// or etcd unreachable); retry after `Retry-After` seconds. Parts of other shards may
    /// have been committed: see `error.committed_shards` / `error.committed_ids`.
    #[response(status = 503, headers(("Retry-After" = u64, description = "seconds to wait before retrying")))]
    Unavailable(ErrorBody),
    /// The server's storage is full (`insufficient_storage`): nothing of this request was
    /// acknowledged; retry once space is freed.
    #[response(status = 507)]
    StorageFull(ErrorBody),
}
