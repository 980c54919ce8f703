//! The Prometheus HTTP API (`/api/v1/…`), GET and POST form, with Prometheus 3.5's JSON
//! shapes, parameter rules, error types and status codes, plus Thanos' extra parameters
//! (`dedup`, `partial_response`, `replicaLabels[]`, `max_source_resolution`,
//! `storeMatch[]`) and `/api/v1/stores`.
//!
//! - [`params`]: how parameters are read (Go's form semantics, Prometheus' time,
//!   duration and limit parsers);
//! - [`query`]: `query` and `query_range`;
//! - [`meta`]: `series`, `labels`, `label/<name>/values` and the status endpoints;
//! - [`format`]: `format_query` and `parse_query`;
//! - [`error`]: errors by class (one mapping to HTTP status and `errorType`).
//!
//! Every request that reads from the endpoints takes a permit of `--query.max-concurrent`.

mod error;
mod format;
mod meta;
mod params;
mod query;
mod response;
mod rules;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use strata_promql::Engine;
use strata_types::Matcher;

pub use error::ApiError;
use params::Params;

use crate::dedup::DedupFunc;
use crate::endpoints::EndpointSet;
use crate::proxy::FanOut;
use crate::queryable::ReadOptions;

/// Defaults from the querier's flags.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// `--query.replica-label`.
    pub replica_labels: Vec<String>,
    /// `--deduplication.func`.
    pub dedup: DedupFunc,
    /// `--query.partial-response`.
    pub partial_response: bool,
    /// `--store.response-timeout`.
    pub endpoint_timeout: Duration,
    /// `--store.unhealthy-timeout`: endpoints failing longer are not listed.
    pub unhealthy_timeout: Duration,
    /// `--query.auto-downsampling`: `max_source_resolution` defaults to `auto`.
    pub auto_downsampling: bool,
    /// `--query.default-instant-query-max-source-resolution` (ms).
    pub instant_max_source_resolution: i64,
    /// Most series a `series` request may gather (bounds its memory).
    pub max_series: usize,
    /// `--query.max-fetched-bytes`: chunk and label bytes one query may bring in from the
    /// endpoints (0: unlimited); with `--query.max-samples`, its memory budget.
    pub max_fetched_bytes: u64,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            replica_labels: Vec::new(),
            dedup: DedupFunc::Penalty,
            partial_response: true,
            endpoint_timeout: Duration::from_secs(120),
            unhealthy_timeout: Duration::from_secs(300),
            auto_downsampling: false,
            instant_max_source_resolution: 0,
            max_series: 1_000_000,
            max_fetched_bytes: 1 << 30,
        }
    }
}

/// State shared by the handlers.
#[derive(Debug)]
pub struct ApiState {
    /// The endpoints.
    pub endpoints: EndpointSet,
    /// The engine.
    pub engine: Engine,
    /// Defaults.
    pub options: ApiOptions,
    /// `--query.max-concurrent`: every request that reads takes a permit.
    pub gate: strata_runtime::gate::Gate,
    /// `thanos_query_range_requested_timespan_duration_seconds`: the range of each range
    /// query.
    pub range_timespan: prometheus_client::metrics::histogram::Histogram,
    /// The command line's flags, for `/api/v1/status/flags`.
    pub flags: std::collections::BTreeMap<String, String>,
    /// When the querier started, for `/api/v1/status/runtimeinfo`.
    pub started: std::time::SystemTime,
}

/// Thanos' buckets for the requested range: 15 minutes doubling 12 times.
pub fn range_timespan_histogram() -> prometheus_client::metrics::histogram::Histogram {
    prometheus_client::metrics::histogram::Histogram::new(
        prometheus_client::metrics::histogram::exponential_buckets(900.0, 2.0, 12),
    )
}

/// The API routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/v1/query", get(query::query).post(query::query))
        .route(
            "/api/v1/query_range",
            get(query::query_range).post(query::query_range),
        )
        .route("/api/v1/series", get(meta::series).post(meta::series))
        .route("/api/v1/labels", get(meta::labels).post(meta::labels))
        .route("/api/v1/label/{name}/values", get(meta::label_values))
        .route("/api/v1/metadata", get(meta::metadata))
        .route("/api/v1/targets", get(meta::targets))
        .route("/api/v1/rules", get(rules::rules))
        .route("/api/v1/alerts", get(rules::alerts))
        .route(
            "/api/v1/query_exemplars",
            get(meta::exemplars).post(meta::exemplars),
        )
        .route(
            "/api/v1/format_query",
            get(format::format_query).post(format::format_query),
        )
        .route(
            "/api/v1/parse_query",
            get(format::parse_query).post(format::parse_query),
        )
        .route("/api/v1/status/buildinfo", get(meta::buildinfo))
        .route("/api/v1/status/flags", get(meta::flags))
        .route("/api/v1/status/runtimeinfo", get(meta::runtimeinfo))
        .route("/api/v1/stores", get(meta::stores))
        .with_state(state)
}

/// The `handler` label of the HTTP metrics, as Thanos names its query API routes.
pub fn handler_name(_: &axum::http::Method, path: &str) -> Option<&'static str> {
    let name = match path {
        "/api/v1/query" => "query",
        "/api/v1/query_range" => "query_range",
        "/api/v1/series" => "series",
        "/api/v1/labels" => "label_names",
        "/api/v1/metadata" => "metadata",
        "/api/v1/targets" => "targets",
        "/api/v1/rules" => "rules",
        "/api/v1/alerts" => "alerts",
        "/api/v1/query_exemplars" => "exemplars",
        "/api/v1/stores" => "stores",
        "/api/v1/format_query" => "format_query",
        "/api/v1/parse_query" => "parse_query",
        "/api/v1/status/buildinfo" => "status_build",
        "/api/v1/status/flags" => "status_flags",
        "/api/v1/status/runtimeinfo" => "status_runtime",
        p if p.starts_with("/api/v1/label/") && p.ends_with("/values") => "label_values",
        _ => return None,
    };
    Some(name)
}

/// `match[]` selectors (Prometheus' `parseMatchersParam`): each must have a matcher that
/// does not match the empty string.
fn matchers_param(p: &Params) -> Result<Vec<Vec<Matcher>>, String> {
    p.all("match[]")
        .into_iter()
        .map(|s| {
            let matchers = parse_store_selector(s)?;
            if matchers.iter().all(|m| m.matches("")) {
                return Err("match[] must contain at least one non-empty matcher".to_owned());
            }
            Ok(matchers)
        })
        .collect()
}

/// A series selector as matchers, through the PromQL parser, without `match[]`'s rule that
/// one must be non-empty (`storeMatch[]` selectors such as `{__address__=~".*:10901"}`).
fn parse_store_selector(s: &str) -> Result<Vec<Matcher>, String> {
    strata_promql::syntax::parse_selector(s)
        .map(|vs| vs.matchers)
        .map_err(|e| e.display(s).to_string())
}

/// The read settings of a request: Thanos' parameters over the flags' defaults. `step` (ms)
/// is the step of a range query, for `max_source_resolution=auto`.
fn read_options(state: &ApiState, p: &Params, step: Option<i64>) -> Result<ReadOptions, ApiError> {
    let store_matchers = p
        .all("storeMatch[]")
        .iter()
        .map(|s| parse_store_selector(s).map_err(|e| ApiError::param("storeMatch[]", e)))
        .collect::<Result<Vec<_>, _>>()?;
    let dedup = p.bool("dedup", true)?;
    let partial = p.bool("partial_response", state.options.partial_response)?;
    let mut replica_labels: Vec<String> = p
        .all("replicaLabels[]")
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if replica_labels.is_empty() {
        replica_labels = state.options.replica_labels.clone();
    }
    if !dedup {
        replica_labels.clear();
    }
    // Thanos' `parseDownsamplingParamMillis`: `auto` (or `--query.auto-downsampling`) is a
    // fifth of the step, or the instant default for instant queries.
    let value = p.get("max_source_resolution");
    let auto = match step {
        Some(step) => step / 5,
        None => state.options.instant_max_source_resolution,
    };
    let mut max_resolution = 0;
    if state.options.auto_downsampling || value == Some("auto") {
        max_resolution = auto;
    }
    if let Some(v) = value.filter(|v| *v != "auto") {
        let ns = strata_types::api_time::parse_api_duration(v)
            .map_err(|e| ApiError::bad_data(format!("'max_source_resolution' parameter: {e}")))?;
        if ns < 0 {
            return Err(ApiError::bad_data(
                "negative 'max_source_resolution' is not accepted. Try a positive integer",
            ));
        }
        max_resolution = strata_types::api_time::nanos_to_millis(ns);
    }
    Ok(ReadOptions {
        fan_out: FanOut {
            partial_response: partial,
            timeout: state.options.endpoint_timeout,
            store_matchers: Arc::new(store_matchers),
        },
        replica_labels,
        dedup: state.options.dedup,
        max_resolution,
        deadline: None,
        cancel: None,
        budget: crate::proxy::Budget::new(
            u64::try_from(state.engine.options().max_samples).unwrap_or(u64::MAX),
            state.options.max_fetched_bytes,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        assert!(parse_store_selector("{job=\"a\"}").is_ok());
        assert!(parse_store_selector("up + 1").is_err());
        assert!(parse_store_selector("{__address__=~\".*:10901\"}").is_ok());
    }
}
