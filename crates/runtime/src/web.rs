//! `--http.config`: the Prometheus exporter-toolkit web config Thanos reads for its HTTP
//! address — TLS (`tls_server_config`) and basic auth (`basic_auth_users`, bcrypt hashes).
//!
//! The binary parses the file and installs it once ([`install`]) before a component starts;
//! [`crate::serve_http`] then serves every HTTP address of the process with it, as Thanos
//! does (probes and `/metrics` included: with basic auth, probes must send credentials).
//! Checking a bcrypt hash costs tens of milliseconds on purpose, so it runs off the async
//! workers and a successful check is remembered (by a SHA-256 of the credentials, bounded) so
//! that a dashboard's repeated requests do not each pay it.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::Digest as _;

use crate::tls::{ServerIo, ServerTls};

/// Verified credentials remembered; past this the memory is cleared.
const REMEMBERED: usize = 1024;

/// The parsed web config.
#[derive(Clone, Default)]
pub struct WebConfig {
    /// TLS on the HTTP address.
    pub tls: Option<ServerTls>,
    /// user → bcrypt hash; empty means no authentication.
    pub users: BTreeMap<String, String>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

static INSTALLED: OnceLock<Arc<WebConfig>> = OnceLock::new();

/// Makes `config` the web config of every HTTP server of this process (once; later calls
/// are ignored).
pub fn install(config: WebConfig) {
    let _ = INSTALLED.set(Arc::new(config));
}

pub(crate) fn installed() -> Option<Arc<WebConfig>> {
    INSTALLED.get().cloned()
}

/// Remembered successful checks (SHA-256 of `user:password`).
#[derive(Default)]
struct Verified(Mutex<HashSet<[u8; 32]>>);

impl Verified {
    fn contains(&self, key: &[u8; 32]) -> bool {
        self.0.lock().is_ok_and(|s| s.contains(key))
    }

    fn insert(&self, key: [u8; 32]) {
        if let Ok(mut s) = self.0.lock() {
            if s.len() >= REMEMBERED {
                s.clear();
            }
            s.insert(key);
        }
    }
}

/// The basic-auth check of a router.
#[derive(Clone)]
pub(crate) struct BasicAuth {
    users: Arc<BTreeMap<String, String>>,
    verified: Arc<Verified>,
}

impl BasicAuth {
    pub(crate) fn new(users: &BTreeMap<String, String>) -> BasicAuth {
        BasicAuth {
            users: Arc::new(users.clone()),
            verified: Arc::new(Verified::default()),
        }
    }

    /// Whether the request's `Authorization` header names a user with the right password.
    async fn allows(&self, value: Option<&HeaderValue>) -> bool {
        let Some(encoded) = value
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(text) = String::from_utf8(decoded) else {
            return false;
        };
        let Some((user, password)) = text.split_once(':') else {
            return false;
        };
        let Some(hash) = self.users.get(user).cloned() else {
            return false;
        };
        let key: [u8; 32] = sha2::Sha256::digest(text.as_bytes()).into();
        if self.verified.contains(&key) {
            return true;
        }
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if ok {
            self.verified.insert(key);
        }
        ok
    }
}

/// The middleware: 401 with a `WWW-Authenticate` challenge unless the credentials check.
pub(crate) async fn require_auth(
    axum::extract::State(auth): axum::extract::State<BasicAuth>,
    req: Request,
    next: Next,
) -> Response {
    if auth.allows(req.headers().get(header::AUTHORIZATION)).await {
        return next.run(req).await;
    }
    let mut response = (StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"strata\""),
    );
    response
}

/// An HTTP listener whose connections are TLS (as [`crate::tls::incoming`] accepts them).
pub(crate) struct TlsListener {
    pub(crate) connections: tokio_stream::wrappers::ReceiverStream<std::io::Result<ServerIo>>,
    pub(crate) local: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = ServerIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        use tokio_stream::StreamExt as _;
        loop {
            match self.connections.next().await {
                Some(Ok(io)) => {
                    let peer = io.peer_addr().unwrap_or(self.local);
                    return (io, peer);
                }
                Some(Err(_)) => continue,
                // The accept loop ended (it only does when this listener is dropped).
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
