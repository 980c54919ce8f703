//! The Prometheus HTTP API (`/api/v1/…`), GET and POST form, with Prometheus' JSON shapes,
//! error types and status codes, plus Thanos' extra parameters (`dedup`,
//! `partial_response`, `replicaLabels[]`, `max_source_resolution`) and `/api/v1/stores`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::to_bytes;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use strata_promql::{Engine, QueryResult};
use strata_types::{Labels, Matcher};
use tokio::sync::Semaphore;

use crate::dedup::DedupFunc;
use crate::endpoints::EndpointSet;
use crate::json::{write_labels, write_query_data, write_str};
use crate::proxy::{self, FanOut};
use crate::queryable::{ReadOptions, StoreQueryable};

/// Most points a range query may return per series (Prometheus' limit).
const MAX_POINTS: i64 = 11_000;
/// Largest request body read for POST forms.
const MAX_BODY: usize = 8 << 20;

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
    /// `--query.max-concurrent`.
    pub gate: Semaphore,
}

/// An API error: Prometheus' `errorType` and message.
#[derive(Debug)]
pub struct ApiError {
    kind: &'static str,
    message: String,
}

impl ApiError {
    fn bad_data(message: impl Into<String>) -> Self {
        ApiError {
            kind: "bad_data",
            message: message.into(),
        }
    }

    fn param(name: &str, message: impl std::fmt::Display) -> Self {
        ApiError::bad_data(format!("invalid parameter \"{name}\": {message}"))
    }

    fn status(&self) -> StatusCode {
        match self.kind {
            "bad_data" => StatusCode::BAD_REQUEST,
            "execution" => StatusCode::UNPROCESSABLE_ENTITY,
            "timeout" | "canceled" | "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            "not_found" => StatusCode::NOT_FOUND,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = String::from("{\"status\":\"error\",\"errorType\":\"");
        body.push_str(self.kind);
        body.push_str("\",\"error\":");
        write_str(&mut body, &self.message);
        body.push('}');
        (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

impl From<strata_promql::Error> for ApiError {
    fn from(e: strata_promql::Error) -> Self {
        ApiError {
            kind: e.error_type(),
            message: e.to_string(),
        }
    }
}

fn success(data: &str, warnings: &[String]) -> Response {
    success_with_infos(data, warnings, &[])
}

/// A success answer with Prometheus' `warnings` and `infos` (each left out when empty).
fn success_with_infos(data: &str, warnings: &[String], infos: &[String]) -> Response {
    let mut body = String::with_capacity(data.len() + 64);
    body.push_str("{\"status\":\"success\",\"data\":");
    body.push_str(data);
    for (key, list) in [("warnings", warnings), ("infos", infos)] {
        if list.is_empty() {
            continue;
        }
        body.push_str(",\"");
        body.push_str(key);
        body.push_str("\":[");
        for (i, w) in list.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            write_str(&mut body, w);
        }
        body.push(']');
    }
    body.push('}');
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

/// The API routes.
pub fn router(state: Arc<ApiState>) -> Router {
    Router::new()
        .route("/api/v1/query", get(query).post(query))
        .route("/api/v1/query_range", get(query_range).post(query_range))
        .route("/api/v1/series", get(series).post(series))
        .route("/api/v1/labels", get(labels).post(labels))
        .route("/api/v1/label/{name}/values", get(label_values))
        .route("/api/v1/metadata", get(metadata))
        .route("/api/v1/query_exemplars", get(exemplars).post(exemplars))
        .route("/api/v1/status/buildinfo", get(buildinfo))
        .route("/api/v1/stores", get(stores))
        .with_state(state)
}

/// The request's parameters: the query string, then a form body.
struct Params(Vec<(String, String)>);

impl Params {
    async fn from_request(req: Request) -> Result<Params, ApiError> {
        let mut pairs: Vec<(String, String)> = req
            .uri()
            .query()
            .map(|q| parse_form(q.as_bytes()))
            .unwrap_or_default();
        let is_form = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            let body = to_bytes(req.into_body(), MAX_BODY)
                .await
                .map_err(|e| ApiError::bad_data(format!("error parsing form: {e}")))?;
            pairs.extend(parse_form(&body));
        }
        Ok(Params(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn bool(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "t" | "true" => Ok(true),
                "0" | "f" | "false" => Ok(false),
                _ => Err(ApiError::param(
                    name,
                    format!("cannot parse {v:?} to a boolean"),
                )),
            },
        }
    }
}

fn parse_form(data: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(data)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Prometheus' `parseTime`: float seconds (rounded to ms) or RFC 3339.
fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        let whole = f.trunc();
        let frac = ((f - whole) * 1000.0).round();
        return Ok((whole as i64)
            .saturating_mul(1000)
            .saturating_add(frac as i64));
    }
    match s {
        // Prometheus' minimum and maximum times as strings.
        "-292273086-05-16T16:47:06Z" => return Ok(i64::MIN / 1000 * 1000),
        "292277025-08-18T07:12:54.999999999Z" => return Ok(i64::MAX / 1000 * 1000),
        _ => {}
    }
    strata_types::time::parse_rfc3339_ms(s)
        .ok_or_else(|| format!("cannot parse {s:?} to a valid timestamp"))
}

/// Prometheus' `parseDuration`: float seconds or a Prometheus duration.
fn parse_duration(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>()
        && f.is_finite()
    {
        let ms = (f * 1000.0).round();
        if ms.abs() >= i64::MAX as f64 {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(ms as i64);
    }
    strata_types::time::parse_duration_ms(s)
        .and_then(|ms| i64::try_from(ms).ok())
        .ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

fn time_param(p: &Params, name: &str, default: i64) -> Result<i64, ApiError> {
    match p.get(name) {
        None => Ok(default),
        Some(v) => parse_time(v).map_err(|e| ApiError::param(name, e)),
    }
}

fn matchers_param(p: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let mut sets = Vec::new();
    for selector in p.all("match[]") {
        sets.push(parse_selector(selector).map_err(|e| ApiError::param("match[]", e))?);
    }
    Ok(sets)
}

fn parse_selector(s: &str) -> Result<Vec<Matcher>, String> {
    let out = parse_store_selector(s)?;
    if out.iter().all(|m| m.matches("")) {
        return Err("match[] must contain at least one non-empty matcher".into());
    }
    Ok(out)
}

/// A series selector as matchers, without `match[]`'s rule that one must be non-empty
/// (`storeMatch[]` selectors such as `{__address__=~".*:10901"}`).
fn parse_store_selector(s: &str) -> Result<Vec<Matcher>, String> {
    strata_promql::syntax::parse_selector(s)
        .map(|vs| vs.matchers)
        .map_err(|e| e.display(s).to_string())
}

fn read_options(state: &ApiState, p: &Params) -> Result<ReadOptions, ApiError> {
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
    let max_resolution = match p.get("max_source_resolution") {
        None | Some("0s") => 0,
        // Thanos: a fifth of the step (raw data for instant queries).
        Some("auto") => p
            .get("step")
            .and_then(|s| parse_duration(s).ok())
            .map_or(0, |step| step / 5),
        Some(v) => {
            let ms = parse_duration(v).map_err(|e| ApiError::param("max_source_resolution", e))?;
            if ms < 0 {
                return Err(ApiError::param(
                    "max_source_resolution",
                    "negative duration",
                ));
            }
            ms
        }
    };
    Ok(ReadOptions {
        fan_out: FanOut {
            partial_response: partial,
            timeout: state.options.endpoint_timeout,
            store_matchers: Arc::new(store_matchers),
        },
        replica_labels,
        dedup: state.options.dedup,
        max_resolution,
    })
}

async fn run_query(
    state: Arc<ApiState>,
    options: ReadOptions,
    eval: impl FnOnce(&Engine, &StoreQueryable) -> Result<QueryResult, strata_promql::Error>
    + Send
    + 'static,
) -> Result<(QueryResult, Vec<String>), ApiError> {
    let _permit = state.gate.acquire().await.map_err(|_| ApiError {
        kind: "unavailable",
        message: "querier is shutting down".into(),
    })?;
    let handle = tokio::runtime::Handle::current();
    let endpoints = state.endpoints.clone();
    let engine = state.engine.clone();
    let joined = tokio::task::spawn_blocking(move || {
        let queryable = StoreQueryable::new(handle, endpoints, options);
        let result = eval(&engine, &queryable);
        (result, queryable.take_warnings())
    })
    .await
    .map_err(|e| ApiError {
        kind: "internal",
        message: e.to_string(),
    })?;
    let (result, warnings) = joined;
    Ok((result?, warnings))
}

async fn query(State(state): State<Arc<ApiState>>, req: Request) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let q = p
        .get("query")
        .ok_or_else(|| ApiError::param("query", "query is empty"))?
        .to_owned();
    let time = time_param(&p, "time", now_ms())?;
    let expr = Engine::parse(&q).map_err(|e| ApiError::param("query", e))?;
    let options = read_options(&state, &p)?;
    let (result, storage_warnings) =
        run_query(Arc::clone(&state), options, move |engine, queryable| {
            engine.instant_expr(queryable, &expr, time)
        })
        .await?;
    let (warnings, infos) = annotation_strings(storage_warnings, result.annotations, &q);
    let mut data = String::new();
    write_query_data(&mut data, &result.value, time);
    Ok(success_with_infos(&data, &warnings, &infos))
}

async fn query_range(
    State(state): State<Arc<ApiState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let q = p
        .get("query")
        .ok_or_else(|| ApiError::param("query", "query is empty"))?
        .to_owned();
    let start = p
        .get("start")
        .ok_or_else(|| ApiError::param("start", "cannot parse \"\" to a valid timestamp"))
        .and_then(|v| parse_time(v).map_err(|e| ApiError::param("start", e)))?;
    let end = p
        .get("end")
        .ok_or_else(|| ApiError::param("end", "cannot parse \"\" to a valid timestamp"))
        .and_then(|v| parse_time(v).map_err(|e| ApiError::param("end", e)))?;
    if end < start {
        return Err(ApiError::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step = p
        .get("step")
        .ok_or_else(|| ApiError::param("step", "cannot parse \"\" to a valid duration"))
        .and_then(|v| parse_duration(v).map_err(|e| ApiError::param("step", e)))?;
    if step <= 0 {
        return Err(ApiError::param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let expr = Engine::parse(&q).map_err(|e| ApiError::param("query", e))?;
    let options = read_options(&state, &p)?;
    let (result, storage_warnings) =
        run_query(Arc::clone(&state), options, move |engine, queryable| {
            engine.range_expr(queryable, &expr, start, end, step)
        })
        .await?;
    let (warnings, infos) = annotation_strings(storage_warnings, result.annotations, &q);
    let mut data = String::new();
    write_query_data(&mut data, &result.value, end);
    Ok(success_with_infos(&data, &warnings, &infos))
}

/// A query's warnings and infos as Prometheus' API shows them: storage warnings (failed
/// endpoints) and the engine's annotations, with positions in `query`, at most ten of each.
fn annotation_strings(
    storage: Vec<String>,
    engine: strata_promql::Annotations,
    query: &str,
) -> (Vec<String>, Vec<String>) {
    let mut all = strata_promql::Annotations::default();
    for w in storage {
        all.add_warning_text(w);
    }
    all.merge(engine);
    all.as_strings(query, 10)
}

fn range_params(p: &Params) -> Result<(i64, i64), ApiError> {
    let start = time_param(p, "start", i64::MIN / 2)?;
    let end = time_param(p, "end", i64::MAX / 2)?;
    if end < start {
        return Err(ApiError::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    Ok((start, end))
}

async fn series(State(state): State<Arc<ApiState>>, req: Request) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let sets = matchers_param(&p)?;
    if sets.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = range_params(&p)?;
    let options = read_options(&state, &p)?;
    let mut all: std::collections::BTreeSet<Labels> = std::collections::BTreeSet::new();
    let mut warnings = Vec::new();
    for matchers in sets {
        let request = strata_storepb::SeriesRequest {
            min_time: start,
            max_time: end,
            skip_chunks: true,
            ..Default::default()
        };
        let set = proxy::series(&state.endpoints, &matchers, request, &options.fan_out)
            .await
            .map_err(|e| ApiError {
                kind: "internal",
                message: e.to_string(),
            })?;
        warnings.extend(set.warnings);
        for (labels, _) in set.series {
            let mut b = labels.to_builder();
            for name in &options.replica_labels {
                b.delete(name);
            }
            all.insert(b.build());
        }
    }
    let mut data = String::from("[");
    for (i, labels) in all.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        write_labels(&mut data, labels);
    }
    data.push(']');
    Ok(success(&data, &warnings))
}

fn string_list(values: &[String]) -> String {
    let mut data = String::from("[");
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        write_str(&mut data, v);
    }
    data.push(']');
    data
}

async fn labels(State(state): State<Arc<ApiState>>, req: Request) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let (start, end) = range_params(&p)?;
    let options = read_options(&state, &p)?;
    let mut sets = matchers_param(&p)?;
    if sets.is_empty() {
        sets.push(Vec::new());
    }
    let mut names = std::collections::BTreeSet::new();
    let mut warnings = Vec::new();
    for matchers in sets {
        let (n, w) = proxy::label_names(&state.endpoints, start, end, &matchers, &options.fan_out)
            .await
            .map_err(|e| ApiError {
                kind: "internal",
                message: e.to_string(),
            })?;
        names.extend(n);
        warnings.extend(w);
    }
    for name in &options.replica_labels {
        names.remove(name);
    }
    let names: Vec<String> = names.into_iter().collect();
    Ok(success(&string_list(&names), &warnings))
}

async fn label_values(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let (start, end) = range_params(&p)?;
    let options = read_options(&state, &p)?;
    if options.replica_labels.contains(&name) {
        return Ok(success("[]", &[]));
    }
    let mut sets = matchers_param(&p)?;
    if sets.is_empty() {
        sets.push(Vec::new());
    }
    let mut values = std::collections::BTreeSet::new();
    let mut warnings = Vec::new();
    for matchers in sets {
        let (v, w) = proxy::label_values(
            &state.endpoints,
            &name,
            start,
            end,
            &matchers,
            &options.fan_out,
        )
        .await
        .map_err(|e| ApiError {
            kind: "internal",
            message: e.to_string(),
        })?;
        values.extend(v);
        warnings.extend(w);
    }
    let values: Vec<String> = values.into_iter().collect();
    Ok(success(&string_list(&values), &warnings))
}

async fn metadata() -> Response {
    success("{}", &[])
}

async fn exemplars() -> Response {
    success("[]", &[])
}

async fn buildinfo() -> Response {
    let version = env!("CARGO_PKG_VERSION");
    let data = format!(
        "{{\"version\":\"{version}\",\"revision\":\"\",\"branch\":\"\",\"buildUser\":\"\",\"buildDate\":\"\",\"goVersion\":\"\"}}"
    );
    success(&data, &[])
}

/// A time as Go's `time.Time` marshals to JSON (RFC 3339, nanoseconds without trailing
/// zeros).
fn go_time(t: std::time::SystemTime) -> String {
    let text = humantime::format_rfc3339_nanos(t).to_string();
    match text.strip_suffix('Z').and_then(|t| t.split_once('.')) {
        Some((seconds, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                format!("{seconds}Z")
            } else {
                format!("{seconds}.{fraction}Z")
            }
        }
        None => text,
    }
}

async fn stores(State(state): State<Arc<ApiState>>) -> Response {
    let mut by_type: std::collections::BTreeMap<String, Vec<String>> =
        std::collections::BTreeMap::new();
    for e in &state.endpoints.all() {
        if e.is_gone(state.options.unhealthy_timeout) {
            continue;
        }
        let info = e.info();
        let (_, last_error) = e.status();
        let component = info
            .as_ref()
            .map_or("unknown", |i| i.component.as_str())
            .to_owned();
        let mut entry = String::from("{\"name\":");
        write_str(&mut entry, e.address());
        entry.push_str(",\"lastCheck\":");
        match e.last_check_time() {
            Some(t) => write_str(&mut entry, &go_time(t)),
            None => entry.push_str("\"0001-01-01T00:00:00Z\""),
        }
        entry.push_str(",\"lastError\":");
        match &last_error {
            Some(err) => write_str(&mut entry, err),
            None => entry.push_str("null"),
        }
        entry.push_str(",\"labelSets\":[");
        if let Some(info) = &info {
            for (i, set) in info.label_sets.iter().enumerate() {
                if i > 0 {
                    entry.push(',');
                }
                write_labels(&mut entry, set);
            }
        }
        entry.push(']');
        let (min, max) = info.as_ref().map_or((0, 0), |i| (i.min_time, i.max_time));
        entry.push_str(&format!(",\"minTime\":{min},\"maxTime\":{max}}}"));
        by_type.entry(component).or_default().push(entry);
    }
    let mut data = String::from("{");
    for (i, (kind, entries)) in by_type.iter().enumerate() {
        if i > 0 {
            data.push(',');
        }
        write_str(&mut data, kind);
        data.push_str(":[");
        data.push_str(&entries.join(","));
        data.push(']');
    }
    data.push('}');
    success(&data, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_durations_as_prometheus() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("1700000000.5678").unwrap(), 1_700_000_000_568);
        assert_eq!(
            parse_time("2023-11-14T22:13:20.5Z").unwrap(),
            1_700_000_000_500
        );
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_duration("15").unwrap(), 15_000);
        assert_eq!(parse_duration("1.5").unwrap(), 1500);
        assert_eq!(parse_duration("5m").unwrap(), 300_000);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert!(parse_duration("x").is_err());
        assert!(parse_selector("{job=\"a\"}").is_ok());
        assert!(parse_selector("{job=\"\"}").is_err());
        assert!(parse_selector("up + 1").is_err());
        assert!(parse_store_selector("{__address__=~\".*:10901\"}").is_ok());
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_120);
        assert_eq!(go_time(t), "2023-11-14T22:13:20.12Z");
        assert_eq!(
            go_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
    }
}
