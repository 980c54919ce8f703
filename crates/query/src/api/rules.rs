//! `/api/v1/rules` and `/api/v1/alerts` over Thanos' Rules API, in Prometheus 3.5's JSON.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use strata_storepb::convert::labels_from_proto;
use strata_storepb::{AlertInstance, RuleGroup, RulesRequest, ZLabelSet, rule, rules_request};

use super::error::ApiError;
use super::params::Params;
use super::response::success;
use super::{ApiState, read_options};
use crate::json::{write_labels, write_str};

/// Go's JSON form of a float (as `format_float`: `f` format, shortest).
fn number(out: &mut String, v: f64) {
    if v.is_finite() {
        out.push_str(&strata_promql::format_float(v));
    } else {
        out.push('0');
    }
}

fn labels(out: &mut String, set: &Option<ZLabelSet>) {
    let l = set
        .as_ref()
        .map(|s| labels_from_proto(&s.labels))
        .unwrap_or_default();
    write_labels(out, &l);
}

fn time(out: &mut String, t: Option<prost_types::Timestamp>) {
    write_str(out, &crate::metadata::rfc3339(t));
}

fn state_name(state: i32) -> &'static str {
    match state {
        1 => "inactive",
        2 => "pending",
        3 => "firing",
        _ => "unknown",
    }
}

fn alert(out: &mut String, a: &AlertInstance) {
    out.push_str("{\"labels\":");
    labels(out, &a.labels);
    out.push_str(",\"annotations\":");
    labels(out, &a.annotations);
    out.push_str(",\"state\":");
    write_str(out, state_name(a.state));
    if a.active_at.is_some() {
        out.push_str(",\"activeAt\":");
        time(out, a.active_at);
    }
    out.push_str(",\"value\":");
    write_str(out, &a.value);
    out.push('}');
}

fn health_and_times(
    out: &mut String,
    health: &str,
    last_error: &str,
    evaluation: f64,
    last: Option<prost_types::Timestamp>,
) {
    out.push_str(",\"health\":");
    write_str(out, health);
    if !last_error.is_empty() {
        out.push_str(",\"lastError\":");
        write_str(out, last_error);
    }
    out.push_str(",\"evaluationTime\":");
    number(out, evaluation);
    out.push_str(",\"lastEvaluation\":");
    time(out, last);
}

fn group_json(out: &mut String, g: &RuleGroup, exclude_alerts: bool) {
    out.push_str("{\"name\":");
    write_str(out, &g.name);
    out.push_str(",\"file\":");
    write_str(out, &g.file);
    out.push_str(",\"rules\":[");
    for (i, r) in g.rules.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match &r.result {
            Some(rule::Result::Alert(a)) => {
                out.push_str("{\"state\":");
                write_str(out, state_name(a.state));
                out.push_str(",\"name\":");
                write_str(out, &a.name);
                out.push_str(",\"query\":");
                write_str(out, &a.query);
                out.push_str(",\"duration\":");
                number(out, a.duration_seconds);
                out.push_str(",\"keepFiringFor\":");
                number(out, a.keep_firing_for_seconds);
                out.push_str(",\"labels\":");
                labels(out, &a.labels);
                out.push_str(",\"annotations\":");
                labels(out, &a.annotations);
                if !exclude_alerts {
                    out.push_str(",\"alerts\":[");
                    for (j, instance) in a.alerts.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        alert(out, instance);
                    }
                    out.push(']');
                }
                health_and_times(
                    out,
                    &a.health,
                    &a.last_error,
                    a.evaluation_duration_seconds,
                    a.last_evaluation,
                );
                out.push_str(",\"type\":\"alerting\"}");
            }
            Some(rule::Result::Recording(rec)) => {
                out.push_str("{\"name\":");
                write_str(out, &rec.name);
                out.push_str(",\"query\":");
                write_str(out, &rec.query);
                out.push_str(",\"labels\":");
                labels(out, &rec.labels);
                health_and_times(
                    out,
                    &rec.health,
                    &rec.last_error,
                    rec.evaluation_duration_seconds,
                    rec.last_evaluation,
                );
                out.push_str(",\"type\":\"recording\"}");
            }
            None => out.push_str("{}"),
        }
    }
    out.push_str("],\"interval\":");
    number(out, g.interval);
    out.push_str(",\"limit\":");
    out.push_str(&g.limit.to_string());
    out.push_str(",\"evaluationTime\":");
    number(out, g.evaluation_duration_seconds);
    out.push_str(",\"lastEvaluation\":");
    time(out, g.last_evaluation);
    out.push('}');
}

async fn groups(
    state: &Arc<ApiState>,
    p: &Params,
    kind: rules_request::Type,
) -> Result<(Vec<RuleGroup>, Vec<String>), ApiError> {
    let options = read_options(state, p, None)?;
    let _permit = state.gate.enter().await.map_err(|_| {
        ApiError::new(
            strata_types::ErrorClass::Unavailable,
            "querier is shutting down",
        )
    })?;
    let request = RulesRequest {
        r#type: kind.into(),
        ..Default::default()
    };
    Ok(crate::rules::rules(
        &state.endpoints,
        &request,
        &options.replica_labels,
        &options.fan_out,
    )
    .await?)
}

/// `/api/v1/rules` (`type`, `rule_name[]`, `rule_group[]`, `file[]`, `exclude_alerts`).
pub(crate) async fn rules(
    State(state): State<Arc<ApiState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let kind = match p.get("type").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => rules_request::Type::All,
        Some("alert") => rules_request::Type::Alert,
        Some("record") => rules_request::Type::Record,
        Some(other) => {
            return Err(ApiError::bad_data(format!(
                "invalid query parameter type='{other}'"
            )));
        }
    };
    let exclude_alerts = p.bool("exclude_alerts", false)?;
    let names: Vec<String> = p
        .all("rule_name[]")
        .into_iter()
        .map(str::to_owned)
        .collect();
    let group_names: Vec<String> = p
        .all("rule_group[]")
        .into_iter()
        .map(str::to_owned)
        .collect();
    let files: Vec<String> = p.all("file[]").into_iter().map(str::to_owned).collect();
    let (mut list, warnings) = groups(&state, &p, kind).await?;
    list.retain(|g| {
        (group_names.is_empty() || group_names.contains(&g.name))
            && (files.is_empty() || files.contains(&g.file))
    });
    for g in &mut list {
        g.rules.retain(|r| {
            let name = match &r.result {
                Some(rule::Result::Alert(a)) => &a.name,
                Some(rule::Result::Recording(rec)) => &rec.name,
                None => return false,
            };
            let kind_ok = !matches!(
                (&r.result, kind),
                (Some(rule::Result::Alert(_)), rules_request::Type::Record)
                    | (Some(rule::Result::Recording(_)), rules_request::Type::Alert)
            );
            kind_ok && (names.is_empty() || names.contains(name))
        });
    }
    // As Prometheus: with a rule filter, groups left without rules are not shown.
    if !names.is_empty() || kind != rules_request::Type::All {
        list.retain(|g| !g.rules.is_empty());
    }
    let mut out = String::from("{\"groups\":[");
    for (i, g) in list.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        group_json(&mut out, g, exclude_alerts);
    }
    out.push_str("]}");
    Ok(success(&out, &warnings, &[]))
}

/// `/api/v1/alerts`: every active alert of every alerting rule.
pub(crate) async fn alerts(
    State(state): State<Arc<ApiState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let p = Params::from_request(req).await?;
    let (list, warnings) = groups(&state, &p, rules_request::Type::Alert).await?;
    let mut out = String::from("{\"alerts\":[");
    let mut first = true;
    for g in &list {
        for r in &g.rules {
            if let Some(rule::Result::Alert(a)) = &r.result {
                for instance in &a.alerts {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    alert(&mut out, instance);
                }
            }
        }
    }
    out.push_str("]}");
    Ok(success(&out, &warnings, &[]))
}
