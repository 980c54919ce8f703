//! `labels`, `label/<name>/values` and `series` with a time range: split at multiples of
//! `--labels.split-interval`, the parts asked in parallel and their union returned (sorted,
//! as the downstream sorts it). A range that would make more than [`MAX_PARTS`] parts, or
//! that does not parse, goes to the downstream unsplit.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};
use strata_types::api_time::parse_api_time;

use crate::downstream::{Passthrough, error_response};
use crate::merge::Notes;
use crate::{FrontendState, format_seconds, read_params};

/// Most parts one request is split into.
const MAX_PARTS: i64 = 400;

pub(crate) async fn metadata_split(
    State(state): State<Arc<FrontendState>>,
    req: Request,
) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let (headers, params) = match read_params(req).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let interval = i64::try_from(state.config.labels_split_interval.as_millis()).unwrap_or(0);
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let time = |name: &str| {
        get(name)
            .and_then(|v| parse_api_time(v).ok())
            .map(|t| t.millis())
    };
    let range = match (time("start"), time("end")) {
        (Some(s), Some(e))
            if e >= s
                && interval > 0
                && e.saturating_sub(s) > interval
                && e.saturating_sub(s) / interval < MAX_PARTS =>
        {
            Some((s, e))
        }
        _ => None,
    };
    let Some((start, end)) = range else {
        state.metrics.downstream_requests.inc();
        if method == axum::http::Method::GET {
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            return state
                .downstream
                .forward(method, path, &headers, Vec::new(), false)
                .await;
        }
        let form = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        return state
            .downstream
            .forward(method, uri.path(), &headers, form.into_bytes(), true)
            .await;
    };
    let mut parts = Vec::new();
    let mut from = start;
    while from <= end {
        let boundary = from
            .div_euclid(interval)
            .saturating_add(1)
            .saturating_mul(interval);
        let to = boundary.saturating_sub(1).min(end);
        parts.push((from, to));
        if boundary <= from {
            break;
        }
        from = boundary;
    }
    let path = uri.path().to_owned();
    let is_series = path.ends_with("/series");
    let answers: Result<Vec<serde_json::Value>, Passthrough> = futures::stream::iter(parts)
        .map(|(from, to)| {
            let mut sub: Vec<(String, String)> = params
                .iter()
                .filter(|(k, _)| k != "start" && k != "end")
                .cloned()
                .collect();
            sub.push(("start".into(), format_seconds(from)));
            sub.push(("end".into(), format_seconds(to)));
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(sub.iter())
                .finish();
            let state = &state;
            let path = &path;
            let headers = &headers;
            async move {
                // GET: Prometheus serves label values over GET only.
                state.metrics.downstream_requests.inc();
                let body = state
                    .downstream
                    .get(&format!("{path}?{query}"), headers, &state.metrics.retries)
                    .await?;
                serde_json::from_slice::<serde_json::Value>(&body).map_err(|e| {
                    Passthrough(error_response(
                        axum::http::StatusCode::BAD_GATEWAY,
                        "internal",
                        &format!("downstream answer: {e}"),
                    ))
                })
            }
        })
        .buffered(state.config.parallelism.max(1))
        .try_collect()
        .await;
    let answers = match answers {
        Ok(a) => a,
        Err(Passthrough(r)) => return r,
    };
    let mut strings: BTreeSet<String> = BTreeSet::new();
    let mut series: BTreeMap<strata_types::Labels, BTreeMap<String, String>> = BTreeMap::new();
    let mut notes = Notes::default();
    for value in answers {
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
