//! Compiles `proto/daybook/v1/*.proto` with protox (a pure-Rust protobuf compiler), so a
//! fresh machine needs no system `protoc`. The file descriptor set is kept too: the
//! proto3 JSON mapping (event logs, dead letters) and gRPC reflection read it.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files: Vec<PathBuf> =
        std::fs::read_dir("proto/daybook/v1")?.map(|entry| entry.map(|e| e.path())).collect::<Result<_, _>>()?;
    let mut files: Vec<PathBuf> = files.into_iter().filter(|p| p.extension().is_some_and(|e| e == "proto")).collect();
    files.sort();
    println!("cargo:rerun-if-changed=proto");

    let descriptors = protox::compile(&files, ["proto"])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("daybook_descriptor.bin"), prost::Message::encode_to_vec(&descriptors))?;
    // Type names let the proto3 JSON mapping find each message's descriptor.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    // The messages and clients are the client crate's (`clients/rust`): here only the
    // servers, over its types.
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(true)
        .extern_path(".daybook.v1", "::daybook_client::pb")
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}
