//! Generates the tonic server and client for `proto/loyalty/v1/loyalty.proto`,
//! plus the file descriptor set that gRPC server reflection serves.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out_dir.join("loyalty_descriptor.bin"))
        .compile_protos(&["proto/loyalty/v1/loyalty.proto"], &["proto"])?;
    Ok(())
}
