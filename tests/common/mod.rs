//! Helpers shared by the integration tests: an in-process standalone server driven through
//! its router, and JSON request helpers.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use strata::config::Config;
use strata::standalone::Standalone;
use tower::ServiceExt;

pub struct TestServer {
    pub server: Standalone,
    pub dir: tempfile::TempDir,
}

/// Starts a standalone server on a fresh data directory. `tune` adjusts the config.
pub async fn start(tune: impl FnOnce(&mut Config)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let server = Standalone::start(config_for(dir.path(), tune)).await.unwrap();
    TestServer { server, dir }
}

fn config_for(data_dir: &std::path::Path, tune: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config { data_dir: data_dir.to_path_buf(), ..Default::default() };
    config.cache.memory_bytes = 64 << 20;
    config.cache.disk_bytes = 64 << 20;
    tune(&mut config);
    config
}

impl TestServer {
    /// Stops the server and starts a new one on the same data directory.
    pub async fn restart(self, tune: impl FnOnce(&mut Config)) -> TestServer {
        let TestServer { server, dir } = self;
        server.stop().await;
        let server = Standalone::start(config_for(dir.path(), tune)).await.unwrap();
        TestServer { server, dir }
    }

    /// Sends a request; returns the status and the JSON body (Null if empty/not JSON).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let builder = Request::builder().method(method).uri(path);
        let req = match body {
            Some(b) => builder.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
            None => builder.body(Body::empty()).unwrap(),
        };
        self.raw(req).await
    }

    pub async fn raw(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.server.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, path, body).await;
        assert!(status.is_success(), "{method} {path} -> {status}: {v}");
        v
    }

    pub async fn create(&self, name: &str, dim: usize, metric: &str) {
        let (status, v) = self
            .call(
                "POST",
                "/v1/collections",
                Some(json!({"name": name, "dimension": dim, "metric": metric, "shards": 2})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
    }

    pub async fn rows(&self, name: &str) -> u64 {
        self.ok("GET", &format!("/v1/collections/{name}"), None).await["stats"]["rows"].as_u64().unwrap()
    }
}
