//! Thanos' HTTP server metrics (`pkg/extprom/http`): `http_requests_total`,
//! `http_request_duration_seconds`, `http_request_size_bytes`, `http_response_size_bytes`
//! `{code, handler, method}` and `http_inflight_requests{handler, method}`, with Thanos'
//! buckets. The handler label is what the component names each route (Thanos' names:
//! `query`, `query_range`, `series`, `label_names`, `label_values`, … on the querier,
//! `query-frontend` on the frontend); routes a component does not name are not counted,
//! as Thanos does not count `/metrics` or the probes.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Names a request's route for the `handler` label (`None`: not counted).
pub type HandlerName = fn(&axum::http::Method, &str) -> Option<&'static str>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    code: String,
    handler: &'static str,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InflightLabels {
    handler: &'static str,
    method: String,
}

const DURATION_BUCKETS: [f64; 17] = [
    0.001, 0.01, 0.1, 0.3, 0.6, 1.0, 3.0, 6.0, 9.0, 20.0, 30.0, 60.0, 90.0, 120.0, 240.0, 360.0,
    720.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

fn bytes_histogram() -> Histogram {
    Histogram::new(exponential_buckets(64.0, 2.0, 10))
}

type HistogramFamily = Family<RequestLabels, Histogram, fn() -> Histogram>;

/// The HTTP metrics of one server.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    request_size: HistogramFamily,
    response_size: HistogramFamily,
    inflight: Family<InflightLabels, Gauge>,
    name: HandlerName,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpMetrics")
    }
}

impl HttpMetrics {
    /// Metrics for routes named by `name`, registered in `registry`.
    pub fn new(registry: &mut Registry, name: HandlerName) -> Arc<HttpMetrics> {
        let metrics = HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            request_size: Family::new_with_constructor(bytes_histogram as fn() -> Histogram),
            response_size: Family::new_with_constructor(bytes_histogram as fn() -> Histogram),
            inflight: Family::default(),
            name,
        };
        registry.register(
            "http_requests",
            "Tracks the number of HTTP requests.",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Tracks the latencies for HTTP requests.",
            metrics.duration.clone(),
        );
        registry.register(
            "http_request_size_bytes",
            "Tracks the size of HTTP requests.",
            metrics.request_size.clone(),
        );
        registry.register(
            "http_response_size_bytes",
            "Tracks the size of HTTP responses.",
            metrics.response_size.clone(),
        );
        registry.register(
            "http_inflight_requests",
            "Current number of HTTP requests the handler is responding to.",
            metrics.inflight.clone(),
        );
        Arc::new(metrics)
    }
}

/// Approximate size of a request as Prometheus' client counts it: method, URL, protocol,
/// headers and the body's declared length.
fn request_size(req: &Request) -> u64 {
    let mut size = req.method().as_str().len() + req.uri().to_string().len() + 8;
    for (name, value) in req.headers() {
        size += name.as_str().len() + value.len();
    }
    let body = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    size as u64 + body
}

struct Inflight(Gauge);

impl Inflight {
    fn enter(gauge: Gauge) -> Inflight {
        gauge.inc();
        Inflight(gauge)
    }
}

impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `routes` with the HTTP metrics of the routes `name` names, registered in `registry`.
pub fn instrument(
    routes: axum::Router,
    registry: &crate::SharedRegistry,
    name: HandlerName,
) -> axum::Router {
    let metrics = match registry.lock() {
        Ok(mut registry) => HttpMetrics::new(&mut registry, name),
        Err(_) => return routes,
    };
    routes.layer(axum::middleware::from_fn_with_state(metrics, track))
}

/// The middleware: counts and times the requests of named routes.
pub async fn track(State(metrics): State<Arc<HttpMetrics>>, req: Request, next: Next) -> Response {
    let Some(handler) = (metrics.name)(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let method = req.method().as_str().to_ascii_lowercase();
    let inflight = InflightLabels {
        handler,
        method: method.clone(),
    };
    let size = request_size(&req);
    // Decremented when the request ends, also when its client goes away mid-request.
    let _inflight = Inflight::enter(metrics.inflight.get_or_create(&inflight).clone());
    let started = Instant::now();
    // One span per request, continuing the caller's trace (`traceparent`) when it sent one.
    let span = tracing::info_span!(
        "http.request",
        otel.name = %format!("HTTP {} {handler}", req.method()),
        otel.kind = "server",
        http.method = %req.method(),
        http.route = handler,
        http.status_code = tracing::field::Empty,
    );
    crate::trace::continue_from(&span, req.headers());
    let response = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    span.record("http.status_code", response.status().as_u16());
    let labels = RequestLabels {
        code: response.status().as_u16().to_string(),
        handler,
        method,
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .duration
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    metrics
        .request_size
        .get_or_create(&labels)
        .observe(size as f64);
    let body = axum::body::HttpBody::size_hint(response.body())
        .exact()
        .unwrap_or(0);
    metrics
        .response_size
        .get_or_create(&labels)
        .observe(body as f64);
    response
}
