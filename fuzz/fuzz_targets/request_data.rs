//! What the server sends: `pb::HandleRequestArgs` bytes decoded and dispatched through the
//! framework to an unconfigured engine mount (no network: every path stops before Qlik),
//! and arbitrary request-data JSON parsed against every path's fields. Never a panic; a
//! field error always names a field.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use prost::Message;
use vault_plugin_secrets_qlik::engine::{PATHS, QlikBackend, VERSION};
use vault_plugin_secrets_qlik::framework::storage::MemoryStorage;
use vault_plugin_secrets_qlik::framework::system::StaticSystemView;
use vault_plugin_secrets_qlik::framework::{FieldData, RequestError, handle_request};
use vault_plugin_secrets_qlik::proto::pb;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    // 1. Protocol bytes.
    if let Ok(args) = pb::HandleRequestArgs::decode(data)
        && let Some(request) = args.request
    {
        let backend = QlikBackend::new(
            Arc::new(MemoryStorage::default()),
            Arc::new(StaticSystemView::default()),
            "fuzz",
        );
        let reply = runtime().block_on(handle_request(&backend, VERSION, "fuzz", request));
        if let Some(response) = reply.response {
            // Whatever goes back must be valid JSON for the server.
            if !response.data.is_empty() {
                serde_json::from_str::<serde_json::Value>(&response.data)
                    .expect("reply data is JSON");
            }
        }
    }
    // 2. Request data as JSON, against every path's fields.
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(data) {
        for spec in PATHS {
            for creating in [false, true] {
                match FieldData::parse(spec.fields, &[], &map, creating) {
                    Ok(_) => {}
                    Err(RequestError::BadRequest(message)) => {
                        assert!(message.contains("field"), "{message}");
                    }
                    Err(other) => panic!("not a 400: {other:?}"),
                }
            }
        }
    }
});
