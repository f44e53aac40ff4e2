//! `strata standalone`: every role in one process over the local filesystem, with
//! in-process coordination — the same composition as a cluster node ([`crate::node`]) in
//! [`Mode::Standalone`], with direct handles on each role for embedding and tests.

use axum::Router;

use crate::config::Config;
use crate::node::{self, Mode, Node};

/// A running standalone server.
pub struct Standalone {
    pub router: Router,
    pub ingest: strata_ingest::IngestNode,
    pub query: strata_query::QueryNode,
    pub compactor: strata_compactor::Compactor,
    pub node: Node,
}

impl Standalone {
    /// Opens the data directory and starts every role.
    pub async fn start(config: Config) -> anyhow::Result<Standalone> {
        let node = Node::start(Mode::Standalone, config).await?;
        let every_role = "a standalone node runs every role";
        Ok(Standalone {
            router: node.router.clone(),
            ingest: node.ingest.clone().expect(every_role),
            query: node.query.clone().expect(every_role),
            compactor: node.compactor.clone().expect(every_role),
            node,
        })
    }

    /// Stops background work (writers, flushes, compaction) and flushes the cache.
    pub async fn stop(self) {
        self.node.stop().await;
    }
}

/// Serves a standalone process until SIGINT/SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let data_dir = config.data_dir.clone();
    let node = Node::start(Mode::Standalone, config).await?;
    eprintln!("data in {}", data_dir.display());
    node::serve(node).await
}
