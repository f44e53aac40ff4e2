//! `strata`: the single binary. It parses the command line, sets up logging and composes
//! the role libraries; all behaviour lives in the libraries.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use strata::{bench, config, standalone};

#[derive(Parser)]
#[command(name = "strata", version, about = "Strata: vector search on object storage")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process over the local filesystem (the default way to start).
    Standalone {
        /// TOML configuration file (every field optional).
        #[arg(long, env = "STRATA_CONFIG")]
        config: Option<PathBuf>,
        /// Address of the REST API [default: 127.0.0.1:7700].
        #[arg(long, env = "STRATA_LISTEN")]
        listen: Option<std::net::SocketAddr>,
        /// Data directory [default: ./data].
        #[arg(long, env = "STRATA_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Benchmark a running server over REST against exact ground truth and hnswlib.
    Bench(bench::BenchArgs),
    /// Print the OpenAPI document.
    Openapi,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hnsw_rs=warn,foyer=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    match Cli::parse().command {
        Command::Standalone { config, listen, data_dir } => {
            let mut cfg = config::StandaloneConfig::load(config.as_deref())?;
            if let Some(l) = listen {
                cfg.listen = l;
            }
            if let Some(d) = data_dir {
                cfg.data_dir = d;
            }
            standalone::serve(cfg).await
        }
        Command::Bench(args) => bench::run(args).await,
        Command::Openapi => {
            println!("{}", serde_json::to_string_pretty(&standalone::openapi_document())?);
            Ok(())
        }
    }
}
