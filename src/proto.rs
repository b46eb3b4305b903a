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

// Request and response data, lease internals and storage values can all hold a Qlik API key:
// their generated `Debug` is switched off in build.rs and replaced by these redacted ones.
mod redacted_debug {
    use super::pb;
    use std::fmt;

    impl fmt::Debug for pb::Request {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Request")
                .field("id", &self.id)
                .field("operation", &self.operation)
                .field("path", &self.path)
                .field("mount_point", &self.mount_point)
                .field("data", &"[REDACTED]")
                .field("secret", &self.secret)
                .finish_non_exhaustive()
        }
    }

    impl fmt::Debug for pb::Response {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Response")
                .field("secret", &self.secret)
                .field("data", &"[REDACTED]")
                .field("warnings", &self.warnings)
                .finish_non_exhaustive()
        }
    }

    impl fmt::Debug for pb::Secret {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Secret")
                .field("lease_options", &self.lease_options)
                .field("internal_data", &"[REDACTED]")
                .field("lease_id", &self.lease_id)
                .finish()
        }
    }

    impl fmt::Debug for pb::StorageEntry {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("StorageEntry")
                .field("key", &self.key)
                .field("value", &format_args!("[{} bytes]", self.value.len()))
                .field("seal_wrap", &self.seal_wrap)
                .finish()
        }
    }
}
