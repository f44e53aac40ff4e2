//! The one configuration format of every `strata` process (standalone and each cluster
//! role): a TOML file, overridden by `STRATA__SECTION__KEY` environment variables, then by
//! command-line flags. Every field is optional; defaults are documented per field and on
//! each role's settings struct. Example:
//!
//! ```toml
//! node_id = "query-1"
//! listen = "0.0.0.0:7700"
//! grpc_listen = "0.0.0.0:7701"
//! advertise_host = "10.0.0.5"
//! [storage]
//! kind = "s3"
//! bucket = "strata"
//! endpoint = "http://minio:9000"
//! allow_http = true
//! [etcd]
//! endpoints = ["http://etcd:2379"]
//! [cache]
//! memory_bytes = 536870912
//! [[auth.keys]]
//! name = "ops"
//! role = "admin"
//! sha256 = "…"   # `strata keys new --name ops --role admin` prints the entry
//! ```
//!
//! Environment overrides use `__` between path segments, e.g. `STRATA__ETCD__ENDPOINTS='["http://etcd:2379"]'`
//! or `STRATA__INGEST__FLUSH_ROWS=50000`; values are parsed as TOML when they can be, and
//! taken as strings otherwise.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use strata_compactor::CompactorConfig;

use crate::auth::AuthConfig;
use crate::edge::EdgeConfig;
use crate::tls::TlsConfig;
use strata_coord::etcd::EtcdConfig;
use strata_ingest::IngestConfig;
use strata_query::QueryConfig;
use strata_rpc::RpcConfig;
use strata_storage::cache::CacheConfig;
use strata_storage::store::StorageConfig;

/// Prefix of environment overrides.
pub const ENV_PREFIX: &str = "STRATA__";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's id: lease holder and member name; unique in the cluster and stable
    /// across restarts of the same node. Default: `standalone` for a standalone process,
    /// else `{role}-{hostname}-{REST port}`.
    pub node_id: Option<String>,
    /// Address of the REST API. Default `127.0.0.1:7700`.
    pub listen: SocketAddr,
    /// Address of the node-to-node gRPC API (cluster roles). Default `127.0.0.1:7701`.
    pub grpc_listen: SocketAddr,
    /// Host other nodes use to reach this one. Default: the listen IP, or the machine's
    /// hostname when listening on all interfaces.
    pub advertise_host: Option<String>,
    /// Local state: standalone objects (`objects/`) and the disk cache (`cache/`).
    /// Default `./data`.
    pub data_dir: PathBuf,
    /// Largest request body accepted, in bytes. Default 64 MiB.
    pub max_request_bytes: usize,
    /// Object storage. Standalone always uses `{data_dir}/objects` on the local
    /// filesystem; cluster roles default to that too, which only suits one machine.
    pub storage: Option<StorageConfig>,
    /// Coordination (cluster roles only).
    pub etcd: EtcdConfig,
    /// Node-to-node calls.
    pub rpc: RpcConfig,
    pub ingest: IngestConfig,
    pub query: QueryConfig,
    pub compactor: CompactorConfig,
    /// `cache.disk_dir` defaults to `{data_dir}/cache`.
    pub cache: CacheConfig,
    /// API keys (see docs/security.md). Default: none, which only loopback allows.
    pub auth: AuthConfig,
    /// Allowed `Host` headers and CORS (see `edge.rs`). Default: local names only on
    /// loopback, CORS off.
    pub http: EdgeConfig,
    /// TLS for the REST port (see `tls.rs`). Default: off.
    pub tls: TlsConfig,
    /// Serve the API beyond loopback without API keys. Default false: such a node refuses
    /// to start (`--insecure` sets it).
    pub insecure: bool,
    /// The file this configuration was read from, if any (re-read when keys reload).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            node_id: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 7701)),
            advertise_host: None,
            data_dir: PathBuf::from("./data"),
            max_request_bytes: 64 << 20,
            storage: None,
            etcd: EtcdConfig::default(),
            rpc: RpcConfig::default(),
            ingest: IngestConfig::default(),
            query: QueryConfig::default(),
            compactor: CompactorConfig::default(),
            cache: CacheConfig::default(),
            auth: AuthConfig::default(),
            http: EdgeConfig::default(),
            tls: TlsConfig::default(),
            insecure: false,
            source: None,
        }
    }
}

impl Config {
    /// Reads `path` (if any) and applies the `STRATA__…` environment overrides.
    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?,
            None => String::new(),
        };
        let origin = path.map_or_else(|| "the environment".to_owned(), |p| p.display().to_string());
        let config = Self::parse(&text, std::env::vars(), &origin)?;
        Ok(Self { source: path.map(std::path::Path::to_owned), ..config })
    }

    /// Parses TOML `text`, then applies overrides from `env` (name, value pairs).
    pub fn parse(text: &str, env: impl IntoIterator<Item = (String, String)>, origin: &str) -> anyhow::Result<Self> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("invalid config file {origin}: {e}"))?;
        for (name, value) in env {
            let Some(path) = name.strip_prefix(ENV_PREFIX) else { continue };
            let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
            set_path(&mut table, &keys, parse_value(&value))
                .map_err(|why| anyhow::anyhow!("environment variable {name}: {why}"))?;
        }
        table.try_into().map_err(|e| anyhow::anyhow!("invalid configuration ({origin} and STRATA__* variables): {e}"))
    }

    /// The host other nodes reach this one at.
    pub fn advertised_host(&self) -> String {
        if let Some(host) = &self.advertise_host {
            return host.clone();
        }
        let ip = self.listen.ip();
        if ip.is_unspecified() { hostname() } else { ip.to_string() }
    }
}

/// A TOML value if `raw` parses as one (number, bool, array, inline table), else a string.
fn parse_value(raw: &str) -> toml::Value {
    let wrapped = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&wrapped) {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}

fn set_path(table: &mut toml::Table, keys: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = keys.split_last().ok_or("empty key")?;
    if last.is_empty() {
        return Err("empty key".to_owned());
    }
    let mut current = table;
    for key in parents {
        current = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("{key} is not a section"))?;
    }
    current.insert(last.clone(), value);
    Ok(())
}

/// The machine's hostname (`HOSTNAME`, then /etc/hostname), or `localhost`.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn environment_overrides_the_file() {
        let file = "listen = \"0.0.0.0:9000\"\n[ingest]\nflush_rows = 10\n";
        let cfg = Config::parse(
            file,
            env(&[
                ("STRATA__INGEST__FLUSH_ROWS", "500"),
                ("STRATA__ETCD__ENDPOINTS", "[\"http://e1:2379\", \"http://e2:2379\"]"),
                ("STRATA__NODE_ID", "q-7"),
                ("UNRELATED", "x"),
            ]),
            "test",
        )
        .unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.ingest.flush_rows, 500);
        assert_eq!(cfg.etcd.endpoints, vec!["http://e1:2379", "http://e2:2379"]);
        assert_eq!(cfg.node_id.as_deref(), Some("q-7"));
    }

    #[test]
    fn mistakes_are_reported_with_their_origin() {
        let err = Config::parse("bogus = 1", env(&[]), "strata.toml").unwrap_err().to_string();
        assert!(err.contains("strata.toml") && err.contains("bogus"), "{err}");
        let err = Config::parse("", env(&[("STRATA__INGEST__FLUSH_ROWS", "many")]), "t").unwrap_err().to_string();
        assert!(err.contains("flush_rows"), "{err}");
        let err = Config::parse("listen = \"x\"", env(&[("STRATA__LISTEN__PORT", "1")]), "t").unwrap_err().to_string();
        assert!(err.contains("STRATA__LISTEN__PORT"), "{err}");
    }

    #[test]
    fn advertised_host_falls_back_to_the_hostname_on_wildcard_listens() {
        let mut cfg = Config::default();
        assert_eq!(cfg.advertised_host(), "127.0.0.1");
        cfg.listen = "0.0.0.0:7700".parse().unwrap();
        assert_eq!(cfg.advertised_host(), hostname());
        cfg.advertise_host = Some("10.1.2.3".into());
        assert_eq!(cfg.advertised_host(), "10.1.2.3");
    }
}
