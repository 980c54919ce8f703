//! The query frontend (`strata query-frontend`): sits before the queriers as the Grafana
//! datasource URL. Range queries are step-aligned, split at `--query-range.split-interval`
//! boundaries, answered from the results cache where possible (extents per query, step,
//! split and result-changing parameters; the freshest `--query-range.response-cache-max-freshness`
//! is never cached; answers with warnings or infos are not cached), the rest asked of the downstream
//! in parallel with retries, and merged into the answer the downstream would give for the
//! whole range. Every other path is proxied unchanged.

pub mod cache;
pub mod merge;
pub mod split;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::StreamExt;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use strata_runtime::{Readiness, Shutdown};

use crate::cache::{CacheConfig, ResultsCache};
use crate::merge::{Extent, Notes, merge_extents, parse_extent, write_answer};
use crate::split::Range;

/// Largest request body forwarded.
const MAX_REQUEST_BODY: usize = 16 << 20;
/// Largest downstream answer read.
const MAX_RESPONSE_BODY: usize = 1 << 30;

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
    downstream_requests: Counter,
    retries: Counter,
}

#[derive(Debug)]
struct FrontendState {
    config: FrontendConfig,
    http: reqwest::Client,
    cache: ResultsCache,
    metrics: Metrics,
}

/// Runs the frontend until `shutdown` fires.
pub async fn run(config: FrontendConfig, shutdown: Shutdown) -> Result<(), FrontendError> {
    let mut registry = Registry::default();
    let mut cache_config = config.cache.clone();
    if let Some(c) = cache_config.as_mut() {
        ResultsCache::resolve_addresses(c).await;
    }
    let cache = ResultsCache::new(cache_config.as_ref(), &mut registry);
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
        metrics.retries.clone(),
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(100)
        .build()
        .map_err(|e| FrontendError::Client(e.to_string()))?;
    let state = Arc::new(FrontendState {
        config: FrontendConfig {
            downstream_url: config.downstream_url.trim_end_matches('/').to_owned(),
            ..config.clone()
        },
        http,
        cache,
        metrics,
    });
    let ready = Readiness::default();
    ready.set(true);
    let api = Router::new()
        .route("/api/v1/query_range", any(query_range))
        .route("/api/v1/labels", any(metadata_split))
        .route("/api/v1/label/{name}/values", any(metadata_split))
        .route("/api/v1/series", any(metadata_split))
        .fallback(proxy)
        .with_state(state);
    let router = strata_runtime::http_router(Arc::new(Mutex::new(registry)), ready, api)
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

/// Prometheus' time parameter: float seconds or RFC 3339 (via the engine's parser there is
/// no RFC 3339 here: such requests are passed through unsplit).
fn parse_seconds(s: &str) -> Option<i64> {
    let f: f64 = s.parse().ok()?;
    f.is_finite().then(|| (f * 1000.0).round() as i64)
}

fn parse_step(s: &str) -> Option<i64> {
    if let Some(ms) = parse_seconds(s) {
        return Some(ms);
    }
    strata_types::time::parse_duration_ms(s).and_then(|ms| i64::try_from(ms).ok())
}

fn format_seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let abs = ms.unsigned_abs();
    format!("{sign}{}.{:03}", abs / 1000, abs % 1000)
}

struct RangeRequest {
    query: String,
    range: Range,
    /// Other parameters (dedup, partial_response, replicaLabels[], …), sorted.
    rest: Vec<(String, String)>,
}

fn parse_range_request(params: &[(String, String)]) -> Option<RangeRequest> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let query = get("query")?.to_owned();
    let start = parse_seconds(get("start")?)?;
    let end = parse_seconds(get("end")?)?;
    let step = parse_step(get("step")?)?;
    if step <= 0 || end < start || query.is_empty() {
        return None;
    }
    let mut rest: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "query" | "start" | "end" | "step"))
        .cloned()
        .collect();
    rest.sort();
    Some(RangeRequest {
        query,
        range: Range { start, end, step },
        rest,
    })
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
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()).into_response())?;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if is_form {
        params.extend(form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())));
    }
    Ok((headers, params))
}

/// A downstream answer that is not a success (returned to the client as is).
struct Passthrough(Response);

async fn downstream_range(
    state: &FrontendState,
    request: &RangeRequest,
    range: Range,
    headers: &HeaderMap,
) -> Result<(Extent, Notes), Passthrough> {
    let query = {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("query", &request.query);
        form.append_pair("start", &format_seconds(range.start));
        form.append_pair("end", &format_seconds(range.end));
        form.append_pair("step", &format_seconds(range.step));
        for (k, v) in &request.rest {
            form.append_pair(k, v);
        }
        form.finish()
    };
    let url = format!("{}/api/v1/query_range?{query}", state.config.downstream_url);
    let mut attempt = 0;
    loop {
        attempt += 1;
        state.metrics.downstream_requests.inc();
        let mut builder = state.http.get(&url);
        for name in [header::AUTHORIZATION] {
            if let Some(v) = headers.get(&name) {
                builder = builder.header(name, v);
            }
        }
        let result = builder.send().await;
        let retry = match result {
            Ok(resp) if resp.status().is_server_error() && attempt <= state.config.max_retries => {
                true
            }
            Ok(resp) => {
                let status = resp.status();
                let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
                let body = resp.bytes().await.map_err(|e| {
                    Passthrough((StatusCode::BAD_GATEWAY, e.to_string()).into_response())
                })?;
                if status.is_success()
                    && let Ok(parsed) = parse_extent(&body, range.start, range.end)
                {
                    return Ok(parsed);
                }
                let mut response = Response::new(Body::from(body));
                *response.status_mut() =
                    StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                if let Some(ct) = content_type
                    && let Ok(v) = HeaderValue::from_bytes(ct.as_bytes())
                {
                    response.headers_mut().insert(header::CONTENT_TYPE, v);
                }
                return Err(Passthrough(response));
            }
            Err(e) if attempt <= state.config.max_retries => {
                tracing::debug!(error = %e, attempt, "downstream request failed; retrying");
                true
            }
            Err(e) => {
                return Err(Passthrough(
                    (StatusCode::BAD_GATEWAY, format!("downstream: {e}")).into_response(),
                ));
            }
        };
        if retry {
            state.metrics.retries.inc();
            tokio::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
        }
    }
}

/// Answers one split: from the cache, extending a cached extent, or from the downstream.
async fn answer_split(
    state: &FrontendState,
    request: &RangeRequest,
    split: Range,
    interval: i64,
    headers: &HeaderMap,
) -> Result<(Extent, Notes), Passthrough> {
    state.metrics.split_queries.inc();
    if !state.cache.enabled() {
        return downstream_range(state, request, split, headers).await;
    }
    let index = if interval > 0 {
        split.start.div_euclid(interval)
    } else {
        0
    };
    let key = format!(
        "{}:{}:{}:{}:{:?}",
        request.query, split.step, interval, index, request.rest
    );
    let cached: Option<Extent> = state
        .cache
        .get(&key)
        .await
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let (extent, warnings) = match cached {
        Some(c) if c.start <= split.start && c.end >= split.end => {
            return Ok((c.slice(split.start, split.end), Notes::default()));
        }
        Some(c) if c.start <= split.start && c.end >= split.start => {
            // Only the part after the cached extent is asked for, on the split's grid.
            let steps = (c.end - split.start) / split.step + 1;
            let from = split.start + steps * split.step;
            if from > split.end {
                return Ok((c.slice(split.start, split.end), Notes::default()));
            }
            let rest = Range {
                start: from,
                end: split.end,
                step: split.step,
            };
            let (fresh, warnings) = downstream_range(state, request, rest, headers).await?;
            (
                merge_extents(vec![c.slice(split.start, c.end), fresh]),
                warnings,
            )
        }
        _ => downstream_range(state, request, split, headers).await?,
    };
    let cutoff = now_ms() - state.config.max_freshness.as_millis() as i64;
    if warnings.is_empty() {
        let cache_end = extent.end.min(cutoff);
        if cache_end >= extent.start {
            let stored = Extent {
                start: extent.start,
                end: cache_end,
                ..extent.slice(extent.start, cache_end)
            };
            if let Ok(bytes) = serde_json::to_vec(&stored) {
                state.cache.set(&key, bytes).await;
            }
        }
    }
    Ok((
        Extent {
            start: split.start,
            end: split.end,
            ..extent
        },
        warnings,
    ))
}

async fn query_range(State(state): State<Arc<FrontendState>>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let (headers, params) = match read_params(req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(mut request) = parse_range_request(&params) else {
        // Let the downstream report what is wrong, in its own words.
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        return forward(&state, method, &uri, &headers, body.into_bytes(), true).await;
    };
    if state.config.align_range_with_step {
        request.range = request.range.aligned();
    }
    let interval = state.config.split_interval.as_millis() as i64;
    let splits = request.range.split(interval);
    let parts: Vec<Result<(Extent, Notes), Passthrough>> = futures::stream::iter(splits)
        .map(|split| answer_split(&state, &request, split, interval, &headers))
        .buffered(state.config.parallelism.max(1))
        .collect()
        .await;
    let mut extents = Vec::with_capacity(parts.len());
    let mut notes = Notes::default();
    for part in parts {
        match part {
            Ok((e, n)) => {
                extents.push(e);
                notes.extend(n);
            }
            Err(Passthrough(response)) => return response,
        }
    }
    let body = write_answer(&merge_extents(extents), &notes);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Splits `/api/v1/labels`, `/api/v1/label/<name>/values` and `/api/v1/series` requests
/// with a time range at `--labels.split-interval` boundaries, asks the downstream for each
/// part in parallel and returns the union (sorted, as the downstream sorts it).
async fn metadata_split(State(state): State<Arc<FrontendState>>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let (headers, params) = match read_params(req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let interval = state.config.labels_split_interval.as_millis() as i64;
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let range = match (
        get("start").and_then(parse_seconds),
        get("end").and_then(parse_seconds),
    ) {
        (Some(s), Some(e)) if e >= s && interval > 0 && e - s > interval => Some((s, e)),
        _ => None,
    };
    let form = || {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish()
    };
    let Some((start, end)) = range else {
        if method == axum::http::Method::GET {
            return forward(&state, method, &uri, &headers, Vec::new(), false).await;
        }
        return forward(&state, method, &uri, &headers, form().into_bytes(), true).await;
    };
    let mut parts = Vec::new();
    let mut from = start;
    while from <= end {
        let boundary = (from.div_euclid(interval) + 1) * interval;
        let to = (boundary - 1).min(end);
        parts.push((from, to));
        from = boundary;
    }
    let path = uri.path().to_owned();
    let is_series = path.ends_with("/series");
    let answers: Vec<Result<serde_json::Value, Response>> = futures::stream::iter(parts)
        .map(|(from, to)| {
            let mut sub: Vec<(String, String)> = params
                .iter()
                .filter(|(k, _)| k != "start" && k != "end")
                .cloned()
                .collect();
            sub.push(("start".into(), format_seconds(from)));
            sub.push(("end".into(), format_seconds(to)));
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(sub.iter())
                .finish();
            let state = &state;
            let path = &path;
            let headers = &headers;
            async move {
                // GET: Prometheus serves label values over GET only.
                let url = format!("{}{path}?{body}", state.config.downstream_url);
                state.metrics.downstream_requests.inc();
                let mut builder = state.http.get(&url);
                if let Some(v) = headers.get(header::AUTHORIZATION) {
                    builder = builder.header("authorization", v.as_bytes());
                }
                let resp = builder.send().await.map_err(|e| {
                    (StatusCode::BAD_GATEWAY, format!("downstream: {e}")).into_response()
                })?;
                let status = resp.status();
                let bytes = resp.bytes().await.map_err(|e| {
                    (StatusCode::BAD_GATEWAY, format!("downstream: {e}")).into_response()
                })?;
                if !status.is_success() {
                    let mut r = Response::new(Body::from(bytes));
                    *r.status_mut() =
                        StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    return Err(r);
                }
                serde_json::from_slice::<serde_json::Value>(&bytes).map_err(|e| {
                    (StatusCode::BAD_GATEWAY, format!("downstream: {e}")).into_response()
                })
            }
        })
        .buffered(state.config.parallelism.max(1))
        .collect()
        .await;
    let mut strings: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut series: BTreeMap<strata_types::Labels, BTreeMap<String, String>> = BTreeMap::new();
    let mut notes = Notes::default();
    for answer in answers {
        let value = match answer {
            Ok(v) => v,
            Err(r) => return r,
        };
        let list = |key: &str| -> Vec<String> {
            value
                .get(key)
                .and_then(|w| w.as_array())
                .map(|w| {
                    w.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        notes.extend(Notes {
            warnings: list("warnings"),
            infos: list("infos"),
        });
        let Some(data) = value.get("data").and_then(|d| d.as_array()) else {
            continue;
        };
        for item in data {
            if is_series {
                let Some(obj) = item.as_object() else {
                    continue;
                };
                let metric: BTreeMap<String, String> = obj
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect();
                let key = strata_types::Labels::from_pairs(
                    metric.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                );
                series.insert(key, metric);
            } else if let Some(s) = item.as_str() {
                strings.insert(s.to_owned());
            }
        }
    }
    let data = if is_series {
        serde_json::to_string(&series.into_values().collect::<Vec<_>>())
    } else {
        serde_json::to_string(&strings.into_iter().collect::<Vec<_>>())
    }
    .unwrap_or_else(|_| "[]".into());
    let mut body = format!("{{\"status\":\"success\",\"data\":{data}");
    body.push_str(&notes.json_members());
    body.push('}');
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn proxy(State(state): State<Arc<FrontendState>>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let headers = req.headers().clone();
    let body = match to_bytes(req.into_body(), MAX_REQUEST_BODY).await {
        Ok(b) => b.to_vec(),
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    forward(&state, method, &uri, &headers, body, false).await
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Forwards a request to the downstream and its answer back, unchanged but for hop-by-hop
/// headers (compression is negotiated separately on each side).
async fn forward(
    state: &FrontendState,
    method: axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Vec<u8>,
    as_form: bool,
) -> Response {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let path = if as_form { uri.path() } else { path };
    let url = format!("{}{path}", state.config.downstream_url);
    let Ok(method) = reqwest::Method::from_bytes(method.as_str().as_bytes()) else {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    };
    let method = if as_form {
        reqwest::Method::POST
    } else {
        method
    };
    let mut builder = state.http.request(method, &url);
    for (name, value) in headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || n == "accept-encoding" || n == "content-length" {
            continue;
        }
        if as_form && n == "content-type" {
            continue;
        }
        builder = builder.header(n, value.as_bytes());
    }
    if as_form {
        builder = builder.header("content-type", "application/x-www-form-urlencoded");
    }
    state.metrics.downstream_requests.inc();
    let resp = match builder.body(body).send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("downstream: {e}")).into_response(),
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out_headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || n == "content-length" || n == "content-encoding" {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            out_headers.append(n, v);
        }
    }
    let bytes = match resp.bytes().await {
        Ok(b) if b.len() <= MAX_RESPONSE_BODY => b,
        Ok(_) => return (StatusCode::BAD_GATEWAY, "downstream answer too large").into_response(),
        Err(e) => return (StatusCode::BAD_GATEWAY, format!("downstream: {e}")).into_response(),
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    *response.headers_mut() = out_headers;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params() {
        assert_eq!(parse_step("60"), Some(60_000));
        assert_eq!(parse_step("1m30s"), Some(90_000));
        assert_eq!(parse_step("0.5"), Some(500));
        assert_eq!(format_seconds(1_700_000_000_500), "1700000000.500");
        assert_eq!(format_seconds(-1500), "-1.500");
    }
}
