//! Generates the kubelet device-plugin v1beta1 API (needs `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=third_party/proto/deviceplugin.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        .compile_protos(
            &["third_party/proto/deviceplugin.proto"],
            &["third_party/proto"],
        )?;
    Ok(())
}
