//! A thin client for the parts of the Strata REST API the bench uses.
//!
//! Server errors (`{"error":{"code","message"}}`) are turned into messages naming the
//! request, the status and the server's own code and message.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use reqwest::StatusCode;
use serde::Serialize;
use serde_json::{Value, json};
use strata_types::Consistency;

use super::data::Metric;

/// The collection the bench creates.
#[derive(Clone, Debug)]
pub(crate) struct CollectionSpec {
    pub(crate) name: String,
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    pub(crate) shards: u32,
    pub(crate) m: u32,
    pub(crate) ef_construction: u32,
    /// Default search ef (`None`: the server's default).
    pub(crate) ef: Option<usize>,
    /// Attribute types declared at creation (`("u", "int")`).
    pub(crate) attributes: Vec<(&'static str, &'static str)>,
}

/// Outcome of one upsert attempt.
pub(crate) enum Upsert {
    /// Acknowledged after this long.
    Acked(Duration),
    /// 429: the server's unflushed backlog is over its bound.
    Throttled,
}

/// One search answer.
pub(crate) struct SearchAnswer {
    /// Result ids in rank order; ids that are not base-row numbers map to `u64::MAX`.
    pub(crate) ids: Vec<u64>,
    pub(crate) took_us: Option<u64>,
}

/// How request bodies carry vectors (`--vector-encoding`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum VectorEncoding {
    /// JSON arrays of numbers.
    #[default]
    Json,
    /// Base64 strings of the little-endian f32 bytes (about 4× smaller, no number parsing).
    Base64,
}

impl VectorEncoding {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            VectorEncoding::Json => "json",
            VectorEncoding::Base64 => "base64",
        }
    }
}

/// A vector as it goes over the wire.
#[derive(Serialize)]
#[serde(untagged)]
pub(crate) enum WireVector<'a> {
    Numbers(&'a [f32]),
    Base64(String),
}

impl<'a> WireVector<'a> {
    pub(crate) fn new(vector: &'a [f32], encoding: VectorEncoding) -> Self {
        match encoding {
            VectorEncoding::Json => WireVector::Numbers(vector),
            VectorEncoding::Base64 => WireVector::Base64(strata_api::vector_encoding::encode_base64_f32(vector)),
        }
    }
}

#[derive(Serialize)]
struct SearchBody<'a> {
    vector: WireVector<'a>,
    top_k: usize,
    /// Absent: the collection's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    ef: Option<usize>,
    consistency: Consistency,
    include_vector: bool,
    include_attributes: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<&'a Value>,
}

/// What one search asks besides the vector.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SearchOptions<'a> {
    pub(crate) top_k: usize,
    /// `None`: the collection's default ef (not sent).
    pub(crate) ef: Option<usize>,
    pub(crate) consistency: Consistency,
    pub(crate) include_attributes: bool,
    pub(crate) filter: Option<&'a Value>,
}

/// The body of a search request.
pub(crate) fn search_body<'a>(
    vector: &'a [f32],
    options: &SearchOptions<'a>,
    encoding: VectorEncoding,
) -> impl Serialize + 'a {
    SearchBody {
        vector: WireVector::new(vector, encoding),
        top_k: options.top_k,
        ef: options.ef,
        consistency: options.consistency,
        include_vector: false,
        include_attributes: options.include_attributes,
        filter: options.filter,
    }
}

/// HTTP client bound to one server.
#[derive(Clone)]
pub(crate) struct Api {
    http: reqwest::Client,
    base: String,
    /// How search requests carry the query vector.
    encoding: VectorEncoding,
    /// Where searches and describes go (`--query-url`; `base` when unset).
    query_base: String,
}

/// Turns a non-success response into an error carrying the server's message.
async fn error_of(what: &str, resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            let code = e.get("code").and_then(Value::as_str).unwrap_or("error");
            let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
            Some(format!("{code}: {msg}"))
        })
        .unwrap_or_else(|| body.chars().take(500).collect());
    anyhow!("{what} failed with HTTP {status}: {detail}")
}

impl Api {
    pub(crate) fn new(url: &str, query_url: Option<&str>, encoding: VectorEncoding) -> Result<Api> {
        let http = crate::client::client_builder()?
            .connect_timeout(Duration::from_secs(10))
            .pool_max_idle_per_host(256)
            .build()
            .context("cannot build the HTTP client")?;
        let base = url.trim_end_matches('/').to_owned();
        let query_base = query_url.map_or_else(|| base.clone(), |u| u.trim_end_matches('/').to_owned());
        Ok(Api { http, base, query_base, encoding })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send_error(&self, what: &str, e: reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            anyhow!("{what}: cannot connect to the Strata server at {} — is it running? ({e})", self.base)
        } else if e.is_timeout() {
            anyhow!("{what}: timed out ({e})")
        } else {
            anyhow!("{what}: {e}")
        }
    }

    async fn get_json(&self, path: &str) -> Result<Value> {
        let what = format!("GET {path}");
        let resp = self.http.get(self.url(path)).timeout(Duration::from_secs(60)).send().await;
        let resp = resp.map_err(|e| self.send_error(&what, e))?;
        if !resp.status().is_success() {
            return Err(error_of(&what, resp).await);
        }
        resp.json().await.with_context(|| format!("{what}: response is not JSON"))
    }

    /// `GET /v1/node`.
    pub(crate) async fn node(&self) -> Result<Value> {
        self.get_json("/v1/node").await
    }

    /// `GET /v1/node` of the node answering searches (`--query-url`, else `--url`).
    pub(crate) async fn query_node(&self) -> Result<Value> {
        let resp = self.http.get(format!("{}/v1/node", self.query_base)).send().await;
        let resp = resp.map_err(|e| self.send_error("GET /v1/node", e))?;
        if !resp.status().is_success() {
            return Err(error_of("GET /v1/node", resp).await);
        }
        resp.json().await.context("the node description is not JSON")
    }

    /// The CPU seconds the searching node's process has used so far (`None` if it does
    /// not report them).
    pub(crate) async fn server_cpu_seconds(&self) -> Option<f64> {
        self.query_node().await.ok()?.get("cpu_seconds")?.as_f64()
    }

    /// `GET /v1/collections/{name}`; `None` when it does not exist.
    pub(crate) async fn describe(&self, name: &str) -> Result<Option<Value>> {
        let path = format!("/v1/collections/{name}");
        let resp = self.http.get(format!("{}{path}", self.query_base)).timeout(Duration::from_secs(60)).send().await;
        let resp = resp.map_err(|e| self.send_error(&format!("GET {path}"), e))?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(resp.json().await.context("collection description is not JSON")?)),
            _ => Err(error_of(&format!("GET {path}"), resp).await),
        }
    }

    /// `DELETE /v1/collections/{name}`; true if it existed.
    pub(crate) async fn drop_collection(&self, name: &str) -> Result<bool> {
        let what = format!("DELETE /v1/collections/{name}");
        let resp = self.http.delete(self.url(&format!("/v1/collections/{name}"))).send().await;
        let resp = resp.map_err(|e| self.send_error(&what, e))?;
        match resp.status() {
            StatusCode::NOT_FOUND => Ok(false),
            s if s.is_success() => Ok(true),
            _ => Err(error_of(&what, resp).await),
        }
    }

    /// `POST /v1/collections`.
    pub(crate) async fn create_collection(&self, spec: &CollectionSpec) -> Result<()> {
        let mut hnsw = json!({"m": spec.m, "ef_construction": spec.ef_construction});
        if let Some(ef) = spec.ef {
            hnsw["ef"] = json!(ef);
        }
        let mut body = json!({
            "name": spec.name,
            "dimension": spec.dim,
            "metric": spec.metric.as_str(),
            "shards": spec.shards,
            "hnsw": hnsw,
        });
        if !spec.attributes.is_empty() {
            let types: serde_json::Map<String, Value> =
                spec.attributes.iter().map(|&(name, ty)| (name.to_owned(), json!(ty))).collect();
            body["attributes"] = Value::Object(types);
        }
        let what = "POST /v1/collections";
        let resp = self.http.post(self.url("/v1/collections")).json(&body).send().await;
        let resp = resp.map_err(|e| self.send_error(what, e))?;
        if !resp.status().is_success() {
            return Err(error_of(what, resp).await);
        }
        Ok(())
    }

    /// One `POST /upsert` attempt with a pre-serialised body.
    pub(crate) async fn upsert(&self, name: &str, body: Vec<u8>) -> Result<Upsert> {
        let what = format!("POST /v1/collections/{name}/upsert");
        let started = Instant::now();
        let resp = self
            .http
            .post(self.url(&format!("/v1/collections/{name}/upsert")))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(Duration::from_secs(300))
            .body(body)
            .send()
            .await
            .map_err(|e| self.send_error(&what, e))?;
        match resp.status() {
            StatusCode::TOO_MANY_REQUESTS => {
                let _ = resp.bytes().await;
                Ok(Upsert::Throttled)
            }
            s if s.is_success() => {
                resp.bytes().await.with_context(|| format!("{what}: reading the response"))?;
                Ok(Upsert::Acked(started.elapsed()))
            }
            _ => Err(error_of(&what, resp).await),
        }
    }

    /// `POST /flush`: returns once every acknowledged write is in segments.
    pub(crate) async fn flush(&self, name: &str) -> Result<Value> {
        let what = format!("POST /v1/collections/{name}/flush");
        let resp = self
            .http
            .post(self.url(&format!("/v1/collections/{name}/flush")))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body("{}")
            .send()
            .await
            .map_err(|e| self.send_error(&what, e))?;
        if !resp.status().is_success() {
            return Err(error_of(&what, resp).await);
        }
        let text = resp.text().await.unwrap_or_default();
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `POST /search`.
    pub(crate) async fn search(
        &self,
        name: &str,
        vector: &[f32],
        top_k: usize,
        ef: usize,
        consistency: Consistency,
    ) -> Result<SearchAnswer> {
        let options = SearchOptions { top_k, ef: Some(ef), consistency, include_attributes: false, filter: None };
        let v = self.search_with(name, vector, &options).await?;
        answer_of(name, &v)
    }

    /// `POST /search` with every option; the response as JSON.
    pub(crate) async fn search_with(&self, name: &str, vector: &[f32], options: &SearchOptions<'_>) -> Result<Value> {
        let body = search_body(vector, options, self.encoding);
        self.post(&self.query_base, &format!("/v1/collections/{name}/search"), &body, Duration::from_secs(120)).await
    }

    /// `POST {path}` with a JSON body to the node answering reads (`query`) or writes;
    /// the response as JSON.
    pub(crate) async fn post_json(&self, path: &str, body: &Value, query: bool) -> Result<Value> {
        let base = if query { &self.query_base } else { &self.base };
        self.post(base, path, body, Duration::from_secs(600)).await
    }

    async fn post(&self, base: &str, path: &str, body: &impl Serialize, timeout: Duration) -> Result<Value> {
        let what = format!("POST {path}");
        let resp = self
            .http
            .post(format!("{base}{path}"))
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|e| self.send_error(&what, e))?;
        if !resp.status().is_success() {
            return Err(error_of(&what, resp).await);
        }
        resp.json().await.with_context(|| format!("{what}: response is not JSON"))
    }
}

/// The id of a result row as a base-row number (`u64::MAX` if it is not one).
pub(crate) fn result_id(row: &Value) -> u64 {
    match row.get("id") {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(u64::MAX),
        Some(Value::String(s)) => s.parse().unwrap_or(u64::MAX),
        _ => u64::MAX,
    }
}

/// The ids and server time of a search response.
pub(crate) fn answer_of(name: &str, v: &Value) -> Result<SearchAnswer> {
    let Some(results) = v.get("results").and_then(Value::as_array) else {
        bail!("POST /v1/collections/{name}/search: response has no 'results' array: {v}");
    };
    let ids = results.iter().map(result_id).collect();
    Ok(SearchAnswer { ids, took_us: v.get("took_us").and_then(Value::as_u64) })
}

/// Live rows and unflushed WAL entries from a collection description (tolerant of missing
/// fields).
pub(crate) fn stats_summary(desc: &Value) -> (Option<u64>, Option<u64>, Option<u64>) {
    let stats = desc.get("stats");
    let rows = stats.and_then(|s| s.get("rows")).and_then(Value::as_u64);
    let segments = stats.and_then(|s| s.get("segments")).and_then(Value::as_u64);
    let backlog = stats
        .and_then(|s| s.get("shards"))
        .and_then(Value::as_array)
        .map(|shards| shards.iter().filter_map(|s| s.get("wal_backlog_entries").and_then(Value::as_u64)).sum::<u64>());
    (rows, segments, backlog)
}
