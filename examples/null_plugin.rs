//! A plugin with the same runtime and framework as the engine (`run_plugin`) but no work: `GET <mount>/value`
//! answers `{"value": "benchmark"}` from a constant, touching neither storage nor Qlik.
//!
//! `scripts/bench.sh` mounts it next to the engine and a builtin kv to split the cost of a read:
//! null plugin minus kv is the price of the external-plugin transport (the server's gRPC client
//! and this runtime); the engine's `config` read minus the null plugin is the engine's own.

use std::process::ExitCode;

use serde_json::{Map, Value};
use vault_plugin_secrets_qlik::framework::server::run_plugin;
use vault_plugin_secrets_qlik::framework::{
    BackendFactory, LeaseOperation, LeaseRequest, LogicalBackend, MountContext, Operation,
    OperationSpec, PathSpec, Request, RequestError, Response,
};

#[derive(Debug, Clone, Copy)]
struct Value_;

static PATHS: &[PathSpec<Value_>] = &[PathSpec {
    route: Value_,
    pattern: "value",
    fields: &[],
    operations: &[OperationSpec::new(Operation::Read, "A constant.")],
    existence_check: false,
    synopsis: "A constant.",
    description: "A constant, for measuring the transport.",
}];

struct Null;

#[async_trait::async_trait]
impl LogicalBackend for Null {
    type Route = Value_;

    fn paths(&self) -> &'static [PathSpec<Value_>] {
        PATHS
    }

    fn help(&self) -> &'static str {
        "A plugin that answers a constant (benchmarks only)."
    }

    async fn handle(&self, _request: Request<Value_>) -> Result<Response, RequestError> {
        let mut data = Map::new();
        data.insert("value".into(), Value::String("benchmark".into()));
        Ok(Response::data(data))
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
        Ok(Null)
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
