//! Thanos' Rules API across endpoints: rule groups from every healthy endpoint advertising
//! it. Prometheus replicas evaluate the same groups: a group (name and file) is shown once,
//! its rules deduplicated with the replica labels removed from rule and alert labels, as
//! Thanos' querier deduplicates them.

use futures::StreamExt as _;
use strata_storepb::convert::{labels_from_proto, labels_to_proto};
use strata_storepb::{RuleGroup, RulesRequest, ZLabelSet, rule, rules_response};
use strata_types::Labels;

use crate::endpoints::EndpointSet;
use crate::metadata::{MAX_FRAMES, fan_out};
use crate::proxy::{FanOut, ProxyError};

/// The endpoints' groups as they sent them.
pub async fn rules_raw(
    endpoints: &EndpointSet,
    request: &RulesRequest,
    fan_out_options: &FanOut,
) -> Result<(Vec<RuleGroup>, Vec<String>), ProxyError> {
    fan_out(
        endpoints,
        fan_out_options,
        |i| i.rules,
        |e| {
            let request = request.clone();
            async move {
                let mut stream = e.rules_client().rules(request).await?.into_inner();
                let mut out = Vec::new();
                let mut warnings = Vec::new();
                while let Some(frame) = stream.next().await {
                    if out.len() + warnings.len() >= MAX_FRAMES * 16 {
                        return Err(tonic::Status::resource_exhausted("too many rule groups"));
                    }
                    match frame?.result {
                        Some(rules_response::Result::Group(g)) => out.push(g),
                        Some(rules_response::Result::Warning(w)) => warnings.push(w),
                        None => {}
                    }
                }
                Ok((out, warnings))
            }
        },
    )
    .await
}

fn strip(set: Option<ZLabelSet>, replica_labels: &[String]) -> Option<ZLabelSet> {
    let labels = set
        .map(|s| labels_from_proto(&s.labels))
        .unwrap_or_default();
    let kept = Labels::from_pairs(
        labels
            .iter()
            .filter(|l| !replica_labels.contains(&l.name))
            .map(|l| (l.name.clone(), l.value.clone())),
    );
    Some(ZLabelSet {
        labels: labels_to_proto(&kept),
    })
}

/// A rule without the replica labels.
fn without_replicas(
    mut r: strata_storepb::Rule,
    replica_labels: &[String],
) -> strata_storepb::Rule {
    match &mut r.result {
        Some(rule::Result::Alert(a)) => {
            a.labels = strip(a.labels.take(), replica_labels);
            for instance in &mut a.alerts {
                instance.labels = strip(instance.labels.take(), replica_labels);
            }
            let mut seen: Vec<Option<ZLabelSet>> = Vec::new();
            a.alerts.retain(|i| {
                if seen.contains(&i.labels) {
                    false
                } else {
                    seen.push(i.labels.clone());
                    true
                }
            });
        }
        Some(rule::Result::Recording(rec)) => {
            rec.labels = strip(rec.labels.take(), replica_labels);
        }
        None => {}
    }
    r
}

/// The identity of a rule across replicas: kind, name, query and labels.
fn same_rule(a: &strata_storepb::Rule, b: &strata_storepb::Rule) -> bool {
    match (&a.result, &b.result) {
        (Some(rule::Result::Alert(x)), Some(rule::Result::Alert(y))) => {
            x.name == y.name && x.query == y.query && x.labels == y.labels
        }
        (Some(rule::Result::Recording(x)), Some(rule::Result::Recording(y))) => {
            x.name == y.name && x.query == y.query && x.labels == y.labels
        }
        _ => false,
    }
}

/// Rule groups from every endpoint, each group (name, file) once with its rules once.
pub async fn rules(
    endpoints: &EndpointSet,
    request: &RulesRequest,
    replica_labels: &[String],
    fan_out_options: &FanOut,
) -> Result<(Vec<RuleGroup>, Vec<String>), ProxyError> {
    let (groups, warnings) = rules_raw(endpoints, request, fan_out_options).await?;
    let mut merged: Vec<RuleGroup> = Vec::new();
    for mut group in groups {
        let rules: Vec<strata_storepb::Rule> = std::mem::take(&mut group.rules)
            .into_iter()
            .map(|r| without_replicas(r, replica_labels))
            .collect();
        if !merged
            .iter()
            .any(|g| g.name == group.name && g.file == group.file)
        {
            merged.push(group.clone());
        }
        let Some(target) = merged
            .iter_mut()
            .find(|g| g.name == group.name && g.file == group.file)
        else {
            continue;
        };
        for r in rules {
            if !target.rules.iter().any(|x| same_rule(x, &r)) {
                target.rules.push(r);
            }
        }
    }
    merged.sort_by(|a, b| (&a.file, &a.name).cmp(&(&b.file, &b.name)));
    Ok((merged, warnings))
}
