//! The `strata` command line: parses it, sets up logging and runs the chosen command — a
//! node (standalone or one cluster role, composed by [`crate::node`]) or a tool from
//! `strata-tools`. All behaviour lives in the libraries.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use strata_coord::Role;
use strata_tools::{bench, status};

use crate::config::Config;
use crate::node::{self, Mode, Node};
use crate::{http, standalone};

#[derive(Parser)]
#[command(name = "strata", version, about = "Strata: vector search on object storage")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process over the local filesystem (the default way to start).
    Standalone(NodeArgs),
    /// Run an ingest node (REST writes, WAL group commit, flush) of a cluster.
    IngestNode(NodeArgs),
    /// Run a query node (shard serving, search routing) of a cluster.
    QueryNode(NodeArgs),
    /// Run a compactor (merges, garbage collection) of a cluster.
    Compactor(NodeArgs),
    /// Benchmark a running server over REST against exact ground truth and hnswlib.
    Bench(bench::BenchArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// Import a Parquet, .npy or .fvecs file into a collection (resumable; --bulk writes segments).
    Import(strata_tools::ImportArgs),
    /// Export a collection to a Parquet file (ids, vectors, attributes as JSON).
    Export(strata_tools::ExportArgs),
    /// Search a collection and print (id, score) as a table.
    Search(strata_tools::SearchArgs),
    /// Cluster administration views.
    #[command(subcommand)]
    Cluster(strata_tools::ClusterCommand),
}

/// Settings every process takes; flags override `STRATA__*` variables, which override the
/// configuration file (see `docs/configuration.md`).
#[derive(Args)]
struct NodeArgs {
    /// TOML configuration file (every field optional).
    #[arg(long, env = "STRATA_CONFIG")]
    config: Option<PathBuf>,
    /// Address of the REST API [default: 127.0.0.1:7700].
    #[arg(long, env = "STRATA_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// Address of the node-to-node gRPC API [default: 127.0.0.1:7701].
    #[arg(long, env = "STRATA_GRPC_LISTEN")]
    grpc_listen: Option<std::net::SocketAddr>,
    /// Host other nodes reach this node at [default: the listen IP or the hostname].
    #[arg(long, env = "STRATA_ADVERTISE_HOST")]
    advertise_host: Option<String>,
    /// Data directory (standalone objects, disk cache) [default: ./data].
    #[arg(long, env = "STRATA_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// This node's id [default: standalone, or {role}-{hostname}-{port}].
    #[arg(long, env = "STRATA_NODE_ID")]
    node_id: Option<String>,
    /// etcd endpoints, comma-separated (cluster roles).
    #[arg(long, env = "STRATA_ETCD", value_delimiter = ',')]
    etcd: Option<Vec<String>>,
}

impl NodeArgs {
    fn config(self) -> anyhow::Result<Config> {
        let mut cfg = Config::load(self.config.as_deref())?;
        if let Some(v) = self.listen {
            cfg.listen = v;
        }
        if let Some(v) = self.grpc_listen {
            cfg.grpc_listen = v;
        }
        if let Some(v) = self.advertise_host {
            cfg.advertise_host = Some(v);
        }
        if let Some(v) = self.data_dir {
            cfg.data_dir = v;
        }
        if let Some(v) = self.node_id {
            cfg.node_id = Some(v);
        }
        if let Some(v) = self.etcd {
            cfg.etcd.endpoints = v;
        }
        Ok(cfg)
    }
}

async fn run_role(role: Role, args: NodeArgs) -> anyhow::Result<()> {
    let node = Node::start(Mode::Cluster(role), args.config()?).await?;
    node::serve(node).await
}

/// Runs the command line (the whole of `strata`'s `main`).
pub fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(run(Cli::parse()));
    // Dropping the runtime would wait for every blocking task, e.g. a segment build of a
    // large backlog that a stopping node no longer needs (see `node::RUNTIME_STOP`).
    runtime.shutdown_timeout(node::RUNTIME_STOP);
    result
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hnsw_rs=warn,foyer=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match cli.command {
        Command::Standalone(args) => standalone::serve(args.config()?).await,
        Command::IngestNode(args) => run_role(Role::Ingest, args).await,
        Command::QueryNode(args) => run_role(Role::Query, args).await,
        Command::Compactor(args) => run_role(Role::Compactor, args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Import(args) => {
            strata_tools::import::run(&args, None).await?;
            Ok(())
        }
        Command::Export(args) => {
            strata_tools::export::run(&args).await?;
            Ok(())
        }
        Command::Search(args) => {
            print!("{}", status::search(&args.url, &args.collection, &args.vector, args.top_k).await?);
            Ok(())
        }
        Command::Cluster(strata_tools::ClusterCommand::Status { url }) => {
            print!("{}", status::cluster_status(&url).await?);
            Ok(())
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&http::openapi_document())?);
            Ok(())
        }
    }
}
