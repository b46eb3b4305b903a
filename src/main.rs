//! `vault-plugin-secrets-qlik`: the plugin binary the server launches.

use std::process::ExitCode;

use vault_plugin_secrets_qlik::engine::{Factory, VERSION};
use vault_plugin_secrets_qlik::framework::server::BackendService;
use vault_plugin_secrets_qlik::goplugin::{self, LaunchEnv};
use vault_plugin_secrets_qlik::logging;

const USAGE: &str = "\
vault-plugin-secrets-qlik: a HashiCorp Vault / OpenBao secrets engine that keeps Qlik Cloud
API keys alive (rotation before expiry, leases whose TTL is the key's real remaining life).

This binary is started by the server, not by hand. Install it:
  cp vault-plugin-secrets-qlik <plugin_directory>/
  bao plugin register -sha256=<sha256 of the binary> -version=<see --version> \\
      secret vault-plugin-secrets-qlik
  bao secrets enable -path=qlik vault-plugin-secrets-qlik
  bao write qlik/config tenant_url=https://TENANT.REGION.qlikcloud.com api_key=…

Options:
  --version   print the plugin version (semver, as the server reports it)
  --help      print this text

Environment:
  QLIK_PLUGIN_LOG      log filter for the plugin's stderr log (default: info; e.g. debug)
  QLIK_PLUGIN_THREADS  worker threads of the async runtime (default 2; 1 = the main thread only)
";

fn main() -> ExitCode {
    match std::env::args().nth(1).as_deref() {
        Some("--version" | "-version" | "version") => {
            println!("{VERSION}");
            return ExitCode::SUCCESS;
        }
        Some("--help" | "-h" | "-help" | "help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    // The launch must be checked before anything touches stdout, which belongs to the
    // handshake.
    let launch = match LaunchEnv::from_env(|key| std::env::var(key).ok()) {
        Ok(launch) => launch,
        Err(error) => {
            eprintln!("vault-plugin-secrets-qlik: {error}");
            return ExitCode::FAILURE;
        }
    };
    logging::init();
    let runtime = match runtime_builder().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(goplugin::serve(launch, |router, broker| {
        BackendService::new(Factory, broker).add_to(router)
    }));
    match result {
        Ok(()) => {
            // Exit at once: background tasks (the host connection) must not hold us up.
            std::process::exit(0);
        }
        Err(error) => {
            tracing::error!(%error, "plugin stopped");
            ExitCode::FAILURE
        }
    }
}

/// The async runtime: `QLIK_PLUGIN_THREADS` worker threads (default 2; 1 runs everything on
/// the main thread). The plugin's work is small and network-bound.
fn runtime_builder() -> tokio::runtime::Builder {
    let threads = std::env::var("QLIK_PLUGIN_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| (1..=64).contains(n))
        .unwrap_or(2);
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    }
}
