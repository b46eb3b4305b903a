// Pure-Rust protobuf compilation (protox): no system `protoc` is needed on any build machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/pb/backend.proto",
        "proto/logical/version.proto",
        "proto/logical/plugin.proto",
        "proto/pluginutil/multiplexing.proto",
        "proto/goplugin/grpc_broker.proto",
        "proto/goplugin/grpc_controller.proto",
        "proto/goplugin/grpc_stdio.proto",
    ];
    let fds = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .build_transport(false)
        // compile_fds does not add this attribute itself (compile_protos does).
        .type_attribute(".", "#[allow(clippy::all)]")
        // Request/Response data and secrets carry API keys: their Debug must not print them.
        .skip_debug(["pb.Request", "pb.Response", "pb.Secret", "pb.StorageEntry"])
        .compile_fds(fds)?;
    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
