//! What every component serves on its HTTP address and how it stops.
//!
//! - `/metrics`: the component's Prometheus registry (OpenMetrics text);
//! - `/-/healthy`: 200 once the process is up;
//! - `/-/ready`: 200 when the component says it is ready, else 503 `NOT OK`, as Thanos;
//! - extra routes a component adds (the querier's HTTP API).
//!
//! [`Shutdown`] turns SIGINT/SIGTERM into a future every server awaits.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub mod cors;
pub mod gate;
pub mod http_metrics;
pub mod process;
pub mod slow_query;
pub mod tasks;
pub mod tls;
pub mod trace;
pub mod web;
pub use tasks::{SHUTDOWN_GRACE, TaskFailure, Tasks};
pub use tls::{ServerTls, TlsError, TlsFiles, TlsVersion};

/// Errors starting a server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Binding the listen address failed.
    #[error("listen on {address}: {source}")]
    Bind {
        /// The address.
        address: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("serve {address}: {source}")]
    Serve {
        /// The address.
        address: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
}

/// Readiness of a component, shared between the component and its HTTP server.
#[derive(Debug, Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the component ready (or not).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Whether the component is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A shared metrics registry.
pub type SharedRegistry = Arc<Mutex<Registry>>;

#[derive(Clone)]
struct HttpState {
    registry: SharedRegistry,
    ready: Readiness,
}

/// The HTTP routes every component serves, plus `extra`.
pub fn http_router(registry: SharedRegistry, ready: Readiness, extra: Router) -> Router {
    // Every component exports its build and process metrics, as Thanos' components do.
    if let Ok(mut registry) = registry.lock() {
        process::register(&mut registry);
    }
    let state = HttpState { registry, ready };
    let base = Router::new()
        .route("/metrics", get(metrics))
        .route("/-/healthy", get(healthy))
        .route("/-/ready", get(ready_handler))
        .with_state(state);
    // A handler that panics (a bug) answers 500 in the API's error shape; the process and
    // the connection's other requests carry on.
    base.merge(extra)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
}

/// `routes` under `prefix` (`""`: unchanged; else e.g. `/thanos`), as `--web.route-prefix`
/// serves a component's API; health and metrics stay at the root.
pub fn with_route_prefix(prefix: &str, routes: Router) -> Router {
    if prefix.is_empty() || prefix == "/" {
        routes
    } else {
        Router::new().nest(prefix, routes)
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("an HTTP handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"error","errorType":"internal","error":"internal error: the request's handler failed"}"#,
    )
        .into_response()
}

async fn metrics(State(state): State<HttpState>) -> Response {
    let mut body = String::new();
    let encoded = match state.registry.lock() {
        Ok(registry) => prometheus_client::encoding::text::encode(&mut body, &registry),
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "registry poisoned").into_response(),
    };
    if encoded.is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, "encoding metrics failed").into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn healthy() -> &'static str {
    "OK"
}

async fn ready_handler(State(state): State<HttpState>) -> Response {
    if state.ready.is_ready() {
        (StatusCode::OK, "OK").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "NOT OK").into_response()
    }
}

/// Where Go's `net.Listen` form `:port` listens: every interface, dual-stack `[::]` first and
/// IPv4 alone where IPv6 is unavailable. `None` for any other form (`host:port`,
/// `0.0.0.0:port`, `[::]:port`), which is bound as written.
pub fn all_interfaces(address: &str) -> Option<Result<[SocketAddr; 2], std::num::ParseIntError>> {
    let port = address.strip_prefix(':')?;
    Some(port.parse::<u16>().map(|port| {
        [
            SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port)),
            SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, port)),
        ]
    }))
}

/// Binds `address` in any form Thanos (Go's `net.Listen`) accepts: `host:port`,
/// `0.0.0.0:port`, `[::]:port`, and `:port` for every interface (see [`all_interfaces`]), as
/// the Prometheus Operator and Helm charts pass them.
pub async fn bind(address: &str) -> Result<TcpListener, Error> {
    let error = |source| Error::Bind {
        address: address.to_owned(),
        source,
    };
    if let Some(addresses) = all_interfaces(address) {
        let [dual, v4] = addresses.map_err(|_| {
            error(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the port is not a number from 0 to 65535",
            ))
        })?;
        return match TcpListener::bind(dual).await {
            Ok(listener) => Ok(listener),
            Err(_) => TcpListener::bind(v4).await.map_err(error),
        };
    }
    TcpListener::bind(address).await.map_err(error)
}

/// Serves `router` on `listener` until `shutdown` fires.
pub async fn serve_http(
    listener: TcpListener,
    router: Router,
    mut shutdown: Shutdown,
) -> Result<(), Error> {
    let address = listener
        .local_addr()
        .map(|a: SocketAddr| a.to_string())
        .unwrap_or_default();
    // `--http.config` (see [`web`]): basic auth on every route, TLS on the listener.
    let web = web::installed();
    let router = match &web {
        Some(config) if !config.users.is_empty() => {
            router.layer(axum::middleware::from_fn_with_state(
                web::BasicAuth::new(&config.users),
                web::require_auth,
            ))
        }
        _ => router,
    };
    if let Some(tls) = web.as_ref().and_then(|w| w.tls.clone()) {
        tracing::info!(address = %address, "serving HTTPS");
        let local = listener.local_addr().map_err(|source| Error::Serve {
            address: address.clone(),
            source,
        })?;
        let listener = web::TlsListener {
            connections: tls::incoming(listener, Some(tls.for_http())),
            local,
        };
        return axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.wait().await })
            .await
            .map_err(|source| Error::Serve { address, source });
    }
    tracing::info!(address = %address, "serving HTTP");
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
        .map_err(|source| Error::Serve { address, source })
}

/// A shutdown signal shared by every task of a component.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Fires a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

impl Shutdown {
    /// A new signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger { tx }, Shutdown { rx })
    }

    /// Resolves once shutdown has been triggered (or the trigger is gone).
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    /// Whether shutdown has been triggered.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }
}

impl ShutdownTrigger {
    /// Triggers shutdown.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    /// Triggers shutdown on SIGINT or SIGTERM.
    pub async fn on_signals(self) {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(term) => term,
                    Err(_) => {
                        let _ = ctrl_c.await;
                        self.trigger();
                        return;
                    }
                };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        tracing::info!("shutting down");
        self.trigger();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use tower::ServiceExt;

    async fn boom() -> &'static str {
        let bugs: Vec<&'static str> = Vec::new();
        bugs.first().copied().expect("a bug")
    }

    /// Tests bind only to 127.0.0.1: the all-interfaces form is checked as addresses.
    #[tokio::test]
    async fn every_address_form_go_accepts() {
        let [dual, v4] = all_interfaces(":10901").unwrap().unwrap();
        assert_eq!(dual.to_string(), "[::]:10901");
        assert_eq!(v4.to_string(), "0.0.0.0:10901");
        assert!(all_interfaces("0.0.0.0:10901").is_none());
        assert!(all_interfaces("[::]:10901").is_none());
        for bad in [":", ":x", ":70000"] {
            assert!(all_interfaces(bad).unwrap().is_err(), "{bad}");
            assert!(bind(bad).await.is_err(), "{bad}");
        }
        for address in ["127.0.0.1:0", "localhost:0"] {
            let listener = bind(address).await.unwrap();
            assert!(listener.local_addr().unwrap().port() > 0, "{address}");
        }
        assert!(bind("nohost").await.is_err());
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_the_api_shape() {
        let extra = Router::new().route("/boom", get(boom));
        let router = http_router(
            Arc::new(Mutex::new(Registry::default())),
            Readiness::default(),
            extra,
        );
        let request = axum::http::Request::get("/boom")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        assert!(body.starts_with(br#"{"status":"error","errorType":"internal""#));
        // The router still answers.
        let request = axum::http::Request::get("/-/healthy")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(
            router.oneshot(request).await.unwrap().status(),
            StatusCode::OK
        );
    }
}
