//! `strata`: the single binary. The command line and the composition of the roles live in
//! the library (`strata::cli`, `strata::node`), so the test package can build the same
//! binary under another name.

fn main() -> std::process::ExitCode {
    strata::cli::main()
}
