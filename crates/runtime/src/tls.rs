//! gRPC server TLS (`--grpc-server-tls-cert`, `--grpc-server-tls-key`,
//! `--grpc-server-tls-client-ca`, `--grpc-server-tls-min-version`), as Thanos serves it:
//!
//! - TLS 1.3 only unless `--grpc-server-tls-min-version 1.2`;
//! - with a client CA, every client must present a certificate that CA signed;
//! - the certificate, key and client CA are re-read when their files change (checked at
//!   most once a second, on the next handshake), so rotated certificates apply without a
//!   restart; a file that does not load keeps the previous material and is logged;
//! - every refused handshake is logged with the peer address and the reason.
//!
//! [`incoming`] turns a listener into the connection stream tonic serves, doing the
//! handshakes concurrently (bounded, with a timeout) so a slow client holds up no other.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tokio_rustls::rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// How often the files are looked at for changes, at most.
const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait in the listen backlog.
const MAX_HANDSHAKES: usize = 256;

/// The lowest TLS version a server accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    V1_2,
    /// TLS 1.3 only (Thanos' default).
    #[default]
    V1_3,
}

impl TlsVersion {
    /// Parses Thanos' `--grpc-server-tls-min-version` values. 1.0 and 1.1 are refused: they
    /// are insecure and rustls does not speak them.
    pub fn parse(s: &str) -> Result<TlsVersion, String> {
        match s {
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            "1.0" | "1.1" => Err(format!("TLS {s} is not supported (use 1.2 or 1.3)")),
            other => Err(format!("unknown TLS version {other:?} (want 1.2 or 1.3)")),
        }
    }

    /// The versions offered or accepted from this one up.
    pub fn protocol_versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static FROM_1_2: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static FROM_1_3: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsVersion::V1_2 => &FROM_1_2,
            TlsVersion::V1_3 => &FROM_1_3,
        }
    }
}

/// Certificate files for a gRPC server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
    /// PEM CA bundle; when set, clients must present a certificate it signed.
    pub client_ca: Option<PathBuf>,
    /// The lowest protocol version accepted.
    pub min_version: TlsVersion,
}

/// A TLS configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Flags set inconsistently.
    #[error("gRPC server TLS: {0}")]
    Flags(&'static str),
    /// A file could not be read.
    #[error("gRPC server TLS: reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// A file was read but holds no usable material.
    #[error("gRPC server TLS: {path}: {reason}")]
    Material {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl TlsFiles {
    /// The server TLS setup, or `None` for plaintext. As in Thanos, certificate and key
    /// must be set together, and a client CA needs them. Everything is loaded once here,
    /// so unusable files fail the start.
    pub fn server(&self) -> Result<Option<ServerTls>, TlsError> {
        let (cert, key) = match (&self.cert, &self.key) {
            (None, None) => {
                if self.client_ca.is_some() {
                    return Err(TlsError::Flags(
                        "--grpc-server-tls-client-ca needs --grpc-server-tls-cert and --grpc-server-tls-key",
                    ));
                }
                return Ok(None);
            }
            (Some(cert), Some(key)) => (cert.clone(), key.clone()),
            _ => {
                return Err(TlsError::Flags(
                    "--grpc-server-tls-cert and --grpc-server-tls-key must be set together",
                ));
            }
        };
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let resolver = Arc::new(ReloadingCert::new(cert, key, Arc::clone(&provider))?);
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(self.min_version.protocol_versions())
            .map_err(|e| TlsError::Material {
                path: String::new(),
                reason: e.to_string(),
            })?;
        let builder = match &self.client_ca {
            Some(ca) => builder
                .with_client_cert_verifier(Arc::new(ReloadingClientCa::new(ca.clone(), provider)?)),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Some(ServerTls {
            config: Arc::new(config),
            client_auth: self.client_ca.is_some(),
        }))
    }
}

/// A loaded server TLS setup.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
    client_auth: bool,
}

impl ServerTls {
    /// The same setup for an HTTP/1.1 server (ALPN `http/1.1` instead of gRPC's `h2`).
    pub fn for_http(&self) -> ServerTls {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        ServerTls {
            config: Arc::new(config),
            client_auth: self.client_auth,
        }
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

/// What identifies a version of a file: modification time and length.
type Stamp = Option<(SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn material(path: &Path, reason: impl fmt::Display) -> TlsError {
    TlsError::Material {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| material(path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(material(path, "no certificate in the file"));
    }
    Ok(certs)
}

fn load_key(
    cert: &Path,
    key: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = load_certs(cert)?;
    let pem = read(key)?;
    let der = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| material(key, format!("no usable private key: {e}")))?;
    let certified = CertifiedKey::from_der(chain, der, provider)
        .map_err(|e| material(key, format!("does not fit {}: {e}", cert.display())))?;
    Ok(Arc::new(certified))
}

fn load_client_verifier(
    ca: &Path,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| material(ca, format!("not a CA certificate: {e}")))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
        .build()
        .map_err(|e| material(ca, e))
}

/// A value loaded from files, re-loaded when their stamps change.
struct Reloading<T> {
    what: &'static str,
    paths: Vec<PathBuf>,
    state: Mutex<ReloadState<T>>,
}

struct ReloadState<T> {
    current: T,
    stamps: Vec<Stamp>,
    checked: Instant,
}

impl<T: Clone> Reloading<T> {
    fn new(what: &'static str, paths: Vec<PathBuf>, current: T) -> Reloading<T> {
        let stamps = paths.iter().map(|p| stamp(p)).collect();
        Reloading {
            what,
            paths,
            state: Mutex::new(ReloadState {
                current,
                stamps,
                checked: Instant::now(),
            }),
        }
    }

    /// The current value, re-loaded with `load` first when a file changed.
    fn get(&self, load: impl FnOnce() -> Result<T, TlsError>) -> Option<T> {
        let Ok(mut state) = self.state.lock() else {
            return None;
        };
        if state.checked.elapsed() >= RELOAD_CHECK_INTERVAL {
            state.checked = Instant::now();
            let stamps: Vec<Stamp> = self.paths.iter().map(|p| stamp(p)).collect();
            if stamps != state.stamps {
                state.stamps = stamps;
                match load() {
                    Ok(value) => {
                        state.current = value;
                        tracing::info!(what = self.what, files = ?self.paths, "reloaded gRPC server TLS material");
                    }
                    Err(e) => tracing::warn!(
                        what = self.what,
                        error = %e,
                        "changed gRPC server TLS material does not load; keeping the previous"
                    ),
                }
            }
        }
        Some(state.current.clone())
    }
}

/// The server certificate, re-read when the certificate or key file changes.
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    inner: Reloading<Arc<CertifiedKey>>,
}

impl ReloadingCert {
    fn new(
        cert: PathBuf,
        key: PathBuf,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<ReloadingCert, TlsError> {
        let current = load_key(&cert, &key, &provider)?;
        let inner = Reloading::new("certificate", vec![cert.clone(), key.clone()], current);
        Ok(ReloadingCert {
            cert,
            key,
            provider,
            inner,
        })
    }
}

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.inner
            .get(|| load_key(&self.cert, &self.key, &self.provider))
    }
}

/// The client CA, re-read when its file changes.
struct ReloadingClientCa {
    ca: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// Signature schemes do not depend on the roots; fixed at start.
    schemes: Vec<SignatureScheme>,
    inner: Reloading<Arc<dyn ClientCertVerifier>>,
}

impl ReloadingClientCa {
    fn new(
        ca: PathBuf,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<ReloadingClientCa, TlsError> {
        let current = load_client_verifier(&ca, &provider)?;
        let schemes = current.supported_verify_schemes();
        let inner = Reloading::new("client CA", vec![ca.clone()], current);
        Ok(ReloadingClientCa {
            ca,
            provider,
            schemes,
            inner,
        })
    }

    fn current(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        self.inner
            .get(|| load_client_verifier(&self.ca, &self.provider))
            .ok_or_else(|| rustls::Error::General("client CA state poisoned".to_owned()))
    }
}

impl fmt::Debug for ReloadingClientCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingClientCa")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl ClientCertVerifier for ReloadingClientCa {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: the roots can change, and clients (Go's and rustls') send their
    /// certificate without them.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current()?
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.current()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.current()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// A served connection: plaintext or TLS.
#[derive(Debug)]
pub enum ServerIo {
    /// Plaintext TCP.
    Plain(TcpStream),
    /// TLS over TCP, handshake done.
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl ServerIo {
    /// The client's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    fn tcp(&self) -> &TcpStream {
        match self {
            ServerIo::Plain(s) => s,
            ServerIo::Tls(s) => s.get_ref().0,
        }
    }
}

impl tonic::transport::server::Connected for ServerIo {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.tcp().connect_info()
    }
}

impl AsyncRead for ServerIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_flush(cx),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ServerIo::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ServerIo::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ServerIo::Plain(s) => s.is_write_vectored(),
            ServerIo::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The connections on `listener`, TLS-wrapped when `tls` is given, for tonic's
/// `serve_with_incoming*`. Accepting stops when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Option<ServerTls>,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<ServerIo>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, tls, tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<ServerTls>,
    tx: mpsc::Sender<io::Result<ServerIo>>,
) {
    let acceptor = tls.map(|t| tokio_rustls::TlsAcceptor::from(t.config));
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tx.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accepting a gRPC connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let Some(acceptor) = &acceptor else {
            if tx.send(Ok(ServerIo::Plain(tcp))).await.is_err() {
                return;
            }
            continue;
        };
        let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else {
            return;
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send(Ok(ServerIo::Tls(Box::new(stream)))).await;
                }
                Ok(Err(e)) => log_refusal(peer, &e),
                Err(_) => tracing::warn!(
                    peer = %peer,
                    timeout = ?HANDSHAKE_TIMEOUT,
                    "gRPC TLS handshake timed out; connection closed"
                ),
            }
        });
    }
}

fn log_refusal(peer: SocketAddr, e: &io::Error) {
    let reason = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .map_or_else(|| e.to_string(), describe);
    tracing::warn!(peer = %peer, reason = %reason, "gRPC TLS handshake refused");
}

/// A rustls error in words an operator acts on.
fn describe(e: &rustls::Error) -> String {
    use rustls::{CertificateError, Error, PeerIncompatible};
    match e {
        Error::NoCertificatesPresented => {
            "the client presented no certificate (mutual TLS requires one)".to_owned()
        }
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the client certificate is not signed by the trusted client CA".to_owned()
        }
        Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => format!("the client certificate has expired ({e})"),
        Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => format!("the client certificate is not valid yet ({e})"),
        Error::PeerIncompatible(
            PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::Tls12NotOffered,
        ) => {
            "the client does not offer a TLS version this server accepts (TLS 1.3 unless --grpc-server-tls-min-version=1.2)"
                .to_owned()
        }
        Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            "the client does not speak TLS (a plaintext gRPC client?)".to_owned()
        }
        Error::AlertReceived(alert) => {
            format!("the client aborted the handshake with alert {alert:?} (it does not trust this server's certificate, or its name does not match)")
        }
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_thanos_names_them() {
        assert_eq!(TlsVersion::parse("1.3"), Ok(TlsVersion::V1_3));
        assert_eq!(TlsVersion::parse("1.2"), Ok(TlsVersion::V1_2));
        assert!(TlsVersion::parse("1.1").is_err());
        assert!(TlsVersion::parse("tls13").is_err());
        assert_eq!(TlsVersion::default(), TlsVersion::V1_3);
    }

    #[test]
    fn flags_are_checked() {
        let only_ca = TlsFiles {
            client_ca: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..TlsFiles::default()
        };
        assert!(matches!(only_ca.server(), Err(TlsError::Flags(_))));
        let only_cert = TlsFiles {
            cert: Some(PathBuf::from("/nonexistent/c.pem")),
            ..TlsFiles::default()
        };
        assert!(matches!(only_cert.server(), Err(TlsError::Flags(_))));
        assert!(matches!(TlsFiles::default().server(), Ok(None)));
        let missing = TlsFiles {
            cert: Some(PathBuf::from("/nonexistent/c.pem")),
            key: Some(PathBuf::from("/nonexistent/k.pem")),
            ..TlsFiles::default()
        };
        assert!(matches!(missing.server(), Err(TlsError::Read { .. })));
    }

    #[test]
    fn garbage_files_are_material_errors() {
        let dir = std::env::temp_dir().join(format!("strata-tls-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let junk = dir.join("junk.pem");
        let _ = std::fs::write(&junk, b"not a certificate");
        let files = TlsFiles {
            cert: Some(junk.clone()),
            key: Some(junk),
            ..TlsFiles::default()
        };
        assert!(matches!(files.server(), Err(TlsError::Material { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
