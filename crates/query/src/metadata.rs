//! Thanos' Metadata and Targets APIs across endpoints: every healthy endpoint whose Info
//! advertises the API is asked at once (each within the endpoint timeout); the answers are
//! merged as Thanos' proxies merge them — a metric's distinct metadata entries, targets
//! without the replica labels and each one once — and failures become warnings (or the error,
//! without partial response).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt as _;
use strata_storepb::convert::labels_from_proto;
use strata_storepb::{
    MetricMetadataRequest, TargetsRequest, ZLabelSet, metric_metadata_response, targets_response,
};
use strata_types::Labels;

use crate::endpoints::{Endpoint, EndpointInfo, EndpointSet};
use crate::proxy::{FanOut, ProxyError};

/// Answers a stream may carry before the rest is refused (a sidecar sends one).
pub(crate) const MAX_FRAMES: usize = 1024;

/// One metadata entry (Prometheus' `/api/v1/metadata` item).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Meta {
    /// counter, gauge, …
    pub kind: String,
    /// HELP.
    pub help: String,
    /// UNIT.
    pub unit: String,
}

/// An active target, as `/api/v1/targets` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveTarget {
    /// Labels before relabelling.
    pub discovered_labels: Labels,
    /// Labels after relabelling (external labels included).
    pub labels: Labels,
    /// The job.
    pub scrape_pool: String,
    /// The URL scraped.
    pub scrape_url: String,
    /// The URL from outside.
    pub global_url: String,
    /// The last error.
    pub last_error: String,
    /// RFC 3339, empty when never scraped.
    pub last_scrape: String,
    /// Seconds.
    pub last_scrape_duration: f64,
    /// up, down, unknown.
    pub health: &'static str,
}

/// Every target of every endpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Targets {
    /// Scraped.
    pub active: Vec<ActiveTarget>,
    /// Dropped by relabelling (their discovered labels).
    pub dropped: Vec<Labels>,
}

/// Runs `call` on every healthy endpoint `wants` admits, through the proxy's one fan-out.
pub(crate) async fn fan_out<T, F, Fut>(
    endpoints: &EndpointSet,
    fan_out: &FanOut,
    wants: fn(&EndpointInfo) -> bool,
    call: F,
) -> Result<(Vec<T>, Vec<String>), ProxyError>
where
    F: Fn(Arc<Endpoint>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Vec<String>), tonic::Status>>,
{
    let selected: Vec<Arc<Endpoint>> = endpoints
        .all()
        .into_iter()
        .filter(|e| e.is_healthy() && e.info().is_some_and(|i| wants(&i)))
        .collect();
    crate::proxy::fan_out_calls(&selected, fan_out, call).await
}

/// Metric metadata from every endpoint (`metric` empty: all), each metric's distinct entries
/// in the order first seen.
pub async fn metric_metadata(
    endpoints: &EndpointSet,
    metric: &str,
    fan_out_options: &FanOut,
) -> Result<(BTreeMap<String, Vec<Meta>>, Vec<String>), ProxyError> {
    let request = MetricMetadataRequest {
        metric: metric.to_owned(),
        limit: -1,
        partial_response_strategy: 0,
    };
    let (answers, warnings) = fan_out(
        endpoints,
        fan_out_options,
        |i| i.metadata,
        |e| {
            let request = request.clone();
            async move {
                let mut stream = e
                    .metadata_client()
                    .metric_metadata(request)
                    .await?
                    .into_inner();
                let mut out = Vec::new();
                let mut warnings = Vec::new();
                while let Some(frame) = stream.next().await {
                    if out.len() + warnings.len() >= MAX_FRAMES {
                        return Err(tonic::Status::resource_exhausted(
                            "too many metadata frames",
                        ));
                    }
                    match frame?.result {
                        Some(metric_metadata_response::Result::Metadata(m)) => out.push(m),
                        Some(metric_metadata_response::Result::Warning(w)) => warnings.push(w),
                        None => {}
                    }
                }
                Ok((out, warnings))
            }
        },
    )
    .await?;
    let mut merged: BTreeMap<String, Vec<Meta>> = BTreeMap::new();
    for answer in answers {
        for (name, entry) in answer.metadata {
            let metas = merged.entry(name).or_default();
            for m in entry.metas {
                let meta = Meta {
                    kind: m.r#type,
                    help: m.help,
                    unit: m.unit,
                };
                if !metas.contains(&meta) {
                    metas.push(meta);
                }
            }
        }
    }
    Ok((merged, warnings))
}

fn labels(set: Option<ZLabelSet>, replica_labels: &[String]) -> Labels {
    let labels = set
        .map(|s| labels_from_proto(&s.labels))
        .unwrap_or_default();
    if replica_labels.is_empty() {
        return labels;
    }
    Labels::from_pairs(
        labels
            .iter()
            .filter(|l| !replica_labels.contains(&l.name))
            .map(|l| (l.name.clone(), l.value.clone())),
    )
}

pub(crate) fn rfc3339(t: Option<prost_types::Timestamp>) -> String {
    let Some(t) = t else {
        return String::new();
    };
    let (Ok(secs), Ok(nanos)) = (u64::try_from(t.seconds), u32::try_from(t.nanos)) else {
        return String::new();
    };
    let time = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
    humantime::format_rfc3339_nanos(time).to_string()
}

/// The endpoints' target answers as they sent them (a querier serving the Targets API to
/// another passes them on).
pub async fn targets_raw(
    endpoints: &EndpointSet,
    state: i32,
    fan_out_options: &FanOut,
) -> Result<(Vec<strata_storepb::TargetDiscovery>, Vec<String>), ProxyError> {
    let request = TargetsRequest {
        state,
        partial_response_strategy: 0,
    };
    fan_out(
        endpoints,
        fan_out_options,
        |i| i.targets,
        |e| async move {
            let mut stream = e.targets_client().targets(request).await?.into_inner();
            let mut out = Vec::new();
            let mut warnings = Vec::new();
            while let Some(frame) = stream.next().await {
                if out.len() + warnings.len() >= MAX_FRAMES {
                    return Err(tonic::Status::resource_exhausted("too many targets frames"));
                }
                match frame?.result {
                    Some(targets_response::Result::Targets(t)) => out.push(t),
                    Some(targets_response::Result::Warning(w)) => warnings.push(w),
                    None => {}
                }
            }
            Ok((out, warnings))
        },
    )
    .await
}

/// Targets from every endpoint (`state`: 0 any, 1 active, 2 dropped), the replica labels
/// removed and each target once (Prometheus replicas scrape the same targets).
pub async fn targets(
    endpoints: &EndpointSet,
    state: i32,
    replica_labels: &[String],
    fan_out_options: &FanOut,
) -> Result<(Targets, Vec<String>), ProxyError> {
    let (answers, warnings) = targets_raw(endpoints, state, fan_out_options).await?;
    let mut merged = Targets::default();
    for answer in answers {
        for t in answer.active_targets {
            let target = ActiveTarget {
                discovered_labels: labels(t.discovered_labels, replica_labels),
                labels: labels(t.labels, replica_labels),
                scrape_pool: t.scrape_pool,
                scrape_url: t.scrape_url,
                global_url: t.global_url,
                last_error: t.last_error,
                last_scrape: rfc3339(t.last_scrape),
                last_scrape_duration: t.last_scrape_duration,
                health: match t.health {
                    0 => "down",
                    1 => "up",
                    _ => "unknown",
                },
            };
            // The same target from another replica: keep one, a healthy one if any.
            match merged.active.iter_mut().find(|m| {
                m.scrape_url == target.scrape_url
                    && m.labels == target.labels
                    && m.scrape_pool == target.scrape_pool
            }) {
                Some(existing) if existing.health != "up" && target.health == "up" => {
                    *existing = target;
                }
                Some(_) => {}
                None => merged.active.push(target),
            }
        }
        for t in answer.dropped_targets {
            let l = labels(t.discovered_labels, replica_labels);
            if !merged.dropped.contains(&l) {
                merged.dropped.push(l);
            }
        }
    }
    merged.active.sort_by(|a, b| {
        (&a.scrape_pool, &a.scrape_url, &a.labels).cmp(&(&b.scrape_pool, &b.scrape_url, &b.labels))
    });
    merged.dropped.sort();
    Ok((merged, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339() {
        let t = prost_types::Timestamp {
            seconds: 1_796_613_000,
            nanos: 5,
        };
        assert_eq!(rfc3339(Some(t)), "2026-12-07T03:10:00.000000005Z");
        assert_eq!(rfc3339(None), "");
    }

    #[test]
    fn replica_labels_are_removed() {
        let set = ZLabelSet {
            labels: strata_storepb::convert::labels_to_proto(&Labels::from_pairs([
                ("job", "p"),
                ("prometheus_replica", "r0"),
            ])),
        };
        let l = labels(Some(set), &["prometheus_replica".to_owned()]);
        assert_eq!(l, Labels::from_pairs([("job", "p")]));
    }
}
