//! TLS towards endpoints (`--grpc-client-tls-*`, an endpoint SD config's `tls_config`):
//! every TLS connection is made by [`connector`] — TCP, then a rustls handshake offering
//! HTTP/2 — and handed to tonic as a plaintext-scheme connection, because tonic's own TLS
//! settings can neither skip verification nor choose protocol versions.
//!
//! - The server is verified against the given CA, else the system's roots (as Go does).
//! - `--grpc-client-tls-min-version` (default 1.3, as Thanos): 1.3 offers TLS 1.3 only.
//! - `--grpc-client-tls-skip-verify` (and `insecure_skip_verify`): the chain and name are
//!   not verified, as Go's `InsecureSkipVerify`; the handshake's signatures are still
//!   checked against the certificate the server presents (so the connection is encrypted
//!   to whoever holds that key).
//! - A client certificate is sent for mutual TLS when given.

use std::sync::Arc;

use crate::endpoints::ClientTls;

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
pub enum ClientTlsError {
    /// The client certificate or key does not load.
    #[error("gRPC client TLS: client certificate: {0}")]
    Identity(String),
    /// The CA does not load, or no roots are there to verify with.
    #[error("gRPC client TLS: CA: {0}")]
    Roots(String),
    /// rustls refused the settings.
    #[error("gRPC client TLS: {0}")]
    Config(#[from] rustls::Error),
}

/// The rustls configuration `tls` asks for; offers HTTP/2 only.
pub fn client_config(tls: &ClientTls) -> Result<Arc<rustls::ClientConfig>, ClientTlsError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(tls.min_version.protocol_versions())?;
    let builder = if tls.skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)))
    } else {
        builder.with_root_certificates(roots(tls.ca.as_deref())?)
    };
    let mut config = match &tls.identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ClientTlsError::Identity(format!("bad PEM: {e}")))?;
            if chain.is_empty() {
                return Err(ClientTlsError::Identity("no certificate".to_owned()));
            }
            let key = PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| ClientTlsError::Identity(format!("no usable key: {e}")))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// The CA's certificates (PEM), else the system's roots.
fn roots(ca: Option<&[u8]>) -> Result<rustls::RootCertStore, ClientTlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| ClientTlsError::Roots(format!("bad PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| ClientTlsError::Roots(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(ClientTlsError::Roots(
                    "no certificate in the CA file".into(),
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(ClientTlsError::Roots(format!(
                    "no CA given and no system roots found ({} errors)",
                    found.errors.len()
                )));
            }
        }
    }
    Ok(roots)
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

    fn tls() -> ClientTls {
        ClientTls {
            ca: None,
            identity: None,
            server_name: None,
            skip_verify: true,
            min_version: strata_runtime::TlsVersion::V1_3,
        }
    }

    #[test]
    fn bad_client_material_is_a_clear_error() {
        let bad_identity = ClientTls {
            identity: Some((b"not pem".to_vec(), b"not pem".to_vec())),
            ..tls()
        };
        let err = client_config(&bad_identity).unwrap_err();
        assert!(err.to_string().contains("client certificate"), "{err}");
        let bad_ca = ClientTls {
            ca: Some(b"not pem".to_vec()),
            skip_verify: false,
            ..tls()
        };
        let err = client_config(&bad_ca).unwrap_err();
        assert!(err.to_string().contains("CA"), "{err}");
        let config = client_config(&tls()).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec()]);
    }
}
