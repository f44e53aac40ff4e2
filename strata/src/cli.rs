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
    /// On failure, print the error's full chain and, with RUST_BACKTRACE=1, where it
    /// arose (by default: one line).
    #[arg(long, short, global = true)]
    verbose: bool,
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
    /// Print a shell completion script, e.g. `strata completions bash > /etc/bash_completion.d/strata`.
    Completions { shell: clap_complete::Shell },
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

/// `strata cluster ...`: a view, or an admin action through the cluster admin API.
async fn cluster(command: strata_tools::ClusterCommand) -> anyhow::Result<String> {
    use strata_tools::ClusterCommand as C;
    match command {
        C::Status { url } => status::cluster_status(&url).await,
        C::Nodes { url } => status::cluster_nodes(&url).await,
        C::Shards { url } => status::cluster_shards(&url).await,
        C::Drain { node, url } => {
            status::cluster_action(&url, "POST", &format!("/v1/cluster/nodes/{node}/drain")).await
        }
        C::Undrain { node, url } => {
            status::cluster_action(&url, "DELETE", &format!("/v1/cluster/nodes/{node}/drain")).await
        }
        C::Remove { node, wait_ms, url } => {
            status::cluster_action(&url, "DELETE", &format!("/v1/cluster/nodes/{node}?wait_ms={wait_ms}")).await
        }
        C::Rebalance { wait_ms, url } => {
            status::cluster_action(&url, "POST", &format!("/v1/cluster/rebalance?wait_ms={wait_ms}")).await
        }
    }
}

async fn run_role(role: Role, args: NodeArgs) -> anyhow::Result<()> {
    let node = Node::start(Mode::Cluster(role), args.config()?).await?;
    node::serve(node).await
}

/// Runs the command line (the whole of `strata`'s `main`). A failure is one line on
/// stderr (`--verbose`: the whole chain, and a backtrace if RUST_BACKTRACE asks for one)
/// and exit status 1; Ctrl-C stops a tool with status 130 (a node stops on its own).
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let verbose = cli.verbose;
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Dropping the runtime would wait for every blocking task, e.g. a segment build of a
    // large backlog that a stopping node no longer needs (see `node::RUNTIME_STOP`).
    runtime.shutdown_timeout(node::RUNTIME_STOP);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.is::<Interrupted>() => {
            eprintln!("{e}");
            std::process::ExitCode::from(130)
        }
        Err(e) if verbose => {
            eprintln!("error: {e:?}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A tool stopped by Ctrl-C; the message says what was done and how to go on.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Interrupted(String);

/// Runs a tool until it ends or Ctrl-C, whose error says `on_interrupt`.
async fn interruptible<T>(
    tool: impl std::future::Future<Output = anyhow::Result<T>>,
    on_interrupt: String,
) -> anyhow::Result<T> {
    tokio::select! {
        result = tool => result,
        _ = tokio::signal::ctrl_c() => Err(Interrupted(on_interrupt).into()),
    }
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
        Command::Bench(args) => interruptible(bench::run(args), "interrupted".into()).await,
        Command::Import(args) => {
            let checkpoint = strata_tools::import::checkpoint_path(&args);
            let resume = format!(
                "interrupted: every batch acknowledged so far is recorded in {}; run the same command again to \
                 resume from there",
                checkpoint.display()
            );
            interruptible(strata_tools::import::run(&args, None), resume).await?;
            Ok(())
        }
        Command::Export(args) => {
            let partial = format!("interrupted: {} is incomplete; run the export again", args.out.display());
            interruptible(strata_tools::export::run(&args), partial).await?;
            Ok(())
        }
        Command::Search(args) => {
            print!("{}", status::search(&args.url, &args.collection, &args.vector, args.top_k).await?);
            Ok(())
        }
        Command::Cluster(command) => {
            print!("{}", cluster(command).await?);
            Ok(())
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "strata",
                &mut std::io::stdout(),
            );
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
