//! The HTTP edge shared by every role's REST API: one error type and a JSON extractor
//! whose rejections are JSON errors too.
//!
//! Every error response is `{"error": {"code": "...", "message": "..."}}` with a status
//! from the error's kind: invalid → 400 (`invalid_argument`), not found → 404, conflict →
//! 409, overloaded → 429 (`resource_exhausted`), retryable → 503 (`unavailable`),
//! internal → 500, storage full → 507 (`insufficient_storage`). Errors whose text speaks of
//! internals (object paths, OS or library words) answer in plain words with an error id
//! that finds the text in the log. Malformed JSON and wrong content types are 400/415 with
//! the parser's explanation ([`ApiJson`]), a malformed query string a 400 ([`ApiQuery`]).
//! A write split across shards that failed after some shards' parts were
//! committed lists them in `committed_shards` and `committed_ids`. A 503 or 429 carries
//! `Retry-After` ([`RETRY_AFTER_S`]): both are worth retrying as they are.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

use strata_types::{Committed, Error, ErrorKind, RowId};

/// `Retry-After` of a 503 or 429, in seconds. The causes of a 503 (a writer handover, a
/// lost lease, etcd unreachable, a node stopping) clear within a second or two when they
/// clear at all, so clients should come back soon; one second is also what the test
/// writers' backoff starts near.
pub const RETRY_AFTER_S: u64 = 1;

/// The error body of every failed request.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: `invalid_argument` (400, also `invalid_host`),
    /// `unauthenticated` (401), `permission_denied` (403), `not_found` (404),
    /// `method_not_allowed` (405), `already_exists` (409), `payload_too_large` (413),
    /// `unsupported_media_type` (415), `resource_exhausted` (429), `internal` (500),
    /// `unavailable` (503), `insufficient_storage` (507).
    pub code: String,
    /// What is wrong, for humans.
    pub message: String,
    /// Only on a failed multi-shard upsert, delete or update of which some shards' parts
    /// were committed (each shard's part is atomic): those shards, ascending. Their rows
    /// are durable; the other shards' parts were not acknowledged. Retrying the whole
    /// request is safe (upserts, deletes and attribute updates are idempotent), or retry
    /// only the rows not in `committed_ids`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_shards: Option<Vec<u32>>,
    /// With `committed_shards`: the ids of the rows in those parts (empty when rows were
    /// selected by a filter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed_ids: Option<Vec<RowId>>,
}

/// An error on its way to becoming an HTTP response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// What a failed multi-shard write committed (see [`ErrorDetail::committed_shards`]).
    pub committed: Option<Committed>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), committed: None }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }
}

impl From<Error> for ApiError {
    /// The response for `err`. Its text goes to the client only when it is about the
    /// request and says nothing of internals; otherwise (an internal error, a private one:
    /// object paths, OS or library words, a full disk) the client gets plain words and an
    /// error id, and the log gets the text under that id.
    fn from(err: Error) -> Self {
        let (status, code, plain) = match err.kind() {
            ErrorKind::Invalid => (StatusCode::BAD_REQUEST, "invalid_argument", "the request cannot be served"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found", "not found"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "already_exists", "a concurrent change won; retry"),
            ErrorKind::Overloaded => (StatusCode::TOO_MANY_REQUESTS, "resource_exhausted", "overloaded; retry later"),
            ErrorKind::Retryable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "temporarily unavailable; retry"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error"),
            ErrorKind::StorageFull => (
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                "the server's storage is full: nothing of this request was acknowledged; retry once space is freed",
            ),
        };
        let private = err.is_private() || matches!(err.kind(), ErrorKind::Internal | ErrorKind::StorageFull);
        let message = if private {
            let id = ERROR_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(error_id = id, status = status.as_u16(), error = %err, "request failed");
            format!("{plain} (error id {id}: the server log has the details)")
        } else {
            if status.is_server_error() {
                tracing::warn!(status = status.as_u16(), error = %err, "request failed");
            }
            err.to_string()
        };
        let committed = err.committed().cloned();
        Self { committed, ..Self::new(status, code, message) }
    }
}

/// Ids that tie an error response to its log line (unique within a process's life; the
/// log line's time and node tell processes apart).
static ERROR_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a request body with `Content-Type: application/json`",
            ),
            other => Self::invalid(format!("malformed JSON body: {}", other.body_text())),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (committed_shards, committed_ids) = match self.committed {
            Some(Committed { shards, ids }) => (Some(shards), Some(ids)),
            None => (None, None),
        };
        let error = ErrorDetail { code: self.code.to_owned(), message: self.message, committed_shards, committed_ids };
        let body = ErrorBody { error };
        let mut response = (self.status, Json(body)).into_response();
        if matches!(self.status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS) {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(RETRY_AFTER_S));
        }
        response
    }
}

/// The request body limit the server enforces, in bytes: a request extension set where the
/// limit is configured, so the 413 can state it.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// `Json<T>` whose rejections are [`ApiError`]s.
///
/// Bodies are parsed with plain `serde_json` (axum's extractor tracks the path of every
/// element, which costs about as much as parsing itself on large upserts); only a body
/// that fails is parsed again with path tracking, so the error still names the field.
/// Bodies of [`BLOCKING_PARSE_BYTES`] or more are parsed in `block_in_place` on a
/// multi-threaded runtime, so a large parse does not stall the tasks queued behind it.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a request body with `Content-Type: application/json`",
            ));
        }
        let limit = req.extensions().get::<BodyLimit>().map(|l| l.0);
        let body = Bytes::from_request(req, state).await.map_err(|e| match e.status() {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                match limit {
                    Some(bytes) => format!(
                        "the request body is larger than this server's limit of {bytes} bytes \
                         (`max_request_bytes`); send smaller batches"
                    ),
                    None => "the request body is larger than this server's limit; send smaller batches".to_owned(),
                },
            ),
            _ => ApiError::invalid(format!("cannot read the request body: {}", e.body_text())),
        })?;
        if body.len() >= BLOCKING_PARSE_BYTES && on_multi_thread_runtime() {
            // A multi-megabyte body takes milliseconds to parse: tell the runtime this
            // worker is busy so its other tasks (acks, searches) move to another worker.
            tokio::task::block_in_place(|| parse(&body))
        } else {
            parse(&body)
        }
    }
}

/// Bodies at least this large are parsed inside `tokio::task::block_in_place`. Below it a
/// parse takes well under a millisecond and handing the worker off would cost more.
pub const BLOCKING_PARSE_BYTES: usize = 256 * 1024;

/// `block_in_place` panics on a current-thread runtime (as `#[tokio::test]` uses).
fn on_multi_thread_runtime() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
}

/// Parses a JSON body into `T`; on failure, names the offending field.
///
/// Every request body is a JSON object: serde would also build a struct from an array of
/// its fields in order (`[]` for one whose fields all have defaults), which the API does
/// not offer, so anything but an object is refused first.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<ApiJson<T>, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => {}
        Some(_) => return Err(ApiError::invalid("malformed JSON body: the request body must be a JSON object")),
        None => return Err(ApiError::invalid("malformed JSON body: the request body is empty; send a JSON object")),
    }
    match serde_json::from_slice(body) {
        Ok(value) => Ok(ApiJson(value)),
        Err(_) => {
            let mut de = serde_json::Deserializer::from_slice(body);
            let err = match serde_path_to_error::deserialize::<_, T>(&mut de) {
                Err(e) if e.path().iter().next().is_some() => format!("at {}: {}", e.path(), e.inner()),
                Err(e) => e.inner().to_string(),
                Ok(_) => "invalid JSON".to_owned(),
            };
            Err(ApiError::invalid(format!("malformed JSON body: {err}")))
        }
    }
}

/// `Query<T>` whose rejections are [`ApiError`]s: a 400 naming the parameter, like a
/// bad body.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(ApiError::invalid(format!("malformed query string: {}", rejection.body_text()))),
        }
    }
}

/// Handlers return this.
pub type ApiResult<T> = std::result::Result<T, ApiError>;

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
