//! `vault-plugin-secrets-qlik`: the plugin binary the server launches.

use std::process::ExitCode;

use vault_plugin_secrets_qlik::engine::{Factory, VERSION};
use vault_plugin_secrets_qlik::framework::server::run_plugin;

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
  QLIK_PLUGIN_LOG      log filter for the plugin's stderr log: a level (off, error, warn,
                       info, debug, trace) or target=level directives; default info. The
                       transport libraries (h2, hyper, tonic, rustls, ...) stay at warn
                       unless named; an invalid value warns and gives info
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
    run_plugin("vault-plugin-secrets-qlik", Factory)
}
