//! `--grpc-client-tls-skip-verify` (and an endpoint SD file's `insecure_skip_verify`):
//! TLS towards endpoints without verifying their certificate chain or name, as Go's
//! `InsecureSkipVerify` does. The handshake's signatures are still checked against the
//! certificate the server presents (so the connection is encrypted to whoever holds that
//! key); a client certificate is still sent for mutual TLS.
//!
//! tonic's TLS settings cannot skip verification, so such endpoints connect through
//! [`connector`]: TCP, then a rustls handshake offering HTTP/2, handed to tonic as a
//! plaintext-scheme connection.

use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    CryptoProvider, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

/// Accepts any server certificate; checks handshake signatures with it.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        verify_tls12_signature(
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
        verify_tls13_signature(
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

/// Why the client TLS material cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InsecureTlsError {
    /// The client certificate or key does not load.
    #[error("gRPC client TLS: client certificate: {0}")]
    Identity(String),
    /// rustls refused the settings.
    #[error("gRPC client TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// A client configuration that skips server verification, with the client certificate
/// and key (PEM) when given; offers HTTP/2 only.
pub fn client_config(
    identity: Option<(&[u8], &[u8])>,
) -> Result<Arc<rustls::ClientConfig>, InsecureTlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)));
    let mut config = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| InsecureTlsError::Identity(format!("bad PEM: {e}")))?;
            if chain.is_empty() {
                return Err(InsecureTlsError::Identity("no certificate".to_owned()));
            }
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| InsecureTlsError::Identity(format!("no usable key: {e}")))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// A connector for tonic: TCP to the URI's host and port, then the TLS handshake with
/// `config`, naming `server_name` (SNI).
pub fn connector(
    config: Arc<rustls::ClientConfig>,
    server_name: String,
) -> impl tower::Service<
    tonic::transport::Uri,
    Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
    Error = std::io::Error,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |uri: tonic::transport::Uri| {
        let config = Arc::clone(&config);
        let server_name = server_name.clone();
        async move {
            let invalid =
                |what: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, what);
            let host = uri
                .host()
                .ok_or_else(|| invalid(format!("no host in {uri}")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri
                .port_u16()
                .ok_or_else(|| invalid(format!("no port in {uri}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = ServerName::try_from(server_name)
                .map_err(|e| invalid(format!("server name: {e}")))?;
            let tls = TlsConnector::from(config).connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_client_material_is_a_clear_error() {
        let err = client_config(Some((b"not pem", b"not pem"))).unwrap_err();
        assert!(err.to_string().contains("client certificate"), "{err}");
        let config = client_config(None).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    }
}
