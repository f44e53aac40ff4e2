//! The REST edge's browser guards on a standalone router: `Host` headers a loopback node
//! does not serve are refused (DNS rebinding), and CORS is off unless origins are listed.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use tower::ServiceExt;

async fn send(t: &common::TestServer, req: Request<Body>) -> axum::response::Response {
    t.server.router.clone().oneshot(req).await.unwrap()
}

#[tokio::test]
async fn a_loopback_node_refuses_foreign_host_headers() {
    let t = common::start(|_| {}).await;
    let (status, body) = t
        .raw(Request::get("/v1/collections").header(header::HOST, "evil.example:7700").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_host", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("http.allowed_hosts"), "{body}");
    for host in ["localhost:7700", "127.0.0.1:7700", "[::1]:7700"] {
        let (status, body) =
            t.raw(Request::get("/v1/collections").header(header::HOST, host).body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{host}: {body}");
    }

    let t = common::start(|c| c.http.allowed_hosts = vec!["strata.internal".into()]).await;
    let ok =
        t.raw(Request::get("/healthz").header(header::HOST, "strata.internal:7700").body(Body::empty()).unwrap()).await;
    assert_eq!(ok.0, StatusCode::OK);
    let refused =
        t.raw(Request::get("/healthz").header(header::HOST, "localhost:7700").body(Body::empty()).unwrap()).await;
    assert_eq!(refused.0, StatusCode::BAD_REQUEST, "a configured list replaces the default");
}

#[tokio::test]
async fn a_uri_over_the_limit_gets_a_json_414_that_states_it() {
    let t = common::start(|_| {}).await;
    let long = format!("/v1/collections/{}", "a".repeat(strata::edge::MAX_URI_BYTES));
    let (status, body) = t.raw(Request::get(&long).body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::URI_TOO_LONG);
    assert_eq!(body["error"]["code"], "uri_too_long", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("the limit is {}", strata::edge::MAX_URI_BYTES)), "{message}");
    // At the limit: served (here, an unknown collection).
    let at_limit = format!("/v1/collections/{}", "a".repeat(strata::edge::MAX_URI_BYTES - "/v1/collections/".len()));
    assert_eq!(t.raw(Request::get(&at_limit).body(Body::empty()).unwrap()).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cors_headers_only_for_listed_origins() {
    let preflight = |origin: &str| {
        Request::builder()
            .method("OPTIONS")
            .uri("/v1/collections/docs/search")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization,content-type")
            .body(Body::empty())
            .unwrap()
    };
    let off = common::start(|_| {}).await;
    let response = send(&off, preflight("https://app.example")).await;
    assert!(response.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "CORS is off by default");

    let on = common::start(|c| c.http.cors_origins = vec!["https://app.example".into()]).await;
    let response = send(&on, preflight("https://app.example")).await;
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
    let allowed = response.headers()[header::ACCESS_CONTROL_ALLOW_HEADERS].to_str().unwrap().to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    let get =
        Request::get("/v1/collections").header(header::ORIGIN, "https://app.example").body(Body::empty()).unwrap();
    let response = send(&on, get).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example");
    let response = send(&on, preflight("https://evil.example")).await;
    assert!(response.headers().get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none(), "an unlisted origin");
}
