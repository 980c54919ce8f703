//! `series`, `labels`, `label/<name>/values` (Prometheus 3.5's parameter rules; each takes a
//! permit of the concurrency gate; `limit` honoured and passed to the endpoints; `series`
//! bounded by a maximum series count), and the status endpoints.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use strata_types::api_time::{max_time, min_time};
use strata_types::{ErrorClass, Labels};

use super::error::ApiError;
use super::params::Params;
use super::response::{go_time, string_list, success};
use super::{ApiState, matchers_param, read_options};
use crate::json::{write_labels, write_str};
use crate::proxy::{self, ProxyError};

impl From<ProxyError> for ApiError {
    fn from(e: ProxyError) -> Self {
        ApiError::new(e.class, e.message)
    }
}

/// A permit of the concurrency gate, for as long as the request reads.
async fn permit(state: &Arc<ApiState>) -> Result<strata_runtime::gate::Turn, ApiError> {
    state
        .gate
        .enter()
        .await
        .map_err(|_| ApiError::new(ErrorClass::Unavailable, "querier is shutting down"))
}

/// `start` and `end` with Prometheus' defaults (its `MinTime` and `MaxTime`), in ms.
fn range(p: &Params) -> Result<(i64, i64), ApiError> {
    let start = p.time_or("start", min_time())?;
    let end = p.time_or("end", max_time())?;
    Ok((start.millis(), end.millis()))
}

/// The limit an endpoint is asked for: one more than the API's, to know about truncation.
fn hint_limit(limit: usize) -> i64 {
    if limit == 0 {
        0
    } else {
        i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX)
    }
}

pub(crate) async fn series(
    State(state): State<Arc<ApiState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    if p.all("match[]").is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let limit = p.limit()?;
    let (start, end) = range(&p)?;
    let sets = matchers_param(&p).map_err(|e| ApiError::param("match[]", e))?;
    let options = read_options(&state, &p, None)?;
    let _permit = permit(&state).await?;
    let mut all: BTreeSet<Labels> = BTreeSet::new();
    let mut warnings = Vec::new();
    for matchers in sets {
        let request = strata_storepb::SeriesRequest {
            min_time: start,
            max_time: end,
            skip_chunks: true,
            limit: hint_limit(limit),
            ..Default::default()
        };
        let set = proxy::series(
            &state.endpoints,
            &matchers,
            request,
            &options.fan_out,
            proxy::Budget::default(),
        )
        .await?;
        warnings.extend(set.warnings);
        for (labels, _) in set.series {
            let mut b = labels.to_builder();
            for name in &options.replica_labels {
                b.delete(name);
            }
            all.insert(b.build());
            if all.len() > state.options.max_series {
                return Err(ApiError::new(
                    ErrorClass::Execution,
                    format!(
                        "series request would load more than {} series into memory; narrow match[] or the time range, or set limit",
                        state.options.max_series
                    ),
                ));
            }
        }
    }
    let truncated = limit > 0 && all.len() > limit;
    let mut data = String::from("[");
    for (i, labels) in all
        .iter()
        .take(if limit > 0 { limit } else { usize::MAX })
        .enumerate()
    {
        if i > 0 {
            data.push(',');
        }
        write_labels(&mut data, labels);
    }
    data.push(']');
    if truncated {
        warnings.push("results truncated due to limit".to_owned());
    }
    Ok(success(&data, &warnings, &[]))
}

pub(crate) async fn labels(
    State(state): State<Arc<ApiState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let limit = p.limit()?;
    let (start, end) = range(&p)?;
    let mut sets = matchers_param(&p).map_err(ApiError::bad_data)?;
    let options = read_options(&state, &p, None)?;
    if sets.is_empty() {
        sets.push(Vec::new());
    }
    let _permit = permit(&state).await?;
    let mut names = BTreeSet::new();
    let mut warnings = Vec::new();
    for matchers in sets {
        let (n, w) =
            proxy::label_names(&state.endpoints, start, end, &matchers, &options.fan_out).await?;
        names.extend(n);
        warnings.extend(w);
    }
    for name in &options.replica_labels {
        names.remove(name);
    }
    if limit > 0 && names.len() > limit {
        warnings.push("results truncated due to limit".to_owned());
    }
    let shown = names
        .iter()
        .take(if limit > 0 { limit } else { usize::MAX });
    Ok(success(&string_list(shown), &warnings, &[]))
}

pub(crate) async fn label_values(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    // Names that are not legacy ones come `U__`-escaped, as to Prometheus.
    let name = strata_types::unescape_name(&name);
    if name.is_empty() {
        return Err(ApiError::bad_data(format!("invalid label name: {name:?}")));
    }
    let limit = p.limit()?;
    let (start, end) = range(&p)?;
    let mut sets = matchers_param(&p).map_err(ApiError::bad_data)?;
    let options = read_options(&state, &p, None)?;
    if options.replica_labels.contains(&name) {
        return Ok(success("[]", &[], &[]));
    }
    if sets.is_empty() {
        sets.push(Vec::new());
    }
    let _permit = permit(&state).await?;
    let mut values = BTreeSet::new();
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
        .await?;
        values.extend(v);
        warnings.extend(w);
    }
    if limit > 0 && values.len() > limit {
        warnings.push("results truncated due to limit".to_owned());
    }
    let shown = values
        .iter()
        .take(if limit > 0 { limit } else { usize::MAX });
    Ok(success(&string_list(shown), &warnings, &[]))
}

/// `/api/v1/metadata` (`metric`, `limit`: metrics shown, `limit_per_metric`), from every
/// endpoint serving Thanos' Metadata API, as Prometheus answers it.
pub(crate) async fn metadata(
    State(state): State<Arc<ApiState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let limit = signed_limit(&p, "limit")?;
    let per_metric = signed_limit(&p, "limit_per_metric")?;
    let options = read_options(&state, &p, None)?;
    let _permit = permit(&state).await?;
    let metric = p.get("metric").unwrap_or("");
    let (merged, warnings) =
        crate::metadata::metric_metadata(&state.endpoints, metric, &options.fan_out).await?;
    let mut out = String::from("{");
    for (i, (name, metas)) in merged.iter().take(limit).enumerate() {
        if i > 0 {
            out.push(',');
        }
        crate::json::write_str(&mut out, name);
        out.push_str(":[");
        for (j, m) in metas.iter().take(per_metric).enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"type\":");
            crate::json::write_str(&mut out, &m.kind);
            out.push_str(",\"help\":");
            crate::json::write_str(&mut out, &m.help);
            out.push_str(",\"unit\":");
            crate::json::write_str(&mut out, &m.unit);
            out.push('}');
        }
        out.push(']');
    }
    out.push('}');
    Ok(success(&out, &warnings, &[]))
}

/// Prometheus' metadata limits: absent or negative is no limit; not a number is bad_data.
fn signed_limit(p: &Params, name: &str) -> Result<usize, ApiError> {
    match p.get(name) {
        None | Some("") => Ok(usize::MAX),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n < 0 => Ok(usize::MAX),
            Ok(n) => Ok(usize::try_from(n).unwrap_or(usize::MAX)),
            Err(_) => Err(ApiError::bad_data(format!("invalid {name}: {v:?}"))),
        },
    }
}

/// `/api/v1/targets` (`state`: any, active, dropped) from every endpoint serving Thanos'
/// Targets API, the replicas' copies of a target shown once.
pub(crate) async fn targets(
    State(state): State<Arc<ApiState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let which = match p.get("state").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("any") => 0,
        Some("active") => 1,
        Some("dropped") => 2,
        Some(other) => {
            return Err(ApiError::bad_data(format!("invalid state {other:?}")));
        }
    };
    let options = read_options(&state, &p, None)?;
    let _permit = permit(&state).await?;
    let (targets, warnings) = crate::metadata::targets(
        &state.endpoints,
        which,
        &options.replica_labels,
        &options.fan_out,
    )
    .await?;
    let mut out = String::from("{\"activeTargets\":[");
    for (i, t) in targets.active.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"discoveredLabels\":");
        crate::json::write_labels(&mut out, &t.discovered_labels);
        out.push_str(",\"labels\":");
        crate::json::write_labels(&mut out, &t.labels);
        for (key, value) in [
            ("scrapePool", &t.scrape_pool),
            ("scrapeUrl", &t.scrape_url),
            ("globalUrl", &t.global_url),
            ("lastError", &t.last_error),
            ("lastScrape", &t.last_scrape),
        ] {
            out.push_str(",\"");
            out.push_str(key);
            out.push_str("\":");
            crate::json::write_str(&mut out, value);
        }
        out.push_str(",\"lastScrapeDuration\":");
        out.push_str(
            &serde_json::Number::from_f64(t.last_scrape_duration)
                .map_or_else(|| "0".to_owned(), |n| n.to_string()),
        );
        out.push_str(",\"health\":");
        crate::json::write_str(&mut out, t.health);
        out.push('}');
    }
    out.push_str("],\"droppedTargets\":[");
    for (i, l) in targets.dropped.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"discoveredLabels\":");
        crate::json::write_labels(&mut out, l);
        out.push('}');
    }
    out.push_str("]}");
    Ok(success(&out, &warnings, &[]))
}

/// `/api/v1/query_exemplars` (`query`, `start`, `end`) from every endpoint serving Thanos'
/// Exemplars API, in Prometheus' JSON.
pub(crate) async fn exemplars(
    State(state): State<Arc<ApiState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let (start, end) = range(&p)?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start timestamp",
        ));
    }
    let query = p.get("query").unwrap_or("");
    strata_promql::Engine::parse(query).map_err(|e| ApiError::bad_data(e.to_string()))?;
    let options = read_options(&state, &p, None)?;
    let _permit = permit(&state).await?;
    let (series, warnings) = crate::exemplars::exemplars(
        &state.endpoints,
        query,
        start,
        end,
        &options.replica_labels,
        &options.fan_out,
    )
    .await?;
    let mut out = String::from("[");
    for (i, (labels, list)) in series.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"seriesLabels\":");
        crate::json::write_labels(&mut out, labels);
        out.push_str(",\"exemplars\":[");
        for (j, e) in list.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            out.push_str("{\"labels\":");
            crate::json::write_labels(&mut out, &e.labels);
            out.push_str(",\"value\":");
            crate::json::write_str(&mut out, &strata_promql::format_float(e.value));
            out.push_str(",\"timestamp\":");
            crate::json::write_timestamp(&mut out, e.ts);
            out.push('}');
        }
        out.push_str("]}");
    }
    out.push(']');
    Ok(success(&out, &warnings, &[]))
}

/// `/api/v1/status/flags`: every flag of the command line with its value.
pub(crate) async fn flags(State(state): State<Arc<ApiState>>) -> Response {
    let data = serde_json::to_string(&state.flags).unwrap_or_else(|_| "{}".to_owned());
    success(&data, &[], &[])
}

/// `/api/v1/status/runtimeinfo`, with Prometheus' keys (Go runtime fields as this process'
/// nearest: threads for GOMAXPROCS; no goroutines).
pub(crate) async fn runtimeinfo(State(state): State<Arc<ApiState>>) -> Response {
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let started = humantime::format_rfc3339_millis(state.started).to_string();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let data = serde_json::json!({
        "startTime": started,
        "CWD": cwd,
        "hostname": "",
        "serverTime": humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        "reloadConfigSuccess": true,
        "lastConfigTime": started,
        "corruptionCount": 0,
        "goroutineCount": 0,
        "GOMAXPROCS": cores,
        "GOMEMLIMIT": i64::MAX,
        "GOGC": "",
        "GODEBUG": "",
        "storageRetention": "",
    })
    .to_string();
    success(&data, &[], &[])
}

pub(crate) async fn buildinfo() -> Response {
    let build = strata_runtime::process::BUILD;
    let data = serde_json::json!({
        "version": build.version,
        "revision": build.revision,
        "branch": build.branch,
        "buildUser": "",
        "buildDate": "",
        "goVersion": build.toolchain,
    })
    .to_string();
    success(&data, &[], &[])
}

pub(crate) async fn stores(State(state): State<Arc<ApiState>>) -> Response {
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
    success(&data, &[], &[])
}
