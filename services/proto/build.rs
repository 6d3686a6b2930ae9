//! Compiles every `.proto` under `titan/` with tonic; protoc comes from `protoc-bin-vendored`
//! unless `PROTOC` names one, so a fresh machine builds with nothing installed.

use std::{
    fs,
    path::{Path, PathBuf},
};

fn protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-env-changed=PROTOC");
    // A directory makes cargo rescan it, so a new .proto file is picked up too.
    println!("cargo:rerun-if-changed=titan");
    let protoc = match std::env::var_os("PROTOC") {
        Some(path) => PathBuf::from(path),
        None => protoc_bin_vendored::protoc_bin_path()?,
    };
    let mut files = Vec::new();
    protos(Path::new("titan"), &mut files)?;
    files.sort();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("titan_descriptor.bin"))
        .compile_with_config(config, &files, &[PathBuf::from(".")])?;
    Ok(())
}
