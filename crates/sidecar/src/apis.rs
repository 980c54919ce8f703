//! The sidecar's Metadata, Targets, Exemplars and Rules APIs (`thanos.Metadata`,
//! `thanos.Targets`, `thanos.Exemplars`, `thanos.Rules`), answered from Prometheus' HTTP API as Thanos' sidecar does: metric
//! metadata as Prometheus has it, targets and exemplars' series with the external labels
//! added (the querier then tells the clusters apart).

use std::collections::BTreeMap;
use std::pin::Pin;

use futures::Stream;
use strata_storepb::convert::labels_to_proto;
use strata_storepb::exemplars_server::Exemplars;
use strata_storepb::metadata_server::Metadata;
use strata_storepb::rules_server::Rules;
use strata_storepb::targets_server::Targets;
use strata_storepb::{
    ActiveTarget, DroppedTarget, Meta, MetricMetadata, MetricMetadataEntry, MetricMetadataRequest,
    MetricMetadataResponse, TargetDiscovery, TargetHealth, TargetsRequest, TargetsResponse,
    ZLabelSet, exemplars_response, metric_metadata_response, targets_request, targets_response,
};
use strata_types::Labels;
use tonic::{Request, Response, Status};

use crate::store::SidecarStore;

type Answer<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn one<T: Send + 'static>(item: T) -> Answer<T> {
    Box::pin(futures::stream::once(async move { Ok(item) }))
}

/// `labels` with `ext` added (an external label wins over a target label of the same name,
/// as Thanos extends label sets).
fn with_external(labels: &BTreeMap<String, String>, ext: &Labels) -> ZLabelSet {
    let mut all: BTreeMap<&str, &str> = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    for l in ext.iter() {
        all.insert(l.name.as_str(), l.value.as_str());
    }
    ZLabelSet {
        labels: labels_to_proto(&Labels::from_pairs(all)),
    }
}

fn timestamp(rfc3339: &str) -> Option<prost_types::Timestamp> {
    let t = humantime::parse_rfc3339_weak(rfc3339.trim_end_matches('Z')).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).ok()?,
        nanos: i32::try_from(d.subsec_nanos()).ok()?,
    })
}

fn health(text: &str) -> TargetHealth {
    match text {
        "up" => TargetHealth::Up,
        "down" => TargetHealth::Down,
        _ => TargetHealth::Unknown,
    }
}

#[tonic::async_trait]
impl Metadata for SidecarStore {
    type MetricMetadataStream = Answer<MetricMetadataResponse>;

    async fn metric_metadata(
        &self,
        request: Request<MetricMetadataRequest>,
    ) -> Result<Response<Self::MetricMetadataStream>, Status> {
        let req = request.into_inner();
        let metadata = self
            .prom
            .metadata(&req.metric, req.limit)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let metadata = metadata
            .into_iter()
            .map(|(name, metas)| {
                let metas = metas
                    .into_iter()
                    .map(|m| Meta {
                        r#type: m.kind,
                        help: m.help,
                        unit: m.unit,
                    })
                    .collect();
                (name, MetricMetadataEntry { metas })
            })
            .collect();
        Ok(Response::new(one(MetricMetadataResponse {
            result: Some(metric_metadata_response::Result::Metadata(MetricMetadata {
                metadata,
            })),
        })))
    }
}

#[tonic::async_trait]
impl Targets for SidecarStore {
    type TargetsStream = Answer<TargetsResponse>;

    async fn targets(
        &self,
        request: Request<TargetsRequest>,
    ) -> Result<Response<Self::TargetsStream>, Status> {
        let state = match targets_request::State::try_from(request.into_inner().state) {
            Ok(targets_request::State::Active) => "active",
            Ok(targets_request::State::Dropped) => "dropped",
            _ => "any",
        };
        let ext = self.ext_labels()?;
        let targets = self
            .prom
            .targets(state)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let discovery = TargetDiscovery {
            active_targets: targets
                .active_targets
                .into_iter()
                .map(|t| ActiveTarget {
                    discovered_labels: Some(ZLabelSet {
                        labels: labels_to_proto(&Labels::from_pairs(t.discovered_labels)),
                    }),
                    labels: Some(with_external(&t.labels, &ext)),
                    scrape_pool: t.scrape_pool,
                    scrape_url: t.scrape_url,
                    global_url: t.global_url,
                    last_error: t.last_error,
                    last_scrape: timestamp(&t.last_scrape),
                    last_scrape_duration: t.last_scrape_duration,
                    health: health(&t.health).into(),
                })
                .collect(),
            dropped_targets: targets
                .dropped_targets
                .into_iter()
                .map(|t| DroppedTarget {
                    discovered_labels: Some(with_external(&t.discovered_labels, &ext)),
                })
                .collect(),
        };
        Ok(Response::new(one(TargetsResponse {
            result: Some(targets_response::Result::Targets(discovery)),
        })))
    }
}

#[tonic::async_trait]
impl Exemplars for SidecarStore {
    type ExemplarsStream = Answer<strata_storepb::ExemplarsResponse>;

    async fn exemplars(
        &self,
        request: Request<strata_storepb::ExemplarsRequest>,
    ) -> Result<Response<Self::ExemplarsStream>, Status> {
        let req = request.into_inner();
        let ext = self.ext_labels()?;
        let data = self
            .prom
            .exemplars(&req.query, req.start, req.end)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let frames: Vec<Result<strata_storepb::ExemplarsResponse, Status>> = data
            .into_iter()
            .map(|d| {
                let exemplars = d
                    .exemplars
                    .into_iter()
                    .map(|e| strata_storepb::Exemplar {
                        labels: Some(ZLabelSet {
                            labels: labels_to_proto(&Labels::from_pairs(e.labels)),
                        }),
                        value: e.value.parse().unwrap_or(f64::NAN),
                        ts: (e.timestamp * 1000.0).round() as i64,
                    })
                    .collect();
                Ok(strata_storepb::ExemplarsResponse {
                    result: Some(exemplars_response::Result::Data(
                        strata_storepb::ExemplarData {
                            series_labels: Some(with_external(&d.series_labels, &ext)),
                            exemplars,
                        },
                    )),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(frames))))
    }
}

fn alert_state(text: &str) -> strata_storepb::AlertState {
    match text {
        "inactive" => strata_storepb::AlertState::Inactive,
        "pending" => strata_storepb::AlertState::Pending,
        "firing" => strata_storepb::AlertState::Firing,
        _ => strata_storepb::AlertState::Unknown,
    }
}

fn plain_labels(labels: Option<BTreeMap<String, String>>) -> Option<ZLabelSet> {
    Some(ZLabelSet {
        labels: labels_to_proto(&Labels::from_pairs(labels.unwrap_or_default())),
    })
}

#[tonic::async_trait]
impl Rules for SidecarStore {
    type RulesStream = Answer<strata_storepb::RulesResponse>;

    async fn rules(
        &self,
        request: Request<strata_storepb::RulesRequest>,
    ) -> Result<Response<Self::RulesStream>, Status> {
        use strata_storepb::{rule, rules_request, rules_response};
        let kind = match rules_request::Type::try_from(request.into_inner().r#type) {
            Ok(rules_request::Type::Alert) => "alert",
            Ok(rules_request::Type::Record) => "record",
            _ => "",
        };
        let ext = self.ext_labels()?;
        let groups = self
            .prom
            .rules(kind)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        // As Thanos' sidecar: the external labels join the rules' and alerts' labels.
        let frames: Vec<Result<strata_storepb::RulesResponse, Status>> = groups
            .groups
            .into_iter()
            .map(|g| {
                let rules = g
                    .rules
                    .into_iter()
                    .map(|r| {
                        let labels =
                            Some(with_external(&r.labels.clone().unwrap_or_default(), &ext));
                        let result = if r.kind == "alerting" {
                            rule::Result::Alert(strata_storepb::Alert {
                                state: alert_state(&r.state).into(),
                                name: r.name,
                                query: r.query,
                                duration_seconds: r.duration,
                                labels,
                                annotations: plain_labels(r.annotations),
                                alerts: r
                                    .alerts
                                    .into_iter()
                                    .map(|a| strata_storepb::AlertInstance {
                                        labels: Some(with_external(&a.labels, &ext)),
                                        annotations: plain_labels(Some(a.annotations)),
                                        state: alert_state(&a.state).into(),
                                        active_at: timestamp(&a.active_at),
                                        value: a.value,
                                        partial_response_strategy: 0,
                                    })
                                    .collect(),
                                health: r.health,
                                last_error: r.last_error,
                                evaluation_duration_seconds: r.evaluation_time,
                                last_evaluation: timestamp(&r.last_evaluation),
                                keep_firing_for_seconds: r.keep_firing_for,
                            })
                        } else {
                            rule::Result::Recording(strata_storepb::RecordingRule {
                                name: r.name,
                                query: r.query,
                                labels,
                                health: r.health,
                                last_error: r.last_error,
                                evaluation_duration_seconds: r.evaluation_time,
                                last_evaluation: timestamp(&r.last_evaluation),
                            })
                        };
                        strata_storepb::Rule {
                            result: Some(result),
                        }
                    })
                    .collect();
                Ok(strata_storepb::RulesResponse {
                    result: Some(rules_response::Result::Group(strata_storepb::RuleGroup {
                        name: g.name,
                        file: g.file,
                        rules,
                        interval: g.interval,
                        evaluation_duration_seconds: g.evaluation_time,
                        last_evaluation: timestamp(&g.last_evaluation),
                        limit: g.limit,
                        partial_response_strategy: 0,
                    })),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(frames))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_timestamps_and_external_labels() {
        let t = timestamp("2026-12-07T03:10:00.5Z").unwrap_or_default();
        assert_eq!((t.seconds, t.nanos), (1_796_613_000, 500_000_000));
        assert!(timestamp("0001-01-01T00:00:00Z").is_none());
        let ext = Labels::from_pairs([("cluster", "eks-1")]);
        let set = with_external(&BTreeMap::from([("job".to_owned(), "p".to_owned())]), &ext);
        let names: Vec<&str> = set.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["cluster", "job"]);
    }
}
