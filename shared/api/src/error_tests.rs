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

/// Internal errors, private ones (object paths, OS words) and a full disk answer in plain
/// words with an error id; errors about the request keep their text.
#[test]
fn internals_never_reach_the_client() {
    let disk = std::io::Error::from(std::io::ErrorKind::StorageFull);
    let cases = [
        (
            Error::storage_full("put c/wal/205 failed").with_source(disk),
            StatusCode::INSUFFICIENT_STORAGE,
            "storage is full",
        ),
        (Error::internal("corrupt segment c/seg/7"), StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
        (
            Error::retryable("object store operation on c/wal/9 failed").private(),
            StatusCode::SERVICE_UNAVAILABLE,
            "retry",
        ),
        (Error::not_found("object c/manifest/3").private(), StatusCode::NOT_FOUND, "not found"),
    ];
    for (err, status, plain) in cases {
        let api = ApiError::from(err);
        assert_eq!(api.status, status);
        assert!(api.message.contains(plain) && api.message.contains("error id"), "{}", api.message);
        assert!(!api.message.contains("c/") && !api.message.contains("storage full"), "{}", api.message);
    }
    let public = ApiError::from(Error::invalid("`top_k` must be between 1 and 10000"));
    assert_eq!(public.message, "`top_k` must be between 1 and 10000");
    let public = ApiError::from(Error::retryable("shard 3 is changing writers"));
    assert_eq!(public.message, "shard 3 is changing writers");
}

/// A body that is not a JSON object is refused, even where serde would build the struct
/// from an array of its fields.
#[test]
fn request_bodies_must_be_objects() {
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct AllDefaults {
        #[serde(default)]
        limit: Option<u32>,
    }
    for body in ["[]", " [1]", "3", "\"x\"", "null", "", "  "] {
        let err = super::parse::<AllDefaults>(body.as_bytes()).err().unwrap_or_else(|| panic!("{body:?} accepted"));
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.message.contains("JSON object"), "{body:?}: {}", err.message);
    }
    assert!(super::parse::<AllDefaults>(b" {}").is_ok());
    assert_eq!(super::parse::<AllDefaults>(br#"{"limit": 3}"#).ok().unwrap().0.limit, Some(3));
}
