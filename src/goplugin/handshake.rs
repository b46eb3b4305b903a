//! The launch contract with the host: environment checks and the one line on stdout.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;

/// go-plugin's magic cookie for Vault/OpenBao backend plugins.
pub const MAGIC_COOKIE_KEY: &str = "VAULT_BACKEND_PLUGIN";
/// Its value.
pub const MAGIC_COOKIE_VALUE: &str = "6669da05-b1c8-4f49-97d9-c8e5bed98e20";
/// go-plugin's core protocol version.
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// The backend plugin protocol this plugin speaks: v5 (AutoMTLS, multiplexing).
pub const APP_PROTOCOL_VERSION: u32 = 5;

/// Why the process cannot serve as a plugin.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LaunchError {
    /// Started by hand, or by the host as another kind of plugin (e.g. a database plugin probe).
    #[error(
        "this binary is a plugin for HashiCorp Vault and OpenBao and is not meant to be run \
         directly.\nRegister it with the server instead, for example:\n  \
         bao plugin register -sha256=$(sha256sum vault-plugin-secrets-qlik | cut -d' ' -f1) \
         secret vault-plugin-secrets-qlik\n  \
         bao secrets enable -path=qlik vault-plugin-secrets-qlik\n\
         (Run it with --help for more.)"
    )]
    NoMagicCookie,
    /// The host offered only the legacy protocols (v3/v4, no AutoMTLS).
    #[error(
        "the server offered plugin protocol versions [{0}]; this plugin speaks only version 5 \
         (Vault 1.15+ / OpenBao 2.x with AutoMTLS)"
    )]
    UnsupportedProtocol(String),
    /// AutoMTLS needs the host's certificate.
    #[error("PLUGIN_CLIENT_CERT is missing: the server did not enable AutoMTLS")]
    NoClientCert,
}

/// What the host told the process at launch.
#[derive(Debug, Clone)]
pub struct LaunchEnv {
    /// PEM of the host's client certificate, to be pinned.
    pub client_cert_pem: String,
    /// Directory for the Unix socket.
    pub socket_dir: std::path::PathBuf,
    /// Group to give the socket to (Vault containerised plugins), if any.
    pub socket_group: Option<String>,
}

impl LaunchEnv {
    /// Reads and checks the launch environment through `get` (the process environment in
    /// production; a map in tests).
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, LaunchError> {
        if get(MAGIC_COOKIE_KEY).as_deref() != Some(MAGIC_COOKIE_VALUE) {
            return Err(LaunchError::NoMagicCookie);
        }
        let versions = get("PLUGIN_PROTOCOL_VERSIONS").unwrap_or_default();
        // The list comes from a Go map: its order is not fixed.
        if !versions
            .split(',')
            .any(|v| v.trim() == APP_PROTOCOL_VERSION.to_string())
        {
            return Err(LaunchError::UnsupportedProtocol(versions));
        }
        let client_cert_pem = get("PLUGIN_CLIENT_CERT")
            .filter(|c| !c.trim().is_empty())
            .ok_or(LaunchError::NoClientCert)?;
        let socket_dir = get("PLUGIN_UNIX_SOCKET_DIR")
            .or_else(|| get("TMPDIR"))
            .filter(|d| !d.is_empty())
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        Ok(Self {
            client_cert_pem,
            socket_dir,
            socket_group: get("PLUGIN_UNIX_SOCKET_GROUP").filter(|g| !g.is_empty()),
        })
    }
}

/// The handshake line: `1|5|unix|<socket>|grpc|<base64 DER, standard alphabet, no padding>`.
///
/// Go decodes the certificate with `base64.RawStdEncoding`: padding makes it fail.
pub fn handshake_line(socket: &std::path::Path, cert_der: &[u8]) -> String {
    format!(
        "{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|unix|{}|grpc|{}\n",
        socket.display(),
        STANDARD_NO_PAD.encode(cert_der)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn handshake_line_has_six_fields_and_unpadded_base64() {
        let der: Vec<u8> = (0u8..=100).collect(); // 101 bytes: padded base64 would end in '='
        let line = handshake_line(std::path::Path::new("/tmp/plugin123"), &der);
        assert!(line.ends_with('\n'));
        let fields: Vec<&str> = line.trim_end().split('|').collect();
        assert_eq!(fields[..5], ["1", "5", "unix", "/tmp/plugin123", "grpc"]);
        assert_eq!(fields.len(), 6);
        assert!(!fields[5].contains('='));
        assert_eq!(STANDARD_NO_PAD.decode(fields[5]).expect("decodes"), der);
    }

    #[test]
    fn without_the_cookie_the_launch_is_refused() {
        assert_eq!(
            LaunchEnv::from_env(env(&[])).unwrap_err(),
            LaunchError::NoMagicCookie
        );
        // The database-plugin probe uses another cookie: it must fail fast too.
        let db = env(&[(
            "VAULT_DATABASE_PLUGIN",
            "926a0820-aea2-be28-51d6-83cdf00e8edb",
        )]);
        assert_eq!(
            LaunchEnv::from_env(db).unwrap_err(),
            LaunchError::NoMagicCookie
        );
    }

    #[test]
    fn only_protocol_5_with_a_client_cert_is_accepted() {
        let legacy = env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_PROTOCOL_VERSIONS", "4,3"),
        ]);
        assert!(matches!(
            LaunchEnv::from_env(legacy),
            Err(LaunchError::UnsupportedProtocol(_))
        ));
        let no_cert = env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_PROTOCOL_VERSIONS", "5"),
        ]);
        assert_eq!(
            LaunchEnv::from_env(no_cert).unwrap_err(),
            LaunchError::NoClientCert
        );
        let ok = env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_PROTOCOL_VERSIONS", "3, 5"),
            ("PLUGIN_CLIENT_CERT", "-----BEGIN CERTIFICATE-----\n"),
            ("TMPDIR", "/var/tmp/x"),
        ]);
        let launch = LaunchEnv::from_env(ok).expect("accepted");
        assert_eq!(launch.socket_dir, std::path::PathBuf::from("/var/tmp/x"));
    }
}
