//! `strata-types`: the vocabulary every Strata crate shares, and nothing else.
//!
//! - [`error`]: [`Error`] with an [`ErrorKind`] (invalid, not found, conflict, overloaded,
//!   retryable, internal) that callers and the HTTP edge act on without reading messages;
//! - [`consistency`]: how fresh a read must be ([`Consistency`]);
//! - [`integer`]: integers in JSON requests, integral floats (`85.0`) included;
//! - [`model`]: collections, rows, ids and metrics, with their validation (re-exported at
//!   the root);
//! - [`filter`]: the attribute filter language: parsing, the type check against a
//!   collection's attribute types, and the reference evaluator;
//! - [`time`]: the injected [`Clock`](time::Clock) (wall time, monotonic time, sleeping) with
//!   a system and a manual implementation;
//! - [`random`]: the injected, seedable [`Random`](random::Random);
//! - [`metrics`]: the process's Prometheus registry, on which every component registers its
//!   own metrics.
//!
//! It depends on no other Strata crate and does no I/O.

pub mod consistency;
pub mod error;
pub mod filter;
pub mod integer;
pub mod metrics;
pub mod model;
pub mod random;
pub mod time;

pub use consistency::Consistency;
pub use error::{Committed, Error, ErrorKind, Result};
pub use model::*;
