//! `strata cluster ...` and `strata search`: REST answers printed as tables, and the
//! cluster admin actions (drain, undrain, remove, rebalance).

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};

use super::client::Rest;

/// Left-aligned text table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    out += &line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect());
    for r in rows {
        out += &line(r.iter().map(String::as_str).collect());
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The nodes and shards tables of `strata cluster status`.
pub async fn cluster_status(url: &str) -> Result<String> {
    let rest = Rest::new(url)?;
    Ok(format!("{}\n{}", nodes_table(&rest).await?, shards_table(&rest).await?))
}

/// `strata cluster nodes`.
pub async fn cluster_nodes(url: &str) -> Result<String> {
    nodes_table(&Rest::new(url)?).await
}

/// `strata cluster shards`.
pub async fn cluster_shards(url: &str) -> Result<String> {
    shards_table(&Rest::new(url)?).await
}

/// A cluster admin action (`POST`/`DELETE` on the admin API); the answer, as JSON.
pub async fn cluster_action(url: &str, method: &str, path: &str) -> Result<String> {
    let v = Rest::new(url)?.call(method, path, None).await.map_err(|e| anyhow!(e))?;
    Ok(serde_json::to_string_pretty(&v)? + "\n")
}

async fn nodes_table(rest: &Rest) -> Result<String> {
    let nodes = rest.get("/v1/cluster/nodes").await?;
    let node_rows: Vec<Vec<String>> = nodes["nodes"]
        .as_array()
        .context("/v1/cluster/nodes: no 'nodes' array")?
        .iter()
        .map(|n| {
            let roles: Vec<String> = n["roles"].as_array().into_iter().flatten().map(text).collect();
            vec![
                text(&n["id"]),
                roles.join(","),
                if n["draining"].as_bool() == Some(true) { "yes".into() } else { "no".into() },
                text(&n["serving_shards"]),
                text(&n["loading_shards"]),
                format!("{}/{}", text(&n["writer_leases"]), text(&n["compaction_leases"])),
                text(&n["http_url"]),
            ]
        })
        .collect();
    let mut out = format!("Nodes ({})\n", node_rows.len());
    out += &table(&["NODE", "ROLES", "DRAINING", "SERVING", "LOADING", "LEASES(W/C)", "URL"], &node_rows);
    Ok(out)
}

async fn shards_table(rest: &Rest) -> Result<String> {
    let shards = rest.get("/v1/cluster/shards").await?;
    let shard_rows: Vec<Vec<String>> = shards["shards"]
        .as_array()
        .context("/v1/cluster/shards: no 'shards' array")?
        .iter()
        .map(|s| {
            let serving: Vec<String> = s["serving"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| format!("{}({})", text(&r["node"]), text(&r["state"])))
                .collect();
            vec![
                text(&s["collection"]),
                text(&s["shard"]),
                text(&s["writer"]),
                if serving.is_empty() { "-".into() } else { serving.join(" ") },
                if s["settled"].as_bool() == Some(true) { "yes".into() } else { "no".into() },
            ]
        })
        .collect();
    let mut out = format!("Shards ({})\n", shard_rows.len());
    out += &table(&["COLLECTION", "SHARD", "WRITER", "REPLICAS", "SETTLED"], &shard_rows);
    Ok(out)
}

/// `strata search`: (id, score, attributes) rows as a table.
pub async fn search(url: &str, collection: &str, vector: &str, top_k: usize) -> Result<String> {
    let vector: Vec<f32> =
        serde_json::from_str(vector).map_err(|e| anyhow!("--vector must be a JSON array of numbers: {e}"))?;
    let rest = Rest::new(url)?;
    let body = serde_json::to_vec(&json!({"vector": vector, "top_k": top_k, "include_attributes": true}))?;
    let v =
        rest.call("POST", &format!("/v1/collections/{collection}/search"), Some(body)).await.map_err(|e| anyhow!(e))?;
    let rows: Vec<Vec<String>> = v["results"]
        .as_array()
        .context("search response has no 'results'")?
        .iter()
        .enumerate()
        .map(|(i, r)| vec![(i + 1).to_string(), text(&r["id"]), text(&r["score"]), text(&r["attributes"])])
        .collect();
    let mut out = table(&["#", "ID", "SCORE", "ATTRIBUTES"], &rows);
    if v["partial"].as_bool() == Some(true) {
        out += &format!("partial result: shards {} failed\n", v["failed_shards"]);
    }
    Ok(out)
}
