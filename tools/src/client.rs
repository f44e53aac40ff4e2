//! A small REST client for the data tools: JSON calls with clear errors, and retries with
//! backoff on 429 / 503 / connection failures. Every request carries the API key from
//! `STRATA_API_KEY`, if set.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::StatusCode;
use serde_json::Value;

#[derive(Clone)]
pub struct Rest {
    http: reqwest::Client,
    pub base: String,
}

/// A failed call: HTTP status (if any) and message.
#[derive(Debug)]
pub struct CallError {
    pub status: Option<StatusCode>,
    pub message: String,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "{s}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

impl std::error::Error for CallError {}

impl CallError {
    fn retryable(&self) -> bool {
        match self.status {
            None => true,
            Some(s) => {
                s == StatusCode::TOO_MANY_REQUESTS
                    || s == StatusCode::SERVICE_UNAVAILABLE
                    || s == StatusCode::BAD_GATEWAY
            }
        }
    }
}

/// The environment variable the tools read an API key from.
pub const API_KEY_ENV: &str = "STRATA_API_KEY";
/// The environment variable naming a PEM file of CA certificates to trust (beside the
/// system's) for `https://` URLs, e.g. a node's self-signed or private-CA certificate.
pub const CA_FILE_ENV: &str = "STRATA_CA_FILE";

/// A client builder with what every tool sends and trusts: the API key
/// ([`auth_headers`]) and the CAs of [`CA_FILE_ENV`].
pub fn client_builder() -> Result<reqwest::ClientBuilder> {
    let mut builder = reqwest::Client::builder().default_headers(auth_headers()?);
    if let Some(path) = std::env::var_os(CA_FILE_ENV).filter(|p| !p.is_empty()) {
        let pem = std::fs::read(&path)
            .with_context(|| format!("{CA_FILE_ENV}: cannot read {}", std::path::Path::new(&path).display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).with_context(|| {
            format!("{CA_FILE_ENV}: {} holds no PEM certificate", std::path::Path::new(&path).display())
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    Ok(builder)
}

/// `Authorization: Bearer $STRATA_API_KEY` when that is set, for every request a tool
/// makes (servers without keys ignore it).
fn auth_headers() -> Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = std::env::var(API_KEY_ENV).ok().map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()) {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| anyhow!("{API_KEY_ENV} holds characters an HTTP header cannot carry"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(headers)
}

impl Rest {
    pub fn new(url: &str) -> Result<Rest> {
        let http = client_builder()?
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Rest { http, base: url.trim_end_matches('/').to_owned() })
    }

    /// One call; `body` is a JSON document already serialised.
    pub async fn call(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> Result<Value, CallError> {
        let url = format!("{}{path}", self.base);
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("valid method");
        let mut req = self.http.request(method.clone(), &url).timeout(Duration::from_secs(600));
        if let Some(b) = body {
            req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b);
        }
        let resp = req.send().await.map_err(|e| CallError {
            status: None,
            message: if e.is_connect() {
                format!("{method} {path}: cannot connect to the Strata server at {} — is it running? ({e})", self.base)
            } else {
                format!("{method} {path}: {e}")
            },
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.get("message").or(Some(e))).cloned())
                .map(|m| m.as_str().map_or_else(|| m.to_string(), str::to_owned))
                .unwrap_or(text);
            return Err(CallError { status: Some(status), message: format!("{method} {path}: {message}") });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `call` with retries on 429 / 502 / 503 / transport failures (exponential backoff,
    /// 100 ms doubling to 5 s, about two minutes in all).
    pub async fn call_retrying(&self, method: &str, path: &str, body: Vec<u8>) -> Result<Value, CallError> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            match self.call(method, path, Some(body.clone())).await {
                Ok(v) => return Ok(v),
                Err(e) if e.retryable() && attempt < 30 => {
                    attempt += 1;
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call("GET", path, None).await.map_err(|e| anyhow!(e))
    }

    /// `GET /v1/collections/{name}`, `None` if it does not exist.
    pub async fn describe(&self, name: &str) -> Result<Option<Value>> {
        match self.call("GET", &format!("/v1/collections/{name}"), None).await {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status == Some(StatusCode::NOT_FOUND) => Ok(None),
            Err(e) => Err(anyhow!(e)),
        }
    }
}

/// The fields of a collection description the tools need.
#[derive(Debug, Clone)]
pub struct CollectionMeta {
    pub id: String,
    pub dimension: usize,
    pub shards: u32,
}

pub fn collection_meta(desc: &Value) -> Result<CollectionMeta> {
    let (Some(id), Some(dimension), Some(shards)) = (
        desc.get("id").and_then(Value::as_str),
        desc.get("dimension").and_then(Value::as_u64),
        desc.get("shards").and_then(Value::as_u64),
    ) else {
        bail!("unexpected collection description: {desc}");
    };
    Ok(CollectionMeta { id: id.to_owned(), dimension: dimension as usize, shards: shards as u32 })
}
