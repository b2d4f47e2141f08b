//! Test TLS material: a self-signed certificate generated per test with rcgen, and a rustls
//! client configuration that trusts exactly that certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use tokio_postgres_rustls::MakeRustlsConnect;

/// A freshly generated self-signed certificate for `localhost` and `127.0.0.1`.
#[derive(Debug, Clone)]
pub struct TestCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
}

impl TestCert {
    /// File names the proxy config refers to, relative to the proxy's folder.
    pub const CERT_FILE: &'static str = "server.crt";
    pub const KEY_FILE: &'static str = "server.key";

    pub fn generate() -> TestCert {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let ck = rcgen::generate_simple_self_signed(names).expect("rcgen self-signed cert");
        TestCert {
            cert_pem: ck.cert.pem(),
            key_pem: ck.key_pair.serialize_pem(),
            cert_der: ck.cert.der().to_vec(),
        }
    }

    /// Writes `server.crt` / `server.key` (PEM) into `dir`.
    pub fn write_to(&self, dir: &Path) {
        std::fs::write(dir.join(Self::CERT_FILE), &self.cert_pem).expect("write cert");
        std::fs::write(dir.join(Self::KEY_FILE), &self.key_pem).expect("write key");
    }

    /// A tokio-postgres TLS connector that verifies the server against this certificate only.
    pub fn connector(&self) -> MakeRustlsConnect {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.cert_der.clone()))
            .expect("add test cert as root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("rustls protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        MakeRustlsConnect::new(config)
    }
}
