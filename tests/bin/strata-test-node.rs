//! The `strata` command line, built inside the test package so that the multi-process
//! tests can start real nodes (`env!("CARGO_BIN_EXE_strata-test-node")`): Cargo exposes
//! only a package's own binaries to its tests.

fn main() -> std::process::ExitCode {
    strata::cli::main()
}
