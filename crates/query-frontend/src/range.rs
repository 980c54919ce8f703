//! `query_range`: checked before anything is split (Prometheus' parameter rules, then
//! `--query-range.max-query-length`); a request that breaks a rule goes to the downstream
//! unsplit, which answers with Prometheus' error. Valid ones are step-aligned, split at
//! interval boundaries (never into more pieces than it has points), answered from the
//! results cache where possible, the rest asked of the downstream in parallel; the first
//! failed piece fails the query (the others are dropped).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use strata_types::api_time::{nanos_to_millis, parse_api_duration, parse_api_time};

use crate::downstream::{Passthrough, error_response};
use crate::merge::{Extent, Notes, merge_extents, parse_extent, write_answer};
use crate::split::Range;
use crate::{FrontendState, format_seconds, now_ms, read_params};

/// Most points a range query may return per series (Prometheus' limit).
const MAX_POINTS: i64 = 11_000;

pub(crate) struct RangeRequest {
    pub(crate) query: String,
    pub(crate) range: Range,
    /// Other parameters (dedup, partial_response, replicaLabels[], …), sorted.
    pub(crate) rest: Vec<(String, String)>,
}

/// The request, if it passes every rule the downstream would check of its range; `None`
/// sends it on unsplit.
pub(crate) fn parse_range_request(params: &[(String, String)]) -> Option<RangeRequest> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let query = get("query").to_owned();
    let start = parse_api_time(get("start")).ok()?;
    let end = parse_api_time(get("end")).ok()?;
    let step = parse_api_duration(get("step")).ok()?;
    if end.before(start) || step <= 0 || end.sub_nanos(start) / step > MAX_POINTS {
        return None;
    }
    let step = nanos_to_millis(step);
    if step <= 0 || query.is_empty() {
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
        range: Range {
            start: start.millis(),
            end: end.millis(),
            step,
        },
        rest,
    })
}

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
    state.metrics.downstream_requests.inc();
    let body = state
        .downstream
        .get(
            &format!("/api/v1/query_range?{query}"),
            headers,
            &state.metrics.retries,
        )
        .await?;
    parse_extent(&body, range.start, range.end).map_err(|e| {
        Passthrough(error_response(
            StatusCode::BAD_GATEWAY,
            "internal",
            &format!("downstream answer: {e}"),
        ))
    })
}

/// The cache key of a piece: the query, its step and piece, the parameters that change the
/// answer, and the forwarded identity of the caller (credentials, tenant), so one caller's
/// answer is never served to another.
fn cache_key(
    state: &FrontendState,
    request: &RangeRequest,
    split: &Range,
    interval: i64,
    index: i64,
    headers: &HeaderMap,
) -> String {
    let identity: Vec<(String, String)> = state
        .downstream
        .identity(headers)
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    format!(
        "{}:{}:{}:{}:{:?}:{:?}",
        request.query, split.step, interval, index, request.rest, identity
    )
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
    let key = cache_key(state, request, &split, interval, index, headers);
    let cached: Option<Extent> = state
        .cache
        .get(&key)
        .await
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let (extent, notes) = match cached {
        Some(c) if c.start <= split.start && c.end >= split.end => {
            return Ok((c.slice(split.start, split.end), Notes::default()));
        }
        Some(c) if c.start <= split.start && c.end >= split.start => {
            // Only the part after the cached extent is asked for, on the split's grid.
            let steps = (c.end - split.start) / split.step + 1;
            let from = split.start.saturating_add(steps.saturating_mul(split.step));
            if from > split.end {
                return Ok((c.slice(split.start, split.end), Notes::default()));
            }
            let rest = Range {
                start: from,
                end: split.end,
                step: split.step,
            };
            let (fresh, notes) = downstream_range(state, request, rest, headers).await?;
            (
                merge_extents(vec![c.slice(split.start, c.end), fresh]),
                notes,
            )
        }
        _ => downstream_range(state, request, split, headers).await?,
    };
    let cutoff = now_ms()
        .saturating_sub(i64::try_from(state.config.max_freshness.as_millis()).unwrap_or(i64::MAX));
    if notes.is_empty() {
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
        notes,
    ))
}

pub(crate) async fn query_range(State(state): State<Arc<FrontendState>>, req: Request) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let (headers, params) = match read_params(req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let Some(mut request) = parse_range_request(&params) else {
        // Let the downstream report what is wrong, in its own words, from one request.
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        state.metrics.downstream_requests.inc();
        return state
            .downstream
            .forward(method, uri.path(), &headers, body.into_bytes(), true)
            .await;
    };
    let max_length = i64::try_from(state.config.max_query_length.as_millis()).unwrap_or(i64::MAX);
    let length = request.range.end.saturating_sub(request.range.start);
    if max_length > 0 && length > max_length {
        return error_response(
            StatusCode::BAD_REQUEST,
            "bad_data",
            &format!(
                "the query time range exceeds the limit (query length: {}, limit: {})",
                humantime::format_duration(std::time::Duration::from_millis(length.unsigned_abs())),
                humantime::format_duration(state.config.max_query_length),
            ),
        );
    }
    if state.config.align_range_with_step {
        request.range = request.range.aligned();
    }
    // Pieces are at least a step long, so there are never more pieces than points.
    let interval = i64::try_from(state.config.split_interval.as_millis())
        .unwrap_or(i64::MAX)
        .max(if state.config.split_interval.is_zero() {
            0
        } else {
            request.range.step
        });
    let splits = request.range.split(interval);
    let parts: Result<Vec<(Extent, Notes)>, Passthrough> = futures::stream::iter(splits)
        .map(|split| answer_split(&state, &request, split, interval, &headers))
        .buffered(state.config.parallelism.max(1))
        .try_collect()
        .await;
    let parts = match parts {
        Ok(p) => p,
        Err(Passthrough(response)) => return response,
    };
    let mut extents = Vec::with_capacity(parts.len());
    let mut notes = Notes::default();
    for (e, n) in parts {
        extents.push(e);
        notes.extend(n);
    }
    let body = write_answer(&merge_extents(extents), &notes);
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
