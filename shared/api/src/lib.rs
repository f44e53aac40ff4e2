//! `strata-api`: the HTTP API edge shared by every role's REST routes.
//!
//! - the request and response types of the REST API ([`collections`], [`writes`],
//!   [`reads`]), whose serde form is the public contract and whose `utoipa` schemas make
//!   the OpenAPI document (the routes, with their `#[utoipa::path]` docs, live with the
//!   roles that serve them);
//! - the two wire forms of a request vector ([`vector_encoding`]);
//! - [`ApiError`], the one error every failed request becomes (`{"error": {"code",
//!   "message"}}` with a status from the error's kind), and [`ApiJson`], the JSON
//!   extractor whose rejections are `ApiError`s too (and [`ApiQuery`] for query strings);
//! - [`openapi`]: the error responses every operation of the OpenAPI document shares;
//! - [`Access`], the caller's API key as the authentication layer found it.
//!
//! Below the edge every crate speaks `strata_types::Error`; this is the only place that
//! knows about HTTP statuses.

mod access;
pub mod collections;
mod error;
pub mod openapi;
pub mod reads;
pub mod vector_encoding;
pub mod writes;

pub use access::Access;
pub use collections::*;
pub use error::{ApiError, ApiJson, ApiQuery, ApiResult, BLOCKING_PARSE_BYTES, BodyLimit, ErrorBody, ErrorDetail};
pub use reads::*;
pub use writes::*;
