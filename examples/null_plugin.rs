//! A plugin with the same runtime and framework as the engine (`run_plugin`) but no work: `GET <mount>/value`
//! answers `{"value": "benchmark"}` from a constant, touching neither storage nor Qlik.
//!
//! `GET <mount>/shaped` answers the JSON object last written to it (`body`, a JSON object's
//! text) from memory, already rendered: written with the engine's own `config` answer, it
//! costs the server what the engine's answer costs (its size and fields) with none of the
//! engine's work.
//!
//! `scripts/bench.sh` mounts it next to the engine and a builtin kv to split the cost of a read:
//! null plugin minus kv is the price of the external-plugin transport (the server's gRPC client
//! and this runtime); `shaped` minus `value` is the price of the answer's size, and the
//! engine's `config` read minus `shaped` is the engine's own work.

use std::process::ExitCode;
use std::sync::Mutex;

use serde_json::{Map, Value};
use vault_plugin_secrets_qlik::framework::server::run_plugin;
use vault_plugin_secrets_qlik::framework::{
    BackendFactory, FieldKind, FieldSpec, LeaseOperation, LeaseRequest, LogicalBackend,
    MountContext, Operation, OperationSpec, PathSpec, Request, RequestError, Response,
};

#[derive(Debug, Clone, Copy)]
enum Route {
    Value,
    Shaped,
}

static SHAPED_FIELDS: &[FieldSpec] = &[FieldSpec::new(
    "body",
    FieldKind::Text,
    "The JSON object (its text) that reads answer.",
)];

static PATHS: &[PathSpec<Route>] = &[
    PathSpec {
        route: Route::Value,
        pattern: "value",
        fields: &[],
        operations: &[OperationSpec::new(Operation::Read, "A constant.")],
        existence_check: false,
        synopsis: "A constant.",
        description: "A constant, for measuring the transport.",
    },
    PathSpec {
        route: Route::Shaped,
        pattern: "shaped",
        fields: SHAPED_FIELDS,
        operations: &[
            OperationSpec::new(Operation::Read, "The object last written."),
            OperationSpec::new(Operation::Update, "Sets the object reads answer."),
        ],
        existence_check: false,
        synopsis: "A JSON object kept in memory.",
        description: "Answers the object last written, for measuring an answer's size.",
    },
];

struct Null {
    shaped: Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl LogicalBackend for Null {
    type Route = Route;

    fn paths(&self) -> &'static [PathSpec<Route>] {
        PATHS
    }

    fn help(&self) -> &'static str {
        "A plugin that answers a constant (benchmarks only)."
    }

    async fn handle(&self, request: Request<Route>) -> Result<Response, RequestError> {
        match (request.route, request.operation) {
            (Route::Value, _) => {
                let mut data = Map::new();
                data.insert("value".into(), Value::String("benchmark".into()));
                Ok(Response::data(data))
            }
            (Route::Shaped, Operation::Read) => {
                let shaped = self.shaped.lock().unwrap_or_else(|e| e.into_inner());
                Ok(shaped
                    .clone()
                    .map_or_else(Response::empty, Response::rendered))
            }
            (Route::Shaped, _) => {
                let body = request.data.str("body").unwrap_or_default();
                match serde_json::from_str::<Value>(body) {
                    Ok(Value::Object(_)) => {}
                    _ => {
                        return Err(RequestError::field(
                            "body",
                            "must be a JSON object's text, e.g. {\"a\":1}",
                        ));
                    }
                }
                *self.shaped.lock().unwrap_or_else(|e| e.into_inner()) = Some(body.to_string());
                Ok(Response::empty())
            }
        }
    }

    async fn lease(
        &self,
        _op: LeaseOperation,
        _lease: LeaseRequest,
    ) -> Result<Response, RequestError> {
        Err(RequestError::bad_request("this plugin issues no leases"))
    }
}

struct NullFactory;

impl BackendFactory for NullFactory {
    type Backend = Null;

    fn create(&self, _mount: MountContext) -> Result<Null, String> {
        Ok(Null {
            shaped: Mutex::new(None),
        })
    }

    fn version(&self) -> &'static str {
        "v0.0.0"
    }

    fn title(&self) -> &'static str {
        "null plugin"
    }
}

fn main() -> ExitCode {
    run_plugin("null_plugin", NullFactory)
}
