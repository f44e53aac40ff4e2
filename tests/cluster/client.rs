//! A small JSON-over-HTTP client for the cluster tests, and the test data.
//!
//! Plain calls ([`Api::call`], [`Api::get_ok`], [`Api::post_ok`]) never retry: a test that
//! is not about availability must see every error. [`Api::post_retrying`] retries 503 / 429
//! and transport errors and is used only where a test is about availability.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Vector dimension of every test collection.
pub const DIM: usize = 8;

#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
}

impl Default for Api {
    fn default() -> Self {
        Self::new()
    }
}

impl Api {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        Self { client }
    }

    /// One request; the status and the JSON body (Null when empty or not JSON), or the
    /// transport error.
    pub async fn call(&self, method: &str, url: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        self.call_within(method, url, body, Duration::from_secs(10)).await
    }

    /// [`Api::call`] with its own bound on the whole request.
    pub async fn call_within(
        &self,
        method: &str,
        url: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(u16, Value), String> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.client.request(method, url).timeout(timeout);
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| format!("{url}: reading body: {e}"))?;
        Ok((status, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
    }

    pub async fn get_ok(&self, url: &str) -> Value {
        match self.call("GET", url, None).await {
            Ok((200, body)) => body,
            other => panic!("GET {url} failed: {other:?}"),
        }
    }

    pub async fn post_ok(&self, url: &str, body: &Value) -> Value {
        match self.call("POST", url, Some(body)).await {
            Ok((status, resp)) if (200..300).contains(&status) => resp,
            other => panic!("POST {url} failed: {other:?}"),
        }
    }

    /// POSTs `path` to the nodes `targets()` names (asked again before every attempt, so a
    /// test can redirect writes), rotating over them, until one answers 2xx; retries 503,
    /// 429 and transport errors (each attempt bounded by 3 s, so a paused node is given up
    /// on like a dead one) with backoff until `deadline`. Any other status panics.
    /// Returns the body of the success, or the last error once the deadline passed.
    pub async fn post_retrying(
        &self,
        targets: &(dyn Fn() -> Vec<String> + Sync),
        path: &str,
        body: &Value,
        deadline: Instant,
    ) -> Result<Value, String> {
        let mut backoff = Duration::from_millis(20);
        for attempt in 0usize.. {
            let urls = targets();
            let url = format!("{}{path}", urls[attempt % urls.len()]);
            let err = match self.call_within("POST", &url, Some(body), Duration::from_secs(3)).await {
                Ok((status, resp)) if (200..300).contains(&status) => return Ok(resp),
                Ok((status @ (503 | 429), resp)) => format!("{status} from {url}: {resp}"),
                Ok((status, resp)) => panic!("POST {url}: unexpected {status}: {resp}"),
                Err(e) => e,
            };
            if Instant::now() + backoff >= deadline {
                return Err(err);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
        unreachable!()
    }

    /// Ids among `ids` that `get` on query node `url` returns, each checked to carry
    /// [`vector_of`] its id.
    pub async fn get_ids(&self, url: &str, collection: &str, ids: &[u64]) -> BTreeSet<u64> {
        let mut found = BTreeSet::new();
        for chunk in ids.chunks(2_000) {
            let body = json!({"ids": chunk, "include_vector": true});
            let resp = self.post_ok(&format!("{url}/v1/collections/{collection}/get"), &body).await;
            for row in resp["rows"].as_array().unwrap_or_else(|| panic!("bad get response {resp}")) {
                let id = row["id"].as_u64().unwrap_or_else(|| panic!("bad id in {row}"));
                let vector: Vec<f32> = serde_json::from_value(row["vector"].clone()).unwrap();
                assert_eq!(vector, vector_of(id), "row {id} came back with a wrong vector");
                found.insert(id);
            }
        }
        found
    }

    /// Searches query node `url` with the stored vector of `id`; the response.
    pub async fn search_for(&self, url: &str, collection: &str, id: u64) -> Result<(u16, Value), String> {
        let body = json!({"vector": vector_of(id), "top_k": 3, "consistency": "strong"});
        self.call("POST", &format!("{url}/v1/collections/{collection}/search"), Some(&body)).await
    }

    /// `/v1/node` of a node.
    pub async fn node_info(&self, url: &str) -> Value {
        self.get_ok(&format!("{url}/v1/node")).await
    }
}

/// The id of the best hit of a search response, if any.
pub fn top_id(resp: &Value) -> Option<u64> {
    resp["results"].as_array()?.first()?["id"].as_u64()
}

/// The vector stored for `id`: pseudo-random, so no two ids share one.
pub fn vector_of(id: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|d| {
            let mut x = id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (d + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x ^= x >> 31;
            x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^= x >> 29;
            // Thousandths in [-1, 1]: f32s that print and parse back exactly.
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

/// An upsert body for `ids`.
pub fn rows(ids: &[u64]) -> Value {
    json!({"rows": ids.iter().map(|&i| json!({"id": i, "vector": vector_of(i)})).collect::<Vec<_>>()})
}
