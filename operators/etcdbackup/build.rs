//! Generates the etcd client for the few RPCs the runner uses (needs `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=third_party/proto/etcd.proto");
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        // Snapshot chunks as `Bytes`: taken from the receive buffer without a copy.
        .bytes(".etcdserverpb.SnapshotResponse.blob")
        .compile_protos(&["third_party/proto/etcd.proto"], &["third_party/proto"])?;
    Ok(())
}
