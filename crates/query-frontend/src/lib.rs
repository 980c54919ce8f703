//! The query frontend (`strata query-frontend`): sits before the queriers as the Grafana
//! datasource URL. Range queries are checked, step-aligned, split at
//! `--query-range.split-interval` boundaries, answered from the results cache where possible
//! (extents per query, step, split, result-changing parameters and caller identity; the
//! freshest `--query-range.response-cache-max-freshness` is never cached; answers with
//! warnings or infos are not cached), the rest asked of the downstream in parallel with
//! retries, and merged into the answer the downstream would give for the whole range. Label
//! and series requests are split by time too. Every other path is proxied unchanged.
//!
//! - [`range`]: `query_range`; [`labels`]: label and series splitting;
//! - [`downstream`]: the client towards the querier (timeouts, size cap, retry policy);
//! - [`split`], [`merge`], [`cache`]: the pieces of a range answer.

pub mod cache;
mod downstream;
mod labels;
pub mod merge;
mod range;
pub mod split;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::any;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use strata_runtime::{Readiness, Shutdown};

use crate::cache::{CacheConfig, ResultsCache};
use crate::downstream::{Downstream, error_response};

/// Largest request body read.
const MAX_REQUEST_BODY: usize = 16 << 20;

/// Settings of `strata query-frontend` (flag names as in Thanos).
#[derive(Debug, Clone)]
pub struct FrontendConfig {
    /// `--query-frontend.downstream-url`.
    pub downstream_url: String,
    /// `--http-address`.
    pub http_address: String,
    /// `--query-range.split-interval` (zero: no splitting).
    pub split_interval: Duration,
    /// `--query-range.align-range-with-step`.
    pub align_range_with_step: bool,
    /// `--query-range.max-retries-per-request`.
    pub max_retries: usize,
    /// `--query-range.response-cache-config(-file)`.
    pub cache: Option<CacheConfig>,
    /// `--query-range.response-cache-max-freshness`.
    pub max_freshness: Duration,
    /// `--query-range.max-query-parallelism`.
    pub parallelism: usize,
    /// `--labels.split-interval`: label and series requests are split at multiples of it
    /// (zero: not split).
    pub labels_split_interval: Duration,
    /// `--query-range.max-query-length`: longer ranges are refused (zero: no limit).
    pub max_query_length: Duration,
    /// Timeout of one downstream request (zero: none).
    pub downstream_timeout: Duration,
    /// Largest downstream answer read.
    pub max_response_body: usize,
    /// `--query-frontend.forward-header`: headers forwarded on split requests (and part of
    /// cache keys), besides `Authorization` and the tenant headers.
    pub forward_headers: Vec<String>,
    /// `--web.route-prefix`: the API (and the proxy) are served under it.
    pub route_prefix: String,
    /// `--query-frontend.log-queries-longer-than` (`None`: off; zero: every query).
    pub log_queries_longer_than: Option<Duration>,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            downstream_url: "http://localhost:9090".into(),
            http_address: "0.0.0.0:10902".into(),
            split_interval: Duration::from_secs(86_400),
            align_range_with_step: true,
            max_retries: 5,
            cache: None,
            max_freshness: Duration::from_secs(60),
            parallelism: 14,
            labels_split_interval: Duration::from_secs(86_400),
            max_query_length: Duration::ZERO,
            downstream_timeout: Duration::from_secs(300),
            max_response_body: 256 << 20,
            forward_headers: Vec::new(),
            route_prefix: String::new(),
            log_queries_longer_than: None,
        }
    }
}

/// Errors that stop the frontend.
#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    /// A server failed.
    #[error(transparent)]
    Server(#[from] strata_runtime::Error),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Client(String),
}

#[derive(Debug, Clone, Default)]
struct Metrics {
    split_queries: Counter,
    /// `thanos_query_frontend_queries_total{op}`.
    queries: prometheus_client::metrics::family::Family<Vec<(&'static str, &'static str)>, Counter>,
    downstream_requests: Counter,
    retries: downstream::Retries,
}

#[derive(Debug)]
struct FrontendState {
    config: FrontendConfig,
    downstream: Downstream,
    cache: ResultsCache,
    metrics: Metrics,
}

/// Runs the frontend until `shutdown` fires.
pub async fn run(config: FrontendConfig, shutdown: Shutdown) -> Result<(), FrontendError> {
    let mut registry = Registry::default();
    // `dns+` memcached addresses are resolved by the client, and again as they change.
    let cache = ResultsCache::new(config.cache.as_ref(), &mut registry);
    let metrics = Metrics::default();
    registry.register(
        "thanos_frontend_split_queries",
        "Total number of underlying query requests after the split by interval.",
        metrics.split_queries.clone(),
    );
    registry.register(
        "thanos_frontend_downstream_requests",
        "Requests sent to the downstream.",
        metrics.downstream_requests.clone(),
    );
    registry.register(
        "thanos_frontend_retries",
        "Retried downstream requests.",
        metrics.retries.total.clone(),
    );
    registry.register(
        "cortex_query_frontend_retries",
        "Number of times a request is retried.",
        metrics.retries.per_request.clone(),
    );
    registry.register(
        "thanos_query_frontend_queries",
        "Total queries passing through query frontend",
        metrics.queries.clone(),
    );
    for op in [
        "query",
        "query_range",
        "label_names",
        "label_values",
        "series",
    ] {
        let _ = metrics.queries.get_or_create(&vec![("op", op)]);
    }
    let downstream = Downstream::new(
        &config.downstream_url,
        config.downstream_timeout,
        config.max_retries,
        config.max_response_body,
        &config.forward_headers,
    )
    .map_err(FrontendError::Client)?;
    let state = Arc::new(FrontendState {
        config: config.clone(),
        downstream,
        cache,
        metrics,
    });
    let ready = Readiness::default();
    ready.set(true);
    let api = Router::new()
        .route("/api/v1/query_range", any(range::query_range))
        .route("/api/v1/labels", any(labels::metadata_split))
        .route("/api/v1/label/{name}/values", any(labels::metadata_split))
        .route("/api/v1/series", any(labels::metadata_split))
        .fallback(proxy)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            count_query,
        ))
        .with_state(state);
    let registry = Arc::new(Mutex::new(registry));
    // Thanos counts every request the frontend handles under one handler name.
    let api =
        strata_runtime::http_metrics::instrument(api, &registry, |_, _| Some("query-frontend"));
    let api = strata_runtime::with_route_prefix(&config.route_prefix, api);
    let router = strata_runtime::http_router(registry, ready, api)
        .layer(tower_http::compression::CompressionLayer::new().gzip(true));
    let listener = strata_runtime::bind(&config.http_address).await?;
    strata_runtime::serve_http(listener, router, shutdown).await?;
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn format_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

async fn read_params(req: Request) -> Result<(HeaderMap, Vec<(String, String)>), Response> {
    let headers = req.headers().clone();
    let mut params: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let body = to_bytes(req.into_body(), MAX_REQUEST_BODY)
        .await
        .map_err(|e| {
            error_response(
                StatusCode::BAD_REQUEST,
                "bad_data",
                &format!("error parsing form values: {e}"),
            )
        })?;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        params.extend(form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    }
    Ok((headers, params))
}

/// Counts the request in `thanos_query_frontend_queries_total` by Thanos' operation names.
async fn count_query(
    State(state): State<Arc<FrontendState>>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    let op = match path {
        "/api/v1/query" => Some("query"),
        "/api/v1/query_range" => Some("query_range"),
        "/api/v1/labels" => Some("label_names"),
        "/api/v1/series" => Some("series"),
        p if p.starts_with("/api/v1/label/") && p.ends_with("/values") => Some("label_values"),
        _ => None,
    };
    if let Some(op) = op {
        state.metrics.queries.get_or_create(&vec![("op", op)]).inc();
    }
    let Some(threshold) = state
        .config
        .log_queries_longer_than
        .filter(|_| op.is_some())
    else {
        return next.run(req).await;
    };
    strata_runtime::slow_query::observe(threshold, req, next).await
}

async fn proxy(State(state): State<Arc<FrontendState>>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let body = match to_bytes(req.into_body(), MAX_REQUEST_BODY).await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "bad_data",
                &format!("error reading the request: {e}"),
            );
        }
    };
    state.metrics.downstream_requests.inc();
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    state
        .downstream
        .forward(method, path, &headers, body, false)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        assert_eq!(format_seconds(1_700_000_000_500), "1700000000.500");
        assert_eq!(format_seconds(-1500), "-1.500");
    }
}
