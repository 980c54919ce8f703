//! `query` and `query_range`: Prometheus 3.5's parameter rules, then evaluation on a blocking
//! thread that holds the concurrency permit until it has stopped. A client that goes away
//! cancels the evaluation and its fan-out (the handler's future is dropped, which flags the
//! query canceled); the deadline is the smaller of `--query.timeout` and `timeout`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::response::Response;
use strata_promql::{Engine, QueryResult, Value};
use strata_types::ErrorClass;
use strata_types::api_time::{ApiTime, nanos_to_millis};
use tokio_util::sync::CancellationToken;

use super::error::ApiError;
use super::params::Params;
use super::response::{annotation_strings, success};
use super::{ApiState, read_options};
use crate::json::write_query_data;
use crate::queryable::{ReadOptions, StoreQueryable};

/// Most points a range query may return per series (Prometheus' limit).
const MAX_POINTS: i64 = 11_000;

fn now() -> ApiTime {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    ApiTime::from_millis(ms)
}

/// What the engine is asked for, besides the expression.
struct Evaluation {
    /// The effective timeout.
    timeout: Duration,
    /// `lookback_delta`, when given and positive (ms).
    lookback_delta: Option<i64>,
}

/// `timeout` and `lookback_delta` as Prometheus reads them.
fn evaluation(state: &ApiState, p: &Params) -> Result<Evaluation, ApiError> {
    let mut timeout = state.engine.options().timeout;
    if p.get("timeout").is_some() {
        let ns = p.duration("timeout")?;
        if ns <= 0 {
            // Prometheus' context deadline is already past: the query times out.
            return Err(ApiError::new(
                ErrorClass::Timeout,
                "query timed out in query execution",
            ));
        }
        timeout = timeout.min(Duration::from_nanos(ns.unsigned_abs()));
    }
    let mut lookback_delta = None;
    if let Some(v) = p.get("lookback_delta") {
        let ns = strata_types::api_time::parse_api_duration(v).map_err(|e| {
            ApiError::bad_data(format!("error parsing lookback delta duration: {e}"))
        })?;
        if ns > 0 {
            lookback_delta = Some(nanos_to_millis(ns));
        }
    }
    Ok(Evaluation {
        timeout,
        lookback_delta,
    })
}

/// Sets the cancel flag and token when dropped: with the handler's future when the
/// client goes away, and harmlessly after the work is done.
struct CancelOnDrop {
    flag: Arc<AtomicBool>,
    token: CancellationToken,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.flag.store(true, Ordering::Relaxed);
        self.token.cancel();
    }
}

/// Runs `eval` on a blocking thread with a permit of the concurrency gate; returns the
/// result and the storage warnings.
async fn run_query(
    state: Arc<ApiState>,
    mut options: ReadOptions,
    evaluation: Evaluation,
    eval: impl FnOnce(&Engine, &StoreQueryable) -> Result<QueryResult, strata_promql::Error>
    + Send
    + 'static,
) -> Result<(QueryResult, Vec<String>), ApiError> {
    let permit = state
        .gate
        .enter()
        .await
        .map_err(|_| ApiError::new(ErrorClass::Unavailable, "querier is shutting down"))?;
    let flag = Arc::new(AtomicBool::new(false));
    let token = CancellationToken::new();
    let _guard = CancelOnDrop {
        flag: Arc::clone(&flag),
        token: token.clone(),
    };
    let deadline = Instant::now() + evaluation.timeout;
    options.deadline = Some(deadline);
    options.cancel = Some(token);
    let handle = tokio::runtime::Handle::current();
    let endpoints = state.endpoints.clone();
    let mut engine_options = state.engine.options().clone();
    engine_options.timeout = evaluation.timeout;
    engine_options.cancel = Some(flag);
    if let Some(lookback) = evaluation.lookback_delta {
        engine_options.lookback_delta = lookback;
    }
    let engine = Engine::new(engine_options);
    let span = tracing::info_span!("promql.eval", otel.name = "PromQL evaluation");
    let joined = tokio::task::spawn_blocking(move || {
        // The Store API calls the evaluation makes are children of the request's trace.
        let _entered = span.enter();
        // The permit is released only when the evaluation has really stopped.
        let _permit = permit;
        let queryable = StoreQueryable::new(handle, endpoints, options);
        let result = eval(&engine, &queryable);
        (result, queryable.take_warnings())
    })
    .await
    .map_err(|e| ApiError::new(ErrorClass::Internal, format!("query evaluation: {e}")))?;
    let (result, warnings) = joined;
    Ok((result?, warnings))
}

/// Prometheus' `truncateResults`: at most `limit` series (0: all).
fn truncate(value: &mut Value, limit: usize) -> bool {
    if limit == 0 {
        return false;
    }
    match value {
        Value::Vector(v) if v.len() > limit => {
            v.truncate(limit);
            true
        }
        Value::Matrix(m) if m.len() > limit => {
            m.truncate(limit);
            true
        }
        _ => false,
    }
}

pub(crate) async fn query(
    State(state): State<Arc<ApiState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let limit = p.limit()?;
    let time = p.time_or("time", now())?;
    let evaluation = evaluation(&state, &p)?;
    let q = p.value("query").to_owned();
    let expr = Engine::parse(&q).map_err(|e| ApiError::param("query", e))?;
    let options = read_options(&state, &p, None)?;
    let time_ms = time.millis();
    let (mut result, storage_warnings) = run_query(
        Arc::clone(&state),
        options,
        evaluation,
        move |engine, queryable| engine.instant_expr(queryable, &expr, time_ms),
    )
    .await?;
    let (mut warnings, infos) = annotation_strings(storage_warnings, result.annotations, &q);
    if truncate(&mut result.value, limit) {
        warnings.push("results truncated due to limit".to_owned());
    }
    let mut data = String::new();
    write_query_data(&mut data, &result.value, time_ms);
    Ok(success(&data, &warnings, &infos))
}

pub(crate) async fn query_range(
    State(state): State<Arc<ApiState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let limit = p.limit()?;
    let start = p.time("start")?;
    let end = p.time("end")?;
    if end.before(start) {
        return Err(ApiError::param(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step = p.duration("step")?;
    if step <= 0 {
        return Err(ApiError::param(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if end.sub_nanos(start) / step > MAX_POINTS {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    // Thanos' `thanos_query_range_requested_timespan_duration_seconds`.
    state
        .range_timespan
        .observe(end.sub_nanos(start) as f64 / 1e9);
    let evaluation = evaluation(&state, &p)?;
    let q = p.value("query").to_owned();
    let expr = Engine::parse(&q).map_err(|e| ApiError::param("query", e))?;
    let step_ms = nanos_to_millis(step);
    if step_ms == 0 {
        // Prometheus divides by the step in milliseconds and fails with a runtime error.
        return Err(ApiError::new(
            ErrorClass::Execution,
            "query resolution steps below 1ms are not supported",
        ));
    }
    let options = read_options(&state, &p, Some(step_ms))?;
    let (start_ms, end_ms) = (start.millis(), end.millis());
    let (mut result, storage_warnings) = run_query(
        Arc::clone(&state),
        options,
        evaluation,
        move |engine, queryable| engine.range_expr(queryable, &expr, start_ms, end_ms, step_ms),
    )
    .await?;
    let (mut warnings, infos) = annotation_strings(storage_warnings, result.annotations, &q);
    if truncate(&mut result.value, limit) {
        warnings.push("results truncated due to limit".to_owned());
    }
    let mut data = String::new();
    write_query_data(&mut data, &result.value, end_ms);
    Ok(success(&data, &warnings, &infos))
}
