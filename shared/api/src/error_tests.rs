use axum::http::StatusCode;
use axum::http::header::RETRY_AFTER;
use axum::response::IntoResponse;
use strata_types::Error;

use super::{ApiError, RETRY_AFTER_S};

/// A 503 (e.g. etcd unreachable for a write) and a 429 tell clients when to come back;
/// other errors do not.
#[test]
fn unavailable_and_overloaded_answers_carry_retry_after() {
    let cases = [
        (Error::retryable("etcd request failed"), StatusCode::SERVICE_UNAVAILABLE, true),
        (Error::overloaded("backlog"), StatusCode::TOO_MANY_REQUESTS, true),
        (Error::not_found("nope"), StatusCode::NOT_FOUND, false),
        (Error::invalid("bad"), StatusCode::BAD_REQUEST, false),
    ];
    for (err, status, retry) in cases {
        let response = ApiError::from(err).into_response();
        assert_eq!(response.status(), status);
        let header = response.headers().get(RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header, retry.then(|| RETRY_AFTER_S.to_string()), "{status}");
    }
}
