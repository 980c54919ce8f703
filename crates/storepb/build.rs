//! Compiles the Store API protos in `/proto` with protox (no `protoc` binary needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Read at run time: a build script binary compiled in one checkout may be reused by
    // cargo for another (a shared target directory), and `env!` would point at the first.
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "store/labelpb/types.proto",
        "store/storepb/types.proto",
        "store/storepb/rpc.proto",
        "store/hintspb/hints.proto",
        "info/infopb/rpc.proto",
        "metadata/metadatapb/rpc.proto",
        "targets/targetspb/rpc.proto",
        "exemplars/exemplarspb/rpc.proto",
        "rules/rulespb/rpc.proto",
        "prompb/types.proto",
        "prompb/remote.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let descriptors = protox::compile(files, [&root])?;
    let mut config = prost_build::Config::new();
    config.enable_type_names();
    // Chunk bytes as `Bytes`: decoded as slices of the received frame and encoded from
    // slices of the fetched chunk file, never copied one by one.
    config.bytes([".thanos.Chunk.data", ".prometheus.Chunk.data"]);
    // Raw chunks are the common case and stay inline; the downsampled aggregates are
    // boxed, so an `AggrChunk` is 104 bytes instead of 304 (it is moved several times per
    // chunk between the block reads, the merge and the encoder).
    for aggregate in ["count", "sum", "min", "max", "counter"] {
        config.boxed(format!(".thanos.AggrChunk.{aggregate}"));
    }
    tonic_prost_build::configure()
        .include_file("protos.rs")
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}
