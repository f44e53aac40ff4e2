//! The `strata` binary's library half: the command line ([`cli`]), configuration, the
//! composition of the roles into a process (standalone or one cluster role, [`node`]) and
//! the REST surface around the roles' routes (cluster admin, health, metrics, OpenAPI,
//! the admin page, API keys in [`auth`]). The tools (`bench`, `import`, …) are `strata-tools`'.

pub mod admin;
pub mod auth;
pub mod certs;
pub mod cli;
pub mod config;
pub mod edge;
pub mod http;
pub mod node;
pub mod openapi;
pub mod standalone;
pub mod tls;
pub mod ui;
pub mod watch;
