//! Compiles daybook's `proto/daybook/v1/*.proto` (at the repository's root) with protox, a
//! pure-Rust protobuf compiler: the messages and the clients, no servers.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from("../../proto");
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("daybook/v1"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed=../../proto");
    let descriptors = protox::compile(&files, [&root])?;
    // Type names let the proto3 JSON mapping find each message's descriptor.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}
