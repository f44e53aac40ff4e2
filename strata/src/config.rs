//! The configuration file of `strata standalone` (TOML). Every field is optional; the
//! defaults are documented on each settings struct. Example:
//!
//! ```toml
//! listen = "127.0.0.1:7700"
//! data_dir = "./data"
//! [ingest]
//! flush_rows = 50000
//! [cache]
//! memory_bytes = 536870912
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use strata_compactor::CompactorConfig;
use strata_ingest::IngestConfig;
use strata_query::QueryConfig;
use strata_shared::cache::CacheConfig;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandaloneConfig {
    /// Address of the REST API. Default `127.0.0.1:7700`.
    pub listen: SocketAddr,
    /// Where objects (`objects/`) and the disk cache (`cache/`) live. Default `./data`.
    pub data_dir: PathBuf,
    /// Largest request body accepted, in bytes. Default 64 MiB.
    pub max_request_bytes: usize,
    pub ingest: IngestConfig,
    pub query: QueryConfig,
    pub compactor: CompactorConfig,
    /// `cache.disk_dir` defaults to `{data_dir}/cache`.
    pub cache: CacheConfig,
}

impl Default for StandaloneConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            data_dir: PathBuf::from("./data"),
            max_request_bytes: 64 << 20,
            ingest: IngestConfig::default(),
            query: QueryConfig::default(),
            compactor: CompactorConfig::default(),
            cache: CacheConfig::default(),
        }
    }
}

impl StandaloneConfig {
    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let Some(path) = path else { return Ok(Self::default()) };
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("invalid config file {}: {e}", path.display()))
    }
}
