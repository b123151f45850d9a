//! Compiles `roaming/**/*.proto` in pure Rust (protox, no system `protoc`) and writes
//! the encoded descriptor set next to the generated code for server reflection.

use std::path::{Path, PathBuf};

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new("roaming");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect_protos(root, &mut files)?;
    files.sort();

    let descriptors = protox::compile(&files, ["."])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("roaming_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    // Every message knows its full protobuf name (`prost::Name`): the event
    // type header is written from it, never spelled out by hand.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        // Malformed request bodies are INVALID_ARGUMENT, not INTERNAL.
        .codec_path("crate::codec::ContractCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
