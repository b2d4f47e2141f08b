//! The byte stream to PostgreSQL: a Unix-domain socket, plain TCP or TLS (rustls), negotiated
//! with SSLRequest the way libpq does for `sslmode` disable / prefer / require / verify-full.
//! As in libpq, a socket directory (a host starting with `/`) never negotiates TLS.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;

use super::UpstreamError;
use crate::config::{SslMode, UpstreamConfig};

/// A connection to PostgreSQL, before or after TLS.
pub enum ServerStream {
    /// A share of a multiplexed connection (see `mux/`).
    Pipe(Box<super::mux::Pipe>),
    Unix(UnixStream),
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl std::fmt::Debug for ServerStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerStream::Pipe(_) => "ServerStream::Pipe",
            ServerStream::Unix(_) => "ServerStream::Unix",
            ServerStream::Plain(_) => "ServerStream::Plain",
            ServerStream::Tls(_) => "ServerStream::Tls",
        })
    }
}

impl ServerStream {
    /// Connects and, per `sslmode`, upgrades to TLS.
    pub async fn connect(
        cfg: &UpstreamConfig,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<ServerStream, UpstreamError> {
        if cfg.host.starts_with('/') {
            let path = format!("{}/.s.PGSQL.{}", cfg.host.trim_end_matches('/'), cfg.port);
            let unix = UnixStream::connect(&path)
                .await
                .map_err(UpstreamError::Connect)?;
            return Ok(ServerStream::Unix(unix));
        }
        let mut tcp = TcpStream::connect((cfg.host.as_str(), cfg.port))
            .await
            .map_err(UpstreamError::Connect)?;
        tcp.set_nodelay(true).map_err(UpstreamError::Connect)?;
        let Some(tls) = tls.filter(|_| cfg.sslmode != SslMode::Disable) else {
            return Ok(ServerStream::Plain(tcp));
        };
        // SSLRequest: length 8, code 80877103.
        tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 47])
            .await
            .map_err(UpstreamError::Io)?;
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer)
            .await
            .map_err(UpstreamError::Io)?;
        match answer[0] {
            b'S' => {
                let name = ServerName::try_from(cfg.host.clone())
                    .map_err(|_| UpstreamError::Tls(format!("invalid server name {}", cfg.host)))?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| UpstreamError::Tls(e.to_string()))?;
                Ok(ServerStream::Tls(Box::new(stream)))
            }
            b'N' if cfg.sslmode == SslMode::Prefer => Ok(ServerStream::Plain(tcp)),
            b'N' => Err(UpstreamError::Tls(
                "PostgreSQL does not accept TLS connections".into(),
            )),
            _ => Err(UpstreamError::Protocol),
        }
    }

    /// True when an idle connection has nothing to say (see `ServerConn::looks_alive`).
    pub fn looks_idle(&mut self) -> bool {
        let mut probe = [0u8; 1];
        let would_block =
            |r: io::Result<usize>| matches!(r, Err(e) if e.kind() == io::ErrorKind::WouldBlock);
        match self {
            ServerStream::Pipe(_) => true,
            ServerStream::Unix(s) => would_block(s.try_read(&mut probe)),
            ServerStream::Plain(s) => would_block(s.try_read(&mut probe)),
            ServerStream::Tls(s) => {
                let mut buf = ReadBuf::new(&mut probe);
                let mut cx = Context::from_waker(Waker::noop());
                Pin::new(s).poll_read(&mut cx, &mut buf).is_pending()
            }
        }
    }
}

/// Builds the TLS client configuration for the upstream, or `None` for `sslmode = disable`.
pub fn client_config(cfg: &UpstreamConfig) -> Result<Option<Arc<rustls::ClientConfig>>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match cfg.sslmode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth(),
        SslMode::VerifyFull => {
            let mut roots = rustls::RootCertStore::empty();
            let pem = cfg
                .ssl_root_cert
                .as_deref()
                .ok_or("verify-full needs sslrootcert")?;
            for cert in rustls_pemfile::certs(&mut &pem[..]) {
                roots
                    .add(cert.map_err(|e| e.to_string())?)
                    .map_err(|e| e.to_string())?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Some(Arc::new(config)))
}

/// `sslmode=require` semantics: encrypt, but do not authenticate the server (as libpq does).
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Pipe(p) => p.poll_read(cx, buf),
            ServerStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerStream::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerStream::Pipe(p) => p.poll_write(buf),
            ServerStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerStream::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Pipe(_) => Poll::Ready(Ok(())),
            ServerStream::Unix(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerStream::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerStream::Pipe(_) => Poll::Ready(Ok(())),
            ServerStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerStream::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
