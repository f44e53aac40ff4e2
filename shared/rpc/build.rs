//! Compiles the node-to-node gRPC API (`proto/strata.proto`, package `strata.v1`) into
//! client and server code, included by `strata_rpc::pb`.
//!
//! protoc comes from `PROTOC` (set by `.cargo/config.toml` to `scripts/protoc`, or by the
//! user); when it is unset (e.g. cargo run from outside the workspace) we fall back to the
//! binary vendored in `protoc-bin-vendored`, so our own protos never need a system protoc.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded; nothing else reads the environment
        // concurrently.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_protos(&["proto/strata.proto"], &["proto"])?;
    Ok(())
}
