//! The `strata` binary's library half: configuration, the standalone composition of the
//! roles, and the benchmark client. `main.rs` only parses the command line.

pub mod bench;
pub mod config;
pub mod standalone;
