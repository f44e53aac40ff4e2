//! The `strata` command line: parses it, sets up logging and runs the chosen command — a
//! node (standalone or one cluster role, composed by [`crate::node`]) or a tool from
//! `strata-tools`. All behaviour lives in the libraries.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use strata_coord::Role;
use strata_tools::{bench, status};

use crate::auth;
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
    /// API keys: make a new one, or hash a token of your own.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// TLS certificates for a cluster without a certificate manager.
    #[command(subcommand)]
    Certs(CertsCommand),
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Make a private CA and one certificate for every node: writes ca.pem, node.pem and
    /// node.key into --dir. The certificate names `strata-node` and --names.
    New {
        /// Where to write the files.
        #[arg(long)]
        dir: std::path::PathBuf,
        /// More names the certificate holds (comma-separated): the hosts clients use.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1")]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make a random key: prints the token (once; keep it secret) and the `[[keys]]` entry
    /// to add to the keys file or the configuration's `[auth]`.
    New {
        /// Who holds the key (shown in the audit log).
        #[arg(long)]
        name: String,
        /// read, write or admin.
        #[arg(long)]
        role: auth::KeyRole,
        /// Limit the key to these collections (comma-separated) [default: every collection].
        #[arg(long, value_delimiter = ',')]
        collections: Option<Vec<String>>,
    },
    /// Print the SHA-256 of a token read from standard input, for a `sha256 = …` entry.
    Hash,
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
    /// Serve the API beyond loopback without API keys: anyone who can reach it can read,
    /// change and drop every collection. Without keys, a node listening beyond loopback
    /// refuses to start unless given this.
    #[arg(long)]
    insecure: bool,
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
        cfg.insecure |= self.insecure;
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
    // Colour only on a terminal: log files and collectors get plain `key=value` lines.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();
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
        Command::Keys(KeysCommand::New { name, role, collections }) => {
            let (token, entry) = auth::new_key_entry(&name, role, collections).map_err(|e| anyhow::anyhow!(e))?;
            eprintln!("token (shown once; clients send it as `Authorization: Bearer …` or STRATA_API_KEY):");
            println!("{token}");
            eprintln!("\nadd to the keys file (or under [auth] in the configuration, as [[auth.keys]]):");
            println!("{entry}");
            Ok(())
        }
        Command::Certs(CertsCommand::New { dir, names }) => {
            crate::certs::new_cluster_certificates(&dir, &names).map_err(|e| anyhow::anyhow!(e))?;
            eprintln!("wrote {0}/ca.pem, {0}/node.pem and {0}/node.key", dir.display());
            Ok(())
        }
        Command::Keys(KeysCommand::Hash) => {
            let mut token = String::new();
            std::io::stdin().read_line(&mut token)?;
            let token = token.trim();
            anyhow::ensure!(!token.is_empty(), "no token on standard input");
            println!("{}", auth::hash_hex(token));
            Ok(())
        }
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&http::openapi_document())?);
            Ok(())
        }
    }
}
