//! Code generated from the project's own `.proto` files (see `build.rs`).
#![allow(missing_docs)]

pub mod pb {
    tonic::include_proto!("pb");
}
pub mod logical {
    tonic::include_proto!("logical");
}
pub mod goplugin {
    tonic::include_proto!("plugin");
}
pub mod multiplexing {
    tonic::include_proto!("pluginutil.multiplexing");
}
