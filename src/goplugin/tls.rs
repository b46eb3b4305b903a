//! AutoMTLS: the plugin's own certificate and the pinned trust in the host's certificate.
//!
//! The host (go-plugin) sends its client certificate in `PLUGIN_CLIENT_CERT`: an ECDSA P-521
//! certificate with `IsCA=true`, used as an end entity. webpki refuses such a certificate
//! (`CaUsedAsEndEntity`), and `ring` cannot verify P-521 signatures, so trust is decided by
//! comparing DER bytes and signatures are checked with the aws-lc-rs provider. The same pinned
//! verifier serves both directions: host → plugin (client certificate) and plugin → host broker
//! (server certificate).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// What can go wrong while setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `PLUGIN_CLIENT_CERT` did not hold one PEM certificate.
    #[error("PLUGIN_CLIENT_CERT is not a PEM certificate: {0}")]
    HostCertificate(String),
    /// Generating the plugin's own key pair or certificate failed.
    #[error("cannot generate the plugin certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration error: {0}")]
    Config(#[from] rustls::Error),
}

/// The only crypto provider the plugin uses: aws-lc-rs (P-521 capable).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The plugin's own certificate and key, made fresh for every process.
pub struct Identity {
    /// DER of the self-signed certificate; its unpadded base64 goes in the handshake line.
    pub cert_der: CertificateDer<'static>,
    key_der: PrivatePkcs8KeyDer<'static>,
}

impl Identity {
    /// An ECDSA P-256 self-signed certificate for `localhost` with server and client EKU
    /// (the host verifies it as a server on the plugin socket and as a client on the broker).
    pub fn generate() -> Result<Self, TlsError> {
        use rcgen::{
            CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
            PKCS_ECDSA_P256_SHA256,
        };
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "vault-plugin-secrets-qlik");
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Backdated like go-plugin's own certificates, to tolerate small clock skew.
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::seconds(30);
        params.not_after = now + time::Duration::days(365 * 30);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_der: cert.der().clone(),
            key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }
}

/// Trust in exactly one certificate, compared byte for byte.
#[derive(Debug)]
pub struct PinnedCert {
    der: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl PinnedCert {
    /// Pin the certificate given as PEM (the value of `PLUGIN_CLIENT_CERT`).
    pub fn from_pem(pem: &str) -> Result<Self, TlsError> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| TlsError::HostCertificate(e.to_string()))?;
        Ok(Self::from_der(der))
    }

    /// Pin a DER certificate.
    pub fn from_der(der: CertificateDer<'static>) -> Self {
        Self {
            der,
            provider: provider(),
        }
    }

    fn check(&self, presented: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if presented.as_ref() == self.der.as_ref() {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

impl ClientCertVerifier for PinnedCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ClientCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ClientCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ClientCertVerifier::supported_verify_schemes(self)
    }
}

/// grpc-go enforces ALPN `h2` in both directions.
const ALPN_H2: &[u8] = b"h2";

/// TLS for the plugin's gRPC server: our certificate, the host's client certificate required.
pub fn server_config(
    identity: &Identity,
    host: Arc<PinnedCert>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(host)
        .with_single_cert(vec![identity.cert_der.clone()], identity.key())?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// TLS for dialling the host's broker listener: the host's certificate pinned, ours presented.
pub fn client_config(
    identity: &Identity,
    host: Arc<PinnedCert>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(host)
        .with_client_auth_cert(vec![identity.cert_der.clone()], identity.key())?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    /// Runs one TLS handshake over an in-memory pipe and reports whether both sides agreed.
    async fn handshake(server: &Identity, host_pin: &Identity, client: &Identity) -> bool {
        let server_cfg = server_config(
            server,
            Arc::new(PinnedCert::from_der(host_pin.cert_der.clone())),
        )
        .expect("server config");
        let client_cfg = client_config(
            client,
            Arc::new(PinnedCert::from_der(server.cert_der.clone())),
        )
        .expect("client config");
        let (a, b) = tokio::io::duplex(64 * 1024);
        let accept = tokio::spawn(async move {
            let mut tls = TlsAcceptor::from(server_cfg).accept(a).await.ok()?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await.ok()?;
            tls.write_all(b"ok").await.ok()?;
            tls.flush().await.ok()?;
            let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
            Some((buf, alpn))
        });
        let name = ServerName::try_from("localhost").expect("name");
        let connect = async {
            let mut tls = TlsConnector::from(client_cfg).connect(name, b).await.ok()?;
            tls.write_all(b"ping").await.ok()?;
            tls.flush().await.ok()?;
            // Wait for the answer: dropping the stream early would cut the server's handshake.
            let mut answer = [0u8; 2];
            tls.read_exact(&mut answer).await.ok()?;
            (&answer == b"ok").then_some(())
        };
        let client_ok = connect.await.is_some();
        let served = accept.await.expect("join");
        client_ok && served == Some((*b"ping", Some(b"h2".to_vec())))
    }

    #[tokio::test]
    async fn the_pinned_host_certificate_is_accepted_with_alpn_h2() {
        let plugin = Identity::generate().expect("plugin identity");
        let host = Identity::generate().expect("host identity");
        assert!(handshake(&plugin, &host, &host).await);
    }

    #[tokio::test]
    async fn a_strangers_client_certificate_is_refused() {
        let plugin = Identity::generate().expect("plugin identity");
        let host = Identity::generate().expect("host identity");
        let stranger = Identity::generate().expect("stranger identity");
        assert!(!handshake(&plugin, &host, &stranger).await);
    }

    #[test]
    fn a_p521_ca_certificate_like_go_plugins_parses_and_pins() {
        // go-plugin's host certificate: P-521, IsCA=true, used as a leaf.
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, PKCS_ECDSA_P521_SHA512};
        let key = KeyPair::generate_for(&PKCS_ECDSA_P521_SHA512).expect("p521 key");
        let mut params = CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("cert");
        let pin = PinnedCert::from_pem(&cert.pem()).expect("pem parses");
        assert!(pin.check(cert.der()).is_ok());
        assert!(pin.check(&CertificateDer::from(vec![1, 2, 3])).is_err());
        assert!(
            pin.provider
                .signature_verification_algorithms
                .supported_schemes()
                .contains(&SignatureScheme::ECDSA_NISTP521_SHA512)
        );
    }
}
