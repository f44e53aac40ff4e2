//! Browser-facing guards of the REST edge: which `Host` headers are served, and CORS.
//!
//! - **Allowed hosts** defend a server on loopback against DNS rebinding: a web page on
//!   `evil.example` whose name is made to resolve to 127.0.0.1 could otherwise drive the
//!   local API from the victim's browser. A request whose `Host` is not allowed gets 400
//!   (`invalid_host`). Default: a node listening on loopback serves `localhost`,
//!   `127.0.0.1` and `[::1]` only; a node listening beyond loopback serves any host (its
//!   names are not known here; it has API keys). `allowed_hosts = [...]` replaces the
//!   default; `"*"` allows any.
//! - **Long URIs** (over [`MAX_URI_BYTES`]) get a JSON 414 stating the limit. hyper
//!   refuses URIs over 64 KiB itself, before any of this runs, with an empty 414; the
//!   lower limit here means every URI a client can send gets the JSON answer below that.
//! - **CORS** is off by default (no `Access-Control-*` headers: browsers keep other
//!   origins out). `cors_origins = ["https://app.example"]` (or `["*"]`) lets those
//!   origins call the API, `Authorization` header included.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use strata_api::ApiError;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// `[http]`: what browsers may do with this node's REST API.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeConfig {
    /// Host names (without port) requests may be addressed to; `"*"`: any. Default:
    /// `localhost`, `127.0.0.1`, `[::1]` when listening on loopback, else any.
    pub allowed_hosts: Vec<String>,
    /// Origins allowed to call the API from a browser (CORS), e.g.
    /// `"https://app.example"`; `"*"`: any. Default: none (CORS off).
    pub cors_origins: Vec<String>,
}

/// The hosts a node listening on `listen` serves (`None`: any).
#[derive(Clone, Debug)]
pub struct AllowedHosts(Option<Arc<[String]>>);

impl AllowedHosts {
    pub fn new(config: &EdgeConfig, listen: SocketAddr) -> AllowedHosts {
        let names: Vec<String> = if config.allowed_hosts.is_empty() {
            if !listen.ip().is_loopback() {
                return AllowedHosts(None);
            }
            ["localhost", "127.0.0.1", "[::1]"].map(str::to_owned).to_vec()
        } else {
            config.allowed_hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
        };
        if names.iter().any(|h| h == "*") {
            return AllowedHosts(None);
        }
        AllowedHosts(Some(names.into()))
    }

    /// Whether a `Host` header value (name, optional port) is served. A request without
    /// one (HTTP/1.0, or HTTP/2 without `:authority`) is not from a browser: served.
    fn allows(&self, host: Option<&str>) -> bool {
        let (Some(names), Some(host)) = (&self.0, host) else { return true };
        let name = host_name(host);
        names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// The name part of a `Host` value: `[::1]:7700` → `[::1]`, `localhost:7700` → `localhost`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    host.rsplit_once(':').map_or(host, |(name, _port)| name)
}

/// Longest request URI (path and query) served: as nginx's default header buffer. No
/// route needs more; collection names are at most 64 characters and ids travel in bodies.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Refuses URIs longer than [`MAX_URI_BYTES`] with a JSON 414.
pub async fn check_uri_length(req: Request, next: Next) -> Response {
    let len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if len <= MAX_URI_BYTES {
        return next.run(req).await;
    }
    ApiError::new(
        StatusCode::URI_TOO_LONG,
        "uri_too_long",
        format!("the request URI is {len} bytes; the limit is {MAX_URI_BYTES}"),
    )
    .into_response()
}

/// Refuses requests addressed to a host this node does not serve.
pub async fn check_host(State(allowed): State<AllowedHosts>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()));
    if allowed.allows(host) {
        return next.run(req).await;
    }
    let host = host.unwrap_or_default().to_owned();
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_host",
        format!("this node does not serve host `{host}`: add it to `http.allowed_hosts` (docs/configuration.md)"),
    )
    .into_response()
}

/// The CORS layer for `config`, or `None` when CORS is off.
pub fn cors(config: &EdgeConfig) -> Result<Option<CorsLayer>, String> {
    if config.cors_origins.is_empty() {
        return Ok(None);
    }
    let origins = if config.cors_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let parsed: Result<Vec<HeaderValue>, _> = config
            .cors_origins
            .iter()
            .map(|o| HeaderValue::from_str(o.trim_end_matches('/')).map_err(|_| format!("invalid CORS origin `{o}`")))
            .collect();
        AllowOrigin::list(parsed?)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::HEAD])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT])
            .max_age(std::time::Duration::from_secs(600)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(list: &[&str], listen: &str) -> AllowedHosts {
        let config =
            EdgeConfig { allowed_hosts: list.iter().map(|h| h.to_string()).collect(), ..EdgeConfig::default() };
        AllowedHosts::new(&config, listen.parse().unwrap())
    }

    #[test]
    fn loopback_serves_local_names_only_by_default() {
        let local = hosts(&[], "127.0.0.1:7700");
        for ok in ["localhost:7700", "127.0.0.1:7700", "[::1]:7700", "LOCALHOST", "127.0.0.1"] {
            assert!(local.allows(Some(ok)), "{ok}");
        }
        for bad in ["evil.example", "evil.example:7700", "localhost.evil.example:7700", "[::2]:7700"] {
            assert!(!local.allows(Some(bad)), "{bad}");
        }
        assert!(local.allows(None));
        assert!(hosts(&[], "0.0.0.0:7700").allows(Some("evil.example")), "beyond loopback: any host");
    }

    #[test]
    fn a_configured_list_replaces_the_default() {
        let listed = hosts(&["strata.internal", "10.0.0.5"], "0.0.0.0:7700");
        assert!(listed.allows(Some("strata.internal:7700")) && listed.allows(Some("10.0.0.5")));
        assert!(!listed.allows(Some("localhost:7700")));
        assert!(hosts(&["*"], "127.0.0.1:7700").allows(Some("anything:1")));
    }

    #[test]
    fn cors_is_off_unless_origins_are_listed() {
        assert!(cors(&EdgeConfig::default()).unwrap().is_none());
        let config = EdgeConfig { cors_origins: vec!["https://app.example/".into()], ..EdgeConfig::default() };
        assert!(cors(&config).unwrap().is_some());
        let bad = EdgeConfig { cors_origins: vec!["https://bad\norigin".into()], ..EdgeConfig::default() };
        assert!(cors(&bad).unwrap_err().contains("invalid CORS origin"));
    }
}
