//! `strata-tools`: the command-line tools of the `strata` binary — `bench` (ingest,
//! indexing, recall, QPS, latency and server CPU against exact ground truth and hnswlib),
//! `import` (REST upserts, resumable; or `--bulk` segments), `export` (REST scan to
//! Parquet), `search` and `cluster status`. Every tool talks REST to a base URL, so it
//! works against a standalone server or any cluster node; only `bench --index-only` runs
//! the index in-process.

// The tools are clients: they measure and pace real time on the client side (latencies,
// progress, retry backoff), which is what they report, so they use the real clock. The
// database's library code uses the injected one (clippy.toml).
#![allow(clippy::disallowed_methods)]

pub mod bench;
pub mod client;
pub mod export;
pub mod import;
pub mod source;
pub mod status;

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `strata import`.
#[derive(Args, Debug, Clone)]
pub struct ImportArgs {
    /// Parquet, `.npy` (2-D float32; ids are row numbers) or `.fvecs` file.
    pub file: PathBuf,
    #[arg(long)]
    pub collection: String,
    #[arg(long, default_value = "http://127.0.0.1:7700")]
    pub url: String,
    /// Create the collection if it does not exist.
    #[arg(long)]
    pub create: bool,
    /// Dimension for `--create` [default: the file's].
    #[arg(long)]
    pub dimension: Option<u32>,
    /// Metric for `--create`: l2, cosine or dot.
    #[arg(long, default_value = "l2")]
    pub metric: String,
    /// Shards for `--create`.
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    /// Rows per upsert request.
    #[arg(long, default_value_t = 1000)]
    pub batch: usize,
    /// Upsert requests in flight.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Parquet id column (u64, i64 or string).
    #[arg(long, default_value = "id")]
    pub id_column: String,
    /// Parquet vector column (FixedSizeList<f32> or List<f32>).
    #[arg(long, default_value = "vector")]
    pub vector_column: String,
    /// Checkpoint file [default: FILE.strata-import.json].
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Write segments directly (POST /bulk per shard), bypassing the WAL.
    #[arg(long)]
    pub bulk: bool,
    /// Rows per bulk request (per shard); lowered to keep requests under 32 MiB.
    #[arg(long, default_value_t = 50_000)]
    pub bulk_rows: usize,
    /// After the last batch, POST /flush and wait until every imported row is in segments.
    #[arg(long)]
    pub flush: bool,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// `strata export`.
#[derive(Args, Debug, Clone)]
pub struct ExportArgs {
    #[arg(long)]
    pub collection: String,
    /// Output Parquet file.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value = "http://127.0.0.1:7700")]
    pub url: String,
    /// Rows per scan page.
    #[arg(long, default_value_t = 1000)]
    pub page: usize,
    #[arg(long)]
    pub quiet: bool,
}

/// `strata search`.
#[derive(Args, Debug, Clone)]
pub struct SearchArgs {
    #[arg(long)]
    pub collection: String,
    /// Query vector as a JSON array, e.g. '[0.1, 0.2]'.
    #[arg(long)]
    pub vector: String,
    #[arg(long, default_value_t = 10)]
    pub top_k: usize,
    #[arg(long, default_value = "http://127.0.0.1:7700")]
    pub url: String,
}

/// `strata cluster ...`.
#[derive(Subcommand, Debug, Clone)]
pub enum ClusterCommand {
    /// Nodes and shards of the cluster as tables.
    Status {
        #[arg(long, default_value = "http://127.0.0.1:7700")]
        url: String,
    },
    /// Members: roles, drain state, shards served and loading, leases held.
    Nodes {
        #[arg(long, default_value = "http://127.0.0.1:7700")]
        url: String,
    },
    /// Shards: writer, serving replicas and whether each is settled.
    Shards {
        #[arg(long, default_value = "http://127.0.0.1:7700")]
        url: String,
    },
    /// Drain a node: its shards and writer leases move to the others; it keeps running.
    Drain {
        /// The node id (see `strata cluster nodes`).
        node: String,
        #[arg(long, default_value = "http://127.0.0.1:7700")]
        url: String,
    },
    /// Undo a drain.
    Undrain {
        node: String,
        #[arg(long, default_value = "http://127.0.0.1:7700")]
        url: String,
    },
    /// Drain a node, wait until it holds nothing, then remove it from the membership.
    Remove {
        node: String,
        /// How long to wait for the drain, in ms (at most 120000).
        #[arg(long, default_value_t = 30_000)]
        wait_ms: u64,
        #[arg(long, default_value = "http://127.0.0.1:7700")]
        url: String,
    },
    /// Wait until every shard is served by its owners (after nodes joined or left).
    Rebalance {
        /// How long to wait, in ms (at most 60000).
        #[arg(long, default_value_t = 30_000)]
        wait_ms: u64,
        #[arg(long, default_value = "http://127.0.0.1:7700")]
        url: String,
    },
}
