//! The `strata` binary's library half: configuration, the composition of the roles into a
//! process (standalone or one cluster role), the REST surface (role routes, cluster admin,
//! health, OpenAPI) and the benchmark client. `main.rs` only parses the command line.

pub mod admin;
pub mod bench;
pub mod config;
pub mod http;
pub mod node;
pub mod standalone;
pub mod tools;
pub mod ui;
